"""SQL for channels, audiences and messages. Repositories never commit."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import Row, RowMapping, bindparam, func, or_, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from server.channels.models import (
    Audience,
    AudienceEnvelope,
    Channel,
    ChannelMember,
    Delivery,
    Message,
)
from server.committees.models import Committee
from server.db import sqlite
from server.db.base import detached, new_id
from server.db.engine import columns_of
from server.devices.models import DEVICE_ACTIVE, Device
from server.directory.models import User
from server.releases.models import GrantEnvelope, ItemGrant


async def get_channel(session: AsyncSession, channel_id: str) -> Channel | None:
    return await session.get(Channel, channel_id)


async def get_channel_by_name(session: AsyncSession, name: str) -> Channel | None:
    stmt = select(Channel).where(Channel.name == name)
    return (await session.execute(stmt)).scalar_one_or_none()


async def is_committee_channel(session: AsyncSession, channel_id: str) -> bool:
    """Whether a committee owns this channel (and so manages its members)."""
    stmt = select(Committee.id).where(Committee.channel_id == channel_id)
    return (await session.execute(stmt)).first() is not None


async def channels_of(session: AsyncSession, user_id: str) -> Sequence[Channel]:
    stmt = (
        select(Channel)
        .join(ChannelMember, ChannelMember.channel_id == Channel.id)
        .where(ChannelMember.user_id == user_id)
        .order_by(Channel.name)
    )
    return (await session.execute(stmt)).scalars().all()


async def members(session: AsyncSession, channel_id: str) -> Sequence[User]:
    stmt = (
        select(User)
        .join(ChannelMember, ChannelMember.user_id == User.id)
        .where(ChannelMember.channel_id == channel_id)
        .order_by(User.username)
    )
    return (await session.execute(stmt)).scalars().all()


async def member_ids(session: AsyncSession, channel_id: str) -> frozenset[str]:
    stmt = select(ChannelMember.user_id).where(ChannelMember.channel_id == channel_id)
    return frozenset((await session.execute(stmt)).scalars().all())


async def memberships_around(
    session: AsyncSession, channel_ids: Collection[str], user_ids: Collection[str]
) -> Sequence[Row[str, str]]:
    """(channel id, user id) of each member of ``channel_ids`` and of every channel that a user
    of ``user_ids`` is a member of: whom a change to those channels or users concerns."""
    theirs = select(ChannelMember.channel_id).where(ChannelMember.user_id.in_(list(user_ids)))
    stmt = select(ChannelMember.channel_id, ChannelMember.user_id).where(
        or_(
            ChannelMember.channel_id.in_(list(channel_ids)),
            ChannelMember.channel_id.in_(theirs),
        )
    )
    return (await session.execute(stmt)).all()


async def get_membership(
    session: AsyncSession, channel_id: str, user_id: str
) -> ChannelMember | None:
    return await session.get(ChannelMember, (channel_id, user_id))


async def remove_member(session: AsyncSession, channel_id: str, user_id: str) -> None:
    # Through the unit of work, not a bulk DELETE, so that the change log learns which
    # channel's membership changed (server.db.changes).
    membership = await session.get(ChannelMember, (channel_id, user_id))
    if membership is not None:
        await session.delete(membership)
        await session.flush()


async def active_member_devices(
    session: AsyncSession, channel_id: str
) -> Sequence[tuple[Device, User]]:
    stmt = (
        select(Device, User)
        .join(User, Device.user_id == User.id)
        .join(ChannelMember, ChannelMember.user_id == User.id)
        .where(ChannelMember.channel_id == channel_id, Device.status == DEVICE_ACTIVE)
        .order_by(Device.id)
    )
    return [(d, u) for d, u in (await session.execute(stmt)).all()]


async def member_device_facts(session: AsyncSession, channel_id: str) -> Sequence[Row[Any]]:
    """What an eligibility decision reads of each member's active devices, as plain rows:
    ``device_id, certified, user_id, nationality, clearance, active``."""
    stmt = (
        select(
            Device.id.label("device_id"),
            Device.certificate.is_not(None).label("certified"),
            User.id.label("user_id"),
            User.nationality,
            User.clearance,
            User.active,
        )
        .join(User, Device.user_id == User.id)
        .join(ChannelMember, ChannelMember.user_id == User.id)
        .where(ChannelMember.channel_id == channel_id, Device.status == DEVICE_ACTIVE)
        .order_by(Device.id)
    )
    return (await session.execute(stmt)).all()


async def audience_envelopes(session: AsyncSession, audience_id: str) -> Sequence[Row[str, bytes]]:
    stmt = select(AudienceEnvelope.device_id, AudienceEnvelope.envelope).where(
        AudienceEnvelope.audience_id == audience_id
    )
    return (await session.execute(stmt)).all()


async def get_audience(session: AsyncSession, audience_id: str) -> Audience | None:
    return await session.get(Audience, audience_id)


async def audience_device_ids(session: AsyncSession, audience_id: str) -> frozenset[str]:
    stmt = select(AudienceEnvelope.device_id).where(AudienceEnvelope.audience_id == audience_id)
    return frozenset((await session.execute(stmt)).scalars().all())


async def envelope_for(
    session: AsyncSession, audience_id: str, device_id: str
) -> AudienceEnvelope | None:
    return await session.get(AudienceEnvelope, (audience_id, device_id))


async def envelopes_of_device(
    session: AsyncSession, device_id: str, audience_ids: Sequence[str]
) -> dict[str, bytes]:
    """This device's envelope in each of ``audience_ids`` that holds it (audience id ->)."""
    if not audience_ids:
        return {}
    stmt = select(AudienceEnvelope.audience_id, AudienceEnvelope.envelope).where(
        AudienceEnvelope.device_id == device_id, AudienceEnvelope.audience_id.in_(audience_ids)
    )
    return {a: e for a, e in (await session.execute(stmt)).all()}


async def certificates_of(
    session: AsyncSession, device_ids: Sequence[str]
) -> dict[str, dict[str, Any] | None]:
    if not device_ids:
        return {}
    stmt = select(Device.id, Device.certificate).where(Device.id.in_(device_ids))
    return {d: c for d, c in (await session.execute(stmt)).all()}


async def get_message(session: AsyncSession, message_id: str) -> Message | None:
    stmt = select(Message).where(Message.id == message_id)
    return (await session.execute(stmt)).scalar_one_or_none()


# Built once: each batch of submits runs it, and building the IN clause anew cost more than
# running it (SQLAlchemy's cache then still keys it).
_MESSAGE_ROWS_BY_ID = select(Message.__table__).where(
    Message.__table__.c.id.in_(bindparam("ids", expanding=True))
)


async def stored_messages(session: AsyncSession, message_ids: Sequence[str]) -> list[Message]:
    """The messages stored under ``message_ids``, read in Core through the session's
    connection, for a batch of submits, where the ids are almost always new: the ORM's query
    set-up cost more than the query. On SQLite, whether any is stored is asked first through
    the driver in one trip (``server.db.sqlite.fetch_in_one_trip``), and the rows are read
    only when one is.
    A message found is a detached instance, read-only, outside the session's identity map."""
    if not message_ids:
        return []
    connection = await session.connection()
    if sqlite.one_trip(connection):
        # Whether any is stored, in one trip through the driver; only then the rows, in Core.
        marks = ", ".join("?" * len(message_ids))
        found = f"SELECT 1 FROM messages WHERE id IN ({marks}) LIMIT 1"
        if not await sqlite.fetch_in_one_trip(connection, found, list(message_ids)):
            return []
    rows = (await connection.execute(_MESSAGE_ROWS_BY_ID, {"ids": list(message_ids)})).mappings()
    return [detached(Message, _attributes(Message, row)) for row in rows]


def _attributes(model: type[Any], row: RowMapping) -> dict[str, Any]:
    return {attr: row[column] for attr, column in columns_of(model)}


async def get_message_by_seq(session: AsyncSession, seq: int) -> Message | None:
    return await session.get(Message, seq)


async def messages_for_device(
    session: AsyncSession, device_id: str, after: int, limit: int, channel_id: str | None
) -> Sequence[Message]:
    """Messages after ``after`` whose audience, or a grant of which, holds ``device_id``,
    oldest first."""
    in_audience = select(AudienceEnvelope.audience_id).where(
        AudienceEnvelope.device_id == device_id
    )
    granted = (
        select(ItemGrant.item_id)
        .join(GrantEnvelope, GrantEnvelope.grant_id == ItemGrant.id)
        .where(GrantEnvelope.device_id == device_id, ItemGrant.item_type == "message")
    )
    stmt = (
        select(Message)
        .where(
            Message.seq > after,
            Message.audience_id.in_(in_audience) | Message.id.in_(granted),
        )
        .order_by(Message.seq)
        .limit(limit)
    )
    if channel_id is not None:
        stmt = stmt.where(Message.channel_id == channel_id)
    return (await session.execute(stmt)).scalars().all()


async def record_withheld(session: AsyncSession, seq: int, device_id: str) -> bool:
    """Record that ``device_id`` was refused message ``seq``; False if it already was."""
    values = {"id": new_id(), "message_seq": seq, "device_id": device_id, "outcome": "withheld"}
    dialect = session.get_bind().dialect.name
    insert = sqlite_insert if dialect == "sqlite" else postgresql_insert
    stmt = insert(Delivery).values(values).on_conflict_do_nothing()
    result = await session.execute(stmt)
    return bool(getattr(result, "rowcount", 0))


async def device(session: AsyncSession, device_id: str) -> Device | None:
    return await session.get(Device, device_id)


async def last_seq(session: AsyncSession) -> int:
    """The highest sequence number given to any message (0 before the first)."""
    return int((await session.execute(select(func.max(Message.seq)))).scalar_one() or 0)


async def usernames_of(session: AsyncSession, user_ids: Sequence[str]) -> dict[str, str]:
    if not user_ids:
        return {}
    stmt = select(User.id, User.username).where(User.id.in_(user_ids))
    return {u: name for u, name in (await session.execute(stmt)).all()}
