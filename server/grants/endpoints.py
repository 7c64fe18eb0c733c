from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from server.auth.dependencies import PrincipalDep, SessionDep
from server.channels.service import access_channel
from server.directory.endpoints import CatalogDep
from server.grants import service
from server.grants.schemas import (
    HistoryGrantCreate,
    HistoryGrantRead,
    HistoryRead,
    HistoryWindowRead,
    HistoryWindowUpdate,
)
from server.schemas import MAX_INT64

router = APIRouter(prefix="/v1", tags=["history grants"])

Limit = Annotated[int, Query(ge=1, le=500)]
Cursor = Annotated[int, Query(ge=0, le=MAX_INT64)]


@router.get("/channels/{channel}/history")
async def history(
    channel: str,
    principal: PrincipalDep,
    session: SessionDep,
    catalog: CatalogDep,
    after: Cursor = 0,
    limit: Limit = 100,
) -> HistoryRead:
    """Past items within the channel's history window: those your device holds that members
    eligible now lack (``due``), and those you are eligible for but lack (``waiting``)."""
    found = await access_channel(session, principal, channel)
    return HistoryRead.of(
        await service.history(session, principal, catalog, found, after=after, limit=limit)
    )


@router.post("/channels/{channel}/history", status_code=status.HTTP_201_CREATED)
async def grant_history(
    channel: str,
    body: HistoryGrantCreate,
    principal: PrincipalDep,
    session: SessionDep,
    catalog: CatalogDep,
    response: Response,
) -> HistoryGrantRead:
    """A history grant (PROTOCOL.md §16.7); 200 when this very grant was stored before."""
    found = await access_channel(session, principal, channel)
    granted = await service.do_history_grant(session, principal, catalog, found, body.grant)
    if not granted.created:
        response.status_code = status.HTTP_200_OK
    return HistoryGrantRead.of(granted)


@router.put("/channels/{channel}/history-window")
async def set_history_window(
    channel: str, body: HistoryWindowUpdate, principal: PrincipalDep, session: SessionDep
) -> HistoryWindowRead:
    found = await access_channel(session, principal, channel)
    days = await service.do_set_history_window(session, principal, found, body.days)
    return HistoryWindowRead(channel_id=found.id, history_days=days)
