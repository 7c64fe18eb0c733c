"""A read timeout on request bodies: a client that stalls mid-body is cut off with 408.

Without it a client that sends one byte of a body and then nothing holds its request (and,
for a document upload, its place among the uploads admitted) for as long as the connection
stays open. uvicorn has no such timeout of its own.
"""

from __future__ import annotations

import asyncio

from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyReadTimeout(StarletteHTTPException):
    # An HTTPException, so that FastAPI reading a JSON body passes it on to the handler of HTTP
    # errors (408) instead of turning it into a 400; a streaming endpoint catches it itself.
    def __init__(self, seconds: float) -> None:
        super().__init__(408, f"no part of the request body arrived for {seconds:g} s")


class BodyTimeout:
    """Bound the wait for each piece of an HTTP request body to ``seconds``.

    Only while the body is incomplete: once its last piece has arrived, ``receive`` waits for
    the disconnect (as a streaming response does) without a bound.
    """

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        complete = False

        async def bounded() -> Message:
            nonlocal complete
            if complete:
                return await receive()
            try:
                # A timer, not asyncio.wait_for, which runs ``receive`` as a task of its own:
                # that task was most of this middleware's cost on every request.
                async with asyncio.timeout(self.seconds):
                    message = await receive()
            except TimeoutError:
                raise BodyReadTimeout(self.seconds) from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                complete = True
            return message

        await self.app(scope, bounded, send)
