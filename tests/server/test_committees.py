"""Committees: roles, meetings, ordered agendas, minutes and action items, with the meaning of
each in encrypted, labelled messages of the committee's channel and only structure on the
server.

The world: a committee ``nato-liaison`` (ceiling NATO SECRET) of four nations: alice (USA,
chair), dieter (DEU, secretary), bob (GBR) and chloe (FRA); eve (USA) is no member."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select

from clients.sdk import ApiError, Committees, MessagingError, Messenger
from protocol import committees as content
from protocol import envelopes
from protocol.catalog import load_default_catalog
from protocol.labels import parse_label
from server.audit.models import AuditEvent
from server.channels.models import Channel
from server.committees.models import AgendaItem, Committee
from tests.factories import Member, World

CATALOG = load_default_catalog()
REL_USA_GBR = "NATO SECRET//REL TO USA, GBR"
STARTS = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


@dataclass
class Four:
    alice: Member  # USA, chair
    bob: Member  # GBR
    chloe: Member  # FRA
    dieter: Member  # DEU, secretary
    eve: Member  # USA, not a member
    committee: dict[str, Any]
    c: dict[str, Committees]  # by username

    @property
    def name(self) -> str:
        return str(self.committee["name"])


async def _committees(member: Member) -> Committees:
    messenger = await Messenger.from_client(
        member.client,
        member.keystore,
        member.device_keys,
        owns_client=False,
        key_transparency=member.key_transparency,
    )
    return Committees(messenger)


async def _four(world: World) -> Four:
    for nation in ("USA", "GBR", "FRA", "DEU"):
        await world.nation(nation)
    alice = await world.member("alice", "USA")
    bob = await world.member("bob", "GBR")
    chloe = await world.member("chloe", "FRA")
    dieter = await world.member("dieter", "DEU")
    eve = await world.member("eve", "USA")
    committee = await alice.client.create_committee(
        "nato-liaison", "NATO SECRET", chair="alice", secretary="dieter"
    )
    await alice.client.add_committee_member("nato-liaison", "bob")
    await dieter.client.add_committee_member("nato-liaison", "chloe")
    c = {m.user.username: await _committees(m) for m in (alice, bob, chloe, dieter, eve)}
    return Four(alice, bob, chloe, dieter, eve, committee, c)


async def _events(world: World, action: str, decision: str | None = None) -> list[AuditEvent]:
    async with world.app.state.sessionmaker() as session:
        stmt = select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
        if decision:
            stmt = stmt.where(AuditEvent.decision == decision)
        return list((await session.execute(stmt)).scalars().all())


async def _count(world: World, model: Any) -> int:
    async with world.app.state.sessionmaker() as session:
        return int((await session.execute(select(func.count()).select_from(model))).scalar_one())


async def _refused(call: Any, status: int, code: str | None = None) -> ApiError:
    with pytest.raises(ApiError) as refused:
        await call
    assert refused.value.status == status, refused.value.problem
    if code:
        assert refused.value.code == code, refused.value.problem
    return refused.value


async def _send(c: Committees, channel: str, kind: str, fields: dict[str, str], **kw: Any) -> str:
    body = content.encode(kind, fields).decode()
    sent = await c.messenger.send(channel, body, content_type=kind, **kw)
    return sent.message_id


async def _meeting(t: Four) -> dict[str, Any]:
    return await t.c["dieter"].schedule_meeting(t.name, STARTS, "Quarterly review", "Room 4")


# --- committees and members ------------------------------------------------------------------


async def test_a_committee_owns_a_channel_with_its_chair_and_secretary(world: World) -> None:
    t = await _four(world)
    found = await t.chloe.client.committee("nato-liaison")
    assert found["chair"]["username"] == "alice"
    assert found["secretary"]["username"] == "dieter"
    assert found["ceiling"] == "NATO SECRET"
    assert {m["username"] for m in found["members"]} == {"alice", "bob", "chloe", "dieter"}
    assert found["id"] == t.committee["id"]
    # The committee's channel is a channel like any other for its members.
    channel = await t.chloe.client.channel("nato-liaison")
    assert channel["id"] == found["channel_id"]
    assert [c["name"] for c in await t.bob.client.committees()] == ["nato-liaison"]
    assert await t.eve.client.committees() == []
    (event,) = await _events(world, "committee.create")
    assert event.object_id == found["id"]
    assert event.details["chair_id"] == t.alice.user.id
    assert len(await _events(world, "committee.member_add", "allow")) == 2


async def test_a_chair_not_cleared_for_the_ceiling_is_refused_before_anything_is_made(
    world: World,
) -> None:
    await world.nation("USA")
    alice = await world.member("alice", "USA")
    await world.member("carl", "USA", clearance="NATO CONFIDENTIAL")
    error = await _refused(
        alice.client.create_committee("c2", "NATO SECRET", chair="carl", secretary="alice"),
        403,
        "refused",
    )
    assert "carl" in error.detail
    assert await _count(world, Committee) == 0
    assert await _count(world, Channel) == 0
    (deny,) = await _events(world, "committee.create", "deny")
    assert deny.details["role"] == "chair"


async def test_only_the_chair_or_secretary_manages_members(world: World) -> None:
    t = await _four(world)
    await world.member("frank", "USA")
    await _refused(t.bob.client.add_committee_member(t.name, "frank"), 403, "permission-denied")
    (deny,) = await _events(world, "committee.member_add", "deny")
    assert deny.reasons == ["not the committee's chair or secretary"]
    # Nor through the channel API, which would bypass the roles.
    await _refused(t.alice.client.add_member(t.name, "frank"), 403, "permission-denied")
    assert await _events(world, "channel.member_add", "deny")
    await _refused(t.bob.client.remove_committee_member(t.name, "chloe"), 403)
    # The chair and secretary stay members; anyone may leave.
    await _refused(t.alice.client.remove_committee_member(t.name, "dieter"), 409)
    await t.dieter.client.remove_committee_member(t.name, "chloe")
    await t.bob.client.remove_committee_member(t.name, "bob")
    found = await t.alice.client.committee(t.name)
    assert {m["username"] for m in found["members"]} == {"alice", "dieter"}
    assert len(await _events(world, "committee.member_remove", "allow")) == 2


async def test_a_member_not_cleared_for_the_ceiling_is_refused_and_audited(world: World) -> None:
    t = await _four(world)
    await world.member("carl", "USA", clearance="NATO CONFIDENTIAL")
    await _refused(t.alice.client.add_committee_member(t.name, "carl"), 403, "refused")
    (deny,) = await _events(world, "committee.member_add", "deny")
    assert deny.subject_nation == "USA"
    assert any("CONFIDENTIAL" in reason for reason in deny.reasons), deny.reasons
    (channel_deny,) = await _events(world, "channel.member_add", "deny")
    assert channel_deny.reasons == deny.reasons


async def test_non_members_get_404_for_everything(world: World) -> None:
    t = await _four(world)
    meeting = await _meeting(t)
    action = await t.c["dieter"].add_action_item(meeting["id"], "Draft the note", "bob")
    eve = t.eve.client
    await _refused(eve.committee(t.name), 404)
    await _refused(eve.committee(t.committee["id"]), 404)
    await _refused(eve.meetings(t.name), 404)
    await _refused(eve.add_committee_member(t.name, "eve"), 404)
    await _refused(eve.meeting(meeting["id"]), 404)
    await _refused(eve.cancel_meeting(meeting["id"]), 404)
    await _refused(eve.add_agenda_item(meeting["id"], "x"), 404)
    await _refused(eve.reorder_agenda(meeting["id"], []), 404)
    await _refused(eve.record_minutes(meeting["id"], "x"), 404)
    await _refused(eve.action_item(action["id"]), 404)
    await _refused(eve.update_action_item(action["id"], "x"), 404)
    # Missing looks the same.
    await _refused(eve.meeting(str(uuid.uuid4())), 404)


# --- meetings and agendas --------------------------------------------------------------------


async def test_each_member_sees_only_the_agenda_items_released_to_them(world: World) -> None:
    t = await _four(world)
    meeting = await _meeting(t)
    everyone = await t.c["dieter"].add_agenda_item(meeting["id"], "Logistics", "dieter")
    restricted = await t.c["alice"].add_agenda_item(
        meeting["id"], "Sources", "alice", label=REL_USA_GBR
    )
    for member in (t.alice, t.bob):
        seen = await member.client.meeting(meeting["id"])
        assert [i["id"] for i in seen["agenda"]] == [everyone["id"], restricted["id"]]
        assert [i["position"] for i in seen["agenda"]] == [0, 1]
    for member in (t.chloe, t.dieter):
        seen = await member.client.meeting(meeting["id"])
        # Left out entirely: no placeholder, no gap in the positions.
        assert [(i["id"], i["position"]) for i in seen["agenda"]] == [(everyone["id"], 0)]
    listed = await t.chloe.client.meetings(t.name)
    assert [m["id"] for m in listed] == [meeting["id"]]
    assert listed[0]["starts_at"].startswith("2026-12-01T10:00:00")


async def test_only_the_chair_or_secretary_manages_meetings_and_agendas(world: World) -> None:
    t = await _four(world)
    info = await _send(t.c["bob"], t.name, content.MEETING, {"title": "Side meeting"})
    await _refused(
        t.bob.client.schedule_meeting(t.name, STARTS.isoformat(), info), 403, "permission-denied"
    )
    (deny,) = await _events(world, "meeting.schedule", "deny")
    assert deny.actor_user_id == t.bob.user.id

    meeting = await _meeting(t)
    item = await _send(t.c["bob"], t.name, content.AGENDA_ITEM, {"title": "Mine"})
    await _refused(t.bob.client.add_agenda_item(meeting["id"], item), 403)
    await _refused(t.bob.client.reorder_agenda(meeting["id"], []), 403)
    minutes = await _send(t.c["bob"], t.name, content.MINUTES, {"text": "..."})
    await _refused(t.bob.client.record_minutes(meeting["id"], minutes), 403)
    await _refused(t.bob.client.cancel_meeting(meeting["id"]), 403)
    for action in ("agenda.add", "agenda.reorder", "minutes.record", "meeting.cancel"):
        assert await _events(world, action, "deny"), action
    assert (await t.bob.client.meeting(meeting["id"]))["cancelled_at"] is None


async def test_reorder_takes_exactly_a_permutation(world: World) -> None:
    t = await _four(world)
    meeting = await _meeting(t)
    ids = [
        (await t.c["dieter"].add_agenda_item(meeting["id"], title))["id"]
        for title in ("one", "two", "three")
    ]
    for wrong in (ids[:2], [*ids, ids[0]], [ids[0], ids[0], ids[1]], [*ids[:2], "nope"], []):
        await _refused(t.dieter.client.reorder_agenda(meeting["id"], wrong), 422)
    reordered = await t.dieter.client.reorder_agenda(meeting["id"], [ids[2], ids[0], ids[1]])
    assert [i["id"] for i in reordered["agenda"]] == [ids[2], ids[0], ids[1]]
    await t.dieter.client.remove_agenda_item(meeting["id"], ids[0])
    seen = await t.bob.client.meeting(meeting["id"])
    assert [(i["id"], i["position"]) for i in seen["agenda"]] == [(ids[2], 0), (ids[1], 1)]
    (event,) = await _events(world, "agenda.reorder")
    assert event.details["old_order"] == ids
    assert len(await _events(world, "agenda.remove")) == 1


async def test_items_the_secretary_cannot_see_keep_their_places(world: World) -> None:
    t = await _four(world)
    meeting = await _meeting(t)
    a = (await t.c["dieter"].add_agenda_item(meeting["id"], "a"))["id"]
    hidden = (await t.c["alice"].add_agenda_item(meeting["id"], "h", label=REL_USA_GBR))["id"]
    b = (await t.c["dieter"].add_agenda_item(meeting["id"], "b"))["id"]
    # The secretary (DEU) orders what they can see; the REL TO USA, GBR item stays second.
    await _refused(t.dieter.client.reorder_agenda(meeting["id"], [b, hidden, a]), 422)
    await _refused(t.dieter.client.remove_agenda_item(meeting["id"], hidden), 404)
    await t.dieter.client.reorder_agenda(meeting["id"], [b, a])
    seen = await t.alice.client.meeting(meeting["id"])
    assert [i["id"] for i in seen["agenda"]] == [b, hidden, a]


async def test_linking_needs_the_callers_own_message_of_the_right_type_in_this_committee(
    world: World,
) -> None:
    t = await _four(world)
    meeting = await _meeting(t)
    await t.dieter.client.create_channel("side", "NATO SECRET")
    elsewhere = await _send(t.c["dieter"], "side", content.AGENDA_ITEM, {"title": "x"})
    by_alice = await _send(t.c["alice"], t.name, content.AGENDA_ITEM, {"title": "y"})
    text = (await t.c["dieter"].messenger.send(t.name, "plain text")).message_id
    for message_id in (elsewhere, by_alice, str(uuid.uuid4())):
        error = await _refused(t.dieter.client.add_agenda_item(meeting["id"], message_id), 422)
        assert error.detail == "message_id must name a message you sent in this committee"
    await _refused(t.dieter.client.add_agenda_item(meeting["id"], text), 422)
    # A meeting message is not an agenda item, and a message is linked once.
    await _refused(t.dieter.client.add_agenda_item(meeting["id"], meeting["info_message_id"]), 422)
    mine = await _send(t.c["dieter"], t.name, content.AGENDA_ITEM, {"title": "z"})
    await t.dieter.client.add_agenda_item(meeting["id"], mine)
    await _refused(t.dieter.client.add_agenda_item(meeting["id"], mine), 409)
    assert await _count(world, AgendaItem) == 1


async def test_an_agenda_item_above_the_ceiling_is_refused_by_the_message_path(
    world: World,
) -> None:
    for nation in ("USA", "GBR"):
        await world.nation(nation)
    alice = await world.member("alice", "USA")
    await world.member("bob", "GBR")
    committee = await alice.client.create_committee(
        "low", "NATO CONFIDENTIAL", chair="alice", secretary="bob"
    )
    c = await _committees(alice)
    meeting = await c.schedule_meeting("low", STARTS, "Review")
    # This client will not even try:
    with pytest.raises(MessagingError, match="you may not send NATO SECRET"):
        await c.add_agenda_item(meeting["id"], "Too high", label="NATO SECRET")
    # And the server refuses a client that does, as it refuses any such message.
    channel_id = committee["channel_id"]
    sealed, key = envelopes.create_audience(
        alice.device_keys,
        audience_id=str(uuid.uuid4()),
        container=channel_id,
        creator_user=alice.user.id,
        creator_device=alice.device_id,
        recipients=[envelopes.Recipient(alice.device_id, alice.device_keys.public())],
        created_at=datetime.now(UTC),
    )
    audience = await alice.client.create_audience(channel_id, sealed.to_json())
    message = envelopes.encrypt_message(
        alice.device_keys,
        key,
        content.encode(content.AGENDA_ITEM, {"title": "Too high"}),
        message_id=str(uuid.uuid4()),
        container=channel_id,
        sender_user=alice.user.id,
        sender_device=alice.device_id,
        audience_id=audience["audience_id"],
        sent_at=datetime.now(UTC),
        label=parse_label("NATO SECRET", CATALOG, originator="USA"),
        content_type=content.AGENDA_ITEM,
    )
    await _refused(alice.client.submit_message(channel_id, message.to_json()), 403, "refused")
    await _refused(alice.client.add_agenda_item(meeting["id"], message.header["message_id"]), 422)
    assert (await _events(world, "message.submit", "deny"))[0].label_banner == "NATO SECRET"
    assert await _count(world, AgendaItem) == 0


async def test_a_cancelled_meeting_takes_no_more_changes(world: World) -> None:
    t = await _four(world)
    meeting = await _meeting(t)
    cancelled = await t.alice.client.cancel_meeting(meeting["id"])
    assert cancelled["cancelled_at"] is not None
    await _refused(t.alice.client.cancel_meeting(meeting["id"]), 409)
    with pytest.raises(ApiError) as refused:
        await t.c["dieter"].add_agenda_item(meeting["id"], "late")
    assert refused.value.status == 409
    assert len(await _events(world, "meeting.cancel", "allow")) == 1


# --- minutes and action items ----------------------------------------------------------------


async def test_minutes_and_action_items_with_updates(world: World) -> None:
    t = await _four(world)
    meeting = await _meeting(t)
    first = await t.c["dieter"].record_minutes(meeting["id"], "Draft minutes")
    second = await t.c["dieter"].record_minutes(meeting["id"], "Final minutes")
    assert first["minutes_message_id"] != second["minutes_message_id"]
    action = await t.c["dieter"].add_action_item(meeting["id"], "Draft the note", "bob")
    hidden = await t.c["alice"].add_action_item(
        meeting["id"], "Brief London", "bob", label=REL_USA_GBR
    )
    # Any member who can see the item may post an update: the owner is encrypted.
    await t.c["bob"].update_action_item(action["id"], "in-progress")
    await t.c["chloe"].update_action_item(action["id"], "done", "sent on Friday")
    # An update must reply to its item.
    stray = await _send(t.c["bob"], t.name, content.ACTION_ITEM_UPDATE, {"status": "done"})
    await _refused(t.bob.client.update_action_item(action["id"], stray), 422)
    # Items whose label excludes someone are out of their reach entirely.
    await _refused(t.chloe.client.action_item(hidden["id"]), 404)

    seen = await t.chloe.client.meeting(meeting["id"])
    assert seen["minutes_message_id"] == second["minutes_message_id"]
    (item,) = seen["action_items"]
    assert item["id"] == action["id"]
    assert [u["created_by"] for u in item["updates"]] == [t.bob.user.id, t.chloe.user.id]
    assert [a["id"] for a in (await t.bob.client.meeting(meeting["id"]))["action_items"]] == [
        action["id"],
        hidden["id"],
    ]
    (recorded, replaced) = await _events(world, "minutes.record")
    assert replaced.details["previous_message_id"] == recorded.details["message_id"]
    assert len(await _events(world, "action_item.add")) == 2
    updates = await _events(world, "action_item.update")
    assert [e.actor_user_id for e in updates] == [t.bob.user.id, t.chloe.user.id]
