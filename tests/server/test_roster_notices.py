"""Roster notices on the stream: a change to a channel's roster reaches its members' open
streams, in order with the messages, and nobody else's.

The frames (docs/PROTOCOL.md §17.7): ``{"type":"roster-changed","channel_id":...,"etag":...}``
to each member, ``{"type":"roster-changed","channel_id":...,"member":false}`` to a member just
removed, ``{"type":"roster-changed"}`` to every stream when the catalog changes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import httpx
import pytest
import websockets

from server.app import create_app
from server.channels.delivery import RosterNotifier
from server.db.changes import Change
from server.directory.models import PartnerGroup, PartnerGroupMember, User
from server.realtime.bus import ANY_ROSTER_CHANGED, Connection, InProcessBus, Notice, Push
from server.settings import Settings
from tests.conftest import TEST_ORIGIN
from tests.factories import Member, World
from tests.server.test_channels import REL_USA_GBR, Three, _audience, _message, _three
from tests.server.test_stream import _connect as _connect_once

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

Socket = websockets.ClientConnection
Connect = Callable[[Member], Awaitable[Socket]]


@pytest.fixture
async def connect(live_url: str) -> AsyncIterator[Connect]:
    """Opens ``member``'s stream on the live server; every one is closed at the end."""
    opened: list[Socket] = []

    async def open_for(member: Member) -> Socket:
        ws = await _connect_once(live_url, member)
        opened.append(ws)
        return ws

    yield open_for
    for ws in opened:
        await ws.close()


async def _frames(world: World, ws: Socket, quiet: float = 0.3) -> list[dict[str, Any]]:
    """Every frame (but pings) that reaches ``ws`` once the bus has offered its notices, until
    the line is quiet for ``quiet`` seconds."""
    await world.app.state.bus.settled()
    found = []
    while True:
        try:
            frame = json.loads(await asyncio.wait_for(ws.recv(), quiet))
        except TimeoutError:
            return found
        if frame["type"] != "ping":
            found.append(frame)


async def _tag(member: Member) -> str:
    _, etag = await member.client.roster_if_changed("liaison", None)
    assert etag is not None
    return etag


def _changed(channel_id: str, etag: str) -> dict[str, Any]:
    return {"type": "roster-changed", "channel_id": channel_id, "etag": etag}


async def _outsider(world: World, connect: Connect) -> tuple[Member, Socket]:
    """A connected user of a nation already known, member of no channel."""
    dave = await world.member("dave", "USA")
    return dave, await connect(dave)


async def _send(t: Three, recipients: list[Member], banner: str = REL_USA_GBR) -> int:
    audience, key, audience_id = await _audience(t.usa, t.id, recipients)
    await t.usa.client.create_audience("liaison", audience)
    accepted = await t.usa.client.submit_message(
        "liaison", _message(t.usa, t.id, audience_id, key, banner)
    )
    return int(accepted["seq"])


# --- who is told -----------------------------------------------------------------------------


async def test_a_member_added_or_removed_is_told_to_the_members_and_the_removed(
    world: World, connect: Connect
) -> None:
    t = await _three(world)
    _, outside = await _outsider(world, connect)
    erin = await world.member("erin", "GBR")
    sockets = {m.user.username: await connect(m) for m in (t.usa, t.gbr, t.fra, erin)}
    await _frames(world, outside)  # the notices of the set-up, if any were late

    for ws in sockets.values():
        await _frames(world, ws)
    await t.usa.client.remove_member("liaison", "chloe")
    tag = await _tag(t.usa)
    assert await _frames(world, sockets["alice"]) == [_changed(t.id, tag)]
    assert await _frames(world, sockets["bob"]) == [_changed(t.id, tag)]
    # The member removed learns that it was, and nothing else about the channel.
    removed = {"type": "roster-changed", "channel_id": t.id, "member": False}
    assert await _frames(world, sockets["chloe"]) == [removed]
    assert await _frames(world, sockets["erin"]) == []
    assert await _frames(world, outside) == []

    await t.usa.client.add_member("liaison", "erin")
    tag = await _tag(t.usa)
    for name in ("alice", "bob", "erin"):
        assert await _frames(world, sockets[name]) == [_changed(t.id, tag)], name
    assert await _frames(world, sockets["chloe"]) == []  # no longer a member
    assert await _frames(world, outside) == []


async def test_a_device_enrolled_certified_or_revoked_is_told_to_the_members(
    world: World, connect: Connect
) -> None:
    t = await _three(world)
    _, outside = await _outsider(world, connect)
    fred = await world.user("fred", "GBR")  # a member with no device yet
    await t.usa.client.add_member("liaison", "fred")
    alice, bob = await connect(t.usa), await connect(t.gbr)
    for ws in (alice, bob, outside):
        await _frames(world, ws)

    # Enrolled (pending) and then certified: each changes the roster's tag.
    member = await world.enrolled(fred)
    tag = await _tag(t.usa)
    for ws in (alice, bob):
        frames = await _frames(world, ws)
        assert frames
        assert {f["type"] for f in frames} == {"roster-changed"}
        assert {f["channel_id"] for f in frames} == {t.id}
        assert frames[-1] == _changed(t.id, tag)
    assert await _frames(world, outside) == []

    fred_ws = await connect(member)
    await member.client.revoke_device(member.device_id, "lost")
    tag = await _tag(t.usa)
    # Revoking ends the device's sessions in one statement, which declares the device's
    # change: the members are told, and nobody else (no change of anything).
    for ws in (alice, bob):
        assert await _frames(world, ws) == [_changed(t.id, tag)]
    assert await _frames(world, outside) == []
    # The revoked device's own stream is closed, not told.
    with pytest.raises(websockets.ConnectionClosed):
        await _frames(world, fred_ws)


async def test_a_clearance_changed_is_told_to_the_members(world: World, connect: Connect) -> None:
    t = await _three(world)
    _, outside = await _outsider(world, connect)
    alice, chloe = await connect(t.usa), await connect(t.fra)
    for ws in (alice, chloe, outside):
        await _frames(world, ws)
    async with world.app.state.sessionmaker() as session, session.begin():
        user = await session.get(User, t.gbr.user.id)
        assert user is not None
        user.clearance = {"policy": "NATO", "level": "CONFIDENTIAL", "categories": {}}
    tag = await _tag(t.usa)
    assert await _frames(world, alice) == [_changed(t.id, tag)]
    assert await _frames(world, chloe) == [_changed(t.id, tag)]
    assert await _frames(world, outside) == []


async def test_a_catalog_change_tells_every_stream_without_naming_a_channel(
    world: World, connect: Connect
) -> None:
    t = await _three(world)
    _, outside = await _outsider(world, connect)
    alice = await connect(t.usa)
    for ws in (alice, outside):
        await _frames(world, ws)
    await world.nation("DEU")
    for ws in (alice, outside):
        assert await _frames(world, ws) == [{"type": "roster-changed"}]


async def test_a_user_in_no_channel_changes_without_a_notice_or_a_held_push(
    world: World, connect: Connect
) -> None:
    t = await _three(world)
    alice = await connect(t.usa)
    await _frames(world, alice)
    await world.member("gina", "USA")  # enrolled and certified: a member of nothing
    assert await _frames(world, alice) == []


# --- in order with messages ------------------------------------------------------------------


async def test_a_message_sent_after_a_change_comes_after_its_notice(
    world: World, connect: Connect, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = await _three(world)
    fred = await world.user("fred", "FRA")  # no device: never in an audience
    bob = await connect(t.gbr)
    await _frames(world, bob)
    # Working out whom a change concerns takes a while (a slow database): a message
    # submitted meanwhile waits for the notice, and is then delivered after it.
    real = RosterNotifier.notices

    async def slow(self: RosterNotifier, changes: Sequence[Change]) -> Sequence[Notice]:
        await asyncio.sleep(0.3)
        return await real(self, changes)

    monkeypatch.setattr(RosterNotifier, "notices", slow)

    async def until_message(seq: int) -> list[tuple[str, int | None]]:
        found = []
        while not found or found[-1] != ("message", seq):
            frame = json.loads(await asyncio.wait_for(bob.recv(), 5))
            if frame["type"] != "ping":
                found.append((frame["type"], frame.get("seq")))
        return found

    for change in ("add", "remove", "add"):
        if change == "add":
            await t.usa.client.add_member("liaison", "fred")
        else:
            await t.usa.client.remove_member("liaison", "fred")
        seq = await _send(t, [t.usa, t.gbr])
        assert await until_message(seq) == [("roster-changed", None), ("message", seq)]
    # Two changes before a message: notices may come as one, never after it.
    await t.usa.client.remove_member("liaison", "fred")
    await t.usa.client.add_member("liaison", "fred")
    seq = await _send(t, [t.usa, t.gbr])
    got = await until_message(seq)
    assert got[-1] == ("message", seq)
    assert set(got[:-1]) == {("roster-changed", None)}
    assert await _frames(world, bob) == []
    assert fred.id  # fred was never connected: nothing was kept for him


async def test_a_failing_notifier_tells_every_stream_and_holds_nothing_back(
    world: World, connect: Connect, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = await _three(world)
    bob = await connect(t.gbr)
    await _frames(world, bob)

    async def failing(self: RosterNotifier, changes: Sequence[Change]) -> Sequence[Notice]:
        raise ConnectionError("the database is away")

    monkeypatch.setattr(RosterNotifier, "notices", failing)
    await world.user("fred", "FRA")
    await t.usa.client.add_member("liaison", "fred")
    seq = await _send(t, [t.usa, t.gbr])
    frames = await _frames(world, bob)
    assert frames[-1]["seq"] == seq
    assert {"type": "roster-changed"} in frames[:-1]


# --- the bus alone ---------------------------------------------------------------------------


def _push(seq: int, device_id: str, user_id: str) -> Push:
    return Push(
        seq=seq,
        channel_id="c",
        version=0,
        recipients={device_id: user_id},
        envelopes={device_id: "e"},
        head="{",
        tail="}",
    )


class _Gated:
    """A notifier whose notices wait until the test releases them."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.batches: list[list[str]] = []

    def concerns(self, change: Change) -> bool:
        return change.key.startswith("channel:")

    async def notices(self, changes: Sequence[Change]) -> Sequence[Notice]:
        self.batches.append([c.key for c in changes])
        await self.gate.wait()
        self.gate.clear()
        return [Notice(f"notice {c.key}", frozenset({"u"})) for c in changes]


def _taken(connection: Connection) -> list[str | int]:
    found: list[str | int] = []
    while (item := connection.take()) is not None:
        found.append(item if isinstance(item, str) else item.seq)
    return found


async def test_pushes_wait_only_for_the_notices_of_changes_before_them() -> None:
    bus = InProcessBus()
    notifier = _Gated()
    bus.notify_with(notifier)
    alice = Connection(device_id="d", user_id="u", session_id="s", expires_at=1e12)
    bus.attach(alice)
    bus.publish(_push(1, "d", "u"))  # nothing pending: routed at once
    bus.changes.record([Change("channel:a")])
    bus.publish(_push(2, "d", "u"))  # after channel:a: waits for its notice
    await asyncio.sleep(0)  # the notifier starts on channel:a
    bus.changes.record([Change("channel:b")])
    bus.publish(_push(3, "d", "u"))  # after channel:b: waits for that one too
    bus.changes.record([Change("session:x")])  # of no concern: no notice, no wait
    assert _taken(alice) == [1]
    notifier.gate.set()
    await asyncio.sleep(0.01)
    assert _taken(alice) == ["notice channel:a", 2]
    notifier.gate.set()
    await bus.settled()
    assert _taken(alice) == ["notice channel:b", 3]
    assert notifier.batches == [["channel:a"], ["channel:b"]]
    bus.publish(_push(4, "d", "u"))
    assert _taken(alice) == [4]


async def test_a_notifier_too_slow_lets_the_pushes_go_after_a_notice_to_every_stream(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from server.realtime import bus as bus_module

    monkeypatch.setattr(bus_module, "NOTICE_SECONDS", 0.05)
    bus = InProcessBus()
    bus.notify_with(_Gated())  # never released
    alice = Connection(device_id="d", user_id="u", session_id="s", expires_at=1e12)
    other = Connection(device_id="e", user_id="v", session_id="t", expires_at=1e12)
    bus.attach(alice)
    bus.attach(other)
    bus.changes.record([Change("channel:a")])
    bus.publish(_push(1, "d", "u"))
    assert _taken(alice) == []
    await asyncio.wait_for(bus.settled(), 5)
    assert _taken(alice) == [ANY_ROSTER_CHANGED, 1]
    assert _taken(other) == [ANY_ROSTER_CHANGED]


async def test_closing_the_bus_routes_what_it_held() -> None:
    bus = InProcessBus()
    bus.notify_with(_Gated())
    alice = Connection(device_id="d", user_id="u", session_id="s", expires_at=1e12)
    bus.attach(alice)
    bus.changes.record([Change("channel:a")])
    bus.publish(_push(1, "d", "u"))
    await asyncio.sleep(0)
    await bus.aclose()
    assert _taken(alice) == [1]


def test_a_notice_counts_against_the_mailbox_and_a_resync_covers_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from server.realtime import bus as bus_module

    monkeypatch.setattr(bus_module, "MAILBOX_BYTES", 100)
    alice = Connection(device_id="d", user_id="u", session_id="s", expires_at=1e12)
    alice.offer(ANY_ROSTER_CHANGED, 0.0)
    alice.offer("x" * 90, 0.0)
    # Dropped with the backlog: the resync frame tells the client that any roster may have
    # changed (docs/PROTOCOL.md §17.7).
    assert alice.resync
    assert _taken(alice) == []


# --- at once ---------------------------------------------------------------------------------


async def test_many_membership_changes_at_once_while_messages_flow(
    world: World, connect: Connect
) -> None:
    t = await _three(world)
    # Eight FRA users with devices, connected: never eligible for REL TO USA, GBR, so the
    # messages' audience stays the same while they come and go.
    joiners = [await world.member(f"fr{n}", "FRA") for n in range(8)]
    bob = await connect(t.gbr)
    theirs = [await connect(m) for m in joiners]
    await _frames(world, bob)

    async def churn(name: str) -> None:
        for _ in range(3):
            await t.usa.client.add_member("liaison", name)
            await t.usa.client.remove_member("liaison", name)

    async def flow() -> list[int]:
        return [await _send(t, [t.usa, t.gbr]) for _ in range(12)]

    # Any refusal (a 500 included) raises ApiError here.
    sent, *_ = await asyncio.gather(flow(), *(churn(m.user.username) for m in joiners))
    frames = await _frames(world, bob, quiet=1.0)
    # Nothing lost or repeated, in order, and the last notice names the roster as it is.
    assert [f["seq"] for f in frames if f["type"] == "message"] == sent
    notices = [f for f in frames if f["type"] == "roster-changed"]
    assert notices
    assert notices[-1] == _changed(t.id, await _tag(t.usa))
    for member, ws in zip(joiners, theirs, strict=True):
        got = await _frames(world, ws)
        # Each ends removed, and is told so last; it never saw a message.
        assert {f["type"] for f in got} == {"roster-changed"}, member.user.username
        assert got[-1] == {"type": "roster-changed", "channel_id": t.id, "member": False}


# --- the tag itself ----------------------------------------------------------------------------


async def test_the_roster_tag_is_its_content_the_same_in_every_process(
    world: World, settings: Settings
) -> None:
    """Another server process on the same database (a new app here, with nothing kept) gives
    a roster the same tag, so that a roster fetched from one process and a submit made
    through another agree; every change to what the roster is made of gives a new tag, and
    the same content the same tag again."""
    t = await _three(world)

    async def tag_in_another_process() -> str:
        other = create_app(settings)
        async with (
            other.router.lifespan_context(other),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=other), base_url=TEST_ORIGIN
            ) as http,
        ):
            headers = {"Authorization": f"Bearer {t.usa.client.token}"}
            answer = await http.get("/v1/channels/liaison/roster", headers=headers)
        assert answer.status_code == 200
        return str(answer.headers["etag"])

    first = await _tag(t.usa)
    assert await tag_in_another_process() == first
    seen = {first}

    async def changed() -> None:
        tag = await _tag(t.usa)
        assert tag not in seen
        assert await tag_in_another_process() == tag
        seen.add(tag)

    await t.usa.client.remove_member("liaison", "chloe")
    await changed()
    await t.usa.client.add_member("liaison", "chloe")
    assert await _tag(t.usa) == first  # the same roster as before: the same tag
    async with world.app.state.sessionmaker() as session, session.begin():
        user = await session.get(User, t.gbr.user.id)
        assert user is not None
        user.clearance = {"policy": "NATO", "level": "CONFIDENTIAL", "categories": {}}
    await changed()
    await world.nation("DEU")  # a nation the catalog already lists: the catalog is the same
    assert await _tag(t.usa) in seen
    async with world.app.state.sessionmaker() as session, session.begin():
        session.add(PartnerGroup(name="LIAISON"))  # a partner group: the catalog changed
        await session.flush()
        session.add(PartnerGroupMember(group_name="LIAISON", nation_code="USA"))
    await changed()
    member = await world.enrolled(await world.user("fred", "GBR"))
    await t.usa.client.add_member("liaison", "fred")
    await changed()
    await member.client.revoke_device(member.device_id, "lost")
    await changed()
