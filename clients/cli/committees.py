"""attache committee: create committees, list and show yours, add and remove members."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from clients.cli._common import format_option, home_option, show, username, with_client
from clients.cli.channels import MEMBER_COLUMNS
from clients.cli.terminal import Column, terminal
from clients.sdk import AttacheClient


@click.group()
def committee() -> None:
    """Committees: a channel with a chair, a secretary, meetings and agendas."""


def _members(found: Mapping[str, Any]) -> str:
    return ", ".join(f"{m['username']} ({show(m['nationality'])})" for m in found["members"])


def _show(found: dict[str, Any]) -> None:
    terminal.say(f"committee {found['name']}  ceiling {found['ceiling']}")
    terminal.say(f"  chair:     {found['chair']['username']}")
    terminal.say(f"  secretary: {found['secretary']['username']}")
    terminal.say(f"  members:   {_members(found)}")
    terminal.say(f"  labels:    {' | '.join(found['labels'])} (default {found['default_label']})")


@committee.command("create")
@click.argument("name")
@click.option("--ceiling", required=True, help='the highest label it may carry, e.g. "NATO SECRET"')
@click.option("--chair", required=True, help="the chair's username (cleared for the ceiling)")
@click.option("--secretary", required=True, help="the secretary's username (cleared for it)")
@click.option("--label", "labels", multiple=True, help="a label members may pick (repeatable)")
@click.option("--default", "default_label", default=None, help="the label picked by default")
@home_option
def create(
    name: str,
    ceiling: str,
    chair: str,
    secretary: str,
    labels: tuple[str, ...],
    default_label: str | None,
    home: Path | None,
) -> None:
    """Create committee NAME; you, the chair and the secretary are its first members."""

    async def go(client: AttacheClient) -> dict[str, Any]:
        return await client.create_committee(
            name,
            ceiling,
            chair=chair,
            secretary=secretary,
            labels=labels,
            default_label=default_label,
        )

    _show(with_client(home, go))


COLUMNS: tuple[Column, ...] = (
    ("committee", lambda c: c["name"]),
    ("ceiling", lambda c: c["ceiling"]),
    ("chair", lambda c: c["chair"]["username"]),
    ("secretary", lambda c: c["secretary"]["username"]),
    ("members", _members),
)


@committee.command("list")
@format_option
@home_option
def list_committees(fmt: str, home: Path | None) -> None:
    """List the committees you are a member of."""

    async def go(client: AttacheClient) -> list[dict[str, Any]]:
        return await client.committees()

    terminal.listing(fmt, with_client(home, go), COLUMNS)


@committee.command("members")
@click.argument("name")
@format_option
@home_option
def members(name: str, fmt: str, home: Path | None) -> None:
    """List the members of committee NAME."""

    async def go(client: AttacheClient) -> dict[str, Any]:
        return await client.committee(name)

    found = with_client(home, go)
    chair, secretary = found["chair"]["user_id"], found["secretary"]["user_id"]

    def role(member: Mapping[str, Any]) -> str:
        if member["user_id"] == chair:
            return "chair"
        return "secretary" if member["user_id"] == secretary else "member"

    records = [{**m, "role": role(m)} for m in found["members"]]
    terminal.listing(fmt, records, (*MEMBER_COLUMNS, ("role", lambda m: m["role"])))


@committee.command("show")
@click.argument("name")
@home_option
def show_committee(name: str, home: Path | None) -> None:
    """Show committee NAME: its roles, members and labels."""

    async def go(client: AttacheClient) -> dict[str, Any]:
        return await client.committee(name)

    _show(with_client(home, go))


@committee.command("add")
@click.argument("name")
@click.argument("user")
@home_option
def add(name: str, user: str, home: Path | None) -> None:
    """Add USER (a username or a user id) to committee NAME (chair or secretary; USER must be
    cleared for its ceiling)."""

    async def go(client: AttacheClient) -> dict[str, Any]:
        return await client.add_committee_member(name, user)

    found = with_client(home, go)
    added = next(
        (m["username"] for m in found["members"] if user in (m["user_id"], m["username"])), user
    )
    terminal.say(f"{added} added to {found['name']}; members: {_members(found)}")


@committee.command("remove")
@click.argument("name")
@click.argument("user")
@home_option
def remove(name: str, user: str, home: Path | None) -> None:
    """Remove USER (a username or a user id) from committee NAME (yourself, or anyone if you
    are chair or secretary)."""

    async def go(client: AttacheClient) -> str:
        removed = await username(client, user)
        await client.remove_committee_member(name, removed)
        return removed

    terminal.say(f"{with_client(home, go)} removed from {name}")
