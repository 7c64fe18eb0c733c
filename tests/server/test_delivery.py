"""Live delivery: decided once at submit, routed by device, decided again from memory.

The stream's own protocol (auth, garbage, silence) is in test_stream.py; here the pushes are
taken from the bus with connections that stand in for open streams, so that each step of the
decision can be watched: which connections a push reaches, whether deciding it again reads
the database, and what a change made between submit and push does to it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from sqlalchemy import event, update

from clients.sdk import ApiError
from server.auth.service import access_principal
from server.channels.models import Message
from server.db.changes import ANY, Change, ChangeLog
from server.directory.models import Office, User
from server.realtime.bus import Connection, Push
from tests.factories import Member, World
from tests.race import Call, assert_no_server_error, describe, one_winner, race_same
from tests.server.test_channels import (
    REL_USA_GBR,
    _audience,
    _count,
    _events,
    _message,
    _three,
)

# --- the change log --------------------------------------------------------------------------


def test_a_decision_holds_until_a_key_it_depends_on_changes() -> None:
    log = ChangeLog()
    at = log.version
    assert not log.changed_since(at, ["channel:a", "user:u"])
    log.record([Change("channel:b"), Change("user:v")])
    assert not log.changed_since(at, ["channel:a", "user:u"])
    log.record([Change("user:u")])
    assert log.changed_since(at, ["channel:a", "user:u"])
    assert not log.changed_since(log.version, ["channel:a", "user:u"])


@pytest.mark.parametrize("key", [ANY, "catalog"])
def test_a_change_to_anything_or_the_catalog_touches_every_decision(key: str) -> None:
    log = ChangeLog()
    at = log.version
    log.record([Change(key)])
    assert log.changed_since(at, ["channel:a"])


def test_a_version_older_than_what_is_kept_counts_as_changed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log = ChangeLog()
    at = log.version
    for n in range(5000):  # more than the log retains
        log.record([Change(f"user:{n}")])
    assert log.changed_since(at, ["channel:unrelated"])
    assert not log.changed_since(log.version - 1, ["channel:unrelated"])


# --- helpers ---------------------------------------------------------------------------------


async def _standing_in(member: Member, world: World) -> Connection:
    """A connection for ``member``'s device, attached to the bus as an open stream is."""
    async with world.app.state.sessionmaker() as session:
        principal = await access_principal(session, member.client.token)
    connection = Connection(
        device_id=member.device_id,
        user_id=member.user.id,
        session_id=principal.session_id,
        expires_at=time.time() + 3600,
    )
    world.app.state.bus.attach(connection)
    return connection


async def _send(t: Any, recipients: list[Member], banner: str) -> dict[str, Any]:
    audience, key, audience_id = await _audience(t.usa, t.id, recipients)
    await t.usa.client.create_audience("liaison", audience)
    message = _message(t.usa, t.id, audience_id, key, banner)
    accepted: dict[str, Any] = await t.usa.client.submit_message("liaison", message)
    return accepted


def _pushes(connection: Connection) -> list[Push]:
    """The pushes queued for ``connection`` (notices of changes, also queued, are passed)."""
    found = []
    while (item := connection.take()) is not None:
        if isinstance(item, Push):
            found.append(item)
    return found


@asynccontextmanager
async def _statements(world: World) -> AsyncIterator[list[str]]:
    """Every SQL statement the app runs while the block runs.

    The notices of the set-up's changes are worked out first: they run as a task of their own
    and read the channel's devices, which would otherwise be counted against the block (it
    happened once in CI, on PostgreSQL)."""
    await world.app.state.bus.settled()
    seen: list[str] = []
    engine = world.app.state.engine.sync_engine

    def record(*args: Any) -> None:
        seen.append(str(args[2]))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


# --- routing ---------------------------------------------------------------------------------


async def test_a_push_reaches_only_its_recipients_streams(world: World) -> None:
    t = await _three(world)
    await world.nation("DEU")
    idle = await world.member("dieter", "DEU")  # connected, member of nothing
    streams = {m.user.username: await _standing_in(m, world) for m in (t.usa, t.gbr, t.fra, idle)}
    accepted = await _send(t, [t.usa, t.gbr], REL_USA_GBR)
    routed = {name: _pushes(c) for name, c in streams.items()}
    assert [p.seq for p in routed["alice"]] == [accepted["seq"]]
    assert [p.seq for p in routed["bob"]] == [accepted["seq"]]
    assert routed["chloe"] == []
    assert routed["dieter"] == []
    # Each device's frame carries its own envelope and no other.
    (push,) = routed["bob"]
    frame = push.frame_for(t.gbr.device_id)
    assert push.envelopes[t.gbr.device_id] in frame
    assert push.envelopes[t.usa.device_id] not in frame


async def test_a_pushed_frame_is_the_item_sync_gives(world: World) -> None:
    # The push's frame is built without pydantic (DeliveryRead.pushed); sync's item with it.
    t = await _three(world)
    bob = await _standing_in(t.gbr, world)
    accepted = await _send(t, [t.usa, t.gbr], REL_USA_GBR)
    (push,) = _pushes(bob)
    page = await t.gbr.client.sync()
    (item,) = [i for i in page["items"] if i["seq"] == accepted["seq"]]
    assert json.loads(push.frame_for(t.gbr.device_id)) == {"type": "message", **item}
    assert list(json.loads(push.frame_for(t.gbr.device_id))) == ["type", *item]


async def test_a_push_is_decided_again_from_memory_without_sql(world: World) -> None:
    t = await _three(world)
    bob = await _standing_in(t.gbr, world)
    await _send(t, [t.usa, t.gbr], REL_USA_GBR)
    (push,) = _pushes(bob)
    async with _statements(world) as statements:
        assert await world.app.state.gate.admit(bob, push)
    assert statements == []


async def test_a_change_elsewhere_does_not_cost_a_query(world: World) -> None:
    t = await _three(world)
    bob = await _standing_in(t.gbr, world)
    await _send(t, [t.usa, t.gbr], REL_USA_GBR)
    (push,) = _pushes(bob)
    # A user enrolled and a device certified, of no concern to this channel (a new nation
    # would be: it changes the catalog, which every decision reads).
    await world.member("dave", "USA")
    async with _statements(world) as statements:
        assert await world.app.state.gate.admit(bob, push)
    assert statements == []


async def test_a_removal_after_submit_withholds_the_push_and_audits_it_once(
    world: World,
) -> None:
    t = await _three(world)
    bob = await _standing_in(t.gbr, world)
    await _send(t, [t.usa, t.gbr], REL_USA_GBR)
    (push,) = _pushes(bob)
    await t.usa.client.remove_member("liaison", "bob")
    assert not await world.app.state.gate.admit(bob, push)
    assert not await world.app.state.gate.admit(bob, push)
    withheld = await _events(world, "message.withhold", "deny")
    assert [(e.actor_user_id, e.reasons) for e in withheld] == [(t.gbr.user.id, ["not a member"])]


async def test_a_withholding_raced_by_pushes_and_syncs_is_recorded_once(world: World) -> None:
    from server.channels.models import Delivery

    t = await _three(world)
    bob = await _standing_in(t.gbr, world)
    await _send(t, [t.usa, t.gbr], REL_USA_GBR)
    (push,) = _pushes(bob)
    await t.usa.client.remove_member("liaison", "bob")
    # Pushes and syncs for the same device and message at once: none fails, one records.
    gate = world.app.state.gate
    tries = [gate.admit(bob, push) for _ in range(4)] + [t.gbr.client.sync() for _ in range(4)]
    results = await asyncio.gather(*tries)
    assert results[:4] == [False] * 4
    assert all(r["items"] == [] for r in results[4:])
    assert await _count(world, Delivery) == 1
    assert len(await _events(world, "message.withhold", "deny")) == 1


async def test_a_lowered_clearance_withholds_a_push_in_flight(world: World) -> None:
    t = await _three(world)
    bob = await _standing_in(t.gbr, world)
    await _send(t, [t.usa, t.gbr], REL_USA_GBR)
    (push,) = _pushes(bob)
    # Bob's clearance is lowered after the submit and before the push is written.
    async with world.app.state.sessionmaker() as session, session.begin():
        user = await session.get(User, t.gbr.user.id)
        assert user is not None
        user.clearance = {"policy": "NATO", "level": "CONFIDENTIAL", "categories": {}}
    assert not await world.app.state.gate.admit(bob, push)
    (withheld,) = await _events(world, "message.withhold", "deny")
    assert withheld.reasons == ["clearance NATO CONFIDENTIAL below NATO SECRET"]


async def test_logout_and_revocation_close_open_streams_at_once(world: World) -> None:
    t = await _three(world)
    bob, chloe = await _standing_in(t.gbr, world), await _standing_in(t.fra, world)
    await t.gbr.client.logout()
    assert bob.closing is not None
    assert bob.closing[0] == 4401
    assert chloe.closing is None
    await t.fra.client.revoke_device(t.fra.device_id, "lost")
    assert chloe.closing is not None


async def test_a_disabled_account_closes_its_open_streams_at_once(world: World) -> None:
    t = await _three(world)
    bob, chloe = await _standing_in(t.gbr, world), await _standing_in(t.fra, world)
    async with world.app.state.sessionmaker() as session, session.begin():
        user = await session.get(User, t.gbr.user.id)
        assert user is not None
        user.active = False
    assert bob.closing == (4401, "the account was disabled")
    assert chloe.closing is None


async def test_a_rolled_back_change_announces_nothing(world: World) -> None:
    t = await _three(world)
    bob = await _standing_in(t.gbr, world)
    log = world.app.state.bus.changes
    before = log.version
    async with world.app.state.sessionmaker() as session:
        user = await session.get(User, t.gbr.user.id)
        assert user is not None
        user.active = False
        await session.flush()
        await session.rollback()
        # The same session commits later: what was rolled back is not announced then either.
        session.add(Office(nation_code="GBR", name="British Liaison Office"))
        await session.commit()
    assert log.version == before
    assert bob.closing is None


async def test_a_bulk_statement_on_a_decision_table_counts_as_any_change(world: World) -> None:
    t = await _three(world)
    log = world.app.state.bus.changes
    before = log.version
    async with world.app.state.sessionmaker() as session, session.begin():
        await session.execute(
            update(User).where(User.id == t.gbr.user.id).values(display_name="Bob")
        )
    # It names no rows, so every decision made before it is made again.
    assert log.changed_since(before, ["channel:unrelated"])


async def test_a_slow_consumer_is_moved_to_sync(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from server.realtime import bus

    monkeypatch.setattr(bus, "MAILBOX_BYTES", 10_000)
    t = await _three(world)
    bob = await _standing_in(t.gbr, world)
    for _ in range(5):
        await _send(t, [t.usa, t.gbr], REL_USA_GBR)
    # Its backlog outgrew its bound: dropped, and the stream is told to resync by cursor.
    assert bob.resync
    assert bob.queued_bytes <= 10_000


# --- who is calling, from memory -------------------------------------------------------------


async def test_a_known_session_is_recognised_without_reading_it_until_it_ends(
    world: World,
) -> None:
    t = await _three(world)
    await t.gbr.client.me()
    async with _statements(world) as statements:
        me = await t.gbr.client.me()
    assert me["username"] == "bob"
    assert not [s for s in statements if "session_tokens" in s or "FROM devices" in s]
    # Ending the session or revoking the device is seen at once by the next request.
    ended = world.client(t.gbr.client.token)
    await t.gbr.client.logout()
    revoked = world.client(t.fra.client.token)
    await t.fra.client.revoke_device(t.fra.device_id, "lost")
    for client in (ended, revoked):
        with pytest.raises(ApiError) as refused:
            await client.me()
        assert refused.value.status == 401


# --- sync ------------------------------------------------------------------------------------


async def test_sync_reads_a_page_in_a_fixed_number_of_queries(world: World) -> None:
    t = await _three(world)
    audience, key, audience_id = await _audience(t.usa, t.id, [t.usa, t.gbr])
    await t.usa.client.create_audience("liaison", audience)

    async def send(count: int) -> None:
        for _ in range(count):
            await t.usa.client.submit_message(
                "liaison", _message(t.usa, t.id, audience_id, key, REL_USA_GBR)
            )

    async def queries_for_a_page_of(count: int, after: int) -> tuple[int, int]:
        await send(count)
        async with _statements(world) as statements:
            page = await t.gbr.client.sync(after=after)
        assert len(page["items"]) == count
        return len(statements), int(page["cursor"])

    await t.gbr.client.sync()  # the session is read once, then known
    few, cursor = await queries_for_a_page_of(2, 0)
    many, _ = await queries_for_a_page_of(20, cursor)
    assert many == few


# --- idempotent under a race -----------------------------------------------------------------


async def test_one_message_submitted_eight_times_at_once_is_created_once(
    world: World, live_url: str
) -> None:
    t = await _three(world)
    audience, key, audience_id = await _audience(t.usa, t.id, [t.usa, t.gbr])
    await t.usa.client.create_audience("liaison", audience)
    sealed = _message(t.usa, t.id, audience_id, key, REL_USA_GBR)
    call = Call(
        "POST",
        "/v1/channels/liaison/messages",
        json=sealed,
        headers={"Authorization": f"Bearer {t.usa.client.token}"},
    )
    responses = await race_same(live_url, call, 8)
    assert_no_server_error(responses)
    assert sorted(r.status_code for r in responses) == [200] * 7 + [201], describe(responses)
    assert sorted(r.json()["created"] for r in responses) == [False] * 7 + [True]
    assert {r.json()["seq"] for r in responses} == {responses[0].json()["seq"]}
    assert await _count(world, Message) == 1
    assert len(await _events(world, "message.submit")) == 1


async def test_a_channel_created_eight_times_at_once_exists_once(
    world: World, live_url: str
) -> None:
    await world.nation("USA")
    alice = await world.member("alice", "USA")
    call = Call(
        "POST",
        "/v1/channels",
        json={"name": "cell", "ceiling": "NATO SECRET"},
        headers={"Authorization": f"Bearer {alice.client.token}"},
    )
    one_winner(await race_same(live_url, call, 8), refused=409)
    assert len(await alice.client.channels()) == 1


async def test_a_resubmit_is_answered_from_the_stored_message_whatever_its_roster_tag(
    world: World,
) -> None:
    t = await _three(world)
    _, tag = await t.usa.client.roster_if_changed("liaison", None)
    audience, key, audience_id = await _audience(t.usa, t.id, [t.usa, t.gbr])
    await t.usa.client.create_audience("liaison", audience)
    sealed = _message(t.usa, t.id, audience_id, key, REL_USA_GBR)
    first = await t.usa.client.submit_message("liaison", sealed, roster_tag=tag)
    await world.member("dave", "USA")
    await t.usa.client.add_member("liaison", "dave")  # the roster's tag changes
    again = await t.usa.client.submit_message("liaison", sealed, roster_tag=tag)
    assert again["created"] is False
    assert again["seq"] == first["seq"]
    # A new message under the old tag is told to look again.
    fresh = _message(t.usa, t.id, audience_id, key, REL_USA_GBR)
    with pytest.raises(ApiError) as refused:
        await t.usa.client.submit_message("liaison", fresh, roster_tag=tag)
    assert refused.value.code == "roster-changed"


async def test_a_member_added_or_removed_eight_times_at_once_changes_once(
    world: World, live_url: str
) -> None:
    t = await _three(world)
    await world.member("dave", "USA")
    auth = {"Authorization": f"Bearer {t.usa.client.token}"}
    add = Call("POST", "/v1/channels/liaison/members", json={"user": "dave"}, headers=auth)
    one_winner(await race_same(live_url, add, 8), refused=409)
    remove = Call("DELETE", "/v1/channels/liaison/members/dave", headers=auth)
    one_winner(await race_same(live_url, remove, 8), refused=404)
    members = (await t.usa.client.channel("liaison"))["members"]
    assert "dave" not in {m["username"] for m in members}


async def test_an_audience_created_eight_times_at_once_is_stored_once(
    world: World, live_url: str
) -> None:
    t = await _three(world)
    audience, _, _ = await _audience(t.usa, t.id, [t.usa, t.gbr])
    call = Call(
        "POST",
        "/v1/channels/liaison/audiences",
        json=audience,
        headers={"Authorization": f"Bearer {t.usa.client.token}"},
    )
    one_winner(await race_same(live_url, call, 8), refused=409)


async def test_no_request_keeps_a_connection_or_a_session(world: World) -> None:
    # Requests served from the caches skip closing their session (it holds nothing); every
    # other one gives its connection back. Neither leaves one checked out of the pool, nor
    # a session alive with instances in it.
    t = await _three(world)
    pool = world.app.state.engine.sync_engine.pool
    for _ in range(3):
        await t.gbr.client.me()  # served from the caches after the first
        await t.gbr.client.sync()  # reads the database
        await _send(t, [t.usa, t.gbr], REL_USA_GBR)
    assert pool.checkedout() == 0
    with pytest.raises(ApiError):
        await t.gbr.client.request("GET", "/v1/channels/no-such-channel")
    assert pool.checkedout() == 0
