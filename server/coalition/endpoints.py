from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response, status

from server.auth.dependencies import PrincipalDep, SessionDep
from server.coalition import service
from server.coalition.schemas import PolicyProofRead, ProposalRead
from server.schemas import MAX_INT32, MAX_JSON_INT

router = APIRouter(prefix="/v1", tags=["coalition"])

# The signed policy as stored: the RFC 8785 bytes that were verified when it was stored.
_DOCUMENT: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/json": {}}, "description": "a signed policy"}
}
# Read as bytes and parsed by protocol/coalition.py, which refuses duplicate keys.
_SIGNED_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"type": "object"}}},
        "description": 'a signed policy, {"policy": {...}, "signatures": [...]}',
    }
}
Digest = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{43}$")]


# Declared before /policy/{policy_version}, which would otherwise take "proposals".
@router.post("/policy/proposals", openapi_extra=_SIGNED_BODY)
async def propose_policy(
    request: Request, response: Response, principal: PrincipalDep, session: SessionDep
) -> ProposalRead:
    """Propose the next policy version, or add signatures to a proposal of the same one."""
    signed = service.parse_signed_policy(await request.body())
    proposal, created = await service.do_propose_policy(session, principal, signed)
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return ProposalRead.of(proposal)


@router.get("/policy/proposals")
async def list_proposals(_: PrincipalDep, session: SessionDep) -> list[ProposalRead]:
    return [ProposalRead.of(p) for p in await service.list_proposals(session)]


@router.get("/policy/proposals/{digest}", response_class=Response, responses=_DOCUMENT)
async def get_proposal(digest: Digest, _: PrincipalDep, session: SessionDep) -> Response:
    """A proposal with the signatures collected so far."""
    row = await service.access_proposal(session, digest)
    return Response(row.document, media_type="application/json")


# Both public on purpose, as GET /v1/nations: a device being enrolled has no session yet, and
# the policy holds only public keys and the catalog, which every member sees anyway.
@router.get("/policy", response_class=Response, responses=_DOCUMENT)
async def get_latest_policy(session: SessionDep) -> Response:
    """The latest published coalition policy version (PROTOCOL.md §18), with its signatures."""
    return Response(await service.access_policy(session, None), media_type="application/json")


@router.get("/policy/{policy_version}", response_class=Response, responses=_DOCUMENT)
async def get_policy(
    # Bounded by the column (a 32-bit INTEGER on PostgreSQL, whose driver fails beyond it).
    policy_version: Annotated[int, Path(ge=1, le=MAX_INT32)],
    session: SessionDep,
) -> Response:
    """One published coalition policy version, with its signatures."""
    document = await service.access_policy(session, policy_version)
    return Response(document, media_type="application/json")


@router.get("/policy/{policy_version}/proof")
async def get_policy_proof(
    policy_version: Annotated[int, Path(ge=1, le=MAX_INT32)],
    session: SessionDep,
    old: Annotated[int, Query(ge=0, le=MAX_JSON_INT)] = 0,
    witness: Annotated[list[str] | None, Query(max_length=64)] = None,
    min_witnesses: Annotated[int | None, Query(ge=1, le=64)] = None,
) -> PolicyProofRead:
    """That version's publication leaf with its inclusion proof at the latest audit
    checkpoint (or the latest that ``min_witnesses`` of the ``witness`` names cosigned), and
    the checkpoint's consistency with size ``old`` (PROTOCOL.md §18.6). Public, as the
    policy: a device being enrolled checks it before it registers."""
    proof = await service.access_policy_proof(
        session, policy_version, old, witness or (), min_witnesses
    )
    return PolicyProofRead.model_validate(proof)
