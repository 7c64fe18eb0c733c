"""The operator's endpoints: readiness (``/readyz``) and metrics (``/metrics``). Liveness
(``/healthz``) is in server/app.py.

``/readyz`` answers 200 when what this process needs is reachable (its database; the Redis
bus, when ``ATTACHE_REDIS_URL`` is set) and 503 naming what is not, for a load balancer to stop
sending it requests. ``/metrics`` is the Prometheus text format, for a scraper holding
``ATTACHE_METRICS_TOKEN``; without that setting it is off (docs/operations.md says why).
"""

from __future__ import annotations

import asyncio
import gc
import hmac
import json
import logging
import signal
import tracemalloc
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Header, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.ext.asyncio import AsyncEngine

from server.audit import repository as audit_repo
from server.errors import AuthenticationRequired, NotFound, Unavailable
from server.metrics import Metrics
from server.realtime.bus import InProcessBus
from server.realtime.redis_bus import RedisBus
from server.settings import Settings

log = logging.getLogger("attache.operations")
router = APIRouter(tags=["operations"])

# How long a readiness check or the metrics' database read may take before it counts as
# failed: a load balancer probes often and must not queue probes behind a stuck database.
CHECK_SECONDS = 2.0

Check = Callable[[], Awaitable[None]]


def readiness_checks(engine: AsyncEngine, bus: InProcessBus) -> dict[str, Check]:
    """What ``/readyz`` checks, by name: the database, and the Redis bus when there is one
    (subscribed, and Redis answers)."""
    checks: dict[str, Check] = {"database": lambda: database_reachable(engine)}
    if isinstance(bus, RedisBus):
        checks["redis"] = bus.check
    return checks


async def database_reachable(engine: AsyncEngine) -> None:
    # A round trip on a pooled connection (not a repository's query: it reads no table).
    async with engine.connect() as connection:
        await connection.exec_driver_sql("SELECT 1")


async def _passes(name: str, check: Check) -> bool:
    try:
        await asyncio.wait_for(check(), CHECK_SECONDS)
    except Exception as exc:
        log.warning("readiness: %s unreachable (%s)", name, exc.__class__.__name__)
        return False
    return True


@router.get("/readyz")
async def readyz(request: Request) -> dict[str, object]:
    checks: dict[str, Check] = request.app.state.readiness
    results = await asyncio.gather(*(_passes(name, check) for name, check in checks.items()))
    states = {name: "ok" if ok else "unreachable" for name, ok in zip(checks, results, strict=True)}
    failed = [name for name, ok in zip(checks, results, strict=True) if not ok]
    if failed:
        raise Unavailable(f"not ready: {', '.join(failed)} unreachable", checks=states)
    return {"status": "ready", "checks": states}


@router.get("/metrics", response_class=Response)
async def metrics(
    request: Request, authorization: Annotated[str | None, Header()] = None
) -> Response:
    settings: Settings = request.app.state.settings
    scheme, _, presented = (authorization or "").partition(" ")
    if scheme.lower() != "bearer":
        raise AuthenticationRequired("metrics need the bearer token ATTACHE_METRICS_TOKEN")
    if settings.metrics_token is None:
        raise NotFound("metrics are off; set ATTACHE_METRICS_TOKEN to serve them")
    expected = settings.metrics_token.get_secret_value().encode()
    if not hmac.compare_digest(presented.encode(), expected):
        raise AuthenticationRequired("metrics need the bearer token ATTACHE_METRICS_TOKEN")
    collected: Metrics = request.app.state.metrics
    try:
        async with request.app.state.sessionmaker() as session:
            pending, oldest = await asyncio.wait_for(
                audit_repo.pending_summary(session), CHECK_SECONDS
            )
        collected.audit_backlog(pending, oldest)
    except Exception as exc:
        log.warning("metrics: the audit backlog could not be read (%s)", exc.__class__.__name__)
        collected.audit_backlog(None, None)
    return Response(generate_latest(collected.registry), media_type=CONTENT_TYPE_LATEST)


# --- memory snapshots (ATTACHE_MEMORY_SNAPSHOT_DIR) -------------------------------------------


def watch_memory(directory: Path) -> None:
    """On SIGUSR1, write a tracemalloc snapshot of this process to ``directory``
    (``memory-1.snap``, ``memory-2.snap``, ...) after a full garbage collection, so that what
    survives is what something still holds, and the count of live objects of each kind beside
    it (``memory-1.kinds.json``: {"module.Class": count}). Only a process that traces its
    allocations (``python -X tracemalloc`` or ``PYTHONTRACEMALLOC=1``, set before it starts)
    has anything to write; otherwise the signal is logged and ignored."""
    directory.mkdir(parents=True, exist_ok=True)
    written = len(list(directory.glob("memory-*.snap")))

    def snapshot() -> None:
        nonlocal written
        if not tracemalloc.is_tracing():
            log.warning("SIGUSR1: no memory snapshot, the process does not trace allocations")
            return
        gc.collect()
        written += 1
        path = directory / f"memory-{written}.snap"
        # Beside the snapshot, how many objects of each kind the collector tracks: whether a
        # kind made per connection (say) outlives the connections, which sizes alone do not
        # tell apart from a container grown and not shrunk.
        kinds = Counter(f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.get_objects())
        path.with_suffix(".kinds.json").write_text(json.dumps(dict(kinds.most_common())))
        partial = path.with_suffix(".part")  # renamed once whole: a reader never sees half
        tracemalloc.take_snapshot().dump(str(partial))
        partial.rename(path)
        log.warning("memory snapshot written to %s", path)

    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, snapshot)


def unwatch_memory() -> None:
    asyncio.get_running_loop().remove_signal_handler(signal.SIGUSR1)
