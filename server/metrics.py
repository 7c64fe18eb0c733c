"""Prometheus metrics: one registry per app (a test process makes many apps), served at
``/metrics`` in the text format (server/operations.py). docs/deployment.md says what each
one means and what to alert on.

The hot paths count with ``Tally``, a plain integer behind an attribute (~0.2 µs an
increment here, where prometheus-client's ``Counter.inc`` takes its lock and costs ~0.9 µs):
a message is delivered to dozens of streams, each counted. The registry reads the tallies
when scraped. Requests are timed by ``RequestMetrics``, an ASGI middleware that observes
one prometheus-client histogram per request, labelled by the route's template (never the
raw path, whose ids would make a series per channel). What lives elsewhere (open streams,
the database pool, the audit log's backlog) is read at scrape time, costing nothing until
then.

Audit events, withheld deliveries among them, are counted from what each transaction
commits (``watch_audit``), whether added through the unit of work or inserted in bulk, so
that they are counted once committed and never for a transaction rolled back; accepted
messages are counted by the submit's answer, which is given once the message committed.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Session
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.audit.models import AuditEvent
from server.db.base import utcnow
from server.db.engine import WRITTEN

access_log = logging.getLogger("attache.access")

# Request durations, seconds: a submit waits for its group's commit (milliseconds), a sync
# or an audit export can take seconds.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
UNMATCHED = "(unmatched)"


class Tally:
    """A counter for hot paths: one event loop increments it, the registry reads it."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    def inc(self, amount: int = 1) -> None:
        self.value += amount


class BusState(Protocol):
    """What the scrape reads of the bus (``server.realtime``)."""

    @property
    def subscribers(self) -> int: ...

    lag_seconds: float
    misses: int


class Metrics:
    """One app's metrics and the registry that serves them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.messages_accepted = Tally()
        # Counted by the submits' group commit (``server.db.group``), which holds the tally's
        # method, not these metrics: the metrics' audit listeners live on the app's session
        # class, and a path from here back to its sessionmaker would keep every app alive.
        self.submit_commits = Tally()
        self.delivered_stream = Tally()
        self.delivered_sync = Tally()
        self.withheld = Tally()
        self.audit_events: dict[tuple[str, str], Tally] = {}
        self.request_seconds = Histogram(
            "attache_http_request_duration_seconds",
            "Time from a request's arrival to its response's end, by method and route "
            "template (websocket streams are not requests here)",
            ["method", "route"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.responses: dict[tuple[str, str, int], Tally] = {}
        self._timers: dict[tuple[str, str], Any] = {}
        # Read at scrape time; set by the app's lifespan (``watch``).
        self.bus: BusState | None = None
        self.engine: AsyncEngine | None = None
        # Set by the scrape itself, which reads the database first (``audit_backlog``).
        self.audit_pending: float = math.nan
        self.audit_delay: float = math.nan
        self.registry.register(_Collector(self))

    def watch(self, bus: BusState, engine: AsyncEngine) -> None:
        self.bus = bus
        self.engine = engine

    def audit_backlog(self, pending: int | None, oldest: datetime | None) -> None:
        """What the scrape read of the audit log's backlog (None: it could not read it)."""
        if pending is None:
            self.audit_pending = self.audit_delay = math.nan
            return
        self.audit_pending = pending
        self.audit_delay = 0.0 if oldest is None else max((utcnow() - oldest).total_seconds(), 0)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        timer = self._timers.get((method, route))
        if timer is None:
            timer = self._timers[(method, route)] = self.request_seconds.labels(method, route)
        timer.observe(seconds)
        key = (method, route, status)
        tally = self.responses.get(key)
        if tally is None:
            tally = self.responses[key] = Tally()
        tally.value += 1

    def count_audited(self, events: Iterable[tuple[str, str]]) -> None:
        for action, decision in events:
            key = (action, decision)
            tally = self.audit_events.get(key)
            if tally is None:
                tally = self.audit_events[key] = Tally()
            tally.value += 1
            if action == "message.withhold":
                self.withheld.value += 1

    def watch_audit(self, session_class: type[Session]) -> None:
        """Count the audit events of every transaction of ``session_class`` that commits
        (the app's own class: another app's transactions are not heard)."""

        @event.listens_for(session_class, "after_flush")
        def _collect(session: Session, _: Any) -> None:
            found = [(row.action, row.decision) for row in session.new if type(row) is AuditEvent]
            if found:
                session.info.setdefault(_AUDITED, []).extend(found)

        @event.listens_for(session_class, "after_commit")
        def _count(session: Session) -> None:
            found = session.info.pop(_AUDITED, None) or []
            # Rows inserted in bulk (``server.db.engine.write_staged``), which no flush sees.
            written = session.info.pop(WRITTEN, None) or ()
            found += [(row.action, row.decision) for row in written if type(row) is AuditEvent]
            if found:
                self.count_audited(found)

        @event.listens_for(session_class, "after_rollback")
        def _forget(session: Session) -> None:
            session.info.pop(_AUDITED, None)
            session.info.pop(WRITTEN, None)


_AUDITED = "attache.metrics.audited"


class _Collector(Collector):
    """The tallies, and what is read at scrape time, as metric families."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        m = self.metrics
        yield _counter(
            "attache_messages_accepted",
            "Messages stored and audited (a repeated submit of a stored message not counted)",
            m.messages_accepted.value,
        )
        deliveries = CounterMetricFamily(
            "attache_deliveries",
            "Messages handed to a recipient device: pushed on its stream, or in a sync page",
            labels=["via"],
        )
        deliveries.add_metric(["stream"], m.delivered_stream.value)
        deliveries.add_metric(["sync"], m.delivered_sync.value)
        yield deliveries
        yield _counter(
            "attache_submit_commits",
            "Transactions that committed message submits: submits arriving together share one "
            "(messages accepted per commit is the ratio of the two rates)",
            m.submit_commits.value,
        )
        yield _counter(
            "attache_deliveries_withheld",
            "Deliveries refused when decided again (a clearance, membership or device changed "
            "after the submit); each audited once per message and device",
            m.withheld.value,
        )
        audited = CounterMetricFamily(
            "attache_audit_events",
            "Audit events committed, by action and decision",
            labels=["action", "decision"],
        )
        for (action, decision), tally in sorted(m.audit_events.items()):
            audited.add_metric([action, decision], tally.value)
        yield audited
        responses = CounterMetricFamily(
            "attache_http_responses",
            "HTTP responses by method, route template and status code",
            labels=["method", "route", "status"],
        )
        for (method, route, status), tally in sorted(m.responses.items()):
            responses.add_metric([method, route, str(status)], tally.value)
        yield responses
        bus = m.bus
        yield GaugeMetricFamily(
            "attache_streams_connected",
            "Websocket streams open and authenticated on this process",
            value=bus.subscribers if bus is not None else 0,
        )
        yield GaugeMetricFamily(
            "attache_bus_lag_seconds",
            "From a peer process's publishing to this process's hearing it, for the last "
            "message heard over the Redis bus (NaN: none yet, or no Redis bus)",
            value=bus.lag_seconds if bus is not None else math.nan,
        )
        yield _counter(
            "attache_bus_rebuilds",
            "Times this process missed bus traffic (Redis away, a message lost) and rebuilt: "
            "caches dropped, streams sent to reconnect and sync",
            bus.misses if bus is not None else 0,
        )
        yield GaugeMetricFamily(
            "attache_audit_integration_delay_seconds",
            "Age of the oldest audit event not yet in the Merkle log (0: none waits); NaN if "
            "the database could not be read",
            value=m.audit_delay,
        )
        yield GaugeMetricFamily(
            "attache_audit_events_pending",
            "Audit events not yet in the Merkle log",
            value=m.audit_pending,
        )
        pool = m.engine.pool if m.engine is not None else None
        size, used, overflow = _pool_use(pool)
        yield GaugeMetricFamily(
            "attache_db_pool_size", "Connections the pool keeps (beyond them: overflow)", size
        )
        yield GaugeMetricFamily(
            "attache_db_pool_checked_out", "Pooled database connections in use now", used
        )
        yield GaugeMetricFamily(
            "attache_db_pool_overflow", "Connections open beyond the pool's size now", overflow
        )


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)


def _pool_use(pool: object) -> tuple[float, float, float]:
    """(size, checked out, overflow) of a queue pool; NaN for a pool without them."""

    def read(name: str) -> float:
        method = getattr(pool, name, None)
        return float(method()) if callable(method) else math.nan

    return read("size"), read("checkedout"), max(read("overflow"), 0.0)


class RequestMetrics:
    """Times each HTTP request by its route's template, counts its response's status and, for
    JSON logs, writes the access log line: method, route, path without its query, status,
    duration, client address (never a header, a query string or a body)."""

    def __init__(self, app: ASGIApp, metrics: Metrics, access_log: bool = False) -> None:
        self.app = app
        self.metrics = metrics
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # unless a response starts

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            seconds = time.perf_counter() - started
            route = scope.get("route")
            template = getattr(route, "path", None) or UNMATCHED
            self.metrics.observe_request(scope["method"], template, status, seconds)
            if self.access_log:
                _log_access(scope, template, status, seconds)


def _log_access(scope: Scope, template: str, status: int, seconds: float) -> None:
    client = scope.get("client")
    access_log.info(
        "%s %s %d",
        scope["method"],
        template,
        status,
        extra={
            "method": scope["method"],
            "route": template,
            "path": scope["path"][:256],
            "status": status,
            "duration_ms": round(seconds * 1000, 3),
            "client": client[0] if client else None,
        },
    )
