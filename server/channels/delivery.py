"""Live delivery: a message decided once at submit, routed to its recipients, decided again
at push from memory.

- ``classify`` says which committed rows can change a delivery decision (the change log's
  keys, ``server.db.changes``), and which close open streams at once.
- ``push_of`` turns an accepted submission into one ``Push``: the frame serialised once, with
  each recipient's envelope beside it.
- ``DeliveryGate.admit`` decides a push again for one connection: when nothing the submit's
  decision depends on (this channel's membership, this user, this device, this session, the
  catalog) changed since, the decision stands and no database is read; otherwise the full
  decision is made again from the database (``service.deliver``), which audits a withholding.
- ``RosterNotifier`` tells the open streams of a channel's members that its roster changed
  (a membership, a member's devices, clearance or status, the catalog), and a member just
  removed that it was, so that clients drop a cached roster before they seal to it.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Mapping, Sequence

import orjson
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from protocol.catalog import Catalog
from server.auth.models import SessionToken
from server.auth.service import access_session
from server.channels import repository as repo
from server.channels import service
from server.channels.models import Channel, ChannelMember
from server.channels.schemas import DeliveryRead
from server.coalition.models import CoalitionPolicyVersion
from server.db.changes import ANY, CATALOG, Change, ChangeLog
from server.devices.models import DEVICE_ACTIVE, Device
from server.directory.models import Nation, PartnerGroup, PartnerGroupMember, User
from server.directory.service import load_catalog
from server.errors import ServiceError
from server.realtime.bus import ANY_ROSTER_CHANGED, CLOSE_REVOKED, Connection, Notice, Push

# --- what changes a decision -----------------------------------------------------------------


def classify(instance: object, what: str) -> Iterable[Change]:
    """The change log's keys for one flushed row (or, for ``bulk``, a mapped class)."""
    kind = instance if isinstance(instance, type) else type(instance)
    if kind not in _TRACKED:
        return ()
    if what == "bulk":
        return (Change(ANY),)
    if isinstance(instance, ChannelMember):
        # ``member:`` names who joined or left: no decision depends on it, but a member just
        # removed is told so (``RosterNotifier``).
        return (
            Change(f"channel:{instance.channel_id}"),
            Change(f"member:{instance.channel_id}:{instance.user_id}"),
        )
    if isinstance(instance, User):
        closes = what == "deleted" or not instance.active
        return (Change(f"user:{instance.id}", close=closes, reason="the account was disabled"),)
    if isinstance(instance, Device):
        closes = what == "deleted" or instance.status != DEVICE_ACTIVE
        return (
            Change(f"device:{instance.id}", close=closes, reason="the device was revoked"),
            Change(f"user:{instance.user_id}"),
        )
    if isinstance(instance, SessionToken):
        if what == "new" or (what == "dirty" and instance.revoked_at is None):
            return ()  # a login, or a session used: nothing that decided a delivery changed
        return (Change(f"session:{instance.id}", close=True, reason="the session ended"),)
    # Nations and partner groups (the catalog's directory), and a coalition policy version
    # published (the catalog decisions use under it).
    return (Change(CATALOG),)


_TRACKED = frozenset(
    {
        ChannelMember,
        User,
        Device,
        SessionToken,
        Nation,
        PartnerGroup,
        PartnerGroupMember,
        CoalitionPolicyVersion,
    }
)


# --- building a push -------------------------------------------------------------------------

# Marks where a device's envelope goes in a frame serialised once. Random per process, so no
# content a client chose can contain it.
_SENTINEL = "envelope-" + secrets.token_hex(16)


async def push_of(
    session: AsyncSession,
    submitted: service.Submitted,
    sender_certificate: Mapping[str, object] | None,
) -> Push:
    message, audience = submitted.message, submitted.audience
    assert audience is not None
    item = service.DeliveryItem(
        message=message,
        audience=audience,
        envelope=None,
        sender_certificate=dict(sender_certificate) if sender_certificate else None,
    )
    frame = orjson.dumps({"type": "message", **DeliveryRead.pushed(item, _SENTINEL)}).decode()
    head, _, tail = frame.partition(f'"{_SENTINEL}"')
    sealed = await service.audience_envelopes(session, audience.id)
    return Push(
        seq=message.seq,
        channel_id=message.channel_id,
        version=submitted.version,
        recipients=submitted.recipients,
        envelopes={d: sealed[d] for d in submitted.recipients if d in sealed},
        head=head,
        tail=tail,
    )


# --- deciding again at push ------------------------------------------------------------------


class DeliveryGate:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        changes: ChangeLog,
        catalog: Catalog,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._changes = changes
        self._catalog = catalog

    async def admit(self, connection: Connection, push: Push) -> bool:
        if connection.device_id not in push.envelopes:
            return False
        depends = (
            f"channel:{push.channel_id}",
            f"user:{connection.user_id}",
            f"device:{connection.device_id}",
            f"session:{connection.session_id}",
        )
        if not self._changes.changed_since(push.version, depends):
            return True
        # Something this decision rests on changed since the submit: decide again in full.
        async with self._sessionmaker() as session, session.begin():
            try:
                principal = await access_session(session, connection.session_id)
            except ServiceError as exc:
                connection.close(CLOSE_REVOKED, exc.detail)
                return False
            message = await repo.get_message_by_seq(session, push.seq)
            channel = await repo.get_channel(session, push.channel_id)
            if message is None or channel is None:
                return False
            catalog = await load_catalog(session, self._catalog)
            item = await service.deliver(session, principal, catalog, message, channel)
        return item is not None and item.grant is None


# --- telling streams that a roster changed ----------------------------------------------------

# Beyond this many channels and users in one batch of changes (a bulk import), every stream
# is told that any roster may have changed instead of working out whose did.
MAX_NOTICED = 2000


class RosterNotifier:
    """The notices of committed changes, for the bus (``server.realtime.bus.Notifier``).

    - a channel's membership, or a member (their devices, clearance or status), changed: each
      member's streams get ``{"type":"roster-changed","channel_id":...,"etag":...}``, with
      the roster's entity tag as ``GET .../roster`` now gives it;
    - a user left a channel: their streams get ``{"type":"roster-changed","channel_id":...,
      "member":false}``, and nothing more about that channel;
    - the catalog (nations, groups) or anything at all changed: every stream gets
      ``{"type":"roster-changed"}`` (every roster's tag changed; it names no channel).

    One query finds whom a batch concerns; the tags come from the roster-tag cache (a query
    per channel whose membership changed).
    """

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], catalog: Catalog) -> None:
        self._sessionmaker = sessionmaker
        self._catalog = catalog

    def concerns(self, change: Change) -> bool:
        return change.key in (ANY, CATALOG) or change.key.startswith(
            ("channel:", "user:", "member:")
        )

    async def notices(self, changes: Sequence[Change]) -> Sequence[Notice]:
        found: list[Notice] = []
        channel_ids: set[str] = set()
        user_ids: set[str] = set()
        moved: dict[str, set[str]] = {}  # channel id -> users who joined or left
        for change in changes:
            kind, _, rest = change.key.partition(":")
            if change.key in (ANY, CATALOG):
                if not found:
                    found.append(Notice(ANY_ROSTER_CHANGED, None))
            elif kind == "channel":
                channel_ids.add(rest)
            elif kind == "user":
                user_ids.add(rest)
            elif kind == "member":
                channel_id, _, user_id = rest.partition(":")
                moved.setdefault(channel_id, set()).add(user_id)
        if not channel_ids and not user_ids:
            return found
        if len(channel_ids) + len(user_ids) > MAX_NOTICED:
            return [Notice(ANY_ROSTER_CHANGED, None)]
        async with self._sessionmaker() as session:
            catalog = await load_catalog(session, self._catalog)
            members: dict[str, set[str]] = {}
            for channel_id, user_id in await repo.memberships_around(
                session, channel_ids, user_ids
            ):
                members.setdefault(channel_id, set()).add(user_id)
            for channel_id, who in members.items():
                # The tag is all that is read of the channel: a stand-in with its id will do.
                tag = await service.roster_tag_of(session, Channel(id=channel_id), catalog)
                found.append(Notice(_frame(channel_id, etag=tag), frozenset(who)))
        for channel_id, who in moved.items():
            gone = who - members.get(channel_id, set())
            if gone:
                found.append(Notice(_frame(channel_id, member=False), frozenset(gone)))
        return found


def _frame(channel_id: str, **fields: object) -> str:
    value = {"type": "roster-changed", "channel_id": channel_id, **fields}
    return json.dumps(value, separators=(",", ":"))
