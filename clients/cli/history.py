"""attache channel share-history / history-window: give members who joined later the past
messages their label admits (PROTOCOL.md §16.7), and set how far back that reaches."""

from __future__ import annotations

from pathlib import Path

import click

from clients.cli._common import home_option, with_messenger
from clients.cli.terminal import terminal
from clients.sdk import History, Messenger, Shared, Waiting


def say_shared(channel: str, shared: list[Shared]) -> None:
    if not shared:
        terminal.say(f"nothing to share in {channel}: every member it may reach holds it already")
    for item in shared:
        what = (
            f"#{item.seq}  id {item.item_id}"
            if item.item_type == "message"
            else f"document version {item.item_id}"
        )
        if item.problem is not None:
            terminal.say(f"{what}  not shared: {item.problem}")
        elif item.created:
            terminal.say(
                f"{what}  {item.label}: shared with {len(item.devices)} device(s) of members "
                "who joined later"
            )


def say_waiting(item: Waiting, where: str | None = None) -> None:
    """An item this user may read that no member has shared a key for yet: not a failure to
    verify (nothing was delivered to verify), and its label is only what the server says."""
    place = f"  in {where}" if where else ""
    terminal.say(f"#{item.seq}{place}  waiting for a key from a member  id {item.item_id}")
    terminal.say(
        f"  sent {item.sent_at} before you could read it, labelled {item.label} (as the server "
        "says); it is shown once a member's client shares it"
    )
    terminal.say("")


@click.command("share-history")
@click.argument("name", metavar="CHANNEL")
@home_option
def share_history_command(name: str, home: Path | None) -> None:
    """Give the members who joined CHANNEL (or committee) later, or were cleared higher, the
    past messages and document versions you hold that their own labels admit, within the
    channel's history window. Your client
    checks each member's certificate and decides each label itself; the server checks again
    and records every grant. `attache listen` does this by itself when members join."""

    async def go(messenger: Messenger) -> list[Shared]:
        return await History(messenger).share(name)

    say_shared(name, with_messenger(home, go))


@click.command("history-window")
@click.argument("name", metavar="CHANNEL")
@click.argument("days", type=click.IntRange(0, 3650))
@home_option
def history_window_command(name: str, days: int, home: Path | None) -> None:
    """How many DAYS back members who join CHANNEL later are given its past messages
    (default 90; only the channel's creator sets it)."""

    async def go(messenger: Messenger) -> int:
        return int((await messenger.client.set_history_window(name, days))["history_days"])

    terminal.say(
        f"{name}: members who join later are given the last {with_messenger(home, go)} days"
    )
