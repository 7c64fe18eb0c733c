from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from server.auth.dependencies import PrincipalDep, SessionDep, bearer_token, check_limit
from server.auth.service import access_principal
from server.channels import repository as repo
from server.channels import service
from server.channels.schemas import (
    AudienceCreate,
    AudienceCreated,
    ChannelCreate,
    ChannelRead,
    DeliveryRead,
    MemberAdd,
    MessageAccepted,
    MessageCreate,
    MessageRecipientsRead,
    RosterDevice,
    SyncHead,
    SyncRead,
    read_message_create,
)
from server.channels.submits import SubmitWork
from server.db.engine import unit_of_work
from server.db.group import GroupCommit
from server.directory.endpoints import CatalogDep
from server.directory.service import access_user, load_catalog
from server.errors import ServiceError, service_problem, validation_problem
from server.ratelimit import SUBMIT
from server.schemas import MAX_INT64

router = APIRouter(prefix="/v1", tags=["channels"])

Limit = Annotated[int, Query(ge=1, le=500)]
Cursor = Annotated[int, Query(ge=0, le=MAX_INT64)]


@router.post("/channels", status_code=status.HTTP_201_CREATED)
async def create_channel(
    body: ChannelCreate, principal: PrincipalDep, session: SessionDep, catalog: CatalogDep
) -> ChannelRead:
    channel = await service.do_create_channel(
        session,
        principal,
        catalog,
        name=body.name,
        ceiling=body.ceiling,
        labels=body.labels,
        default_label=body.default_label,
    )
    return ChannelRead.of(channel, list(await repo.members(session, channel.id)))


@router.get("/channels")
async def list_channels(principal: PrincipalDep, session: SessionDep) -> list[ChannelRead]:
    channels = await repo.channels_of(session, principal.user.id)
    return [ChannelRead.of(c, list(await repo.members(session, c.id))) for c in channels]


@router.get("/channels/{channel}")
async def get_channel(channel: str, principal: PrincipalDep, session: SessionDep) -> ChannelRead:
    found = await service.access_channel(session, principal, channel)
    return ChannelRead.of(found, list(await repo.members(session, found.id)))


@router.post("/channels/{channel}/members", status_code=status.HTTP_201_CREATED)
async def add_member(
    channel: str, body: MemberAdd, principal: PrincipalDep, session: SessionDep, catalog: CatalogDep
) -> ChannelRead:
    found = await service.access_channel(session, principal, channel)
    user = await access_user(session, body.user)
    await service.do_add_member(session, principal, catalog, found, user)
    return ChannelRead.of(found, list(await repo.members(session, found.id)))


@router.delete("/channels/{channel}/members/{user}", status_code=status.HTTP_204_NO_CONTENT)
async def remove_member(
    channel: str, user: str, principal: PrincipalDep, session: SessionDep
) -> None:
    found = await service.access_channel(session, principal, channel)
    await service.do_remove_member(session, principal, found, await access_user(session, user))


@router.get(
    "/channels/{channel}/roster",
    response_model=list[RosterDevice],
    responses={304: {"description": "the roster is unchanged since the ETag given"}},
)
async def get_roster(
    channel: str, request: Request, principal: PrincipalDep, session: SessionDep
) -> list[RosterDevice] | Response:
    """Members' active devices with their certificates. Send the ``ETag`` of the roster you
    hold as ``If-None-Match``: 304 means it still holds."""
    found = await service.access_channel(session, principal, channel)
    catalog = await load_catalog(session, request.app.state.catalog)
    tag = await service.roster_tag_of(session, found, catalog)
    if request.headers.get("if-none-match") == tag:
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers={"ETag": tag})
    entries = [RosterDevice.of(d, u) for d, u in await service.roster(session, found)]
    return JSONResponse([e.model_dump(mode="json") for e in entries], headers={"ETag": tag})


@router.post("/channels/{channel}/audiences", status_code=status.HTTP_201_CREATED)
async def create_audience(
    channel: str, body: AudienceCreate, principal: PrincipalDep, session: SessionDep
) -> AudienceCreated:
    found = await service.access_channel(session, principal, channel)
    audience = await service.do_create_audience(session, principal, found, body.model_dump())
    return AudienceCreated(audience_id=audience.id, devices=list(audience.header["devices"]))


_SUBMIT_BODY = MessageCreate.model_json_schema()  # self-contained: its own $defs


@router.post(
    "/channels/{channel}/messages",
    status_code=status.HTTP_201_CREATED,
    response_model=MessageAccepted,
    responses={200: {"model": MessageAccepted, "description": "stored before (idempotent)"}},
    openapi_extra={
        "security": [{"HTTPBearer": []}],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _SUBMIT_BODY}},
        },
        "parameters": [
            {
                "name": "If-Match",
                "in": "header",
                "required": False,
                "schema": {"type": "string"},
                "description": "the roster's ETag the message was sealed for: 412 "
                "`roster-changed` if it changed since (fetch it again and re-seal; nothing is "
                "refused or audited)",
            }
        ],
    },
)
async def submit_message(channel: str, request: Request) -> Response:
    """Submit a sealed message: 201, or 200 with the stored one when it is sent again."""
    # The busiest route, so it does without FastAPI's dependency injection, which cost more
    # than the rest of the request's own work (a session dependency alone, with its exit
    # stack and cancel scope, cost more than reading the principal): it reads the same
    # things, in the same order (principal, rate limit, body), by plain calls; the
    # ``openapi_extra`` above describes what the signature no longer does.
    async with unit_of_work(request) as session:
        principal = await access_principal(session, bearer_token(request), reading=True)
        await check_limit(request, SUBMIT, principal)
        sealed = read_message_create(await request.body())
        catalog = await load_catalog(session, request.app.state.catalog)
        found = await service.access_channel(session, principal, channel)
    # Checked without the database, then stored, audited and pushed in a transaction shared
    # with the submits that arrive meanwhile (server/channels/submits.py), committed before
    # this answer.
    message, header = service.open_submission(principal, found, sealed)
    submits: GroupCommit[service.Submitted] = request.app.state.submits
    submitted = await submits.run(
        SubmitWork(
            principal, catalog, found, message, header, roster_tag=request.headers.get("if-match")
        )
    )
    request.app.state.metrics.messages_accepted.inc(int(submitted.created))
    # ``MessageAccepted``'s fields, written by orjson (the model describes the answer).
    accepted = {
        "seq": submitted.message.seq,
        "message_id": submitted.message.id,
        "created": submitted.created,
        "label": submitted.message.label_banner,
        "released_to": submitted.released_to,
    }
    return Response(
        orjson.dumps(accepted),
        status_code=status.HTTP_201_CREATED if submitted.created else status.HTTP_200_OK,
        media_type="application/json",
    )


_SUBMIT_PREFIX, _SUBMIT_SUFFIX = "/v1/channels/", "/messages"
_SUBMIT_ROUTE = next(r for r in router.routes if getattr(r, "endpoint", None) is submit_message)


class SubmitRoute:
    """ASGI middleware: ``POST /v1/channels/{channel}/messages`` straight to
    ``submit_message``, past FastAPI's routing and its exception middleware.

    The busiest route by far, and every submit spent as much in finding and wrapping its
    endpoint (route matching across the routers, the exception and exit-stack middlewares,
    parameter solving) as in its own checks. It sits inside the app's other middlewares (the
    limits, the metrics), which see it as any route; it answers ``ServiceError`` and invalid
    input with the problem documents the app's handlers give, and lets anything else rise to
    the server error handler, as the router would. The route stays declared on the router for
    the OpenAPI document, and a request under a ``root_path`` takes the router's path.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        channel = _submit_channel(scope)
        if channel is None:
            await self.app(scope, receive, send)
            return
        # What routing would have set: the metrics and the access log name the template.
        scope["route"] = _SUBMIT_ROUTE
        scope["path_params"] = {"channel": channel}
        request = Request(scope, receive)
        response: Response
        try:
            response = await submit_message(channel, request)
        except ServiceError as exc:
            response = service_problem(exc)
        except RequestValidationError as exc:
            response = validation_problem(exc)
        await response(scope, receive, send)


def _submit_channel(scope: Scope) -> str | None:
    """The channel of a message submit, as the router's ``{channel}`` would match it."""
    if scope["type"] != "http" or scope["method"] != "POST" or scope.get("root_path"):
        return None
    path: str = scope["path"]
    if not (path.startswith(_SUBMIT_PREFIX) and path.endswith(_SUBMIT_SUFFIX)):
        return None
    channel = path[len(_SUBMIT_PREFIX) : -len(_SUBMIT_SUFFIX)]
    return channel if channel and "/" not in channel else None


@router.get("/channels/{channel}/messages")
async def channel_messages(
    channel: str,
    request: Request,
    principal: PrincipalDep,
    session: SessionDep,
    catalog: CatalogDep,
    after: Cursor = 0,
    limit: Limit = 100,
) -> SyncRead:
    found = await service.access_channel(session, principal, channel)
    items, cursor, more = await service.sync(
        session, principal, catalog, after=after, limit=limit, channel=found
    )
    request.app.state.metrics.delivered_sync.inc(len(items))
    return SyncRead(items=[DeliveryRead.of(i) for i in items], cursor=cursor, more=more)


@router.get("/sync")
async def sync(
    request: Request,
    principal: PrincipalDep,
    session: SessionDep,
    catalog: CatalogDep,
    after: Cursor = 0,
    limit: Limit = 100,
) -> SyncRead:
    items, cursor, more = await service.sync(session, principal, catalog, after=after, limit=limit)
    request.app.state.metrics.delivered_sync.inc(len(items))
    return SyncRead(items=[DeliveryRead.of(i) for i in items], cursor=cursor, more=more)


@router.get("/sync/head")
async def sync_head(principal: PrincipalDep, session: SessionDep) -> SyncHead:
    """The cursor of now, for a client that starts listening and wants, after a lost stream,
    only what was sent since it started (``GET /v1/sync?after=`` this)."""
    return SyncHead(cursor=await repo.last_seq(session))


@router.get("/messages/{message_id}/recipients")
async def message_recipients(
    message_id: str, principal: PrincipalDep, session: SessionDep, catalog: CatalogDep
) -> MessageRecipientsRead:
    """For its sender only: who the message was released to (at the send and by release
    grants) and the members it was not, with the reasons the server recorded."""
    message, channel = await service.access_sent_message(session, principal, catalog, message_id)
    return MessageRecipientsRead.of(await service.recipients(session, message, channel))
