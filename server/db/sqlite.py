"""SQLite through aiosqlite with one trip to its thread per statement.

aiosqlite runs each call on the connection's own thread, and SQLAlchemy's adapter makes four
calls per statement: make a cursor, execute, fetch the rows, close the cursor. Each trip
between the event loop and that thread costs far more CPU than a small query itself (measured
here: ~70 µs a trip against ~8 µs for a primary-key SELECT in sqlite3; 356 µs a statement
through the stock adapter, 159 µs through this one), so a submit's statements spent most of
their time travelling. This adapter does the four in one trip: the cursor is made,
executed, read and closed on aiosqlite's thread, and the rows come back with the
description, row count and last row id. Everything else (the connection, transactions,
the dialect) is SQLAlchemy's own ``sqlite+aiosqlite``; server-side (streaming) cursors keep
the stock four-trip path.

It leans on two internals that SQLAlchemy's adapter itself uses: aiosqlite's
``Connection._execute`` (run a function on the connection's thread) and ``Connection._conn``
(the sqlite3 connection there). pyproject.toml bounds both libraries to the releases this
was written against, ``supported()`` falls back to the stock adapter where those internals
are missing, and every test runs on SQLite through this adapter.
"""

from __future__ import annotations

import collections
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import aiosqlite
from sqlalchemy import Table, insert
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.util.concurrency import await_

_Outcome = tuple[Any, int, int | None, list[Any] | None]
T = TypeVar("T")


def supported() -> bool:
    return hasattr(aiosqlite.Connection, "_execute") and hasattr(aiosqlite.Connection, "_conn")


class _OneTripCursor(AsyncAdapt_aiosqlite_cursor):
    __slots__ = ("_description", "_lastrowid", "_rowcount")
    _awaitable_cursor_close = False

    def __init__(self, adapt_connection: Any) -> None:
        # No aiosqlite cursor is made here (the stock adapter's first trip).
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._cursor = None  # type: ignore[assignment]
        self._soft_closed_memoized = {}  # type: ignore[assignment]
        self._rows = collections.deque()
        self._description: Any = None
        self._rowcount = -1
        self._lastrowid: int | None = None

    @property
    def description(self) -> Any:
        return self._description

    @property
    def rowcount(self) -> int:
        return self._rowcount

    @property
    def lastrowid(self) -> int:
        return self._lastrowid  # type: ignore[return-value]

    @property
    def arraysize(self) -> int:
        return 1

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        pass

    def execute(self, operation: Any, parameters: Any = None) -> Any:
        args = (operation,) if parameters is None else (operation, parameters)
        try:
            return await_(self._trip(lambda cursor: cursor.execute(*args)))
        except Exception as error:
            self._adapt_connection._handle_exception(error)

    def executemany(self, operation: Any, seq_of_parameters: Any) -> Any:
        try:
            return await_(
                self._trip(lambda cursor: cursor.executemany(operation, seq_of_parameters))
            )
        except Exception as error:
            self._adapt_connection._handle_exception(error)

    async def _trip(self, call: Callable[[sqlite3.Cursor], Any]) -> None:
        connection: aiosqlite.Connection = self._connection  # type: ignore[assignment]
        raw: sqlite3.Connection = connection._conn

        def run() -> _Outcome:
            cursor = raw.cursor()
            try:
                call(cursor)
                rows = cursor.fetchall() if cursor.description else None
                return cursor.description, cursor.rowcount, cursor.lastrowid, rows
            finally:
                cursor.close()

        async with self._adapt_connection._execute_mutex:
            outcome: _Outcome = await connection._execute(run)  # type: ignore[no-untyped-call]
        self._description, self._rowcount, self._lastrowid, rows = outcome
        self._rows = collections.deque(rows or ())

    def close(self) -> None:
        self._rows.clear()

    def setinputsizes(self, *inputsizes: Sequence[Any]) -> None:
        pass


class _Connection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ()
    _cursor_cls = _OneTripCursor

    # A COMMIT or ROLLBACK with no transaction open is a no-op in sqlite3 (which begins one
    # only before a statement that writes), yet it still cost a trip to aiosqlite's thread:
    # every read-only session paid two (its commit and the pool's reset on return), and
    # every write one (the reset after its commit). They are skipped when sqlite3 says no
    # transaction is open (``in_transaction`` reads the connection's autocommit flag, which
    # only this connection's statements change, and SQLAlchemy never commits while one of
    # them runs).

    def rollback(self) -> None:
        if self._open():
            super().rollback()

    def commit(self) -> None:
        if self._open():
            super().commit()

    def _open(self) -> bool:
        connection: aiosqlite.Connection = self._connection  # type: ignore[assignment]
        raw: sqlite3.Connection | None = getattr(connection, "_connection", None)
        # A closed connection, or an unexpected one, takes the stock path (and its errors).
        return raw is None or raw.in_transaction


class OneTripDBAPI(AsyncAdapt_aiosqlite_dbapi):
    """The DBAPI module for ``create_async_engine(..., module=...)`` on ``sqlite+aiosqlite``."""

    def __init__(self) -> None:
        super().__init__(aiosqlite, sqlite3)

    def connect(self, *arg: Any, **kw: Any) -> AsyncAdapt_aiosqlite_connection:
        stock = super().connect(*arg, **kw)
        return _Connection(self, stock._connection)


# --- a batch's inserts in one trip -------------------------------------------------------------


@dataclass(frozen=True)
class Insert:
    """One INSERT of many rows for ``insert_in_one_trip``: ``sql`` in the qmark style, each
    row's values already as the driver takes them (``bound_row``)."""

    sql: str
    rows: list[tuple[Any, ...]]
    # Whether each row's rowid is wanted back (the table's INTEGER PRIMARY KEY): the rows are
    # then executed one by one, which is how sqlite3 tells each one's rowid.
    rowids: bool


async def insert_in_one_trip(
    connection: AsyncConnection, inserts: Sequence[Insert]
) -> list[list[int]]:
    """Run ``inserts`` in order, in the connection's transaction, in one trip to aiosqlite's
    thread; each insert's rowids (empty where not asked for).

    A batch of submits writes its messages and their audit events with this on SQLite: each
    statement through SQLAlchemy's Core (its execution context, its insertmanyvalues batching
    for RETURNING, its result set-up) and each trip to the thread cost far more than the
    statements themselves (bench/bench_channel.py, docs/operations.md). The statements are
    written and their values bound by SQLAlchemy's own compiler and type processors
    (``insert_sql``, ``bound_row``), so the rows stored are those Core would store
    (tests/server/test_db_engine.py compares them byte for byte). A failure is raised as
    SQLAlchemy's error for it (``IntegrityError`` and so on), parameters hidden.
    """

    def run(raw: sqlite3.Connection) -> list[list[int]]:
        found: list[list[int]] = []
        for each in inserts:
            if each.rowids:
                found.append([raw.execute(each.sql, row).lastrowid or 0 for row in each.rows])
            else:
                raw.executemany(each.sql, each.rows)
                found.append([])
        return found

    return await _in_one_trip(connection, run, "; ".join(each.sql for each in inserts))


async def fetch_in_one_trip(
    connection: AsyncConnection, sql: str, parameters: Sequence[Any]
) -> list[tuple[Any, ...]]:
    """The rows of one query in the connection's transaction, in one trip, as the driver
    gives them (no result types applied: for values the driver gives as they are, such as
    text ids)."""
    return await _in_one_trip(connection, lambda raw: raw.execute(sql, parameters).fetchall(), sql)


async def _in_one_trip(
    connection: AsyncConnection, run: Callable[[sqlite3.Connection], T], statement: str
) -> T:
    """``run(the sqlite3 connection)`` on aiosqlite's thread, in turn with this connection's
    other statements; a driver error raised as SQLAlchemy's error for it, parameters hidden."""
    proxied = await connection.get_raw_connection()
    adapted = proxied.dbapi_connection
    if not isinstance(adapted, _Connection):
        raise TypeError("a trip through the driver needs the one-trip SQLite adapter")
    aio: aiosqlite.Connection = adapted._connection
    raw: sqlite3.Connection = aio._conn
    async with adapted._execute_mutex:
        try:
            outcome: T = await aio._execute(lambda: run(raw))
        except sqlite3.Error as error:
            raise DBAPIError.instance(
                statement, None, error, sqlite3.Error, hide_parameters=True
            ) from error
    return outcome


def one_trip(connection: AsyncConnection) -> bool:
    """Whether ``connection`` goes through this adapter (``insert_in_one_trip`` applies)."""
    return connection.dialect.name == "sqlite" and isinstance(
        connection.dialect.loaded_dbapi, OneTripDBAPI
    )


def insert_sql(table: Table, columns: Sequence[str], dialect: Dialect) -> str:
    """``INSERT INTO table (columns) VALUES (?, ...)`` as SQLAlchemy's compiler writes it."""
    compiled = insert(table).compile(dialect=dialect, column_keys=list(columns))
    if list(compiled.positiontup or ()) != list(columns):
        # Columns the compiler adds (a Python-side default not given) would need their
        # defaults run: not for this path.
        raise ValueError(f"{table.name}: an insert of {list(columns)} takes other columns")
    return str(compiled)


def bind_processors(
    table: Table, columns: Sequence[str], dialect: Dialect
) -> tuple[Callable[[Any], Any] | None, ...]:
    """Each column's bind processor for ``dialect`` (JSON to text, a UTC time to SQLite's
    text form ...), as SQLAlchemy applies them."""
    return tuple(table.c[c].type.dialect_impl(dialect).bind_processor(dialect) for c in columns)


def bound_row(
    values: Sequence[Any], processors: Sequence[Callable[[Any], Any] | None]
) -> tuple[Any, ...]:
    return tuple(v if p is None else p(v) for v, p in zip(values, processors, strict=True))
