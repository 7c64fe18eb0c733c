"""Async engine and session factory for SQLite (embedded) and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import Request
from sqlalchemy import event
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session

from server.errors import ServiceError


def create_engine(url: str) -> AsyncEngine:
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        # One writer at a time is SQLite's nature; wait for the lock instead of failing.
        kwargs["connect_args"] = {"timeout": 30}
    else:
        kwargs["pool_pre_ping"] = True
    engine = create_async_engine(url, **kwargs)
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
    return async_sessionmaker(
        engine, expire_on_commit=False, sync_session_class=session_class, info=info
    )


AFTER_COMMIT = "attache.after_commit"


def after_commit(session: AsyncSession, callback: Callable[[], None]) -> None:
    """Run ``callback`` once the request's transaction has committed (events, notifications);
    never for a transaction that rolled back."""
    session.info.setdefault(AFTER_COMMIT, []).append(callback)


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """The request's unit of work: the only place that commits or rolls back.

    Used with ``scope="function"`` so the commit happens before the response is sent: a
    client never sees success for a transaction that then failed to commit.
    """
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    async with sessionmaker() as session:
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
            await session.commit()
            for callback in session.info.pop(AFTER_COMMIT, []):
                callback()
