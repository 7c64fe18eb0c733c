"""People by name on the command line (issue 10, item 6): every option and argument that names
a user takes a username (or an id), an unknown one is a one-sentence error rather than an
empty answer, and every list shows people by name, with their ids in ``--format json``."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from click.testing import CliRunner, Result

from clients.cli import main
from clients.sdk import Committees, Messenger
from tests.factories import PASSPHRASE, Member, World

REL_USA_GBR = "NATO SECRET//REL TO USA, GBR"


async def _invoke(member: Member, *args: str) -> Result:
    env = {
        "ATTACHE_HOME": str(member.keystore.home),
        "ATTACHE_PASSPHRASE": PASSPHRASE,
        "NO_COLOR": "1",
    }
    runner = CliRunner()
    return await asyncio.to_thread(runner.invoke, main, list(args), env=env, catch_exceptions=False)


async def _ok(member: Member, *args: str) -> str:
    result = await _invoke(member, *args)
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    return result.stdout


async def _unknown(member: Member, *args: str, name: str = "alicia") -> None:
    """``args`` naming no user: one plain sentence, exit status 1, nothing on standard output."""
    result = await _invoke(member, *args)
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    assert result.stderr == f"Error: unknown user '{name}'\n"


async def _json(member: Member, *args: str) -> list[dict[str, Any]]:
    found = json.loads(await _ok(member, *args, "--format", "json"))
    assert isinstance(found, list)
    return found


async def _csv(member: Member, *args: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(await _ok(member, *args, "--format", "csv"))))


async def _messenger(member: Member) -> Messenger:
    return await Messenger.from_client(
        member.client, member.keystore, member.device_keys, owns_client=False
    )


async def test_release_list_shows_the_requester_and_decider_by_name(
    world: World, live: str
) -> None:
    for nation in ("USA", "GBR"):
        await world.nation(nation)
    alice = await world.member("alice", "USA")
    bob = await world.member("bob", "GBR")
    dora = await world.member("dora", "USA", roles=("officer", "disclosure_officer"))
    await alice.client.create_channel("liaison", "NATO SECRET")
    for name in ("bob", "dora"):
        await alice.client.add_member("liaison", name)
    for member in (alice, bob, dora):
        assert (await _invoke(member, "login")).exit_code == 0
    sent = await (await _messenger(alice)).send("liaison", "the plan", label=REL_USA_GBR)
    await _ok(bob, "release", "request", "--message", sent.message_id, "--add", "FRA")

    requests = await _json(dora, "release", "list")
    assert [(r["requested_by"], r["requested_by_username"]) for r in requests] == [
        (bob.user.id, "bob")
    ]
    assert requests[0]["decided_by"] is None
    assert requests[0]["decided_by_username"] is None
    table = await _ok(dora, "release", "list")
    assert " bob " in table
    assert bob.user.id not in table

    await _ok(dora, "release", "approve", requests[0]["id"], "--reason", "agreed")
    (row,) = await _csv(bob, "release", "list")
    assert (row["requester"], row["decided by"], row["status"]) == ("bob", "dora", "approved")
    (approved,) = await _json(bob, "release", "list")
    assert (approved["decided_by"], approved["decided_by_username"]) == (dora.user.id, "dora")


async def test_audit_log_takes_an_actor_by_name_and_shows_people_by_name(
    world: World, live: str
) -> None:
    for nation in ("USA", "GBR"):
        await world.nation(nation)
    alice = await world.member("alice", "USA")
    bob = await world.member("bob", "GBR")
    audrey = await world.member("audrey", None, roles=("auditor",))
    await alice.client.create_channel("liaison", "NATO SECRET")
    await bob.client.create_channel("london", "NATO SECRET")
    assert (await _invoke(audrey, "login")).exit_code == 0

    # By name, as it was asked for (it used to return nothing), and by id alike.
    by_name = await _json(audrey, "audit", "log", "--actor", "alice", "--action", "channel.create")
    assert [e["event"]["actor"]["user"] for e in by_name] == [alice.user.id]
    assert [e["actor_username"] for e in by_name] == ["alice"]
    by_id = await _json(
        audrey, "audit", "log", "--actor", alice.user.id, "--action", "channel.create"
    )
    assert [e["id"] for e in by_id] == [e["id"] for e in by_name]
    table = await _ok(audrey, "audit", "log", "--actor", "bob", "--action", "channel.create")
    assert " bob " in table
    assert alice.user.id not in table
    assert "alice" not in table

    # An unknown name is an error, not an empty list.
    await _unknown(audrey, "audit", "log", "--actor", "alicia")

    # The CSV: the actor by name beside the id, and a user an event is about by name.
    rows = await _csv(audrey, "audit", "log", "--action", "channel.create")
    assert {(r["actor"], r["actor_id"]) for r in rows} == {
        ("alice", alice.user.id),
        ("bob", bob.user.id),
    }
    created = await _csv(audrey, "audit", "log", "--action", "user.create")
    assert {"user:alice", "user:bob", "user:audrey"} <= {r["object"] for r in created}
    (alice_created,) = [
        e
        for e in await _json(audrey, "audit", "log", "--action", "user.create")
        if e["object_username"] == "alice"
    ]
    assert alice_created["event"]["object"]["id"] == alice.user.id


async def test_members_and_owners_by_name_or_id(world: World, live: str) -> None:
    for nation in ("USA", "GBR"):
        await world.nation(nation)
    alice = await world.member("alice", "USA", roles=("officer", "security_officer"))
    bob = await world.member("bob", "GBR")
    carol = await world.member("carol", "GBR")
    await alice.client.create_channel("liaison", "NATO SECRET")
    await alice.client.create_committee("cell", "NATO SECRET", chair="alice", secretary="bob")
    assert (await _invoke(alice, "login")).exit_code == 0

    # A channel member added and removed by id is shown by name.
    added = await _ok(alice, "channel", "add", "liaison", bob.user.id)
    assert added.startswith("bob added to liaison; members: ")
    assert await _ok(alice, "channel", "remove", "liaison", bob.user.id) == (
        "bob removed from liaison\n"
    )
    await _unknown(alice, "channel", "add", "liaison", "alicia")
    await _unknown(alice, "channel", "remove", "liaison", "alicia")

    # So in a committee.
    added = await _ok(alice, "committee", "add", "cell", carol.user.id)
    assert added.startswith("carol added to cell; members: ")
    assert await _ok(alice, "committee", "remove", "cell", carol.user.id) == (
        "carol removed from cell\n"
    )
    await _unknown(alice, "committee", "add", "cell", "alicia")

    # An action item's owner, given by id, is recorded by username; an unknown owner is refused
    # before anything is recorded.
    committees = Committees(await _messenger(alice))
    meeting = await committees.schedule_meeting("cell", datetime.now(UTC) + timedelta(days=1), "M")
    out = await _ok(
        alice, "meeting", "action", meeting["id"], "Draft the note", "--owner", bob.user.id
    )
    assert out.endswith(" recorded for bob\n")
    await _unknown(alice, "meeting", "action", meeting["id"], "Twice", "--owner", "alicia")
    agenda = await _ok(alice, "meeting", "agenda", meeting["id"])
    assert "owner: bob  due: -  status: open" in agenda
    assert "Twice" not in agenda

    # An enrolment code for a user named by id names them.
    dave = await world.user("dave", "USA")
    code = await _ok(alice, "user", "code", dave.id)
    assert code.startswith("enrolment code for dave: ")
    await _unknown(alice, "user", "code", "alicia")
