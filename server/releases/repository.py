"""SQL for release requests and grants. Repositories never commit."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.releases.models import GrantEnvelope, ItemGrant, ReleaseRequest


async def get_request(
    session: AsyncSession, request_id: str, *, lock: bool = False
) -> ReleaseRequest | None:
    stmt = select(ReleaseRequest).where(ReleaseRequest.id == request_id)
    if lock:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def list_requests(
    session: AsyncSession, *, user_id: str, originator: str | None, status: str | None
) -> Sequence[ReleaseRequest]:
    """Requests the user made, and those a disclosure officer of ``originator`` decides."""
    who = ReleaseRequest.requested_by == user_id
    if originator is not None:
        who = or_(who, ReleaseRequest.originator == originator)
    stmt = select(ReleaseRequest).where(who).order_by(ReleaseRequest.created_at)
    if status is not None:
        stmt = stmt.where(ReleaseRequest.status == status)
    return (await session.execute(stmt)).scalars().all()


async def grants_for(session: AsyncSession, item_id: str) -> Sequence[ItemGrant]:
    stmt = select(ItemGrant).where(ItemGrant.item_id == item_id).order_by(ItemGrant.created_at)
    return (await session.execute(stmt)).scalars().all()


async def grant_envelope_for(
    session: AsyncSession, item_id: str, device_id: str
) -> tuple[ItemGrant, GrantEnvelope] | None:
    """The latest grant of ``item_id`` that holds ``device_id``, with its envelope."""
    stmt = (
        select(ItemGrant, GrantEnvelope)
        .join(GrantEnvelope, GrantEnvelope.grant_id == ItemGrant.id)
        .where(ItemGrant.item_id == item_id, GrantEnvelope.device_id == device_id)
        .order_by(ItemGrant.created_at.desc())
        .limit(1)
    )
    row = (await session.execute(stmt)).first()
    return (row[0], row[1]) if row else None


async def grants_for_items(
    session: AsyncSession, item_ids: Sequence[str]
) -> dict[str, list[ItemGrant]]:
    """Each item's grants, oldest first, for many items in one query."""
    found: dict[str, list[ItemGrant]] = {}
    if not item_ids:
        return found
    stmt = select(ItemGrant).where(ItemGrant.item_id.in_(item_ids)).order_by(ItemGrant.created_at)
    for grant in (await session.execute(stmt)).scalars():
        found.setdefault(grant.item_id, []).append(grant)
    return found


async def grant_envelopes_for_items(
    session: AsyncSession, item_ids: Sequence[str], device_id: str
) -> dict[str, tuple[ItemGrant, GrantEnvelope]]:
    """For each of ``item_ids``, the latest grant that holds ``device_id``, with its envelope."""
    found: dict[str, tuple[ItemGrant, GrantEnvelope]] = {}
    if not item_ids:
        return found
    stmt = (
        select(ItemGrant, GrantEnvelope)
        .join(GrantEnvelope, GrantEnvelope.grant_id == ItemGrant.id)
        .where(ItemGrant.item_id.in_(item_ids), GrantEnvelope.device_id == device_id)
        .order_by(ItemGrant.created_at)
    )
    for grant, envelope in (await session.execute(stmt)).all():
        found[grant.item_id] = (grant, envelope)  # the latest wins
    return found


async def granted_device_ids(session: AsyncSession, item_id: str) -> frozenset[str]:
    stmt = (
        select(GrantEnvelope.device_id)
        .join(ItemGrant, GrantEnvelope.grant_id == ItemGrant.id)
        .where(ItemGrant.item_id == item_id)
    )
    return frozenset((await session.execute(stmt)).scalars().all())
