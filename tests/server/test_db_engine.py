"""The embedded database's writers queue in this process instead of polling SQLite's lock."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from server.db.engine import _WRITING
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
