"""The websocket gateway under odd input where the auth frame is expected: a close frame with
a reason, and nothing unhandled in the server's log (issue 9, item 6)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator

import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from tests.factories import World

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

CLOSE_UNAUTHENTICATED = 4401


def _ws(url: str) -> str:
    return url.replace("http://", "ws://") + "/v1/stream"


@pytest.fixture
def server_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """What uvicorn logs for the app. Its loggers do not propagate to the root logger that
    caplog listens on, so listen on them directly."""
    loggers = [logging.getLogger(name) for name in ("uvicorn.error", "uvicorn")]
    for logger in loggers:
        logger.addHandler(caplog.handler)
    try:
        yield caplog
    finally:
        for logger in loggers:
            logger.removeHandler(caplog.handler)


async def _drain(ws: websockets.ClientConnection) -> None:
    while True:
        await asyncio.wait_for(ws.recv(), 5)


async def _close_frame(ws: websockets.ClientConnection) -> tuple[int, str]:
    with pytest.raises(ConnectionClosed) as closed:
        await _drain(ws)
    received = closed.value.rcvd
    assert received is not None, "the server dropped the connection without a close frame"
    return received.code, received.reason


@pytest.mark.parametrize(
    "frame",
    [b"\x00\x01\xff", b"", b'{"type": "auth", "token": "x"}'],
    ids=["binary", "empty-binary", "auth-as-binary"],
)
async def test_a_binary_frame_instead_of_auth_is_closed_with_a_reason(
    world: World, live_url: str, server_log: pytest.LogCaptureFixture, frame: bytes
) -> None:
    await world.nation("USA")
    alice = await world.member("alice", "USA")
    ws = await websockets.connect(_ws(live_url))
    if frame.startswith(b"{"):
        # Even a well-formed auth frame with a real token is refused when sent as binary.
        frame = json.dumps({"type": "auth", "token": alice.client.token}).encode()
    await ws.send(frame)
    code, reason = await _close_frame(ws)
    assert code == CLOSE_UNAUTHENTICATED
    assert "text" in reason
    # Let the server finish the connection before looking at its log.
    await asyncio.sleep(0.1)
    unhandled = [r for r in server_log.records if r.levelno >= logging.ERROR or r.exc_info]
    assert unhandled == [], [r.getMessage() for r in unhandled]
