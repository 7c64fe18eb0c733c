from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Response

from server.auth.dependencies import SessionDep
from server.coalition import service

router = APIRouter(prefix="/v1", tags=["coalition"])

# The signed policy as stored: the RFC 8785 bytes that were verified when it was published.
_DOCUMENT: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/json": {}}, "description": "a signed policy"}
}


# Both public on purpose, as GET /v1/nations: a device being enrolled has no session yet, and
# the policy holds only public keys and the catalog, which every member sees anyway.
@router.get("/policy", response_class=Response, responses=_DOCUMENT)
async def get_latest_policy(session: SessionDep) -> Response:
    """The latest published coalition policy version (PROTOCOL.md §18), with its signatures."""
    return Response(await service.access_policy(session, None), media_type="application/json")


@router.get("/policy/{policy_version}", response_class=Response, responses=_DOCUMENT)
async def get_policy(
    policy_version: Annotated[int, Path(ge=1, le=2**53 - 1)], session: SessionDep
) -> Response:
    """One published coalition policy version, with its signatures."""
    document = await service.access_policy(session, policy_version)
    return Response(document, media_type="application/json")
