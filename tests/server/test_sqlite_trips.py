"""The SQLite adapter (server/db/sqlite.py): what it saves, and that it loses nothing.

Each trip to aiosqlite's thread costs far more CPU than a small statement, so the adapter
makes one trip per statement and none for a COMMIT or ROLLBACK with no transaction open.
These tests count the trips and check that writes still commit and roll back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from server.db import sqlite
from server.db.engine import create_engine

pytestmark = pytest.mark.skipif(not sqlite.supported(), reason="stock aiosqlite adapter")


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'trips.db'}")
    async with engine.begin() as connection:
        await connection.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)"))
    yield engine
    await engine.dispose()


@pytest.fixture
def trips(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The name of every function sent to a connection's thread while the test runs."""
    seen: list[str] = []
    real = aiosqlite.Connection._execute

    async def counted(self: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(getattr(fn, "__name__", repr(fn)))
        return await real(self, fn, *args, **kwargs)

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
    return seen


async def _values(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as connection:
        return list((await connection.execute(text("SELECT v FROM t ORDER BY id"))).scalars())


async def test_a_read_only_session_makes_one_trip_a_statement_and_none_to_end(
    engine: AsyncEngine, trips: list[str]
) -> None:
    async with async_sessionmaker(engine)() as session:
        await _values(engine)  # the pool holds a connection already
        trips.clear()
        assert (await session.execute(text("SELECT count(*) FROM t"))).scalar() == 0
        await session.commit()
    # The SELECT; neither the commit nor the pool's reset on return travelled.
    assert trips == ["run"]


async def test_a_write_commits_in_one_more_trip_and_the_reset_travels_no_more(
    engine: AsyncEngine, trips: list[str]
) -> None:
    await _values(engine)
    trips.clear()
    async with async_sessionmaker(engine)() as session:
        await session.execute(text("INSERT INTO t (v) VALUES ('kept')"))
        await session.commit()
    assert trips == ["run", "commit"]
    assert await _values(engine) == ["kept"]


async def test_a_write_rolled_back_or_abandoned_leaves_nothing(engine: AsyncEngine) -> None:
    async with async_sessionmaker(engine)() as session:
        await session.execute(text("INSERT INTO t (v) VALUES ('rolled back')"))
        await session.rollback()

    async def abandoned() -> None:
        async with async_sessionmaker(engine)() as session:
            await session.execute(text("INSERT INTO t (v) VALUES ('abandoned')"))
            raise RuntimeError("the request failed")

    with pytest.raises(RuntimeError):
        await abandoned()
    # Both connections went back to the pool rolled back: the write lock is free.
    async with async_sessionmaker(engine)() as session:
        await session.execute(text("INSERT INTO t (v) VALUES ('after')"))
        await session.commit()
    assert await _values(engine) == ["after"]


async def test_a_failed_statement_inside_a_transaction_is_rolled_back(
    engine: AsyncEngine,
) -> None:
    async with async_sessionmaker(engine)() as session:
        await session.execute(text("INSERT INTO t (id, v) VALUES (1, 'first')"))
        with pytest.raises(Exception, match="UNIQUE"):
            await session.execute(text("INSERT INTO t (id, v) VALUES (1, 'again')"))
        await session.rollback()
    assert await _values(engine) == []
