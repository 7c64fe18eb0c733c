"""Enrolment codes, device registration, certification by the nation's authority, revocation,
and clearance changes. A nation vouches only for its own people."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update

from clients.sdk import ApiError, certify_device, change_clearance, enroll
from protocol import enrolment, keys
from server.audit.models import AuditEvent
from server.db.base import utcnow
from server.devices.models import Device, EnrolmentCode
from tests.factories import PASSPHRASE, World
from tests.race import Call, one_winner, race, race_same


async def _count(world: World, model: Any) -> int:
    async with world.app.state.sessionmaker() as session:
        return int((await session.execute(select(func.count()).select_from(model))).scalar_one())


async def _events(world: World, action: str) -> list[AuditEvent]:
    async with world.app.state.sessionmaker() as session:
        stmt = select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
        return list((await session.execute(stmt)).scalars().all())


def _enrol_body(
    device_keys: keys.DeviceKeys, username: str, code: str, origin: str
) -> dict[str, str]:
    public = device_keys.public()
    proof = keys.sign_registration(
        device_keys,
        user=username,
        nonce=keys.b64u_encode(enrolment.code_digest(code)),
        server=origin,
    )
    return {
        "username": username,
        "code": code,
        "name": "laptop",
        "signing_key": keys.b64u_encode(public.signing_key),
        "encryption_key": keys.b64u_encode(public.encryption_key),
        "proof": keys.b64u_encode(proof),
    }


async def test_enrolment_code_works_once(world: World, http: httpx.AsyncClient) -> None:
    await world.nation("USA")
    user = await world.user("alice", "USA")
    code = await world.code(user)
    first = await http.post(
        "/v1/devices", json=_enrol_body(keys.DeviceKeys.generate(), "alice", code, world.origin)
    )
    assert first.status_code == 201, first.text
    assert first.json()["status"] == "pending"
    second = await http.post(
        "/v1/devices", json=_enrol_body(keys.DeviceKeys.generate(), "alice", code, world.origin)
    )
    assert second.status_code == 410
    assert await _count(world, Device) == 1


async def test_enrolment_code_is_typed_forgivingly(world: World, http: httpx.AsyncClient) -> None:
    await world.nation("USA")
    user = await world.user("alice", "USA")
    code = (await world.code(user)).lower().replace("-", " ")
    response = await http.post(
        "/v1/devices", json=_enrol_body(keys.DeviceKeys.generate(), "alice", code, world.origin)
    )
    assert response.status_code == 201, response.text


@pytest.mark.parametrize("case", ["expired", "other-user", "unknown"])
async def test_unusable_codes_are_refused(world: World, http: httpx.AsyncClient, case: str) -> None:
    await world.nation("USA")
    alice = await world.user("alice", "USA")
    await world.user("bob", "USA")
    code = await world.code(alice)
    username = "alice"
    if case == "expired":
        async with world.app.state.sessionmaker() as session, session.begin():
            await session.execute(update(EnrolmentCode).values(expires_at=utcnow()))
    elif case == "other-user":
        username = "bob"
    else:
        code = enrolment.new_code()
    response = await http.post(
        "/v1/devices", json=_enrol_body(keys.DeviceKeys.generate(), username, code, world.origin)
    )
    assert response.status_code == 410
    assert "enrolment code" in response.json()["detail"]
    assert await _count(world, Device) == 0


async def test_a_bad_proof_is_refused_and_keeps_the_code(
    world: World, http: httpx.AsyncClient
) -> None:
    await world.nation("USA")
    user = await world.user("alice", "USA")
    code = await world.code(user)
    body = _enrol_body(keys.DeviceKeys.generate(), "alice", code, world.origin)
    body["signing_key"] = keys.b64u_encode(keys.DeviceKeys.generate().public().signing_key)
    refused = await http.post("/v1/devices", json=body)
    assert refused.status_code == 422
    assert refused.json()["detail"].startswith("the registration proof does not verify")
    assert await _count(world, Device) == 0
    # Nothing was consumed by the failed attempt.
    retry = await http.post(
        "/v1/devices", json=_enrol_body(keys.DeviceKeys.generate(), "alice", code, world.origin)
    )
    assert retry.status_code == 201


async def test_a_device_is_pending_until_its_nation_certifies_it(world: World) -> None:
    await world.nation("USA")
    user = await world.user("alice", "USA")
    member = await world.enrolled(user, certify=False)
    device = await _pending_device(world, member.device_id)
    assert device["status"] == "pending"
    assert device["certificate"] is None
    assert device["user_clearance"] == user.clearance


def _forged(
    authority: keys.AuthorityKey, device: dict[str, Any], **overrides: Any
) -> dict[str, Any]:
    now = datetime.now(UTC)
    fields: dict[str, Any] = {
        "device_id": device["id"],
        "user_id": device["user_id"],
        "username": device["username"],
        "nationality": device["nationality"],
        "clearance": device["user_clearance"],
        "device_keys": keys.DevicePublicKeys(
            keys.b64u_decode(device["signing_key"]), keys.b64u_decode(device["encryption_key"])
        ),
        "issued_at": now,
        "expires_at": now + timedelta(days=30),
    }
    fields.update(overrides)
    return keys.issue_certificate(authority, **fields).to_json()


@pytest.mark.parametrize(
    "attack",
    [
        "other-authority",
        "other-nation-authority",
        "higher-clearance",
        "other-device-keys",
        "other-user",
        "expired",
        "tampered-body",
    ],
)
async def test_forged_certificates_are_refused(world: World, attack: str) -> None:
    usa = await world.nation("USA")
    gbr = await world.nation("GBR")
    user = await world.user("alice", "USA", clearance="NATO CONFIDENTIAL")
    bob = await world.user("bob", "USA")
    member = await world.enrolled(user, certify=False)
    client = world.client()
    device = await _pending_device(world, member.device_id)
    now = datetime.now(UTC)
    certificate = {
        "other-authority": lambda: _forged(keys.AuthorityKey.generate(), device),
        "other-nation-authority": lambda: _forged(gbr, device),
        "higher-clearance": lambda: _forged(
            usa, device, clearance={**device["user_clearance"], "level": "SECRET"}
        ),
        "other-device-keys": lambda: _forged(
            usa, device, device_keys=keys.DeviceKeys.generate().public()
        ),
        "other-user": lambda: _forged(usa, device, user_id=bob.id, username="bob"),
        "expired": lambda: _forged(
            usa, device, issued_at=now - timedelta(days=2), expires_at=now - timedelta(days=1)
        ),
        "tampered-body": lambda: _tampered(_forged(usa, device)),
    }[attack]()
    with pytest.raises(ApiError) as refused:
        await client.submit_certificate(member.device_id, certificate)
    assert refused.value.status == 422
    assert refused.value.detail.startswith("certificate refused")
    assert (await _pending_device(world, member.device_id))["status"] == "pending"
    assert await _events(world, "device.certify") == []


def _tampered(certificate: dict[str, Any]) -> dict[str, Any]:
    certificate["body"]["clearance"] = {**certificate["body"]["clearance"], "level": "TOP SECRET"}
    return certificate


async def _pending_device(world: World, device_id: str) -> dict[str, Any]:
    from server.devices.schemas import DeviceRead
    from server.directory.models import User

    async with world.app.state.sessionmaker() as session:
        device = await session.get(Device, device_id)
        assert device is not None
        user = await session.get(User, device.user_id)
        assert user is not None
        return DeviceRead.of(device, user).model_dump(mode="json")


async def test_certification_activates_and_is_audited(world: World) -> None:
    await world.nation("USA")
    alice = await world.member("alice", "USA")
    assert (await _pending_device(world, alice.device_id))["status"] == "active"
    (event,) = await _events(world, "device.certify")
    assert event.object_id == alice.device_id
    assert event.actor_nation == "USA"
    assert event.details["authority_key_id"] == world.authorities["USA"].key_id


async def test_operator_account_is_active_without_a_nation(world: World) -> None:
    operator = await world.member("ops", None, roles=("operator",))
    me = await operator.client.me()
    assert me["roles"] == ["operator"]
    assert me["nationality"] is None


async def test_security_officer_enrols_a_user_of_their_nation(world: World) -> None:
    await world.nation("USA")
    so = await world.member("sam", "USA", roles=("officer", "security_officer"))
    await world.user("alice", "USA")
    issued = await so.client.issue_enrolment_code("alice")
    store = world.keystore("alice")
    result = await enroll(
        world.origin,
        username="alice",
        code=issued["code"],
        device_name="alice-phone",
        passphrase=PASSPHRASE,
        keystore=store,
        transport=world.transport,
    )
    assert result.pinned == {"USA": world.authorities["USA"].key_id}
    pending = await so.client.devices(status="pending")
    assert [d["id"] for d in pending] == [result.device["id"]]
    done = await certify_device(so.client, "USA", world.authorities["USA"], pending[0])
    assert done["status"] == "active"
    alice_client = world.client()
    await alice_client.login(result.device["id"], store.device_keys(PASSPHRASE))
    assert (await alice_client.me())["username"] == "alice"


async def test_security_officer_of_another_nation_cannot_touch_the_user(world: World) -> None:
    await world.nation("USA")
    await world.nation("GBR")
    alice = await world.member("alice", "USA")
    gbr_so = await world.member("gwen", "GBR", roles=("officer", "security_officer"))
    attempts = {
        "code": lambda: gbr_so.client.issue_enrolment_code("alice"),
        "update": lambda: gbr_so.client.update_user("alice", display_name="Mallory"),
        "disable": lambda: gbr_so.client.update_user("alice", active=False),
        "clearance": lambda: gbr_so.client.set_clearance("alice", "NATO CONFIDENTIAL", []),
        "create": lambda: gbr_so.client.create_user(
            username="usa-spy", nationality="USA", clearance="NATO SECRET"
        ),
    }
    for name, attempt in attempts.items():
        with pytest.raises(ApiError) as refused:
            await attempt()
        assert refused.value.status == 403, name
        assert "manages only users of GBR" in refused.value.detail, name
    with pytest.raises(ApiError) as hidden:
        await gbr_so.client.revoke_device(alice.device_id)
    assert hidden.value.status == 404
    assert [d["username"] for d in await gbr_so.client.devices()] == ["gwen"]
    # Even holding an enrolment code, a GBR authority cannot vouch for a USA user's device.
    with pytest.raises(ApiError):
        await certify_device(
            gbr_so.client,
            "GBR",
            world.authorities["GBR"],
            await alice.client.device(alice.device_id),
        )
    assert (await alice.client.me())["display_name"] == ""


async def test_an_ordinary_officer_cannot_manage_users(world: World) -> None:
    await world.nation("USA")
    alice = await world.member("alice", "USA")
    await world.user("bob", "USA")
    with pytest.raises(ApiError) as refused:
        await alice.client.issue_enrolment_code("bob")
    assert refused.value.status == 403


async def test_clearance_change_recertifies_every_active_device(world: World) -> None:
    await world.nation("USA")
    so = await world.member("sam", "USA", roles=("officer", "security_officer"))
    alice = await world.member("alice", "USA")
    with pytest.raises(ApiError) as refused:
        await so.client.set_clearance("alice", "NATO CONFIDENTIAL", [])
    assert refused.value.status == 409
    assert refused.value.problem["devices"] == [alice.device_id]
    assert (await alice.client.me())["clearance"] == "NATO SECRET"  # nothing changed

    updated = await change_clearance(
        so.client, "USA", world.authorities["USA"], "alice", "NATO CONFIDENTIAL"
    )
    assert updated["clearance"] == "NATO CONFIDENTIAL"
    device = await alice.client.device(alice.device_id)
    body = keys.verify_certificate(
        keys.DeviceCertificate.from_json(device["certificate"]),
        {"USA": world.authorities["USA"].public_bytes()},
        now=datetime.now(UTC),
    )
    assert dict(body.clearance) == updated["clearance_canonical"]
    (event,) = await _events(world, "user.clearance")
    assert event.details["new"] == updated["clearance_canonical"]


async def test_revocation_is_final_and_audited(world: World) -> None:
    await world.nation("USA")
    so = await world.member("sam", "USA", roles=("officer", "security_officer"))
    alice = await world.member("alice", "USA")
    revoked = await so.client.revoke_device(alice.device_id, "lost")
    assert revoked["status"] == "revoked"
    device = await _pending_device(world, alice.device_id)
    certificate = _forged(world.authorities["USA"], device)
    with pytest.raises(ApiError) as refused:
        await so.client.submit_certificate(alice.device_id, certificate)
    assert refused.value.status == 409
    assert (await _pending_device(world, alice.device_id))["status"] == "revoked"
    (event,) = await _events(world, "device.revoke")
    assert event.details["reason"] == "lost"


@pytest.mark.parametrize("staff", [False, True], ids=["officer", "operator"])
async def test_an_enrolment_code_raced_eight_times_registers_one_device(
    world: World, live_url: str, staff: bool
) -> None:
    """Eight devices racing for one code (an operator's code would make all of them active at
    once): exactly one registers; the others are told the code is spent."""
    if staff:
        user = await world.user("root", None, roles=("operator",))
    else:
        await world.nation("USA")
        user = await world.user("alice", "USA")
    code = await world.code(user)
    calls = [
        Call(
            "POST",
            "/v1/devices",
            json=_enrol_body(keys.DeviceKeys.generate(), user.username, code, world.origin),
        )
        for _ in range(8)
    ]
    winner = one_winner(await race(live_url, calls), refused=410)
    assert winner.status_code == 201
    assert await _count(world, Device) == 1
    assert len(await _events(world, "device.register")) == 1


async def test_one_enrolment_raced_eight_times_registers_one_device(
    world: World, live_url: str
) -> None:
    """The same request eight times (a client retrying in a hurry): one device, no 500 from
    the unique signing key."""
    await world.nation("USA")
    user = await world.user("alice", "USA")
    code = await world.code(user)
    body = _enrol_body(keys.DeviceKeys.generate(), "alice", code, world.origin)
    winner = one_winner(await race_same(live_url, Call("POST", "/v1/devices", json=body), 8))
    assert winner.status_code == 201
    assert await _count(world, Device) == 1
