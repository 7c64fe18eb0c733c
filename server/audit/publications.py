"""Coalition policy versions in the audit log: the proof that a published version's
``policy.publish`` leaf is in the tree of the latest checkpoint (PROTOCOL.md §18.6,
protocol/policy_log.py).

Witnesses cosign a checkpoint's origin, size and root, never extension lines, so a policy
version is bound to the log through its leaf: a client accepts a version only once this proof
verifies against the audit key it pinned and extends the checkpoint it holds. Not audited, as
a device's bundle is not: it reveals a public document's publication and tree hashes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from protocol import merkle
from protocol import policy_log as pl
from protocol.keys import b64u_encode as _b64u
from protocol.transparency import TransparencyError
from server.audit import repository as repo
from server.audit.integrator import NodeCache
from server.audit.leaves import parse_body
from server.audit.models import AuditCheckpoint
from server.audit.service import access_checkpoint
from server.audit.transparency import checkpoint_part
from server.errors import InvalidInput, NotFound, Unavailable


async def _publication_index(session: AsyncSession, policy_version: int, digest: str) -> int | None:
    """The leaf index of the publication of ``policy_version`` with ``digest`` (None while it
    waits for the integrator); NotFound when the log has none."""
    for row in await repo.events_about(session, [str(policy_version)], [pl.PUBLISH_ACTION]):
        try:
            found = pl.parse_publication(parse_body(row.body))
        except (TransparencyError, ValueError):
            continue  # a refusal (deny), or not an event: not this version's publication
        if found.policy_version == policy_version and found.digest == digest:
            return row.leaf_index
    raise NotFound(
        f"the audit log has no publication of coalition policy version {policy_version}",
        policy_version=policy_version,
    )


async def _checkpoint(
    session: AsyncSession, witnesses: Sequence[str], minimum: int | None
) -> AuditCheckpoint | None:
    """The latest checkpoint, or with ``witnesses`` (names) the latest that ``minimum`` of
    them (all when None) cosigned, or the latest when none is (for the client to name what is
    missing), as for a device's bundle. 422 for names or a minimum out of bounds."""
    if witnesses:
        try:
            return await access_checkpoint(session, None, witnesses, minimum)
        except NotFound:
            pass  # none cosigned so: the latest, whose cosignatures the client finds missing
    elif minimum is not None:
        raise InvalidInput("min_witnesses needs witness names", field="min_witnesses")
    return await repo.latest_checkpoint(session)


async def publication_proof(
    session: AsyncSession,
    policy_version: int,
    digest: str,
    old: int,
    witnesses: Sequence[str] = (),
    minimum: int | None = None,
) -> dict[str, Any]:
    """The proof that coalition policy ``policy_version`` of ``digest`` (b64u) is in the log:
    its ``policy.publish`` leaf with an inclusion proof at the latest checkpoint (with
    ``witnesses``, the latest that ``minimum`` of them cosigned), and that checkpoint's
    consistency proof from size ``old`` when 0 < old < its size.

    404 when the log has no publication of that version with that digest; 503 while its leaf
    is not yet in that checkpoint (the integrator's next batch, or the witnesses' next round,
    puts it there)."""
    index = await _publication_index(session, policy_version, digest)
    checkpoint = await _checkpoint(session, witnesses, minimum)
    if index is None or checkpoint is None or index >= checkpoint.size:
        where = "a checkpoint the witnesses named cosigned" if witnesses else "a checkpoint"
        raise Unavailable(
            f"the publication of coalition policy version {policy_version} is not in {where} "
            "yet; try again in a moment"
        )
    leaf = await repo.event_body_at(session, index)
    if leaf is None:
        raise NotFound(
            f"the publication of coalition policy version {policy_version} is gone from the "
            "audit log",
            policy_version=policy_version,
        )
    size = checkpoint.size
    nodes = NodeCache(session)
    proof = await nodes.run(lambda get: merkle.inclusion_proof(index, size, get))
    return {
        "policy_version": policy_version,
        "digest": digest,
        "checkpoint": await checkpoint_part(session, checkpoint, old, nodes),
        "publication": {"index": index, "leaf": leaf, "proof": [_b64u(p) for p in proof]},
    }
