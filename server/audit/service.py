"""Auditors' access to the log: queries, leaves, checkpoints and proofs. Every read is itself
an audit event, one per query, kept out of other queries' results unless asked for.

An auditor without a nationality sees every event; an auditor of a nation sees the events
whose actor or subject is of that nation, and the coalition's (a policy version's
publication, which is public anyway), and only the leaf hashes of the others (enough to
recompute the tree, nothing of what happened).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from protocol import merkle
from protocol.checkpoint import CheckpointError, split_note
from protocol.cosignature import Cosignature, CosignatureVerifier
from server.audit import log as audit
from server.audit import repository as repo
from server.audit.integrator import NodeCache
from server.audit.leaves import COALITION_WIDE, matches, parse_body, row_index
from server.audit.models import AuditCheckpoint, AuditCosignature, AuditEvent
from server.auth.principal import ROLE_AUDITOR, Principal
from server.db.base import utcnow
from server.errors import Conflict, InvalidInput, NotFound, PermissionDenied

MAX_LEAVES = 10_000

logger = logging.getLogger(__name__)


def check_auditor(principal: Principal) -> str | None:
    """The nation an auditor is scoped to (None: all nations)."""
    if not principal.has_role(ROLE_AUDITOR):
        raise PermissionDenied("only auditors read the audit log")
    return principal.user.nationality


class _Nations(Protocol):
    action: str
    actor_nation: str | None
    subject_nation: str | None


def visible(event: _Nations, scope: str | None) -> bool:
    """Whether an auditor scoped to ``scope`` sees the event: one of its nation's, or one of
    the coalition's (COALITION_WIDE: a policy version's publication)."""
    return (
        scope is None
        or scope in (event.actor_nation, event.subject_nation)
        or event.action in COALITION_WIDE
    )


# Reads of the log are audited like anything else, but kept out of other queries' results:
# otherwise every page of an export would return the read event of the page before, and an
# export would chase its own tail (issue 9).
READ_ACTION = "audit.read"


def _record_read(
    session: AsyncSession,
    principal: Principal,
    what: str,
    query: dict[str, Any],
    *,
    returned: int | None = None,
) -> None:
    """One event per query: what was asked (the filters given) and how much came back."""
    details: dict[str, Any] = {"query": {k: v for k, v in query.items() if v is not None}}
    if returned is not None:
        details["returned"] = returned
    audit.record(
        session,
        actor=principal.actor,
        action=READ_ACTION,
        object_type="audit_log",
        object_id=what,
        subject_nation=principal.user.nationality,
        details=details,
    )


def _query_value(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _leaf_matches(body: str, **filters: Any) -> bool:
    try:
        return matches(parse_body(body), **filters)
    except ValueError:
        return False


async def query_events(
    session: AsyncSession, principal: Principal, *, after_id: int, limit: int, **filters: Any
) -> tuple[list[AuditEvent], int]:
    """Events matching ``filters``, and the cursor to continue after; reads of the log only
    when asked for by action.

    The index columns find candidates; each is kept only if its leaf, what the log commits to
    and what is served, matches too. An edited column can then hide an event from a query
    (which a verification names) but never make a query return an event its leaf does not
    match, nor show a nation-scoped auditor another nation's event."""
    scope = check_auditor(principal)
    exclude = READ_ACTION if filters.get("action") is None else None
    found: list[AuditEvent] = []
    cursor = after_id
    while len(found) < limit:
        asked = limit - len(found)
        rows = await repo.query_events(
            session,
            scope_nation=scope,
            exclude_action=exclude,
            after_id=cursor,
            limit=asked,
            **filters,
        )
        for event in rows:
            if _leaf_matches(event.body, scope_nation=scope, exclude_action=exclude, **filters):
                found.append(event)
            else:
                logger.warning(
                    "audit event %s: its index columns differ from its leaf; left out of a query",
                    event.id,
                )
        if len(rows) < asked:
            break
        cursor = rows[-1].id
    _record_read(
        session,
        principal,
        "events",
        {
            **{k: _query_value(v) for k, v in filters.items()},
            "after_id": after_id,
            "limit": limit,
        },
        returned=len(found),
    )
    return found, found[-1].id if found else after_id


@dataclass(frozen=True)
class LeafView:
    index: int
    leaf_hash: bytes
    status: str  # shown | out-of-scope | missing (the event row is gone)
    data: str | None  # the leaf: the event row's body as it is now
    columns: dict[str, Any] | None = None  # the row's index columns, to check against data
    event_id: int | None = None  # the row's id, for shown leaves


def _leaf_visible(body: str, scope: str | None) -> bool:
    """Whether the leaf itself is of the auditor's nation: the columns that said so may have
    been edited. Parsed only for nation-scoped auditors."""
    return scope is None or _leaf_matches(body, scope_nation=scope)


async def leaves(
    session: AsyncSession, principal: Principal, start: int, end: int
) -> tuple[list[LeafView], AuditCheckpoint | None]:
    scope = check_auditor(principal)
    if start < 0 or end <= start or end - start > MAX_LEAVES:
        raise InvalidInput(f"ask for 1 to {MAX_LEAVES} leaves, start < end", field="end")
    checkpoint = await repo.latest_checkpoint(session)
    rows = await repo.leaves(session, start, end)
    views = []
    for row in rows:
        if row.id is None:
            views.append(LeafView(row.leaf_index, row.leaf_hash, "missing", None))
        elif not visible(row, scope) or not _leaf_visible(row.body, scope):
            views.append(LeafView(row.leaf_index, row.leaf_hash, "out-of-scope", None))
        else:
            columns = row_index(row, row.channel_id)
            views.append(
                LeafView(row.leaf_index, row.leaf_hash, "shown", row.body, columns, row.id)
            )
    _record_read(session, principal, "leaves", {"start": start, "end": end}, returned=len(views))
    return views, checkpoint


async def latest_checkpoint(session: AsyncSession) -> AuditCheckpoint:
    checkpoint = await repo.latest_checkpoint(session)
    if checkpoint is None:
        raise NotFound("the audit log has no checkpoint yet")
    return checkpoint


async def access_checkpoint(
    session: AsyncSession,
    size: int | None,
    witnesses: Sequence[str] = (),
    minimum: int | None = None,
) -> AuditCheckpoint:
    """The checkpoint of ``size``; with ``witnesses`` (names), the latest that ``minimum`` of
    them cosigned (all when None); else the latest. 404 naming what was asked otherwise.

    The witnesses run on their own schedule, so the latest checkpoint is often not cosigned
    yet; an auditor requiring them asks for the latest that is (and checks it itself)."""
    if witnesses:
        if size is not None:
            raise InvalidInput("ask for a size or for witnesses, not both", field="size")
        names = sorted(set(witnesses))
        if len(names) > MAX_COSIGNATURES:
            raise InvalidInput(f"name at most {MAX_COSIGNATURES} witnesses", field="witness")
        wanted = len(names) if minimum is None else minimum
        if not 1 <= wanted <= len(names):
            raise InvalidInput(
                f"min_witnesses must be between 1 and the {len(names)} witnesses named",
                field="min_witnesses",
            )
        size = await repo.latest_cosigned_size(session, names, wanted)
        if size is None:
            raise NotFound(
                f"no checkpoint is cosigned by {wanted} of the witnesses named",
                witness=names,
            )
    elif minimum is not None:
        raise InvalidInput("min_witnesses needs witness names", field="min_witnesses")
    if size is None:
        return await latest_checkpoint(session)
    checkpoint = await repo.checkpoint_at(session, size)
    if checkpoint is None:
        raise NotFound(f"no checkpoint of size {size}", size=size)
    return checkpoint


async def cosigned_note(session: AsyncSession, checkpoint: AuditCheckpoint) -> str:
    """The checkpoint's signed note with its witnesses' cosignatures as further signature
    lines (C2SP tlog-cosignature): what auditors and witnesses are served."""
    rows = await repo.cosignatures(session, checkpoint.size)
    return checkpoint.note + "".join(row.line for row in rows)


async def witness_view(
    session: AsyncSession, principal: Principal, old: int
) -> tuple[AuditCheckpoint, str, list[bytes]]:
    """The latest checkpoint, its cosigned note, and the RFC 9162 consistency proof from
    ``old`` (the size a witness cosigned last) to it; no proof when ``old`` is 0 or not below
    the latest size (the witness then refuses or needs none).

    Not audited: it reveals tree hashes only, and a witness polls; recording each poll would
    make the log grow by one leaf per poll, for ever."""
    check_auditor(principal)
    checkpoint = await latest_checkpoint(session)
    proof: list[bytes] = []
    if 0 < old < checkpoint.size:
        size = checkpoint.size
        proof = await NodeCache(session).run(lambda get: merkle.consistency_proof(old, size, get))
    return checkpoint, await cosigned_note(session, checkpoint), proof


#: Witnesses' cosignatures kept per checkpoint: with the log's own signature, well within a
#: note's 100 signature lines (protocol.checkpoint.MAX_SIGNATURES).
MAX_COSIGNATURES = 64
#: A cosignature's time may be this far ahead of the server's clock (clocks drift); further
#: ahead it is refused, as C2SP allows.
COSIGNATURE_SKEW_SECONDS = 300


async def do_add_cosignature(
    session: AsyncSession, principal: Principal, size: int, vkey: str, line: str
) -> tuple[AuditCosignature, bool]:
    """Store a witness's cosignature of the checkpoint of ``size``; (the stored one, whether
    this call stored it). Idempotent per witness key and checkpoint: the first cosignature
    that verifies stands, and a later one (another time) returns it.

    Preconditions checked here: the caller is an auditor; ``vkey`` is a witness key (type
    0x04); ``line`` is one cosignature line under that key's name and key id, not in the
    future, that verifies over the checkpoint's text; fewer than MAX_COSIGNATURES witnesses
    cosigned that checkpoint. The server checks the signature so as to serve only
    cosignatures that verify; auditors check them again against the keys they pinned."""
    check_auditor(principal)
    try:
        verifier = CosignatureVerifier.from_vkey(vkey)
    except CheckpointError as exc:
        raise InvalidInput(f"vkey: {exc}", field="vkey") from exc
    try:
        cosignature = Cosignature.parse_line(line)
    except CheckpointError as exc:
        raise InvalidInput(f"cosignature: {exc}", field="cosignature") from exc
    if not verifier.matches(cosignature):
        raise InvalidInput(
            "the cosignature's name and key id are not those of the witness key given",
            field="cosignature",
        )
    checkpoint = await access_checkpoint(session, size)
    now = utcnow()
    if cosignature.timestamp > now.timestamp() + COSIGNATURE_SKEW_SECONDS:
        raise InvalidInput(
            f"the cosignature's time {cosignature.timestamp} is in the future", field="cosignature"
        )
    body, _ = split_note(checkpoint.note)
    if not verifier.verify(body, cosignature):
        raise InvalidInput(
            f"the cosignature does not verify over the checkpoint of size {size} with the "
            "witness key given",
            field="cosignature",
        )
    key_id = verifier.key_id.hex()
    existing = await repo.cosignature(session, size, verifier.name, key_id)
    if existing is not None:
        return existing, False
    if await repo.count_cosignatures(session, size) >= MAX_COSIGNATURES:
        raise Conflict(
            f"the checkpoint of size {size} already has {MAX_COSIGNATURES} cosignatures",
            size=size,
        )
    created = await repo.add_cosignature(
        session,
        size=size,
        witness=verifier.name,
        key_id=key_id,
        timestamp=cosignature.timestamp,
        line=cosignature.line(),
        vkey=verifier.vkey(),
        now=now,
    )
    stored = await repo.cosignature(session, size, verifier.name, key_id)
    assert stored is not None  # just stored, or stored by a concurrent post
    if created:
        logger.info("witness %s cosigned the checkpoint of size %s", verifier.name, size)
    return stored, created


async def _size(session: AsyncSession, size: int | None) -> int:
    latest = await latest_checkpoint(session)
    if size is None:
        return latest.size
    if size < 1 or size > latest.size or await repo.checkpoint_at(session, size) is None:
        raise NotFound(f"no checkpoint of size {size}", size=size)
    return size


async def inclusion(
    session: AsyncSession, principal: Principal, event_id: int, size: int | None
) -> tuple[int, int, bytes, list[bytes]]:
    """(index, tree size, leaf hash, proof) for an event the auditor may see."""
    scope = check_auditor(principal)
    tree_size = await _size(session, size)
    event = await session.get(AuditEvent, event_id)
    leaf = await repo.leaf_of_event(session, event_id)
    if (
        event is None
        or leaf is None
        or not visible(event, scope)
        or not _leaf_visible(event.body, scope)
        or leaf.index >= tree_size
    ):
        raise NotFound(f"event {event_id} is not in the log at size {tree_size}", event=event_id)
    proof = await NodeCache(session).run(
        lambda get: merkle.inclusion_proof(leaf.index, tree_size, get)
    )
    _record_read(session, principal, "inclusion", {"event": event_id, "size": tree_size})
    return leaf.index, tree_size, leaf.leaf_hash, proof


async def consistency(
    session: AsyncSession, principal: Principal, old: int, new: int | None
) -> tuple[int, int, list[bytes]]:
    check_auditor(principal)
    new_size = await _size(session, new)
    if old < 1 or old > new_size:
        raise InvalidInput(f"old size must be between 1 and {new_size}", field="old")
    proof = await NodeCache(session).run(lambda get: merkle.consistency_proof(old, new_size, get))
    _record_read(session, principal, "consistency", {"old": old, "new": new_size})
    return old, new_size, proof
