"""What read and listen show (issue 10, items 1 and 2): a committee's own content as what it
is, the warning only for what failed to verify (and read's exit status then), each message's
id, and from that id a release from the command line and the sender's view of who a message
was released to and who not (``attache message show``, ``GET /v1/messages/{id}/recipients``).
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select, update

from clients.sdk import Committees, Messenger
from server.audit.models import AuditEvent
from server.channels.models import Message
from tests.clients.test_cli_messages import _fails, _invoke, _ok
from tests.factories import Member, World, liaison, messenger

REL_USA_GBR = "NATO SECRET//REL TO USA, GBR"
REL_USA_GBR_FRA = "NATO SECRET//REL TO USA, GBR, FRA"
ID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


@dataclass
class Cell:
    alice: Member  # USA, the chair
    bob: Member  # GBR, the secretary
    chloe: Member  # FRA
    am: Messenger
    bm: Messenger


async def _cell(world: World) -> Cell:
    for nation in ("USA", "GBR", "FRA"):
        await world.nation(nation)
    alice = await world.member("alice", "USA")
    bob = await world.member("bob", "GBR")
    chloe = await world.member("chloe", "FRA")
    am, bm = await messenger(alice), await messenger(bob)
    await Committees(am).create_committee("cell", "NATO SECRET", chair="alice", secretary="bob")
    await bob.client.add_committee_member("cell", "chloe")
    return Cell(alice, bob, chloe, am, bm)


async def _meeting(c: Cell) -> None:
    """A meeting with an agenda item, minutes, an action item and an update to it."""
    committees = Committees(c.bm)
    meeting = await committees.schedule_meeting(
        "cell", datetime(2026, 12, 1, 10, tzinfo=UTC), "Planning", "Room 4"
    )
    await committees.add_agenda_item(meeting["id"], "Logistics", "bob", "fuel first")
    await committees.record_minutes(meeting["id"], "Fuel agreed.")
    action = await committees.add_action_item(meeting["id"], "Book the hall", "chloe", "2026-12-05")
    await committees.update_action_item(action["id"], "done", "booked")


# --- item 1: no false alarms -------------------------------------------------------------------


async def test_read_shows_committee_content_as_what_it_is(world: World, live: str) -> None:
    c = await _cell(world)
    await _meeting(c)
    await c.am.send("cell", "plain words too")

    shown = await _ok(c.chloe, "read", "--channel", "cell")
    assert "WARNING" not in shown
    assert "could not be verified" not in shown
    for line in [
        "meeting: Planning",
        "place: Room 4",
        "agenda item: Logistics",
        "presenter: bob",
        "notes: fuel first",
        "minutes:\nFuel agreed.",
        "action item: Book the hall",
        "owner: chloe  due: 2026-12-05  status: open",
        "action item update: status done",
        "note: booked",
        "plain words too",
    ]:
        assert line in shown, line
    # Each item between its banners, with its sender and id.
    assert len(re.findall(rf"^#\d+  from bob \(GBR\)  .* UTC  id {ID}$", shown, re.M)) == 5
    update_of = re.search(rf"^\(on action item message ({ID})\)$", shown, re.M)
    assert update_of is not None
    assert f"id {update_of.group(1)}" in shown


async def test_read_fails_only_for_what_failed_to_verify(world: World, live: str) -> None:
    c = await _cell(world)
    await _meeting(c)
    sent = await c.am.send("cell", "the plan", label=REL_USA_GBR)
    future = await c.am.send("cell", "{}", content_type="application/vnd.example.poll+json")
    # Whoever holds the server's database relabels one message for display.
    async with world.app.state.sessionmaker() as session, session.begin():
        await session.execute(
            update(Message).where(Message.id == sent.message_id).values(label_banner="NATO SECRET")
        )

    shown = await _fails(c.bob, "read", "--channel", "cell")
    warnings = re.findall(r"^#(\d+)  WARNING: this message could not be verified", shown, re.M)
    assert warnings == [str(sent.seq)]
    assert "the plan" not in shown
    assert "Error: 1 of 7 message(s) could not be verified: see the warnings above" in shown
    # A verified message of a type this client does not show is no failure: it says so.
    assert re.search(
        rf"^#{future.seq}  from alice \(USA\)  .*\n\(content of type "
        r"application/vnd\.example\.poll\+json, which this client does not show\)$",
        shown,
        re.M,
    )
    assert "meeting: Planning" in shown

    # Chloe was not given the relabelled message: everything she was given verifies.
    assert "WARNING" not in await _ok(c.chloe, "read", "--channel", "cell")


async def test_a_malformed_committee_body_is_a_warning(world: World, live: str) -> None:
    c = await _cell(world)
    await c.bm.send(
        "cell", '{"place": "Room 4"}', content_type="application/vnd.attache.meeting+json"
    )
    shown = await _fails(c.chloe, "read", "--channel", "cell")
    assert "WARNING: this message could not be verified and is not shown: its meeting" in shown
    assert "content is malformed" in shown


async def test_listen_on_a_committee_shows_its_content_and_where(world: World, live: str) -> None:
    c = await _cell(world)
    listening = asyncio.create_task(_invoke(c.chloe, "listen", "--count", "2"))
    while world.app.state.bus.subscribers < 1:
        await asyncio.sleep(0.02)
    await Committees(c.bm).schedule_meeting(
        "cell", datetime(2026, 12, 1, 10, tzinfo=UTC), "Planning", "Room 4"
    )
    await c.am.send("cell", "see you there")
    result = await asyncio.wait_for(listening, 20)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "WARNING" not in out
    assert re.search(
        rf"^#\d+  from bob \(GBR\)  .* UTC  in committee cell  id {ID}\nmeeting: Planning\n"
        r"place: Room 4\nNATO SECRET$",
        out,
        re.M,
    ), out
    assert re.search(
        rf"^#\d+  from alice \(USA\)  .* UTC  in committee cell  id {ID}\nsee you there$",
        out,
        re.M,
    ), out


# --- item 2: a message can be released from the CLI --------------------------------------------


def _line(out: str, pattern: str) -> re.Match[str]:
    found = re.search(pattern, out, re.M)
    assert found is not None, (pattern, out)
    return found


async def test_release_a_message_from_the_command_line(world: World, live: str) -> None:
    p = await liaison(world)
    await _ok(p.alice, "send", "--channel", "liaison", "--label", REL_USA_GBR, "the plan")
    # Bob finds the message's id where he reads it, and asks for it to be released to FRA.
    read = await _ok(p.bob, "read", "--channel", "liaison")
    message_id = _line(read, rf"^#\d+  from alice \(USA\)  .* UTC  id ({ID})$").group(1)

    # Before the release: alice sees who has it and who not, with the recorded reasons.
    before = await _ok(p.alice, "message", "show", message_id)
    assert f"message {message_id}: #" in before
    _line(before, r" in channel liaison, sent \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC as ")
    assert f" as {REL_USA_GBR}\n" in before
    assert "released to 3 device(s):" in before
    for who in ("alice (USA)", "bob (GBR)", "dora (USA)"):
        _line(before, rf"^  {re.escape(who)}  device {ID}, at the send, as {REL_USA_GBR}$")
    assert "not released to 1 member(s):\n  chloe (FRA): nationality FRA not in REL TO" in before
    assert "released since" not in before

    out = await _ok(
        p.bob, "release", "request", "--message", message_id, "--add", "FRA", "--reason", "cell"
    )
    request_id = _line(out, r"^release request (\S+): message ").group(1)
    await _ok(p.dora, "release", "approve", request_id, "--reason", "agreed")
    await _ok(p.bob, "release", "grant", request_id)

    # Chloe reads it now, released to her by bob, with the same id.
    shown = await _ok(p.chloe, "read", "--channel", "liaison")
    assert f"id {message_id}" in shown
    assert f"released to you by bob (sent as {REL_USA_GBR})\nthe plan\n{REL_USA_GBR_FRA}" in shown

    after = await _ok(p.alice, "message", "show", message_id)
    assert f"released since as {REL_USA_GBR_FRA}" in after
    assert "released to 4 device(s):" in after
    _line(after, rf"^  chloe \(FRA\)  device {ID}, by a release, as {re.escape(REL_USA_GBR_FRA)}$")
    assert "not released to: no member was refused" in after


async def test_only_the_sender_sees_who_a_message_reached(world: World, live: str) -> None:
    p = await liaison(world)
    await _ok(p.alice, "send", "--channel", "liaison", "--label", REL_USA_GBR, "the plan")
    read = await _ok(p.bob, "read", "--channel", "liaison")
    message_id = _line(read, rf"id ({ID})$").group(1)

    as_json = json.loads(await _ok(p.alice, "message", "show", message_id, "--format", "json"))
    assert as_json["message_id"] == message_id
    assert {r["user_id"] for r in as_json["not_released"]} == {p.chloe.user.id}
    assert {r["user_id"] for r in as_json["released_to"]} == {
        p.alice.user.id,
        p.bob.user.id,
        p.dora.user.id,
    }

    refused = await _fails(p.bob, "message", "show", message_id)
    assert f"Error: no message '{message_id}' of yours" in refused
    unknown = await _fails(p.alice, "message", "show", "no-such-message")
    assert "Error: no message 'no-such-message' of yours" in unknown
    async with world.app.state.sessionmaker() as session:
        denied = (
            (
                await session.execute(
                    select(AuditEvent).where(AuditEvent.action == "message.recipients")
                )
            )
            .scalars()
            .all()
        )
    assert [(e.actor_user_id, e.decision, e.object_id) for e in denied] == [
        (p.bob.user.id, "deny", message_id)
    ]
    assert denied[0].reasons == ["only its sender sees who a message was released to"]
