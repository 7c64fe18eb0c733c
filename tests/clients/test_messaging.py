"""The Messenger: labelled messages sealed only to the devices whose certificates say they may
have them, verified before they are shown, delivered by sync and live.

The world: alice (USA), bob (GBR) and chloe (FRA), each cleared NATO SECRET, members of the
channel ``liaison`` with the ceiling NATO SECRET.
"""

from __future__ import annotations

import asyncio
import copy
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update

from clients.sdk import (
    ApiError,
    AttacheClient,
    Backoff,
    ConnectionFailed,
    MessagingError,
    Messenger,
    ReceivedMessage,
    StreamClosed,
)
from protocol import envelopes, keys
from protocol.labels import parse_label
from server.audit.models import AuditEvent
from server.auth.models import SessionToken
from server.channels.models import Audience, Message
from server.db.base import utcnow
from server.devices.models import Device
from server.realtime import bus
from tests.factories import PASSPHRASE, Member, World

REL_USA_GBR = "NATO SECRET//REL TO USA, GBR"


@dataclass
class Trio:
    alice: Member
    bob: Member
    chloe: Member
    am: Messenger
    bm: Messenger
    cm: Messenger


async def _messenger(member: Member, client: AttacheClient | None = None) -> Messenger:
    return await Messenger.from_client(
        client or member.client, member.keystore, member.device_keys, owns_client=False
    )


async def _trio(world: World) -> Trio:
    for nation in ("USA", "GBR", "FRA"):
        await world.nation(nation)
    alice = await world.member("alice", "USA")
    bob = await world.member("bob", "GBR")
    chloe = await world.member("chloe", "FRA")
    await alice.client.create_channel("liaison", "NATO SECRET")
    await alice.client.add_member("liaison", "bob")
    await alice.client.add_member("liaison", "chloe")
    return Trio(
        alice, bob, chloe, await _messenger(alice), await _messenger(bob), await _messenger(chloe)
    )


async def _count(world: World, model: Any) -> int:
    async with world.app.state.sessionmaker() as session:
        return int((await session.execute(select(func.count()).select_from(model))).scalar_one())


async def _events(world: World, action: str) -> list[AuditEvent]:
    async with world.app.state.sessionmaker() as session:
        stmt = select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
        return list((await session.execute(stmt)).scalars().all())


def _assert_trusted(message: ReceivedMessage, text: str, sender: str, nation: str) -> None:
    assert message.verified, message.problem
    assert message.problem is None
    assert message.text == text
    assert message.sender == sender
    assert message.sender_nation == nation


# --- the issue's done-when -------------------------------------------------------------------


async def test_a_message_reaches_only_the_nations_it_is_released_to(world: World) -> None:
    t = await _trio(world)
    sent = await t.am.send("liaison", "Meeting moved to 14:00", label=REL_USA_GBR)
    assert sent.banner == REL_USA_GBR
    assert sorted(sent.released_to) == sorted([t.alice.device_id, t.bob.device_id])
    assert sent.excluded == ()

    for messenger, reader in ((t.am, "alice"), (t.bm, "bob")):
        received = await messenger.sync()
        assert len(received) == 1, reader
        message = received[0]
        _assert_trusted(message, "Meeting moved to 14:00", "alice", "USA")
        assert message.banner == REL_USA_GBR
        assert message.seq == sent.seq
        assert message.message_id == sent.message_id
        assert message.label is not None
        assert message.label.originator == "USA"
        assert message.sent_at is not None
        assert abs(datetime.now(UTC) - message.sent_at) < timedelta(minutes=1)
        assert messenger.cursor == sent.seq
    assert await t.cm.sync() == []
    assert await t.cm.read("liaison") == []

    (event,) = await _events(world, "message.submit")
    assert event.decision == "allow"
    assert event.object_id == sent.message_id
    assert event.label_banner == REL_USA_GBR
    assert [entry["nation"] for entry in event.details["not_released"]] == ["FRA"]
    assert event.details["not_released"][0]["user_id"] == t.chloe.user.id
    assert "nationality FRA not in REL TO USA, GBR" in event.details["not_released"][0]["reasons"]
    assert {entry["nation"] for entry in event.details["released_to"]} == {"USA", "GBR"}


async def test_read_gives_one_channel_and_the_default_label(world: World) -> None:
    t = await _trio(world)
    await t.alice.client.create_channel("usa-gbr", "NATO SECRET")
    await t.alice.client.add_member("usa-gbr", "bob")
    first = await t.am.send("liaison", "to all three")  # the channel's default label
    await t.am.send("usa-gbr", "elsewhere", label=REL_USA_GBR)
    assert first.banner == "NATO SECRET"
    (only,) = await t.cm.read("liaison")
    _assert_trusted(only, "to all three", "alice", "USA")
    assert only.banner == "NATO SECRET"
    texts = [m.text for m in await t.bm.read("liaison")]
    assert texts == ["to all three"]
    assert [m.text for m in await t.bm.read("liaison", after=first.seq)] == []
    assert [m.text for m in await t.bm.sync()] == ["to all three", "elsewhere"]


async def test_open_signs_in_with_the_device_key(world: World) -> None:
    t = await _trio(world)
    async with await Messenger.open(
        t.bob.keystore, passphrase=PASSPHRASE, transport=world.transport
    ) as m:
        assert (m.username, m.nationality) == ("bob", "GBR")
        await m.send("liaison", "from a fresh session", label=REL_USA_GBR)
    (message,) = await t.am.read("liaison")
    _assert_trusted(message, "from a fresh session", "bob", "GBR")
    assert t.bob.keystore.session_token() is not None


# --- sending ---------------------------------------------------------------------------------


async def test_audiences_are_reused_until_the_eligible_devices_change(world: World) -> None:
    t = await _trio(world)
    await t.am.send("liaison", "one", label=REL_USA_GBR)
    await t.am.send("liaison", "two", label=REL_USA_GBR)
    assert await _count(world, Audience) == 1
    await t.am.send("liaison", "three")  # NATO SECRET: chloe too
    assert await _count(world, Audience) == 2
    await t.alice.client.remove_member("liaison", "chloe")
    await t.am.send("liaison", "four")
    assert await _count(world, Audience) == 3
    assert [m.text for m in await t.bm.sync()] == ["one", "two", "three", "four"]
    assert [m.text for m in await t.cm.sync()] == []  # left the channel: withheld


async def test_a_member_joining_before_submit_gets_a_new_audience(world: World) -> None:
    t = await _trio(world)
    dave = await world.member("dave", "GBR")
    joined = False

    class JoinBeforeAudience(httpx.AsyncBaseTransport):
        """Adds dave between the roster fetch and the submit, as a race would."""

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            nonlocal joined
            if request.method == "POST" and request.url.path.endswith("/audiences") and not joined:
                joined = True
                await t.bob.client.add_member("liaison", "dave")
            return await world.transport.handle_async_request(request)

    racing = AttacheClient(world.origin, token=t.alice.client.token, transport=JoinBeforeAudience())
    async with racing:
        m = await _messenger(t.alice, racing)
        sent = await m.send("liaison", "welcome", label=REL_USA_GBR)
    assert joined
    assert dave.device_id in sent.released_to
    assert await _count(world, Audience) == 2  # the first one, then one with dave
    (message,) = await (await _messenger(dave)).sync()
    _assert_trusted(message, "welcome", "alice", "USA")


async def test_a_forged_certificate_in_the_roster_is_never_sealed_to(world: World) -> None:
    t = await _trio(world)
    # The server (or whoever holds its database) claims chloe is American, with a certificate
    # signed by a key no nation pinned.
    forger = keys.AuthorityKey.generate()
    now = datetime.now(UTC)
    forged = keys.issue_certificate(
        forger,
        device_id=t.chloe.device_id,
        user_id=t.chloe.user.id,
        username="chloe",
        nationality="USA",
        clearance={"policy": "NATO", "level": "SECRET", "categories": {}},
        device_keys=t.chloe.device_keys.public(),
        issued_at=now,
        expires_at=now + timedelta(days=1),
    )
    async with world.app.state.sessionmaker() as session, session.begin():
        await session.execute(
            update(Device)
            .where(Device.id == t.chloe.device_id)
            .values(certificate=forged.to_json())
        )
    sent = await t.am.send("liaison", "not for chloe", label=REL_USA_GBR)
    (excluded,) = sent.excluded
    assert excluded.device_id == t.chloe.device_id
    assert excluded.username == "chloe"
    assert "does not verify" in excluded.reason
    async with world.app.state.sessionmaker() as session:
        (audience,) = (await session.execute(select(Audience))).scalars().all()
    assert t.chloe.device_id not in audience.header["devices"]
    assert await t.cm.sync() == []


async def test_a_server_insisting_on_a_device_it_rekeyed_gets_nothing(world: World) -> None:
    t = await _trio(world)
    # The server swaps bob's encryption key for one it holds: bob's certificate no longer
    # matches, so the client will not seal to it, and the server wants bob's device.
    substitute = keys.DeviceKeys.generate().public().encryption_key
    async with world.app.state.sessionmaker() as session, session.begin():
        await session.execute(
            update(Device).where(Device.id == t.bob.device_id).values(encryption_key=substitute)
        )
    with pytest.raises(MessagingError) as refused:
        await t.am.send("liaison", "secret", label=REL_USA_GBR)
    assert str(refused.value).startswith("not sent: the server requires devices this client")
    assert t.bob.device_id in str(refused.value)
    assert "keys other than the certified ones" in str(refused.value)
    assert await _count(world, Message) == 0


async def test_a_nation_registered_after_enrolment_is_pinned_on_first_use(world: World) -> None:
    await world.nation("USA")
    await world.nation("GBR")
    alice = await world.member("alice", "USA")
    await world.nation("FRA")  # after alice pinned USA and GBR
    chloe = await world.member("chloe", "FRA")
    assert "FRA" not in alice.keystore.pins()
    await alice.client.create_channel("liaison", "NATO SECRET")
    await alice.client.add_member("liaison", "chloe")
    am = await _messenger(alice)
    sent = await am.send("liaison", "bonjour", label="NATO SECRET//REL TO USA, FRA")
    assert sent.excluded == ()
    assert chloe.device_id in sent.released_to
    assert alice.keystore.pins()["FRA"] == world.authorities["FRA"].public_bytes()
    (message,) = await (await _messenger(chloe)).sync()
    _assert_trusted(message, "bonjour", "alice", "USA")


async def test_refusals_say_why_in_a_sentence(world: World) -> None:
    t = await _trio(world)
    # bob may not send what he may not read: the server's refusal carries its reasons.
    with pytest.raises(ApiError) as refused:
        await t.bm.send("liaison", "x", label="NATO SECRET//REL TO USA, FRA")
    assert refused.value.status == 403
    assert refused.value.code == "refused"
    assert "nationality GBR not in REL TO USA, FRA" in refused.value.detail
    assert refused.value.problem["reasons"]
    # Above the ceiling: no one here may have it, this device included.
    with pytest.raises(MessagingError, match="you may not send COSMIC TOP SECRET here"):
        await t.am.send("liaison", "x", label="COSMIC TOP SECRET")
    with pytest.raises(MessagingError, match="label 'NATO SEKRET'"):
        await t.am.send("liaison", "x", label="NATO SEKRET")
    with pytest.raises(ApiError, match="no channel 'nowhere' of yours"):
        await t.am.send("nowhere", "x")
    with pytest.raises(MessagingError, match="the message is longer than 256 KiB"):
        await t.am.send("liaison", "x" * (256 * 1024 + 1))
    with pytest.raises(MessagingError, match=r"cannot seal the message: .*reply_to"):
        await t.am.send("liaison", "x", reply_to="not-a-uuid")
    assert await _count(world, Message) == 0


# --- reading ---------------------------------------------------------------------------------


@dataclass
class Scene:
    """What a tamperer has to hand: the trio, alice's roster, and another audience's envelope
    for bob."""

    t: Trio
    roster: list[dict[str, Any]]
    other_envelope: str


def _tamper_body(item: dict[str, Any], _: Scene) -> None:
    body = item["message"]["body"]
    item["message"]["body"] = ("B" if body[10] != "B" else "C").join((body[:10], body[11:]))


def _tamper_signed_label(item: dict[str, Any], _: Scene) -> None:
    item["message"]["header"]["label"]["rel_to"].append("FRA")
    item["label"] = "NATO SECRET//REL TO USA, GBR, FRA"


def _tamper_shown_label(item: dict[str, Any], _: Scene) -> None:
    item["label"] = "NATO UNCLASSIFIED"


def _other_channel(item: dict[str, Any], _: Scene) -> None:
    item["channel_id"] = "another-channel"


def _no_certificate(item: dict[str, Any], _: Scene) -> None:
    item["sender_certificate"] = None


def _someone_elses_certificate(item: dict[str, Any], s: Scene) -> None:
    bob = s.t.bob.device_id
    item["sender_certificate"] = next(d["certificate"] for d in s.roster if d["device_id"] == bob)


def _self_signed_certificate(item: dict[str, Any], s: Scene) -> None:
    body = dict(item["sender_certificate"]["body"])
    forger = keys.AuthorityKey.generate()
    now = datetime.now(UTC)
    item["sender_certificate"] = keys.issue_certificate(
        forger,
        device_id=body["device_id"],
        user_id=body["user_id"],
        username=body["username"],
        nationality=body["nationality"],
        clearance=body["clearance"],
        device_keys=s.t.alice.device_keys.public(),
        issued_at=now,
        expires_at=now + timedelta(days=1),
    ).to_json()


def _other_envelope(item: dict[str, Any], s: Scene) -> None:
    item["audience"]["envelope"] = s.other_envelope


def _garbage(item: dict[str, Any], _: Scene) -> None:
    item["message"] = "not a message"


def _no_audience(item: dict[str, Any], _: Scene) -> None:
    item["audience"] = None


TAMPERING: dict[str, tuple[Callable[[dict[str, Any], Scene], None], str]] = {
    "body": (_tamper_body, "the message does not verify or decrypt: message signature"),
    "signed label": (_tamper_signed_label, "the message does not verify or decrypt"),
    "shown label": (_tamper_shown_label, "the server shows the label 'NATO UNCLASSIFIED'"),
    "channel": (_other_channel, "sent to another channel than it was delivered in"),
    "no certificate": (_no_certificate, "the device has no certificate"),
    "someone else's certificate": (
        _someone_elses_certificate,
        "certificate is for another device or user than the message names",
    ),
    "self-signed certificate": (
        _self_signed_certificate,
        "the sender's device cannot be trusted: its certificate does not verify",
    ),
    "other envelope": (_other_envelope, "the message does not verify or decrypt"),
    "garbage": (_garbage, "the message is malformed: sealed message is not a JSON object"),
    "no audience": (_no_audience, "the delivered item is malformed"),
}


@pytest.mark.parametrize("case", list(TAMPERING))
async def test_a_tampered_item_is_reported_unverified(world: World, case: str) -> None:
    t = await _trio(world)
    await t.am.send("liaison", "an envelope for bob", label=REL_USA_GBR)
    await t.am.send("liaison", "the real one", label=REL_USA_GBR)
    items = (await t.bob.client.sync())["items"]
    assert len(items) == 2
    # bob's envelope of another audience: his own device, the wrong audience key.
    await t.am.send("liaison", "x", label="NATO SECRET")
    later = (await t.bob.client.sync(after=items[-1]["seq"]))["items"]
    scene = Scene(t, await t.alice.client.roster("liaison"), later[0]["audience"]["envelope"])
    item = copy.deepcopy(items[-1])
    assert (await t.bm.open_item(item)).verified
    tamper, problem = TAMPERING[case]
    tamper(item, scene)
    opened = await t.bm.open_item(item)
    assert not opened.verified
    assert opened.text is None
    assert opened.label is None
    assert opened.problem is not None
    assert problem in opened.problem
    assert opened.seq == item["seq"]


# --- live ------------------------------------------------------------------------------------


async def test_listen_delivers_live_to_the_released_devices_only(world: World, live: str) -> None:
    t = await _trio(world)
    async with t.bm.stream() as bob_live, t.cm.stream() as chloe_live:
        sent = await t.am.send("liaison", "live and labelled", label=REL_USA_GBR)
        got = await asyncio.wait_for(anext(bob_live), 5)
        _assert_trusted(got, "live and labelled", "alice", "USA")
        assert got.seq == sent.seq
        assert t.bm.cursor == sent.seq
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(anext(chloe_live), 0.5)
        await t.am.send("liaison", "for all three")
        chloe_got = await asyncio.wait_for(anext(chloe_live), 5)
        _assert_trusted(chloe_got, "for all three", "alice", "USA")


async def test_a_stream_reads_pushes_that_came_together_in_one_frame(
    world: World, live: str
) -> None:
    from tests.server.test_delivery import _pushes, _standing_in

    t = await _trio(world)
    standing = await _standing_in(t.bob, world)
    sent = [await t.am.send("liaison", f"number {n}", label=REL_USA_GBR) for n in range(3)]
    pushes = _pushes(standing)
    world.app.state.bus.detach(standing)
    assert [p.seq for p in pushes] == [s.seq for s in sent]
    async with t.bm.stream() as bob_live:
        (connection,) = world.app.state.bus._by_device[t.bob.device_id]
        assert connection.batches  # the SDK said it reads messages frames
        for push in pushes:  # published together, as one commit of three submits does
            world.app.state.bus.publish(push)
        for n, expected in enumerate(sent):
            got = await asyncio.wait_for(anext(bob_live), 5)
            _assert_trusted(got, f"number {n}", "alice", "USA")
            assert got.seq == expected.seq
        assert t.bm.cursor == sent[-1].seq
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(anext(bob_live), 0.3)


async def test_listen_catches_up_on_resync(
    world: World, live: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = await _trio(world)
    missed = await t.am.send("liaison", "sent while bob was away", label=REL_USA_GBR)
    monkeypatch.setattr(bus, "MAILBOX_BYTES", 1)
    received: list[ReceivedMessage] = []

    async def listen() -> None:
        async for message in t.bm.listen():
            received.append(message)
            return

    listening = asyncio.create_task(listen())
    await _until(lambda: world.app.state.bus.subscribers == 1)
    # Two pushes at once overflow bob's one-byte mailbox: the gateway tells him to resync.
    gone = _push_without_an_envelope_for(t.bm)
    world.app.state.bus.publish(gone)
    world.app.state.bus.publish(gone)
    await asyncio.wait_for(listening, 5)
    (message,) = received
    _assert_trusted(message, "sent while bob was away", "alice", "USA")
    assert message.seq == missed.seq


def _push_without_an_envelope_for(messenger: Messenger) -> bus.Push:
    """A push routed to ``messenger``'s device that holds no envelope for it: the gateway
    takes it from the mailbox and writes nothing."""
    return bus.Push(
        seq=10**9,
        channel_id="none",
        version=0,
        recipients={messenger.device_id: messenger.user_id},
        envelopes={},
        head="{",
        tail="}",
    )


@pytest.mark.parametrize("keepalive", [0.2, 100.0])
async def test_listen_keeps_a_busy_line_open(world: World, live: str, keepalive: float) -> None:
    t = await _trio(world)
    # The server pings only when it has nothing to push, and closes a connection that has
    # said nothing for ws_idle_seconds: on a line that is never quiet, the client must ping.
    # The idle time leaves the pinging client a second and more of slack (a loaded machine
    # once delayed its 0.2 s ping past an idle time of 0.6 s); the line stays busy for twice
    # the idle time, so the client that does not ping is closed.
    world.app.state.settings.ws_idle_seconds = 1.5
    async with t.bm.stream(keepalive=keepalive) as bob_live:

        async def busy() -> None:
            # Pushes routed to bob that the gate then refuses: nothing is written.
            refused = _push_without_an_envelope_for(t.bm)
            for _ in range(30):
                world.app.state.bus.publish(refused)
                await asyncio.sleep(0.1)

        await busy()
        if keepalive > 1:
            with pytest.raises(ConnectionFailed, match="no frame from the client in time"):
                await asyncio.wait_for(anext(bob_live), 5)
            return
        await t.am.send("liaison", "still here", label=REL_USA_GBR)
        got = await asyncio.wait_for(anext(bob_live), 5)
        _assert_trusted(got, "still here", "alice", "USA")


async def _until(condition: Callable[[], bool], timeout: float = 5) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout)


async def test_a_stream_without_a_session_is_refused(world: World, live: str) -> None:
    t = await _trio(world)
    await t.bob.client.logout()
    t.bob.client.token = "not-a-token"
    with pytest.raises(ConnectionFailed, match="closed the stream"):
        async with t.bm.stream():
            pass


async def test_follow_signs_in_again_when_its_session_expires_but_not_after_a_logout(
    world: World, live: str
) -> None:
    t = await _trio(world)
    t.bob.client.token_expires_at = None  # as a client given a saved token: no clock to go by
    follow = t.bm.follow(backoff=Backoff(first=0.05, limit=0.1))
    first = asyncio.create_task(anext(follow))
    await world.app.state.bus.settled()
    while t.bob.device_id not in world.app.state.bus._by_device:
        await asyncio.sleep(0.01)
    sent = await t.am.send("liaison", "before", label=REL_USA_GBR)
    assert (await asyncio.wait_for(first, 5)).seq == sent.seq

    # The session ends by time: the token no longer works, and the open stream is closed at
    # the next push, saying why.
    expired = t.bob.client.token
    async with world.app.state.sessionmaker() as session, session.begin():
        await session.execute(
            update(SessionToken)
            .where(SessionToken.device_id == t.bob.device_id)
            .values(expires_at=utcnow())
        )
    for connection in world.app.state.bus._by_device[t.bob.device_id]:
        connection.expires_at = 0.0
    sent = await t.am.send("liaison", "after", label=REL_USA_GBR)
    got = await asyncio.wait_for(anext(follow), 10)
    assert got.seq == sent.seq
    assert got.text == "after"
    assert t.bob.client.token not in (None, expired)
    assert not t.bob.client.session_expired()

    # Signed out: the stream closes for good, and nobody signs in behind the user's back.
    await t.bob.client.logout()
    with pytest.raises(StreamClosed) as closed:
        await asyncio.wait_for(anext(follow), 10)
    assert closed.value.code == 4401
    assert "the session expired" not in str(closed.value)
    assert t.bob.client.token is None
    await follow.aclose()


# --- sending in O(1) -------------------------------------------------------------------------


async def test_the_roster_revalidates_with_its_entity_tag(world: World) -> None:
    t = await _trio(world)
    roster, tag = await t.alice.client.roster_if_changed("liaison", None)
    assert roster is not None
    assert len(roster) == 3
    assert tag is not None
    assert await t.alice.client.roster_if_changed("liaison", tag) == (None, tag)
    # A new member, and a member's device revoked: each changes the roster and its tag.
    await world.member("dave", "USA")
    await t.alice.client.add_member("liaison", "dave")
    roster, grown = await t.alice.client.roster_if_changed("liaison", tag)
    assert roster is not None
    assert len(roster) == 4
    assert grown != tag
    await t.chloe.client.revoke_device(t.chloe.device_id, "lost")
    roster, shrunk = await t.alice.client.roster_if_changed("liaison", grown)
    assert roster is not None
    assert len(roster) == 3
    assert shrunk not in (tag, grown)


async def test_sending_under_an_unchanged_roster_verifies_no_certificate(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = await _trio(world)
    verified: list[str] = []
    real = keys.verify_certificate

    def counting(certificate: Any, *args: Any, **kwargs: Any) -> Any:
        body = real(certificate, *args, **kwargs)
        verified.append(body.device_id)
        return body

    monkeypatch.setattr(keys, "verify_certificate", counting)
    await t.am.send("liaison", "first")
    assert len(verified) == 3
    verified.clear()
    for n in range(3):
        await t.am.send("liaison", f"again {n}")
    assert verified == []
    # A member joins: the roster's tag changes, the client verifies again and seals to them.
    dave = await world.member("dave", "USA")
    await t.alice.client.add_member("liaison", "dave")
    sent = await t.am.send("liaison", "welcome")
    assert dave.device_id in verified
    assert dave.device_id in sent.released_to


async def test_a_sender_who_missed_a_removal_is_told_to_look_again_not_refused(
    world: World,
) -> None:
    t = await _trio(world)
    await t.am.send("liaison", "to all three")
    # Chloe leaves; alice's client still holds the roster with her device in it.
    await t.chloe.client.remove_member("liaison", "chloe")
    sent = await t.am.send("liaison", "after chloe left")
    assert t.chloe.device_id not in sent.released_to
    assert t.bob.device_id in sent.released_to
    # The stale roster cost a 412 and a second look, not a refusal: nothing was denied.
    denied = [e for e in await _events(world, "message.submit") if e.decision == "deny"]
    assert denied == []


async def test_a_submit_for_a_changed_roster_is_412_before_any_decision(world: World) -> None:
    t = await _trio(world)
    _, tag = await t.alice.client.roster_if_changed("liaison", None)
    await world.member("dave", "USA")
    await t.alice.client.add_member("liaison", "dave")
    sealed = await _sealed_for_all_but_dave(t)
    with pytest.raises(ApiError) as refused:
        await t.alice.client.submit_message("liaison", sealed, roster_tag=tag)
    assert refused.value.status == 412
    assert refused.value.code == "roster-changed"
    assert await _count(world, Message) == 0
    assert await _events(world, "message.submit") == []


async def _sealed_for_all_but_dave(t: Trio) -> dict[str, Any]:
    """A message sealed, as a client with the old roster would, to alice, bob and chloe."""
    audience_id = str(uuid.uuid4())
    members = (t.alice, t.bob, t.chloe)
    sealed, key = envelopes.create_audience(
        t.alice.device_keys,
        audience_id=audience_id,
        container=str((await t.alice.client.channel("liaison"))["id"]),
        creator_user=t.alice.user.id,
        creator_device=t.alice.device_id,
        recipients=[envelopes.Recipient(m.device_id, m.device_keys.public()) for m in members],
        created_at=datetime.now(UTC),
    )
    await t.alice.client.create_audience("liaison", sealed.to_json())
    channel_id = str(sealed.header["container"])
    return envelopes.encrypt_message(
        t.alice.device_keys,
        key,
        b"stale",
        message_id=str(uuid.uuid4()),
        container=channel_id,
        sender_user=t.alice.user.id,
        sender_device=t.alice.device_id,
        audience_id=audience_id,
        sent_at=datetime.now(UTC),
        label=parse_label("NATO SECRET", t.am.catalog, originator="USA"),
        content_type="text/plain; charset=utf-8",
    ).to_json()


# --- retrying a send -------------------------------------------------------------------------


class _LosesTheFirstAnswer(httpx.AsyncBaseTransport):
    """Delivers every request, but loses the answer to the first message submitted, as a
    network that drops the connection after the server committed."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.lost = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if not self.lost and request.method == "POST" and request.url.path.endswith("/messages"):
            self.lost = True
            await response.aread()
            raise httpx.ReadError("the connection was reset", request=request)
        return response


async def test_a_send_whose_answer_was_lost_is_retried_without_a_duplicate(
    world: World,
) -> None:
    t = await _trio(world)
    flaky = AttacheClient(
        world.origin, token=t.alice.client.token, transport=_LosesTheFirstAnswer(world.transport)
    )
    try:
        alice = await _messenger(t.alice, flaky)
        message_id = str(uuid.uuid4())
        with pytest.raises(ConnectionFailed):
            await alice.send("liaison", "once", message_id=message_id)
        retried = await alice.send("liaison", "once", message_id=message_id)
    finally:
        await flaky.aclose()
    assert not retried.created  # the first attempt had landed; the same bytes were resent
    assert retried.message_id == message_id
    assert await _count(world, Message) == 1
    (got,) = await t.bm.read("liaison")
    assert got.text == "once"


def test_a_client_knows_its_session_expired_only_by_its_own_sign_in() -> None:
    client = AttacheClient("http://127.0.0.1:1")
    assert not client.session_expired()  # not signed in
    client.token = "given"
    assert not client.session_expired()  # a token given: no clock to go by
    client.token_expires_at = datetime.now(UTC) - timedelta(seconds=1)
    assert client.session_expired()
    client.token_expires_at = datetime.now(UTC) + timedelta(hours=1)
    assert not client.session_expired()
    client.token = None
    client.token_expires_at = datetime.now(UTC) - timedelta(seconds=1)
    assert not client.session_expired()  # signed out
