"""Group commit (server/db/group.py): works that arrive together share one transaction, and
one work's refusal or failure is never another's."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.audit import log as audit
from server.audit.models import AuditEvent
from server.db.engine import after_commit, serialise_all
from server.db.group import GroupCommit
from server.directory import service as directory
from server.errors import InvalidInput, PermissionDenied
from tests.factories import World
from tests.race import Call, assert_no_server_error, describe, race
from tests.server.test_channels import REL_USA_GBR, _audience, _message, _three
from tests.server.test_rate_limits import _tighten


@dataclass(frozen=True)
class Record:
    """Records one audit event named ``name``; then, if told, fails in one of several ways."""

    name: str
    fail: str | None = None
    seen: list[str] | None = None

    @property
    def key(self) -> str:
        return self.name

    async def __call__(self, session: AsyncSession, stored: set[str]) -> str:
        if self.seen is not None:
            self.seen.append("stored" if self.name in stored else "new")
        if self.fail == "invalid":  # refused before changing anything
            raise InvalidInput(f"{self.name} is invalid")
        audit.record(
            session,
            actor=None,
            action="test.record",
            object_type="test",
            object_id=self.name,
            decision=audit.DENY if self.fail == "refused" else audit.ALLOW,
        )
        if self.fail == "refused":  # a refusal that keeps its deny event
            raise PermissionDenied(f"{self.name} is refused", keep_changes=True)
        if self.fail == "unclean":  # a refusal that (wrongly) left its change behind
            raise InvalidInput(f"{self.name} changed something, then refused")
        if self.fail == "crash":
            raise RuntimeError(f"{self.name} crashed")
        after_commit(session, lambda: published.append(self.name))
        return self.name


published: list[str] = []


async def _stored(session: AsyncSession, works: Sequence[Record]) -> set[str]:
    await serialise_all(session, [("test", w.name) for w in works])
    rows = await session.execute(
        select(AuditEvent.object_id).where(AuditEvent.object_id.in_([w.name for w in works]))
    )
    return set(rows.scalars())


async def _recorded(app: Any) -> dict[str, str]:
    async with app.state.sessionmaker() as session:
        rows = await session.execute(
            select(AuditEvent.object_id, AuditEvent.decision).where(
                AuditEvent.action == "test.record"
            )
        )
        return {object_id: decision for object_id, decision in rows}


@pytest.fixture
def group(app: Any) -> GroupCommit[str]:
    published.clear()
    return GroupCommit(app.state.sessionmaker, _stored)


async def test_works_that_arrive_together_share_one_commit(
    app: Any, group: GroupCommit[str]
) -> None:
    names = [f"w{i}" for i in range(6)]
    results = await asyncio.gather(*(group.run(Record(n)) for n in names))
    assert results == names
    assert (group.batches, group.works) == (1, 6)
    assert await _recorded(app) == dict.fromkeys(names, "allow")
    assert published == names  # after the commit, in order


async def test_a_refusal_or_a_crash_is_its_own_and_the_batch_commits(
    app: Any, group: GroupCommit[str]
) -> None:
    outcomes = await asyncio.gather(
        group.run(Record("ok1")),
        group.run(Record("bad", fail="invalid")),
        group.run(Record("denied", fail="refused")),
        group.run(Record("ok2")),
        return_exceptions=True,
    )
    assert outcomes[0] == "ok1"
    assert outcomes[3] == "ok2"
    assert isinstance(outcomes[1], InvalidInput)
    assert isinstance(outcomes[2], PermissionDenied)
    # The deny event commits with the batch; the invalid one left nothing.
    assert await _recorded(app) == {"ok1": "allow", "denied": "deny", "ok2": "allow"}
    assert group.batches == 1


async def test_a_crash_rolls_the_batch_back_and_the_others_commit_alone(
    app: Any, group: GroupCommit[str]
) -> None:
    outcomes = await asyncio.gather(
        group.run(Record("ok1")),
        group.run(Record("boom", fail="crash")),
        group.run(Record("messy", fail="unclean")),
        group.run(Record("ok2")),
        return_exceptions=True,
    )
    assert outcomes[0] == "ok1"
    assert outcomes[3] == "ok2"
    assert isinstance(outcomes[1], RuntimeError)
    assert isinstance(outcomes[2], InvalidInput)
    # Nothing of the crashed or the unclean work was committed; the others were, once each.
    assert await _recorded(app) == {"ok1": "allow", "ok2": "allow"}
    assert sorted(published) == ["ok1", "ok2"]


async def test_works_with_one_key_never_share_a_batch(app: Any, group: GroupCommit[str]) -> None:
    seen: list[str] = []
    await asyncio.gather(*(group.run(Record("same", seen=seen)) for _ in range(3)))
    # Each later work ran in a batch of its own and saw what the earlier one committed.
    assert seen == ["new", "stored", "stored"]
    assert group.batches == 3


async def test_a_caller_that_goes_away_does_not_cancel_the_batch(
    app: Any, group: GroupCommit[str]
) -> None:
    leaving = asyncio.create_task(group.run(Record("left")))
    staying = asyncio.create_task(group.run(Record("stayed")))
    await asyncio.sleep(0)
    leaving.cancel()
    assert await staying == "stayed"
    with pytest.raises(asyncio.CancelledError):
        await leaving
    assert await _recorded(app) == {"left": "allow", "stayed": "allow"}


async def test_a_refusal_that_left_changes_is_run_again_alone(
    app: Any, group: GroupCommit[str]
) -> None:
    outcomes = await asyncio.gather(
        group.run(Record("ok1")),
        group.run(Record("messy", fail="unclean")),
        group.run(Record("ok2")),
        return_exceptions=True,
    )
    assert outcomes[0] == "ok1"
    assert outcomes[2] == "ok2"
    assert isinstance(outcomes[1], InvalidInput)
    assert await _recorded(app) == {"ok1": "allow", "ok2": "allow"}
    assert group.batches == 2  # ok1 and ok2, each alone after the batch was rolled back


async def test_submits_waiting_for_a_group_hold_no_database_connection(
    world: World, live_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # More submits at once than the pool has connections (5 + 10 overflow), each request
    # reading the database before it joins a group (the catalog is re-read once it is older
    # than CATALOG_MAX_AGE): a request that held its connection while it waited would leave
    # none for the group. A fifth of a second, not the shipped second, so that waiting for
    # the catalog to age costs the test 0.4 s rather than 2.4.
    max_age = 0.2
    monkeypatch.setattr(directory, "CATALOG_MAX_AGE", max_age)
    t = await _three(world)
    _tighten(world.app, submit_burst=1000, submit_per_minute=100_000)
    audience, key, audience_id = await _audience(t.usa, t.id, [t.usa, t.gbr])
    await t.usa.client.create_audience("liaison", audience)
    bodies = [_message(t.usa, t.id, audience_id, key, REL_USA_GBR) for _ in range(8)]
    bearer = {"Authorization": f"Bearer {t.usa.client.token}"}
    calls = [
        Call("POST", "/v1/channels/liaison/messages", json=bodies[i % 8], headers=bearer)
        for i in range(24)
    ]
    await asyncio.sleep(max_age + 0.2)
    responses = await race(live_url, calls, timeout=20)
    assert_no_server_error(responses)
    assert sorted(r.status_code for r in responses) == [200] * 16 + [201] * 8, describe(responses)
    await asyncio.sleep(max_age + 0.2)
    again = await race(live_url, calls, timeout=20)
    assert [r.status_code for r in again] == [200] * 24, describe(again)
