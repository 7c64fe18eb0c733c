"""Every error is RFC 9457 problem+json; bodies are bounded; /healthz and /openapi.json serve."""

from __future__ import annotations

import httpx


async def test_healthz_and_openapi(http: httpx.AsyncClient) -> None:
    assert (await http.get("/healthz")).json() == {"status": "ok"}
    spec = (await http.get("/openapi.json")).json()
    assert "/v1/auth/challenges" in spec["paths"]
    assert "/v1/users/{user_id}/clearance" in spec["paths"]


async def test_unknown_route_and_method_are_problems(http: httpx.AsyncClient) -> None:
    missing = await http.get("/v1/nope")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert missing.json()["type"] == "urn:attache:problem:not-found"
    wrong = await http.put("/healthz")
    assert wrong.status_code == 405
    assert wrong.headers["content-type"] == "application/problem+json"


async def test_malformed_json_is_a_problem(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/v1/auth/challenges", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "invalid-input"


async def test_oversized_bodies_are_refused(http: httpx.AsyncClient) -> None:
    big = b'{"device_id": "' + b"x" * (5 << 20) + b'"}'
    response = await http.post(
        "/v1/auth/challenges", content=big, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["code"] == "payload-too-large"


async def test_oversized_fields_are_refused(http: httpx.AsyncClient) -> None:
    response = await http.post("/v1/auth/challenges", json={"device_id": "x" * 65})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "device_id"
