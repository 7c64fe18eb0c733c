"""Group commit: units of work that arrive together share one transaction and one commit.

A busy channel's submits each did their own transaction (BEGIN, a lock, a read, two
inserts, COMMIT), and on SQLite each commit also waits for its fsync while holding the only
write lock. ``GroupCommit`` queues the works that arrive while a batch is being written and
writes them as the next batch: one transaction, the rows of all of them written together
(one INSERT per table for the rows they stage, ``server.db.engine.stage``), one commit.
Each work still lands with its audit event in that one transaction, and a caller is
answered only after the commit.

A work is a callable with a ``key``; two works with the same key never share a batch (the
second waits for the next), so a batch never races itself on a uniqueness it checks. A work
that refuses with a ``ServiceError`` gets its refusal, and the rest of the batch commits
without it (refusals that keep their changes, such as an audited deny, commit with the
batch). Anything unexpected rolls the batch back, and each of its works is then run again
alone, so that one work's failure is never another's.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.db.engine import AFTER_COMMIT, staged_count, write_staged
from server.errors import ServiceError

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

# The most works one transaction takes: bounds a batch's latency and its statement size.
BATCH_LIMIT = 64


class Work(Protocol[T_co]):
    @property
    def key(self) -> Hashable: ...

    async def __call__(self, session: AsyncSession, context: Any, /) -> T_co: ...


Prepare = Callable[[AsyncSession, Sequence[Any]], Awaitable[Any]]
Finish = Callable[[AsyncSession, Sequence[Any], Sequence[Any]], Awaitable[None]]


class _Unclean(Exception):
    """A work refused without keeping its changes, yet left changes in the session."""


@dataclass(slots=True)
class _Waiting:
    work: Any
    future: asyncio.Future[Any]


class GroupCommit(Generic[T]):
    """Runs works of one kind in shared transactions.

    ``prepare(session, works)`` runs first in each batch's transaction (take locks, read what
    every work needs in one query) and its result is each work's ``context``.
    ``finish(session, works, results)`` runs after the batch's rows are flushed and before
    the commit, with each work's result (or its ``ServiceError``), to register what happens
    once committed (``server.db.engine.after_commit``); those callbacks run in the order
    registered, after the commit and before any caller is answered.
    """

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        prepare: Prepare,
        finish: Finish | None = None,
        limit: int = BATCH_LIMIT,
        on_commit: Callable[[], object] | None = None,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._prepare = prepare
        self._finish = finish
        self._limit = limit
        self._on_commit = on_commit  # called once per transaction committed (the metrics)
        self._waiting: deque[_Waiting] = deque()
        self._leader: asyncio.Task[None] | None = None
        self.batches = 0  # transactions committed (for tests and the benchmark)
        self.works = 0

    async def run(self, work: Work[T]) -> T:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Waiting(work, future))
        if self._leader is None or self._leader.done():
            # The batch is written by a task of its own: a caller that goes away (its client
            # disconnected) does not cancel the others' transaction.
            self._leader = asyncio.create_task(self._lead())
        return await asyncio.shield(future)

    async def _lead(self) -> None:
        while self._waiting:
            batch: list[_Waiting] = []
            later: list[_Waiting] = []
            keys: set[Hashable] = set()
            while self._waiting and len(batch) < self._limit:
                waiting = self._waiting.popleft()
                if waiting.work.key in keys:
                    later.append(waiting)
                else:
                    keys.add(waiting.work.key)
                    batch.append(waiting)
            self._waiting.extendleft(reversed(later))
            await self._write(batch)

    async def _write(self, batch: list[_Waiting]) -> None:
        try:
            outcomes = await self._attempt([w.work for w in batch])
        except Exception as exc:
            if len(batch) == 1:
                outcomes = [exc]
            else:
                outcomes = []
                for waiting in batch:
                    try:
                        outcomes += await self._attempt([waiting.work])
                    except Exception as alone:
                        outcomes.append(alone)
        for waiting, outcome in zip(batch, outcomes, strict=True):
            if waiting.future.done():
                continue
            if isinstance(outcome, BaseException):
                waiting.future.set_exception(outcome)
            else:
                waiting.future.set_result(outcome)

    async def _attempt(self, works: list[Any]) -> list[Any]:
        async with self._sessionmaker() as session:
            try:
                with session.no_autoflush:
                    context = await self._prepare(session, works)
                    outcomes: list[Any] = []
                    for work in works:
                        before = _pending(session)
                        try:
                            outcomes.append(await work(session, context))
                        except ServiceError as exc:
                            if len(works) > 1 and _discards(exc) and _pending(session) != before:
                                raise _Unclean(
                                    f"{exc.__class__.__name__} left changes behind"
                                ) from exc
                            outcomes.append(exc)
                if len(works) == 1 and _discards(outcomes[0]):
                    await session.rollback()  # alone, a refusal that keeps nothing
                    return outcomes
                await write_staged(session)
                if session.new or session.dirty or session.deleted:
                    await session.flush()  # a refusal's kept event, before ``finish``
                if self._finish is not None:
                    await self._finish(session, works, outcomes)
                await session.commit()
            except BaseException:
                await session.rollback()
                raise
            self.batches += 1
            self.works += len(works)
            if self._on_commit is not None:
                self._on_commit()
            for callback in session.info.pop(AFTER_COMMIT, []):
                callback()
            return outcomes


def _discards(outcome: Any) -> bool:
    return isinstance(outcome, ServiceError) and not outcome.keep_changes


def _pending(session: AsyncSession) -> tuple[int, int, int, int]:
    return len(session.new), len(session.dirty), len(session.deleted), staged_count(session)
