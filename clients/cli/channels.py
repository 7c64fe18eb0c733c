"""attache channel: create channels, list yours, add and remove members."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from clients.cli._common import format_option, home_option, show, username, with_client
from clients.cli.terminal import Column, terminal
from clients.sdk import AttacheClient


@click.group()
def channel() -> None:
    """Channels: a ceiling label and members; messages in them carry their own labels."""


def _members(found: Mapping[str, Any]) -> str:
    return ", ".join(f"{m['username']} ({show(m['nationality'])})" for m in found["members"])


@channel.command("create")
@click.argument("name")
@click.option("--ceiling", required=True, help='the highest label it may carry, e.g. "NATO SECRET"')
@click.option(
    "--label",
    "labels",
    multiple=True,
    help="a label members may pick (repeatable; default: the ceiling)",
)
@click.option("--default", "default_label", default=None, help="the label picked by default")
@home_option
def create(
    name: str,
    ceiling: str,
    labels: tuple[str, ...],
    default_label: str | None,
    home: Path | None,
) -> None:
    """Create channel NAME; you are its first member and may add others cleared for it."""

    async def go(client: AttacheClient) -> dict[str, Any]:
        return await client.create_channel(name, ceiling, labels, default_label)

    created = with_client(home, go)
    terminal.say(f"channel {created['name']} created, ceiling {created['ceiling']}")
    terminal.say(f"  labels:  {' | '.join(created['labels'])}")
    terminal.say(f"  default: {created['default_label']}")


COLUMNS: tuple[Column, ...] = (
    ("channel", lambda c: c["name"]),
    ("ceiling", lambda c: c["ceiling"]),
    ("default label", lambda c: c["default_label"]),
    ("members", _members),
)

MEMBER_COLUMNS: tuple[Column, ...] = (
    ("user", lambda m: m["username"]),
    ("nation", lambda m: show(m["nationality"])),
    ("user id", lambda m: m["user_id"]),
)


@channel.command("list")
@format_option
@home_option
def list_channels(fmt: str, home: Path | None) -> None:
    """List the channels you are a member of."""

    async def go(client: AttacheClient) -> list[dict[str, Any]]:
        return await client.channels()

    terminal.listing(fmt, with_client(home, go), COLUMNS)


@channel.command("members")
@click.argument("name")
@format_option
@home_option
def members(name: str, fmt: str, home: Path | None) -> None:
    """List the members of channel NAME."""

    async def go(client: AttacheClient) -> dict[str, Any]:
        return await client.channel(name)

    terminal.listing(fmt, with_client(home, go)["members"], MEMBER_COLUMNS)


@channel.command("add")
@click.argument("name")
@click.argument("user")
@home_option
def add(name: str, user: str, home: Path | None) -> None:
    """Add USER (a username or a user id) to channel NAME (they must be cleared for its ceiling)."""

    async def go(client: AttacheClient) -> dict[str, Any]:
        return await client.add_member(name, user)

    found = with_client(home, go)
    added = next(
        (m["username"] for m in found["members"] if user in (m["user_id"], m["username"])), user
    )
    terminal.say(f"{added} added to {found['name']}; members: {_members(found)}")


@channel.command("remove")
@click.argument("name")
@click.argument("user")
@home_option
def remove(name: str, user: str, home: Path | None) -> None:
    """Remove USER (a username or a user id) from channel NAME (yourself, or anyone if you
    created it).

    Messages sent after this are never sealed to their devices.
    """

    async def go(client: AttacheClient) -> str:
        removed = await username(client, user)
        await client.remove_member(name, removed)
        return removed

    terminal.say(f"{with_client(home, go)} removed from {name}")
