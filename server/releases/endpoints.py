from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, status

from server.auth.dependencies import PrincipalDep, SessionDep
from server.directory.endpoints import CatalogDep
from server.releases import repository as repo
from server.releases import service
from server.releases.schemas import DecisionCreate, GrantCreate, ReleaseCreate, ReleaseRead

router = APIRouter(prefix="/v1/releases", tags=["releases"])


@router.post("", status_code=status.HTTP_201_CREATED)
async def request_release(
    body: ReleaseCreate, principal: PrincipalDep, session: SessionDep, catalog: CatalogDep
) -> ReleaseRead:
    request = await service.do_request_release(
        session,
        principal,
        catalog,
        item_type=body.item_type,
        item_id=body.item_id,
        add=body.add,
        reason=body.reason,
    )
    return ReleaseRead.of(request)


@router.get("")
async def list_releases(
    principal: PrincipalDep,
    session: SessionDep,
    status_: Annotated[
        Literal["pending", "approved", "refused", "granted"] | None, Query(alias="status")
    ] = None,
) -> list[ReleaseRead]:
    """Your requests, and, for a disclosure officer, those of your nation's content."""
    deciding = principal.user.nationality if principal.has_role("disclosure_officer") else None
    found = await repo.list_requests(
        session, user_id=principal.user.id, originator=deciding, status=status_
    )
    return [ReleaseRead.of(r) for r in found]


@router.post("/{request_id}/approve")
async def approve(
    request_id: str, body: DecisionCreate, principal: PrincipalDep, session: SessionDep
) -> ReleaseRead:
    request = await service.access_request(session, principal, request_id, action="release.approve")
    return ReleaseRead.of(
        await service.do_decide(session, principal, request, approve=True, reason=body.reason)
    )


@router.post("/{request_id}/refuse")
async def refuse(
    request_id: str, body: DecisionCreate, principal: PrincipalDep, session: SessionDep
) -> ReleaseRead:
    request = await service.access_request(session, principal, request_id, action="release.refuse")
    return ReleaseRead.of(
        await service.do_decide(session, principal, request, approve=False, reason=body.reason)
    )


@router.post("/{request_id}/grant", status_code=status.HTTP_201_CREATED)
async def grant(
    request_id: str,
    body: GrantCreate,
    principal: PrincipalDep,
    session: SessionDep,
    catalog: CatalogDep,
) -> ReleaseRead:
    request = await service.access_request_to_grant(session, principal, catalog, request_id)
    await service.do_grant(session, principal, catalog, request, body.grant)
    return ReleaseRead.of(request)
