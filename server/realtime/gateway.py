"""The websocket gateway: pushes each new message to the connected devices it is for.

Protocol (JSON text frames):
- client, first frame within ``ws_auth_seconds``: ``{"type": "auth", "token": "<session token>"}``
  and, optionally, ``"accept": ["messages"]``
- server: ``{"type": "ready", "device_id": ...}``, then ``{"type": "message", ...}`` items
  exactly as ``GET /v1/sync`` returns them (to a client that accepted ``messages``, pushes
  queued together come as ``{"type": "messages", "items": [<message frames>]}``),
  ``{"type": "ping"}`` every half idle period,
  ``{"type": "resync"}`` if this connection fell behind (fetch ``/v1/sync`` from your cursor,
  and treat every roster you hold as changed), and ``roster-changed`` notices, in order with
  the messages (a message sent after a change comes after its notice):
  ``{"type": "roster-changed", "channel_id": ..., "etag": ...}`` (a channel you are a member
  of: its membership, a member's devices, clearance or status changed; ``etag`` is its
  roster's ETag now), ``{"type": "roster-changed", "channel_id": ..., "member": false}`` (you
  were removed from it) and ``{"type": "roster-changed"}`` (the catalog changed: every
  roster). The frames are docs/PROTOCOL.md's, §17.7.
- client: ``{"type": "pong"}`` (or ``{"type": "ping"}``, answered with a pong) at least once per
  ``ws_idle_seconds``; anything else closes the connection (1003); silence closes it (4408).
- a logout, a revoked device or a disabled account closes the stream at once (4401).

The stream authenticates once, at connect. Each push was decided at submit; before it is
written the ``Gate`` decides it again for this device, from memory when nothing that decision
depends on has changed since (see ``server.db.changes``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any, Protocol

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.auth.service import access_principal
from server.errors import ServiceError
from server.realtime.bus import CLOSE_REVOKED, Connection, InProcessBus, Push
from server.settings import Settings

router = APIRouter()

CLOSE_UNSUPPORTED = 1003
CLOSE_UNAUTHENTICATED = CLOSE_REVOKED
CLOSE_IDLE = 4408
MAX_FRAME = 4096


class Gate(Protocol):
    """Decides a push again for one connection just before it is written: True to write it."""

    async def admit(self, connection: Connection, push: Push) -> bool: ...


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


async def _receive_text(websocket: WebSocket, timeout: float) -> str:
    message = await asyncio.wait_for(websocket.receive(), timeout)
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000))
    text = message.get("text")
    if text is None:
        raise _Closing(CLOSE_UNSUPPORTED, "frames must be JSON text")
    assert isinstance(text, str)
    return text


async def _authenticate(
    websocket: WebSocket, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> Connection:
    try:
        frame = await _receive_text(websocket, settings.ws_auth_seconds)
    except TimeoutError:
        raise _Closing(CLOSE_UNAUTHENTICATED, "authenticate first") from None
    except _Closing as closing:
        raise _Closing(CLOSE_UNAUTHENTICATED, closing.reason) from None
    message = _parse(frame)
    token, accept = message.get("token"), message.get("accept", [])
    if message["type"] != "auth" or not isinstance(token, str):
        raise _Closing(CLOSE_UNAUTHENTICATED, "the first frame must be an auth frame")
    if not isinstance(accept, list) or not all(isinstance(a, str) for a in accept):
        raise _Closing(CLOSE_UNAUTHENTICATED, "the auth frame's accept must be a list of strings")
    async with sessionmaker() as session:
        try:
            principal = await access_principal(session, token)
        except ServiceError as exc:
            raise _Closing(CLOSE_UNAUTHENTICATED, exc.detail) from None
    return Connection(
        device_id=principal.device.id,
        user_id=principal.user.id,
        session_id=principal.session_id,
        expires_at=principal.session_expires_at.timestamp(),  # UTCDateTime: always aware
        batches="messages" in accept,  # other values: frame kinds of a later version
    )


@router.websocket("/v1/stream")
async def stream(websocket: WebSocket) -> None:
    settings: Settings = websocket.app.state.settings
    sessionmaker: async_sessionmaker[AsyncSession] = websocket.app.state.sessionmaker
    bus: InProcessBus = websocket.app.state.bus
    gate: Gate = websocket.app.state.gate
    await websocket.accept()
    try:
        connection = await _authenticate(websocket, sessionmaker, settings)
        bus.attach(connection)
        try:
            await websocket.send_text(
                json.dumps({"type": "ready", "device_id": connection.device_id})
            )
            await _serve(websocket, settings, gate, connection)
        finally:
            bus.detach(connection)
    except _Closing as closing:
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            await websocket.close(code=closing.code, reason=closing.reason[:120])
    except WebSocketDisconnect:
        pass


# A ``messages`` frame holds at most this many pushes, and is at most this long unless it
# holds one push (a push alone is written as its ``message`` frame, of any length): well
# within the 1 MiB a client reads in a frame (the SDK's MAX_STREAM_FRAME).
BATCH_PUSHES = 64
BATCH_CHARS = 256 * 1024

_PING = json.dumps({"type": "ping"})
_PONG = json.dumps({"type": "pong"})
_RESYNC = json.dumps({"type": "resync"})


_MESSAGES = '{"type":"messages","items":['  # then the frames, joined by commas, then "]}"


async def _admitted(connection: Connection, gate: Gate, push: Push) -> list[str]:
    """The frames of ``push`` and, for a client that reads ``messages`` frames, of the pushes
    queued right behind it (up to a notice, ``BATCH_PUSHES`` or ``BATCH_CHARS``), each
    decided again for this connection; those now refused are left out (withheld).

    Pushes that a commit published together reach a connection together; one frame for them
    is one write instead of one each (a batch of five senders' messages cost 49 writes each)."""
    frames: list[str] = []
    length = len(_MESSAGES)
    while True:
        if await gate.admit(connection, push):
            frame = push.frame_for(connection.device_id)
            length += len(frame) + 1
            frames.append(frame)
        if not connection.batches or len(frames) >= BATCH_PUSHES:
            return frames
        following = connection.mailbox[0][1] if connection.mailbox else None
        if not isinstance(following, Push) or length + following.size > BATCH_CHARS:
            return frames
        connection.take()
        push = following


async def _serve(
    websocket: WebSocket, settings: Settings, gate: Gate, connection: Connection
) -> None:
    async def read() -> None:
        while True:
            try:
                frame = await _receive_text(websocket, settings.ws_idle_seconds)
            except TimeoutError:
                raise _Closing(CLOSE_IDLE, "no frame from the client in time") from None
            message = _parse(frame)
            if message["type"] == "ping":
                await websocket.send_text(_PONG)
            elif message["type"] != "pong":
                raise _Closing(CLOSE_UNSUPPORTED, f"unexpected frame type {message['type']!r}")

    async def write() -> None:
        # Ping on a timer, busy or not, so that a client that only answers pings is never
        # closed as silent while messages keep the line occupied. The timer only raises a flag
        # and wakes the writer: waiting costs no task and no timeout per push (with 49
        # listeners per message, asyncio.wait_for's task per wake-up was a tenth of the
        # server's CPU).
        loop = asyncio.get_running_loop()
        interval = settings.ws_idle_seconds / 2
        ping_due = False
        delivered = websocket.app.state.metrics.delivered_stream

        def due() -> None:
            nonlocal ping_due
            ping_due = True
            connection.wake.set()

        timer = loop.call_later(interval, due)
        try:
            while True:
                if connection.closing is not None:
                    raise _Closing(*connection.closing)
                if ping_due:
                    ping_due = False
                    await websocket.send_text(_PING)
                    timer = loop.call_later(interval, due)
                    continue
                item = connection.take()
                if item is not None:
                    if time.time() >= connection.expires_at:
                        raise _Closing(CLOSE_UNAUTHENTICATED, "the session expired; log in again")
                    if isinstance(item, str):  # a notice: decided for this user already
                        await websocket.send_text(item)
                        continue
                    frames = await _admitted(connection, gate, item)
                    if frames:
                        await websocket.send_text(
                            frames[0] if len(frames) == 1 else _MESSAGES + ",".join(frames) + "]}"
                        )
                        delivered.inc(len(frames))
                    continue
                if connection.resync:
                    connection.resync = False
                    await websocket.send_text(_RESYNC)
                    continue
                connection.wake.clear()
                await connection.wake.wait()
        finally:
            timer.cancel()

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
