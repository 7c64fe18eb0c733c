"""The websocket gateway: authentication, live pushes, garbage and silence."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from protocol import envelopes
from protocol.labels import parse_label
from server.realtime.bus import ANY_ROSTER_CHANGED, Connection, Push
from tests.factories import Member, World
from tests.server.test_channels import CATALOG, REL_USA_GBR, _three
from tests.server.test_delivery import _pushes, _send, _standing_in

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _ws(url: str) -> str:
    return url.replace("http://", "ws://") + "/v1/stream"


async def _connect(url: str, member: Member) -> websockets.ClientConnection:
    ws = await websockets.connect(_ws(url))
    await ws.send(json.dumps({"type": "auth", "token": member.client.token}))
    ready = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert ready == {"type": "ready", "device_id": member.device_id}
    return ws


async def _drain(ws: websockets.ClientConnection) -> None:
    while True:
        await asyncio.wait_for(ws.recv(), 5)


async def _closed(ws: websockets.ClientConnection) -> int | None:
    """The close code the server sent, once the connection ends (within seconds)."""
    with pytest.raises(ConnectionClosed) as closed:
        await _drain(ws)
    return closed.value.rcvd.code if closed.value.rcvd else None


async def test_pushes_reach_only_eligible_devices(world: World, live_url: str) -> None:
    t = await _three(world)
    await world.app.state.bus.settled()  # the set-up's roster notices are offered already
    sockets = {m.user.username: await _connect(live_url, m) for m in (t.usa, t.gbr, t.fra)}
    audience_id = str(uuid.uuid4())
    sealed, key = envelopes.create_audience(
        t.usa.device_keys,
        audience_id=audience_id,
        container=t.id,
        creator_user=t.usa.user.id,
        creator_device=t.usa.device_id,
        recipients=[
            envelopes.Recipient(m.device_id, m.device_keys.public()) for m in (t.usa, t.gbr)
        ],
        created_at=datetime.now(UTC),
    )
    await t.usa.client.create_audience("liaison", sealed.to_json())
    message = envelopes.encrypt_message(
        t.usa.device_keys,
        key,
        b"live",
        message_id=str(uuid.uuid4()),
        container=t.id,
        sender_user=t.usa.user.id,
        sender_device=t.usa.device_id,
        audience_id=audience_id,
        sent_at=datetime.now(UTC),
        label=parse_label("NATO SECRET//REL TO USA, GBR", CATALOG, originator="USA"),
        content_type="text/plain; charset=utf-8",
    )
    await t.usa.client.submit_message("liaison", message.to_json())
    for name in ("alice", "bob"):
        frame = json.loads(await asyncio.wait_for(sockets[name].recv(), 5))
        assert frame["type"] == "message"
        assert frame["message"]["header"]["message_id"] == message.header["message_id"]
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(sockets["chloe"].recv(), 0.5)
    for ws in sockets.values():
        await ws.close()


async def test_garbage_closes_the_connection(world: World, live_url: str) -> None:
    await world.nation("USA")
    alice = await world.member("alice", "USA")
    for garbage in ("not json", json.dumps([1, 2]), json.dumps({"type": "shout"}), "x" * 5000):
        ws = await _connect(live_url, alice)
        await ws.send(garbage)
        assert await _closed(ws) == 1003
    ws = await _connect(live_url, alice)
    await ws.send(b"\x00\x01")
    assert await _closed(ws) == 1003


async def test_authentication_is_required(world: World, live_url: str) -> None:
    for first in (json.dumps({"type": "auth", "token": "nope"}), json.dumps({"type": "pong"})):
        ws = await websockets.connect(_ws(live_url))
        await ws.send(first)
        assert await _closed(ws) == 4401


async def test_silence_closes_the_connection(world: World, live_url: str) -> None:
    await world.nation("USA")
    alice = await world.member("alice", "USA")
    world.app.state.settings.ws_idle_seconds = 0.5
    world.app.state.settings.ws_auth_seconds = 0.5
    ws = await _connect(live_url, alice)
    # The server pings; a client that never answers is closed.
    assert json.loads(await asyncio.wait_for(ws.recv(), 5)) == {"type": "ping"}
    assert await _closed(ws) == 4408
    mute = await websockets.connect(_ws(live_url))
    assert await _closed(mute) == 4401


async def test_a_revoked_device_is_cut_off(world: World, live_url: str) -> None:
    t = await _three(world)
    ws = await _connect(live_url, t.gbr)
    await t.gbr.client.revoke_device(t.gbr.device_id, "stolen")
    # The revocation closes the open stream at once, with no push needed to find out.
    assert await _closed(ws) == 4401


async def test_nothing_of_a_closed_stream_survives(world: World, live_url: str) -> None:
    # The idle-crowd goal allows the allocator to keep pages after connections close, if
    # nothing of theirs survives: no Connection, no mailbox, no entry in the bus.
    import gc

    from server.realtime.bus import Connection

    t = await _three(world)
    bus = world.app.state.bus
    before = bus.subscribers
    sockets = [await _connect(live_url, m) for m in (t.usa, t.gbr, t.fra) for _ in range(20)]
    assert bus.subscribers == before + 60
    for ws in sockets:
        await ws.close()
    for _ in range(100):
        if bus.subscribers == before:
            break
        await asyncio.sleep(0.05)
    assert bus.subscribers == before
    del sockets
    gc.collect()
    alive = [o for o in gc.get_objects() if isinstance(o, Connection)]
    assert alive == []


_CROWD = """
import asyncio, json, sys, websockets
async def main(url, token, n):
    crowd = []
    for _ in range(n):
        ws = await websockets.connect(url, compression=None)
        await ws.send(json.dumps({"type": "auth", "token": token}))
        await ws.recv()
        crowd.append(ws)
    print("open", flush=True)
    sys.stdin.readline()
    for ws in crowd:
        await ws.close()
    print("closed", flush=True)
    sys.stdin.readline()
asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


async def test_the_memory_of_closed_streams_is_freed(world: World, live_url: str) -> None:
    # The idle-crowd goal: after the connections close, the server's memory returns to what it
    # was, or (where the allocator keeps its pages, as glibc's does) tracemalloc shows that
    # nothing of theirs survives. The crowd runs in a process of its own, so only the
    # server's allocations are traced. A first crowd comes and goes untraced, so that what
    # grows once (the loop's tables sized for 400 sockets, first-use caches) is not counted.
    import gc
    import sys
    import tracemalloc

    t = await _three(world)
    bus = world.app.state.bus

    def traced() -> int:
        gc.collect()
        return tracemalloc.get_traced_memory()[0]

    async def crowd_comes_and_goes(between: Callable[[], None]) -> None:
        crowd = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _CROWD,
            _ws(live_url),
            t.usa.client.token,
            "400",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert crowd.stdin is not None
        assert crowd.stdout is not None
        assert (await asyncio.wait_for(crowd.stdout.readline(), 60)).strip() == b"open"
        assert bus.subscribers == 400
        between()
        crowd.stdin.write(b"\n")  # close them all
        await crowd.stdin.drain()
        assert (await asyncio.wait_for(crowd.stdout.readline(), 60)).strip() == b"closed"
        for _ in range(100):
            if bus.subscribers == 0:
                break
            await asyncio.sleep(0.05)
        assert bus.subscribers == 0
        crowd.stdin.write(b"\n")
        await crowd.wait()

    await crowd_comes_and_goes(lambda: None)
    measured: list[int] = []
    tracemalloc.start()
    try:
        measured.append(traced())
        await crowd_comes_and_goes(lambda: measured.append(traced()))
        measured.append(traced())
    finally:
        tracemalloc.stop()
    before, connected, after = measured
    held = connected - before
    assert held > 400 * 10_000  # the streams did hold memory (tens of KiB each) ...
    assert after - before < held * 0.05  # ... and next to nothing of it outlives them


# --- pushes queued together ------------------------------------------------------------------


async def _connect_accepting(url: str, member: Member) -> websockets.ClientConnection:
    ws = await websockets.connect(_ws(url))
    await ws.send(
        json.dumps({"type": "auth", "token": member.client.token, "accept": ["messages"]})
    )
    ready = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert ready == {"type": "ready", "device_id": member.device_id}
    return ws


async def _frames(ws: websockets.ClientConnection, count: int) -> list[dict[str, Any]]:
    return [json.loads(await asyncio.wait_for(ws.recv(), 5)) for _ in range(count)]


def _seqs(frame: dict[str, Any]) -> list[int]:
    if frame["type"] == "message":
        return [frame["seq"]]
    assert frame["type"] == "messages"
    assert all(item["type"] == "message" for item in frame["items"])
    return [item["seq"] for item in frame["items"]]


async def _three_pushes(world: World) -> tuple[Member, list[Push]]:
    """Three messages to bob, sent and pushed one by one, and their pushes as published."""
    t = await _three(world)
    standing = await _standing_in(t.gbr, world)
    for _ in range(3):
        await _send(t, [t.usa, t.gbr], REL_USA_GBR)
    pushes = _pushes(standing)
    world.app.state.bus.detach(standing)
    assert len(pushes) == 3
    await world.app.state.bus.settled()  # the set-up's notices are offered already
    return t.gbr, pushes


async def _stream_of(world: World, member: Member, batches: bool) -> Connection:
    for _ in range(50):
        found = [
            c
            for c in world.app.state.bus._by_device.get(member.device_id, ())
            if c.batches is batches
        ]
        if found:
            return found[0]
        await asyncio.sleep(0.05)
    raise AssertionError("the stream is not attached")


async def _written(
    world: World, live_url: str, member: Member, items: list[Push | str], count: int
) -> list[dict[str, Any]]:
    """The first ``count`` frames written to a new stream of ``member`` that reads
    ``messages`` frames, when ``items`` are offered to it at once."""
    ws = await _connect_accepting(live_url, member)
    connection = await _stream_of(world, member, batches=True)
    now = time.monotonic()
    for item in items:
        connection.offer(item, now)
    frames = await _frames(ws, count)
    await ws.close()
    return frames


async def test_pushes_queued_together_go_as_one_frame_to_a_client_that_reads_them(
    world: World, live_url: str
) -> None:
    bob, pushes = await _three_pushes(world)
    batched = await _connect_accepting(live_url, bob)
    single = await _connect(live_url, bob)
    await _stream_of(world, bob, batches=True)
    await _stream_of(world, bob, batches=False)
    for push in pushes:  # published together, as a commit of three submits publishes them
        world.app.state.bus.publish(push)
    seqs = [p.seq for p in pushes]
    (frame,) = await _frames(batched, 1)
    assert _seqs(frame) == seqs
    # Each item is the frame the push alone would have been.
    assert frame["items"] == [json.loads(p.frame_for(bob.device_id)) for p in pushes]
    # A client that did not say it reads them gets one message frame per push, as before.
    assert [s for f in await _frames(single, 3) for s in _seqs(f)] == seqs
    for ws in (batched, single):
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ws.recv(), 0.3)
        await ws.close()


async def test_a_notice_between_pushes_keeps_its_place(world: World, live_url: str) -> None:
    bob, pushes = await _three_pushes(world)
    items = [pushes[0], ANY_ROSTER_CHANGED, pushes[1], pushes[2]]
    frames = await _written(world, live_url, bob, items, 3)
    assert _seqs(frames[0]) == [pushes[0].seq]
    assert frames[1] == {"type": "roster-changed"}
    assert frames[2]["type"] == "messages"
    assert _seqs(frames[2]) == [pushes[1].seq, pushes[2].seq]


async def test_a_push_refused_again_is_left_out_of_its_frame(
    world: World, live_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    bob, pushes = await _three_pushes(world)
    gate = world.app.state.gate
    refused = pushes[1].seq

    class Refusing:
        async def admit(self, connection: Connection, push: Push) -> bool:
            return push.seq != refused and await gate.admit(connection, push)

    monkeypatch.setattr(world.app.state, "gate", Refusing())
    (frame,) = await _written(world, live_url, bob, list(pushes), 1)
    assert _seqs(frame) == [pushes[0].seq, pushes[2].seq]


async def test_a_batch_is_bounded_by_its_length(
    world: World, live_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from server.realtime import gateway

    bob, pushes = await _three_pushes(world)
    # Room for two pushes, not three.
    monkeypatch.setattr(gateway, "BATCH_CHARS", pushes[0].size * 2 + 200)
    frames = await _written(world, live_url, bob, list(pushes), 2)
    assert [_seqs(f) for f in frames] == [[p.seq for p in pushes[:2]], [pushes[2].seq]]
    assert frames[1]["type"] == "message"


@pytest.mark.parametrize("accept", ["messages", [1], {"messages": True}])
async def test_an_accept_that_is_not_a_list_of_strings_is_refused(
    world: World, live_url: str, accept: Any
) -> None:
    await world.nation("USA")
    alice = await world.member("alice", "USA")
    ws = await websockets.connect(_ws(live_url))
    await ws.send(json.dumps({"type": "auth", "token": alice.client.token, "accept": accept}))
    assert await _closed(ws) == 4401


async def test_an_accept_naming_frames_unknown_here_is_ignored(world: World, live_url: str) -> None:
    await world.nation("USA")
    alice = await world.member("alice", "USA")
    ws = await websockets.connect(_ws(live_url))
    await ws.send(
        json.dumps({"type": "auth", "token": alice.client.token, "accept": ["holograms"]})
    )
    assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "ready"
    await ws.close()
