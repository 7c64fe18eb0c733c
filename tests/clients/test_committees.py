"""Committees from the SDK and the CLI: a committee of four nations whose agenda carries one
item releasable to all and one REL TO USA, GBR; each member sees, decrypted and verified, only
what was released to them.

alice (USA) chairs, bob (GBR) is secretary, chloe (FRA) and dieter (DEU) are members."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime

from click.testing import CliRunner, Result
from sqlalchemy import update

from clients.cli import main
from clients.sdk import Committees, Messenger
from server.committees.models import AgendaItem
from tests.factories import PASSPHRASE, Member, World

REL_USA_GBR = "NATO SECRET//REL TO USA, GBR"
STARTS = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


@dataclass
class Four:
    alice: Member
    bob: Member
    chloe: Member
    dieter: Member


async def _people(world: World) -> Four:
    for nation in ("USA", "GBR", "FRA", "DEU"):
        await world.nation(nation)
    return Four(
        await world.member("alice", "USA"),
        await world.member("bob", "GBR"),
        await world.member("chloe", "FRA"),
        await world.member("dieter", "DEU"),
    )


async def _committees(member: Member) -> Committees:
    messenger = await Messenger.from_client(
        member.client, member.keystore, member.device_keys, owns_client=False
    )
    return Committees(messenger)


async def test_agenda_minutes_and_action_items_round_trip(world: World) -> None:
    p = await _people(world)
    alice, bob, chloe, dieter = [await _committees(m) for m in (p.alice, p.bob, p.chloe, p.dieter)]
    await alice.create_committee("nato-liaison", "NATO SECRET", chair="alice", secretary="bob")
    for name in ("chloe", "dieter"):
        await p.bob.client.add_committee_member("nato-liaison", name)
    meeting = await bob.schedule_meeting(
        "nato-liaison", STARTS, "Quarterly review", "https://meet.example/q4"
    )
    first = await bob.add_agenda_item(meeting["id"], "Logistics", "bob", "Fuel and transport")
    second = await bob.add_agenda_item(meeting["id"], "Sources", "alice", label=REL_USA_GBR)
    await bob.reorder_agenda(meeting["id"], [second["id"], first["id"]])
    await bob.record_minutes(meeting["id"], "Agreed: fuel plan by December.")
    action = await bob.add_action_item(
        meeting["id"], "Circulate the fuel plan", "chloe", date(2026, 12, 15)
    )
    await chloe.update_action_item(action["id"], "done", "circulated")

    for reader in (alice, bob):
        agenda = await reader.agenda(meeting["id"])
        assert (agenda.title, agenda.place) == ("Quarterly review", "https://meet.example/q4")
        assert agenda.starts_at == STARTS
        assert [(i.title, i.banner) for i in agenda.items] == [
            ("Sources", REL_USA_GBR),
            ("Logistics", "NATO SECRET"),
        ]
        assert all(i.entry.verified and i.entry.sender == "bob" for i in agenda.items)
    for reader in (chloe, dieter):
        agenda = await reader.agenda(meeting["id"])
        (item,) = agenda.items
        assert (item.title, item.presenter, item.notes) == (
            "Logistics",
            "bob",
            "Fuel and transport",
        )
        assert item.banner == "NATO SECRET"
        assert agenda.minutes is not None
        assert agenda.minutes.get("text") == "Agreed: fuel plan by December."
        (act,) = agenda.action_items
        assert (act.description, act.owner, act.due) == (
            "Circulate the fuel plan",
            "chloe",
            "2026-12-15",
        )
        assert act.status == "done"
        assert [(u.sender, u.get("note")) for u in act.updates] == [("chloe", "circulated")]


async def test_an_item_pointing_at_the_wrong_kind_of_message_is_not_shown(world: World) -> None:
    p = await _people(world)
    bob = await _committees(p.bob)
    await p.alice.client.create_committee("c", "NATO SECRET", chair="alice", secretary="bob")
    meeting = await bob.schedule_meeting("c", STARTS, "Review")
    item = await bob.add_agenda_item(meeting["id"], "Logistics")
    # A server that swaps an agenda item for another message is caught by the content type.
    async with world.app.state.sessionmaker() as session, session.begin():
        await session.execute(
            update(AgendaItem)
            .where(AgendaItem.id == item["id"])
            .values(message_id=meeting["info_message_id"])
        )
    (shown,) = (await bob.agenda(meeting["id"])).items
    assert not shown.entry.verified
    assert shown.title is None
    assert "not application/vnd.attache.agenda-item+json" in (shown.entry.problem or "")


# --- the CLI ---------------------------------------------------------------------------------


def _env(member: Member) -> dict[str, str]:
    return {
        "ATTACHE_HOME": str(member.keystore.home),
        "ATTACHE_PASSPHRASE": PASSPHRASE,
        "COLUMNS": "200",
        "NO_COLOR": "1",
    }


async def _invoke(member: Member, *args: str, stdin: str | None = None) -> Result:
    runner = CliRunner()
    return await asyncio.to_thread(
        runner.invoke, main, list(args), env=_env(member), input=stdin, catch_exceptions=False
    )


async def _ok(member: Member, *args: str, stdin: str | None = None) -> str:
    result = await _invoke(member, *args, stdin=stdin)
    assert result.exit_code == 0, result.output
    return result.output


async def test_the_cli_runs_a_meeting(world: World, live: str) -> None:
    p = await _people(world)
    for member in (p.alice, p.bob, p.chloe, p.dieter):
        await _ok(member, "login")
    out = await _ok(
        p.alice,
        "committee", "create", "nato-liaison",
        "--ceiling", "NATO SECRET", "--chair", "alice", "--secretary", "bob",
    )  # fmt: skip
    assert "secretary: bob" in out
    for name in ("chloe", "dieter"):
        await _ok(p.bob, "committee", "add", "nato-liaison", name)
    assert "chloe (FRA)" in await _ok(p.dieter, "committee", "show", "nato-liaison")
    assert "nato-liaison" in await _ok(p.chloe, "committee", "list")

    out = await _ok(
        p.bob,
        "meeting", "schedule", "nato-liaison",
        "--at", "2026-12-01T10:00Z", "--title", "Quarterly review", "--place", "Room 4",
    )  # fmt: skip
    scheduled = re.match(r"meeting (\S+) scheduled for 2026-12-01 10:00 UTC", out)
    assert scheduled is not None, out
    meeting = scheduled.group(1)
    assert meeting in await _ok(p.chloe, "meeting", "list", "nato-liaison")

    ids = []
    for title, label in (("Logistics", "NATO SECRET"), ("Sources", REL_USA_GBR)):
        out = await _ok(p.bob, "meeting", "item-add", meeting, "--title", title, "--label", label)
        added = re.match(r"agenda item (\S+) added", out)
        assert added is not None, out
        ids.append(added.group(1))
    await _ok(p.bob, "meeting", "reorder", meeting, ids[1], ids[0])
    await _ok(p.bob, "meeting", "minutes", meeting, "-", stdin="Agreed the fuel plan.\n")
    out = await _ok(
        p.bob, "meeting", "action", meeting, "--owner", "chloe", "--due", "2026-12-15",
        "Circulate the fuel plan",
    )  # fmt: skip
    action = re.match(r"action item (\S+) recorded", out)
    assert action is not None, out
    await _ok(p.chloe, "meeting", "action-update", action.group(1), "--status", "done")

    seen = await _ok(p.alice, "meeting", "agenda", meeting)
    assert seen.index("Sources") < seen.index("Logistics")
    assert f"  {REL_USA_GBR}\n  Sources\n" in seen
    assert "Quarterly review" in seen
    assert "place: Room 4" in seen

    seen = await _ok(p.chloe, "meeting", "agenda", meeting)
    assert "Sources" not in seen
    assert REL_USA_GBR not in seen
    assert "  NATO SECRET\n  Logistics\n" in seen
    assert "Agreed the fuel plan." in seen
    assert "status: done" in seen

    refused = await _invoke(p.chloe, "meeting", "item-add", meeting, "--title", "Mine")
    assert refused.exit_code == 1
    assert "only the committee's chair or secretary" in refused.output
