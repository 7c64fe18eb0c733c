"""attache send after a lost answer (issue 9, item 8): the sealed submission is kept in the
home's outbox before it is sent and until the server answers, and a later run (a new process,
as after a crash) resends exactly those bytes, so the server stores the message once."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select

from clients.cli import main
from clients.sdk import AttacheClient, ConnectionFailed
from server.channels.models import Message
from tests.factories import PASSPHRASE, Member, World

REL_USA_GBR = "NATO SECRET//REL TO USA, GBR"
Submit = Callable[..., Awaitable[dict[str, Any]]]


async def _invoke(member: Member, *args: str) -> Result:
    env = {
        "ATTACHE_HOME": str(member.keystore.home),
        "ATTACHE_PASSPHRASE": PASSPHRASE,
        "COLUMNS": "300",
        "NO_COLOR": "1",
    }
    runner = CliRunner()
    return await asyncio.to_thread(runner.invoke, main, list(args), env=env, catch_exceptions=False)


def _outbox(member: Member) -> list[Path]:
    return sorted((member.keystore.home / "outbox").glob("*.json"))


async def _messages(world: World) -> list[Message]:
    async with world.app.state.sessionmaker() as session:
        stmt = select(Message).order_by(Message.seq)
        return list((await session.execute(stmt)).scalars().all())


def _lose_answers(monkeypatch: pytest.MonkeyPatch, *, landed: bool, times: int = 1) -> None:
    """The next ``times`` submits lose their answer: after the server stored the message
    (``landed``), or before it reached the server."""
    real: Submit = AttacheClient.submit_message
    left = [times]

    async def lossy(self: AttacheClient, *args: Any, **kwargs: Any) -> dict[str, Any]:
        if left[0] <= 0:
            return await real(self, *args, **kwargs)
        left[0] -= 1
        if landed:
            await real(self, *args, **kwargs)
        raise ConnectionFailed("cannot reach the server: the connection was reset")

    monkeypatch.setattr(AttacheClient, "submit_message", lossy)


@pytest.fixture
async def alice(world: World, live: str) -> Member:
    await world.nation("USA")
    await world.nation("GBR")
    alice = await world.member("alice", "USA")
    await world.member("bob", "GBR")
    await alice.client.create_channel("liaison", "NATO SECRET")
    await alice.client.add_member("liaison", "bob")
    return alice


async def test_running_the_same_send_again_after_a_lost_answer_stores_it_once(
    world: World, alice: Member, monkeypatch: pytest.MonkeyPatch
) -> None:
    send = ("send", "--channel", "liaison", "--label", REL_USA_GBR, "hello")
    _lose_answers(monkeypatch, landed=True)
    lost = await _invoke(alice, *send)
    assert lost.exit_code == 1, lost.output
    assert "Traceback" not in lost.output
    assert "may or may not have reached the server" in lost.output
    assert "run the same command again" in lost.output
    (kept,) = _outbox(alice)
    sealed = kept.read_text()
    assert "hello" not in sealed  # ciphertext only
    stored = await _messages(world)
    assert len(stored) == 1

    again = await _invoke(alice, *send)
    assert again.exit_code == 0, again.output
    assert re.fullmatch(
        rf"sent #{stored[0].seq} to liaison as {re.escape(REL_USA_GBR)} "
        r"\(the copy sealed earlier, resent: the first attempt had landed\)\n",
        again.output,
    ), again.output
    assert _outbox(alice) == []
    assert len(await _messages(world)) == 1
    # The next send is a new message.
    await _invoke(alice, *send)
    assert len(await _messages(world)) == 2


async def test_resume_resends_a_message_that_never_reached_the_server(
    world: World, alice: Member, monkeypatch: pytest.MonkeyPatch
) -> None:
    _lose_answers(monkeypatch, landed=False)
    lost = await _invoke(alice, "send", "--channel", "liaison", "never arrived")
    assert lost.exit_code == 1, lost.output
    assert len(_outbox(alice)) == 1
    assert await _messages(world) == []

    resumed = await _invoke(alice, "send", "--channel", "liaison", "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert "earlier message" in resumed.output
    assert "(the copy sealed earlier, resent)" in resumed.output
    assert _outbox(alice) == []
    (stored,) = await _messages(world)
    nothing = await _invoke(alice, "send", "--channel", "liaison", "--resume")
    assert nothing.output == "no unanswered message to liaison\n"
    refused = await _invoke(alice, "send", "--channel", "liaison", "--resume", "text")
    assert refused.exit_code == 1
    assert "--resume sends nothing new" in refused.output
    assert len(await _messages(world)) == 1
    assert stored.seq >= 1


async def test_an_earlier_unanswered_message_goes_first_and_keeps_its_order(
    world: World, alice: Member, monkeypatch: pytest.MonkeyPatch
) -> None:
    _lose_answers(monkeypatch, landed=False)
    assert (await _invoke(alice, "send", "--channel", "liaison", "first")).exit_code == 1
    monkeypatch.undo()
    out = await _invoke(alice, "send", "--channel", "liaison", "second")
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert lines[0].startswith("earlier message ")
    assert lines[0].endswith(", which had no answer:")
    first, second = await _messages(world)
    assert lines[1].startswith(f"sent #{first.seq} to liaison")
    assert lines[2].startswith(f"sent #{second.seq} to liaison")
    assert first.seq < second.seq
    assert _outbox(alice) == []


async def test_an_earlier_message_that_can_no_longer_be_delivered_is_named_and_dropped(
    world: World, alice: Member, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It never landed, and the channel changed since it was sealed: without its text (never
    kept) it cannot be sealed again, so the user is told to send it again."""
    _lose_answers(monkeypatch, landed=False)
    assert (await _invoke(alice, "send", "--channel", "liaison", "first")).exit_code == 1
    monkeypatch.undo()
    await world.nation("FRA")
    await world.member("chloe", "FRA")
    await alice.client.add_member("liaison", "chloe")
    out = await _invoke(alice, "send", "--channel", "liaison", "second")
    assert out.exit_code == 0, out.output
    assert "was not sent: it had not reached the server" in out.output
    assert "send it again" in out.output
    assert len(await _messages(world)) == 1
    assert _outbox(alice) == []


async def test_a_damaged_outbox_is_a_plain_sentence(world: World, alice: Member) -> None:
    outbox = alice.keystore.home / "outbox"
    outbox.mkdir(mode=0o700)
    (outbox / "0b7c2f1e-0000-4000-8000-000000000000.json").write_text("{not json")
    out = await _invoke(alice, "send", "--channel", "liaison", "hello")
    assert out.exit_code == 1
    assert "Traceback" not in out.output
    assert "is damaged" in out.output
    assert "move it aside to go on" in out.output
    assert await _messages(world) == []
