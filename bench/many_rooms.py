"""The many-rooms shape of the channel benchmark (issue 8), run by bench_channel.py.

Twenty channels (``--rooms``) of fifty devices, every device connected, and open-loop senders
at rising rates until p99 submit-to-delivered passes 100 ms: the highest sustained rate.

Set-up, after the other shapes, on the same database and keys (in this process, through the
API over ``httpx.ASGITransport``, with the server stopped): per channel ``mr<NN>`` (ceiling NATO
SECRET), five users per NATO nation cleared NATO SECRET, each with one device enrolled through
the SDK's own calls (``enroll``, ``certify_device``, ``login``, as ``bench_channel.seed`` does;
the listening devices' without a key store, which a lean listener never opens: that saves two
Argon2id derivations each) and added to the channel through the API. Then a fresh uvicorn
process serves the database (so that the other shapes' connections and garbage are not in this
one's figures), and:
  * listeners: device 1 to 49 of every channel on ``/v1/stream``, lean as in the one-room shape
    (each frame JSON-parsed, seq and receive time recorded), a few hundred per process;
  * senders: device 0 of every channel, the real SDK (``Messenger.send``), several Messengers
    per process. Open loop: each channel's sends are started on a fixed schedule (its share
    of the step's total rate, phases spread across channels), each as its own task, whether
    or not earlier ones have been answered.

Steps of ``--rooms-seconds`` each, at the total rates of ``RATES``; after each, the senders'
last answers are awaited and the server drained (its CPU quiet) before the listeners report.
A step fails when its p99 submit-to-delivered exceeds 100 ms or its accepted rate falls short
of the offered one by more than 10 %; a failed step is run once more, and the ladder stops when
that fails too. The highest sustained rate is the highest offered rate of a step that passed.
Server CPU per message is net of what the server spends with everyone connected and nothing
sent (pings), measured before the first step. The server is started with bench/gc_probe on its
path, whose ``sitecustomize`` logs each full collection (the oldest generation's, during which
its event loop runs nothing): each step reports those that fell within it. Each listener's
received seqs are counted against what was accepted for its channel (lost, duplicated,
unexpected).

Imports ``bench_channel`` as a module (a second copy of it when that is ``__main__``: it holds
only functions and constants).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import bench_channel as channel
import httpx
from _common import CEILING, LABEL, NATIONS, PASSPHRASE, served, spread

from clients.sdk import AttacheClient, Keystore, Messenger, certify_device, enroll
from protocol import keys

if TYPE_CHECKING:
    import argparse
    import subprocess

    from server.settings import Settings

# Total offered msg/s, all channels together: finer where this machine's limit lies.
RATES = (20, 40, 60, 80, 100, 120, 160, 200, 240, 320, 400, 480, 640, 800)
P99_BOUND_MS = 100
SHORTFALL = 0.10  # a step whose accepted rate is this far below the offered rate fails
# A failed step is run again this many times before the ladder stops: the machine is shared,
# and one stall elsewhere should not end the ladder.
RETRIES = 1
PER_NATION = 5  # fifty devices per channel over the ten nations
PER_LISTENER_PROCESS = 250  # connections per listener process
SENDER_PROCESSES = 2
GC_PROBE = Path(__file__).resolve().parent / "gc_probe"  # its sitecustomize logs full collections
GC_LOG = "server-gc.log"


def room_name(index: int) -> str:
    return f"mr{index:02d}"


# --- set-up, in this process -------------------------------------------------------------------


async def seed_rooms(
    settings: Settings, homes: Path, authorities: dict[str, keys.AuthorityKey], rooms: int
) -> list[dict[str, Any]]:
    """``rooms`` channels of fifty users with one certified, signed-in device each: a list of
    ``{"name", "members": [{"username", "nation", "device_id", "token", "home"}]}``."""
    from server.app import create_app
    from server.auth.principal import CONSOLE
    from server.devices.service import do_issue_enrolment_code
    from server.directory import service as directory

    app = create_app(settings)
    origin = settings.effective_public_url
    people = {
        room_name(r): [
            (f"{room_name(r)}-{n.lower()}{i}", n) for i in range(PER_NATION) for n in NATIONS
        ]
        for r in range(rooms)
    }
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        codes: dict[str, str] = {}
        async with app.state.sessionmaker() as session, session.begin():
            catalog = await directory.load_catalog(session, app.state.catalog)
            for username, nation in (p for members in people.values() for p in members):
                user = await directory.do_create_user(
                    session,
                    CONSOLE,
                    catalog,
                    username=username,
                    nationality=nation,
                    clearance=CEILING,
                    roles=["officer"],
                )
                codes[username] = (
                    await do_issue_enrolment_code(session, CONSOLE, settings, user)
                ).code

        gate = asyncio.Semaphore(4)  # a few at once: one's database work overlaps another's

        async def enrol(username: str, nation: str, sender: bool) -> dict[str, str]:
            async with gate, AttacheClient(origin, transport=transport) as client:
                if sender:  # the SDK's whole path: its Messenger opens this key store
                    store = Keystore(homes / username, kdf=keys.KdfParams.for_tests())
                    enrolled = await enroll(
                        origin,
                        username=username,
                        code=codes[username],
                        device_name=f"{username}-bench",
                        passphrase=PASSPHRASE,
                        keystore=store,
                        transport=transport,
                    )
                    device_keys, device = store.device_keys(PASSPHRASE), enrolled.device
                else:  # a lean listener never opens a key store: the same requests without it
                    device_keys = keys.DeviceKeys.generate()
                    device = await client.enrol(
                        username=username,
                        code=codes[username],
                        name=f"{username}-bench",
                        device_keys=device_keys,
                    )
                device = await certify_device(client, nation, authorities[nation], device)
                assert device["status"] == "active", device
                session = await client.login(device["id"], device_keys)
            return {
                "username": username,
                "nation": nation,
                "device_id": device["id"],
                "token": session["token"],
                "home": str(homes / username),
            }

        seeded = []
        for name, pairs in people.items():
            members = list(
                await asyncio.gather(*(enrol(u, n, i == 0) for i, (u, n) in enumerate(pairs)))
            )
            async with AttacheClient(origin, token=members[0]["token"], transport=transport) as c:
                await c.create_channel(name, CEILING)
                for member in members[1:]:
                    await c.add_member(name, member["username"])
                assert len(await c.roster(name)) == len(members)
            seeded.append({"name": name, "members": members})
    return seeded


# --- load processes ----------------------------------------------------------------------------


async def listener_main(spec: dict[str, Any]) -> None:
    """Lean listeners, as ``bench_channel.listener_main`` but opened concurrently, and each
    ``dump PATH`` holds only what arrived since the last one."""
    received: dict[str, list[tuple[int, float]]] = {d: [] for d, _ in spec["devices"]}
    counts: Counter[str] = Counter()
    pong = json.dumps({"type": "pong"})
    gate = asyncio.Semaphore(32)

    async def open_one(token: str) -> Any:
        async with gate:
            return await channel._stream(spec["url"], token, spec["compression"])

    async def listen(device_id: str, ws: Any) -> None:
        try:
            async for raw in ws:
                now = time.time()
                frame = json.loads(raw)
                kind = frame.get("type")
                counts[str(kind)] += 1
                if kind == "message":
                    received[device_id].append((frame["seq"], now))
                elif kind == "messages":
                    received[device_id].extend((item["seq"], now) for item in frame["items"])
                elif kind == "ping":
                    await ws.send(pong)
        except Exception as exc:
            counts[f"error {exc.__class__.__name__}: {exc}"] += 1
        counts["closed"] += 1

    streams = await asyncio.gather(*(open_one(token) for _, token in spec["devices"]))
    tasks = [
        asyncio.create_task(listen(d, ws))
        for (d, _), ws in zip(spec["devices"], streams, strict=True)
    ]
    channel._reply(ready=len(streams))
    while (command := await channel._command())[0] != "stop":
        dumped = {d: got for d, got in received.items() if got}
        for d in dumped:
            received[d] = []
        Path(command[1]).write_text(
            json.dumps({"received": dumped, "counts": counts, "cpu": time.process_time()})
        )
        channel._reply(dumped=True)
    await asyncio.gather(*(ws.close() for ws in streams), return_exceptions=True)
    await asyncio.gather(*tasks, return_exceptions=True)


async def sender_main(spec: dict[str, Any]) -> None:
    """Several channels' sender devices, each a Messenger. ``step RATE START SECONDS``: every
    channel sends at RATE msg/s from START for SECONDS, open loop; answers the records once
    every send of the step has been answered."""
    senders: list[tuple[str, float, Messenger]] = []
    submitted: dict[str, float] = {}  # message id -> time of its POST, after all client work
    for entry in spec["senders"]:
        store = Keystore(Path(entry["home"]), kdf=keys.KdfParams.for_tests())
        messenger = await Messenger.open(store, passphrase=PASSPHRASE)
        submit = messenger.client.submit_message

        async def timed_submit(
            channel_id: str, sealed: dict[str, Any], _submit: Any = submit, **kw: Any
        ) -> dict[str, Any]:
            submitted[sealed["header"]["message_id"]] = time.time()
            return dict(await _submit(channel_id, sealed, **kw))

        messenger.client.submit_message = timed_submit  # type: ignore[method-assign]
        senders.append((entry["channel"], entry["phase"], messenger))
    text = "the committee meets at 14:00 in room 2. " * 2

    async def send(name: str, messenger: Messenger, at: float) -> dict[str, Any]:
        message_id, start = str(uuid.uuid4()), time.time()
        record: dict[str, Any] = {"channel": name, "scheduled": at, "start": start}
        try:
            sent = await messenger.send(name, text, label=LABEL, message_id=message_id)
        except Exception as exc:
            record["error"] = f"{exc.__class__.__name__}: {exc}"
        else:
            record["seq"] = sent.seq
        record["end"] = time.time()
        record["submit"] = submitted.pop(message_id, record["end"])
        return record

    async def schedule(
        name: str, phase: float, messenger: Messenger, rate: float, start: float, seconds: float
    ) -> list[dict[str, Any]]:
        tasks, k = [], 0
        while (at := start + (k + phase) / rate) < start + seconds:
            with contextlib.suppress(ValueError):
                await asyncio.sleep(at - time.time())
            tasks.append(asyncio.create_task(send(name, messenger, at)))
            k += 1
        return list(await asyncio.gather(*tasks))

    first = []
    for name, _, messenger in senders:  # the first send makes each sender's audience
        first.append((name, (await messenger.send(name, text, label=LABEL)).seq))
    channel._reply(first=first)
    try:
        while (command := await channel._command())[0] != "stop":
            rate, start, seconds = (float(x) for x in command[1:4])
            cpu = time.process_time()
            runs = await asyncio.gather(
                *(schedule(n, p, m, rate, start, seconds) for n, p, m in senders)
            )
            channel._reply(records=[r for run in runs for r in run], cpu=time.process_time() - cpu)
    finally:
        for _, _, messenger in senders:
            await messenger.aclose()


ROLES = {"rooms-listener": listener_main, "rooms-sender": sender_main}


# --- the shape ---------------------------------------------------------------------------------


class Rooms:
    """The served rooms: listener and sender processes, kept across runs."""

    def __init__(
        self,
        rooms: list[dict[str, Any]],
        origin: str,
        server: subprocess.Popen[bytes],
        base: Path,
        deflate: bool,
    ) -> None:
        self.rooms, self.server, self.base = rooms, server, base
        self.gc_log = base / GC_LOG
        url = origin.replace("http://", "ws://") + "/v1/stream"
        compression = "deflate" if deflate else None
        self.channel_of = {m["device_id"]: r["name"] for r in rooms for m in r["members"][1:]}
        listening = [(m["device_id"], m["token"]) for r in rooms for m in r["members"][1:]]
        parts = max(1, -(-len(listening) // PER_LISTENER_PROCESS))
        time.sleep(1.0)
        self.rss_before = channel.rss(server.pid)
        self.listeners = [
            channel.Child(
                "rooms-listener",
                {"url": url, "compression": compression, "devices": listening[i::parts]},
            )
            for i in range(parts)
        ]
        self.connected = sum(child.answer()["ready"] for child in self.listeners)
        time.sleep(1.0)
        self.rss_connected = channel.rss(server.pid)
        self.senders = [
            channel.Child(
                "rooms-sender",
                {
                    "senders": [
                        {
                            "channel": r["name"],
                            "home": r["members"][0]["home"],
                            "phase": i / len(rooms),
                        }
                        for i, r in enumerate(rooms)
                        if i % SENDER_PROCESSES == p
                    ]
                },
            )
            for p in range(min(SENDER_PROCESSES, len(rooms)))
        ]
        # Everything each listening device has received (seq, time), across dumps.
        self.received: dict[str, list[tuple[int, float]]] = {d: [] for d in self.channel_of}
        self.counts: dict[int, Counter[str]] = {}  # other frames, per listener process
        self.accepted: dict[str, set[int]] = {r["name"]: set() for r in rooms}
        for child in self.senders:  # each sender's first send, which made its audience
            for name, seq in child.answer()["first"]:
                self.accepted[name].add(int(seq))
        self.dumps = 0
        time.sleep(1.0)
        idle0, idle_start = channel.cpu_seconds(server.pid), time.monotonic()
        time.sleep(3.0)  # the server's own CPU with everyone connected and nothing sent
        self.idle_cpu_per_s = (channel.cpu_seconds(server.pid) - idle0) / (
            time.monotonic() - idle_start
        )

    def stop(self) -> None:
        for child in self.listeners + self.senders:
            child.stop()

    def collect(self) -> float:
        """Take what the listeners received since the last call; their CPU seconds so far."""
        cpu = 0.0
        for i, child in enumerate(self.listeners):
            path = self.base / f"rooms-listener-{i}-{self.dumps}.json"
            child.ask(f"dump {path}")
            data = json.loads(path.read_text())
            path.unlink()
            for device, got in data["received"].items():
                self.received[device].extend((int(s), t) for s, t in got)
            self.counts[i] = Counter(data["counts"])  # each process's own, since it started
            cpu += data["cpu"]
        self.dumps += 1
        return cpu

    def step(self, total_rate: float, seconds: float) -> dict[str, Any]:
        server = self.server.pid
        cpu0, clock0 = channel.cpu_seconds(server), time.monotonic()
        start = time.time() + 0.5  # every sender process has the command by then
        for child in self.senders:
            child.send(f"step {total_rate / len(self.rooms)} {start} {seconds}")
        answers = [child.answer() for child in self.senders]
        records = [r for a in answers for r in a["records"]]
        cpu1, busy = self.drain(), time.monotonic() - clock0
        end = time.time()
        self.collect()
        ok = [r for r in records if "seq" in r]
        for r in ok:
            self.accepted[r["channel"]].add(int(r["seq"]))
        sent = {int(r["seq"]): r for r in ok}
        delays, last = [], start
        for got in self.received.values():
            for seq, t in got:
                if seq in sent:
                    delays.append(t - sent[seq]["submit"])
                    last = max(last, t)
        answered = max((r["end"] for r in ok), default=start + seconds)
        accepted_window = max(seconds, answered - start)
        errors = Counter(r["error"] for r in records if "error" in r)
        delivered = channel.latency([d * 1e3 for d in delays])
        step = {
            "offered_per_s": total_rate,
            "offered": len(records),
            "accepted": len(ok),
            "accepted_per_s": len(ok) / accepted_window,
            "deliveries": len(delays),
            "deliveries_per_s": len(delays) / max(seconds, last - start),
            "submit_ms": channel.latency([(r["end"] - r["submit"]) * 1e3 for r in ok]),
            "delivered_ms": delivered,
            "launch_lag_ms": channel.latency(
                [(r["start"] - r["scheduled"]) * 1e3 for r in records]
            ),
            "errors": dict(errors),
            "server_cpu_s": cpu1 - cpu0,
            # Less what the server spends with nothing sent (pings), over the same time.
            "server_cpu_per_message_s": (cpu1 - cpu0 - self.idle_cpu_per_s * busy)
            / max(1, len(ok)),
            "server_cpu_per_message_raw_s": (cpu1 - cpu0) / max(1, len(ok)),
            "sender_cpu_per_send_s": sum(a["cpu"] for a in answers) / max(1, len(records)),
            "server_full_gc_ms": [p * 1e3 for t, p in self.full_collections() if start <= t <= end],
        }
        failed = []
        if delivered.get("p99", float("inf")) > P99_BOUND_MS:
            failed.append(f"p99 submit-to-delivered over {P99_BOUND_MS:.0f} ms")
        if step["accepted_per_s"] < (1 - SHORTFALL) * total_rate:
            failed.append(f"accepted more than {SHORTFALL:.0%} below offered")
        step["failed"] = failed
        return step

    def full_collections(self) -> list[tuple[float, float]]:
        """The server's collections of the oldest generation so far: (end time, seconds)."""
        if not self.gc_log.exists():
            return []
        lines = self.gc_log.read_text(encoding="utf-8").splitlines()
        return [(float(t), float(p)) for t, p, _ in (line.split() for line in lines)]

    def drain(self, timeout: float = 60.0) -> float:
        """Wait until the server is idle again (deliveries done): its CPU time then."""
        last, quiet, end = channel.cpu_seconds(self.server.pid), 0, time.time() + timeout
        while time.time() < end and quiet < 3:
            time.sleep(0.2)
            now = channel.cpu_seconds(self.server.pid)
            quiet = quiet + 1 if now - last < 0.01 else 0
            last = now
        return last

    def ladder(self, seconds: float) -> dict[str, Any]:
        steps = []
        for rate in RATES:
            for attempt in range(1 + RETRIES):
                steps.append(self.step(rate, seconds))
                steps[-1]["attempt"] = attempt + 1
                channel.note(f"many rooms: {step_line(steps[-1])}")
                if not steps[-1]["failed"]:
                    break
            if steps[-1]["failed"]:
                break
        passed = [s for s in steps if not s["failed"]]
        best = passed[-1] if passed else None
        return {
            "steps": steps,
            "sustained_per_s": best["offered_per_s"] if best else 0.0,
            "sustained_accepted_per_s": best["accepted_per_s"] if best else 0.0,
            "sustained_delivered_p99_ms": best["delivered_ms"]["p99"] if best else None,
            "stopped_by": steps[-1]["failed"] or ["the last rate of the ladder"],
        }

    def check(self) -> dict[str, Any]:
        """Each listening device's received seqs against what was accepted for its channel."""
        lost = duplicated = unexpected = 0
        with_loss: dict[str, int] = {}
        for device, got in self.received.items():
            expected = self.accepted[self.channel_of[device]]
            seen = Counter(s for s, _ in got)
            missing = len(expected - set(seen))
            lost += missing
            duplicated += sum(n - 1 for n in seen.values() if n > 1)
            unexpected += len(set(seen) - expected)
            if missing:
                with_loss[device] = missing
        return {
            "devices": len(self.received),
            "accepted": sum(len(s) for s in self.accepted.values()),
            "lost": lost,
            "duplicated": duplicated,
            "unexpected": unexpected,
            "devices_with_loss": dict(list(with_loss.items())[:20]),
        }


def step_line(s: dict[str, Any]) -> str:
    d = s["delivered_ms"]
    return (
        f"offered {s['offered_per_s']:.0f}/s: accepted {s['accepted_per_s']:.1f}/s, "
        f"{s['deliveries_per_s']:.0f} deliveries/s, delivered p50/p99 "
        f"{d.get('p50', 0):.0f}/{d.get('p99', 0):.0f} ms, server "
        f"{s['server_cpu_per_message_s'] * 1e3:.2f} ms CPU/msg"
        + (f", errors {s['errors']}" if s["errors"] else "")
        + (f" -- {'; '.join(s['failed'])}" if s["failed"] else "")
    )


def bench(
    settings: Settings,
    port: int,
    authorities: dict[str, keys.AuthorityKey],
    base: Path,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Seed ``args.rooms`` channels, serve them afresh and climb the rate ladder
    ``args.shape_runs`` times: the shape's part of the JSON report."""
    started = time.perf_counter()
    rooms = asyncio.run(seed_rooms(settings, base / "rooms", authorities, args.rooms))
    seeding = time.perf_counter() - started
    channel.note(f"many rooms: {args.rooms} channels seeded in {seeding:.1f} s")
    result: dict[str, Any] = {
        "rooms": args.rooms,
        "devices_per_room": len(rooms[0]["members"]),
        "step_seconds": args.rooms_seconds,
        "seeding_s": seeding,
    }
    with contextlib.ExitStack() as stack:
        with gc_logged(base / GC_LOG):
            server = stack.enter_context(served(settings, port))
        origin = settings.effective_public_url
        served_rooms = Rooms(rooms, origin, server, base, not args.no_deflate)
        try:
            result["listening"] = served_rooms.connected
            result["rss_before_listeners"] = served_rooms.rss_before
            result["rss_listeners_connected"] = served_rooms.rss_connected
            result["idle_cpu_per_s"] = served_rooms.idle_cpu_per_s
            runs = []
            for i in range(args.shape_runs):
                runs.append(served_rooms.ladder(args.rooms_seconds))
                channel.note(
                    f"many rooms run {i + 1}: sustained {runs[-1]['sustained_per_s']:.0f} msg/s"
                )
            result["runs"] = runs
            result["sustained_per_s"] = spread([r["sustained_per_s"] for r in runs])
            served_rooms.drain()
            listener_cpu = served_rooms.collect()
            result["listener_cpu_s"] = listener_cpu
            result["stream_frames"] = dict(sum(served_rooms.counts.values(), Counter()))
            result["server_full_gc_ms"] = [p * 1e3 for _, p in served_rooms.full_collections()]
            result["check"] = served_rooms.check()
            channel.note(f"many rooms: check: {result['check']}")
        finally:
            served_rooms.stop()
    return result


@contextlib.contextmanager
def gc_logged(log: Path) -> Iterator[None]:
    """Processes started within log their full collections to ``log`` (bench/gc_probe)."""
    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", "ATTACHE_BENCH_GC_LOG")}
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(GC_PROBE), saved["PYTHONPATH"]]))
    os.environ["ATTACHE_BENCH_GC_LOG"] = str(log)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# --- the report --------------------------------------------------------------------------------


def goal(d: dict[str, Any]) -> tuple[str, float, float, str, str] | None:
    """The goal row (name, measured, bound, unit, note) for ``bench_channel.goals``."""
    m = d.get("many_rooms")
    if not m:
        return None
    runs = m["runs"]
    shape = f"{m['rooms']} channels of {m['devices_per_room']}"
    passed = [r for r in runs if r["sustained_delivered_p99_ms"] is not None]
    if not passed:
        first = statistics.median(r["steps"][0]["delivered_ms"].get("p99", 0) for r in runs)
        return (
            f"many rooms ({shape}): p99 submit-to-delivered at the lowest rate",
            first,
            P99_BOUND_MS,
            "ms",
            f"no rate sustained, the lowest offered {RATES[0]} msg/s",
        )
    return (
        f"many rooms ({shape}): p99 submit-to-delivered at the highest sustained rate",
        statistics.median(r["sustained_delivered_p99_ms"] for r in passed),
        P99_BOUND_MS,
        "ms",
        f"highest sustained rate {m['sustained_per_s']['median']:,.0f} msg/s offered",
    )


def markdown(kind: str, d: dict[str, Any], v: float) -> list[str]:
    """The report's section on the many-rooms shape of database ``kind``."""
    m = d.get("many_rooms")
    if not m:
        return []
    c = m["check"]
    out = [
        "",
        f"## Many rooms on {kind}: {m['rooms']} channels of {m['devices_per_room']} devices",
        "",
        f"{m['listening']:,} devices listening (lean), one real-SDK sender per channel, open "
        f"loop: each channel's sends start on a fixed schedule whether or not earlier ones "
        f"were answered. Steps of {m['step_seconds']:g} s at rising total rates; a step fails "
        f"when p99 submit-to-delivered exceeds {P99_BOUND_MS:.0f} ms or fewer than "
        f"{1 - SHORTFALL:.0%} of the offered messages per second are accepted. Served by a "
        f"fresh server process; seeded in {m['seeding_s']:.0f} s. Server RSS "
        f"{m['rss_before_listeners'] / 2**20:.1f} MiB before the listeners connected, "
        f"{m['rss_listeners_connected'] / 2**20:.1f} MiB with them; its CPU with nothing "
        f"sent {m['idle_cpu_per_s'] * 1e3:.1f} ms/s, taken out of the CPU per message. A "
        "failed step is run "
        + ("once more" if RETRIES == 1 else f"{RETRIES} more times")
        + " before the ladder stops: the machine is shared.",
        "",
        f"**Highest sustained rate: {_spread(m['sustained_per_s'], 0)} msg/s** "
        f"(median (min to max) of {len(m['runs'])} run(s)).",
    ]
    for i, run in enumerate(m["runs"]):
        out += [
            "",
            f"Run {i + 1}: sustained {run['sustained_per_s']:,.0f} msg/s; stopped by: "
            + "; ".join(run["stopped_by"])
            + ".",
            "",
            "| offered msg/s | accepted/s | deliveries/s | submit p99, ms | "
            "submit-to-delivered p50 / p95 / p99, ms | server CPU per message, ms (V) | "
            "launch lag p99, ms | server's full GC pauses, ms | errors | step |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for s in run["steps"]:
            dl = s["delivered_ms"]
            cpu = s["server_cpu_per_message_s"]
            again = " (again)" if s.get("attempt", 1) > 1 else ""
            out.append(
                f"| {s['offered_per_s']:,.0f}{again} | {s['accepted_per_s']:,.1f} | "
                f"{s['deliveries_per_s']:,.0f} | {s['submit_ms'].get('p99', 0):,.1f} | "
                f"{dl.get('p50', 0):,.1f} / {dl.get('p95', 0):,.1f} / {dl.get('p99', 0):,.1f} | "
                f"{cpu * 1e3:.2f} ({cpu / v:.0f}) | {s['launch_lag_ms'].get('p99', 0):,.1f} | "
                f"{', '.join(f'{p:.0f}' for p in s.get('server_full_gc_ms', [])) or 'none'} | "
                f"{sum(s['errors'].values()) or 'none'} | "
                f"{'; '.join(s['failed']) or 'sustained'} |"
            )
    out += [
        "",
        f"Lost / duplicated / unexpected, every listening device's stream against what was "
        f"accepted for its channel: {c['lost']} / {c['duplicated']} / {c['unexpected']} "
        f"({c['devices']:,} devices, {c['accepted']:,} messages accepted). Stream frames by "
        "type (`messages`: pushes queued together, in one frame): "
        + (", ".join(f"{k}: {n:,}" for k, n in sorted(m["stream_frames"].items())) or "none")
        + ". Launch lag is how late the sender processes started sends against their "
        "schedule (they share the cores with the server). The server's full GC pauses are "
        "its collections of the oldest generation (logged by bench/gc_probe), during which its "
        "event loop runs nothing; all of them in this shape, ms: "
        + (", ".join(f"{p:.0f}" for p in m.get("server_full_gc_ms", [])) or "none")
        + ".",
    ]
    return out


def _spread(value: dict[str, float], digits: int) -> str:
    m, lo, hi = (value[k] for k in ("median", "min", "max"))
    return f"{m:,.{digits}f} ({lo:,.{digits}f} to {hi:,.{digits}f})"
