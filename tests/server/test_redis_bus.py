"""The bus between server processes (server/realtime/redis_bus.py) and the change log's
frontiers (server/db/changes.py), against a real Redis (issue 11, item 2).

Two buses in one test stand for two server processes: each has its own change log (its own
origin and versions) and its own connections. What crosses is only what goes through Redis.
The test that restarts Redis runs a redis-server of its own, on a free port.

What must hold:
- a push published by one process reaches the connections of its recipients held by the
  other, once, and no other connection; a process does not hear itself twice;
- a change committed by one is applied by the other: a closing change closes the streams it
  holds, and a push decided before a change (wherever that change was made) is decided again
  by the gate of the process that writes it; a push decided after is not;
- a process that misses traffic (a skipped count, Redis restarted) rebuilds: every stream it
  holds is closed with 1012 (reconnect and sync), every cache dropped, and its peers hear a
  change of anything; afterwards the bus carries messages again;
- a process that starts while Redis is away starts unready, and rebuilds once it subscribes.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import pytest
import redis.asyncio as redis

from server.db.changes import ANY, Change, ChangeLog
from server.realtime import redis_bus
from server.realtime.bus import Connection, Push
from server.realtime.redis_bus import CLOSE_RECONNECT, RedisBus
from tests.conftest import IN_CI

REDIS_URL = "redis://127.0.0.1:6379/0"


async def _until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("the condition did not hold in time")
        await asyncio.sleep(0.01)


def _connection(device: str, user: str = "u", session: str = "s") -> Connection:
    return Connection(device, user, session, expires_at=time.time() + 3600)


def _push(seq: int, version: int, devices: dict[str, str], channel: str = "c1") -> Push:
    return Push(
        seq=seq,
        channel_id=channel,
        version=version,
        recipients=devices,
        envelopes={device: f"envelope-of-{device}" for device in devices},
        head='{"type":"message","seq":' + str(seq) + ',"envelope":',
        tail="}",
    )


def _frames(connection: Connection) -> list[Push | str]:
    found = []
    while (item := connection.take()) is not None:
        found.append(item)
    return found


@asynccontextmanager
async def _buses(url: str = REDIS_URL, count: int = 2) -> AsyncIterator[list[RedisBus]]:
    """``count`` processes' buses on one channel of their own."""
    channel = f"attache:test-{secrets.token_hex(6)}:bus"
    made = [RedisBus(url, channel) for _ in range(count)]
    try:
        for bus in made:
            await bus.start()
        if url == REDIS_URL and not all(bus.listening for bus in made):
            message = "Redis at 127.0.0.1:6379 is unreachable"
            if IN_CI:
                pytest.fail(message)
            pytest.skip(message)
        yield made
    finally:
        for bus in made:
            await bus.aclose()


# --- frontiers -------------------------------------------------------------------------------


def _peers() -> tuple[ChangeLog, ChangeLog]:
    """Two logs joined by hand as the bus joins them: what one records, the other applies."""
    a, b = ChangeLog(), ChangeLog()
    a.export(lambda seq, changes: b.apply(a.origin, seq, changes))
    b.export(lambda seq, changes: a.apply(b.origin, seq, changes))
    return a, b


def test_a_decision_holds_at_a_peer_until_a_change_it_had_not_seen() -> None:
    a, b = _peers()
    a.record([Change("channel:c1")])
    b.record([Change("user:u1")])
    read_at = a.version  # a submit on a reads here: it has seen both changes
    frontier = a.frontier(read_at)
    assert frontier == {a.origin: 1, b.origin: 1}
    assert not b.changed_since(b.version_before(frontier), ["channel:c1", "user:u1"])

    # A removal committed on b after a's read, before the push arrives: b decides again.
    b.record([Change("channel:c1")])
    assert b.changed_since(b.version_before(frontier), ["channel:c1"])
    # Not for a device whose decision rests on nothing that changed.
    assert not b.changed_since(b.version_before(frontier), ["channel:c2", "user:u9"])
    # Nor when a had seen it before its read.
    assert not b.changed_since(b.version_before(a.frontier(a.version)), ["channel:c1"])


def test_a_change_made_at_the_decider_after_its_read_counts_at_the_peer() -> None:
    a, b = _peers()
    read_at = a.version
    a.record([Change("user:u1")])  # committed on a after the submit read, before the push
    assert b.changed_since(b.version_before(a.frontier(read_at)), ["user:u1"])


def test_a_change_the_peer_missed_makes_every_decision_fail_safe() -> None:
    a, b = ChangeLog(), ChangeLog()
    b.apply(a.origin, 1, [Change("user:u1")])
    b.apply(a.origin, 3, [Change("user:u2")])  # 2 never arrived
    # A push decided having seen only 1: the first change it had not seen is not here.
    assert b.version_before({a.origin: 1}) == -1
    assert b.changed_since(-1, ["anything"])
    # Decided after 3: nothing since.
    assert b.version_before({a.origin: 3}) == b.version


def test_frontiers_forget_silent_origins(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr("server.db.changes.time.monotonic", lambda: clock[0])
    log, gone = ChangeLog(), "0123456789abcdef"
    log.apply(gone, 7, [Change("user:u1")])
    # A peer that never heard of it (started later): soon after, its change may be unseen.
    assert log.version_before({}) == -1
    clock[0] += redis_bus.STALE_PUSH_SECONDS
    # Long silent: older than any decision still travelling.
    clock[0] += 600
    assert log.version_before({}) == log.version
    log.record([Change("user:u2")])  # a new origin (this log's own) sweeps the silent one out
    assert gone not in log.frontier(log.version)
    assert log.frontier(log.version) == {log.origin: 1}


# --- across processes, through Redis ---------------------------------------------------------


async def test_a_push_reaches_its_recipients_on_the_other_process_once() -> None:
    async with _buses() as (a, b):
        on_a, on_b, other = _connection("d1"), _connection("d2"), _connection("d3")
        a.attach(on_a)
        b.attach(on_b)
        b.attach(other)
        a.publish(_push(1, a.changes.version, {"d1": "u1", "d2": "u2"}))
        await _until(lambda: bool(on_b.mailbox))
        await asyncio.sleep(0.1)  # time enough for anything more to arrive
        (pushed,) = _frames(on_b)
        assert isinstance(pushed, Push)
        assert pushed.frame_for("d2") == '{"type":"message","seq":1,"envelope":"envelope-of-d2"}'
        assert pushed.recipients == {"d1": "u1", "d2": "u2"}
        assert len(_frames(on_a)) == 1  # at once, from its own process; not again from Redis
        assert _frames(other) == []
        assert b.lag_seconds < 5


async def test_a_change_on_one_process_closes_and_invalidates_on_the_other() -> None:
    async with _buses() as (a, b):
        held = _connection("d2", user="u2", session="s2")
        b.attach(held)
        a.changes.record([Change("session:s2", close=True, reason="the session ended")])
        await _until(lambda: held.closing is not None)
        assert held.closing == (4401, "the session ended")
        a.changes.record([Change("channel:c1")])
        await _until(lambda: b.changes.version == 2)
        assert b.changes.changed_since(1, ["channel:c1"])


async def test_a_push_decided_before_a_change_is_decided_again_where_it_is_written() -> None:
    async with _buses() as (a, b):
        on_b = _connection("d2", user="u2", session="s2")
        b.attach(on_b)
        read_at = a.changes.version  # the submit on a reads
        b.changes.record([Change("channel:c1")])  # b removes a member, committed meanwhile
        await _until(lambda: a.changes.version == 1)  # a heard it before it published
        a.publish(_push(1, read_at, {"d2": "u2"}))
        a.publish(_push(2, a.changes.version, {"d2": "u2"}))  # decided after the change
        await _until(lambda: len(on_b.mailbox) == 2)
        first, second = _frames(on_b)
        assert isinstance(first, Push)
        assert isinstance(second, Push)
        depends = ["channel:c1", "user:u2", "device:d2", "session:s2"]
        assert b.changes.changed_since(first.version, depends)  # the gate reads again
        assert not b.changes.changed_since(second.version, depends)  # from memory


async def test_a_skipped_count_rebuilds_the_process_that_saw_it() -> None:
    async with _buses() as (a, b):
        on_b = _connection("d2")
        b.attach(on_b)
        a.changes.record([Change("user:u1")])
        await _until(lambda: b.changes.version == 1)
        a._count += 5  # five messages of a's lost on the way
        a.changes.record([Change("user:u1")])
        await _until(lambda: b.misses == 1)
        assert on_b.closing == (CLOSE_RECONNECT, redis_bus.RECONNECT_REASON)
        assert b.changes.changed_since(1, ["nothing:in-particular"])  # the rebuild: 2
        # a hears b's change of anything: what it decided before it is checked again on b,
        # and its own caches are dropped.
        await _until(lambda: a.changes.changed_since(1, ["nothing:in-particular"]))
        assert a.misses == 0


async def test_what_is_not_the_bus_is_ignored() -> None:
    async with _buses() as (a, b):
        client = redis.from_url(REDIS_URL)
        try:
            await client.publish(b._channel, b"not the bus's")
            await client.publish(b._channel, json.dumps({"k": "c"}))
            # Whole in form, wrong inside: neither counted nor applied.
            now = time.time()
            await client.publish(b._channel, f'peer 1 {now} c\n{{"s":1,"c":5}}')
            await client.publish(b._channel, f'peer 1 {now} p\n{{"f":[],"q":"x"}}\nhead\ntail')
            await client.publish(b._channel, f"peer 1 {now} z\n{{}}")
        finally:
            await client.aclose()
        a.changes.record([Change("user:u1")])
        await _until(lambda: b.changes.version == 1)  # still listening, and nothing else
        assert b.misses == 0
        assert "peer" not in b._heard


async def test_a_change_committed_just_before_a_graceful_stop_still_reaches_the_peers() -> None:
    async with _buses() as (a, b):
        held = _connection("d2", session="s2")
        b.attach(held)
        a.changes.record([Change("session:s2", close=True, reason="the session ended")])
        await a.aclose()  # at once: the change is still queued
        await _until(lambda: held.closing is not None)
        assert held.closing == (4401, "the session ended")
        await asyncio.sleep(0.2)
        assert b.misses == 0  # a goodbye: no rebuild
        assert a._origin not in b._alive


async def test_a_peer_that_dies_silent_is_a_rebuild(monkeypatch: pytest.MonkeyPatch) -> None:
    """A process killed between committing a change and publishing it leaves no skipped count
    behind: its silence is all there is to go on."""
    monkeypatch.setattr(redis_bus, "HEARTBEAT_SECONDS", 0.05)
    monkeypatch.setattr(redis_bus, "PEER_SILENT_SECONDS", 0.5)
    async with _buses() as (a, b):
        held = _connection("d2")
        b.attach(held)
        await _until(lambda: a._origin in b._alive)
        await asyncio.sleep(0.6)
        assert b.misses == 0  # alive: its heartbeats keep it so
        for task in a._tasks:  # killed: no goodbye, nothing more
            task.cancel()
        await _until(lambda: b.misses == 1, seconds=3)
        assert held.closing == (CLOSE_RECONNECT, redis_bus.RECONNECT_REASON)
        assert a._origin not in b._alive


# --- Redis restarted -------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _redis_server(port: int, workdir: Path) -> Iterator[subprocess.Popen[bytes]]:
    binary = shutil.which("redis-server")
    if binary is None:
        if IN_CI:
            pytest.fail("redis-server is not installed (Debian's package redis-server)")
        pytest.skip("redis-server is not installed")
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    pytest.fail("redis-server did not start")
                time.sleep(0.05)
        yield process
    finally:
        process.kill()
        process.wait()


async def test_a_redis_restart_is_a_rebuild_and_the_bus_carries_on(tmp_path: Path) -> None:
    port = _free_port()
    url = f"redis://127.0.0.1:{port}/0"
    with _redis_server(port, tmp_path) as server:
        async with _buses(url) as (a, b):
            assert a.listening
            assert b.listening
            on_b = _connection("d2")
            b.attach(on_b)
            # Redis goes away, and comes back on the same port.
            server.kill()
            server.wait()
            await _until(lambda: not b.listening)
            with pytest.raises(ConnectionError):
                await b.check()
            a.changes.record([Change("user:u1")])  # lost: nobody carries it
            with _redis_server(port, tmp_path):
                await _until(lambda: a.listening and b.listening, seconds=15)
                assert a.misses >= 1
                assert b.misses >= 1
                assert on_b.closing == (CLOSE_RECONNECT, redis_bus.RECONNECT_REASON)
                await b.check()
                # Carrying on: a stream opened again gets what is published next.
                again = _connection("d2")
                b.attach(again)
                await _until(lambda: a._outbox_bytes == 0 and not a._outbox)
                for _ in range(100):  # until a's publisher connection is back too
                    a.publish(_push(7, a.changes.version, {"d2": "u2"}))
                    await asyncio.sleep(0.05)
                    if again.mailbox:
                        break
                assert any(isinstance(item, Push) and item.seq == 7 for item in _frames(again))


async def test_a_process_started_while_redis_is_away_rebuilds_once_it_subscribes(
    tmp_path: Path,
) -> None:
    port = _free_port()
    url = f"redis://127.0.0.1:{port}/0"
    started = time.monotonic()
    async with _buses(url, count=1) as (bus,):
        assert time.monotonic() - started < redis_bus.START_SECONDS  # refused at once
        assert not bus.listening
        held = _connection("d1")
        bus.attach(held)  # served meanwhile, on a view that may miss peers' changes
        with _redis_server(port, tmp_path):
            await _until(lambda: bus.listening, seconds=15)
            assert bus.misses == 1
            assert held.closing == (CLOSE_RECONNECT, redis_bus.RECONNECT_REASON)
            assert bus.changes.changed_since(0, [ANY])
