"""Login: challenge-response with device keys, single-use challenges, hashed revocable tokens."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select, update

from clients.sdk import ApiError
from protocol import keys
from server.audit.models import AuditEvent
from server.auth.models import LoginChallenge, SessionToken
from server.db.base import utcnow
from tests.factories import World
from tests.race import Call, one_winner, race_same


async def _challenge(http: httpx.AsyncClient, device_id: str) -> dict[str, str]:
    response = await http.post("/v1/auth/challenges", json={"device_id": device_id})
    assert response.status_code == 201, response.text
    return dict(response.json())


def _signed(member_keys: keys.DeviceKeys, device_id: str, challenge: str, origin: str) -> str:
    payload = keys.login_payload(device_id=device_id, challenge=challenge, server_origin=origin)
    return keys.b64u_encode(keys.sign_login(member_keys, payload))


async def test_login_yields_a_working_token(world: World) -> None:
    await world.nation("USA")
    alice = await world.member("alice", "USA")
    me = await alice.client.me()
    assert me["username"] == "alice"
    assert me["nationality"] == "USA"
    assert me["clearance"] == "NATO SECRET"


async def test_token_is_stored_only_as_its_hash(world: World) -> None:
    await world.nation("USA")
    alice = await world.member("alice", "USA")
    token = alice.client.token
    assert token is not None
    async with world.app.state.sessionmaker() as session:
        rows = (await session.execute(select(SessionToken))).scalars().all()
    assert [r.token_hash for r in rows] == [hashlib.sha256(token.encode()).digest()]
    assert all(token.encode() not in (r.token_hash, r.id.encode()) for r in rows)


async def test_a_challenge_works_once(world: World, http: httpx.AsyncClient) -> None:
    await world.nation("USA")
    alice = await world.member("alice", "USA")
    challenge = await _challenge(http, alice.device_id)
    signature = _signed(alice.device_keys, alice.device_id, challenge["challenge"], world.origin)
    body = {"challenge_id": challenge["challenge_id"], "signature": signature}
    first = await http.post("/v1/auth/sessions", json=body)
    assert first.status_code == 201
    # The user as GET /v1/me gives it, clearance banner included.
    assert first.json()["user"]["clearance"] == "NATO SECRET"
    assert first.json()["user"]["clearance_canonical"]["level"] == "SECRET"
    replay = await http.post("/v1/auth/sessions", json=body)
    assert replay.status_code == 410
    assert replay.headers["content-type"] == "application/problem+json"


async def test_an_expired_challenge_is_refused(world: World, http: httpx.AsyncClient) -> None:
    await world.nation("USA")
    alice = await world.member("alice", "USA")
    challenge = await _challenge(http, alice.device_id)
    async with world.app.state.sessionmaker() as session, session.begin():
        await session.execute(
            update(LoginChallenge).values(expires_at=utcnow() - timedelta(seconds=1))
        )
    signature = _signed(alice.device_keys, alice.device_id, challenge["challenge"], world.origin)
    response = await http.post(
        "/v1/auth/sessions",
        json={"challenge_id": challenge["challenge_id"], "signature": signature},
    )
    assert response.status_code == 410


@pytest.mark.parametrize("attack", ["other-key", "other-origin", "other-device", "garbage"])
async def test_a_bad_signature_is_refused_audited_and_burns_the_challenge(
    world: World, http: httpx.AsyncClient, attack: str
) -> None:
    await world.nation("USA")
    alice = await world.member("alice", "USA")
    bob = await world.member("bob", "USA")
    challenge = await _challenge(http, alice.device_id)
    nonce = challenge["challenge"]
    signature = {
        "other-key": _signed(bob.device_keys, alice.device_id, nonce, world.origin),
        "other-origin": _signed(alice.device_keys, alice.device_id, nonce, "https://evil.example"),
        "other-device": _signed(alice.device_keys, bob.device_id, nonce, world.origin),
        "garbage": keys.b64u_encode(b"\x00" * 64),
    }[attack]
    body = {"challenge_id": challenge["challenge_id"], "signature": signature}
    response = await http.post("/v1/auth/sessions", json=body)
    assert response.status_code == 401
    assert response.json()["code"] == "authentication-required"
    async with world.app.state.sessionmaker() as session:
        denied = (
            (
                await session.execute(
                    select(AuditEvent).where(
                        AuditEvent.action == "auth.login", AuditEvent.decision == "deny"
                    )
                )
            )
            .scalars()
            .all()
        )
    assert [e.object_id for e in denied] == [alice.device_id]
    assert denied[0].reasons == ["signature does not verify"]
    # The right signature no longer helps: the challenge is spent.
    good = _signed(alice.device_keys, alice.device_id, nonce, world.origin)
    retry = await http.post(
        "/v1/auth/sessions", json={"challenge_id": challenge["challenge_id"], "signature": good}
    )
    assert retry.status_code == 410


async def test_logout_revokes_the_token(world: World) -> None:
    await world.nation("USA")
    alice = await world.member("alice", "USA")
    token = alice.client.token
    await alice.client.logout()
    stale = world.client(token)
    with pytest.raises(ApiError) as refused:
        await stale.me()
    assert refused.value.status == 401


async def test_a_pending_device_cannot_log_in(world: World, http: httpx.AsyncClient) -> None:
    await world.nation("USA")
    user = await world.user("alice", "USA")
    alice = await world.enrolled(user, certify=False)
    response = await http.post("/v1/auth/challenges", json={"device_id": alice.device_id})
    # Its owner is told what it waits for and whom to ask (issue 10, item 7).
    assert response.status_code == 409
    problem = response.json()
    assert problem["detail"].startswith(
        f"device {alice.device_id} awaits certification by USA's security officer "
        "(USA has none yet)"
    )
    assert problem["device_status"] == "pending"
    assert problem["security_officers"] == []
    sam = await world.member("sam", "USA", roles=("officer", "security_officer"))
    response = await http.post("/v1/auth/challenges", json={"device_id": alice.device_id})
    assert "awaits certification by USA's security officer (sam)" in response.json()["detail"]
    assert f"attache device certify {alice.device_id} --nation USA" in response.json()["detail"]
    assert response.json()["security_officers"] == [sam.user.username]


async def test_revoking_a_device_ends_its_sessions(world: World) -> None:
    await world.nation("USA")
    alice = await world.member("alice", "USA")
    await alice.client.revoke_device(alice.device_id, "laptop lost")
    with pytest.raises(ApiError) as refused:
        await alice.client.me()
    assert refused.value.status == 401
    with pytest.raises(ApiError) as no_challenge:
        await world.client().login(alice.device_id, alice.device_keys)
    assert no_challenge.value.status == 404


async def test_an_expired_session_is_refused(world: World) -> None:
    await world.nation("USA")
    alice = await world.member("alice", "USA")
    async with world.app.state.sessionmaker() as session, session.begin():
        await session.execute(update(SessionToken).values(expires_at=utcnow()))
    with pytest.raises(ApiError) as refused:
        await alice.client.me()
    assert refused.value.status == 401


async def test_anonymous_and_bogus_tokens_get_problem_details(http: httpx.AsyncClient) -> None:
    for headers in ({}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic eA=="}):
        response = await http.get("/v1/me", headers=headers)
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["www-authenticate"] == "Bearer"


async def test_a_challenge_raced_eight_times_opens_one_session(
    world: World, http: httpx.AsyncClient, live_url: str
) -> None:
    await world.nation("USA")
    alice = await world.member("alice", "USA")
    challenge = await _challenge(http, alice.device_id)
    signature = _signed(alice.device_keys, alice.device_id, challenge["challenge"], world.origin)
    body = {"challenge_id": challenge["challenge_id"], "signature": signature}
    responses = await race_same(live_url, Call("POST", "/v1/auth/sessions", json=body), 8)
    winner = one_winner(responses, refused=410)
    assert winner.status_code == 201
    async with world.app.state.sessionmaker() as session:
        sessions = (
            await session.execute(
                select(SessionToken).where(SessionToken.device_id == alice.device_id)
            )
        ).scalars()
        logins = (
            await session.execute(select(AuditEvent).where(AuditEvent.action == "auth.login"))
        ).scalars()
        # The member's own login from the factory, and the race's one winner.
        assert len(sessions.all()) == 2
        assert [e.decision for e in logins.all()] == ["allow", "allow"]
