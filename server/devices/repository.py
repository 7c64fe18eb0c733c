"""SQL for devices and enrolment codes. Repositories never commit."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.devices.models import Device, EnrolmentCode
from server.directory.models import User


async def get_device(session: AsyncSession, device_id: str, *, lock: bool = False) -> Device | None:
    stmt = select(Device).where(Device.id == device_id)
    if lock:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def get_device_by_signing_key(session: AsyncSession, key: bytes) -> Device | None:
    stmt = select(Device).where(Device.signing_key == key)
    return (await session.execute(stmt)).scalar_one_or_none()


async def list_devices(
    session: AsyncSession,
    *,
    user_id: str | None = None,
    nation: str | None = None,
    status: str | None = None,
) -> Sequence[tuple[Device, User]]:
    stmt = select(Device, User).join(User, Device.user_id == User.id).order_by(Device.created_at)
    if user_id is not None:
        stmt = stmt.where(Device.user_id == user_id)
    if nation is not None:
        stmt = stmt.where(User.nationality == nation)
    if status is not None:
        stmt = stmt.where(Device.status == status)
    return [(d, u) for d, u in (await session.execute(stmt)).all()]


async def get_code_by_hash(session: AsyncSession, code_hash: bytes) -> EnrolmentCode | None:
    stmt = select(EnrolmentCode).where(EnrolmentCode.code_hash == code_hash).with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()
