"""Running the server: configuration, migrations at start, readiness, metrics and logs
(issue 11, items 1 and 5)."""

from __future__ import annotations

import asyncio
import fcntl
import io
import json
import logging
import logging.config
import math
import os
import signal
import subprocess
import sys
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from click.testing import CliRunner, Result
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from sqlalchemy import text

from server import cli, logs
from server.app import create_app
from server.audit.integrator import integrate
from server.cli import main
from server.db import migrate
from server.db.engine import create_engine
from server.metrics import Metrics
from server.operations import database_reachable, unwatch_memory, watch_memory
from server.settings import Settings
from tests.conftest import IN_CI, TEST_ORIGIN, _postgres_database
from tests.factories import World
from tests.server.test_channels import REL_USA_GBR, _three
from tests.server.test_delivery import _send
from tests.server.test_stream import _connect

TOKEN = "metrics-token-for-the-tests-0123456789"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"metrics_token": SecretStr(TOKEN)})


# --- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "read"),
    [
        ("sqlite:///srv/attache.db", "sqlite+aiosqlite:///srv/attache.db"),
        ("sqlite+aiosqlite:///srv/attache.db", "sqlite+aiosqlite:///srv/attache.db"),
        ("postgresql://attache@db/attache", "postgresql+asyncpg://attache@db/attache"),
        ("postgres://attache:pw@db:5433/a", "postgresql+asyncpg://attache:pw@db:5433/a"),
    ],
)
def test_database_urls_are_read_with_the_servers_drivers(given: str, read: str) -> None:
    assert Settings(database_url=given).effective_database_url == read


def test_an_empty_redis_url_is_no_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATTACHE_REDIS_URL", "")  # as an env file writes "not set"
    assert Settings().redis_url is None
    assert Settings(workers=2, database_url="postgresql://db/a").several_processes_refusal()


@pytest.mark.parametrize(
    ("variable", "value", "said"),
    [
        ("ATTACHE_DATABASE_URL", "mysql://root:hunter2@db/attache", "must be sqlite+aiosqlite"),
        ("ATTACHE_DATABASE_URL", "postgresql+psycopg2://a:hunter2@db/x", "postgresql+asyncpg"),
        ("ATTACHE_REDIS_URL", "http://:hunter2@cache", "must be redis://"),
        ("ATTACHE_METRICS_TOKEN", "hunter2", "at least 24 characters"),
        ("ATTACHE_WORKERS", "0", "greater than or equal to 1"),
    ],
)
def test_a_bad_setting_is_named_without_its_value(
    variable: str, value: str, said: str, tmp_path: Path
) -> None:
    result = _invoke({"ATTACHE_DATA_DIR": str(tmp_path), variable: value}, "nation", "list")
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: {variable}: ")
    assert said in result.output
    assert "hunter2" not in result.output


def _invoke(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


class Served:
    """What ``uvicorn.run`` was asked to serve, instead of serving it."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, dict[str, Any]]] = []

    def __call__(self, app: Any, **options: Any) -> None:
        self.calls.append((app, options))


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    record = Served()
    monkeypatch.setattr(uvicorn, "run", record)
    # What `run` puts in the environment for its worker processes is put back afterwards.
    for name in ("ATTACHE_HOST", "ATTACHE_PORT", "ATTACHE_GC_FREEZE", "ATTACHE_WORKERS"):
        monkeypatch.delenv(name, raising=False)
    yield record
    _stop_serving()


def _stop_serving() -> None:
    """Let go of the SQLite databases `run` held in this process, as its exit would."""
    while cli._held:
        os.close(cli._held.pop())


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database of its own with nothing in it, for one test."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}"
    else:
        yield from _postgres_database()


def _env(tmp_path: Path, database_url: str, **more: str) -> dict[str, str]:
    return {
        "ATTACHE_DATA_DIR": str(tmp_path / "var"),
        "ATTACHE_DATABASE_URL": database_url,
        "ATTACHE_GC_FREEZE": "false",
        **more,
    }


def _revisions(database_url: str) -> tuple[str, ...]:
    async def read() -> tuple[str, ...]:
        engine = create_engine(database_url)
        try:
            async with engine.connect() as connection:
                return await migrate.current_revisions(connection)
        finally:
            await engine.dispose()

    return asyncio.run(read())


def _set_revision(database_url: str, revision: str) -> None:
    async def write() -> None:
        engine = create_engine(database_url)
        try:
            async with engine.begin() as connection:
                await connection.execute(
                    text("UPDATE alembic_version SET version_num = :r"), {"r": revision}
                )
        finally:
            await engine.dispose()

    asyncio.run(write())


def test_postgresql_is_migrated_by_migrate_and_never_by_run(served: Served, tmp_path: Path) -> None:
    for url in _postgres_database():
        env = _env(tmp_path, url)
        refused = _invoke(env, "run")
        assert refused.exit_code == 1
        assert refused.output == (
            "Error: the database has no Attaché schema yet; run 'attache-server migrate' "
            "first, then start the server\n"
        )
        assert _revisions(url) == ()  # run did not migrate
        assert served.calls == []

        head = migrate.head_revision()
        first = _invoke(env, "migrate")
        assert first.exit_code == 0, first.output
        assert first.output == f"the database's schema is now at {head} (it was empty)\n"
        again = _invoke(env, "migrate")
        assert again.output == f"the database's schema is already at {head}\n"

        started = _invoke(env, "run")
        assert started.exit_code == 0, started.output
        assert "enrolment code:" in started.output  # the operator's, on first start
        ((app, options),) = served.calls
        assert options["host"] == "127.0.0.1"
        assert options["port"] == 8600
        assert "workers" not in options
        assert app.state.settings.gc_freeze is False  # ATTACHE_GC_FREEZE said so

        _set_revision(url, "0008")
        older = _invoke(env, "run")
        assert older.exit_code == 1
        assert f"is older than this version of Attaché's ({head}); run 'attache-server" in (
            older.output
        )
        _set_revision(url, head)  # (its schema is the head's: only the record was changed)

        _set_revision(url, "9999")
        for command in ("run", "migrate"):
            newer = _invoke(env, command)
            assert newer.exit_code == 1
            assert "schema (9999) is newer than this version of Attaché knows" in newer.output
        assert len(served.calls) == 1


def test_a_server_on_an_unmigrated_postgresql_stops_with_one_sentence(tmp_path: Path) -> None:
    # The real command, in a process of its own: its exit status and all it prints.
    for url in _postgres_database():
        process = subprocess.run(
            [sys.executable, "-c", "from server.cli import main; main()", "run"],
            env={**os.environ, **_env(tmp_path, url)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert process.returncode == 1
        assert process.stdout == ""
        assert process.stderr.count("\n") == 1
        assert process.stderr.startswith("Error: the database has no Attaché schema yet;")


def test_sqlite_is_migrated_by_run(served: Served, tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}"
    result = _invoke(_env(tmp_path, url), "run", "--port", "8611")
    assert result.exit_code == 0, result.output
    assert _revisions(url) == (migrate.head_revision(),)
    ((_, options),) = served.calls
    assert options["port"] == 8611
    # Streams: no per-message deflate (ciphertext), no protocol-level pings besides the
    # stream's own (server/cli.py says why).
    assert options["ws_per_message_deflate"] is False
    assert options["ws_ping_interval"] is None

    _stop_serving()
    _set_revision(url, "9999")  # as if a later Attaché had migrated it
    for command in ("run", "init", "migrate"):
        result = _invoke(_env(tmp_path, url), command)
        assert result.exit_code == 1
        assert result.output.startswith("Error: the database's schema (9999) is newer than")
    assert len(served.calls) == 1


def test_an_app_refuses_a_database_whose_schema_is_not_its_own(
    empty_database: str, tmp_path: Path
) -> None:
    app = create_app(Settings(data_dir=tmp_path / "var", database_url=empty_database))

    async def start() -> None:
        async with app.router.lifespan_context(app):
            pass

    with pytest.raises(migrate.SchemaMismatch, match="has no Attaché schema yet"):
        asyncio.run(start())


def test_several_processes_are_refused_without_postgresql_and_the_redis_bus(
    served: Served, database_url: str, tmp_path: Path, clean_database: None
) -> None:
    env = _env(tmp_path, database_url, ATTACHE_WORKERS="3")
    result = _invoke(env, "run")
    assert result.exit_code == 1
    if database_url.startswith("sqlite"):
        assert "a SQLite database is served by one process" in result.output
    else:
        assert "several processes need the Redis bus" in result.output
    assert "ATTACHE_WORKERS is 3" in result.output
    assert _invoke({**env, "ATTACHE_WORKERS": "1"}, "run", "--workers", "2").exit_code == 1
    assert served.calls == []


def test_several_workers_each_make_their_app_from_the_environment(
    served: Served, tmp_path: Path
) -> None:
    # PostgreSQL and the Redis bus: several processes are served.
    for url in _postgres_database():
        env = _env(tmp_path, url, ATTACHE_REDIS_URL="redis://127.0.0.1:6379/0")
        assert _invoke(env, "migrate").exit_code == 0
        result = _invoke(env, "run", "--workers", "3", "--port", "8612")
        assert result.exit_code == 0, result.output
        ((app, options),) = served.calls
        assert app == "server.app:create_app"
        assert options["factory"] is True
        assert options["workers"] == 3
        assert os.environ["ATTACHE_PORT"] == "8612"
        assert os.environ["ATTACHE_WORKERS"] == "3"


def test_a_second_server_on_one_sqlite_database_is_refused(served: Served, tmp_path: Path) -> None:
    database = tmp_path / "var" / "attache.db"
    database.parent.mkdir()
    # As a first server holds it for as long as it runs.
    held = os.open(f"{database}.serving", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(held, b"4242\n")
        result = _invoke(_env(tmp_path, f"sqlite+aiosqlite:///{database}"), "run")
    finally:
        os.close(held)
    assert result.exit_code == 1
    assert f"another attache-server (pid 4242) is serving the SQLite database {database}" in (
        result.output
    )
    assert served.calls == []


# --- readiness -------------------------------------------------------------------------------


async def test_ready_when_the_database_answers(http: httpx.AsyncClient) -> None:
    answer = await http.get("/readyz")
    assert answer.status_code == 200
    assert answer.json() == {"status": "ready", "checks": {"database": "ok"}}
    assert (await http.get("/healthz")).status_code == 200


async def test_not_ready_when_the_database_does_not_answer(
    app: Any, http: httpx.AsyncClient
) -> None:
    gone = create_engine("postgresql+asyncpg://postgres@127.0.0.1:1/attache")
    app.state.readiness["database"] = lambda: database_reachable(gone)
    try:
        answer = await http.get("/readyz")
    finally:
        await gone.dispose()
    assert answer.status_code == 503
    problem = answer.json()
    assert problem["code"] == "unavailable"
    assert problem["detail"] == "not ready: database unreachable"
    assert problem["checks"] == {"database": "unreachable"}
    assert (await http.get("/healthz")).status_code == 200  # alive, not ready


async def _redis_up() -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", 6379)
    except OSError:
        return False
    writer.close()
    return True


@pytest.mark.parametrize(("port", "ready"), [(6379, True), (1, False)])
async def test_readiness_checks_redis_when_it_is_configured(
    settings: Settings, clean_database: None, port: int, ready: bool
) -> None:
    if ready and not await _redis_up():
        if IN_CI:
            pytest.fail("Redis at 127.0.0.1:6379 is unreachable")
        pytest.skip("Redis at 127.0.0.1:6379 is unreachable")
    app = create_app(
        settings.model_copy(update={"redis_url": SecretStr(f"redis://127.0.0.1:{port}/0")})
    )
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=TEST_ORIGIN) as http,
    ):
        answer = await http.get("/readyz")
        assert app.state.bus.listening is ready  # the bus itself: subscribed or not
    assert answer.status_code == (200 if ready else 503)
    state = "ok" if ready else "unreachable"
    assert answer.json()["checks"] == {"database": "ok", "redis": state}


# --- metrics ---------------------------------------------------------------------------------


async def _scrape(http: httpx.AsyncClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    answer = await http.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


async def test_metrics_need_the_operators_token(
    settings: Settings, http: httpx.AsyncClient, clean_database: None
) -> None:
    assert (await http.get("/metrics")).status_code == 401
    wrong = await http.get("/metrics", headers={"Authorization": "Bearer " + "x" * len(TOKEN)})
    assert wrong.status_code == 401
    assert wrong.headers["www-authenticate"] == "Bearer"
    basic = await http.get("/metrics", headers={"Authorization": f"Basic {TOKEN}"})
    assert basic.status_code == 401
    assert await _scrape(http)

    off = create_app(settings.model_copy(update={"metrics_token": None}))
    async with (
        off.router.lifespan_context(off),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=off), base_url=TEST_ORIGIN) as other,
    ):
        assert (await other.get("/metrics")).status_code == 401
        answer = await other.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 404
    assert "set ATTACHE_METRICS_TOKEN" in answer.json()["detail"]


def _value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_messages_deliveries_and_withholdings_are_counted(
    world: World, live_url: str, http: httpx.AsyncClient
) -> None:
    t = await _three(world)
    stream = await _connect(live_url, t.gbr)
    try:
        await _send(t, [t.usa, t.gbr], REL_USA_GBR)
        # The set-up's roster notices may still be on their way (worked out after commit,
        # for every stream open by then): the message follows them.
        frame = json.loads(await asyncio.wait_for(stream.recv(), 5))
        while frame["type"] == "roster-changed":
            frame = json.loads(await asyncio.wait_for(stream.recv(), 5))
        assert frame["type"] == "message"
        samples = await _scrape(http)
        assert _value(samples, "attache_streams_connected") == 1
        # One process, no Redis bus: nothing heard from peers, nothing missed.
        assert math.isnan(samples[("attache_bus_lag_seconds", ())])
        assert samples[("attache_bus_rebuilds_total", ())] == 0
        for _ in range(100):  # counted just after the frame is written
            if _value(samples, "attache_deliveries_total", via="stream") == 1:
                break
            await asyncio.sleep(0.01)
            samples = await _scrape(http)
    finally:
        await stream.close()
    assert _value(samples, "attache_deliveries_total", via="stream") == 1
    assert _value(samples, "attache_messages_accepted_total") == 1

    synced = await t.gbr.client.sync()  # the same message, now by sync
    await _send(t, [t.usa, t.gbr], REL_USA_GBR)
    await t.usa.client.remove_member("liaison", "bob")
    await t.gbr.client.sync(after=synced["cursor"])  # withheld: bob left the channel since
    samples = await _scrape(http)
    assert _value(samples, "attache_messages_accepted_total") == 2
    assert _value(samples, "attache_submit_commits_total") == 2  # sent one after the other
    assert _value(samples, "attache_deliveries_total", via="sync") == 1
    assert _value(samples, "attache_deliveries_withheld_total") == 1
    events = "attache_audit_events_total"
    assert _value(samples, events, action="message.submit", decision="allow") == 2
    assert _value(samples, events, action="message.withhold", decision="deny") == 1
    assert _value(samples, events, action="channel.member_remove", decision="allow") == 1


async def test_requests_are_timed_by_route_template_not_path(
    world: World, http: httpx.AsyncClient
) -> None:
    t = await _three(world)
    await t.usa.client.request("GET", "/v1/channels/liaison")
    samples = await _scrape(http)
    route = "/v1/channels/{channel}"
    count = "attache_http_request_duration_seconds_count"
    assert _value(samples, count, method="GET", route=route) == 1
    assert _value(samples, "attache_http_responses_total", method="GET", route=route, status="200")
    assert _value(samples, count, method="POST", route="/v1/auth/sessions") == 3
    assert (await http.get("/no/such/thing")).status_code == 404
    samples = await _scrape(http)
    assert _value(samples, count, method="GET", route="(unmatched)") == 1
    labels = {value for (_, pairs) in samples for _, value in pairs}
    assert not any(t.id in value or "liaison" in value for value in labels)


async def test_the_pool_and_the_audit_logs_backlog_are_read_when_scraped(
    world: World, http: httpx.AsyncClient
) -> None:
    samples = await _scrape(http)
    assert _value(samples, "attache_db_pool_size") >= 1
    assert _value(samples, "attache_db_pool_checked_out") >= 0
    assert _value(samples, "attache_audit_integration_delay_seconds") == 0
    await world.nation("USA")  # an audited change; the tests' integrator waits an hour
    await asyncio.sleep(0.05)
    samples = await _scrape(http)
    assert _value(samples, "attache_audit_events_pending") == 1
    assert _value(samples, "attache_audit_integration_delay_seconds") > 0
    async with world.app.state.sessionmaker() as session, session.begin():
        await integrate(session, world.app.state.audit_signer)
    samples = await _scrape(http)
    assert _value(samples, "attache_audit_events_pending") == 0
    assert _value(samples, "attache_audit_integration_delay_seconds") == 0


def test_each_app_counts_for_itself() -> None:
    first, second = Metrics(), Metrics()
    first.count_audited([("message.withhold", "deny")])
    first.delivered_stream.inc()
    assert (first.withheld.value, first.delivered_stream.value) == (1, 1)
    assert (second.withheld.value, second.delivered_stream.value) == (0, 0)
    assert second.registry is not first.registry


# --- logs ------------------------------------------------------------------------------------


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    """The JSON logging `attache-server run` sets up, written here, every logger at DEBUG or
    as the configuration sets it; the logging configuration is put back afterwards."""
    written = io.StringIO()
    config = logs.uvicorn_log_config("json")
    config["handlers"]["default"] = {
        "class": "logging.StreamHandler",
        "formatter": "json",
        "stream": written,
    }
    config["root"]["level"] = "DEBUG"
    for name in ("uvicorn", "uvicorn.access"):
        config["loggers"][name]["level"] = "DEBUG"
    manager = logging.root.manager
    touched = ["", "uvicorn", "uvicorn.error", "uvicorn.access", *config["loggers"]]
    saved = {
        name: (
            logging.getLogger(name).level,
            list(logging.getLogger(name).handlers),
            logging.getLogger(name).propagate,
        )
        for name in touched
    }
    disabled = {
        name: logger.disabled
        for name, logger in manager.loggerDict.items()
        if isinstance(logger, logging.Logger)
    }
    logging.config.dictConfig(config)
    try:
        yield written
    finally:
        for name, (level, handlers, propagate) in saved.items():
            logger = logging.getLogger(name)
            logger.setLevel(level)
            logger.handlers[:] = handlers
            logger.propagate = propagate
        for name, was in disabled.items():
            logger = manager.loggerDict[name]
            assert isinstance(logger, logging.Logger)
            logger.disabled = was


@pytest.fixture
def json_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"log_format": "json"})


@pytest.fixture
async def json_app(json_settings: Settings, clean_database: None) -> AsyncIterator[Any]:
    application = create_app(json_settings)
    async with application.router.lifespan_context(application):
        yield application


async def test_json_logs_never_hold_a_login_token(
    json_logs: io.StringIO, json_app: Any, tmp_path: Path
) -> None:
    # Served by uvicorn with the logging `run` configures, streams included.
    config = uvicorn.Config(
        json_app, host="127.0.0.1", port=0, lifespan="off", log_config=None, access_log=False
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    transport = httpx.ASGITransport(app=json_app)
    world = World(json_app, transport, tmp_path / "homes", TEST_ORIGIN)
    try:
        await world.nation("USA")
        member = await world.member("alice", "USA")
        token = member.client.token
        assert token
        stream = await _connect(url, member)
        await stream.close()
        async with httpx.AsyncClient(base_url=url) as client:
            await client.get(f"/v1/me?token={token}")
            await client.get("/v1/me", headers={"Authorization": f"Bearer {token}x"})
        await member.client.logout()
    finally:
        await world.close()
        server.should_exit = True
        await task

    written = json_logs.getvalue()
    assert token not in written
    lines = [json.loads(line) for line in written.splitlines()]
    access = [line for line in lines if line["logger"] == "attache.access"]
    assert {"method": "POST", "route": "/v1/auth/sessions", "status": 201} in [
        {key: line[key] for key in ("method", "route", "status")} for line in access
    ]
    me = [line for line in access if line["route"] == "/v1/me"]
    assert [line["path"] for line in me] == ["/v1/me", "/v1/me"]  # no query string
    assert all(isinstance(line["duration_ms"], float) for line in access)
    assert any(line["logger"].startswith("uvicorn") for line in lines)
    assert not any(line["logger"].startswith(("sqlalchemy", "websockets")) for line in lines)


def test_what_looks_like_a_credential_is_masked() -> None:
    assert (
        logs.redact("Authorization: Bearer abc.DEF-123_xyz") == "Authorization: Bearer [redacted]"
    )
    assert logs.redact('{"token": "s3cr3t-value"}') == '{"token": "[redacted]"}'
    assert logs.redact("password=hunter22 and more") == "password=[redacted] and more"
    assert logs.redact("GET /v1/channels/liaison 200") == "GET /v1/channels/liaison 200"


async def _signalled(path: Path) -> bool:
    os.kill(os.getpid(), signal.SIGUSR1)
    for _ in range(100):  # the handler runs from the event loop, soon after the signal
        await asyncio.sleep(0.01)
        if path.exists():
            return True
    return False


async def test_sigusr1_writes_a_memory_snapshot_only_when_allocations_are_traced(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "memory"
    was_tracing = tracemalloc.is_tracing()
    tracemalloc.stop()
    watch_memory(directory)
    try:
        with caplog.at_level(logging.WARNING, logger="attache.operations"):
            assert not await _signalled(directory / "memory-1.snap")
        assert "does not trace allocations" in caplog.text
        tracemalloc.start()
        kept = [bytearray(4096) for _ in range(64)]  # something of this test's to find
        assert await _signalled(directory / "memory-1.snap")
        assert await _signalled(directory / "memory-2.snap")
    finally:
        unwatch_memory()
        if not was_tracing:
            tracemalloc.stop()
    snapshot = tracemalloc.Snapshot.load(str(directory / "memory-2.snap"))
    here = snapshot.filter_traces([tracemalloc.Filter(True, __file__)])
    assert sum(s.size for s in here.statistics("filename")) >= 64 * 4096
    kinds = json.loads((directory / "memory-2.kinds.json").read_text())
    assert kinds["builtins.list"] >= 1
    assert len(kept) == 64
    assert not list(directory.glob("*.part"))
