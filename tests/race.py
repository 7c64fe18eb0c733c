"""A harness for races: fire many requests at a live server at the same moment.

Every single-use credential and every idempotent endpoint gets a test that sends the same (or
a conflicting) request N times at once, on SQLite and PostgreSQL (STYLE.md rule 16). The
requests travel over real sockets to the uvicorn server of the ``live_url`` fixture, each on a
connection of its own that is opened *before* the start signal, so that they reach the server
together rather than staggered by TCP handshakes.

    responses = await race(live_url, [Call("POST", "/v1/auth/sessions", json=body)] * 8)
    winner = one_winner(responses)
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

PROBLEM_JSON = "application/problem+json"


@dataclass(frozen=True)
class Call:
    """One request of a race."""

    method: str
    path: str
    json: Any = None
    content: bytes | None = None
    params: Mapping[str, str] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


async def race(
    base_url: str, calls: Sequence[Call], *, timeout: float = 60.0
) -> list[httpx.Response]:
    """Send every call at once, each over its own warmed-up connection; the responses come
    back in the order of ``calls``.

    No response is ever lost to an exception: a transport error fails the test, since a server
    that drops a connection under a race is as broken as one that answers 500.
    """
    limits = httpx.Limits(max_connections=1)
    # One TLS context for all: each client would otherwise load the CA bundle itself (~35 ms,
    # 0.8 s for a race of 24), for plain HTTP to the loopback.
    tls = httpx.create_ssl_context()
    clients = [
        httpx.AsyncClient(base_url=base_url, timeout=timeout, limits=limits, verify=tls)
        for _ in calls
    ]
    try:
        # Open every connection first (a cheap request on each), so the start is fair.
        await asyncio.gather(*(client.get("/healthz") for client in clients))
        start = asyncio.Event()

        async def fire(client: httpx.AsyncClient, call: Call) -> httpx.Response:
            request = client.build_request(
                call.method,
                call.path,
                json=call.json,
                content=call.content,
                params=call.params,
                headers=dict(call.headers),
            )
            await start.wait()
            return await client.send(request)

        tasks = [asyncio.create_task(fire(c, call)) for c, call in zip(clients, calls, strict=True)]
        # Let every task reach the start line, then release them together.
        await asyncio.sleep(0)
        start.set()
        return list(await asyncio.gather(*tasks))
    finally:
        await asyncio.gather(*(client.aclose() for client in clients))


async def race_same(base_url: str, call: Call, n: int = 8) -> list[httpx.Response]:
    """The same request ``n`` times at once."""
    return await race(base_url, [call] * n)


def describe(responses: Sequence[httpx.Response]) -> str:
    """The statuses and the first line of each body, for assertion messages."""
    return "; ".join(f"{r.status_code} {r.text[:120]}" for r in responses)


def assert_no_server_error(responses: Sequence[httpx.Response]) -> None:
    """No 5xx, and every refusal a problem+json document (RFC 9457) with a stable code."""
    assert all(r.status_code < 500 for r in responses), describe(responses)
    for r in responses:
        if r.status_code >= 400:
            assert r.headers["content-type"] == PROBLEM_JSON, describe([r])
            assert r.json()["status"] == r.status_code, describe([r])
            assert r.json()["code"], describe([r])


def one_winner(
    responses: Sequence[httpx.Response], *, refused: int | set[int] | None = None
) -> httpx.Response:
    """Exactly one success; every other response a 4xx problem (of status ``refused`` if
    given), never a 5xx. Returns the winning response."""
    assert_no_server_error(responses)
    winners = [r for r in responses if r.is_success]
    assert len(winners) == 1, describe(responses)
    losers = [r for r in responses if not r.is_success]
    expected = {refused} if isinstance(refused, int) else refused
    for r in losers:
        assert 400 <= r.status_code < 500, describe(responses)
        if expected is not None:
            assert r.status_code in expected, describe(responses)
    return winners[0]
