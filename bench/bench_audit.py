"""Benchmark of the audit log through the real server stack: is the log ever the bottleneck?

Run: ``.venv/bin/python bench/bench_audit.py [--leaves N] [--runs N] [--database-url URL]``.
Default: 1,000,000 leaves on a fresh SQLite database in a temporary directory (pass a
PostgreSQL URL to measure that instead; the database must be empty and will be filled).
Writes ``bench/results/audit.json`` and prints a Markdown table; every repeated figure is the
median of its runs with the minimum and maximum. Not part of the test suite.

Measured:
  * appends per second: audit events written the way actions write them, one event per
    committed transaction, and many per transaction;
  * integration: leaves per second appended to the Merkle log by the integrator (leaf bytes,
    hashes, perfect-subtree nodes, a signed checkpoint per batch), and the delay from an
    event's commit to its inclusion in a checkpoint with the background integrator running;
  * proof generation: inclusion and consistency proofs served by the API at the full size;
  * full-log verification: ``clients.sdk.audit.verify_log`` downloading every leaf through the
    API, recomputing every leaf hash and the root, and checking the signed checkpoint — next to
    raw SHA-256 of the same leaves in the same run.
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
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from clients.sdk import AttacheClient, Keystore, enroll
from clients.sdk.audit import verify_log
from protocol import keys
from server.app import create_app
from server.audit import log as audit
from server.audit.integrator import integrate
from server.audit.models import AuditEvent
from server.auth.principal import CONSOLE
from server.db import migrate
from server.devices.service import do_issue_enrolment_code
from server.directory import service as directory
from server.settings import Settings

RESULTS = Path(__file__).resolve().parent / "results" / "audit.json"
ORIGIN = "http://bench"


def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def _event_row(i: int, rng: random.Random) -> dict[str, Any]:
    """A message.submit event as the server writes it (ids and nations vary)."""
    nations = ["USA", "GBR", "FRA", "DEU", "ITA", "CAN"]
    sender = nations[i % len(nations)]
    return {
        "action": "message.submit",
        "decision": "allow",
        "actor_user_id": f"{rng.getrandbits(128):032x}",
        "actor_device_id": f"{rng.getrandbits(128):032x}",
        "actor_nation": sender,
        "object_type": "message",
        "object_id": f"{rng.getrandbits(128):032x}",
        "subject_nation": sender,
        "label_banner": "NATO SECRET//REL TO USA, GBR",
        "label": {
            "policy": "NATO",
            "level": "SECRET",
            "categories": {},
            "rel_to": ["USA", "GBR"],
            "originator": sender,
            "privacy_mark": None,
            "review_date": None,
        },
        "reasons": [],
        "details": {
            "channel_id": f"{i % 97:08d}",
            "released_to": [{"device_id": f"d{i}", "user_id": f"u{i}", "nation": "USA"}],
            "not_released": [{"user_id": "u0", "nation": "FRA", "reasons": ["nationality"]}],
            "via": "api",
        },
    }


async def _auditor(app: Any, transport: httpx.AsyncBaseTransport, home: Path) -> AttacheClient:
    async with app.state.sessionmaker() as session, session.begin():
        catalog = await directory.load_catalog(session, app.state.catalog)
        user = await directory.do_create_user(
            session, CONSOLE, catalog, username="bench-auditor", nationality=None, roles=["auditor"]
        )
        code = (await do_issue_enrolment_code(session, CONSOLE, app.state.settings, user)).code
    store = Keystore(home, kdf=keys.KdfParams.for_tests())
    result = await enroll(
        ORIGIN,
        username="bench-auditor",
        code=code,
        device_name="bench",
        passphrase="bench",
        keystore=store,
        transport=transport,
    )
    client = AttacheClient(ORIGIN, transport=transport, timeout=600)
    await client.login(result.device["id"], store.device_keys("bench"))
    return client


async def bench_appends(app: Any, runs: int) -> dict[str, Any]:
    rng = random.Random(1)

    async def single(n: int) -> float:
        start = time.perf_counter()
        for i in range(n):
            async with app.state.sessionmaker() as session, session.begin():
                audit.record(
                    session,
                    actor=None,
                    action="bench.append",
                    object_type="bench",
                    object_id=str(i),
                    details=_event_row(i, rng)["details"],
                )
        return n / (time.perf_counter() - start)

    async def batched(n: int) -> float:
        start = time.perf_counter()
        async with app.state.sessionmaker() as session, session.begin():
            for i in range(n):
                audit.record(
                    session,
                    actor=None,
                    action="bench.append",
                    object_type="bench",
                    object_id=str(i),
                    details=_event_row(i, rng)["details"],
                )
        return n / (time.perf_counter() - start)

    return {
        "one_event_per_transaction_per_s": spread([await single(500) for _ in range(runs)]),
        "1000_events_per_transaction_per_s": spread([await batched(1000) for _ in range(runs)]),
    }


async def fill(app: Any, leaves: int) -> dict[str, Any]:
    """Insert events in bulk, then integrate them, timing the integrator alone."""
    rng = random.Random(2)
    insert_start = time.perf_counter()
    async with app.state.sessionmaker() as session:
        existing = len((await session.execute(select(AuditEvent.id))).all())
    remaining = leaves - existing
    while remaining > 0:
        count = min(10_000, remaining)
        async with app.state.sessionmaker() as session, session.begin():
            for i in range(count):
                row = _event_row(i, rng)
                audit.record(
                    session,
                    actor=audit.Actor(
                        row["actor_user_id"], row["actor_device_id"], row["actor_nation"]
                    ),
                    action=row["action"],
                    object_type=row["object_type"],
                    object_id=row["object_id"],
                    subject_nation=row["subject_nation"],
                    label=row["label"],
                    label_banner=row["label_banner"],
                    details=row["details"],
                )
        remaining -= count
    inserted = time.perf_counter() - insert_start
    batches: list[float] = []
    integrate_start = time.perf_counter()
    while True:
        start = time.perf_counter()
        async with app.state.sessionmaker() as session, session.begin():
            checkpoint = await integrate(session, app.state.audit_signer)
        if checkpoint is None:
            break
        batches.append(time.perf_counter() - start)
    total = time.perf_counter() - integrate_start
    return {
        "bulk_insert_s": inserted,
        "integrate_total_s": total,
        "integrate_leaves_per_s": leaves / total if total else 0.0,
        "integrate_batch_10000_s": spread(batches) if batches else None,
    }


async def bench_delay(settings: Settings, runs: int) -> dict[str, Any]:
    """Commit-to-checkpoint delay with the background integrator at its default interval."""
    app = create_app(settings.model_copy(update={"audit_integrate_seconds": 1.0}))
    delays: list[float] = []
    async with app.router.lifespan_context(app):
        for i in range(max(runs, 5)):
            async with app.state.sessionmaker() as session, session.begin():
                event = audit.record(
                    session, actor=None, action="bench.delay", object_type="bench", object_id=str(i)
                )
            committed = time.perf_counter()
            while True:
                async with app.state.sessionmaker() as session:
                    row = await session.get(AuditEvent, event.id)
                    if row is not None and row.leaf_index is not None:
                        break
                await asyncio.sleep(0.005)
            delays.append(time.perf_counter() - committed)
            await asyncio.sleep(random.Random(i).random() * 0.3)
    return {"integration_delay_s": spread(delays), "interval_s": 1.0}


async def bench_proofs(client: AttacheClient, size: int, runs: int) -> dict[str, Any]:
    rng = random.Random(3)
    event_ids = [rng.randrange(1, size) for _ in range(50)]

    async def inclusion() -> float:
        start = time.perf_counter()
        for event in event_ids:
            await client.request("GET", "/v1/audit/proofs/inclusion", params={"event": event})
        return (time.perf_counter() - start) / len(event_ids) * 1e3

    async def consistency() -> float:
        start = time.perf_counter()
        for old in event_ids:
            await client.request("GET", "/v1/audit/proofs/consistency", params={"old": old})
        return (time.perf_counter() - start) / len(event_ids) * 1e3

    return {
        "inclusion_ms_per_request": spread([await inclusion() for _ in range(runs)]),
        "consistency_ms_per_request": spread([await consistency() for _ in range(runs)]),
    }


@contextlib.asynccontextmanager
async def served(settings: Settings, workers: int) -> AsyncIterator[str]:
    """The same database and keys served by a real uvicorn with ``workers`` processes."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "ATTACHE_DATA_DIR": str(settings.data_dir),
        "ATTACHE_DATABASE_URL": settings.effective_database_url,
        "ATTACHE_PUBLIC_URL": ORIGIN,
        "ATTACHE_AUDIT_INTEGRATE_SECONDS": "3600",
    }
    command = [sys.executable, "-m", "uvicorn", "--factory", "server.app:create_app"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    process = subprocess.Popen([*command, "--log-level", "warning"], env=env)
    try:
        async with httpx.AsyncClient() as probe_client:
            for _ in range(300):
                with contextlib.suppress(httpx.TransportError):
                    if (await probe_client.get(f"{url}/healthz")).status_code == 200:
                        break
                await asyncio.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


async def bench_verify(
    client: AttacheClient, app: Any, home: Path, runs: int, workers: int
) -> dict[str, Any]:
    # Raw SHA-256 of the very leaves, read once: the floor any verifier faces.
    async with app.state.sessionmaker() as session:
        bodies = (
            (
                await session.execute(
                    select(AuditEvent.body).where(AuditEvent.leaf_index.is_not(None))
                )
            )
            .scalars()
            .all()
        )
        leaves = [b"\x00" + body.encode("utf-8") for body in bodies]
    sha_runs = []
    for _ in range(runs):
        start = time.perf_counter()
        for leaf in leaves:
            hashlib.sha256(leaf).digest()
        sha_runs.append(len(leaves) / (time.perf_counter() - start))
    del leaves, bodies
    verify_runs = []
    seconds = []
    async with served(app.state.settings, workers) as url:
        remote = AttacheClient(url, token=client.token, timeout=600)
        for run in range(runs):
            start = time.perf_counter()
            report = await verify_log(remote, home / f"verify-{run}")
            elapsed = time.perf_counter() - start
            assert report.ok, report.problems
            seconds.append(elapsed)
            verify_runs.append(report.size / elapsed)
        await remote.aclose()
    return {
        "server_workers": workers,
        "sha256_leaves_per_s": spread(sha_runs),
        "verify_leaves_per_s": spread(verify_runs),
        "verify_seconds": spread(seconds),
        "verified_size": report.size,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--leaves", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--workers", type=int, default=2, help="server processes for verify")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        url = args.database_url or f"sqlite+aiosqlite:///{base / 'bench.db'}"
        migrate.upgrade(url)
        asyncio.run(run(args, base, url))


async def run(args: argparse.Namespace, base: Path, url: str) -> None:
    settings = Settings(
        data_dir=base / "var", database_url=url, public_url=ORIGIN, audit_integrate_seconds=3600
    )
    app = create_app(settings)
    results: dict[str, Any] = {
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "database": url.split(":", 1)[0],
        "leaves": args.leaves,
        "runs": args.runs,
    }
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        client = await _auditor(app, transport, base / "home")
        results["appends"] = await bench_appends(app, args.runs)
        results["fill"] = await fill(app, args.leaves)
        results["proofs"] = await bench_proofs(client, args.leaves, args.runs)
        results["verify"] = await bench_verify(client, app, base / "home", args.runs, args.workers)
        await client.aclose()
    results["delay"] = await bench_delay(settings, args.runs)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(_markdown(results))


def _fmt(value: dict[str, float] | None, scale: float = 1.0, digits: int = 0) -> str:
    if value is None:
        return "-"
    m, lo, hi = (value[k] * scale for k in ("median", "min", "max"))
    return f"{m:,.{digits}f} ({lo:,.{digits}f} to {hi:,.{digits}f})"


def _markdown(r: dict[str, Any]) -> str:
    rows = [
        (
            "appends/s, one event per transaction",
            _fmt(r["appends"]["one_event_per_transaction_per_s"]),
        ),
        (
            "appends/s, 1000 events per transaction",
            _fmt(r["appends"]["1000_events_per_transaction_per_s"]),
        ),
        ("integration, leaves/s (all batches)", f"{r['fill']['integrate_leaves_per_s']:,.0f}"),
        (
            "integration, seconds per 10,000-leaf batch",
            _fmt(r["fill"]["integrate_batch_10000_s"], digits=2),
        ),
        (
            "commit-to-checkpoint delay, s (1 s interval)",
            _fmt(r["delay"]["integration_delay_s"], digits=2),
        ),
        (
            "inclusion proof, ms per request",
            _fmt(r["proofs"]["inclusion_ms_per_request"], digits=1),
        ),
        (
            "consistency proof, ms per request",
            _fmt(r["proofs"]["consistency_ms_per_request"], digits=1),
        ),
        ("raw SHA-256, leaves/s", _fmt(r["verify"]["sha256_leaves_per_s"])),
        (
            f"full verification of {r['verify']['verified_size']:,} leaves over HTTP "
            f"({r['verify']['server_workers']} server processes), leaves/s",
            _fmt(r["verify"]["verify_leaves_per_s"]),
        ),
        ("full verification, seconds", _fmt(r["verify"]["verify_seconds"], digits=1)),
    ]
    lines = [
        f"Audit log on {r['database']}, {r['leaves']:,} leaves, {r['runs']} runs: "
        "median (min to max)",
        "",
        "| measure | value |",
        "|---|---|",
        *(f"| {name} | {value} |" for name, value in rows),
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
