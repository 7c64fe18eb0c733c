"""attache user: the directory's people; security officers manage their own nation's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from clients.cli._common import (
    authority_passphrase,
    call,
    format_option,
    home_option,
    keystore,
    show,
    with_client,
)
from clients.cli.terminal import Column, terminal
from clients.sdk import AttacheClient, change_clearance


@click.group()
def user() -> None:
    """Users of the directory."""


COLUMNS: tuple[Column, ...] = (
    ("username", lambda u: u["username"]),
    ("nation", lambda u: show(u["nationality"])),
    ("clearance", lambda u: show(u["clearance"])),
    ("roles", lambda u: show(", ".join(u["roles"]))),
    ("active", lambda u: "yes" if u["active"] else "no"),
)


@user.command("list")
@click.option("--nation", default=None, help="only users of this nation")
@format_option
@home_option
def list_users(nation: str | None, fmt: str, home: Path | None) -> None:
    """List users."""

    async def go(client: AttacheClient) -> list[dict[str, Any]]:
        return await client.users(nation.upper() if nation else None)

    terminal.listing(fmt, with_client(home, go), COLUMNS)


@user.command("add")
@click.argument("username")
@click.option("--nation", required=True, help="the user's nationality (your own nation)")
@click.option("--name", "display_name", default="")
@click.option("--office", "office_id", default=None, help="office id")
@click.option("--clearance", default=None, help='e.g. "NATO SECRET"')
@click.option("--role", "roles", multiple=True, help="repeatable; default officer")
@home_option
def add(
    username: str,
    nation: str,
    display_name: str,
    office_id: str | None,
    clearance: str | None,
    roles: tuple[str, ...],
    home: Path | None,
) -> None:
    """Create a user of your nation (security officers) or of any nation (operators)."""

    async def go(client: AttacheClient) -> dict[str, Any]:
        return await client.create_user(
            username=username,
            display_name=display_name,
            nationality=nation.upper(),
            office_id=office_id,
            clearance=clearance,
            roles=list(roles) or ["officer"],
        )

    created = with_client(home, go)
    terminal.say(f"user {created['username']} created: id {created['id']}")


@user.command("code")
@click.argument("username")
@home_option
def code(username: str, home: Path | None) -> None:
    """Issue a one-time enrolment code for USERNAME (or a user id); give it to them out of
    band."""

    async def go(client: AttacheClient) -> dict[str, Any]:
        return await client.issue_enrolment_code(username)

    issued = with_client(home, go)
    terminal.say(f"enrolment code for {issued['username']}: {issued['code']}")
    terminal.say(f"  expires {issued['expires_at']}; it works once")


@user.command("clear")
@click.argument("username")
@click.argument("clearance")
@click.option("--nation", required=True, help="your nation, whose authority key is held here")
@home_option
def clear(username: str, clearance: str, nation: str, home: Path | None) -> None:
    """Set USERNAME's (or a user id's) CLEARANCE, re-certifying their active devices with your
    authority key."""
    code_ = nation.upper()
    store = keystore(home)
    secret = authority_passphrase(code_)
    authority = call(lambda: store.authority(code_, secret))

    async def go(client: AttacheClient) -> dict[str, Any]:
        return await change_clearance(client, code_, authority, username, clearance)

    updated = with_client(home, go)
    terminal.say(f"{updated['username']} is now cleared {show(updated['clearance'])}")
