"""The Messenger forgets a kept roster when its stream says the roster changed, so that a
listening sender's next send fetches it afresh instead of being refused with 412 first
(docs/PROTOCOL.md §17.7.1); a sender that does not listen still relies on the 412."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from clients.sdk import ApiError, Messenger, ReceivedMessage
from tests.clients.test_messaging import _trio, _until
from tests.factories import World


def _submits(messenger: Messenger) -> list[str]:
    """Records the outcome of each submit ``messenger`` makes: "ok" or the problem's code."""
    seen: list[str] = []
    submit: Callable[..., Any] = messenger.client.submit_message

    async def counted(*args: Any, **kwargs: Any) -> Any:
        try:
            accepted = await submit(*args, **kwargs)
        except ApiError as exc:
            seen.append(exc.code)
            raise
        seen.append("ok")
        return accepted

    messenger.client.submit_message = counted  # type: ignore[method-assign]
    return seen


@contextlib.asynccontextmanager
async def _listening(messenger: Messenger) -> AsyncIterator[list[ReceivedMessage]]:
    """``messenger``'s stream, read in the background while the block runs."""
    received: list[ReceivedMessage] = []
    async with messenger.stream() as live:

        async def read() -> None:
            async for message in live:
                received.append(message)

        reading = asyncio.create_task(read())
        try:
            yield received
        finally:
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reading


async def test_a_listening_sender_sends_after_a_change_without_a_412(
    world: World, live: str
) -> None:
    t = await _trio(world)
    channel_id = str((await t.am.send("liaison", "before")).channel_id)
    await t.bm.send("liaison", "before, from bob")
    alice_submits, bob_submits = _submits(t.am), _submits(t.bm)
    async with _listening(t.am):
        await _until(lambda: world.app.state.bus.subscribers == 1)
        dave = await world.member("dave", "USA")
        await t.alice.client.add_member("liaison", "dave")
        # The frame reaches alice's stream, and her Messenger forgets the roster it kept.
        await _until(lambda: channel_id not in t.am._rosters)
        sent = await t.am.send("liaison", "after, to dave too")
    assert alice_submits == ["ok"]  # one submit: no 412 round trip
    assert dave.device_id in sent.released_to
    # Bob was not listening: his kept roster is refused once, fetched, and the send goes.
    sent = await t.bm.send("liaison", "after, from bob")
    assert bob_submits == ["roster-changed", "ok"]
    assert dave.device_id in sent.released_to


async def test_a_roster_fetched_after_the_change_is_kept(world: World) -> None:
    t = await _trio(world)
    channel_id = str((await t.am.send("liaison", "to keep the roster")).channel_id)
    held = t.am._rosters[channel_id]
    t.am.roster_changed(channel_id, etag=held.etag)  # the tag it already holds: kept
    assert t.am._rosters[channel_id] is held
    t.am.roster_changed(channel_id, etag='"another"')
    assert channel_id not in t.am._rosters
    await t.am.send("liaison", "again")
    t.am.roster_changed()  # every channel
    assert t.am._rosters == {}


async def test_a_removed_member_forgets_the_channel(world: World, live: str) -> None:
    t = await _trio(world)
    channel_id = str((await t.cm.send("liaison", "from chloe")).channel_id)
    async with _listening(t.cm):
        await _until(lambda: world.app.state.bus.subscribers == 1)
        await t.alice.client.remove_member("liaison", "chloe")
        await _until(lambda: channel_id not in t.cm._rosters)
        assert channel_id not in t.cm._audiences
    # Nothing kept: the channel is looked up again, and is no longer hers.
    with pytest.raises(ApiError) as refused:
        await t.cm.send("liaison", "after removal")
    assert refused.value.status == 404


async def test_a_resync_forgets_every_roster(
    world: World, live: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from server.realtime import bus

    t = await _trio(world)
    channel_id = str((await t.bm.send("liaison", "to keep the roster")).channel_id)
    async with _listening(t.bm):
        await _until(lambda: world.app.state.bus.subscribers == 1)
        await world.app.state.bus.settled()
        assert channel_id in t.bm._rosters
        monkeypatch.setattr(bus, "MAILBOX_BYTES", 1)
        # Two frames at once overflow bob's one-byte mailbox: the gateway tells him to
        # resync, which stands for any notice the dropped backlog held.
        for _ in range(2):
            world.app.state.bus._offer(bus.Notice('{"type":"x"}', frozenset({t.bob.user.id})), 0)
        await _until(lambda: channel_id not in t.bm._rosters)


async def test_a_roster_fetched_again_verifies_only_new_certificates(
    world: World, live: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from protocol import keys

    t = await _trio(world)
    await t.am.send("liaison", "to keep the roster")
    verified: list[str] = []
    verify = keys.verify_certificate

    def counted(certificate: keys.DeviceCertificate, *args: Any, **kwargs: Any) -> Any:
        verified.append(str(certificate.body["device_id"]))
        return verify(certificate, *args, **kwargs)

    monkeypatch.setattr(keys, "verify_certificate", counted)
    async with _listening(t.am):
        await _until(lambda: world.app.state.bus.subscribers == 1)
        dave = await world.member("dave", "USA")
        await t.alice.client.add_member("liaison", "dave")
        await _until(lambda: not t.am._rosters)
        verified.clear()  # the server's own, when dave's device was certified
        sent = await t.am.send("liaison", "after, to dave too")
    assert dave.device_id in sent.released_to
    # Alice, bob and chloe were verified before: only dave's certificate costs a verification.
    assert verified == [dave.device_id]
