"""attache send / read / listen: labelled messages, verified before they are shown."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import click

from clients.cli._common import home_option, with_messenger
from clients.cli.terminal import abort, terminal
from clients.sdk import ConnectionFailed, MessagingError, Messenger, ReceivedMessage, SentMessage
from clients.sdk.messaging import Unanswered
from clients.sdk.outbox import Outbox, OutboxError


def show_message(message: ReceivedMessage) -> None:
    """The banner at the top and the bottom; sender, nation and time; then the text, or a
    warning in its place when the message could not be verified."""
    terminal.say(message.banner)
    if message.verified:
        when = message.sent_at.strftime("%Y-%m-%d %H:%M:%S UTC") if message.sent_at else "-"
        terminal.say(f"#{message.seq}  from {message.sender} ({message.sender_nation})  {when}")
        terminal.say(message.text or "")
    else:
        terminal.say(
            f"#{message.seq}  WARNING: this message could not be verified and is not shown: "
            f"{message.problem}"
        )
    terminal.say(message.banner)
    terminal.say("")


def _outbox(messenger: Messenger) -> Outbox:
    return Outbox(messenger.keystore.home / "outbox")


def _say_sent(channel: str, sent: SentMessage) -> None:
    if not sent.created:
        # The server answers a resubmission from what it stored, without the releases.
        how = " (the copy sealed earlier, resent: the first attempt had landed)"
    else:
        how = f", released to {len(sent.released_to)} device(s)"
        if sent.resent:
            how += " (the copy sealed earlier, resent)"
    terminal.say(f"sent #{sent.seq} to {channel} as {sent.banner}{how}")
    for device in sent.excluded:
        terminal.say(
            f"warning: not sealed to device {device.device_id} of {device.username}: "
            f"{device.reason}"
        )


def _say_unanswered(channel: str, earlier: Sequence[Unanswered]) -> None:
    for item in earlier:
        if item.sent is not None:
            terminal.say(f"earlier message {item.message_id}, which had no answer:")
            _say_sent(channel, item.sent)
        else:
            terminal.say(
                f"warning: earlier message {item.message_id}, which had no answer, was not "
                f"sent: {item.problem}"
            )


@click.command("send")
@click.option("--channel", required=True, help="the channel's name")
@click.option(
    "--label",
    default=None,
    help='e.g. "NATO SECRET//REL TO USA, GBR" (default: the channel\'s default label)',
)
@click.option(
    "--resume",
    is_flag=True,
    help="only resend, exactly, the channel's sealed messages that had no answer",
)
@click.argument("text", required=False)
@home_option
def send_command(
    channel: str, label: str | None, resume: bool, text: str | None, home: Path | None
) -> None:
    """Send TEXT (or standard input) to a channel, sealed only for the devices the label
    releases it to. Device passphrase from ATTACHE_PASSPHRASE, or asked.

    The sealed message is kept in the home's outbox until the server answers. If the answer
    is lost, run the same command again: the kept copy is resent exactly, so the server stores
    it once. Any earlier unanswered message to the channel is resent first."""
    if resume:
        if text is not None:
            abort("--resume sends nothing new: give no TEXT")
        _resume(channel, home)
        return
    if text is None:
        text = sys.stdin.read().rstrip("\n")
    if not text.strip():
        abort("nothing to send: the message is empty")
    body = text

    async def go(messenger: Messenger) -> SentMessage:
        messenger.outbox = _outbox(messenger)
        try:
            return await messenger.send(channel, body, label=label)
        except ConnectionFailed as exc:
            raise MessagingError(_lost(exc, messenger, channel)) from exc
        except OutboxError as exc:
            raise MessagingError(str(exc)) from exc

    sent = with_messenger(home, go)
    _say_unanswered(channel, sent.resent_first)
    _say_sent(channel, sent)


def _lost(exc: ConnectionFailed, messenger: Messenger, channel: str) -> str:
    outbox = _outbox(messenger)
    if not outbox.pending():
        return str(exc)
    return (
        f"{exc}; the message may or may not have reached the server. Its sealed copy is kept "
        f"in {outbox.directory}: run the same command again, and exactly that copy is resent "
        f"(the server stores it once), or 'attache send --channel {channel} --resume'"
    )


def _resume(channel: str, home: Path | None) -> None:
    async def go(messenger: Messenger) -> list[Unanswered]:
        messenger.outbox = _outbox(messenger)
        try:
            return await messenger.resend_unanswered(channel)
        except ConnectionFailed as exc:
            raise MessagingError(_lost(exc, messenger, channel)) from exc
        except OutboxError as exc:
            raise MessagingError(str(exc)) from exc

    resent = with_messenger(home, go)
    if not resent:
        terminal.say(f"no unanswered message to {channel}")
    _say_unanswered(channel, resent)


@click.command("read")
@click.option("--channel", required=True, help="the channel's name")
@click.option("--after", default=0, type=click.IntRange(min=0), help="only after this number")
@home_option
def read_command(channel: str, after: int, home: Path | None) -> None:
    """Show the messages of a channel that were released to you, each verified."""

    async def go(messenger: Messenger) -> list[ReceivedMessage]:
        return await messenger.read(channel, after=after)

    messages = with_messenger(home, go)
    if not messages:
        terminal.say(f"no messages for you in {channel}")
    for message in messages:
        show_message(message)


@click.command("listen")
@click.option(
    "--count",
    default=None,
    type=click.IntRange(min=1),
    help="stop after this many messages (default: until Ctrl-C)",
)
@home_option
def listen_command(count: int | None, home: Path | None) -> None:
    """Show messages as they arrive, in every channel of yours, until Ctrl-C."""

    async def go(messenger: Messenger) -> bool:
        shown = 0
        async with messenger.stream() as live:
            terminal.say(f"listening as {messenger.username}; Ctrl-C to stop")
            async for message in live:
                show_message(message)
                shown += 1
                if count is not None and shown >= count:
                    return True
        return False

    try:
        done = with_messenger(home, go)
    except KeyboardInterrupt:
        terminal.say("stopped")
        return
    if not done:
        terminal.say("the server ended the stream")
