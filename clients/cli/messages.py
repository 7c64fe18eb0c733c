"""attache send / read / listen: labelled messages, verified before they are shown."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from clients.cli._common import home_option, with_messenger
from clients.cli.terminal import abort, terminal
from clients.sdk import Messenger, ReceivedMessage, SentMessage


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


@click.command("send")
@click.option("--channel", required=True, help="the channel's name")
@click.option(
    "--label",
    default=None,
    help='e.g. "NATO SECRET//REL TO USA, GBR" (default: the channel\'s default label)',
)
@click.argument("text", required=False)
@home_option
def send_command(channel: str, label: str | None, text: str | None, home: Path | None) -> None:
    """Send TEXT (or standard input) to a channel, sealed only for the devices the label
    releases it to. Device passphrase from ATTACHE_PASSPHRASE, or asked."""
    if text is None:
        text = sys.stdin.read().rstrip("\n")
    if not text.strip():
        abort("nothing to send: the message is empty")
    body = text

    async def go(messenger: Messenger) -> SentMessage:
        return await messenger.send(channel, body, label=label)

    sent = with_messenger(home, go)
    terminal.say(
        f"sent #{sent.seq} to {channel} as {sent.banner}, "
        f"released to {len(sent.released_to)} device(s)"
    )
    for device in sent.excluded:
        terminal.say(
            f"warning: not sealed to device {device.device_id} of {device.username}: "
            f"{device.reason}"
        )


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
