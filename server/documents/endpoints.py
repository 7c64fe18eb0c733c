from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, status
from fastapi.responses import StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials
from starlette.requests import ClientDisconnect

from server.auth.dependencies import PrincipalDep, SessionDep, limited_per_device
from server.auth.dependencies import _bearer as bearer
from server.channels.service import access_channel
from server.directory.endpoints import CatalogDep
from server.documents import service
from server.documents.schemas import (
    TrailerSubmit,
    UploadRead,
    VersionAccessRead,
    VersionCreate,
    VersionRead,
)
from server.documents.storage import BlobStore
from server.ratelimit import UPLOAD
from server.settings import Settings
from server.timeouts import BodyReadTimeout

router = APIRouter(prefix="/v1", tags=["documents"])


def _store(request: Request) -> BlobStore:
    store: BlobStore = request.app.state.blobs
    return store


async def _body(request: Request) -> AsyncIterator[bytes]:
    """The request body as it arrives; a dropped connection simply ends it, so that what was
    received is kept and the upload can resume, and a stalled one (the body read timeout,
    server/timeouts.py) ends it with BodyStalled."""
    try:
        async for piece in request.stream():
            if piece:
                yield piece
    except ClientDisconnect:
        return
    except BodyReadTimeout as exc:
        raise service.BodyStalled from exc


@router.post(
    "/channels/{channel}/documents",
    status_code=status.HTTP_201_CREATED,
    # Counted per device where an upload begins; its streams are capped by server/documents.
    dependencies=[limited_per_device(UPLOAD)],
)
async def begin_version(
    channel: str,
    body: VersionCreate,
    principal: PrincipalDep,
    session: SessionDep,
    catalog: CatalogDep,
) -> VersionRead:
    found = await access_channel(session, principal, channel)
    version = await service.do_begin_version(session, principal, catalog, found, body.header)
    return VersionRead.of(version)


@router.get("/channels/{channel}/documents")
async def list_versions(
    channel: str, principal: PrincipalDep, session: SessionDep, catalog: CatalogDep
) -> list[VersionRead]:
    found = await access_channel(session, principal, channel)
    return [
        VersionRead.of(v) for v in await service.list_versions(session, principal, catalog, found)
    ]


@router.get("/uploads/{version_id}")
async def upload_state(
    version_id: str, request: Request, principal: PrincipalDep, session: SessionDep
) -> UploadRead:
    """Where an unfinished upload stands, with what its uploader needs to resume it."""
    return UploadRead.of_upload(
        await service.access_upload_state(session, principal, _store(request), version_id)
    )


@router.put("/uploads/{version_id}/content")
async def upload_content(
    version_id: str,
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    offset: Annotated[int, Query(ge=0)] = 0,
) -> VersionRead:
    """Raw ciphertext from ``offset`` (application/octet-stream), streamed to storage.

    Takes no request session (SessionDep): the body may take long to arrive, and the service
    uses short transactions of its own around it, so a slow client holds no connection."""
    settings: Settings = request.app.state.settings
    version = await service.do_receive_content(
        request.app.state.sessionmaker,
        _store(request),
        request.app.state.uploads,
        credentials.credentials if credentials else None,
        version_id,
        offset,
        _body(request),
        retry_after=math.ceil(settings.body_read_timeout_seconds),
    )
    return VersionRead.of(version)


@router.post("/uploads/{version_id}/complete")
async def complete_upload(
    version_id: str,
    body: TrailerSubmit,
    request: Request,
    principal: PrincipalDep,
    session: SessionDep,
    catalog: CatalogDep,
) -> VersionRead:
    version = await service.access_upload(session, principal, version_id)
    version = await service.do_complete_version(
        session, principal, catalog, _store(request), version, body.trailer
    )
    return VersionRead.of(version)


@router.delete("/uploads/{version_id}", status_code=status.HTTP_204_NO_CONTENT)
async def discard_upload(
    version_id: str, request: Request, principal: PrincipalDep, session: SessionDep
) -> None:
    version = await service.access_upload(session, principal, version_id)
    await service.do_discard_upload(session, _store(request), version)


@router.get("/documents/versions/{version_id}")
async def open_version(
    version_id: str, principal: PrincipalDep, session: SessionDep, catalog: CatalogDep
) -> VersionAccessRead:
    """What a recipient needs to open a version: header, trailer, its own envelope."""
    return VersionAccessRead.of(
        await service.access_version(session, principal, catalog, version_id)
    )


@router.get("/documents/versions/{version_id}/content")
async def download_content(
    version_id: str,
    request: Request,
    principal: PrincipalDep,
    session: SessionDep,
    catalog: CatalogDep,
) -> StreamingResponse:
    access = await service.access_version(session, principal, catalog, version_id)
    return StreamingResponse(
        _store(request).read(access.version.id),
        media_type="application/octet-stream",
        headers={"Content-Length": str(access.version.ciphertext_size)},
    )
