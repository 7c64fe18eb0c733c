"""Every endpoint refuses anonymous callers unless it is deliberately public, and says why."""

from __future__ import annotations

import httpx

# Public on purpose, each for its reason:
PUBLIC = {
    ("GET", "/healthz"),  # liveness
    ("GET", "/readyz"),  # readiness, for load balancers: says only which check failed
    ("POST", "/v1/auth/challenges"),  # the start of login
    ("POST", "/v1/auth/sessions"),  # login: the device signature authenticates
    ("POST", "/v1/devices"),  # enrolment: the one-time code authenticates
    ("PUT", "/v1/devices/{device_id}/certificate"),  # the nation authority's signature does
    ("GET", "/v1/nations"),  # authority public keys, pinned by devices being enrolled
    ("GET", "/v1/policy"),  # the signed coalition policy, pinned by devices being enrolled
    ("GET", "/v1/policy/{policy_version}"),  # and its earlier versions, to verify the chain
    # and each version's publication in the audit log, checked before one is accepted
    ("GET", "/v1/policy/{policy_version}/proof"),
    ("GET", "/v1/audit/key"),  # the audit log's verifier key, pinned by auditors
}


async def test_every_other_endpoint_requires_a_session(
    app: object, http: httpx.AsyncClient
) -> None:
    spec = app.openapi()  # type: ignore[attr-defined]
    routes = [(method.upper(), path) for path, item in spec["paths"].items() for method in item]
    assert PUBLIC <= set(routes), PUBLIC - set(routes)
    checked = 0
    for method, path in routes:
        if (method, path) in PUBLIC:
            continue
        url = (
            path.replace("{user_id}", "someone")
            .replace("{device_id}", "some-device")
            .replace("{channel}", "some-channel")
            .replace("{user}", "someone")
            .replace("{committee}", "some-committee")
            .replace("{meeting_id}", "some-meeting")
            .replace("{item_id}", "some-item")
        )
        response = await http.request(method, url, json={})
        assert response.status_code == 401, (method, path, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        checked += 1
    assert checked >= 10
