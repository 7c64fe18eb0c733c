"""Small things that read as bugs (issue 10, item 7), each as a user meets it on the CLI."""

from __future__ import annotations

import asyncio
import csv
import io
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from click.testing import CliRunner, Result

from clients.cli import main
from clients.cli.terminal import csv_cell, csv_text
from clients.sdk import Committees, Messenger
from clients.sdk.documents import Documents
from tests.factories import PASSPHRASE, Member, World

AUTHORITY_PASSPHRASE = "authority passphrase for tests"


async def _invoke(member: Member, *args: str, **env: str | None) -> Result:
    base: dict[str, str | None] = {
        "ATTACHE_HOME": str(member.keystore.home),
        "ATTACHE_PASSPHRASE": PASSPHRASE,
        "ATTACHE_AUTHORITY_PASSPHRASE": AUTHORITY_PASSPHRASE,
        "COLUMNS": "200",
        "NO_COLOR": "1",
    }
    runner = CliRunner()
    return await asyncio.to_thread(
        runner.invoke, main, list(args), env=base | env, catch_exceptions=False
    )


async def _ok(member: Member, *args: str) -> str:
    result = await _invoke(member, *args)
    assert result.exit_code == 0, result.output
    return result.output


async def _refused(member: Member, *args: str, **env: str | None) -> str:
    result = await _invoke(member, *args, **env)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert "Aborted!" not in result.output
    return " ".join(result.output.split())


async def test_certify_a_device_that_awaits_it(world: World, live: str) -> None:
    await world.nation("USA")
    sam = await world.member("sam", "USA", roles=("officer", "security_officer"))
    sam.keystore.save_authority("USA", world.authorities["USA"], AUTHORITY_PASSPHRASE)
    user = await world.user("alice", "USA", clearance="NATO CONFIDENTIAL")
    alice = await world.enrolled(user, certify=False)

    # Logging in with it says whose certificate it waits for, not "no active device".
    said = await _refused(alice, "login")
    assert said == (
        f"Error: device {alice.device_id} awaits certification by USA's security officer "
        f"(sam): read them its fingerprint and ask them to run 'attache device certify "
        f"{alice.device_id} --nation USA', then log in again"
    )

    # The clearance the officer vouches for is shown as a banner, not as a Python dict.
    await _ok(sam, "login")
    out = await _ok(sam, "device", "certify", alice.device_id, "--nation", "USA", "--yes")
    assert "  clearance to vouch for: NATO CONFIDENTIAL\n" in out
    assert "{" not in out
    assert f"device {alice.device_id} is active" in out
    assert "signed in to" in await _ok(alice, "login")


async def test_plain_refusals(world: World, live: str) -> None:
    await world.nation("USA")
    alice = await world.member("alice", "USA")
    auditor = await world.member("audrey", None, roles=("auditor",))
    assert (await _invoke(auditor, "login")).exit_code == 0
    await _ok(alice, "login")

    # No event 0: said plainly, not in the server's validation terms.
    for bad in ("0", "-3"):
        said = await _refused(auditor, "audit", "prove", "--", bad)
        assert said == (
            f"Error: there is no event {bad}: event ids start at 1 (see 'attache audit log')"
        )

    # A label in small letters: said that banners are written in capitals, and how.
    said = await _refused(alice, "channel", "create", "liaison", "--ceiling", "nato secret")
    assert 'is not in capitals: banners are case-sensitive; write "NATO SECRET"' in said
    assert "unknown classification level" not in said

    # No passphrase and no terminal to ask on: which variable to set, and nothing else.
    said = await _refused(alice, "login", ATTACHE_PASSPHRASE=None)
    assert said == (
        "Error: no passphrase: set ATTACHE_PASSPHRASE (there is no terminal to ask for it on)"
    )
    said = await _refused(
        alice, "user", "clear", "alice", "NATO SECRET", "--nation", "USA",
        ATTACHE_AUTHORITY_PASSPHRASE=None,
    )  # fmt: skip
    assert "set ATTACHE_AUTHORITY_PASSPHRASE (there is no terminal" in said


async def test_the_agenda_names_its_documents_and_meetings_have_a_status(
    world: World, live: str, tmp_path: Path
) -> None:
    for nation in ("USA", "GBR"):
        await world.nation(nation)
    alice = await world.member("alice", "USA")
    bob = await world.member("bob", "GBR")
    await alice.client.create_committee("cell", "NATO SECRET", chair="alice", secretary="bob")
    messenger = await Messenger.from_client(
        bob.client, bob.keystore, bob.device_keys, owns_client=False
    )
    committees = Committees(messenger)
    starts = datetime.now(UTC) + timedelta(days=3)
    meeting = await committees.schedule_meeting("cell", starts, "Planning")
    item = await committees.add_agenda_item(meeting["id"], "Logistics")
    source = tmp_path / "fuel plan.pdf"
    source.write_bytes(b"%PDF fuel")
    version = await Documents(messenger).put("cell", source, label="NATO SECRET//REL TO USA, GBR")
    await bob.client.attach_document(meeting["id"], item["id"], version["id"])

    agenda = await _ok(alice, "meeting", "agenda", meeting["id"])
    assert (
        f"  document fuel plan.pdf, version 1, NATO SECRET//REL TO USA, GBR "
        f"(attache doc get {version['id']})\n"
    ) in agenda

    listed = await _ok(alice, "meeting", "list", "cell")
    row = next(line for line in listed.splitlines() if meeting["id"] in line)
    assert re.search(r"\bscheduled\b", row), row
    await bob.client.cancel_meeting(meeting["id"])
    listed = await _ok(alice, "meeting", "list", "cell")
    row = next(line for line in listed.splitlines() if meeting["id"] in line)
    assert re.search(r"\bcancelled\b", row), row


def test_csv_cells_a_spreadsheet_would_run_are_written_as_text() -> None:
    text = csv_text(
        ["name", "reason"],
        [
            ['=HYPERLINK("http://evil.example","open me")', "+1"],
            ["-2", "@SUM(A1)"],
            ["bob", "not cleared; a, b"],
        ],
    )
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[1] == ['\'=HYPERLINK("http://evil.example","open me")', "'+1"]
    assert rows[2] == ["'-2", "'@SUM(A1)"]
    assert rows[3] == ["bob", "not cleared; a, b"]  # nothing else changes
    assert csv_cell("\tx") == "'\tx"
