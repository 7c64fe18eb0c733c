"""SQL for devices and enrolment codes. Repositories never commit."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, update
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
    stmt = select(EnrolmentCode).where(EnrolmentCode.code_hash == code_hash)
    return (await session.execute(stmt)).scalar_one_or_none()


async def consume_code(
    session: AsyncSession, code_id: str, user_id: str, now: datetime
) -> EnrolmentCode | None:
    """Mark an unused, unexpired code of ``user_id`` used and return it; None if another
    request got there first (or it expired meanwhile).

    One statement, so that of any number of concurrent enrolments with one code exactly one
    consumes it, on PostgreSQL (which re-checks ``used_at IS NULL`` after the first writer
    commits) and on SQLite (where the UPDATE holds the single write lock until commit).
    """
    stmt = (
        update(EnrolmentCode)
        .where(
            EnrolmentCode.id == code_id,
            EnrolmentCode.user_id == user_id,
            EnrolmentCode.used_at.is_(None),
            EnrolmentCode.expires_at > now,
        )
        .values(used_at=now)
        .returning(EnrolmentCode)
        .execution_options(synchronize_session=False, populate_existing=True)
    )
    return (await session.execute(stmt)).scalar_one_or_none()
