"""Every operation of the API, sent requests generated from its own OpenAPI document, valid
and not (schemathesis's positive and negative modes): none is a server error, and every
refusal is an RFC 9457 problem document.

The requests are sent by two signed-in users: a committee's chair and a user holding every
role but operator (so that the checks behind each role are reached). Path parameters are
random, and also the ids of a real channel, committee, meeting, agenda item, device and user,
so that requests get past "not found" into the checks on their bodies and queries. Operations
that end the callers' sessions or devices go last. The examples are drawn derandomized, so
every run sends the same requests; ``ATTACHE_FUZZ_EXAMPLES`` (default 8 per operation, mode
and set of path parameters) draws more, for a deeper run by hand.

This found, on PostgreSQL, NUL characters in bodies and queries and a policy version beyond
its column reaching the driver (test_bad_input.py keeps each as its own test).
"""

from __future__ import annotations

import os
import re
from typing import Any

import httpx
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode

from tests.factories import Member, World
from tests.server.test_committees import STARTS, _four

EXAMPLES = int(os.environ.get("ATTACHE_FUZZ_EXAMPLES", "8"))

# Sent last: they sign the callers out, revoke their devices, or change their accounts.
_ENDING = {
    "/v1/auth/sessions/current",
    "/v1/devices/{device_id}/revoke",
    "/v1/users/{user_id}",
    "/v1/users/{user_id}/clearance",
}


def _draw(strategy: Any, n: int) -> list[Any]:
    """``n`` cases of ``strategy``, the same every run (fewer where it has fewer)."""
    cases: list[Any] = []

    @settings(
        max_examples=n,
        database=None,
        derandomize=True,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.generate],
    )
    @given(strategy)
    def collect(case: Any) -> None:
        cases.append(case)

    try:
        collect()
    except Exception as exc:  # Unsatisfiable: an operation with nothing to vary (negative)
        if type(exc).__name__ != "Unsatisfiable":
            raise
    return cases


async def _send(http: httpx.AsyncClient, case: Any, origin: str, who: Member) -> httpx.Response:
    request = case.as_transport_kwargs(base_url=origin)
    # The document declares bearer authentication, so cases carry a made-up token: replaced.
    # Header values as bytes: generated ones may be any text, sent as its UTF-8.
    headers = {
        name: str(value).encode("utf-8")
        for name, value in (request.get("headers") or {}).items()
        if name.lower() != "authorization"
    }
    headers["authorization"] = f"Bearer {who.client.token}".encode()
    data = request.get("data")
    return await http.request(
        request["method"],
        request["url"],
        params=request.get("params"),
        headers=headers,
        content=data if isinstance(data, bytes | str) else None,
        json=request.get("json"),
    )


async def test_no_generated_request_is_a_server_error(world: World) -> None:
    t = await _four(world)
    meeting = await t.c["dieter"].schedule_meeting(t.name, STARTS, "Quarterly review", "Room 4")
    item = await t.c["dieter"].add_agenda_item(meeting["id"], "Budget", "alice")
    everything = await world.member(
        "max", "USA", roles=("officer", "disclosure_officer", "security_officer", "auditor")
    )
    real = {
        "channel": t.name,
        "committee": t.name,
        "meeting_id": meeting["id"],
        "item_id": item["id"],
        "message_id": item["message_id"],
        "device_id": t.alice.device_id,
        "user_id": t.alice.user.id,
        "user": "bob",
    }
    schema = schemathesis.openapi.from_dict(world.app.openapi())
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    operations.sort(key=lambda operation: operation.path in _ENDING)
    failures: list[str] = []
    sent = 0
    # A server error answered as the client would see it (500), not raised into the test, so
    # that every failing request is named.
    transport = httpx.ASGITransport(app=world.app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=world.origin) as http:
        for operation in operations:
            names = re.findall(r"{(\w+)}", operation.path)
            given_ids = {name: real[name] for name in names if name in real}
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                for ids in [None, given_ids] if given_ids else [None]:
                    strategy = operation.as_strategy(generation_mode=mode, path_parameters=ids)
                    for case in _draw(strategy, EXAMPLES):
                        for who in (t.alice, everything):
                            response = await _send(http, case, world.origin, who)
                            sent += 1
                            status = response.status_code
                            kind = response.headers.get("content-type", "")
                            if status >= 500 or (
                                status >= 400 and kind != "application/problem+json"
                            ):
                                failures.append(
                                    f"{operation.label} ({mode.value}): {status} {kind} for "
                                    f"{response.request.method} {response.request.url} "
                                    f"{response.request.content[:300]!r}: {response.text[:300]}"
                                )
    assert sent > 1000, sent  # the document was read and its operations reached
    assert not failures, "\n".join(failures)
