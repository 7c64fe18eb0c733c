"""The race harness itself: its requests are in flight at the same time, and its verdicts
catch what they are meant to catch."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.race import Call, assert_no_server_error, one_winner, race_same

N = 8


def _rendezvous_app() -> Starlette:
    """Every request waits until all N are inside the handler at once; a harness that sent
    them one after another would time out here."""
    inside = 0
    everyone = asyncio.Event()

    async def healthz(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def meet(_: Request) -> JSONResponse:
        nonlocal inside
        inside += 1
        if inside == N:
            everyone.set()
        await asyncio.wait_for(everyone.wait(), timeout=5)
        return JSONResponse({"inside": inside})

    return Starlette(routes=[Route("/healthz", healthz), Route("/meet", meet, methods=["POST"])])


@pytest.fixture
async def rendezvous_url() -> AsyncIterator[str]:
    config = uvicorn.Config(
        _rendezvous_app(), host="127.0.0.1", port=0, lifespan="off", log_level="warning"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def test_the_requests_are_in_flight_together(rendezvous_url: str) -> None:
    responses = await race_same(rendezvous_url, Call("POST", "/meet", json={}), N)
    assert [r.status_code for r in responses] == [200] * N
    assert {r.json()["inside"] for r in responses} == {N}


def _response(status: int, body: dict[str, object] | None = None) -> httpx.Response:
    if status < 400:
        return httpx.Response(status, json=body or {})
    problem = {"type": "urn:x", "title": "t", "status": status, "detail": "d", "code": "c"}
    return httpx.Response(
        status, json=problem, headers={"content-type": "application/problem+json"}
    )


def test_one_winner_accepts_one_success_and_clear_refusals() -> None:
    winner = one_winner([_response(410), _response(201, {"id": 1}), _response(410)], refused=410)
    assert winner.json() == {"id": 1}


@pytest.mark.parametrize(
    "statuses",
    [[201, 201, 410], [410, 410, 410], [201, 500, 410], [201, 409, 410]],
    ids=["two-winners", "no-winner", "a-500", "unexpected-refusal"],
)
def test_one_winner_catches_what_it_should(statuses: list[int]) -> None:
    with pytest.raises(AssertionError):
        one_winner([_response(s) for s in statuses], refused=410)


def test_a_refusal_that_is_not_a_problem_document_is_caught() -> None:
    with pytest.raises(AssertionError):
        assert_no_server_error([httpx.Response(404, text="not found")])
