"""create_app(): routers, error handlers, lifespan."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from protocol.catalog import Catalog
from server.audit.endpoints import router as audit_router
from server.audit.integrator import load_signer, run_integrator
from server.auth.endpoints import router as auth_router
from server.bootstrap import AUDIT_KEY_FILE, ensure_server_keys, keys_dir, record_origins
from server.channels.delivery import DeliveryGate, RosterNotifier, classify
from server.channels.endpoints import SubmitRoute
from server.channels.endpoints import router as channels_router
from server.channels.submits import submit_queue
from server.coalition.endpoints import router as coalition_router
from server.committees.endpoints import router as committees_router
from server.db.changes import session_info, track
from server.db.engine import create_engine, create_sessionmaker
from server.db.migrate import SchemaMismatch, current_revisions, schema_problem
from server.devices.endpoints import router as devices_router
from server.directory.endpoints import router as directory_router
from server.documents.endpoints import router as documents_router
from server.documents.storage import BlobStore
from server.documents.uploads import UploadGate, run_expiry
from server.errors import install_error_handlers, problem_response
from server.grants.endpoints import router as grants_router
from server.metrics import Metrics, RequestMetrics
from server.operations import readiness_checks, unwatch_memory, watch_memory
from server.operations import router as operations_router
from server.ratelimit import RateLimits, RefuseAgain
from server.realtime.bus import InProcessBus
from server.realtime.gateway import router as stream_router
from server.realtime.redis_bus import RedisBus, channel_name
from server.releases.endpoints import router as releases_router
from server.schemas import NUL_REFUSED
from server.settings import Settings, get_settings
from server.timeouts import BodyTimeout
from server.web.endpoints import router as web_router

# Allocations between collections of the youngest generation in a server process (with
# gc_freeze; CPython's default is 700): see the lifespan below.
YOUNG_ALLOCATIONS = 50_000


class BodySizeLimit:
    """Refuse request bodies above a bound before reading them into memory (413)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _streams_its_body(scope):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._refuse(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge(self.max_bytes)
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem_response(
            413,
            "payload-too-large",
            "Payload too large",
            f"request bodies are limited to {self.max_bytes} bytes",
        )
        await response(scope, receive, send)


class HeaderLimit:
    """Refuse requests with too many headers or too large ones (431), websockets included
    (closed before they are accepted); and, before anything reads them, a path or query
    holding the NUL character (422), which PostgreSQL cannot compare with text
    (``server.schemas.holds_nul`` refuses it in bodies)."""

    def __init__(self, app: ASGIApp, max_headers: int, max_bytes: int) -> None:
        self.app = app
        self.max_headers = max_headers
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            headers = scope["headers"]
            size = sum(len(name) + len(value) for name, value in headers)
            if len(headers) > self.max_headers or size > self.max_bytes:
                if scope["type"] == "websocket":
                    await send({"type": "websocket.close", "code": 1008})
                    return
                response = problem_response(
                    431,
                    "request-header-fields-too-large",
                    "Request header fields too large",
                    f"at most {self.max_headers} headers of {self.max_bytes} bytes in all",
                )
                await response(scope, receive, send)
                return
            if "\x00" in scope["path"] or b"%00" in scope["query_string"]:
                if scope["type"] == "websocket":
                    await send({"type": "websocket.close", "code": 1008})
                    return
                await problem_response(422, "invalid-input", "Invalid input", NUL_REFUSED)(
                    scope, receive, send
                )
                return
        await self.app(scope, receive, send)


def _streams_its_body(scope: Scope) -> bool:
    """Document uploads stream to storage, bounded by the size their signed header announced
    (server/documents), not by the limit for JSON requests."""
    path: str = scope["path"]
    return (
        scope["method"] == "PUT" and path.startswith("/v1/uploads/") and path.endswith("/content")
    )


class _TooLarge(StarletteHTTPException):
    # An HTTPException, so that FastAPI reading the body passes it on to the handler of HTTP
    # errors (413), instead of turning it into a 400 "error parsing the body" as it does with
    # any other exception: a chunked body has no Content-Length to refuse up front.
    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"request bodies are limited to {max_bytes} bytes")


def create_app(settings: Settings | None = None, catalog: Catalog | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings.effective_database_url)
        async with engine.connect() as connection:
            # Never migrated here (attache-server run migrates SQLite, migrate PostgreSQL).
            problem = schema_problem(await current_revisions(connection))
        if problem is not None:
            await engine.dispose()
            raise SchemaMismatch(problem)
        app.state.engine = engine
        sessionmaker = create_sessionmaker(engine, info=session_info(app.state.bus.changes))
        track(sessionmaker.kw["sync_session_class"], app.state.bus.changes, classify)
        app.state.sessionmaker = sessionmaker
        app.state.metrics.watch_audit(sessionmaker.kw["sync_session_class"])
        # The bus, not the app: the metrics' audit listener is registered on this app's
        # session class, which SQLAlchemy keeps while anything reachable from there holds the
        # app (its sessionmaker holds the class), so a closure over the app kept every app.
        bus = app.state.bus
        app.state.metrics.watch(bus, engine)
        app.state.readiness = readiness_checks(engine, bus)
        app.state.gate = DeliveryGate(sessionmaker, app.state.bus.changes, app.state.catalog)
        app.state.bus.notify_with(RosterNotifier(sessionmaker, app.state.catalog))
        # Before the first request: a peer's change heard from here on reaches every cache.
        await bus.start()
        app.state.submits = submit_queue(
            sessionmaker, app.state.bus, on_commit=app.state.metrics.submit_commits.inc
        )
        ensure_server_keys(settings)
        record_origins(settings)
        app.state.audit_signer = load_signer(
            keys_dir(settings) / AUDIT_KEY_FILE, settings.effective_audit_origin
        )
        stop = asyncio.Event()
        integrator = asyncio.create_task(
            run_integrator(
                app.state.sessionmaker,
                app.state.audit_signer,
                settings.audit_integrate_seconds,
                stop,
            )
        )
        expiry = asyncio.create_task(
            run_expiry(
                sessionmaker,
                app.state.blobs,
                app.state.uploads,
                settings.upload_expiry_seconds,
                stop,
            )
        )
        if settings.memory_snapshot_dir is not None:
            watch_memory(settings.memory_snapshot_dir)
        thresholds = gc.get_threshold()
        if settings.gc_freeze:
            # What start-up made (modules, the app, the catalog: ~135,000 objects) lives as
            # long as the process: moved out of the collector's reach, so that a full
            # collection, which stops the event loop, no longer walks it every time (~60 ms).
            gc.collect()
            gc.freeze()
            # And the youngest generation is collected every YOUNG_ALLOCATIONS allocations,
            # not CPython's 700: a request's or a push's objects live a few milliseconds, and
            # at 700 a collection found them still alive and moved them towards the oldest
            # generation, whose growth then set off full collections, each stopping the event
            # loop while it walks every open connection's objects. In the benchmark's twenty
            # rooms (980 connections) that was eight full collections of 30-370 ms in 15 s,
            # and the rooms sustained 20 messages a second on a busy machine; at this
            # threshold, none in 35 s and 100 a second (two runs of each, in turn). A young
            # collection walks at most this many objects: under 1 ms for 50,000 dicts here.
            gc.set_threshold(YOUNG_ALLOCATIONS, *thresholds[1:])
        try:
            yield
        finally:
            gc.set_threshold(*thresholds)
            if settings.memory_snapshot_dir is not None:
                unwatch_memory()
            stop.set()
            await integrator
            await expiry
            await app.state.bus.aclose()
            await engine.dispose()

    app = FastAPI(
        title="Attaché",
        version="1",
        summary="End-to-end encrypted, classification-labelled messaging for liaison offices",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.catalog = catalog or settings.load_catalog()
    app.state.bus = (
        InProcessBus()
        if settings.redis_url is None
        else RedisBus(
            settings.redis_url.get_secret_value(), channel_name(settings.effective_audit_origin)
        )
    )
    app.state.blobs = BlobStore(settings.effective_blob_dir)
    app.state.rate_limits = RateLimits.in_memory(settings)
    app.state.uploads = UploadGate(settings.upload_max_concurrent, settings.upload_max_per_device)
    app.state.metrics = Metrics()
    install_error_handlers(app)
    # Innermost: message submits past the router (server/channels/endpoints.py).
    app.add_middleware(SubmitRoute)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)
    app.add_middleware(BodyTimeout, seconds=settings.body_read_timeout_seconds)
    # Outside the rest: a request the rate limits refused moments ago is refused again at
    # once; and before anything, headers beyond their bounds.
    app.add_middleware(RefuseAgain)
    app.add_middleware(
        HeaderLimit, max_headers=settings.max_headers, max_bytes=settings.max_header_bytes
    )
    # Outermost, so that every answer is timed and counted, refusals included.
    app.add_middleware(
        RequestMetrics, metrics=app.state.metrics, access_log=settings.log_format == "json"
    )

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    # Routes are matched in order, router by router (FastAPI tries each included router's
    # routes, then the chosen router's again): the hot ones (every submit and sync) first.
    # No path of one router matches another's pattern, so the order changes nothing else.
    app.include_router(channels_router)
    app.include_router(auth_router)
    app.include_router(directory_router)
    app.include_router(coalition_router)
    app.include_router(devices_router)
    app.include_router(committees_router)
    app.include_router(documents_router)
    app.include_router(releases_router)
    app.include_router(grants_router)
    app.include_router(stream_router)
    app.include_router(audit_router)
    app.include_router(operations_router)
    app.include_router(web_router)
    return app
