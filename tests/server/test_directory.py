"""Directory over the API: operators create nations, groups, offices and users; bad input is
refused with a message naming what was wrong, and leaves nothing behind."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from clients.sdk import ApiError
from protocol import keys
from server.audit.models import AuditEvent
from server.directory.models import Nation, Office, PartnerGroup, User
from tests.factories import Member, World


async def _count(world: World, model: Any) -> int:
    async with world.app.state.sessionmaker() as session:
        return int((await session.execute(select(func.count()).select_from(model))).scalar_one())


async def _operator(world: World) -> Member:
    return await world.member("ops", None, roles=("operator",))


async def _refused(call: Any, status: int) -> ApiError:
    with pytest.raises(ApiError) as refused:
        await call
    assert refused.value.status == status, refused.value.problem
    return refused.value


async def test_operator_builds_the_directory(world: World) -> None:
    ops = await _operator(world)
    authority = keys.AuthorityKey.generate()
    nation = await ops.client.create_nation("USA", "United States", authority.public_bytes())
    assert nation["authority_key_id"] == authority.key_id
    await ops.client.create_nation(
        "GBR", "United Kingdom", keys.AuthorityKey.generate().public_bytes()
    )
    group = await ops.client.create_group("AUKUS-ISH", ["USA", "GBR"], "test group")
    assert group == {
        "name": "AUKUS-ISH",
        "members": ["GBR", "USA"],
        "description": "test group",
        "source": "directory",
    }
    office = await ops.client.create_office("USA", "US Liaison Office", "NATO HQ")
    user = await ops.client.create_user(
        username="alice",
        display_name="Alice",
        nationality="USA",
        office_id=office["id"],
        clearance="NATO SECRET",
        roles=["officer", "security_officer"],
    )
    assert user["clearance"] == "NATO SECRET"
    assert user["roles"] == ["officer", "security_officer"]
    groups = {g["name"]: g for g in await ops.client.groups()}
    assert groups["NATO"]["source"] == "catalog"
    assert "USA" in groups["NATO"]["members"]
    assert [n["code"] for n in await ops.client.nations()] == ["GBR", "USA"]
    actions = await _actions(world)
    for action in ("nation.create", "group.create", "office.create", "user.create"):
        assert action in actions


async def _actions(world: World) -> list[str]:
    async with world.app.state.sessionmaker() as session:
        return list((await session.execute(select(AuditEvent.action))).scalars().all())


async def test_unknown_or_malformed_names_are_refused_by_name(world: World) -> None:
    ops = await _operator(world)
    key = keys.AuthorityKey.generate().public_bytes()
    await ops.client.create_nation("USA", "United States", key)
    error = await _refused(ops.client.create_nation("XYZ", "Nowhere", key), 422)
    assert "'XYZ'" in error.detail
    error = await _refused(ops.client.create_nation("usa", "lower", key), 422)
    assert error.problem["errors"][0]["field"] == "code"
    await _refused(ops.client.create_nation("USA", "again", key), 409)
    error = await _refused(ops.client.create_group("BAD", ["USA", "QQQ"]), 422)
    assert "'QQQ'" in error.detail
    await _refused(ops.client.create_group("NATO", ["USA"]), 409)
    error = await _refused(
        ops.client.create_user(username="bob", nationality="USA", clearance="NATO SEKRET"), 422
    )
    assert "SEKRET" in error.detail
    error = await _refused(
        ops.client.create_user(username="bob", nationality="USA", roles=["spy"]), 422
    )
    assert "'spy'" in error.detail
    error = await _refused(ops.client.create_user(username="bob", nationality="FRA"), 404)
    assert "'FRA'" in error.detail
    assert await _count(world, User) == 1  # only the operator
    assert await _count(world, PartnerGroup) == 0


async def test_failed_requests_leave_no_rows(world: World) -> None:
    ops = await _operator(world)
    await ops.client.create_nation(
        "USA", "United States", keys.AuthorityKey.generate().public_bytes()
    )
    before = (await _count(world, User), await _count(world, AuditEvent))
    await _refused(
        ops.client.create_user(username="bob", nationality="USA", clearance="NATO BOGUS"), 422
    )
    await _refused(ops.client.create_user(username="ops", nationality="USA"), 409)
    assert (await _count(world, User), await _count(world, AuditEvent)) == before


async def test_request_models_refuse_unknown_fields(world: World) -> None:
    ops = await _operator(world)
    response = await ops.client._http.post(
        "/v1/offices",
        json={"nation": "USA", "name": "x", "colour": "red"},
        headers={"Authorization": f"Bearer {ops.client.token}"},
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "colour"
    assert await _count(world, Office) == 0


async def test_only_operators_register_nations_groups_and_offices(world: World) -> None:
    await world.nation("USA")
    so = await world.member("sam", "USA", roles=("officer", "security_officer"))
    key = keys.AuthorityKey.generate().public_bytes()
    await _refused(so.client.create_nation("GBR", "United Kingdom", key), 403)
    await _refused(so.client.create_group("MINE", ["USA"]), 403)
    await _refused(so.client.create_office("USA", "Mine"), 403)
    assert await _count(world, Nation) == 1


async def test_nationless_users_hold_only_operator_or_auditor_roles(world: World) -> None:
    ops = await _operator(world)
    await _refused(ops.client.create_user(username="x", roles=["officer"]), 422)
    await world.nation("USA")
    await _refused(ops.client.create_user(username="y", nationality="USA", roles=["operator"]), 422)
    auditor = await ops.client.create_user(username="aud", roles=["auditor"])
    assert auditor["nationality"] is None


async def test_security_officer_creates_users_of_their_own_nation(world: World) -> None:
    await world.nation("USA")
    so = await world.member("sam", "USA", roles=("officer", "security_officer"))
    created = await so.client.create_user(
        username="alice", nationality="USA", clearance="NATO SECRET"
    )
    assert created["nationality"] == "USA"
    updated = await so.client.update_user(
        "alice", display_name="Alice A.", roles=["officer", "disclosure_officer"]
    )
    assert updated["roles"] == ["disclosure_officer", "officer"]
    async with world.app.state.sessionmaker() as session:
        (event,) = (
            (await session.execute(select(AuditEvent).where(AuditEvent.action == "user.update")))
            .scalars()
            .all()
        )
    assert event.details["changes"]["display_name"] == ["", "Alice A."]
    assert event.actor_user_id == so.user.id
