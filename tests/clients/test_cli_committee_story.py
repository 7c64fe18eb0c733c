"""Issue 10's four-nation committee story, from the CLI alone, on both databases: a committee
of USA, GBR, FRA and DEU members shares an agenda document and a message REL TO USA, GBR; a
USA member who joins afterwards sees both waiting for a key from a member, and can open them
once a member's client shares them (a history grant, issue 10 item 8); the message is then
released to FRA by a GBR disclosure officer's approval, and the FRA member reads it; DEU never
gets it."""

from __future__ import annotations

import os
import re
from pathlib import Path

from tests.clients.test_committees import _invoke, _ok
from tests.factories import World

REL_USA_GBR = "NATO SECRET//REL TO USA, GBR"
REL_USA_GBR_FRA = "NATO SECRET//REL TO USA, GBR, FRA"


def _one(pattern: str, text: str) -> str:
    found = re.search(pattern, text)
    assert found is not None, text
    return found.group(1)


async def test_the_four_nation_committee_story(world: World, live: str, tmp_path: Path) -> None:
    for nation in ("USA", "GBR", "FRA", "DEU"):
        await world.nation(nation)
    alice = await world.member("alice", "USA")
    bob = await world.member("bob", "GBR")
    chloe = await world.member("chloe", "FRA")
    dieter = await world.member("dieter", "DEU")
    gwen = await world.member("gwen", "GBR", roles=("officer", "disclosure_officer"))
    dave = await world.member("dave", "USA")
    for member in (alice, bob, chloe, dieter, gwen, dave):
        await _ok(member, "login")

    # The committee, its meeting, an agenda item with a document, and a message.
    await _ok(
        alice,
        "committee", "create", "nato-liaison",
        "--ceiling", "NATO SECRET", "--chair", "alice", "--secretary", "bob",
    )  # fmt: skip
    for name in ("chloe", "dieter"):
        await _ok(bob, "committee", "add", "nato-liaison", name)
    out = await _ok(
        bob,
        "meeting", "schedule", "nato-liaison",
        "--at", "2026-12-01T10:00Z", "--title", "Quarterly review",
    )  # fmt: skip
    meeting = _one(r"meeting (\S+) scheduled", out)
    out = await _ok(
        bob, "meeting", "item-add", meeting, "--title", "Sources", "--label", REL_USA_GBR
    )
    item = _one(r"agenda item (\S+) added", out)
    source = tmp_path / "sources.pdf"
    source.write_bytes(os.urandom(70_000))
    out = await _ok(
        bob, "doc", "put", "--channel", "nato-liaison", "--label", REL_USA_GBR, str(source)
    )
    version = _one(r"version id (\S+)", out)
    await _ok(bob, "meeting", "attach", meeting, item, version)
    await _ok(bob, "send", "--channel", "nato-liaison", "--label", REL_USA_GBR, "Source report")
    message = _one(
        r"id ([0-9a-f-]{36})\nSource report", await _ok(alice, "read", "--channel", "nato-liaison")
    )

    # Dave (USA) joins afterwards: the label admits him, but he holds no key yet.
    await _ok(bob, "committee", "add", "nato-liaison", "dave")
    waiting = await _ok(dave, "read", "--channel", "nato-liaison")
    assert f"waiting for a key from a member  id {message}" in waiting
    assert "Source report" not in waiting
    assert "WARNING" not in waiting
    versions = await _invoke(dave, "doc", "versions", "--channel", "nato-liaison")
    assert versions.exit_code == 0, versions.output
    assert f"version {version} ({REL_USA_GBR}, as the server says): waiting for a key" in (
        versions.output
    )
    assert meeting not in await _ok(dave, "meeting", "list", "nato-liaison")
    early = await _invoke(dave, "doc", "get", version, "--out", str(tmp_path / "early.pdf"))
    assert early.exit_code == 1
    assert "Traceback" not in early.output

    # A member's client shares what dave may read; dave then opens both.
    shared = await _ok(alice, "channel", "share-history", "nato-liaison")
    assert f"document version {version}  {REL_USA_GBR}: shared with 1 device(s)" in shared
    assert f"id {message}  {REL_USA_GBR}: shared with 1 device(s)" in shared
    got = await _ok(dave, "doc", "get", version, "--out", str(tmp_path / "got.pdf"))
    assert "verified" in got
    assert "shared with you by alice when you joined" in got
    assert (tmp_path / "got.pdf").read_bytes() == source.read_bytes()
    agenda = await _ok(dave, "meeting", "agenda", meeting)
    assert "Quarterly review" in agenda
    assert f"  {REL_USA_GBR}\n  Sources\n" in agenda
    read = await _ok(dave, "read", "--channel", "nato-liaison")
    assert "Source report" in read
    assert "shared with you by alice when you joined" in read
    assert "waiting for a key" not in read

    shown = await _ok(bob, "message", "show", message)
    assert re.search(
        r"dave \(USA\)  device \S+, shared when they joined, as " + re.escape(REL_USA_GBR), shown
    ), shown

    # The message is released to a further nation: FRA.
    assert "Source report" not in await _ok(chloe, "read", "--channel", "nato-liaison")
    out = await _ok(
        alice, "release", "request", "--message", message, "--add", "FRA", "--reason", "FRA leads"
    )
    request = _one(r"release request (\S+):", out)
    assert request in await _ok(gwen, "release", "list", "--status", "pending")
    await _ok(gwen, "release", "approve", request, "--reason", "agreed")
    await _ok(alice, "release", "grant", request)
    released = await _ok(chloe, "read", "--channel", "nato-liaison")
    assert "Source report" in released
    assert REL_USA_GBR_FRA in released
    assert "released to you by alice" in released
    assert "Source report" not in await _ok(dieter, "read", "--channel", "nato-liaison")
    shown = await _ok(bob, "message", "show", message)
    assert re.search(
        r"chloe \(FRA\)  device \S+, by a release, as " + re.escape(REL_USA_GBR_FRA), shown
    ), shown
