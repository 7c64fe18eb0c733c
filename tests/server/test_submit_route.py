"""The message submit reads its caller, limits and body by plain calls, not FastAPI's
dependencies (server/channels/endpoints.py): its answers must be the ones the declared
route gave, for good input and bad."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from server.channels import endpoints
from server.errors import PROBLEM_JSON
from tests.factories import World
from tests.server.test_channels import REL_USA_GBR, _audience, _message, _three
from tests.server.test_rate_limits import _tighten

PATH = "/v1/channels/liaison/messages"


async def _post(world: World, token: str | None, **kwargs: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    headers.update(kwargs.pop("headers", {}))
    async with httpx.AsyncClient(transport=world.transport, base_url=world.origin) as client:
        return await client.post(PATH, headers=headers, **kwargs)


def _problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    problem: dict[str, Any] = response.json()
    assert problem["code"] == code, problem
    return problem


async def test_created_then_the_same_again_is_200_with_the_stored_one(world: World) -> None:
    t = await _three(world)
    audience, key, audience_id = await _audience(t.usa, t.id, [t.usa, t.gbr])
    await t.usa.client.create_audience("liaison", audience)
    message = _message(t.usa, t.id, audience_id, key, REL_USA_GBR)
    first = await _post(world, t.usa.client.token, json=message)
    again = await _post(world, t.usa.client.token, json=message)
    assert first.status_code == 201, first.text
    assert first.headers["content-type"] == "application/json"
    assert again.status_code == 200, again.text
    assert first.json()["seq"] == again.json()["seq"]
    assert (first.json()["created"], again.json()["created"]) == (True, False)
    assert sorted(first.json()["released_to"]) == sorted([t.usa.device_id, t.gbr.device_id])


@pytest.mark.parametrize("token", [None, "not-a-token", ""])
async def test_no_or_a_bad_token_is_401_before_the_body_is_read(
    world: World, token: str | None
) -> None:
    await _three(world)
    response = await _post(world, token, content=b"{not json")
    _problem(response, 401, "authentication-required")


@pytest.mark.parametrize(
    ("content", "field"),
    [
        (b"{not json", "body"),
        (b"[]", "body"),
        (b'{"header": {}, "body": "x", "signature": "AA", "extra": 1}', "extra"),
        (b'{"body": "x", "signature": "AA"}', "header"),
    ],
)
async def test_a_bad_body_is_422_naming_the_field(world: World, content: bytes, field: str) -> None:
    t = await _three(world)
    response = await _post(
        world, t.usa.client.token, content=content, headers={"content-type": "application/json"}
    )
    problem = _problem(response, 422, "invalid-input")
    assert any(error["field"].startswith(field) for error in problem["errors"]), problem


async def test_the_rate_limit_comes_before_the_body(world: World) -> None:
    t = await _three(world)
    _tighten(world.app, submit_burst=1, submit_per_minute=1)
    first = await _post(world, t.usa.client.token, content=b"{not json")
    second = await _post(world, t.usa.client.token, content=b"{not json")
    _problem(first, 422, "invalid-input")
    _problem(second, 429, "too-many-requests")
    assert int(second.headers["retry-after"]) >= 1


async def test_the_roster_precondition_is_read_from_if_match(world: World) -> None:
    t = await _three(world)
    audience, key, audience_id = await _audience(t.usa, t.id, [t.usa, t.gbr])
    await t.usa.client.create_audience("liaison", audience)
    message = _message(t.usa, t.id, audience_id, key, REL_USA_GBR)
    response = await _post(world, t.usa.client.token, json=message, headers={"If-Match": "stale"})
    _problem(response, 412, "roster-changed")


def test_the_openapi_description_keeps_what_the_signature_no_longer_says(app: Any) -> None:
    operation = app.openapi()["paths"]["/v1/channels/{channel}/messages"]["post"]
    assert operation["security"] == [{"HTTPBearer": []}]
    assert {p["name"] for p in operation["parameters"]} == {"channel", "If-Match"}
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    assert set(body["required"]) == {"header", "body", "signature"}
    assert {"200", "201"} <= set(operation["responses"])


# --- past the router (SubmitRoute) -----------------------------------------------------------


async def test_a_submit_takes_the_short_way_and_is_counted_under_its_template(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = await _three(world)
    audience, key, audience_id = await _audience(t.usa, t.id, [t.usa, t.gbr])
    await t.usa.client.create_audience("liaison", audience)
    calls: list[str] = []
    real = endpoints.submit_message

    async def watched(channel: str, request: Any) -> Any:
        calls.append(channel)
        return await real(channel, request)

    # The router holds the declared endpoint; only the short way calls the module's name.
    monkeypatch.setattr(endpoints, "submit_message", watched)
    message = _message(t.usa, t.id, audience_id, key, REL_USA_GBR)
    created = await _post(world, t.usa.client.token, json=message)
    refused = await _post(world, t.usa.client.token, content=b"{not json")
    assert created.status_code == 201, created.text
    _problem(refused, 422, "invalid-input")
    assert calls == ["liaison", "liaison"]
    responses = world.app.state.metrics.responses
    template = "/v1/channels/{channel}/messages"
    assert responses[("POST", template, 201)].value == 1
    assert responses[("POST", template, 422)].value == 1


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("PUT", PATH, 405, "method-not-allowed"),
        ("POST", "/v1/channels/a%2Fb/messages", 404, "not-found"),
        ("POST", "/v1/channels//messages", 404, "not-found"),
        ("POST", PATH + "/", 307, None),  # the router's redirect to the path without "/"
    ],
)
async def test_what_is_not_a_submit_is_left_to_the_router(
    world: World,
    monkeypatch: pytest.MonkeyPatch,
    method: str,
    path: str,
    status: int,
    code: str | None,
) -> None:
    t = await _three(world)

    async def never(channel: str, request: Any) -> Any:
        raise AssertionError(f"taken for a submit: {method} {path}")

    monkeypatch.setattr(endpoints, "submit_message", never)
    headers = {"Authorization": f"Bearer {t.usa.client.token}"}
    async with httpx.AsyncClient(transport=world.transport, base_url=world.origin) as client:
        response = await client.request(method, path, headers=headers, content=b"{}")
    if code is None:
        assert response.status_code == status, response.text
    else:
        _problem(response, status, code)


async def test_a_get_of_the_same_path_is_the_channels_sync(world: World) -> None:
    t = await _three(world)
    async with httpx.AsyncClient(transport=world.transport, base_url=world.origin) as client:
        response = await client.get(PATH, headers={"Authorization": f"Bearer {t.usa.client.token}"})
    assert response.status_code == 200, response.text
    assert set(response.json()) == {"items", "cursor", "more"}
