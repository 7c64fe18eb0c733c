"""The integrator: appends committed audit events to the Merkle log in batches.

Each run, in one transaction: take the events not yet in the log (oldest first), hash their
leaf bytes, store each leaf and every new perfect subtree hash, and sign a checkpoint for the
new size. One process integrates at a time (an advisory lock on PostgreSQL). Appending an event
stays a plain insert in the action's own transaction, so the log is never messaging's
bottleneck; integration delay is the price, measured in bench/.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
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
from server.audit.models import AuditCheckpoint, AuditEvent, AuditLeaf, AuditNode
from server.audit.refusals import log_closed_refusals

log = logging.getLogger("attache.audit")
T = TypeVar("T")

BATCH = 10_000


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
    session: AsyncSession, signer: notes.NoteSigner, *, batch: int = BATCH
) -> AuditCheckpoint | None:
    """Append pending events to the log and sign a checkpoint; None when nothing was pending.

    Precondition: called inside a transaction that the caller commits.
    """
    await repo.lock_integrator(session)
    events = await repo.pending_events(session, batch)
    if not events:
        return None
    size = await repo.tree_size(session)
    hashes = [merkle.leaf_hash(event.body.encode("utf-8")) for event in events]
    cache = NodeCache(session)
    new_nodes = await cache.run(lambda get: merkle.append_nodes(size, hashes, get))
    cache.remember(new_nodes)
    # Bulk statements (executemany), not one ORM object per row: a batch is 10,000 leaves.
    await session.execute(
        insert(AuditLeaf),
        [
            {"index": size + offset, "event_id": event.id, "leaf_hash": digest}
            for offset, (event, digest) in enumerate(zip(events, hashes, strict=True))
        ],
    )
    await session.execute(
        update(AuditEvent),
        [{"id": event.id, "leaf_index": size + offset} for offset, event in enumerate(events)],
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
    """Integrate every ``interval`` seconds until ``stop`` is set; a failed run is logged and
    retried, since the events wait safely in their table."""
    while not stop.is_set():
        try:
            async with sessionmaker() as session, session.begin():
                # Counts of closed refusal windows first, so that this run integrates them.
                await log_closed_refusals(session)
                await integrate(session, signer)
        except Exception:
            log.exception("audit integration failed; will retry")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
