from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status

from protocol import keys
from server.audit import service
from server.audit.schemas import (
    AuditEventRead,
    AuditEventsRead,
    AuditKeyRead,
    CheckpointRead,
    ConsistencyRead,
    CosignatureCreate,
    CosignatureRead,
    InclusionRead,
    LeavesRead,
    WitnessViewRead,
)
from server.auth.dependencies import PrincipalDep, SessionDep
from server.directory.service import access_user
from server.schemas import MAX_JSON_INT, UTCTime

router = APIRouter(prefix="/v1/audit", tags=["audit"])

Text = Annotated[str | None, Query(max_length=512)]
# Event ids, leaf indices and tree sizes: whatever the client sends must fit the column and,
# since the read is itself an audit event that records the query, canonical JSON.
Index = Annotated[int, Query(ge=0, le=MAX_JSON_INT)]
Positive = Annotated[int, Query(ge=1, le=MAX_JSON_INT)]


@router.get("/key")
async def audit_key(request: Request) -> AuditKeyRead:
    # Public on purpose: auditors pin this verifier key, and checking a signature needs it.
    signer = request.app.state.audit_signer
    return AuditKeyRead(origin=signer.name, vkey=signer.vkey())


@router.get("/checkpoint")
async def checkpoint(
    _: PrincipalDep,
    session: SessionDep,
    size: Annotated[int | None, Query(ge=0, le=MAX_JSON_INT)] = None,
    witness: Annotated[list[str] | None, Query(max_length=64)] = None,
    min_witnesses: Annotated[int | None, Query(ge=1, le=64)] = None,
) -> CheckpointRead:
    """The latest checkpoint (or the one of ``size``, or the latest that ``min_witnesses`` of
    the ``witness`` names cosigned), its note with the witnesses' cosignatures."""
    found = await service.access_checkpoint(session, size, witness or (), min_witnesses)
    return CheckpointRead.of(found, await service.cosigned_note(session, found))


@router.get("/witness")
async def witness(principal: PrincipalDep, session: SessionDep, old: Index = 0) -> WitnessViewRead:
    """What a witness checks before cosigning: the latest checkpoint and a consistency proof
    from ``old``, the size it cosigned last."""
    found, note, proof = await service.witness_view(session, principal, old)
    return WitnessViewRead(
        old=old,
        size=found.size,
        root=keys.b64u_encode(found.root),
        note=note,
        proof=[keys.b64u_encode(p) for p in proof],
    )


@router.post("/cosignatures")
async def add_cosignature(
    body: CosignatureCreate, response: Response, principal: PrincipalDep, session: SessionDep
) -> CosignatureRead:
    """A witness's cosignature of a checkpoint: 201 when stored, 200 when this witness key
    had already cosigned that checkpoint (the stored one is returned)."""
    row, created = await service.do_add_cosignature(
        session, principal, body.size, body.vkey, body.cosignature
    )
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return CosignatureRead.of(row)


@router.get("/events")
async def events(
    principal: PrincipalDep,
    session: SessionDep,
    since: Annotated[UTCTime | None, Query(description="inclusive; without a zone, UTC")] = None,
    until: Annotated[UTCTime | None, Query(description="exclusive; without a zone, UTC")] = None,
    actor: Annotated[str | None, Query(max_length=512, description="id or username")] = None,
    nation: Annotated[str | None, Query(pattern=r"^[A-Z]{3}$")] = None,
    container: Text = None,
    action: Text = None,
    decision: Annotated[str | None, Query(pattern=r"^(allow|deny)$")] = None,
    label: Text = None,
    after: Index = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AuditEventsRead:
    # A user is named by id or username here as in every path and body (PROTOCOL.md §17.1);
    # the log records ids, and a name that names no one is 404, not an empty page.
    actor_id = None if actor is None else (await access_user(session, actor)).id
    found, cursor = await service.query_events(
        session,
        principal,
        since=since,
        until=until,
        actor=actor_id,
        nation=nation,
        container=container,
        action=action,
        decision=decision,
        label=label,
        after_id=after,
        limit=limit,
    )
    return AuditEventsRead(
        events=[AuditEventRead.of(e) for e in found],
        cursor=cursor,
    )


@router.get("/leaves", response_model=LeavesRead)
async def leaves(
    principal: PrincipalDep,
    session: SessionDep,
    start: Index,
    end: Positive,
) -> Response:
    views, checkpoint = await service.leaves(session, principal, start, end)
    # Serialised directly: a full audit pulls every leaf, and model validation of a million
    # leaves would cost more than hashing them.
    payload = {
        "checkpoint_size": checkpoint.size if checkpoint else 0,
        "leaves": [
            {
                "index": v.index,
                "hash": keys.b64u_encode(v.leaf_hash),
                "status": v.status,
                "event": v.event_id,
                "data": v.data,
                "columns": v.columns,
            }
            for v in views
        ],
    }
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return Response(body, media_type="application/json")


@router.get("/proofs/inclusion")
async def inclusion(
    principal: PrincipalDep,
    session: SessionDep,
    event: Positive,
    size: Annotated[int | None, Query(ge=1, le=MAX_JSON_INT)] = None,
) -> InclusionRead:
    index, tree_size, leaf_hash, proof = await service.inclusion(session, principal, event, size)
    return InclusionRead(
        event_id=event,
        index=index,
        size=tree_size,
        leaf_hash=keys.b64u_encode(leaf_hash),
        proof=[keys.b64u_encode(p) for p in proof],
    )


@router.get("/proofs/consistency")
async def consistency(
    principal: PrincipalDep,
    session: SessionDep,
    old: Positive,
    new: Annotated[int | None, Query(ge=1, le=MAX_JSON_INT)] = None,
) -> ConsistencyRead:
    old_size, new_size, proof = await service.consistency(session, principal, old, new)
    return ConsistencyRead(old=old_size, new=new_size, proof=[keys.b64u_encode(p) for p in proof])
