"""Benchmark of documents end to end: a large file through client and server in bounded memory.

Run: ``.venv/bin/python bench/bench_documents.py [--size BYTES] [--runs N]``.
Default: one run with a 1 GiB file (1,073,741,824 bytes), which needs about three times that
on the temporary directory's disk (the source, the server's blob, the download). Writes
``bench/results/documents.json`` and prints a Markdown table; every repeated figure is the
median of its runs with the minimum and maximum. Not part of the test suite.

Set up (in this process, over the API through ``httpx.ASGITransport``): a fresh embedded
SQLite database in a temporary directory, nations USA and GBR with real authority keys, one
user each cleared NATO SECRET with an enrolled and certified device, and a channel holding
both. The public URL is fixed before enrolment, since login proofs are bound to it.

Then the same database and keys are served by a real uvicorn (one process, no reload) and a
separate client process (this script with ``--client``) signs in as both users and, per run,
uploads the file with ``Documents(alice).put`` and downloads it with ``Documents(bob).get``.
This process writes the source file (pseudo-random, fixed seed, in 1 MiB pieces) and checks
the SHA-256 of every download against it.

Measured:
  * upload and download wall time and throughput (MiB/s of plaintext), put and get as a
    program calls them (announce, stream, complete with the server's hash and signature
    check; open, stream, verify, decrypt, move into place);
  * the client process's peak resident set: ``VmHWM`` from its own ``/proc/self/status`` at
    the end (the whole process's peak: interpreter, imports and sign-in included; the client
    process imports the SDK only, not the server), and after sign-in and after each transfer
    to show what the transfers add. Its ``ru_maxrss`` is recorded too, but on Linux that
    figure survives ``exec``: it is at least the resident set of this bench process when it
    spawned the client, so it is an upper bound, not the client's own peak;
  * the server process's peak resident set: ``VmHWM`` from ``/proc/<pid>/status`` of the
    uvicorn process (and of any process it forked), read after start-up, after each upload
    and download, and just before it is stopped;
  * a cross-check: ``VmRSS`` of both processes sampled every 50 ms during the transfers.
Each peak is compared with the issue's bound, 200 MB (200,000,000 bytes).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import platform
import random
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from _common import served, spread

from clients.sdk import AttacheClient, Keystore, Messenger, certify_device, enroll
from clients.sdk.documents import Documents
from protocol import keys, stream

if TYPE_CHECKING:
    from server.settings import Settings

# The server's modules are imported only where the set-up uses them, so that the client
# process (``--client``) loads what a client program loads and no more.

RESULTS = Path(__file__).resolve().parent / "results" / "documents.json"
GIB = 1 << 30
MIB = 1 << 20
LIMIT_BYTES = 200_000_000  # the issue's "200 MB"
PASSPHRASE = "bench passphrase"
LABEL = "NATO SECRET//REL TO USA, GBR"
CHANNEL = "liaison"
USERS = {"alice": "USA", "bob": "GBR"}


def _status(pid: int, field: str) -> int:
    """A ``kB`` field of /proc/<pid>/status, in bytes (0 if the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def _descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (uvicorn forks workers only with --workers > 1)."""
    found = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            for child in (task / "children").read_text().split():
                found += _descendants(int(child))
    return found


def _server_peak(pid: int) -> dict[str, int]:
    """VmHWM (peak resident set) of each process of the server, in bytes."""
    return {str(p): _status(p, "VmHWM") for p in _descendants(pid)}


def make_source(path: Path, size: int, seed: int = 20240601) -> str:
    """A file of ``size`` pseudo-random bytes (fixed seed), written 1 MiB at a time; its
    SHA-256."""
    rng = random.Random(seed)
    digest = hashlib.sha256()
    with path.open("wb") as out:
        left = size
        while left:
            piece = rng.randbytes(min(MIB, left))
            out.write(piece)
            digest.update(piece)
            left -= len(piece)
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while piece := handle.read(MIB):
            digest.update(piece)
    return digest.hexdigest()


# --- set-up, in this process -----------------------------------------------------------------


async def setup(settings: Settings, homes: Path) -> None:
    """Nations, users, certified devices and a channel, through the API in-process."""
    from server.app import create_app
    from server.auth.principal import CONSOLE
    from server.devices.service import do_issue_enrolment_code
    from server.directory import service as directory

    app = create_app(settings)
    origin = settings.effective_public_url
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        authorities: dict[str, keys.AuthorityKey] = {}
        codes: dict[str, str] = {}
        async with app.state.sessionmaker() as session, session.begin():
            catalog = await directory.load_catalog(session, app.state.catalog)
            for nation in sorted(set(USERS.values())):
                authorities[nation] = keys.AuthorityKey.generate()
                await directory.do_create_nation(
                    session,
                    CONSOLE,
                    catalog,
                    code=nation,
                    name=nation,
                    authority_key=authorities[nation].public_bytes(),
                )
            for username, nation in USERS.items():
                user = await directory.do_create_user(
                    session,
                    CONSOLE,
                    catalog,
                    username=username,
                    nationality=nation,
                    clearance="NATO SECRET",
                    roles=["officer"],
                )
                issued = await do_issue_enrolment_code(session, CONSOLE, settings, user)
                codes[username] = issued.code
        clients: dict[str, AttacheClient] = {}
        for username, nation in USERS.items():
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
            client = AttacheClient(origin, transport=transport)
            device = await certify_device(client, nation, authorities[nation], enrolled.device)
            assert device["status"] == "active", device
            await client.login(device["id"], store.device_keys(PASSPHRASE))
            clients[username] = client
        await clients["alice"].create_channel(CHANNEL, "NATO SECRET")
        await clients["alice"].add_member(CHANNEL, "bob")
        for client in clients.values():
            await client.aclose()


# --- the server, in its own process ----------------------------------------------------------


class Sampler:
    """VmRSS of some processes every ``interval`` seconds, keeping each one's maximum."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.pids: dict[str, int] = {}
        self.peaks: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            for name, pid in list(self.pids.items()):
                rss = sum(_status(p, "VmRSS") for p in _descendants(pid))
                self.peaks[name] = max(self.peaks.get(name, 0), rss)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_client(
    spec: dict[str, Any], server: subprocess.Popen[bytes], sampler: Sampler
) -> list[dict[str, Any]]:
    """Start the client process and follow its events, reading the server's peak at each."""
    command = [sys.executable, str(Path(__file__).resolve()), "--client", json.dumps(spec)]
    client = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    sampler.pids["client"] = client.pid
    events: list[dict[str, Any]] = []
    assert client.stdout is not None
    for line in client.stdout:
        event = json.loads(line)
        event["server_vmhwm"] = _server_peak(server.pid)
        events.append(event)
        print(f"  {event['event']}: {_summary(event)}", file=sys.stderr, flush=True)
    if client.wait() != 0:
        raise RuntimeError(f"the client process failed with exit status {client.returncode}")
    return events


def _summary(event: dict[str, Any]) -> str:
    parts = [f"client VmHWM {event['vmhwm'] / 1e6:.1f} MB"]
    parts.append(f"server VmHWM {max(event['server_vmhwm'].values()) / 1e6:.1f} MB")
    if "seconds" in event:
        parts.insert(0, f"{event['seconds']:.1f} s")
    return ", ".join(parts)


# --- the client, in its own process ----------------------------------------------------------


def _own_peak() -> int:
    return _status(os.getpid(), "VmHWM")


def _emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, "vmhwm": _own_peak(), **fields}), flush=True)


async def client_main(spec: dict[str, Any]) -> None:
    """Sign in as both users, then per run: alice puts the file, bob gets it."""
    homes = Path(spec["homes"])
    alice = await Messenger.open(
        Keystore(homes / "alice", kdf=keys.KdfParams.for_tests()), passphrase=PASSPHRASE
    )
    bob = await Messenger.open(
        Keystore(homes / "bob", kdf=keys.KdfParams.for_tests()), passphrase=PASSPHRASE
    )
    source = Path(spec["source"])
    try:
        _emit("signed-in")
        for run in range(spec["runs"]):
            start = time.perf_counter()
            version = await Documents(alice).put(CHANNEL, source, label=LABEL)
            _emit("upload", run=run, seconds=time.perf_counter() - start, version=version["id"])
            destination = Path(spec["downloads"]) / f"run-{run}.bin"
            start = time.perf_counter()
            opened = await Documents(bob).get(version["id"], destination)
            _emit(
                "download",
                run=run,
                seconds=time.perf_counter() - start,
                path=str(opened.path),
                size=opened.size,
            )
    finally:
        await alice.aclose()
        await bob.aclose()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    _emit("done", ru_maxrss=usage.ru_maxrss * 1024)


# --- the benchmark ---------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--size", type=int, default=GIB, help="bytes in the document")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--client", metavar="SPEC", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        asyncio.run(client_main(json.loads(args.client)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        run(args, Path(tmp))


def run(args: argparse.Namespace, base: Path) -> None:
    from server.db import migrate
    from server.settings import Settings

    free = shutil.disk_usage(base).free
    if free < 3 * args.size + GIB:
        raise SystemExit(f"{base} has {free / GIB:.1f} GiB free; {args.size:,} bytes need ~3x")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"sqlite+aiosqlite:///{base / 'bench.db'}"
    migrate.upgrade(url)
    settings = Settings(
        data_dir=base / "var", database_url=url, public_url=f"http://127.0.0.1:{port}"
    )
    asyncio.run(setup(settings, base / "homes"))
    source = base / "source.bin"
    start = time.perf_counter()
    source_sha256 = make_source(source, args.size)
    print(f"source written in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    downloads = base / "downloads"
    downloads.mkdir()
    spec = {
        "homes": str(base / "homes"),
        "source": str(source),
        "downloads": str(downloads),
        "runs": args.runs,
    }
    with Sampler() as sampler, served(settings, port) as server:
        sampler.pids["server"] = server.pid
        server_at_start = _server_peak(server.pid)
        events = run_client(spec, server, sampler)
        server_at_end = _server_peak(server.pid)
    uploads = [e for e in events if e["event"] == "upload"]
    downloads_done = [e for e in events if e["event"] == "download"]
    for event in downloads_done:
        path = Path(event["path"])
        if sha256_file(path) != source_sha256:
            raise SystemExit(f"run {event['run']}: the download differs from the source")
        path.unlink()
    blobs = sorted((settings.data_dir / "blobs").rglob("*"))
    blob_sizes = [p.stat().st_size for p in blobs if p.is_file()]
    done = events[-1]
    client_peak = int(done["vmhwm"])
    server_peak = max(server_at_end.values())
    mib = args.size / MIB
    results: dict[str, Any] = {
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "database": "sqlite",
        "size_bytes": args.size,
        "ciphertext_bytes": stream.ciphertext_size(args.size),
        "server_blob_bytes": blob_sizes,
        "runs": args.runs,
        "sha256": source_sha256,
        "verified": True,
        "upload_seconds": spread([e["seconds"] for e in uploads]),
        "download_seconds": spread([e["seconds"] for e in downloads_done]),
        "upload_mib_per_s": spread([mib / e["seconds"] for e in uploads]),
        "download_mib_per_s": spread([mib / e["seconds"] for e in downloads_done]),
        "limit_bytes": LIMIT_BYTES,
        "client": {
            "measured": "VmHWM of the client process (/proc/self/status, reported by it)",
            "peak_rss_bytes": client_peak,
            "ru_maxrss_bytes": int(done["ru_maxrss"]),
            "under_limit": client_peak < LIMIT_BYTES,
            "vmhwm_after_sign_in_bytes": events[0]["vmhwm"],
            "vmhwm_after_each_step": [
                {"event": e["event"], "run": e.get("run"), "bytes": e["vmhwm"]} for e in events
            ],
            "sampled_max_vmrss_bytes": sampler.peaks.get("client", 0),
        },
        "server": {
            "measured": "VmHWM of the uvicorn process (/proc/<pid>/status), before stopping it",
            "processes": len(server_at_end),
            "peak_rss_bytes": server_peak,
            "under_limit": server_peak < LIMIT_BYTES,
            "vmhwm_after_start_bytes": max(server_at_start.values()),
            "vmhwm_after_each_step": [
                {"event": e["event"], "run": e.get("run"), "bytes": max(e["server_vmhwm"].values())}
                for e in events
            ],
            "sampled_max_vmrss_bytes": sampler.peaks.get("server", 0),
        },
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(_markdown(results))
    if not (results["client"]["under_limit"] and results["server"]["under_limit"]):
        print("\nFAILED: a process went over 200 MB", file=sys.stderr)
        sys.exit(1)


def _fmt(value: dict[str, float], digits: int = 1) -> str:
    m, lo, hi = (value[k] for k in ("median", "min", "max"))
    return f"{m:,.{digits}f} ({lo:,.{digits}f} to {hi:,.{digits}f})"


def _mb(value: int) -> str:
    return f"{value / 1e6:,.1f} MB ({value / MIB:,.1f} MiB)"


def _markdown(r: dict[str, Any]) -> str:
    client, server = r["client"], r["server"]
    rows = [
        ("upload (put), MiB/s", _fmt(r["upload_mib_per_s"])),
        ("upload (put), seconds", _fmt(r["upload_seconds"])),
        ("download (get, verified), MiB/s", _fmt(r["download_mib_per_s"])),
        ("download (get, verified), seconds", _fmt(r["download_seconds"])),
        (
            "client peak RSS (VmHWM)",
            f"{_mb(client['peak_rss_bytes'])}: "
            + ("under 200 MB" if client["under_limit"] else "**over 200 MB**"),
        ),
        (
            "client VmHWM after sign-in, before any transfer",
            _mb(client["vmhwm_after_sign_in_bytes"]),
        ),
        ("client VmRSS, sampled maximum", _mb(client["sampled_max_vmrss_bytes"])),
        ("client ru_maxrss (upper bound, see docstring)", _mb(client["ru_maxrss_bytes"])),
        (
            f"server peak RSS (VmHWM, {server['processes']} process)",
            f"{_mb(server['peak_rss_bytes'])}: "
            + ("under 200 MB" if server["under_limit"] else "**over 200 MB**"),
        ),
        ("server VmHWM after start-up", _mb(server["vmhwm_after_start_bytes"])),
        ("server VmRSS, sampled maximum", _mb(server["sampled_max_vmrss_bytes"])),
    ]
    lines = [
        f"Documents, {r['size_bytes']:,} bytes ({r['size_bytes'] / GIB:g} GiB) through a real "
        f"server, SHA-256 verified, {r['runs']} run(s): median (min to max)",
        "",
        "| measure | value |",
        "|---|---|",
        *(f"| {name} | {value} |" for name, value in rows),
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
