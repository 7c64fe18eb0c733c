"""SQL for history grants: a channel's history window and what its members hold. Repositories
never commit."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from server.channels.models import AudienceEnvelope, Channel, Message
from server.documents.models import COMPLETE, Document, DocumentVersion
from server.releases.models import GrantEnvelope, ItemGrant


async def history_days(session: AsyncSession, channel_id: str) -> int:
    """Read afresh: kept copies of a channel (``access_channel``) predate a change of it."""
    stmt = select(Channel.history_days).where(Channel.id == channel_id)
    return int((await session.execute(stmt)).scalar_one())


async def set_history_days(session: AsyncSession, channel_id: str, days: int) -> None:
    await session.execute(update(Channel).where(Channel.id == channel_id).values(history_days=days))


async def messages_since(
    session: AsyncSession, channel_id: str, since: datetime, after: int, limit: int
) -> Sequence[Message]:
    """The channel's messages stored at or after ``since`` with ``seq`` above ``after``, oldest
    first."""
    stmt = (
        select(Message)
        .where(Message.channel_id == channel_id, Message.seq > after, Message.created_at >= since)
        .order_by(Message.seq)
        .limit(limit)
    )
    return (await session.execute(stmt)).scalars().all()


async def versions_since(
    session: AsyncSession, channel_id: str, since: datetime, limit: int
) -> Sequence[DocumentVersion]:
    """The channel's complete document versions begun at or after ``since``, newest first, at
    most ``limit``."""
    stmt = (
        select(DocumentVersion)
        .join(Document, Document.id == DocumentVersion.document_id)
        .where(
            Document.channel_id == channel_id,
            DocumentVersion.status == COMPLETE,
            DocumentVersion.created_at >= since,
        )
        .order_by(DocumentVersion.created_at.desc())
        .limit(limit)
    )
    return (await session.execute(stmt)).scalars().all()


async def audience_devices(
    session: AsyncSession, audience_ids: Sequence[str]
) -> dict[str, set[str]]:
    """Each audience's devices, for many audiences in one query."""
    found: dict[str, set[str]] = {a: set() for a in audience_ids}
    if not audience_ids:
        return found
    stmt = select(AudienceEnvelope.audience_id, AudienceEnvelope.device_id).where(
        AudienceEnvelope.audience_id.in_(audience_ids)
    )
    for audience_id, device_id in (await session.execute(stmt)).all():
        found[audience_id].add(device_id)
    return found


async def granted_devices(session: AsyncSession, item_ids: Sequence[str]) -> dict[str, set[str]]:
    """The devices any grant (a release's or a history grant) gave each item to."""
    found: dict[str, set[str]] = {i: set() for i in item_ids}
    if not item_ids:
        return found
    stmt = (
        select(ItemGrant.item_id, GrantEnvelope.device_id)
        .join(GrantEnvelope, GrantEnvelope.grant_id == ItemGrant.id)
        .where(ItemGrant.item_id.in_(item_ids))
    )
    for item_id, device_id in (await session.execute(stmt)).all():
        found[item_id].add(device_id)
    return found


async def get_grant(session: AsyncSession, grant_id: str) -> ItemGrant | None:
    return await session.get(ItemGrant, grant_id)


async def grant_device_ids(session: AsyncSession, grant_id: str) -> list[str]:
    stmt = (
        select(GrantEnvelope.device_id)
        .where(GrantEnvelope.grant_id == grant_id)
        .order_by(GrantEnvelope.device_id)
    )
    return list((await session.execute(stmt)).scalars().all())
