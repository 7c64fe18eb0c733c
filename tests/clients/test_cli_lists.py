"""Every list of the CLI in three formats (issue 10, item 5): ``--format json`` with every id a
later command takes, ``--format csv`` with the table's columns, and the table itself, whose ids
are never folded or cut when the output is piped, however narrow the screen it would have had.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from clients.cli import main
from clients.sdk import Committees, Messenger, Releases
from clients.sdk.documents import Documents
from server.audit.integrator import integrate
from tests.factories import PASSPHRASE, Member, World


async def _invoke(member: Member, *args: str) -> Result:
    env = {
        "ATTACHE_HOME": str(member.keystore.home),
        "ATTACHE_PASSPHRASE": PASSPHRASE,
        # A screen far too narrow for any id: piped output must not care.
        "COLUMNS": "30",
        "NO_COLOR": "1",
    }
    runner = CliRunner()
    return await asyncio.to_thread(runner.invoke, main, list(args), env=env, catch_exceptions=False)


async def _ok(member: Member, *args: str) -> str:
    result = await _invoke(member, *args)
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    return result.stdout


async def _formats(
    member: Member, *args: str
) -> tuple[list[dict[str, Any]], list[dict[str, str]], list[str]]:
    """The list that ``args`` prints, as JSON, as CSV rows and as the table's lines."""
    as_json = json.loads(await _ok(member, *args, "--format", "json"))
    assert isinstance(as_json, list)
    as_csv = list(csv.DictReader(io.StringIO(await _ok(member, *args, "--format", "csv"))))
    table = (await _ok(member, *args)).splitlines()
    return as_json, as_csv, table


def _whole(table: list[str], *ids: str) -> None:
    """Each id on one line of the table, whole."""
    for value in ids:
        assert any(value in line for line in table), f"{value} folded or cut in:\n" + "\n".join(
            table
        )


async def _messenger(member: Member) -> Messenger:
    return await Messenger.from_client(
        member.client, member.keystore, member.device_keys, owns_client=False
    )


async def test_every_list_in_json_csv_and_a_whole_table(
    world: World, live: str, tmp_path: Path
) -> None:
    for nation in ("USA", "GBR"):
        await world.nation(nation)
    alice = await world.member("alice", "USA", roles=("officer", "security_officer"))
    bob = await world.member("bob", "GBR")
    audrey = await world.member("audrey", None, roles=("auditor",))
    await alice.client.create_channel("liaison", "NATO SECRET")
    await alice.client.add_member("liaison", "bob")
    await alice.client.create_committee("cell", "NATO SECRET", chair="alice", secretary="bob")
    committees = Committees(await _messenger(bob))
    now = datetime.now(UTC)
    held = await committees.schedule_meeting("cell", now - timedelta(days=2), "Last week")
    coming = await committees.schedule_meeting("cell", now + timedelta(days=5), "Next week")
    cancelled = await committees.schedule_meeting("cell", now + timedelta(days=9), "Off")
    await bob.client.cancel_meeting(cancelled["id"])
    source = tmp_path / "brief.txt"
    source.write_bytes(b"the brief")
    alice_messenger = await _messenger(alice)
    documents = Documents(alice_messenger)
    first = await documents.put("cell", source, label="NATO SECRET")
    second = await documents.put("cell", source, document_id=first["document_id"])
    narrow = await documents.put("liaison", source, label="NATO SECRET//REL TO USA, GBR")
    asked = await Releases(alice_messenger).request(
        "document_version", narrow["id"], ["FRA"], "FRA leads"
    )
    for member in (alice, bob, audrey):
        assert (await _invoke(member, "login")).exit_code == 0

    # Users: the id a script needs is in the JSON; the table and CSV by name.
    users, rows, table = await _formats(alice, "user", "list")
    assert {u["username"]: u["id"] for u in users}["bob"] == bob.user.id
    assert [r["username"] for r in rows] == [u["username"] for u in users]
    assert set(rows[0]) == {"username", "nation", "clearance", "roles", "active"}
    _whole(table, "NATO SECRET")

    # Devices: the id that 'device certify' and 'device revoke' take.
    devices, rows, table = await _formats(alice, "device", "list")
    assert [d["id"] for d in devices] == [alice.device_id]
    assert rows[0]["device"] == alice.device_id
    assert rows[0]["fingerprint"] == devices[0]["fingerprint"]
    _whole(table, alice.device_id, devices[0]["fingerprint"])

    # Channels and their members.
    channels, rows, table = await _formats(bob, "channel", "list")
    channel_ids = {c["name"]: c["id"] for c in channels}
    assert set(channel_ids) == {"liaison", "cell"}
    assert {r["channel"] for r in rows} == {"liaison", "cell"}
    members, rows, table = await _formats(bob, "channel", "members", "liaison")
    assert {m["username"]: m["user_id"] for m in members} == {
        "alice": alice.user.id,
        "bob": bob.user.id,
    }
    assert {r["user"]: r["user id"] for r in rows}["bob"] == bob.user.id
    _whole(table, alice.user.id, bob.user.id)

    # Committees and their members, with their roles.
    committees_listed, rows, _ = await _formats(bob, "committee", "list")
    assert [c["id"] for c in committees_listed] != []
    assert committees_listed[0]["channel_id"] == channel_ids["cell"]
    assert rows[0]["chair"] == "alice"
    members, rows, table = await _formats(bob, "committee", "members", "cell")
    assert {m["username"]: m["role"] for m in members} == {"alice": "chair", "bob": "secretary"}
    assert {r["user"]: r["role"] for r in rows} == {"alice": "chair", "bob": "secretary"}

    # Meetings: the id 'meeting agenda' takes, and a status in every row.
    meetings, rows, table = await _formats(alice, "meeting", "list", "cell")
    status = {m["id"]: m["status"] for m in meetings}
    assert status == {held["id"]: "held", coming["id"]: "scheduled", cancelled["id"]: "cancelled"}
    assert {r["meeting"]: r["status"] for r in rows} == status
    _whole(table, held["id"], coming["id"], cancelled["id"])
    assert any(cancelled["id"] in line and "cancelled" in line for line in table)

    # Document versions, and documents with their latest version.
    versions, rows, table = await _formats(bob, "doc", "versions", "--channel", "cell")
    assert [(v["document_id"], v["id"]) for v in versions] == [
        (first["document_id"], first["id"]),
        (first["document_id"], second["id"]),
    ]
    assert [r["version id"] for r in rows] == [first["id"], second["id"]]
    _whole(table, first["document_id"], first["id"], second["id"])
    listed, rows, table = await _formats(bob, "doc", "list", "--channel", "cell")
    assert [(d["document_id"], d["latest"]["id"]) for d in listed] == [
        (first["document_id"], second["id"])
    ]
    assert [v["id"] for v in listed[0]["versions"]] == [first["id"], second["id"]]
    assert rows == [
        {
            "document": first["document_id"],
            "file": "brief.txt",
            "versions": "2",
            "latest": "2",
            "latest version id": second["id"],
            "label": "NATO SECRET",
        }
    ]
    _whole(table, first["document_id"], second["id"])

    # Release requests: the id that 'release approve' and 'release grant' take.
    requests, rows, table = await _formats(alice, "release", "list")
    assert [(r["id"], r["item_id"]) for r in requests] == [(asked["id"], narrow["id"])]
    assert rows[0]["id"] == asked["id"]
    assert rows[0]["item"] == f"document {narrow['id']}"
    assert rows[0]["status"] == "pending"
    _whole(table, asked["id"], narrow["id"])

    # Audit events: the event id that 'audit prove' takes and the leaf index, beside the event
    # exactly as the log commits to it.
    async with world.app.state.sessionmaker() as session, session.begin():
        await integrate(session, world.app.state.audit_signer)
    events, rows, table = await _formats(audrey, "audit", "log", "--action", "channel.create")
    assert [set(e) for e in events] == [
        {"id", "leaf_index", "event", "actor_username", "object_username"}
    ] * 2
    assert [e["actor_username"] for e in events] == ["alice", "alice"]
    assert [e["event"]["action"] for e in events] == ["channel.create"] * 2
    assert all(isinstance(e["id"], int) and isinstance(e["leaf_index"], int) for e in events)
    assert [(r["id"], r["leaf"]) for r in rows] == [
        (str(e["id"]), str(e["leaf_index"])) for e in events
    ]
    _whole(table, *(f"channel:{e['event']['object']['id']}" for e in events))
    proved = await _ok(audrey, "audit", "prove", str(events[0]["id"]))
    assert re.search(rf"is leaf {events[0]['leaf_index']} of the signed log", proved), proved


async def test_a_piped_table_keeps_its_cells_whole(world: World, live: str) -> None:
    await world.nation("USA")
    alice = await world.member("alice", "USA", roles=("officer", "security_officer"))
    assert (await _invoke(alice, "login")).exit_code == 0
    table = await _ok(alice, "device", "list")
    row = next(line for line in table.splitlines() if alice.device_id in line)
    # One line holds the whole row: id, user, nation, name, status and fingerprint.
    for cell in (alice.device_id, "alice", "USA", "alice-laptop", "active"):
        assert cell in row
