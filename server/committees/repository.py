"""SQL for committees, meetings, agenda items and action items. Repositories never commit."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from server.channels.models import AudienceEnvelope, Channel, ChannelMember, Message
from server.committees.models import (
    ActionItem,
    ActionItemUpdate,
    AgendaDocument,
    AgendaItem,
    Committee,
    Meeting,
)
from server.releases.models import GrantEnvelope, ItemGrant


async def get_committee(session: AsyncSession, committee_id: str) -> Committee | None:
    return await session.get(Committee, committee_id)


async def get_committee_by_channel(session: AsyncSession, channel_id: str) -> Committee | None:
    stmt = select(Committee).where(Committee.channel_id == channel_id)
    return (await session.execute(stmt)).scalar_one_or_none()


async def committees_of(session: AsyncSession, user_id: str) -> Sequence[tuple[Committee, Channel]]:
    stmt = (
        select(Committee, Channel)
        .join(Channel, Channel.id == Committee.channel_id)
        .join(ChannelMember, ChannelMember.channel_id == Channel.id)
        .where(ChannelMember.user_id == user_id)
        .order_by(Channel.name)
    )
    return [(c, ch) for c, ch in (await session.execute(stmt)).all()]


async def get_meeting(
    session: AsyncSession, meeting_id: str, *, for_update: bool = False
) -> Meeting | None:
    """``for_update`` locks the row (PostgreSQL) so that writers to one meeting's agenda take
    turns; SQLite has one writer at a time anyway."""
    stmt = select(Meeting).where(Meeting.id == meeting_id)
    if for_update:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def meetings_of(
    session: AsyncSession, committee_id: str, *, since: datetime | None, limit: int
) -> Sequence[Meeting]:
    stmt = select(Meeting).where(Meeting.committee_id == committee_id)
    if since is not None:
        stmt = stmt.where(Meeting.starts_at >= since)
    stmt = stmt.order_by(Meeting.starts_at, Meeting.id).limit(limit)
    return (await session.execute(stmt)).scalars().all()


async def agenda_items(session: AsyncSession, meeting_id: str) -> Sequence[AgendaItem]:
    stmt = (
        select(AgendaItem).where(AgendaItem.meeting_id == meeting_id).order_by(AgendaItem.position)
    )
    return (await session.execute(stmt)).scalars().all()


async def renumber(session: AsyncSession, items: Sequence[AgendaItem]) -> None:
    """Give ``items`` the positions 0..n-1 in the order given. Two passes, so that no
    intermediate state breaks the unique (meeting, position) constraint."""
    for offset, item in enumerate(items):
        await session.execute(
            update(AgendaItem).where(AgendaItem.id == item.id).values(position=-1 - offset)
        )
    for position, item in enumerate(items):
        await session.execute(
            update(AgendaItem).where(AgendaItem.id == item.id).values(position=position)
        )
        item.position = position


async def action_items(session: AsyncSession, meeting_id: str) -> Sequence[ActionItem]:
    stmt = (
        select(ActionItem)
        .join(Message, Message.id == ActionItem.message_id)
        .where(ActionItem.meeting_id == meeting_id)
        .order_by(Message.seq)
    )
    return (await session.execute(stmt)).scalars().all()


async def get_action_item(session: AsyncSession, item_id: str) -> ActionItem | None:
    return await session.get(ActionItem, item_id)


async def updates_of(
    session: AsyncSession, action_item_ids: Collection[str]
) -> Sequence[ActionItemUpdate]:
    """Updates of these action items, oldest first (in the channel's message order)."""
    if not action_item_ids:
        return []
    stmt = (
        select(ActionItemUpdate)
        .join(Message, Message.id == ActionItemUpdate.message_id)
        .where(ActionItemUpdate.action_item_id.in_(list(action_item_ids)))
        .order_by(Message.seq)
    )
    return (await session.execute(stmt)).scalars().all()


async def count_updates(session: AsyncSession, action_item_id: str) -> int:
    stmt = select(func.count()).where(ActionItemUpdate.action_item_id == action_item_id)
    return int((await session.execute(stmt)).scalar_one())


async def count_action_items(session: AsyncSession, meeting_id: str) -> int:
    stmt = select(func.count()).where(ActionItem.meeting_id == meeting_id)
    return int((await session.execute(stmt)).scalar_one())


async def is_linked(session: AsyncSession, message_id: str) -> bool:
    """Whether any committee structure already refers to this message."""
    for column in (
        Meeting.info_message_id,
        Meeting.minutes_message_id,
        AgendaItem.message_id,
        ActionItem.message_id,
        ActionItemUpdate.message_id,
    ):
        stmt = select(func.count()).where(column == message_id)
        if (await session.execute(stmt)).scalar_one():
            return True
    return False


async def messages_held_by_device(
    session: AsyncSession, device_id: str, message_ids: Collection[str]
) -> Sequence[Message]:
    """Those of ``message_ids`` whose audience holds an envelope for ``device_id``, or a grant
    of which does (a release, or a history grant to a member who joined later)."""
    if not message_ids:
        return []
    in_audience = select(AudienceEnvelope.audience_id).where(
        AudienceEnvelope.device_id == device_id
    )
    granted = (
        select(ItemGrant.item_id)
        .join(GrantEnvelope, GrantEnvelope.grant_id == ItemGrant.id)
        .where(GrantEnvelope.device_id == device_id, ItemGrant.item_type == "message")
    )
    stmt = select(Message).where(
        Message.id.in_(list(message_ids)),
        Message.audience_id.in_(in_audience) | Message.id.in_(granted),
    )
    return (await session.execute(stmt)).scalars().all()


async def agenda_documents(session: AsyncSession, item_ids: list[str]) -> Sequence[AgendaDocument]:
    if not item_ids:
        return []
    stmt = (
        select(AgendaDocument)
        .where(AgendaDocument.agenda_item_id.in_(item_ids))
        .order_by(AgendaDocument.created_at)
    )
    return (await session.execute(stmt)).scalars().all()
