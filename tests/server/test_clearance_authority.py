"""Clearances come from nations (issue 9, item 12): once a nation has a security officer, only
its security officers set the clearances of its users; an operator sets one only to bootstrap
a nation's first security officer, and the audit event says so. Refusals are problem details
and audit events."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import select

from clients.sdk import ApiError
from server.audit.models import AuditEvent
from server.directory.service import access_user
from server.errors import PROBLEM_JSON
from tests.factories import Member, World


async def _events(world: World, action: str) -> list[AuditEvent]:
    async with world.app.state.sessionmaker() as session:
        stmt = select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
        return list((await session.execute(stmt)).scalars().all())


async def _raw(member: Member, method: str, path: str, json: Any) -> httpx.Response:
    return await member.client._http.request(
        method, path, json=json, headers={"Authorization": f"Bearer {member.client.token}"}
    )


async def _clearance_of(world: World, username: str) -> dict[str, Any] | None:
    async with world.app.state.sessionmaker() as session:
        return (await access_user(session, username)).clearance


async def test_the_operator_bootstraps_a_nation_then_its_security_officers_take_over(
    world: World,
) -> None:
    await world.nation("USA")
    ops = await world.member("ops", None, roles=("operator",))
    # No security officer yet: the operator clears the first one, audited as a bootstrap.
    await ops.client.create_user(
        username="sam",
        nationality="USA",
        clearance="NATO SECRET",
        roles=["officer", "security_officer"],
    )
    (created,) = [e for e in await _events(world, "user.create") if e.subject_nation == "USA"]
    assert created.decision == "allow"
    assert created.details["bootstrap"] is True
    assert '"bootstrap":true' in created.body  # in the leaf, which auditors verify

    # USA has a security officer now: the operator is refused, with a problem and an event.
    await world.user("alice", "USA", clearance=None)
    before = await _clearance_of(world, "alice")
    refused = await _raw(ops, "PUT", "/v1/users/alice/clearance", {"clearance": "NATO TOP SECRET"})
    assert refused.status_code == 403
    assert refused.headers["content-type"].startswith(PROBLEM_JSON)
    problem = refused.json()
    assert problem["code"] == "permission-denied"
    assert problem["detail"].startswith("USA has a security officer (sam), so only USA's")
    assert problem["security_officers"] == ["sam"]
    assert await _clearance_of(world, "alice") == before
    denied = [e for e in await _events(world, "user.clearance") if e.decision == "deny"]
    assert len(denied) == 1
    assert denied[0].actor_user_id == ops.user.id
    assert denied[0].subject_nation == "USA"
    assert denied[0].reasons == [problem["detail"]]

    # Nor may the operator create a cleared user of USA (an account without one, yes).
    with pytest.raises(ApiError) as create_refused:
        await ops.client.create_user(username="bob", nationality="USA", clearance="NATO SECRET")
    assert create_refused.value.status == 403
    assert "only USA's security officers" in create_refused.value.detail
    assert [e.object_id for e in await _events(world, "user.create") if e.decision == "deny"] == [
        "bob"
    ]
    await ops.client.create_user(username="bob", nationality="USA")


async def test_only_the_nations_own_security_officers_set_its_clearances(world: World) -> None:
    await world.nation("USA")
    await world.nation("GBR")
    sam = await world.member("sam", "USA", roles=("officer", "security_officer"))
    gwen = await world.member("gwen", "GBR", roles=("officer", "security_officer"))
    ops = await world.member("ops", None, roles=("operator",))
    await world.user("alice", "USA", clearance=None)

    with pytest.raises(ApiError) as other_nation:
        await gwen.client.set_clearance("alice", "NATO SECRET", [])
    assert other_nation.value.status == 403
    assert "manages only users of GBR" in other_nation.value.detail
    with pytest.raises(ApiError) as operator:
        await ops.client.set_clearance("alice", "NATO SECRET", [])
    assert operator.value.status == 403
    assert await _clearance_of(world, "alice") is None

    updated = await sam.client.set_clearance("alice", "NATO SECRET", [])
    assert updated["clearance"] == "NATO SECRET"
    allowed = [e for e in await _events(world, "user.clearance") if e.decision == "allow"]
    assert [e.actor_user_id for e in allowed] == [sam.user.id]
    assert "bootstrap" not in allowed[0].details
    denied = [e for e in await _events(world, "user.clearance") if e.decision == "deny"]
    assert {e.actor_user_id for e in denied} == {gwen.user.id, ops.user.id}


async def test_a_nation_without_a_security_officer_is_bootstrapped_by_the_operator(
    world: World,
) -> None:
    await world.nation("USA")
    await world.nation("GBR")
    await world.member("gwen", "GBR", roles=("officer", "security_officer"))
    ops = await world.member("ops", None, roles=("operator",))
    await world.user("alice", "USA", clearance=None)
    # GBR's security officer is no security officer of USA.
    updated = await ops.client.set_clearance("alice", "NATO CONFIDENTIAL", [])
    assert updated["clearance"] == "NATO CONFIDENTIAL"
    (event,) = await _events(world, "user.clearance")
    assert event.decision == "allow"
    assert event.actor_user_id == ops.user.id
    assert event.details["bootstrap"] is True


async def test_disabling_or_unroling_the_only_security_officer_does_not_reopen_the_bootstrap(
    world: World,
) -> None:
    await world.nation("USA")
    sam = await world.member("sam", "USA", roles=("officer", "security_officer"))
    ops = await world.member("ops", None, roles=("operator",))
    await world.user("alice", "USA", clearance=None)

    # Taking the role away from USA's only security officer is USA's to do, not the operator's.
    with pytest.raises(ApiError) as unrole:
        await ops.client.update_user("sam", roles=["officer"])
    assert unrole.value.status == 403
    assert "sam is USA's only security officer" in unrole.value.detail
    assert [e.object_id for e in await _events(world, "user.update") if e.decision == "deny"] == [
        sam.user.id
    ]

    # A disabled security officer still makes USA's clearances USA's.
    await ops.client.update_user("sam", active=False)
    with pytest.raises(ApiError) as refused:
        await ops.client.set_clearance("alice", "NATO SECRET", [])
    assert refused.value.status == 403
    assert await _clearance_of(world, "alice") is None
