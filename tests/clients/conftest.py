"""Client fixtures: the app also served over real TCP, for websockets and the CLI.

httpx's ASGITransport cannot carry a websocket, and the CLI makes its own HTTP connections, so
``live`` serves the same in-process app with uvicorn on a socket bound before the settings are
made: the server's public URL (which login proofs are bound to) is that socket's address, and
the ``world``'s homes record it as their server.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Generator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from server.settings import Settings
from tests.factories import World


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # The test runner owns Ctrl-C.
        yield


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock
    finally:
        sock.close()


@pytest.fixture
def origin(listener: socket.socket) -> str:
    return f"http://127.0.0.1:{listener.getsockname()[1]}"


@pytest.fixture
def settings(database_url: str, tmp_path: Path, origin: str) -> Settings:
    return Settings(data_dir=tmp_path / "var", database_url=database_url, public_url=origin)


@pytest.fixture
async def world(
    app: Any, transport: httpx.ASGITransport, tmp_path: Path, origin: str
) -> AsyncIterator[World]:
    w = World(app, transport, tmp_path / "homes", origin)
    try:
        yield w
    finally:
        await w.close()


@pytest.fixture
async def live(app: Any, listener: socket.socket, origin: str) -> AsyncIterator[str]:
    """The app served on ``origin`` until the test ends."""
    config = uvicorn.Config(app, lifespan="off", log_level="warning", ws="websockets-sansio")
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[listener]))
    while not server.started:
        if task.done():
            task.result()
            pytest.fail("the test server stopped before it started")
        await asyncio.sleep(0.01)
    try:
        yield origin
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
