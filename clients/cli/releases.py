"""attache release: ask for an item to be released to further nations, decide as a disclosure
officer of the originator nation, and carry out an approved release."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from clients.cli._common import format_option, home_option, name_of, show, usernames, with_messenger
from clients.cli.terminal import Column, abort, terminal
from clients.sdk import Messenger
from clients.sdk.releases import Releases


@click.group("release")
def release() -> None:
    """Release requests (foreign disclosure): widen who a message or document may reach."""


def _item(request: dict[str, Any]) -> str:
    kind = "message" if request["item_type"] == "message" else "document"
    return f"{kind} {request['item_id']}"


@release.command("request")
@click.option("--message", "message_id", default=None, help="the message id")
@click.option("--document", "version_id", default=None, help="the document version id")
@click.option("--add", "add", multiple=True, required=True, help="a nation to release to")
@click.option("--reason", default="", help="why the release is needed")
@home_option
def request_command(
    message_id: str | None,
    version_id: str | None,
    add: tuple[str, ...],
    reason: str,
    home: Path | None,
) -> None:
    """Ask the originator nation's disclosure officers to release an item to --add too."""
    if (message_id is None) == (version_id is None):
        abort("name exactly one item, with --message or --document")
    item_type, item_id = (
        ("message", message_id) if message_id is not None else ("document_version", version_id)
    )
    assert item_id is not None

    async def go(messenger: Messenger) -> dict[str, Any]:
        return await Releases(messenger).request(item_type, item_id, list(add), reason)

    made = with_messenger(home, go)
    terminal.say(
        f"release request {made['id']}: {_item(made)} from {made['label']} to "
        f"{made['requested_label']}, pending a decision by {made['originator']}"
    )


@release.command("list")
@click.option(
    "--status",
    type=click.Choice(["pending", "approved", "refused", "granted"]),
    default=None,
    help="only requests in this state",
)
@format_option
@home_option
def list_command(status: str | None, fmt: str, home: Path | None) -> None:
    """Your requests and, for a disclosure officer, those about your nation's items. People
    by name; JSON also has their ids (requested_by, decided_by)."""

    async def go(messenger: Messenger) -> list[dict[str, Any]]:
        found = await Releases(messenger).list(status)
        names = await usernames(messenger.client) if found else {}
        return [
            {
                **r,
                "requested_by_username": name_of(names, r["requested_by"]),
                "decided_by_username": name_of(names, r["decided_by"]),
            }
            for r in found
        ]

    columns: tuple[Column, ...] = (
        ("id", lambda r: r["id"]),
        ("item", lambda r: _item(dict(r))),
        ("label", lambda r: f"{r['label']} → {r['requested_label']}"),
        ("requester", lambda r: show(r["requested_by_username"] or r["requested_by"])),
        ("status", lambda r: r["status"]),
        ("decided by", lambda r: show(r["decided_by_username"] or r["decided_by"])),
        ("reason", lambda r: show(r["reason"])),
    )
    terminal.listing(fmt, with_messenger(home, go), columns)


@release.command("approve")
@click.argument("request_id")
@click.option("--reason", default="", help="recorded with the decision")
@home_option
def approve_command(request_id: str, reason: str, home: Path | None) -> None:
    """Approve a request about your nation's item (a disclosure officer only)."""

    async def go(messenger: Messenger) -> dict[str, Any]:
        return await Releases(messenger).approve(request_id, reason)

    decided = with_messenger(home, go)
    terminal.say(
        f"approved {decided['id']}: {_item(decided)} may be released as "
        f"{decided['requested_label']}"
    )


@release.command("refuse")
@click.argument("request_id")
@click.option("--reason", required=True, help="recorded with the decision")
@home_option
def refuse_command(request_id: str, reason: str, home: Path | None) -> None:
    """Refuse a request about your nation's item (a disclosure officer only)."""

    async def go(messenger: Messenger) -> dict[str, Any]:
        return await Releases(messenger).refuse(request_id, reason)

    decided = with_messenger(home, go)
    terminal.say(f"refused {decided['id']}: {_item(decided)} stays {decided['label']}")


@release.command("grant")
@click.argument("request_id")
@home_option
def grant_command(request_id: str, home: Path | None) -> None:
    """Carry out an approved request: seal the item's key to the devices newly eligible."""

    async def go(messenger: Messenger) -> dict[str, Any]:
        return await Releases(messenger).grant(request_id)

    done = with_messenger(home, go)
    terminal.say(f"released {_item(done)} as {done['requested_label']} ({done['status']})")
