"""The integrator: appends committed audit events to the Merkle log in batches.

Each run, in one transaction: take the events not yet in the log (oldest first), hash their
leaf bytes, store each leaf and every new perfect subtree hash, and sign a checkpoint for the
new size. Appending an event stays a plain insert in the action's own transaction, so the log
is never messaging's bottleneck; integration delay is the price, measured in bench/.

One process integrates at a time. Every server process runs ``run_integrator``; on PostgreSQL
each run first tries a transaction-scoped advisory lock and, if another process holds it,
skips this round rather than queue a pooled connection behind it. The lock lives exactly as
long as the integrating transaction, so nothing is left to expire when its process dies: a
process killed on this machine closes its connection and PostgreSQL rolls back, releasing the
lock, at once; a machine that vanishes from the network is let go of when its transaction
has been idle, or a statement has run, for ``HOLD_SECONDS``. The next process's round then
takes over, from the tree as the last committed run left it: a run that did not commit left
nothing, so there is no gap, and leaves and checkpoints are keyed by index and size, so two
runs can never both commit the same place (no fork). tests/server/test_multiprocess.py kills
an integrating server with SIGKILL to show it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import insert, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from protocol import checkpoint as notes
from protocol import merkle
from server.audit import repository as repo
from server.audit import transparency
from server.audit.models import AuditCheckpoint, AuditEvent, AuditLeaf, AuditNode
from server.audit.refusals import log_closed_refusals

log = logging.getLogger("attache.audit")
T = TypeVar("T")

BATCH = 10_000
# Longest a run may wait on one statement or between two before PostgreSQL ends it (and so
# frees the lock): far above a run's real work (a 10,000-event batch takes well under a
# second), short enough that a vanished holder is replaced within a minute.
HOLD_SECONDS = 30


def load_signer(path: Path, origin: str) -> notes.NoteSigner:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise ValueError(f"{path} is not an Ed25519 private key")
    return notes.NoteSigner(origin, key)


class NodeCache:
    """Perfect subtree hashes read from the database on demand, in O(log n) round trips.

    ``protocol.merkle`` asks for nodes through a synchronous ``get``; which nodes it asks for
    depends only on the sizes and indexes involved, so a dry run with placeholder hashes
    names them all, one query loads them, and the real run follows.
    """

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.known: dict[tuple[int, int], bytes] = {}

    async def run(self, compute: Callable[[Callable[[int, int], bytes]], T]) -> T:
        while True:
            missing: list[tuple[int, int]] = []
            result = compute(self._getter(missing))
            if not missing:
                return result
            loaded = await repo.nodes(self.session, missing)
            absent = set(missing) - set(loaded)
            if absent:
                raise LookupError(f"the log is missing tree nodes {sorted(absent)[:3]}")
            self.known.update(loaded)

    def _getter(self, missing: list[tuple[int, int]]) -> Callable[[int, int], bytes]:
        def get(level: int, index: int) -> bytes:
            found = self.known.get((level, index))
            if found is None:
                missing.append((level, index))
                return b"\x00" * 32  # a placeholder: this run's result is discarded
            return found

        return get

    def remember(self, new: Iterable[tuple[int, int, bytes]]) -> None:
        for level, index, digest in new:
            self.known[(level, index)] = digest


async def integrate(
    session: AsyncSession, signer: notes.NoteSigner, *, batch: int = BATCH, locked: bool = False
) -> AuditCheckpoint | None:
    """Append pending events to the log and sign a checkpoint; None when nothing was pending.

    Precondition: called inside a transaction that the caller commits; waits for the
    integrator's lock unless ``locked`` says this transaction holds it already.
    """
    if not locked:
        await repo.lock_integrator(session)
    # One place is kept for the batch's last leaf, the key directory (PROTOCOL.md §19).
    pending = await repo.pending_events(session, max(batch - 1, 1))
    if not pending:
        return None
    size = await repo.tree_size(session)
    events = [(int(row.id), str(row.body)) for row in pending]
    directory = await transparency.directory_event(
        session, size, transparency.key_events(size, [body for _, body in events])
    )
    session.add(directory)
    await session.flush()
    events.append((directory.id, directory.body))
    hashes = [merkle.leaf_hash(body.encode("utf-8")) for _, body in events]
    cache = NodeCache(session)
    new_nodes = await cache.run(lambda get: merkle.append_nodes(size, hashes, get))
    cache.remember(new_nodes)
    # Bulk statements (executemany), not one ORM object per row: a batch is 10,000 leaves.
    await session.execute(
        insert(AuditLeaf),
        [
            {"index": size + offset, "event_id": event_id, "leaf_hash": digest}
            for offset, ((event_id, _), digest) in enumerate(zip(events, hashes, strict=True))
        ],
    )
    await session.execute(
        update(AuditEvent),
        [
            {"id": event_id, "leaf_index": size + offset}
            for offset, (event_id, _) in enumerate(events)
        ],
    )
    await session.execute(
        insert(AuditNode), [{"level": lv, "index": ix, "hash": h} for lv, ix, h in new_nodes]
    )
    new_size = size + len(events)
    root = await cache.run(lambda get: merkle.root_from_nodes(new_size, get))
    body = notes.Checkpoint(origin=signer.name, size=new_size, root=root).body()
    checkpoint = AuditCheckpoint(size=new_size, root=root, note=notes.sign_note(body, signer))
    session.add(checkpoint)
    await session.flush()
    return checkpoint


async def run_integrator(
    sessionmaker: async_sessionmaker[AsyncSession],
    signer: notes.NoteSigner,
    interval: float,
    stop: asyncio.Event,
) -> None:
    """Integrate every ``interval`` seconds until ``stop`` is set, in the rounds no other
    process integrates; a failed run is logged and retried, since the events wait safely in
    their table."""
    # Who holds the lock, as PostgreSQL shows it (pg_stat_activity.application_name).
    holder = f"attache-integrator {os.getpid()}@{socket.gethostname()}"
    while not stop.is_set():
        try:
            async with sessionmaker() as session, session.begin():
                if await repo.claim_integrator(session, holder, HOLD_SECONDS):
                    # Counts of closed refusal windows first, so that this run integrates them.
                    await log_closed_refusals(session)
                    await integrate(session, signer, locked=True)
        except Exception:
            log.exception("audit integration failed; will retry")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
