"""The websocket gateway: authentication, live pushes, garbage and silence."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from protocol import envelopes
from protocol.labels import parse_label
from tests.factories import Member, World
from tests.server.test_channels import CATALOG, _three

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
