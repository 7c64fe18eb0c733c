"""``GET /v1/messages/{id}/recipients``: a message's sender sees who it was released to and the
members it was not, with the reasons the server recorded (at the send, at each release grant,
at each withheld delivery); anyone else meets a message that does not exist, and the attempt
is audited. ``GET /v1/sync/head``: the cursor of now."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select, update

from clients.sdk import ApiError, Messenger, Releases
from server.audit.models import AuditEvent
from server.directory.models import User
from server.releases.models import ItemGrant
from tests.factories import Liaison, World, liaison, messenger

REL_USA_GBR = "NATO SECRET//REL TO USA, GBR"
REL_USA_GBR_FRA = "NATO SECRET//REL TO USA, GBR, FRA"


async def _liaison(world: World) -> tuple[Liaison, Messenger]:
    """The liaison channel, and the Messenger its sender alice sends with."""
    p = await liaison(world)
    return p, await messenger(p.alice)


def _people(found: list[dict[str, object]]) -> set[tuple[object, ...]]:
    return {(r["username"], r["nation"], r["device_id"], r["grant_id"]) for r in found}


async def test_the_sender_sees_who_it_reached_and_who_not(world: World) -> None:
    p, am = await _liaison(world)
    sent = await am.send("liaison", "the plan", label=REL_USA_GBR)
    # Bob's clearance is lowered after the send: his delivery is withheld, and recorded.
    async with world.app.state.sessionmaker() as session, session.begin():
        await session.execute(
            update(User)
            .where(User.id == p.bob.user.id)
            .values(clearance={"policy": "NATO", "level": "CONFIDENTIAL", "categories": {}})
        )
    assert (await p.bob.client.sync())["items"] == []

    found = await p.alice.client.message_recipients(sent.message_id)
    assert (found["message_id"], found["seq"], found["channel"], found["committee"]) == (
        sent.message_id,
        sent.seq,
        "liaison",
        False,
    )
    assert (found["label"], found["sent_label"]) == (REL_USA_GBR, REL_USA_GBR)
    assert _people(found["released_to"]) == {
        ("alice", "USA", p.alice.device_id, None),
        ("bob", "GBR", p.bob.device_id, None),
        ("dora", "USA", p.dora.device_id, None),
    }
    assert {r["label"] for r in found["released_to"]} == {REL_USA_GBR}
    assert all(r["reasons"] == [] for r in found["released_to"])
    (chloe,) = found["not_released"]
    assert (chloe["user_id"], chloe["username"], chloe["nation"], chloe["device_id"]) == (
        p.chloe.user.id,
        "chloe",
        "FRA",
        None,
    )
    assert chloe["reasons"] == ["nationality FRA not in REL TO USA, GBR"]
    (bob,) = found["withheld"]
    assert (bob["username"], bob["nation"], bob["device_id"]) == ("bob", "GBR", p.bob.device_id)
    assert bob["reasons"] == ["clearance NATO CONFIDENTIAL below NATO SECRET"]


async def test_a_release_is_shown_as_one(world: World) -> None:
    p, am = await _liaison(world)
    sent = await am.send("liaison", "the plan", label=REL_USA_GBR)
    bm, dm = await messenger(p.bob), await messenger(p.dora)
    request = await Releases(bm).request("message", sent.message_id, ["FRA"], "FRA leads")
    await Releases(dm).approve(request["id"], "agreed")
    await Releases(bm).grant(request["id"])
    async with world.app.state.sessionmaker() as session:
        (grant,) = (await session.execute(select(ItemGrant))).scalars().all()

    found = await p.alice.client.message_recipients(sent.message_id)
    assert (found["label"], found["sent_label"]) == (REL_USA_GBR_FRA, REL_USA_GBR)
    by_release = [r for r in found["released_to"] if r["grant_id"] is not None]
    assert _people(by_release) == {("chloe", "FRA", p.chloe.device_id, grant.id)}
    assert by_release[0]["label"] == REL_USA_GBR_FRA
    assert len(found["released_to"]) == 4
    assert found["not_released"] == []


async def test_to_anyone_else_it_does_not_exist(world: World, http: httpx.AsyncClient) -> None:
    p, am = await _liaison(world)
    sent = await am.send("liaison", "the plan", label=REL_USA_GBR)
    # A member who holds it, one who does not, and the sender asking for an unknown id.
    for member, ref in (
        (p.bob, sent.message_id),
        (p.chloe, sent.message_id),
        (p.alice, "nothing-here"),
    ):
        response = await http.get(
            f"/v1/messages/{ref}/recipients",
            headers={"Authorization": f"Bearer {member.client.token}"},
        )
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert (problem["code"], problem["detail"]) == ("not-found", f"no message '{ref}' of yours")
    anonymous = await http.get(f"/v1/messages/{sent.message_id}/recipients")
    assert anonymous.status_code == 401
    # The sender who has left the channel no longer sees its members.
    await p.alice.client.remove_member("liaison", "alice")
    with pytest.raises(ApiError) as gone:
        await p.alice.client.message_recipients(sent.message_id)
    assert gone.value.status == 404

    async with world.app.state.sessionmaker() as session:
        denied = (
            (
                await session.execute(
                    select(AuditEvent)
                    .where(AuditEvent.action == "message.recipients")
                    .order_by(AuditEvent.id)
                )
            )
            .scalars()
            .all()
        )
    assert [(e.actor_user_id, e.decision, e.object_id, e.reasons) for e in denied] == [
        (
            p.bob.user.id,
            "deny",
            sent.message_id,
            ["only its sender sees who a message was released to"],
        ),
        (
            p.chloe.user.id,
            "deny",
            sent.message_id,
            ["only its sender sees who a message was released to"],
        ),
        (p.alice.user.id, "deny", sent.message_id, ["not a member"]),
    ]


async def test_sync_head_is_the_cursor_of_now(world: World) -> None:
    p, am = await _liaison(world)
    assert await p.chloe.client.sync_head() == 0
    await am.send("liaison", "before", label=REL_USA_GBR)
    head = await p.chloe.client.sync_head()
    assert head > 0  # a message not for her counts: a sync from it skips nothing of hers
    after = await am.send("liaison", "after")
    page = await p.chloe.client.sync(after=head)
    assert [item["seq"] for item in page["items"]] == [after.seq]
    assert await p.chloe.client.sync_head() == after.seq
