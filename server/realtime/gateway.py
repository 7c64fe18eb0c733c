"""The websocket gateway: pushes each new message to every connected device it is for.

Protocol (JSON text frames):
- client, first frame within ``ws_auth_seconds``: ``{"type": "auth", "token": "<session token>"}``
- server: ``{"type": "ready", "device_id": ...}``, then ``{"type": "message", ...}`` items
  exactly as ``GET /v1/sync`` returns them, ``{"type": "ping"}`` every half idle period, and
  ``{"type": "resync"}`` if this connection fell behind (fetch ``/v1/sync`` from your cursor).
- client: ``{"type": "pong"}`` (or ``{"type": "ping"}``, answered with a pong) at least once per
  ``ws_idle_seconds``; anything else closes the connection (1003); silence closes it (4408).

Each push is decided again for the receiving device, with its user's clearance and membership
as they are now, and carries only that device's envelope.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.auth.service import access_principal
from server.channels import repository as channel_repo
from server.channels import service as channels
from server.channels.schemas import DeliveryRead
from server.directory.service import load_catalog
from server.errors import ServiceError
from server.realtime.bus import MessageEvent
from server.settings import Settings

router = APIRouter()

CLOSE_UNSUPPORTED = 1003
CLOSE_UNAUTHENTICATED = 4401
CLOSE_IDLE = 4408
MAX_FRAME = 4096


class _Closing(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def _parse(frame: str) -> dict[str, Any]:
    if len(frame) > MAX_FRAME:
        raise _Closing(CLOSE_UNSUPPORTED, "frame too large")
    try:
        value = json.loads(frame)
    except ValueError:
        raise _Closing(CLOSE_UNSUPPORTED, "frames must be JSON objects") from None
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        raise _Closing(CLOSE_UNSUPPORTED, "frames must be JSON objects with a type")
    return value


async def _authenticate(
    websocket: WebSocket, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> tuple[str, str]:
    try:
        frame = await asyncio.wait_for(websocket.receive_text(), settings.ws_auth_seconds)
    except TimeoutError:
        raise _Closing(CLOSE_UNAUTHENTICATED, "authenticate first") from None
    message = _parse(frame)
    token = message.get("token")
    if message["type"] != "auth" or not isinstance(token, str):
        raise _Closing(CLOSE_UNAUTHENTICATED, "the first frame must be an auth frame")
    async with sessionmaker() as session:
        try:
            principal = await access_principal(session, token)
        except ServiceError as exc:
            raise _Closing(CLOSE_UNAUTHENTICATED, exc.detail) from None
    return token, principal.device.id


async def _push(
    websocket: WebSocket,
    sessionmaker: async_sessionmaker[AsyncSession],
    token: str,
    event: MessageEvent,
) -> None:
    """Decide and send one message for this connection's device (or nothing)."""
    async with sessionmaker() as session, session.begin():
        try:
            principal = await access_principal(session, token)
        except ServiceError as exc:
            raise _Closing(CLOSE_UNAUTHENTICATED, exc.detail) from None
        message = await channel_repo.get_message_by_seq(session, event.seq)
        channel = await channel_repo.get_channel(session, event.channel_id)
        if message is None or channel is None:
            return
        catalog = await load_catalog(session, websocket.app.state.catalog)
        item = await channels.deliver(session, principal, catalog, message, channel)
    if item is not None:
        payload = DeliveryRead.of(item).model_dump(mode="json")
        await websocket.send_json({"type": "message", **payload})


@router.websocket("/v1/stream")
async def stream(websocket: WebSocket) -> None:
    settings: Settings = websocket.app.state.settings
    sessionmaker: async_sessionmaker[AsyncSession] = websocket.app.state.sessionmaker
    await websocket.accept()
    try:
        token, device_id = await _authenticate(websocket, sessionmaker, settings)
        async with websocket.app.state.bus.subscribe() as queue:
            await websocket.send_json({"type": "ready", "device_id": device_id})
            await _serve(websocket, sessionmaker, settings, token, queue)
    except _Closing as closing:
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            await websocket.close(code=closing.code, reason=closing.reason[:120])
    except WebSocketDisconnect:
        pass


async def _serve(
    websocket: WebSocket,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    token: str,
    queue: asyncio.Queue[MessageEvent | None],
) -> None:
    async def read() -> None:
        while True:
            try:
                frame = await asyncio.wait_for(websocket.receive_text(), settings.ws_idle_seconds)
            except TimeoutError:
                raise _Closing(CLOSE_IDLE, "no frame from the client in time") from None
            except KeyError:  # a binary frame: receive_text finds no "text"
                raise _Closing(CLOSE_UNSUPPORTED, "frames must be JSON text") from None
            message = _parse(frame)
            if message["type"] == "ping":
                await websocket.send_json({"type": "pong"})
            elif message["type"] != "pong":
                raise _Closing(CLOSE_UNSUPPORTED, f"unexpected frame type {message['type']!r}")

    async def write() -> None:
        # Ping on a timer, busy or not, so that a client that only answers pings is never
        # closed as silent while messages keep the line occupied.
        loop = asyncio.get_running_loop()
        next_ping = loop.time() + settings.ws_idle_seconds / 2
        while True:
            try:
                event = await asyncio.wait_for(queue.get(), max(0.0, next_ping - loop.time()))
            except TimeoutError:
                await websocket.send_json({"type": "ping"})
                next_ping = loop.time() + settings.ws_idle_seconds / 2
                continue
            if event is None:
                await websocket.send_json({"type": "resync"})
            else:
                await _push(websocket, sessionmaker, token, event)

    reader = asyncio.create_task(read())
    writer = asyncio.create_task(write())
    try:
        done, _ = await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            task.result()
    finally:
        for task in (reader, writer):
            task.cancel()
        await asyncio.gather(reader, writer, return_exceptions=True)
