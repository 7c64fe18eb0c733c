"""Shared fixtures: a real database per backend (SQLite, PostgreSQL), the app, and factories.

Every server test runs on both backends. PostgreSQL is the server named by
ATTACHE_TEST_POSTGRES_URL (default: this machine's, database ``test``); the suite creates its
own database there and drops it at the end. Without CI, an unreachable PostgreSQL skips
those tests with the reason; under CI (CI=true) it fails them, since CI must test both.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import text
from sqlalchemy.engine import make_url

from server.app import create_app
from server.db import migrate
from server.db.engine import create_engine
from server.db.models import Base
from server.settings import Settings
from tests.factories import World

POSTGRES_URL = os.environ.get(
    "ATTACHE_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
TEST_ORIGIN = "http://testserver"


async def _admin(url: str, statement: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text(statement))
    finally:
        await engine.dispose()


def _postgres_database() -> Iterator[str]:
    name = f"attache_test_{secrets.token_hex(6)}"
    try:
        asyncio.run(_admin(POSTGRES_URL, f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        message = f"PostgreSQL at {POSTGRES_URL} is unreachable: {exc.__class__.__name__}: {exc}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    url = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        asyncio.run(_admin(POSTGRES_URL, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A migrated database per backend, shared by the session; tests empty it after use."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("sqlite") / "attache.db"
        url = f"sqlite+aiosqlite:///{path}"
        migrate.upgrade(url)
        yield url
    else:
        for url in _postgres_database():
            migrate.upgrade(url)
            yield url


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "var",
        database_url=database_url,
        public_url=TEST_ORIGIN,
        # Tests integrate the audit log explicitly, when they mean to.
        audit_integrate_seconds=3600,
    )


async def _empty_tables(app_engine: object) -> None:
    from sqlalchemy.ext.asyncio import AsyncEngine

    assert isinstance(app_engine, AsyncEngine)
    async with app_engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            await conn.execute(table.delete())


@pytest.fixture
async def app(settings: Settings, clean_database: None) -> AsyncIterator[object]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def clean_database(database_url: str) -> AsyncIterator[None]:
    """Empties every table once the test (and its app, server or CLI) is done."""
    yield
    engine = create_engine(database_url)
    try:
        await _empty_tables(engine)
    finally:
        await engine.dispose()


@pytest.fixture
async def live_url(app: Any) -> AsyncIterator[str]:
    """The test app served by a real uvicorn on a free loopback port (for websockets, which
    httpx's in-process transport cannot carry). Its lifespan is the ``app`` fixture's."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off", log_level="warning")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@pytest.fixture
def transport(app: object) -> httpx.ASGITransport:
    return httpx.ASGITransport(app=app)  # type: ignore[arg-type]


@pytest.fixture
async def http(transport: httpx.ASGITransport) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=transport, base_url=TEST_ORIGIN) as client:
        yield client


@pytest.fixture
async def world(
    app: object, transport: httpx.ASGITransport, tmp_path: Path
) -> AsyncIterator[World]:
    w = World(app, transport, tmp_path / "homes", TEST_ORIGIN, key_transparency=False)
    try:
        yield w
    finally:
        await w.close()
