"""attache channel / send / read / listen against the app served over TCP.

The CLI runs its own event loop, so each invocation runs in a worker thread while the test's
loop serves the app.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import update

from clients.cli import main
from clients.sdk import Messenger
from server.channels.models import Message
from tests.factories import PASSPHRASE, Member, World
from tests.server.test_rate_limits import _tighten

REL_USA_GBR = "NATO SECRET//REL TO USA, GBR"


@dataclass
class People:
    alice: Member
    bob: Member
    chloe: Member


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


async def _fails(member: Member, *args: str, stdin: str | None = None) -> str:
    result = await _invoke(member, *args, stdin=stdin)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    return result.output


@pytest.fixture
async def people(world: World, live: str) -> People:
    for nation in ("USA", "GBR", "FRA"):
        await world.nation(nation)
    alice = await world.member("alice", "USA")
    bob = await world.member("bob", "GBR")
    chloe = await world.member("chloe", "FRA")
    await alice.client.create_channel("liaison", "NATO SECRET")
    await alice.client.add_member("liaison", "bob")
    await alice.client.add_member("liaison", "chloe")
    return People(alice, bob, chloe)


async def test_send_and_read(people: People) -> None:
    out = await _ok(people.alice, "send", "--channel", "liaison", "--label", REL_USA_GBR, "hello")
    sent = re.fullmatch(r"sent #(\d+) to liaison as (.+), released to 2 device\(s\)\n", out)
    assert sent is not None, out
    assert sent.group(2) == REL_USA_GBR

    shown = (await _ok(people.bob, "read", "--channel", "liaison")).splitlines()
    assert shown[0] == REL_USA_GBR
    assert shown[1].startswith(f"#{sent.group(1)}  from alice (USA)  ")
    assert re.search(r" UTC  id [0-9a-f-]{36}$", shown[1]), shown[1]
    assert shown[2] == "hello"
    assert shown[3] == REL_USA_GBR

    assert "no messages for you in liaison" in await _ok(
        people.chloe, "read", "--channel", "liaison"
    )


async def test_send_reads_standard_input_and_uses_the_default_label(people: People) -> None:
    out = await _ok(people.bob, "send", "--channel", "liaison", stdin="from stdin\nline two\n")
    assert "as NATO SECRET, released to 3 device(s)" in out
    shown = await _ok(people.chloe, "read", "--channel", "liaison")
    assert "from bob (GBR)" in shown
    assert "from stdin\nline two\nNATO SECRET\n" in shown


async def test_errors_are_plain_sentences(people: People) -> None:
    assert "Error: no channel 'nowhere' of yours" in await _fails(
        people.alice, "send", "--channel", "nowhere", "x"
    )
    assert "Error: label 'NATO SEKRET'" in await _fails(
        people.alice, "send", "--channel", "liaison", "--label", "NATO SEKRET", "x"
    )
    assert "nationality GBR not in REL TO USA" in await _fails(
        people.bob, "send", "--channel", "liaison", "--label", "NATO SECRET//REL TO USA", "x"
    )
    assert "Error: nothing to send" in await _fails(
        people.alice, "send", "--channel", "liaison", stdin="\n"
    )


async def test_a_rate_limit_is_a_plain_sentence(people: People, world: World) -> None:
    _tighten(world.app, submit_burst=1, submit_per_minute=1)
    await _ok(people.alice, "send", "--channel", "liaison", "one")
    out = await _fails(people.alice, "send", "--channel", "liaison", "two")
    assert re.search(r"too many messages from this device; try again in \d+ s", out), out
    assert "nothing was done, so run the same command then" in out


async def test_an_unverifiable_message_is_a_warning_not_text(people: People, world: World) -> None:
    await _ok(people.alice, "send", "--channel", "liaison", "--label", REL_USA_GBR, "the plan")
    # Whoever holds the server's database relabels the message for display.
    async with world.app.state.sessionmaker() as session, session.begin():
        await session.execute(update(Message).values(label_banner="NATO UNCLASSIFIED"))
    shown = await _fails(people.bob, "read", "--channel", "liaison")
    assert "the plan" not in shown
    assert "  WARNING: this message could not be verified and is not shown: " in shown
    assert "Error: 1 of 1 message(s) could not be verified: see the warnings above" in shown
    assert "the server shows the label 'NATO UNCLASSIFIED'" in shown


async def test_text_from_others_cannot_drive_the_terminal(people: People) -> None:
    text = "\x1b[2J[bold]cleared[/bold] :warning: \u202eevil"
    await _ok(people.alice, "send", "--channel", "liaison", text)
    shown = await _ok(people.bob, "read", "--channel", "liaison")
    assert "\x1b" not in shown
    assert "\u202e" not in shown
    assert "\\x1b[2J[bold]cleared[/bold] :warning: \\u202eevil" in shown


async def test_channel_commands(people: People) -> None:
    await _ok(people.alice, "login")
    out = await _ok(
        people.alice,
        "channel",
        "create",
        "ops",
        "--ceiling",
        "NATO SECRET",
        "--label",
        "NATO SECRET",
        "--label",
        REL_USA_GBR,
        "--default",
        REL_USA_GBR,
    )
    assert "channel ops created, ceiling NATO SECRET" in out
    assert f"default: {REL_USA_GBR}" in out
    assert "bob added to ops; members: alice (USA), bob (GBR)" in await _ok(
        people.alice, "channel", "add", "ops", "bob"
    )
    listed = await _ok(people.alice, "channel", "list")
    assert "liaison" in listed
    assert "ops" in listed
    assert "alice (USA), bob (GBR)" in listed
    assert "as NATO SECRET//REL TO USA, GBR, released to 2" in await _ok(
        people.alice, "send", "--channel", "ops", "default label"
    )
    assert "bob removed from ops" in await _ok(people.alice, "channel", "remove", "ops", "bob")
    assert "already a member" in await _fails(people.alice, "channel", "add", "liaison", "bob")
    assert "not signed in" in await _fails(people.bob, "channel", "list")


async def test_listen_prints_live_messages(people: People, world: World) -> None:
    listening = asyncio.create_task(_ok(people.bob, "listen", "--count", "1"))

    async def subscribed() -> None:
        while world.app.state.bus.subscribers < 1:
            await asyncio.sleep(0.02)

    await asyncio.wait_for(subscribed(), 10)
    # Through the SDK: CliRunner swaps the process's standard streams, one run at a time.
    alice = await Messenger.from_client(
        people.alice.client, people.alice.keystore, people.alice.device_keys, owns_client=False
    )
    await alice.send("liaison", "live one", label=REL_USA_GBR)
    out = await asyncio.wait_for(listening, 10)
    assert "listening as bob" in out
    assert re.search(rf"^{REL_USA_GBR}\n#\d+  from alice \(USA\)", out, re.MULTILINE)
    assert "live one" in out
