"""SQL for the audit log. Repositories never commit."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, and_, delete, func, or_, select, text
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from server.audit.leaves import COALITION_WIDE
from server.audit.models import (
    AuditCheckpoint,
    AuditCosignature,
    AuditEvent,
    AuditLeaf,
    AuditNode,
    AuditRefusal,
    KeyDirectoryEntry,
)
from server.db.engine import hold_writer


async def lock_integrator(session: AsyncSession) -> None:
    """One integrator at a time across processes: a PostgreSQL transaction-scoped advisory
    lock, waited for. On SQLite, this process's writer lock, taken before anything is read:
    SQLite serialises writes, not a transaction's reads before its first write, so two
    integrations (the background one and one a caller runs) could both read the same
    pending events and key directory and both write them (a UNIQUE failure on
    key_directory.device_id in CI)."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(hashtext('attache-audit'))"))
    else:
        await hold_writer(session)


async def claim_integrator(session: AsyncSession, holder: str, bound_seconds: int) -> bool:
    """Take the integrator's lock if no other transaction holds it, without waiting; on
    PostgreSQL also name this transaction ``holder`` (pg_stat_activity.application_name) and
    bound its statements and its idle moments to ``bound_seconds``, so that a holder whose
    process or machine is gone lets go within that time. True on SQLite."""
    if session.get_bind().dialect.name != "postgresql":
        await hold_writer(session)  # as lock_integrator: before anything is read
        return True
    try_lock = "SELECT pg_try_advisory_xact_lock(hashtext('attache-audit'))"
    taken = await session.scalar(text(try_lock))
    if not taken:
        return False
    await session.execute(
        text(
            "SELECT set_config('application_name', :holder, true),"
            " set_config('statement_timeout', :bound, true),"
            " set_config('idle_in_transaction_session_timeout', :bound, true)"
        ),
        {"holder": holder[:63], "bound": f"{int(bound_seconds)}s"},
    )
    return True


async def pending_events(session: AsyncSession, limit: int) -> Sequence[Row[int, str]]:
    """(id, body) of the events not yet in the log, oldest first."""
    stmt = (
        select(AuditEvent.id, AuditEvent.body)
        .where(AuditEvent.leaf_index.is_(None))
        .order_by(AuditEvent.id)
        .limit(limit)
    )
    return (await session.execute(stmt)).all()


async def latest_checkpoint(session: AsyncSession) -> AuditCheckpoint | None:
    stmt = select(AuditCheckpoint).order_by(AuditCheckpoint.size.desc()).limit(1)
    return (await session.execute(stmt)).scalar_one_or_none()


async def checkpoint_at(session: AsyncSession, size: int) -> AuditCheckpoint | None:
    return await session.get(AuditCheckpoint, size)


async def tree_size(session: AsyncSession) -> int:
    count = (await session.execute(select(func.max(AuditLeaf.index)))).scalar_one()
    return 0 if count is None else int(count) + 1


async def nodes(
    session: AsyncSession, wanted: Iterable[tuple[int, int]]
) -> dict[tuple[int, int], bytes]:
    """The perfect subtree hashes asked for, in one query that walks the primary key: one
    ``level = L AND index IN (...)`` clause per level (a row-value IN is not indexed on SQLite).
    """
    by_level: dict[int, set[int]] = {}
    for level, index in wanted:
        by_level.setdefault(level, set()).add(index)
    if not by_level:
        return {}
    stmt = select(AuditNode.level, AuditNode.index, AuditNode.hash).where(
        or_(
            *(
                and_(AuditNode.level == level, AuditNode.index.in_(sorted(indexes)))
                for level, indexes in by_level.items()
            )
        )
    )
    return {
        (int(level), int(index)): bytes(digest)
        for level, index, digest in await session.execute(stmt)
    }


async def leaves(session: AsyncSession, start: int, end: int) -> Sequence[Any]:
    """Leaves [start, end): plain rows of ``leaf_index``, ``leaf_hash``, ``id`` (None where the
    event row has gone), ``body`` and the event's index columns (``channel_id`` from its
    details), which an auditor checks against the body. Not ORM objects: a full audit reads
    every leaf."""
    stmt = (
        select(
            AuditLeaf.index.label("leaf_index"),
            AuditLeaf.leaf_hash,
            AuditEvent.id,
            AuditEvent.body,
            AuditEvent.uid,
            AuditEvent.time,
            AuditEvent.action,
            AuditEvent.decision,
            AuditEvent.actor_user_id,
            AuditEvent.actor_nation,
            AuditEvent.object_id,
            AuditEvent.subject_nation,
            AuditEvent.label_banner,
            AuditEvent.details["channel_id"].as_string().label("channel_id"),
        )
        .outerjoin(AuditEvent, AuditEvent.id == AuditLeaf.event_id)
        .where(AuditLeaf.index >= start, AuditLeaf.index < end)
        .order_by(AuditLeaf.index)
    )
    return (await session.execute(stmt)).all()


async def leaf_of_event(session: AsyncSession, event_id: int) -> AuditLeaf | None:
    stmt = select(AuditLeaf).where(AuditLeaf.event_id == event_id)
    return (await session.execute(stmt)).scalar_one_or_none()


async def query_events(
    session: AsyncSession,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    actor: str | None = None,
    nation: str | None = None,
    scope_nation: str | None = None,
    container: str | None = None,
    action: str | None = None,
    exclude_action: str | None = None,
    decision: str | None = None,
    label: str | None = None,
    after_id: int = 0,
    limit: int = 100,
) -> Sequence[AuditEvent]:
    stmt = select(AuditEvent).where(AuditEvent.id > after_id).order_by(AuditEvent.id).limit(limit)
    if since is not None:
        stmt = stmt.where(AuditEvent.time >= since)
    if until is not None:
        stmt = stmt.where(AuditEvent.time < until)
    if actor is not None:
        stmt = stmt.where(AuditEvent.actor_user_id == actor)
    if nation is not None:
        stmt = stmt.where(
            (AuditEvent.actor_nation == nation) | (AuditEvent.subject_nation == nation)
        )
    if scope_nation is not None:
        stmt = stmt.where(
            (AuditEvent.actor_nation == scope_nation)
            | (AuditEvent.subject_nation == scope_nation)
            | AuditEvent.action.in_(sorted(COALITION_WIDE))
        )
    if container is not None:
        stmt = stmt.where(
            (AuditEvent.object_id == container)
            | (AuditEvent.details["channel_id"].as_string() == container)
        )
    if action is not None:
        stmt = stmt.where(AuditEvent.action == action)
    if exclude_action is not None:
        stmt = stmt.where(AuditEvent.action != exclude_action)
    if decision is not None:
        stmt = stmt.where(AuditEvent.decision == decision)
    if label is not None:
        stmt = stmt.where(AuditEvent.label_banner == label)
    return (await session.execute(stmt)).scalars().all()


async def events_about(
    session: AsyncSession, object_ids: Sequence[str], actions: Sequence[str]
) -> Sequence[AuditEvent]:
    """The events of ``actions`` about any of ``object_ids``, oldest first."""
    if not object_ids:
        return []
    stmt = (
        select(AuditEvent)
        .where(AuditEvent.object_id.in_(object_ids), AuditEvent.action.in_(actions))
        .order_by(AuditEvent.id)
    )
    return (await session.execute(stmt)).scalars().all()


def _insert(session: AsyncSession) -> Any:
    dialect = session.get_bind().dialect.name
    return sqlite_insert if dialect == "sqlite" else postgresql_insert


async def count_refusal(
    session: AsyncSession,
    *,
    key: str,
    now: datetime,
    window_open_since: datetime,
    first_event_uid: str,
    event: dict[str, Any],
) -> int | None:
    """Count one refusal under ``key`` in one atomic statement: open a window (returns 1),
    count it in the open window (returns the count so far), or None if the window under
    ``key`` is closed (opened before ``window_open_since``) and must be closed first."""
    stmt = (
        _insert(session)(AuditRefusal)
        .values(
            key=key,
            window_start=now,
            last_at=now,
            count=1,
            first_event_uid=first_event_uid,
            event=event,
        )
        .on_conflict_do_update(
            index_elements=[AuditRefusal.key],
            set_={"count": AuditRefusal.count + 1, "last_at": now},
            where=AuditRefusal.window_start > window_open_since,
        )
        .returning(AuditRefusal.count)
    )
    count = (await session.execute(stmt)).scalar_one_or_none()
    return None if count is None else int(count)


async def closed_refusals(
    session: AsyncSession, window_open_since: datetime
) -> Sequence[AuditRefusal]:
    stmt = (
        select(AuditRefusal)
        .where(AuditRefusal.window_start <= window_open_since)
        .order_by(AuditRefusal.window_start)
        .execution_options(populate_existing=True)
    )
    return (await session.execute(stmt)).scalars().all()


async def get_refusal(session: AsyncSession, key: str) -> AuditRefusal | None:
    stmt = (
        select(AuditRefusal)
        .where(AuditRefusal.key == key)
        .execution_options(populate_existing=True)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def take_closed_refusal(session: AsyncSession, seen: AuditRefusal) -> bool:
    """Delete the window ``seen`` if it is still exactly as seen (no refusal counted since);
    False if another transaction counted or took it meanwhile. Whoever deletes it logs it."""
    result = await session.execute(
        delete(AuditRefusal)
        .where(
            AuditRefusal.key == seen.key,
            AuditRefusal.window_start == seen.window_start,
            AuditRefusal.count == seen.count,
        )
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))


async def pending_summary(session: AsyncSession) -> tuple[int, datetime | None]:
    """How many events wait to enter the log, and when the oldest of them was written."""
    stmt = select(func.count(), func.min(AuditEvent.time)).where(AuditEvent.leaf_index.is_(None))
    count, oldest = (await session.execute(stmt)).one()
    return int(count), oldest


async def cosignatures(session: AsyncSession, size: int) -> Sequence[AuditCosignature]:
    """The witnesses' cosignatures of the checkpoint of ``size``, in the order they came."""
    stmt = (
        select(AuditCosignature)
        .where(AuditCosignature.size == size)
        .order_by(AuditCosignature.created_at, AuditCosignature.witness, AuditCosignature.key_id)
    )
    return (await session.execute(stmt)).scalars().all()


async def cosignature(
    session: AsyncSession, size: int, witness: str, key_id: str
) -> AuditCosignature | None:
    stmt = (
        select(AuditCosignature)
        .where(
            AuditCosignature.size == size,
            AuditCosignature.witness == witness,
            AuditCosignature.key_id == key_id,
        )
        .execution_options(populate_existing=True)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def count_cosignatures(session: AsyncSession, size: int) -> int:
    stmt = select(func.count()).where(AuditCosignature.size == size)
    return int((await session.execute(stmt)).scalar_one())


async def add_cosignature(
    session: AsyncSession,
    *,
    size: int,
    witness: str,
    key_id: str,
    timestamp: int,
    line: str,
    vkey: str,
    now: datetime,
) -> bool:
    """Store a cosignature unless this witness key already has one for this checkpoint, in one
    statement (concurrent posts of it store it once); True if this call stored it."""
    stmt = (
        _insert(session)(AuditCosignature)
        .values(
            size=size,
            witness=witness,
            key_id=key_id,
            timestamp=timestamp,
            line=line,
            vkey=vkey,
            created_at=now,
        )
        .on_conflict_do_nothing(
            index_elements=[
                AuditCosignature.size,
                AuditCosignature.witness,
                AuditCosignature.key_id,
            ]
        )
        .returning(AuditCosignature.size)
    )
    return (await session.execute(stmt)).scalar_one_or_none() is not None


async def latest_cosigned_size(
    session: AsyncSession, witnesses: Sequence[str], minimum: int
) -> int | None:
    """The largest checkpoint size that ``minimum`` of the named witnesses cosigned."""
    stmt = (
        select(AuditCosignature.size)
        .where(AuditCosignature.witness.in_(list(witnesses)))
        .group_by(AuditCosignature.size)
        .having(func.count(func.distinct(AuditCosignature.witness)) >= minimum)
        .order_by(AuditCosignature.size.desc())
        .limit(1)
    )
    found = (await session.execute(stmt)).scalar_one_or_none()
    return None if found is None else int(found)


async def event_body_at(session: AsyncSession, index: int) -> str | None:
    """The body of the event integrated at leaf ``index`` (None if none is, or its row is gone)."""
    stmt = select(AuditEvent.body).where(AuditEvent.leaf_index == index)
    return (await session.execute(stmt)).scalar_one_or_none()


async def integrated_events_of(
    session: AsyncSession, actions: Iterable[str]
) -> Sequence[Row[int | None, str]]:
    """(leaf index, body) of every integrated event of ``actions``, in log order."""
    stmt = (
        select(AuditEvent.leaf_index, AuditEvent.body)
        .where(AuditEvent.action.in_(list(actions)), AuditEvent.leaf_index.is_not(None))
        .order_by(AuditEvent.leaf_index)
    )
    return (await session.execute(stmt)).all()


async def directory_bodies(session: AsyncSession, devices: Iterable[str]) -> Sequence[str]:
    """The key directory entries (their bodies) of ``devices`` that exist."""
    wanted = sorted(set(devices))
    if not wanted:
        return []
    stmt = select(KeyDirectoryEntry.body).where(KeyDirectoryEntry.device_id.in_(wanted))
    return (await session.execute(stmt)).scalars().all()


async def put_directory_entry(
    session: AsyncSession, device_id: str, body: str, leaf_hash: bytes
) -> None:
    """Write a device's key directory entry, replacing the one it had."""
    await session.merge(KeyDirectoryEntry(device_id=device_id, body=body, leaf_hash=leaf_hash))


async def clear_directory(session: AsyncSession) -> None:
    await session.execute(delete(KeyDirectoryEntry))


async def directory_hashes(session: AsyncSession) -> Sequence[Row[str, bytes]]:
    """(device id, leaf hash) of every key directory entry, in no particular order (callers
    sort by device id themselves: a database's collation need not be code point order)."""
    stmt = select(KeyDirectoryEntry.device_id, KeyDirectoryEntry.leaf_hash)
    return (await session.execute(stmt)).all()


async def directory_rows(session: AsyncSession) -> Sequence[Row[str, str, bytes]]:
    """(device id, body, leaf hash) of every key directory entry, in no particular order."""
    stmt = select(KeyDirectoryEntry.device_id, KeyDirectoryEntry.body, KeyDirectoryEntry.leaf_hash)
    return (await session.execute(stmt)).all()
