"""The embedded database's writers queue in this process instead of polling SQLite's lock."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Column, Integer, LargeBinary, MetaData, String, Table, insert, select
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.exc import IntegrityError

from server.audit import log as audit
from server.audit.models import AuditEvent
from server.db import sqlite
from server.db.base import JSONType, UTCDateTime
from server.db.engine import _WRITING, create_engine, stage, staged_count, write_staged
from server.directory.models import Nation


async def _nation(session: Any, code: str) -> None:
    session.add(Nation(code=code, name=code, authority_key=b"\0" * 32, authority_key_id=code))
    await session.flush()


async def test_a_second_writer_waits_for_the_first_to_commit_then_goes_at_once(
    app: Any, database_url: str
) -> None:
    if not database_url.startswith("sqlite"):
        pytest.skip("PostgreSQL has row locks and many writers; nothing to queue")
    order: list[str] = []
    first = app.state.sessionmaker()
    second = app.state.sessionmaker()
    try:
        await _nation(first, "USA")  # holds the write lock until its transaction ends

        async def write_second() -> None:
            await _nation(second, "GBR")
            order.append("second wrote")
            await second.commit()

        waiting = asyncio.create_task(write_second())
        await asyncio.sleep(0.2)
        assert not waiting.done()  # queued behind the first, not failed
        # Queued on this process's lock, held by the first writer; not in SQLite's busy
        # handler, which would wake only on its next poll after the first commits.
        lock = first.info[_WRITING]
        assert lock.locked()
        assert _WRITING not in second.info
        order.append("first commits")
        await first.commit()
        await asyncio.wait_for(waiting, 1)
        assert order == ["first commits", "second wrote"]
        assert _WRITING not in first.info
        assert not lock.locked()
    finally:
        await first.close()
        await second.close()


async def test_a_rolled_back_writer_releases_the_lock(app: Any, database_url: str) -> None:
    if not database_url.startswith("sqlite"):
        pytest.skip("PostgreSQL has row locks and many writers; nothing to queue")
    for _ in range(3):
        async with app.state.sessionmaker() as session:
            await _nation(session, "FRA")
            await session.rollback()
    async with app.state.sessionmaker() as session, session.begin():
        await asyncio.wait_for(_nation(session, "FRA"), 1)


async def test_a_statement_is_one_trip_to_aiosqlites_thread(tmp_path: Any) -> None:
    import aiosqlite.core
    from sqlalchemy import text
    from sqlalchemy.exc import IntegrityError

    from server.db.engine import create_engine

    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'trips.db'}")
    trips: list[object] = []
    stock = aiosqlite.core.Connection._execute

    async def counted(self: Any, fn: Any, *args: Any, **kwargs: Any) -> Any:
        trips.append(fn)
        return await stock(self, fn, *args, **kwargs)

    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)"))
            aiosqlite.core.Connection._execute = counted  # type: ignore[method-assign]
            try:
                inserted = await conn.execute(
                    text("INSERT INTO t (v) VALUES (:v) RETURNING id"), {"v": "a"}
                )
                assert inserted.scalar_one() == 1
                assert len(trips) == 1  # the stock adapter made four: cursor, execute, fetch, close
                await conn.execute(text("INSERT INTO t (v) VALUES (:v)"), [{"v": "b"}, {"v": "c"}])
                assert len(trips) == 2  # executemany too
                rows = await conn.execute(text("SELECT v FROM t ORDER BY id"))
                assert rows.scalars().all() == ["a", "b", "c"]
                assert len(trips) == 3
                counted_rows = await conn.execute(text("UPDATE t SET v = 'z' WHERE id > 1"))
                assert counted_rows.rowcount == 2
            finally:
                aiosqlite.core.Connection._execute = stock  # type: ignore[method-assign]
        with pytest.raises(IntegrityError):  # errors still map to SQLAlchemy's
            async with engine.begin() as conn:
                await conn.execute(text("INSERT INTO t (id, v) VALUES (1, 'dup')"))
    finally:
        await engine.dispose()


async def test_staged_rows_are_written_together_with_their_generated_keys(app: Any) -> None:
    """Staged rows (the submit path's messages and audit events) go in one INSERT per table
    and get their database-generated keys back in the order they were staged; a session
    that rolls back writes none of them."""
    events = [
        audit.event(actor=None, action="test.staged", object_type="test", object_id=str(i))
        for i in range(5)
    ]
    async with app.state.sessionmaker() as session:
        for event in events[:2]:
            stage(session, event)
        await session.rollback()
    async with app.state.sessionmaker() as session, session.begin():
        for event in events:
            stage(session, event)
        assert staged_count(session) == 5
        await write_staged(session)
        assert staged_count(session) == 0
    ids = [event.id for event in events]
    assert all(isinstance(i, int) for i in ids)
    assert ids == sorted(set(ids))
    async with app.state.sessionmaker() as session:
        rows = await session.execute(
            select(AuditEvent.id, AuditEvent.object_id, AuditEvent.body)
            .where(AuditEvent.action == "test.staged")
            .order_by(AuditEvent.id)
        )
        stored = [(row.id, row.object_id, row.body) for row in rows]
    assert stored == [(e.id, e.object_id, e.body) for e in events]


async def test_staged_rows_without_their_keys_are_written_in_the_order_staged(app: Any) -> None:
    """``key_back=False`` (the submit's audit events): no key is read back, and the rows are
    still stored in the order staged, beside rows of the same table that do read theirs."""
    events = [
        audit.event(actor=None, action="test.unkeyed", object_type="test", object_id=str(i))
        for i in range(4)
    ]
    async with app.state.sessionmaker() as session, session.begin():
        for i, event in enumerate(events):
            stage(session, event, key_back=i == 3)
        await write_staged(session)
    assert [e.__dict__.get("id") for e in events[:3]] == [None, None, None]
    assert isinstance(events[3].id, int)
    async with app.state.sessionmaker() as session:
        rows = await session.execute(
            select(AuditEvent.id, AuditEvent.object_id)
            .where(AuditEvent.action == "test.unkeyed")
            .order_by(AuditEvent.id)
        )
        stored = [(row.id, row.object_id) for row in rows]
    assert [object_id for _, object_id in stored] == ["0", "1", "2", "3"]
    assert stored[3][0] == events[3].id


# --- a batch's inserts in one trip (SQLite) ----------------------------------------------------


def _rows_table(name: str) -> Table:
    """A table with every kind of column the staged rows hold."""
    return Table(
        name,
        MetaData(),
        Column("seq", Integer, primary_key=True, autoincrement=True),
        Column("uid", String(36), unique=True),
        Column("at", UTCDateTime()),
        Column("doc", JSONType),
        Column("maybe", JSONType),
        Column("blob", LargeBinary),
        Column("note", String(64)),
    )


_VALUES = [
    {
        "uid": "a",
        "at": datetime(2026, 11, 27, 12, 0, 0, 123456, tzinfo=UTC),
        "doc": {"é": ["\u2028", 1, 2.5, None, True], "n": 2**62},
        "maybe": None,
        "blob": b"\x00\xff" * 8,
        "note": None,
    },
    {
        "uid": "b",
        "at": datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=5))),
        "doc": {"nested": {"deep": [[], {}]}},
        "maybe": [1],
        "blob": b"",
        "note": "plain",
    },
]


async def _stored(engine: Any, table: str) -> list[tuple[Any, ...]]:
    """The rows as SQLite holds them, each value with its storage class: no type processing."""
    async with engine.connect() as connection:
        rows = await connection.exec_driver_sql(
            f"SELECT seq, uid, typeof(at), at, typeof(doc), doc, typeof(maybe), maybe, "
            f"typeof(blob), blob, typeof(note), note FROM {table} ORDER BY seq"
        )
        return [tuple(row) for row in rows]


async def test_inserts_in_one_trip_store_what_core_stores(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'rows.db'}")
    try:
        core_table, trip_table = _rows_table("core_rows"), _rows_table("trip_rows")
        async with engine.begin() as connection:
            for table in (core_table, trip_table):
                await connection.run_sync(table.create)
        columns = tuple(_VALUES[0])
        async with engine.begin() as connection:
            assert sqlite.one_trip(connection)
            await connection.execute(insert(core_table), _VALUES)
            processors = sqlite.bind_processors(trip_table, columns, connection.dialect)
            rows = [sqlite.bound_row([v[c] for c in columns], processors) for v in _VALUES]
            sql = sqlite.insert_sql(trip_table, columns, connection.dialect)
            keys = await sqlite.insert_in_one_trip(
                connection,
                [sqlite.Insert(sql, rows[:1], rowids=True), sqlite.Insert(sql, rows[1:], False)],
            )
        assert keys == [[1], []]
        assert await _stored(engine, "trip_rows") == await _stored(engine, "core_rows")
        # And read back through SQLAlchemy's types, the values given.
        async with engine.connect() as connection:
            read = (await connection.execute(select(trip_table).order_by(trip_table.c.seq))).all()
        assert [{c: row._mapping[c] for c in columns} for row in read] == [
            {**v, "at": v["at"].astimezone(UTC)} for v in _VALUES
        ]
    finally:
        await engine.dispose()


async def test_a_failed_insert_in_one_trip_is_sqlalchemys_error_and_keeps_nothing(
    tmp_path: Path,
) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'rows.db'}")
    try:
        table = _rows_table("rows")
        async with engine.begin() as connection:
            await connection.run_sync(table.create)
        columns = ("uid", "note")

        async def insert_twice() -> None:
            async with engine.begin() as connection:
                sql = sqlite.insert_sql(table, columns, connection.dialect)
                await sqlite.insert_in_one_trip(
                    connection, [sqlite.Insert(sql, [("x", "first"), ("x", "again")], False)]
                )

        with pytest.raises(IntegrityError) as refused:
            await insert_twice()
        assert "first" not in str(refused.value)  # parameters stay out of the message
        async with engine.connect() as connection:
            assert (await connection.exec_driver_sql("SELECT count(*) FROM rows")).scalar() == 0
    finally:
        await engine.dispose()


def test_a_column_with_a_default_not_given_is_not_for_one_trip() -> None:
    table = Table(
        "t", MetaData(), Column("id", Integer, primary_key=True), Column("n", Integer, default=1)
    )
    with pytest.raises(ValueError, match="takes other columns"):
        sqlite.insert_sql(table, ("id",), sqlite_dialect.dialect())


async def test_staged_rows_not_for_one_trip_are_written_by_core(app: Any) -> None:
    """A staged row that leaves out a column with a Python-side default (an audit event
    without its time: ``default=utcnow``) cannot be written by the one-trip path, which runs
    no defaults; it is written by Core, defaults run, as on PostgreSQL."""
    event = audit.event(actor=None, action="test.defaulted", object_type="test", object_id="1")
    del event.__dict__["time"]  # as if never set
    async with app.state.sessionmaker() as session, session.begin():
        stage(session, event)
        await write_staged(session)
    async with app.state.sessionmaker() as session:
        stored = (
            await session.execute(
                select(AuditEvent.time).where(AuditEvent.action == "test.defaulted")
            )
        ).scalar_one()
    assert stored is not None
