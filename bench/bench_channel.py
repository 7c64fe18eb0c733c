"""Benchmark of channel delivery through a real server: issue 8's shapes and goals.

Run: ``.venv/bin/python bench/bench_channel.py [--runs N] [--seconds S] [--crowd N]
[--rooms N] [--rooms-seconds S] [--database sqlite,postgresql] [--profile]``. ``make bench`` is
the quick profile (one run of each shape, the idle crowd at 1,000, one room on SQLite,
PostgreSQL, and PostgreSQL + Redis with one and with two server processes, many rooms in steps
of 5 s); ``make bench-full`` runs every shape three times, on every set-up, with the idle crowd
at 5,000. Writes ``bench/results/channel.json`` and ``channel.md``; every
repeated figure is the median of its runs with the minimum and maximum. Not part of the test
suite, and never a timed test.

Set-up, per database (in this process, through the API over ``httpx.ASGITransport``): a fresh
database (SQLite in a temporary directory, or a PostgreSQL database ``attache_bench_<random>``
created and dropped here), ten NATO nations with real authority keys, five users per nation
cleared NATO SECRET, each with an enrolled and certified device and a session, and one channel
``room`` (ceiling NATO SECRET) holding all fifty; plus one user per nation, in no channel, whose
sessions the idle crowd shares. The bench's own key stores use the cheapest KDF parameters
(``KdfParams.for_tests()``): an unlock at the default settings would cost ~0.35 s per process.

Then uvicorn serves that database (one process; with ``postgresql+redis:N``, N processes
sharing the port and joined by the Redis bus, their CPU summed and profiled together), and
separate processes (this script with ``--role``) load it over loopback:
  * listeners: 49 member devices on ``/v1/stream``, lean: each frame is parsed as JSON and
    (seq, time.time()) recorded; nothing is decrypted or verified; pings are answered;
  * senders: five processes using the real SDK, ``Messenger.send(room, text, label=...)``;
  * crowd: idle connections, authenticated, members of nothing, answering pings.

Shapes:
  * one room: five closed-loop senders for ``--seconds``: accepted/s, deliveries/s, submit and
    submit-to-delivered latency, server CPU per message (utime+stime of the uvicorn process
    from the start of the window until deliveries have drained); lost and duplicated per
    listener against a final ``GET /v1/sync`` for each listening device;
  * idle crowd, each run on a fresh server process: server RSS before, with the crowd
    connected, and after it closed; probe messages to the room with the crowd connected,
    their submit-to-delivered latency;
  * client: SDK CPU per send (``time.process_time`` in the sender) with the audience unchanged
    and at an audience change (the Messenger's audience cache cleared), beside raw primitives;
  * many rooms: ``--rooms`` channels of fifty devices, all connected, open-loop senders at
    rising rates until p99 submit-to-delivered passes 100 ms (bench/many_rooms.py).
Every cost is also stated as a multiple of V, the CPU time of one Ed25519 verification with
pyca/cryptography measured in this run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import resource
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from _common import (
    CHANNEL,
    LABEL,
    NATIONS,
    PASSPHRASE,
    pin,
    process_tree,
    seed_room,
    served,
    spread,
    unbind_rate_limits,
    verification_seconds,
)
from cryptography.hazmat.primitives.asymmetric import ed25519
from pydantic import SecretStr
from websockets.asyncio.client import connect as ws_connect

from clients.sdk import Keystore, Messenger
from protocol import keys

if TYPE_CHECKING:
    from server.settings import Settings

# The server's modules are imported only where the set-up uses them, so that the load
# processes load what a client program loads and no more.

RESULTS = Path(__file__).resolve().parent / "results" / "channel.json"
PER_NATION = 5
SENDERS = 5
POSTGRES_ADMIN = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
PROBES = 5  # messages sent to the room while the idle crowd is connected
TRACED_SETTLE = 25.0  # seconds from the traced crowd's close to its last snapshot
# With --pin: (the server's cores, the load's and this script's cores).
PINNED: tuple[set[int], set[int]] | None = None
STEADY_SENDS = 50  # client shape: sends with the audience unchanged
CHANGE_SENDS = 7  # client shape: sends at an audience change
PACKAGES = ("fastapi", "starlette", "uvicorn", "websockets", "sqlalchemy", "aiosqlite")
PACKAGES += ("asyncpg", "cryptography", "httpx", "pydantic")


# --- measuring -------------------------------------------------------------------------------


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile (``p`` in 0..100) of ``values``."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))]


def latency(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50": pct(values, 50),
        "p95": pct(values, 95),
        "p99": pct(values, 99),
        "max": max(values),
    }


def _process_cpu(pid: int, system_only: bool = False) -> float:
    """utime + stime of one process (stime alone with ``system_only``), in seconds (from
    /proc/<pid>/stat; 0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    ticks = int(fields[12]) if system_only else int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a server, in seconds: its process and, with several workers, theirs."""
    return sum(_process_cpu(p) for p in process_tree(pid))


def system_seconds(pid: int) -> float:
    """stime of a server, in seconds: the part of its CPU spent in the kernel on its behalf
    (system calls: socket reads and writes, epoll, the database's file I/O)."""
    return sum(_process_cpu(p, system_only=True) for p in process_tree(pid))


def thread_cpu(pid: int) -> Counter[str]:
    """CPU seconds of a server's main threads (the event loops) and of its other threads (the
    database driver's: aiosqlite runs one thread per connection), over its processes."""
    found: Counter[str] = Counter()
    for process in process_tree(pid):
        for stat in Path(f"/proc/{process}/task").glob("*/stat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                text = stat.read_text()
                name = "event loop" if stat.parent.name == str(process) else "other threads"
                fields = text.rpartition(")")[2].split()
                found[name] += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return found


def postgres_cpu(name: str = "postgres") -> float:
    """CPU seconds of every process called ``name`` on this machine (PostgreSQL's by
    default; 0 when unreadable)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            text = stat.read_text()
            if text[text.index("(") + 1 : text.rindex(")")] == name:
                total += _process_cpu(int(stat.parent.name))
    return total


def rss(pid: int) -> int:
    """Resident memory of a server, over its processes."""
    total = 0
    for process in process_tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{process}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total


def per_op(fn: Any, n: int, batches: int = 7) -> dict[str, float]:
    """CPU seconds of one call of ``fn``: median (and spread) of ``batches`` batches of ``n``."""
    fn()
    results = []
    for _ in range(batches):
        start = time.process_time()
        for _ in range(n):
            fn()
        results.append((time.process_time() - start) / n)
    return spread(results)


def primitives() -> dict[str, dict[str, float]]:
    """V (one Ed25519 verification), one Ed25519 signature and one raw X-Wing HPKE seal."""
    signer = ed25519.Ed25519PrivateKey.generate()
    public, data = signer.public_key(), secrets.token_bytes(64)
    signature = signer.sign(data)
    recipient = keys.DeviceKeys.generate().public()
    encryption_key = keys.load_encryption_public_key(recipient.encryption_key)
    secret = secrets.token_bytes(32)
    return {
        "ed25519_verify": per_op(lambda: public.verify(signature, data), 2000),
        "ed25519_sign": per_op(lambda: signer.sign(data), 2000),
        "hpke_seal": per_op(
            lambda: keys.HPKE_SUITE.encrypt(secret, encryption_key, info=b"bench"), 500
        ),
    }


# --- set-up, in this process -----------------------------------------------------------------


async def seed(settings: Settings, homes: Path) -> dict[str, Any]:
    """Nations, users with certified devices and sessions, and the room, through the API:
    ``PER_NATION`` members of each nation, and one idle user per nation (the idle crowd's)."""
    people = [(f"{n.lower()}{i}", n) for i in range(PER_NATION) for n in NATIONS]
    idle = [(f"idle-{n.lower()}", n) for n in NATIONS]
    return await seed_room(settings, homes, people, idle)


@contextlib.contextmanager
def database(kind: str, base: Path) -> Iterator[str]:
    """A fresh, migrated database URL: SQLite in ``base``, or a PostgreSQL database created
    here and dropped at the end."""
    from sqlalchemy import text
    from sqlalchemy.engine import make_url
    from sqlalchemy.ext.asyncio import create_async_engine

    from server.db import migrate

    if kind.startswith("sqlite"):
        url = f"sqlite+aiosqlite:///{base / 'bench.db'}"
        migrate.upgrade(url)
        yield url
        return

    async def admin(statement: str) -> None:
        engine = create_async_engine(POSTGRES_ADMIN, isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as conn:
                await conn.execute(text(statement))
        finally:
            await engine.dispose()

    name = f"attache_bench_{secrets.token_hex(6)}"
    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        url = make_url(POSTGRES_ADMIN).set(database=name).render_as_string(hide_password=False)
        migrate.upgrade(url)
        yield url
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


# --- load processes --------------------------------------------------------------------------


class Child:
    """A load process (this script with ``--role``): one command line in, one JSON line out."""

    def __init__(self, role: str, spec: dict[str, Any]) -> None:
        command = [sys.executable, str(Path(__file__).resolve()), "--role", role, json.dumps(spec)]
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        if PINNED is not None:
            pin(self.process.pid, PINNED[1])

    def send(self, command: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()

    def answer(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"a load process stopped (exit status {self.process.wait()})")
        return dict(json.loads(line))

    def ask(self, command: str) -> dict[str, Any]:
        self.send(command)
        return self.answer()

    def stop(self) -> None:
        with contextlib.suppress(BrokenPipeError, OSError):
            self.send("stop")
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def _reply(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


async def _command() -> list[str]:
    return (await asyncio.to_thread(sys.stdin.readline)).split() or ["stop"]


async def _stream(url: str, token: str, compression: str | None) -> Any:
    # websockets offers permessage-deflate unless told not to (the SDK's stream does not);
    # the server, served as `attache-server run` serves it, declines it either way.
    ws = await ws_connect(
        url, max_size=1 << 20, ping_interval=None, open_timeout=60, compression=compression
    )
    # As the SDK's stream does, it reads ``messages`` frames (pushes queued together).
    await ws.send(json.dumps({"type": "auth", "token": token, "accept": ["messages"]}))
    ready = json.loads(await ws.recv())
    if ready.get("type") != "ready":
        raise RuntimeError(f"the stream refused the sign-in: {ready}")
    return ws


async def listener_main(spec: dict[str, Any]) -> None:
    """Lean listeners: record (seq, receive time) of each message frame; decrypt nothing."""
    received: dict[str, list[tuple[int, float]]] = {d: [] for d in spec["devices"]}
    counts: Counter[str] = Counter()
    pong = json.dumps({"type": "pong"})

    async def listen(device_id: str, ws: Any) -> None:
        mine = received[device_id]
        try:
            async for raw in ws:
                now = time.time()
                frame = json.loads(raw)
                kind = frame.get("type")
                counts[str(kind)] += 1
                if kind == "message":
                    mine.append((frame["seq"], now))
                elif kind == "messages":
                    mine.extend((item["seq"], now) for item in frame["items"])
                elif kind == "ping":
                    await ws.send(pong)
        except Exception as exc:
            counts[f"error {exc.__class__.__name__}: {exc}"] += 1
        counts["closed"] += 1

    streams = [await _stream(spec["url"], t, spec["compression"]) for t in spec["tokens"]]
    tasks = [
        asyncio.create_task(listen(d, ws)) for d, ws in zip(spec["devices"], streams, strict=True)
    ]
    _reply(ready=len(streams))
    while (command := await _command())[0] != "stop":
        Path(command[1]).write_text(
            json.dumps({"received": received, "counts": counts, "cpu": time.process_time()})
        )
        _reply(dumped=True)
    for ws in streams:
        await ws.close()
    await asyncio.gather(*tasks, return_exceptions=True)


async def crowd_main(spec: dict[str, Any]) -> None:
    """``count`` idle connections over the given session tokens; they answer pings only."""
    pong = json.dumps({"type": "pong"})
    gate = asyncio.Semaphore(32)
    streams: list[Any] = []
    failures: Counter[str] = Counter()

    async def idle(ws: Any) -> None:
        with contextlib.suppress(Exception):
            async for raw in ws:
                if json.loads(raw).get("type") == "ping":
                    await ws.send(pong)

    async def open_one(token: str) -> None:
        async with gate:
            try:
                streams.append(await _stream(spec["url"], token, spec["compression"]))
            except Exception as exc:
                failures[f"{exc.__class__.__name__}: {exc}"] += 1

    tokens = spec["tokens"]
    await asyncio.gather(*(open_one(tokens[i % len(tokens)]) for i in range(spec["count"])))
    tasks = [asyncio.create_task(idle(ws)) for ws in streams]
    _reply(opened=len(streams), failures=failures)
    await _command()
    await asyncio.gather(*(ws.close() for ws in streams), return_exceptions=True)
    await asyncio.gather(*tasks, return_exceptions=True)
    _reply(closed=len(streams))


async def sender_main(spec: dict[str, Any]) -> None:
    """One member's device sending with the SDK. Commands: ``window DEADLINE`` (closed loop
    until the wall-clock deadline), ``send``, ``cpu STEADY CHANGES``, ``stop``."""
    store = Keystore(Path(spec["home"]), kdf=keys.KdfParams.for_tests())
    messenger = await Messenger.open(store, passphrase=PASSPHRASE)
    submitted_at = [0.0]
    submit = messenger.client.submit_message

    async def timed_submit(channel: str, sealed: dict[str, Any], **kw: Any) -> dict[str, Any]:
        submitted_at[0] = time.time()  # the POST of the sealed message, after all client work
        return await submit(channel, sealed, **kw)

    messenger.client.submit_message = timed_submit  # type: ignore[method-assign]
    count = 0

    async def send() -> dict[str, float]:
        nonlocal count
        count += 1
        cpu, start = time.process_time(), time.time()
        text = f"{spec['name']} {count}: " + "the committee meets at 14:00 in room 2. " * 2
        sent = await messenger.send(CHANNEL, text, label=LABEL)
        end = time.time()
        return {
            "seq": sent.seq,
            "start": start,
            "submit": submitted_at[0],
            "end": end,
            "cpu": time.process_time() - cpu,
        }

    await send()  # the first send makes this sender's audience
    _reply(ready=True)
    try:
        while (command := await _command())[0] != "stop":
            if command[0] == "window":
                deadline, records = float(command[1]), []
                while time.time() < deadline:
                    records.append(await send())
                _reply(records=records)
            elif command[0] == "send":
                _reply(**await send())
            elif command[0] == "cpu":
                steady = [await send() for _ in range(int(command[1]))]
                changed = []
                for _ in range(int(command[2])):
                    messenger._audiences.clear()  # forces a new audience: roster, 50 seals
                    changed.append(await send())
                _reply(
                    steady=[r["cpu"] for r in steady],
                    change=[r["cpu"] for r in changed],
                    primitives=primitives(),
                )
    finally:
        await messenger.aclose()


# --- the shapes ------------------------------------------------------------------------------


class Room:
    """The served room: listeners and senders started once, kept across runs and shapes."""

    def __init__(
        self, seeded: dict[str, Any], server: subprocess.Popen[bytes], base: Path, deflate: bool
    ) -> None:
        self.seeded, self.server, self.base = seeded, server, base
        self.compression = "deflate" if deflate else None
        self.url = seeded["origin"].replace("http://", "ws://") + "/v1/stream"
        listening = seeded["members"][1:]
        halves = [listening[0::2], listening[1::2]]  # two listener processes
        self.listeners = [
            Child(
                "listener",
                {
                    "url": self.url,
                    "compression": self.compression,
                    "devices": [m["device_id"] for m in part],
                    "tokens": [m["token"] for m in part],
                },
            )
            for part in halves
        ]
        for child in self.listeners:  # all streams open before the first message
            child.answer()
        self.senders = [
            Child("sender", {"home": m["home"], "name": m["username"]})
            for m in seeded["members"][:SENDERS]
        ]
        for child in self.senders:
            child.answer()

        self.sent: dict[int, dict[str, float]] = {}  # seq -> sender's record

    def stop(self) -> None:
        for child in self.listeners + self.senders:
            child.stop()

    def received(self) -> tuple[dict[str, list[tuple[int, float]]], Counter[str], float]:
        merged: dict[str, list[tuple[int, float]]] = {}
        counts: Counter[str] = Counter()
        cpu = 0.0
        for i, child in enumerate(self.listeners):
            path = self.base / f"listener-{i}.json"
            child.ask(f"dump {path}")
            data = json.loads(path.read_text())
            merged.update({d: [tuple(r) for r in v] for d, v in data["received"].items()})
            counts.update(data["counts"])
            cpu += data["cpu"]
        return merged, counts, cpu

    metrics: tuple[str, str] | None = None  # (origin, token) of a one-process server

    def submit_commits(self) -> float | None:
        """The server's ``attache_submit_commits_total`` (None with several processes)."""
        if self.metrics is None:
            return None
        origin, token = self.metrics
        text = httpx.get(
            f"{origin}/metrics", headers={"authorization": f"Bearer {token}"}, timeout=30
        ).text
        found = re.search(r"^attache_submit_commits_total ([0-9.e+]+)$", text, re.MULTILINE)
        return float(found.group(1)) if found else None

    def drain(self, timeout: float = 60.0) -> float:
        """Wait until the server is idle again (deliveries done): its CPU time then."""
        last, quiet, end = cpu_seconds(self.server.pid), 0, time.time() + timeout
        while time.time() < end and quiet < 3:
            time.sleep(0.2)
            now = cpu_seconds(self.server.pid)
            quiet = quiet + 1 if now - last < 0.004 else 0
            last = now
        return last

    def delivered(self, seqs: set[int]) -> tuple[list[float], int]:
        """Submit-to-delivered latencies of ``seqs`` at every listener, and their count."""
        received, _, _ = self.received()
        found = [
            t - self.sent[s]["submit"] for got in received.values() for s, t in got if s in seqs
        ]
        return found, len(found)


def one_room(room: Room, seconds: float, profile: Path | None = None) -> dict[str, Any]:
    server = room.server.pid
    # V just before and just after the window, the load quiet: these machines' speed moves
    # within minutes (V from 135 to 200 µs and back on one day), so a run's cost is stated in
    # the V of its own minute, not only in that of the whole benchmark's start and end.
    v0 = verification_seconds()
    commits0 = room.submit_commits()  # first: the scrape's own CPU is not the messages'
    cpu0, pg0, threads0 = cpu_seconds(server), postgres_cpu(), thread_cpu(server)
    kernel0 = system_seconds(server)
    redis0 = postgres_cpu("redis-server")
    spy = None
    if profile is not None:
        # py-spy counts a thread that holds the GIL whether it runs or waits for a core, and
        # every write to a socket wakes a load process that may take the server's core then:
        # the samples would charge that wait to the write. Raised above the load processes'
        # priority, the server keeps its core, and its samples are near its CPU time.
        with contextlib.suppress(PermissionError):
            for process in process_tree(server):
                os.setpriority(os.PRIO_PROCESS, process, -10)
        spy = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "py-spy"),
                "record",
                "--gil",  # only the thread holding the GIL: CPU, not threads waiting
                "--rate",
                "250",
                "--pid",
                str(server),
                "--subprocesses",  # every worker, when there are several
                "--format",
                "raw",
                "-o",
                str(profile),
                "-d",
                str(int(seconds) + 2),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1.0)  # py-spy attaches
    start = time.time()
    for sender in room.senders:
        sender.send(f"window {start + seconds}")
    records = [r for sender in room.senders for r in sender.answer()["records"]]
    end = max(r["end"] for r in records)
    cpu1, pg1, threads1 = room.drain(), postgres_cpu(), thread_cpu(server)
    kernel1, commits1 = system_seconds(server), room.submit_commits()
    redis1 = postgres_cpu("redis-server")
    threads1.subtract(threads0)
    if spy is not None:
        spy.wait(timeout=120)
        with contextlib.suppress(PermissionError):
            for process in process_tree(server):
                os.setpriority(os.PRIO_PROCESS, process, 0)
    v_run = (v0 + verification_seconds()) / 2
    room.sent.update({int(r["seq"]): r for r in records})
    seqs = {int(r["seq"]) for r in records}
    delays, deliveries = room.delivered(seqs)
    window = end - start
    return {
        "seconds": window,
        "accepted": len(records),
        "accepted_per_s": len(records) / window,
        "deliveries": deliveries,
        "deliveries_per_s": deliveries / window,
        "send_ms": latency([(r["end"] - r["start"]) * 1e3 for r in records]),
        "submit_ms": latency([(r["end"] - r["submit"]) * 1e3 for r in records]),
        "delivered_ms": latency([d * 1e3 for d in delays]),
        "server_cpu_s": cpu1 - cpu0,
        "server_cpu_per_message_s": (cpu1 - cpu0) / len(records),
        "server_system_cpu_per_message_s": (kernel1 - kernel0) / len(records),
        "V_s": v_run,
        "server_cpu_per_message_v": (cpu1 - cpu0) / len(records) / v_run,
        "messages_per_commit": (
            len(records) / (commits1 - commits0)
            if commits0 is not None and commits1 is not None and commits1 > commits0
            else None
        ),
        "postgres_cpu_per_message_s": (pg1 - pg0) / len(records),
        "redis_cpu_per_message_s": (redis1 - redis0) / len(records),
        "sender_cpu_per_send_s": statistics.median(r["cpu"] for r in records),
        "server_threads_cpu_per_message_s": {
            name: cpu / len(records) for name, cpu in threads1.most_common() if cpu > 0
        },
    }


def idle_crowd(
    room: Room, size: int, snapshots: Path | None = None, settle: float = 3.0
) -> dict[str, Any]:
    """One idle crowd on ``room``'s fresh server; the last reading ``settle`` seconds after
    the crowd closed. With ``snapshots`` (a server started with tracemalloc and
    ATTACHE_MEMORY_SNAPSHOT_DIR there), a snapshot at each of the three RSS readings, and what
    they show (``traced_survivors``)."""
    server = room.server.pid
    tokens = [c["token"] for c in room.seeded["crowd"]]
    # Warm first: the first messages a process handles allocate what it keeps for good
    # (compiled statements, caches, imports done late); that is not the crowd's.
    for _ in range(PROBES):
        room.senders[0].ask("send")
    room.drain()
    time.sleep(2.0)
    snapshot(server, snapshots, 1)
    before = rss(server)
    procs = max(1, size // 1250)
    crowd = [
        Child(
            "crowd",
            {
                "url": room.url,
                "compression": room.compression,
                "tokens": tokens,
                "count": size // procs,
            },
        )
        for _ in range(procs)
    ]
    opened = [c.answer() for c in crowd]
    connected = sum(o["opened"] for o in opened)
    time.sleep(2.0)
    snapshot(server, snapshots, 2)
    during = rss(server)
    idle0 = cpu_seconds(server)
    time.sleep(2.0)  # the server's own CPU with the crowd connected and nothing sent
    idle_rate = (cpu_seconds(server) - idle0) / 2.0
    cpu0, probing = cpu_seconds(server), time.monotonic()
    probes = []
    for _ in range(PROBES):
        probes.append(room.senders[0].ask("send"))
        time.sleep(0.3)
    cpu1, probing = room.drain(), time.monotonic() - probing
    room.sent.update({int(p["seq"]): p for p in probes})
    delivered = []
    for probe in probes:
        delays, _ = room.delivered({int(probe["seq"])})
        delivered.append(max(delays) * 1e3 if delays else float("inf"))
    for c in crowd:
        c.send("close")
    for c in crowd:
        c.answer()
        c.stop()
    time.sleep(settle)
    snapshot(server, snapshots, 3)
    after = rss(server)
    return {
        "traced": traced_survivors(snapshots, connected) if snapshots is not None else None,
        "connections": connected,
        "failures": sum((Counter(o["failures"]) for o in opened), Counter()),
        "rss_before": before,
        "rss_connected": during,
        "rss_after_close": after,
        "kib_per_connection": (during - before) / 1024 / max(1, connected),
        "after_vs_before": after / before,
        "probe_submit_ms": [(p["end"] - p["submit"]) * 1e3 for p in probes],
        "probe_delivered_ms_last_listener": delivered,
        "server_idle_cpu_per_s": idle_rate,
        "server_cpu_per_probe_s": (cpu1 - cpu0 - idle_rate * probing) / len(probes),
    }


def snapshot(server: int, directory: Path | None, number: int) -> None:
    """Have the server write ``memory-{number}.snap`` (server/operations.py) and wait for it."""
    if directory is None:
        return
    os.kill(server, signal.SIGUSR1)
    path = directory / f"memory-{number}.snap"
    for _ in range(1200):
        if path.exists():  # renamed into place once written whole
            return
        time.sleep(0.1)
    raise RuntimeError(f"the server wrote no {path.name}")


def traced_survivors(directory: Path, connections: int) -> dict[str, Any]:
    """What tracemalloc shows of the crowd: Python memory the server held before it, while it
    was connected and after it closed, and, by the line that allocated it, what the crowd made
    (grew from before to connected) and still held after (grew from before to after, up to what
    it grew while connected): the crowd's survivors."""
    import tracemalloc

    ignore = [
        tracemalloc.Filter(False, tracemalloc.__file__),
        tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
        tracemalloc.Filter(False, "<unknown>"),
    ]
    snaps = [
        tracemalloc.Snapshot.load(str(directory / f"memory-{n}.snap")).filter_traces(ignore)
        for n in (1, 2, 3)
    ]
    by_line = [{s.traceback[0]: s.size for s in snap.statistics("lineno")} for snap in snaps]
    before, during, after = by_line
    survivors: list[tuple[int, str]] = []
    for frame, held in during.items():
        made = held - before.get(frame, 0)
        kept = min(made, after.get(frame, 0) - before.get(frame, 0))
        if made > 0 and kept > 0:
            survivors.append((kept, f"{frame.filename}:{frame.lineno}"))
    survivors.sort(reverse=True)
    made_total = sum(max(0, held - before.get(f, 0)) for f, held in during.items())
    kept_total = sum(k for k, _ in survivors)
    # By kind of object: the kinds the crowd made at least one of per two connections, and
    # how many of those were still alive after close beyond the count before.
    counts = [json.loads((directory / f"memory-{n}.kinds.json").read_text()) for n in (1, 2, 3)]
    per_connection = {
        kind: {
            "before": counts[0].get(kind, 0),
            "connected": n,
            "after_close": counts[2].get(kind, 0),
        }
        for kind, n in counts[1].items()
        if n - counts[0].get(kind, 0) >= connections / 2
    }
    outliving = {
        kind: c["after_close"] - c["before"]
        for kind, c in per_connection.items()
        if c["after_close"] - c["before"] >= connections / 2
    }
    return {
        "kinds_made_per_connection": per_connection,
        "kinds_outliving_the_crowd": outliving,
        "traced_before": sum(before.values()),
        "traced_connected": sum(during.values()),
        "traced_after_close": sum(after.values()),
        "made_by_crowd": made_total,
        "kept_of_it": kept_total,
        "kept_per_connection": kept_total / max(1, connections),
        "kept_share": kept_total / max(1, made_total),
        "top_kept": [{"bytes": k, "line": line} for k, line in survivors[:8]],
    }


def client_shape(room: Room) -> dict[str, Any]:
    answer = room.senders[0].ask(f"cpu {STEADY_SENDS} {CHANGE_SENDS}")
    return {
        "steady_cpu_s": spread(answer["steady"]),
        "change_cpu_s": spread(answer["change"]),
        "primitives_in_sender": {k: v["median"] for k, v in answer["primitives"].items()},
    }


async def sync_check(origin: str, listening: list[dict[str, Any]], received: Any) -> dict[str, Any]:
    """Each listening device's messages by ``GET /v1/sync`` against what its stream gave it."""
    per_device = {}
    async with httpx.AsyncClient(base_url=origin, timeout=120) as http:
        for member in listening:
            expected: set[int] = set()
            after, more = 0, True
            while more:
                page = (
                    (
                        await http.get(
                            "/v1/sync",
                            params={"after": after, "limit": 500},
                            headers={"Authorization": f"Bearer {member['token']}"},
                        )
                    )
                    .raise_for_status()
                    .json()
                )
                expected |= {item["seq"] for item in page["items"]}
                after, more = page["cursor"], page["more"]
            got = Counter(s for s, _ in received[member["device_id"]])
            per_device[member["username"]] = {
                "expected": len(expected),
                "lost": len(expected - set(got)),
                "duplicated": sum(n - 1 for n in got.values() if n > 1),
                "unexpected": len(set(got) - expected),
                "lost_seqs": sorted(expected - set(got))[:20],
            }
    return {
        "devices": len(per_device),
        "expected_per_device": max((d["expected"] for d in per_device.values()), default=0),
        "lost": sum(d["lost"] for d in per_device.values()),
        "duplicated": sum(d["duplicated"] for d in per_device.values()),
        "unexpected": sum(d["unexpected"] for d in per_device.values()),
        "devices_with_loss": {u: d["lost_seqs"] for u, d in per_device.items() if d["lost"]},
    }


def top_frames(raw: Path, count: int = 25) -> list[dict[str, Any]]:
    """Self time per function (the innermost frame of each sample) from py-spy's raw output."""
    selfs: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        if not stack or not samples.isdigit():
            continue
        leaf = stack.rsplit(";", 1)[-1]
        name, _, where = leaf.partition(" (")
        where = where.rstrip(")").rsplit(":", 1)[0]
        if "site-packages/" in where:
            where = where.split("site-packages/", 1)[1]
        selfs[f"{name} ({where.replace(str(Path.cwd()) + '/', '')})"] += int(samples)
        total += int(samples)
    return [{"frame": f, "samples": n, "share": n / total} for f, n in selfs.most_common(count)]


def inclusive_frames(raw: Path, count: int = 30) -> list[dict[str, Any]]:
    """Inclusive time of the project's own functions (server/, protocol/): the share of the
    samples whose stack passes through each, so that a request's parts can be compared."""
    within: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        if not stack or not samples.isdigit():
            continue
        total += int(samples)
        seen = set()
        for frame in stack.split(";"):
            name, _, where = frame.partition(" (")
            where = where.rstrip(")").rsplit(":", 1)[0].replace(str(Path.cwd()) + "/", "")
            if where.startswith(("server/", "protocol/")):
                seen.add(f"{name} ({where})")
        for key in seen:
            within[key] += int(samples)
    return [{"frame": f, "samples": n, "share": n / total} for f, n in within.most_common(count)]


# --- a database --------------------------------------------------------------------------------


REDIS_URL = "redis://127.0.0.1:6379/0"


def _served_by(kind: str) -> tuple[int, SecretStr | None]:
    """What a kind of set-up names besides its database: ``postgresql+redis`` is one process
    with the Redis bus, ``postgresql+redis:2`` two processes sharing the port (uvicorn's
    workers, as ATTACHE_WORKERS=2) joined by it."""
    _, _, bus = kind.partition("+")
    if not bus:
        return 1, None
    name, _, count = bus.partition(":")
    if name != "redis":
        raise SystemExit(f"unknown set-up {kind!r}: say sqlite, postgresql, postgresql+redis[:N]")
    return int(count or 1), SecretStr(REDIS_URL)


def bench_database(kind: str, args: argparse.Namespace, all_shapes: bool) -> dict[str, Any]:
    from server.settings import Settings

    with tempfile.TemporaryDirectory() as tmp, database(kind, Path(tmp)) as url:
        base = Path(tmp)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        workers, redis_url = _served_by(kind)
        settings = Settings(
            data_dir=base / "var",
            database_url=url,
            public_url=f"http://127.0.0.1:{port}",
            workers=workers,
            redis_url=redis_url,
        )
        started = time.perf_counter()
        seeded = asyncio.run(seed(settings, base / "homes"))
        seeding = time.perf_counter() - started
        note(f"{kind}: seeded in {seeding:.1f} s")
        result: dict[str, Any] = {"seeding_s": seeding}
        # /metrics, for the submits' commits: messages per commit is what the group commit
        # shares, and what a stream's ``messages`` frame holds at most.
        metrics_token = secrets.token_hex(16)
        server_cpus = PINNED[0] if PINNED is not None else None
        with served(
            settings, port, {"ATTACHE_METRICS_TOKEN": metrics_token}, server_cpus
        ) as server:
            room = Room(seeded, server, base, not args.no_deflate)
            room.metrics = (seeded["origin"], metrics_token) if workers == 1 else None
            try:
                runs = []
                for i in range(args.runs):
                    runs.append(one_room(room, args.seconds))
                    note(f"{kind}: one room run {i + 1}: " + _run_line(runs[-1]))
                result["one_room"] = {"runs": runs, **_summarise(runs)}
                if args.profile and all_shapes:
                    raw = Path(args.profile_raw) if args.profile_raw else base / "profile.txt"
                    profiled = one_room(room, args.seconds, profile=raw)
                    result["profile"] = {
                        "run": profiled,
                        "top_frames": top_frames(raw) if raw.exists() else [],
                        "inclusive": inclusive_frames(raw) if raw.exists() else [],
                    }
                    note(f"{kind}: profiled run: " + _run_line(profiled))
                if all_shapes and args.shape_runs:
                    clients = [client_shape(room) for _ in range(args.shape_runs)]
                    result["client"] = {"runs": clients}
                    note(
                        f"{kind}: client: {clients[-1]['steady_cpu_s']['median'] * 1e3:.2f} ms"
                        f" steady, {clients[-1]['change_cpu_s']['median'] * 1e3:.1f} ms at a"
                        " change"
                    )
                room.drain()
                received, counts, listener_cpu = room.received()
                result["stream_frames"] = dict(counts)
                result["listener_cpu_s"] = listener_cpu
                result["check"] = asyncio.run(
                    sync_check(seeded["origin"], seeded["members"][1:], received)
                )
                note(f"{kind}: sync check: {result['check']}")
            finally:
                room.stop()
        if all_shapes and args.shape_runs:
            # Each crowd on a server of its own: on a server that had a crowd before, the
            # allocator's kept pages would make the next crowd look cheaper than it is and its
            # memory after closing look returned (the earlier report's runs 2 and 3 did).
            crowds = []
            for i in range(args.shape_runs):
                with served(settings, port, cpus=server_cpus) as server:
                    crowd_room = Room(seeded, server, base, not args.no_deflate)
                    try:
                        crowds.append(idle_crowd(crowd_room, args.crowd))
                    finally:
                        crowd_room.stop()
                note(f"{kind}: idle crowd run {i + 1}: {_crowd_line(crowds[-1])}")
            result["idle_crowd"] = {"runs": crowds, "server": "a fresh server process per run"}
            # Once more with the server tracing its allocations (several times slower, so its
            # latencies and RSS are not the figures above): what of the crowd survives, read
            # when uvicorn's keepalive pings (every 20 s) have fired: a closed connection's
            # timer holds its protocol until then.
            traced_dir = base / "memory"
            traced_env = {
                "PYTHONTRACEMALLOC": "1",
                "ATTACHE_MEMORY_SNAPSHOT_DIR": str(traced_dir),
            }
            with served(settings, port, traced_env) as server:
                crowd_room = Room(seeded, server, base, not args.no_deflate)
                try:
                    traced = idle_crowd(crowd_room, args.crowd, traced_dir, TRACED_SETTLE)
                finally:
                    crowd_room.stop()
            result["idle_crowd"]["traced"] = traced["traced"]
            note(f"{kind}: idle crowd traced: {_traced_line(traced['traced'])}")
        if all_shapes and args.rooms:
            import many_rooms

            result["many_rooms"] = many_rooms.bench(
                settings, port, seeded["authorities"], base, args
            )
        return result


def _summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys_ = (
        "accepted_per_s",
        "deliveries_per_s",
        "server_cpu_per_message_s",
        "server_system_cpu_per_message_s",
        "server_cpu_per_message_v",
        "V_s",
        "postgres_cpu_per_message_s",
        "redis_cpu_per_message_s",
        "sender_cpu_per_send_s",
    )
    summary = {k: spread([r[k] for r in runs]) for k in keys_}
    for kind in ("submit_ms", "delivered_ms", "send_ms"):
        for p in ("p50", "p95", "p99"):
            summary[f"{kind}_{p}"] = spread([r[kind][p] for r in runs])
    return {"summary": summary}


def _run_line(r: dict[str, Any]) -> str:
    return (
        f"{r['accepted_per_s']:.1f} msg/s, {r['deliveries_per_s']:.0f} deliveries/s, "
        f"submit p99 {r['submit_ms']['p99']:.0f} ms, delivered p50/p99 "
        f"{r['delivered_ms'].get('p50', 0):.0f}/{r['delivered_ms'].get('p99', 0):.0f} ms, "
        f"server {r['server_cpu_per_message_s'] * 1e3:.2f} ms CPU/msg"
    )


def _traced_section(kind: str, t: dict[str, Any]) -> list[str]:
    made = t["kinds_made_per_connection"]
    out = [
        f"## Idle crowd on {kind}, traced: what of it survives",
        "",
        "A further crowd on a fresh server tracing its allocations (`PYTHONTRACEMALLOC=1`, "
        "several times slower, so none of its figures is in the table above), snapshots "
        "(`ATTACHE_MEMORY_SNAPSHOT_DIR`, SIGUSR1, after a full collection) before it opened, "
        f"while connected, and {TRACED_SETTLE:g} s after it closed (uvicorn's keepalive timer "
        "holds a closed connection's protocol for up to 20 s).",
        "",
        "| measure | value |",
        "|---|---|",
        f"| Python memory traced before / connected / after close | "
        f"{t['traced_before'] / 2**20:.1f} / {t['traced_connected'] / 2**20:.1f} / "
        f"{t['traced_after_close'] / 2**20:.1f} MiB |",
        f"| made by the crowd (growth by allocating line) | {t['made_by_crowd'] / 2**20:.1f} MiB |",
        f"| of it still held after close | {t['kept_of_it'] / 2**10:.0f} KiB "
        f"({t['kept_share']:.1%}; {t['kept_per_connection']:.0f} B per connection) |",
        f"| kinds of object made per connection (live count rose by at least one per two "
        f"connections) | {len(made)} |",
        f"| of those, still alive after close beyond their count before | "
        f"{len(t['kinds_outliving_the_crowd'])}"
        + (f": {t['kinds_outliving_the_crowd']}" if t["kinds_outliving_the_crowd"] else "")
        + " |",
        "",
        "Lines still holding most of what the crowd made (sizes, not objects: a set or a heap "
        "keeps the room it grew to):",
        "",
        "| bytes | allocated at |",
        "|---|---|",
    ]
    out += [f"| {k['bytes']:,} | `{_short_path(k['line'])}` |" for k in t["top_kept"]]
    return out


def _short_path(line: str) -> str:
    """``file:line`` from the project, a package or the standard library, without the prefix
    of this machine's directories."""
    root = str(Path(__file__).resolve().parent.parent) + "/"
    return re.sub(r"^.*?(site-packages/|lib/python3\.\d+/)", "", line.replace(root, ""))


def _traced_line(t: dict[str, Any]) -> str:
    return (
        f"the crowd made {t['made_by_crowd'] / 2**20:.1f} MiB of Python objects, "
        f"{t['kept_of_it'] / 2**10:.0f} KiB of it ({t['kept_share']:.1%}) still held after "
        f"close; {len(t['kinds_made_per_connection'])} kinds made per connection, "
        f"{len(t['kinds_outliving_the_crowd'])} outliving it"
    )


def _crowd_line(c: dict[str, Any]) -> str:
    return (
        f"{c['connections']} connected, {c['kib_per_connection']:.1f} KiB each, probe "
        f"delivered max {max(c['probe_delivered_ms_last_listener']):.0f} ms, RSS after close "
        f"{c['after_vs_before']:.2f} x before"
    )


def note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --- the report ------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next(
        (ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if ln.startswith("model name")),
        platform.processor(),
    )
    versions = {}
    for package in PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[package] = metadata.version(package)
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
    }


def goals(result: dict[str, Any], v: float) -> list[dict[str, Any]]:
    """Issue 8's goals: measured against the bound, pass or miss and by what factor."""
    rows = []

    def goal(name: str, measured: float, bound: float, unit: str, note_: str = "") -> None:
        rows.append(
            {
                "goal": name,
                "measured": measured,
                "bound": bound,
                "unit": unit,
                "pass": measured <= bound,
                "factor": measured / bound if bound else None,
                "note": note_,
            }
        )

    sqlite = result["databases"].get("sqlite") or next(iter(result["databases"].values()))
    s = sqlite["one_room"]["summary"]
    goal(
        "one room: server CPU per accepted message",
        s["server_cpu_per_message_v"]["median"],
        30,
        "V",
        "aim: under 10 V; each run in the V measured just before and after it",
    )
    goal("one room: p99 submit-to-delivered", s["delivered_ms_p99"]["median"], 100, "ms")
    goal("one room: lost", sqlite["check"]["lost"], 0, "messages")
    if "idle_crowd" in sqlite:
        crowds = sqlite["idle_crowd"]["runs"]
        size = crowds[0]["connections"]
        worst = statistics.median(max(c["probe_delivered_ms_last_listener"]) for c in crowds)
        goal(
            f"idle crowd ({size:,}): a message delivered to every listener",
            worst,
            100,
            "ms",
            "the goal names 5,000 connections" if size < 5000 else "",
        )
        goal(
            "idle crowd: memory per connection",
            statistics.median(c["kib_per_connection"] for c in crowds),
            50,
            "KiB",
        )
        goal(
            "idle crowd: RSS after close vs before",
            statistics.median(c["after_vs_before"] for c in crowds),
            1.2,
            "x",
        )
        if (traced := sqlite["idle_crowd"].get("traced")) is not None:
            goal(
                "idle crowd, traced: kinds of object made per connection still alive after close"
                " (the goal's alternative where the allocator keeps pages)",
                len(traced["kinds_outliving_the_crowd"]),
                0,
                "kinds",
                f"{len(traced['kinds_made_per_connection'])} kinds made per connection",
            )
    if "client" in sqlite:
        steady = statistics.median(c["steady_cpu_s"]["median"] for c in sqlite["client"]["runs"])
        goal("client: SDK CPU per send, audience unchanged", steady / v, 20, "V")
    if "many_rooms" in sqlite:
        import many_rooms

        if (row := many_rooms.goal(sqlite)) is not None:
            goal(*row)
    return rows


def markdown(r: dict[str, Any]) -> str:
    v = r["V_s"]
    m = r["machine"]
    out = [
        "# Channel delivery benchmark (issue 8)",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}, {m['platform']}.  ",
        "Packages: " + ", ".join(f"{k} {x}" for k, x in m["packages"].items()) + ".  ",
        f"Options: {r['options']}.  ",
        r.get("rate_limits", "Rate limits: as configured.") + "  ",
        f"V = one Ed25519 verification (pyca/cryptography), this run: **{v * 1e6:.1f} µs** CPU; "
        f"Ed25519 sign {r['primitives']['ed25519_sign']['median'] * 1e6:.1f} µs "
        f"({r['primitives']['ed25519_sign']['median'] / v:.2f} V); raw X-Wing HPKE seal "
        f"{r['primitives']['hpke_seal']['median'] * 1e6:.1f} µs "
        f"({r['primitives']['hpke_seal']['median'] / v:.2f} V).  ",
        "Listeners are lean (parse each frame's JSON and record seq and receive time; no "
        "decryption or verification); streams "
        + (
            "without compression"
            if "--no-deflate" in r["options"]
            else "offer permessage-deflate, which the server declines, as it does the SDK's"
        )
        + ". Senders are the real SDK (`Messenger.send`). The bench's "
        "own key stores use cheap KDF parameters (`KdfParams.for_tests()`). "
        + r.get("placement", "Load processes share the machine's cores with the server.")
        + " Figures: median (min to max) over runs.",
        "",
        "## Goals",
        "",
        "| goal | measured | bound | result |",
        "|---|---|---|---|",
    ]
    for g in r["goals"]:
        factor = f" ({g['factor']:.2f} x the bound)" if g["factor"] is not None else ""
        verdict = ("pass" if g["pass"] else "**miss**") + factor
        extra = f" ({g['note']})" if g["note"] else ""
        out.append(
            f"| {g['goal']}{extra} | {g['measured']:,.2f} {g['unit']} | "
            f"{g['bound']:,} {g['unit']} | {verdict} |"
        )
    out += [
        "",
        "## One room, set-up by set-up",
        "",
        "`postgresql+redis`: one server process with the Redis bus; `postgresql+redis:2`: two "
        "processes sharing the port (uvicorn's workers, as ATTACHE_WORKERS=2), joined by it. "
        "Server CPU is every server process's.",
        "",
        "| set-up | accepted/s | deliveries/s | submit-to-delivered p50 / p99, ms | "
        "server CPU per message, V |",
        "|---|---|---|---|---|",
    ]
    for kind, d in r["databases"].items():
        s = d["one_room"]["summary"]
        out.append(
            f"| {kind} | {s['accepted_per_s']['median']:.1f} | "
            f"{s['deliveries_per_s']['median']:.0f} | "
            f"{s['delivered_ms_p50']['median']:.1f} / {s['delivered_ms_p99']['median']:.1f} | "
            f"{s['server_cpu_per_message_v']['median']:.0f} |"
        )
    for kind, d in r["databases"].items():
        s = d["one_room"]["summary"]
        out += [
            "",
            f"## One room on {kind} ({len(d['one_room']['runs'])} run(s))",
            "",
            "| measure | value |",
            "|---|---|",
        ]
        rows = [
            ("messages accepted/s", _fmt(s["accepted_per_s"])),
            ("deliveries/s (pushes received by the 49 listeners)", _fmt(s["deliveries_per_s"])),
            *(
                (f"submit (POST to answer) p{p}, ms", _fmt(s[f"submit_ms_p{p}"]))
                for p in (50, 95, 99)
            ),
            *(
                (f"submit-to-delivered p{p}, ms", _fmt(s[f"delivered_ms_p{p}"]))
                for p in (50, 95, 99)
            ),
            *((f"whole SDK send p{p}, ms", _fmt(s[f"send_ms_p{p}"])) for p in (50, 99)),
            ("server CPU per message, ms", _fmt(s["server_cpu_per_message_s"], 1e3, 2)),
            (
                "server CPU per message, V (each run's own, measured just before and after it)",
                _fmt(s["server_cpu_per_message_v"], 1, 1),
            ),
            ("V of the runs, µs", _fmt(s["V_s"], 1e6, 1)),
            (
                "of which in the kernel (system calls), ms",
                _fmt(s["server_system_cpu_per_message_s"], 1e3, 2),
            ),
            (
                "messages per commit (submits sharing a transaction; last run)",
                f"{d['one_room']['runs'][-1]['messages_per_commit'] or 0:.2f}",
            ),
            (
                "server CPU per message by thread (last run), ms",
                ", ".join(
                    f"{name} {cpu * 1e3:.2f}"
                    for name, cpu in d["one_room"]["runs"][-1][
                        "server_threads_cpu_per_message_s"
                    ].items()
                ),
            ),
            ("sender (SDK) CPU per send, V", _fmt(s["sender_cpu_per_send_s"], 1 / v, 0)),
            (
                "lost / duplicated / unexpected (all listeners, against sync)",
                f"{d['check']['lost']} / {d['check']['duplicated']} / {d['check']['unexpected']} "
                f"({d['check']['devices']} devices, {d['check']['expected_per_device']} messages "
                "each)",
            ),
            (
                "stream frames by type (`messages`: pushes queued together, in one frame)",
                ", ".join(f"{k}: {n:,}" for k, n in sorted(d["stream_frames"].items())) or "none",
            ),
        ]
        if kind.startswith("postgresql"):
            rows.insert(
                8,
                (
                    "PostgreSQL processes' CPU per message, ms",
                    _fmt(s["postgres_cpu_per_message_s"], 1e3, 2),
                ),
            )
        if "+redis" in kind:
            rows.insert(
                9,
                (
                    "Redis's CPU per message, ms",
                    _fmt(s["redis_cpu_per_message_s"], 1e3, 2),
                ),
            )
        out += [f"| {a} | {b} |" for a, b in rows]
        for c in d.get("idle_crowd", {}).get("runs", []):
            out += [
                "",
                f"## Idle crowd on {kind}: {c['connections']:,} connections",
                "",
                "| measure | value |",
                "|---|---|",
                f"| server RSS before / connected / after close | {c['rss_before'] / 2**20:.1f}"
                f" / {c['rss_connected'] / 2**20:.1f} / {c['rss_after_close'] / 2**20:.1f} MiB |",
                f"| per idle connection | {c['kib_per_connection']:.1f} KiB |",
                f"| RSS after close / before | {c['after_vs_before']:.2f} |",
                "| probes: submit, ms | "
                + ", ".join(f"{x:.1f}" for x in c["probe_submit_ms"])
                + " |",
                "| probes: delivered at the last of 49 listeners, ms | "
                + ", ".join(f"{x:.1f}" for x in c["probe_delivered_ms_last_listener"])
                + " |",
                f"| server CPU per probe message | {c['server_cpu_per_probe_s'] * 1e3:.2f} ms "
                f"({c['server_cpu_per_probe_s'] / v:.0f} V) |",
                f"| connections that failed | {dict(c['failures']) or 'none'} |",
            ]
        if (t := d.get("idle_crowd", {}).get("traced")) is not None:
            out += ["", *_traced_section(kind, t)]
        for c in d.get("client", {}).get("runs", []):
            p = c["primitives_in_sender"]
            out += [
                "",
                f"## Client on {kind}",
                "",
                "| measure | value |",
                "|---|---|",
                f"| SDK CPU per send, audience unchanged ({STEADY_SENDS} sends) | "
                f"{_fmt(c['steady_cpu_s'], 1e3, 2)} ms = {c['steady_cpu_s']['median'] / v:.0f} V |",
                f"| SDK CPU per send at an audience change ({CHANGE_SENDS} sends) | "
                f"{_fmt(c['change_cpu_s'], 1e3, 1)} ms = {c['change_cpu_s']['median'] / v:.0f} V |",
                f"| in the sender process: V, Ed25519 sign, HPKE seal | "
                f"{p['ed25519_verify'] * 1e6:.1f}, {p['ed25519_sign'] * 1e6:.1f}, "
                f"{p['hpke_seal'] * 1e6:.1f} µs |",
            ]
        if "profile" in d:
            out += [
                "",
                f"## Where the time goes (py-spy, server, one room on {kind})",
                "",
                "A separate profiled run (py-spy samples by pausing the process, so its "
                f"figures are not in the medians): {_run_line(d['profile']['run'])}.",
                "",
                "| self share | samples | frame |",
                "|---|---|---|",
            ]
            out += [
                f"| {f['share']:.1%} | {f['samples']} | `{f['frame']}` |"
                for f in d["profile"]["top_frames"]
            ]
            out += [
                "",
                "Inclusive time of the project's own functions (share of all samples whose "
                "stack passes through each):",
                "",
                "| inclusive share | samples | function |",
                "|---|---|---|",
            ]
            out += [
                f"| {f['share']:.1%} | {f['samples']} | `{f['frame']}` |"
                for f in d["profile"].get("inclusive", [])
            ]
        if "many_rooms" in d:
            import many_rooms

            out += many_rooms.markdown(kind, d, v)
    if not any("many_rooms" in d for d in r["databases"].values()):
        out += ["", "## Not measured", "", "- Many rooms: skipped (`--rooms 0`)."]
    return "\n".join(out) + "\n"


def _fmt(value: dict[str, float], scale: float = 1.0, digits: int = 1) -> str:
    m, lo, hi = (value[k] * scale for k in ("median", "min", "max"))
    return f"{m:,.{digits}f} ({lo:,.{digits}f} to {hi:,.{digits}f})"


# --- main --------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=1, help="runs of the one-room shape")
    parser.add_argument("--shape-runs", type=int, default=1, help="runs of the other shapes")
    parser.add_argument("--seconds", type=float, default=30.0, help="one-room window")
    parser.add_argument("--crowd", type=int, default=1000, help="idle connections")
    parser.add_argument(
        "--rooms", type=int, default=20, help="many rooms: channels of fifty (0: skip the shape)"
    )
    parser.add_argument(
        "--rooms-seconds", type=float, default=8.0, help="many rooms: seconds per rate step"
    )
    parser.add_argument(
        "--database",
        default="sqlite,postgresql",
        help="comma-separated set-ups: sqlite, postgresql, postgresql+redis (one process "
        "with the Redis bus), postgresql+redis:N (N processes sharing the port, joined by "
        "it); every shape runs on the first, one room on all (--all-shapes: every shape on all)",
    )
    parser.add_argument(
        "--all-shapes", action="store_true", help="every shape on every set-up, not the first"
    )
    parser.add_argument("--profile", action="store_true", help="py-spy the server (one room)")
    parser.add_argument("--profile-raw", help="keep py-spy's raw samples (collapsed stacks) here")
    parser.add_argument(
        "--no-deflate",
        action="store_true",
        help="streams without permessage-deflate (the SDK's stream negotiates it)",
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="the server on the first core alone, this script and its load on the others "
        "(a server with a core of its own, as where load does not share its machine)",
    )
    parser.add_argument("--output", default=str(RESULTS), help="JSON report (and .md beside)")
    parser.add_argument("--role", help=argparse.SUPPRESS)
    parser.add_argument("spec", nargs="?", help=argparse.SUPPRESS)
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # children inherit it
    if args.role:
        import many_rooms

        role = {"listener": listener_main, "crowd": crowd_main, "sender": sender_main}
        role |= many_rooms.ROLES
        asyncio.run(role[args.role](json.loads(args.spec)))
        return
    if args.pin:
        global PINNED
        cores = sorted(os.sched_getaffinity(0))
        if len(cores) < 2:
            parser.error("--pin needs two cores or more")
        PINNED = ({cores[0]}, set(cores[1:]))
        pin(os.getpid(), PINNED[1])
    py_spy = Path(sys.executable).parent / "py-spy"
    if args.profile and not py_spy.exists():
        note("py-spy is not installed (.venv/bin/pip install py-spy): not profiling")
        args.profile = False
    before = primitives()
    note(f"V = {before['ed25519_verify']['median'] * 1e6:.1f} µs")
    kinds = args.database.split(",")
    rate_limits = unbind_rate_limits()
    databases = {
        kind: bench_database(kind, args, args.all_shapes or kind == kinds[0]) for kind in kinds
    }
    after = primitives()
    measured = {k: spread([before[k]["median"], after[k]["median"]]) for k in before}
    v = measured["ed25519_verify"]["median"]
    result: dict[str, Any] = {
        "machine": machine(),
        "options": " ".join(sys.argv[1:]) or "(defaults)",
        "V_s": v,
        "primitives": measured,
        "kdf": "the bench's key stores use KdfParams.for_tests() (cheapest accepted Argon2id)",
        "placement": (
            f"The server runs alone on core {sorted(PINNED[0])}, the load processes and this "
            f"script on {sorted(PINNED[1])} (--pin)."
            if PINNED is not None
            else "Load processes share the machine's cores with the server."
        ),
        "listeners": "lean: JSON-parse each frame, record seq and time.time(); no decryption",
        "databases": databases,
        "rate_limits": rate_limits,
    }
    result["goals"] = goals(result, v)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    report = markdown(result)
    output.with_suffix(".md").write_text(report, encoding="utf-8")
    print(report)


if __name__ == "__main__":
    main()
