"""Bad input is a 4xx, always: query parameters out of every range a database column holds,
times without a zone or at the edge of the calendar, and bodies over the limit however they
are sent. Hypothesis keeps it so for the query parameters of the audit and sync endpoints."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.factories import Member, World

INT64_MAX = 2**63 - 1
# Audit queries are recorded in the log, in canonical JSON: their integers stay below 2^53.
JSON_INT_MAX = 2**53 - 1
PROBLEM_JSON = "application/problem+json"


def _assert_client_error(response: httpx.Response, *, status: int | None = None) -> None:
    assert 400 <= response.status_code < 500, (response.request.url, response.text)
    assert response.headers["content-type"] == PROBLEM_JSON
    if status is not None:
        assert response.status_code == status, response.text


def _assert_not_server_error(response: httpx.Response) -> None:
    assert response.status_code < 500, (response.request.url, response.text)
    if response.status_code >= 400:
        assert response.headers["content-type"] == PROBLEM_JSON


async def _people(world: World) -> tuple[Member, Member]:
    """A member of channel ``liaison`` and an all-nations auditor."""
    await world.nation("USA")
    alice = await world.member("alice", "USA")
    await alice.client.create_channel("liaison", "NATO SECRET")
    return alice, await world.member("audrey", None, roles=("auditor",))


async def _auditor(world: World) -> Member:
    return (await _people(world))[1]


async def _get(world: World, member: Member, path: str, params: dict[str, str]) -> httpx.Response:
    """The raw response (the SDK would turn a refusal into an exception)."""
    headers = {"Authorization": f"Bearer {member.client.token}"}
    async with httpx.AsyncClient(
        transport=world.transport, base_url=world.origin, headers=headers
    ) as client:
        return await client.get(path, params=params)


# --- integers beyond 64 bits ------------------------------------------------------------------

_AUDIT_INTEGERS = [
    ("/v1/audit/events", "after", {}),
    ("/v1/audit/leaves", "start", {"end": "1"}),
    ("/v1/audit/leaves", "end", {"start": "0"}),
    ("/v1/audit/proofs/inclusion", "event", {}),
    ("/v1/audit/proofs/inclusion", "size", {"event": "1"}),
    ("/v1/audit/proofs/consistency", "old", {}),
    ("/v1/audit/proofs/consistency", "new", {"old": "1"}),
    ("/v1/audit/checkpoint", "size", {}),
    ("/v1/audit/witness", "old", {}),
]


@pytest.mark.parametrize("value", [2**53, 2**63, 2**64, 10**40, -(2**64)])
@pytest.mark.parametrize(("path", "name", "others"), _AUDIT_INTEGERS)
async def test_audit_integers_out_of_range_are_refused(
    world: World, path: str, name: str, others: dict[str, str], value: int
) -> None:
    auditor = await _auditor(world)
    response = await _get(world, auditor, path, {**others, name: str(value)})
    _assert_client_error(response, status=422)
    assert response.json()["errors"][0]["field"] == f"query.{name}"


async def test_the_largest_allowed_integer_is_an_ordinary_miss(world: World) -> None:
    auditor = await _auditor(world)
    events = await _get(world, auditor, "/v1/audit/events", {"after": str(JSON_INT_MAX)})
    assert events.status_code == 200, events.text
    assert events.json()["events"] == []
    # No checkpoint yet: a 404 problem, as for any other event number.
    proof = await _get(world, auditor, "/v1/audit/proofs/inclusion", {"event": str(JSON_INT_MAX)})
    _assert_client_error(proof, status=404)


@pytest.mark.parametrize("path", ["/v1/sync", "/v1/channels/liaison/messages"])
@pytest.mark.parametrize("value", [2**63, 2**64, 10**40])
async def test_sync_cursors_beyond_64_bits_are_refused(world: World, path: str, value: int) -> None:
    alice, _ = await _people(world)
    response = await _get(world, alice, path, {"after": str(value)})
    _assert_client_error(response, status=422)
    largest = await _get(world, alice, path, {"after": str(INT64_MAX)})
    assert largest.status_code == 200, largest.text


# --- times --------------------------------------------------------------------------------------


async def test_audit_times_without_a_zone_are_taken_as_utc(world: World) -> None:
    auditor = await _auditor(world)
    before = datetime.now(UTC) - timedelta(hours=1)
    naive = before.replace(tzinfo=None).isoformat()
    aware = before.isoformat()
    with_zone = await _get(
        world, auditor, "/v1/audit/events", {"since": aware, "action": "user.create"}
    )
    without = await _get(
        world, auditor, "/v1/audit/events", {"since": naive, "action": "user.create"}
    )
    assert without.status_code == 200, without.text
    assert [e["id"] for e in without.json()["events"]] == [
        e["id"] for e in with_zone.json()["events"]
    ]
    assert len(without.json()["events"]) == 2
    # An hour ahead, read as UTC, excludes everything; read as local time it might not.
    later = (datetime.now(UTC) + timedelta(hours=1)).replace(tzinfo=None).isoformat()
    none = await _get(world, auditor, "/v1/audit/events", {"since": later, "until": later + "0"})
    assert none.status_code == 200, none.text
    assert none.json()["events"] == []


@pytest.mark.parametrize(
    "value",
    [
        "9999-12-31T23:59:59-14:00",  # past year 9999 once in UTC
        "0001-01-01T00:00:00+14:00",  # before year 1 once in UTC
        "2024-02-30T00:00:00Z",
        "yesterday",
        "2024-01-01T00:00:00+25:00",
    ],
)
@pytest.mark.parametrize("name", ["since", "until"])
async def test_audit_times_out_of_range_are_refused(world: World, name: str, value: str) -> None:
    auditor = await _auditor(world)
    response = await _get(world, auditor, "/v1/audit/events", {name: value})
    _assert_client_error(response, status=422)


async def test_audit_times_at_the_calendars_edges_are_ordinary(world: World) -> None:
    auditor = await _auditor(world)
    response = await _get(
        world,
        auditor,
        "/v1/audit/events",
        {"since": "0001-01-01T00:00:00Z", "until": "9999-12-31T23:59:59Z"},
    )
    assert response.status_code == 200, response.text


# --- bodies ---------------------------------------------------------------------------------


async def _chunks(total: int, size: int = 64 << 10) -> AsyncIterator[bytes]:
    yield b'{"device_id": "'
    sent = 0
    while sent < total:
        yield b"x" * size
        sent += size
    yield b'"}'


async def test_a_chunked_body_over_the_limit_is_413(live_url: str) -> None:
    """No Content-Length to refuse up front: the limit is found while reading."""
    async with httpx.AsyncClient(base_url=live_url) as client:
        response = await client.post(
            "/v1/auth/challenges",
            content=_chunks(5 << 20),
            headers={"content-type": "application/json"},
        )
    assert "content-length" not in response.request.headers
    _assert_client_error(response, status=413)
    assert response.json()["code"] == "payload-too-large"


async def test_a_chunked_body_under_the_limit_is_read(live_url: str) -> None:
    async with httpx.AsyncClient(base_url=live_url) as client:
        response = await client.post(
            "/v1/auth/challenges",
            content=_chunks(1 << 10, size=8),
            headers={"content-type": "application/json"},
        )
    # Read in full and validated: the id is too long for a device id, not too large a body.
    _assert_client_error(response, status=422)


# --- properties: no query string makes the audit or sync endpoints fail ------------------------

_offsets = st.integers(min_value=-24 * 60 + 1, max_value=24 * 60 - 1).map(
    lambda m: timezone(timedelta(minutes=m))
)
_times = st.datetimes(timezones=st.none() | st.just(UTC) | _offsets).map(lambda d: d.isoformat())
_integers = st.integers().map(str) | st.integers(min_value=-(2**70), max_value=2**70).map(str)
_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=600)
_values = (
    _integers | _times | _text | st.sampled_from(["", "0", "-0", "1e3", "nan", "allow", "deny"])
)


def _query(names: list[str]) -> st.SearchStrategy[dict[str, str]]:
    return st.dictionaries(st.sampled_from([*names, "unknown"]), _values, max_size=len(names) + 1)


_AUDIT_QUERIES = st.one_of(
    st.tuples(
        st.just("/v1/audit/events"),
        _query(
            [
                "since",
                "until",
                "actor",
                "nation",
                "container",
                "action",
                "decision",
                "label",
                "after",
                "limit",
            ]
        ),
    ),
    st.tuples(st.just("/v1/audit/leaves"), _query(["start", "end"])),
    st.tuples(st.just("/v1/audit/proofs/inclusion"), _query(["event", "size"])),
    st.tuples(st.just("/v1/audit/proofs/consistency"), _query(["old", "new"])),
    st.tuples(st.just("/v1/audit/checkpoint"), _query(["size", "witness", "min_witnesses"])),
    st.tuples(st.just("/v1/audit/witness"), _query(["old"])),
)
_SYNC_QUERIES = st.tuples(
    st.sampled_from(["/v1/sync", "/v1/channels/liaison/messages"]), _query(["after", "limit"])
)
_PROPERTY_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture
async def people(world: World) -> tuple[Member, Member]:
    return await _people(world)


@_PROPERTY_SETTINGS
@given(request=_AUDIT_QUERIES)
async def test_no_audit_query_is_a_server_error(
    world: World, people: tuple[Member, Member], request: tuple[str, dict[str, str]]
) -> None:
    path, params = request
    _assert_not_server_error(await _get(world, people[1], path, params))


@_PROPERTY_SETTINGS
@given(request=_SYNC_QUERIES)
async def test_no_sync_query_is_a_server_error(
    world: World, people: tuple[Member, Member], request: tuple[str, dict[str, str]]
) -> None:
    path, params = request
    _assert_not_server_error(await _get(world, people[0], path, params))


async def _raw(live_url: str, request: bytes) -> bytes:
    """What the server answers to ``request`` sent as is on one connection."""
    import asyncio
    from urllib.parse import urlparse

    where = urlparse(live_url)
    reader, writer = await asyncio.open_connection(where.hostname, where.port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(64 * 1024), 10)
    finally:
        writer.close()


@pytest.mark.parametrize(
    "headers",
    [
        b"X-Big: " + b"a" * 40_000 + b"\r\n",  # one header over the total
        b"".join(b"X-Many-%d: 1\r\n" % i for i in range(200)),  # too many headers
    ],
    ids=["oversized", "too-many"],
)
async def test_oversized_or_too_many_headers_are_431(
    app: object, live_url: str, headers: bytes
) -> None:
    answer = await _raw(live_url, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 431 Request Header Fields Too Large", answer[:200]
    assert b"application/problem+json" in rest
    assert b"request-header-fields-too-large" in rest
    # Within the bounds, the same request is served.
    fine = await _raw(live_url, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Small: 1\r\n\r\n")
    assert fine.startswith(b"HTTP/1.1 200"), fine[:200]


async def test_a_websocket_handshake_with_too_many_headers_is_refused(
    app: object, live_url: str
) -> None:
    # 110 headers: within what the websocket handshake parser itself reads (128), beyond ours.
    handshake = (
        b"GET /v1/stream HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    )
    many = b"".join(b"X-Many-%d: 1\r\n" % i for i in range(110))
    refused = await _raw(live_url, handshake + many + b"\r\n")
    assert refused.startswith(b"HTTP/1.1 403"), refused[:200]
    accepted = await _raw(live_url, handshake + b"\r\n")
    assert accepted.startswith(b"HTTP/1.1 101"), accepted[:200]


# --- the NUL character, and integers beyond a 32-bit column -----------------------------------
# Found by generating requests from the OpenAPI document (test_api_fuzz.py): on PostgreSQL, each
# of these was a server error (the driver refuses NUL in text, and integers beyond a column).


async def _nul_world(world: World) -> Member:
    await world.nation("USA")
    alice = await world.member("alice", "USA", roles=("officer", "auditor"))
    await alice.client.create_channel("liaison", "NATO SECRET")
    return alice


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/channels/liaison/members", {"user": "bo\x00b"}),
        ("/v1/channels", {"name": "a\x00", "ceiling": "NATO SECRET"}),
        ("/v1/committees", {"name": "c", "ceiling": "NATO SECRET", "chair": "\x00"}),
    ],
)
async def test_nul_in_a_body_is_refused_and_nothing_is_stored(
    world: World, path: str, body: dict[str, str]
) -> None:
    alice = await _nul_world(world)
    headers = {"Authorization": f"Bearer {alice.client.token}"}
    async with httpx.AsyncClient(
        transport=world.transport, base_url=world.origin, headers=headers
    ) as client:
        refused = await client.post(path, json=body)
        _assert_client_error(refused, status=422)
        assert "NUL" in refused.text
        assert [c["name"] for c in (await client.get("/v1/channels")).json()] == ["liaison"]
        (members,) = [c["members"] for c in (await client.get("/v1/channels")).json()]
        assert len(members) == 1


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v1/audit/events", {"action": "message.\x00submit"}),
        ("/v1/audit/events", {"nation": "\x00"}),
        ("/v1/channels/lia%00son/messages", {}),
    ],
)
async def test_nul_in_a_query_or_a_path_is_refused(
    world: World, path: str, params: dict[str, str]
) -> None:
    alice = await _nul_world(world)
    refused = await _get(world, alice, path, params)
    _assert_client_error(refused, status=422)
    assert "NUL" in refused.json()["detail"]


@pytest.mark.parametrize("version", [2**31, 2**53 - 1, 10**12])
async def test_a_policy_version_beyond_its_column_is_refused(world: World, version: int) -> None:
    alice = await _nul_world(world)
    _assert_client_error(await _get(world, alice, f"/v1/policy/{version}", {}), status=422)
    # Within it, an ordinary miss.
    _assert_client_error(await _get(world, alice, f"/v1/policy/{2**31 - 1}", {}), status=404)
