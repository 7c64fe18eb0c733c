"""Async engine and session factory for SQLite (embedded) and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import orjson
from fastapi import Request
from sqlalchemy import event, insert, inspect, make_url, text
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction
from sqlalchemy.util import await_only

from server.db import sqlite
from server.errors import ServiceError


def json_text(value: Any) -> str:
    """The JSON columns' text: orjson's, where it can write the value (a fifteenth of
    json.dumps's time for an audit event's details, every message's busiest column), else
    the standard library's (keys that are not strings, integers beyond 64 bits, lone
    surrogates). Either is JSON that json.loads reads back as the same value. (Reading stays
    with json.loads: orjson reads an integer beyond 64 bits as a float.)"""
    try:
        return orjson.dumps(value).decode("utf-8")
    except TypeError:  # orjson.JSONEncodeError
        return json.dumps(value)


def create_engine(url: str) -> AsyncEngine:
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        # One writer at a time is SQLite's nature; wait for the lock instead of failing.
        kwargs["connect_args"] = {"timeout": 30}
        if make_url(url).get_driver_name() == "aiosqlite" and sqlite.supported():
            # A statement in one trip to aiosqlite's thread (server/db/sqlite.py).
            kwargs["module"] = sqlite.OneTripDBAPI()
    else:
        kwargs["pool_pre_ping"] = True
    # A failed statement's error leaves out its parameters (tokens' hashes, ciphertext),
    # since errors reach the logs (server/logs.py).
    engine = create_async_engine(
        url,
        hide_parameters=True,
        json_serializer=json_text,  # read back by json.loads, as before
        **kwargs,
    )
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit's WAL frames are on disk before the submit is answered, so an
            # accepted message survives a power loss (NORMAL would be faster and could lose
            # the last commits). docs/operations.md says what this trades.
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.close()

    return engine


def create_sessionmaker(
    engine: AsyncEngine, info: dict[str, Any] | None = None
) -> async_sessionmaker[AsyncSession]:
    """Sessions of a class of their own, so that listeners on it (the change log) hear this
    sessionmaker's transactions only; ``info`` is shared by every session it makes."""
    session_class = type("AppSession", (Session,), {})
    if engine.dialect.name == "sqlite":
        _serialise_writers(session_class)
    return async_sessionmaker(
        engine, expire_on_commit=False, sync_session_class=session_class, info=info
    )


# How long a writer waits for this process's other writers before leaving it to SQLite's own
# busy handler; a bound, so that a path that ever nested two writing sessions cannot deadlock.
WRITER_WAIT_SECONDS = 5.0
_WRITING = "attache.writing"


def _serialise_writers(session_class: type[Session]) -> None:
    """Let one transaction of this process write to SQLite at a time, queued in order.

    SQLite admits one writer; the others get SQLITE_BUSY and its busy handler retries after
    sleeping 1, 2, 5 ... 100 ms, so under concurrent submits a writer waits for the lock
    long after it was freed (hundreds of milliseconds at the tail). An asyncio lock, taken
    before a transaction's first write and released when it ends, hands the database over
    the moment the previous writer commits. Reads never take it (WAL readers do not block).
    """
    lock: asyncio.Lock | None = None

    def acquire(session: Session) -> None:
        nonlocal lock
        if session.info.get(_WRITING):
            return
        if lock is None:
            lock = asyncio.Lock()
        try:
            await_only(asyncio.wait_for(lock.acquire(), WRITER_WAIT_SECONDS))
        except TimeoutError:
            return  # left to SQLite's busy handler
        session.info[_WRITING] = lock

    session_class.claim_writer = staticmethod(acquire)  # type: ignore[attr-defined]

    @event.listens_for(session_class, "before_flush")
    def _flushing(session: Session, *_: Any) -> None:
        if session.new or session.dirty or session.deleted:
            acquire(session)

    @event.listens_for(session_class, "do_orm_execute")
    def _executing(state: ORMExecuteState) -> None:
        if state.is_insert or state.is_update or state.is_delete:
            acquire(state.session)

    @event.listens_for(session_class, "after_transaction_end")
    def _ended(session: Session, transaction: SessionTransaction) -> None:
        if transaction.parent is None:
            held = session.info.pop(_WRITING, None)
            if held is not None:
                held.release()


async def hold_writer(session: AsyncSession) -> None:
    """Take this process's SQLite write lock now, before the transaction's first write, so
    that a check-then-insert is not raced by another request of this process (a no-op where
    writers are not queued: PostgreSQL, which has locks of its own)."""
    claim = getattr(session.sync_session, "claim_writer", None)
    if claim is not None and not session.info.get(_WRITING):
        await session.run_sync(claim)


async def serialise(session: AsyncSession, *name: str) -> None:
    """Serialise the transactions that name the same thing until this one ends, so that a
    check-then-insert (a message id, a channel's name, a membership) is not raced: on
    PostgreSQL a transaction-scoped advisory lock on a hash of ``name``; on SQLite this
    process's writer lock (SQLite has one writer at a time anyway)."""
    await serialise_all(session, [name])


async def serialise_all(session: AsyncSession, names: Sequence[Sequence[str]]) -> None:
    """``serialise`` for several names at once, in one statement (a batch of submits)."""
    if session.get_bind().dialect.name == "postgresql":
        # In one order, so that two transactions locking overlapping sets cannot deadlock.
        keys = sorted({_lock_key(name) for name in names})
        connection = await session.connection()
        await connection.execute(_ADVISORY_LOCKS, {"keys": keys})
    else:
        await hold_writer(session)


_ADVISORY_LOCKS = text("SELECT pg_advisory_xact_lock(k) FROM unnest(CAST(:keys AS bigint[])) AS k")


def _lock_key(name: Sequence[str]) -> int:
    digest = hashlib.sha256("\x1f".join(("attache", *name)).encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


async def release_connection(session: AsyncSession) -> None:
    """End a transaction that has only read, so that its session holds no pooled connection
    while the request waits for work that needs one of its own (a group commit): as many
    waiting requests as the pool has connections would otherwise leave none for that work.
    The session stays usable; a later statement begins a new transaction."""
    if session.new or session.dirty or session.deleted or session.info.get(STAGED):
        raise RuntimeError("a session with changes cannot give its connection back")
    if session.in_transaction():
        await session.commit()


AFTER_COMMIT = "attache.after_commit"


def after_commit(session: AsyncSession, callback: Callable[[], None]) -> None:
    """Run ``callback`` once the request's transaction has committed (events, notifications);
    never for a transaction that rolled back."""
    session.info.setdefault(AFTER_COMMIT, []).append(callback)


STAGED = "attache.staged"
# Staged rows by (model, columns given, key read back): one INSERT each.
Shapes = dict[tuple[type, tuple[str, ...], bool], list[tuple[Any, dict[str, Any]]]]
WRITTEN = "attache.written"


def stage(session: AsyncSession, instance: Any, *, key_back: bool = True) -> None:
    """Add a new row to the transaction, to be written by ``write_staged`` with one Core
    INSERT per table for all the rows staged alike, instead of through the unit of work.

    For the hot path's append-only rows (messages, their audit events), whose flush through
    the ORM (identity map, state tracking, one row at a time) cost a fifth of the server's
    time per message. ``instance`` stays transient: its values are read as they are set, and
    a database-generated primary key is written back to it. Only rows that no delivery
    decision reads may be staged: the change log (``server.db.changes``) hears flushes only.
    Once written, the instances are listed in ``session.info[WRITTEN]`` for whoever counts
    them at commit (``server.metrics``). With ``key_back=False`` a database-generated primary
    key is not read back (no RETURNING: a plain many-row INSERT), for rows nobody reads
    through the instance again (an audit event, found later by its ``uid``).
    """
    session.info.setdefault(STAGED, []).append((instance, key_back))


def staged_count(session: AsyncSession) -> int:
    return len(session.info.get(STAGED, ()))


async def write_staged(session: AsyncSession) -> None:
    """Write the rows ``stage`` queued, in the order staged within each table.

    Through the session's connection, in Core: the ORM's execution path (its compile state,
    its events, its result set-up) cost more than the statements. On SQLite, through the
    driver in one trip (``_write_in_one_trip``), where Core's own execution path cost more
    again. The statements skip the session's hooks, so this process's SQLite writer lock is
    taken here.
    """
    staged: list[tuple[Any, bool]] | None = session.info.pop(STAGED, None)
    if not staged:
        return
    await hold_writer(session)
    connection = await session.connection()
    by_shape: Shapes = {}
    for instance, key_back in staged:
        model = type(instance)
        given = instance.__dict__
        values = {column: given[attr] for attr, column in columns_of(model) if attr in given}
        by_shape.setdefault((model, tuple(values), key_back), []).append((instance, values))
    if sqlite.one_trip(connection) and await _write_in_one_trip(connection, by_shape):
        session.info.setdefault(WRITTEN, []).extend(instance for instance, _ in staged)
        return
    for (model, _, key_back), rows in by_shape.items():
        table = model.__table__
        generated = table.autoincrement_column
        statement = insert(table)
        if generated is None or generated.key in rows[0][1] or not key_back:
            await connection.execute(statement, [values for _, values in rows])
            continue
        result = await connection.execute(
            statement.returning(generated, sort_by_parameter_order=True),
            [values for _, values in rows],
        )
        attr = inspect(model).get_property_by_column(generated).key
        for (instance, _), key in zip(rows, result.scalars(), strict=True):
            setattr(instance, attr, key)
    session.info.setdefault(WRITTEN, []).extend(instance for instance, _ in staged)


async def _write_in_one_trip(connection: AsyncConnection, by_shape: Shapes) -> bool:
    """``write_staged`` on SQLite: every table's rows in one trip to aiosqlite's thread
    (``server.db.sqlite.insert_in_one_trip``), a generated key read back as the row's rowid.
    False, having written nothing, when a shape is not for this path (a Python-side default
    not given, a generated key that is not the rowid): Core writes them all instead."""
    forms = [_one_trip_form(model, columns, connection.dialect) for model, columns, _ in by_shape]
    if None in forms:
        return False
    inserts: list[sqlite.Insert] = []
    keyed: list[tuple[list[tuple[Any, dict[str, Any]]], str | None]] = []
    for ((_, _, key_back), rows), form in zip(by_shape.items(), forms, strict=True):
        assert form is not None
        sql, processors, rowid_attr = form
        attr = rowid_attr if key_back else None
        bound = [sqlite.bound_row(tuple(values.values()), processors) for _, values in rows]
        inserts.append(sqlite.Insert(sql, bound, rowids=attr is not None))
        keyed.append((rows, attr))
    for (rows, attr), rowids in zip(
        keyed, await sqlite.insert_in_one_trip(connection, inserts), strict=True
    ):
        if attr is not None:
            for (instance, _), key in zip(rows, rowids, strict=True):
                setattr(instance, attr, key)
    return True


# A shape's SQL, its columns' bind processors, and the attribute a rowid is read back into.
OneTripForm = tuple[str, tuple[Any, ...], str | None]
_FORMS: dict[tuple[type, tuple[str, ...]], OneTripForm | None] = {}


def _one_trip_form(model: type, columns: tuple[str, ...], dialect: Any) -> OneTripForm | None:
    """A shape's ``OneTripForm``: the attribute is that of the model's generated INTEGER
    PRIMARY KEY when the rows do not give it. None for a shape that is not for the one-trip
    path. Kept per model and columns: every engine here is made by ``create_engine``, whose
    SQLite dialects bind alike (one JSON serializer)."""
    key = (model, columns)
    if key not in _FORMS:
        _FORMS[key] = _make_one_trip_form(model, columns, dialect)
    return _FORMS[key]


def _make_one_trip_form(model: type, columns: tuple[str, ...], dialect: Any) -> OneTripForm | None:
    table: Any = model.__table__  # type: ignore[attr-defined]
    generated = table.autoincrement_column
    rowid_attr: str | None = None
    if generated is not None and generated.key not in columns:
        if list(table.primary_key.columns) != [generated]:
            return None  # lastrowid would not be its key
        rowid_attr = inspect(model).get_property_by_column(generated).key
    try:
        sql = sqlite.insert_sql(table, columns, dialect)
    except ValueError:
        return None  # a Python-side default not given: Core runs it
    return sql, sqlite.bind_processors(table, columns, dialect), rowid_attr


_COLUMNS: dict[type, tuple[tuple[str, str], ...]] = {}


def columns_of(model: type) -> tuple[tuple[str, str], ...]:
    """(attribute, column key) of each of a model's columns."""
    found = _COLUMNS.get(model)
    if found is None:
        attrs: Any = inspect(model).column_attrs
        found = _COLUMNS[model] = tuple((a.key, a.columns[0].key) for a in attrs)
    return found


@contextlib.asynccontextmanager
async def unit_of_work(request: Request) -> AsyncIterator[AsyncSession]:
    """The request's unit of work: the only place that commits or rolls back.

    Committed when the block ends, before the response is sent: a client never sees success
    for a transaction that then failed to commit. A refusal that keeps its changes
    (``ServiceError.keep_changes``) commits them; anything else raised rolls back.
    """
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    session = sessionmaker()
    try:
        yield session
    except ServiceError as exc:
        if exc.keep_changes:
            await session.commit()
        else:
            await session.rollback()
        raise
    except BaseException:
        await session.rollback()
        raise
    else:
        await write_staged(session)
        if session.in_transaction() or session.new or session.dirty or session.deleted:
            await session.commit()
        # else nothing was read or written through a connection (a request served from
        # the caches): an empty transaction begun only to be committed would be the
        # session's whole cost.
        for callback in session.info.pop(AFTER_COMMIT, []):
            callback()
    finally:
        # A session that holds no connection and no instance has nothing to give back:
        # closing it (a trip through a greenlet to empty an empty identity map) cost as much
        # as the rest of a request served from the caches, the busiest kind.
        if session.in_transaction() or session.identity_map or session.new or session.deleted:
            await session.close()


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """``unit_of_work`` as a FastAPI dependency, used with ``scope="function"`` so that it
    commits before the response is sent."""
    async with unit_of_work(request) as session:
        yield session
