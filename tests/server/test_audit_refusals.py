"""Every refusal of a request that touches another nation's people or content is an audit
event; identical refusals within a window are one event with a count (issue 9, item 9)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update

from server.audit import refusals
from server.audit.integrator import run_integrator
from server.audit.models import AuditEvent, AuditRefusal
from server.db.base import utcnow
from server.directory.models import User
from tests.factories import Member, World
from tests.race import Call, assert_no_server_error, race_same

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@dataclass
class Scene:
    gina: Member  # a security officer of GBR
    alice: User  # a USA user, not hers to manage


async def _scene(world: World) -> Scene:
    await world.nation("USA")
    await world.nation("GBR")
    gina = await world.member("gina", "GBR", roles=("officer", "security_officer"))
    return Scene(gina, await world.user("alice", "USA"))


async def _denials(world: World, action: str | None = None) -> list[AuditEvent]:
    async with world.app.state.sessionmaker() as session:
        stmt = select(AuditEvent).where(AuditEvent.decision == "deny").order_by(AuditEvent.id)
        if action is not None:
            stmt = stmt.where(AuditEvent.action == action)
        return list((await session.execute(stmt)).scalars().all())


async def _raw(member: Member, method: str, path: str, json: Any = None) -> httpx.Response:
    return await member.client._http.request(
        method, path, json=json, headers={"Authorization": f"Bearer {member.client.token}"}
    )


def _attempts(scene: Scene) -> dict[str, tuple[str, str, Any]]:
    """What a GBR security officer may not do to a USA user: (method, path, body)."""
    alice = scene.alice.id
    return {
        "enrolment.code_issue": ("POST", f"/v1/users/{alice}/enrolment-codes", None),
        "user.clearance": ("PUT", f"/v1/users/{alice}/clearance", {"clearance": "NATO SECRET"}),
        "user.update": ("PATCH", f"/v1/users/{alice}", {"display_name": "Mallory"}),
        "user.create": (
            "POST",
            "/v1/users",
            {"username": "mallory", "nationality": "USA", "clearance": "NATO SECRET"},
        ),
    }


@pytest.mark.parametrize(
    "action", ["enrolment.code_issue", "user.clearance", "user.update", "user.create"]
)
async def test_managing_another_nations_people_is_refused_and_audited(
    world: World, action: str
) -> None:
    scene = await _scene(world)
    method, path, body = _attempts(scene)[action]
    response = await _raw(scene.gina, method, path, body)
    assert response.status_code == 403, response.text
    (event,) = await _denials(world)
    assert event.action == action
    assert event.actor_user_id == scene.gina.user.id
    assert event.actor_nation == "GBR"
    assert event.subject_nation == "USA"
    assert event.object_id == (scene.alice.id if action != "user.create" else "mallory")
    assert event.reasons == [response.json()["detail"]]
    assert "manages only users of GBR" in event.reasons[0]
    assert event.details["count"] == 1
    # Nothing else of the refused request was kept.
    async with world.app.state.sessionmaker() as session:
        users = (await session.execute(select(func.count()).select_from(User))).scalar_one()
    assert users == 2


async def test_another_nations_device_is_not_found_and_audited(world: World) -> None:
    scene = await _scene(world)
    alice = await world.enrolled(scene.alice)
    response = await _raw(scene.gina, "GET", f"/v1/devices/{alice.device_id}")
    assert response.status_code == 404
    (event,) = await _denials(world, "device.access")
    assert (event.object_id, event.subject_nation) == (alice.device_id, "USA")
    # A device that does not exist touches nobody: nothing to audit, nothing to flood with.
    missing = await _raw(scene.gina, "GET", "/v1/devices/00000000-0000-0000-0000-000000000000")
    assert missing.status_code == 404
    assert len(await _denials(world)) == 1


async def _window(world: World) -> AuditRefusal:
    async with world.app.state.sessionmaker() as session:
        return (await session.execute(select(AuditRefusal))).scalar_one()


async def _close_windows(world: World) -> None:
    async with world.app.state.sessionmaker() as session, session.begin():
        await session.execute(
            update(AuditRefusal).values(window_start=utcnow() - 2 * refusals.WINDOW)
        )


async def test_repeated_refusals_are_one_event_with_a_count(world: World) -> None:
    scene = await _scene(world)
    method, path, body = _attempts(scene)["enrolment.code_issue"]
    for _ in range(5):
        assert (await _raw(scene.gina, method, path, body)).status_code == 403
    (first,) = await _denials(world)
    assert first.details["count"] == 1
    assert (await _window(world)).count == 5
    # A refusal that differs (another user) is another window, with its own event.
    bob = await world.user("bob", "USA")
    assert (
        await _raw(scene.gina, method, f"/v1/users/{bob.id}/enrolment-codes")
    ).status_code == 403
    assert len(await _denials(world)) == 2

    await _close_windows(world)
    async with world.app.state.sessionmaker() as session, session.begin():
        assert await refusals.log_closed_refusals(session) == 1
    first, _, repeats = await _denials(world)
    assert repeats.object_id == scene.alice.id
    assert repeats.details["count"] == 4
    assert repeats.details["repeats"] == first.uid
    assert repeats.reasons == first.reasons
    async with world.app.state.sessionmaker() as session:
        assert (
            await session.execute(select(func.count()).select_from(AuditRefusal))
        ).scalar_one() == 0
    # The counts add up to the refusals: 5 for alice, 1 for bob.
    assert sum(e.details["count"] for e in await _denials(world)) == 6


async def test_the_next_refusal_after_a_window_logs_its_count_and_opens_another(
    world: World,
) -> None:
    scene = await _scene(world)
    method, path, body = _attempts(scene)["user.clearance"]
    for _ in range(3):
        await _raw(scene.gina, method, path, body)
    await _close_windows(world)
    await _raw(scene.gina, method, path, body)
    first, repeats, opened = await _denials(world)
    assert [e.details["count"] for e in (first, repeats, opened)] == [1, 2, 1]
    assert repeats.details["repeats"] == first.uid
    window = await _window(world)
    assert (window.count, window.first_event_uid) == (1, opened.uid)


async def test_the_integrator_logs_closed_windows(world: World) -> None:
    scene = await _scene(world)
    method, path, body = _attempts(scene)["user.update"]
    for _ in range(3):
        await _raw(scene.gina, method, path, body)
    await _close_windows(world)
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_integrator(world.app.state.sessionmaker, world.app.state.audit_signer, 0.05, stop)
    )
    try:
        for _ in range(100):
            if len(await _denials(world)) == 2:
                break
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await task
    first, repeats = await _denials(world)
    assert repeats.details["count"] == 2
    # And both are in the Merkle log.
    assert first.leaf_index is not None or repeats.leaf_index is not None


async def test_a_flood_of_simultaneous_refusals_is_one_event(world: World, live_url: str) -> None:
    scene = await _scene(world)
    _, path, _ = _attempts(scene)["enrolment.code_issue"]
    headers = {"Authorization": f"Bearer {scene.gina.client.token}"}
    responses = await race_same(live_url, Call("POST", path, headers=headers), 8)
    assert_no_server_error(responses)
    assert [r.status_code for r in responses] == [403] * 8
    assert len(await _denials(world)) == 1
    assert (await _window(world)).count == 8
