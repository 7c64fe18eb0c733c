"""attache meeting: schedule meetings, build their agendas, record minutes and action items.

Titles, places, agenda items, minutes and action items are labelled, encrypted messages: each
command that writes one asks for the device passphrase (ATTACHE_PASSPHRASE, or asked).
"""

from __future__ import annotations

import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import click

from clients.cli._common import format_option, home_option, username, with_client, with_messenger
from clients.cli.terminal import Column, abort, terminal
from clients.sdk import AttacheClient, CommitteeEntry, Committees, MeetingAgenda, Messenger
from protocol.committees import STATUSES

label_option = click.option(
    "--label",
    default=None,
    help='e.g. "NATO SECRET//REL TO USA, GBR" (default: the committee\'s default label)',
)


@click.group()
def meeting() -> None:
    """Meetings of a committee: agenda, minutes and action items, each labelled."""


def _when(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _start(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        abort(f"--at {text!r}: give a time like 2026-12-01T10:00Z")
    if value.tzinfo is None:
        abort(f"--at {text!r}: give a time zone, e.g. 2026-12-01T10:00Z")
    return value


def _say_entry(entry: CommitteeEntry, lines: list[str]) -> None:
    """An item with its banner at the top and the bottom, or a plain warning in its place."""
    terminal.say(f"  {entry.banner}")
    if entry.verified:
        for line in lines:
            terminal.say(f"  {line}")
    else:
        terminal.say(f"  ({entry.problem})")
    terminal.say(f"  {entry.banner}")


@meeting.command("schedule")
@click.argument("committee")
@click.option("--at", "at", required=True, help="start, with a time zone: 2026-12-01T10:00Z")
@click.option("--title", required=True)
@click.option("--place", default=None, help="a room, an address or a link")
@label_option
@home_option
def schedule(
    committee: str, at: str, title: str, place: str | None, label: str | None, home: Path | None
) -> None:
    """Schedule a meeting of COMMITTEE (chair or secretary)."""
    starts = _start(at)

    async def go(messenger: Messenger) -> dict[str, Any]:
        return await Committees(messenger).schedule_meeting(
            committee, starts, title, place, label=label
        )

    found = with_messenger(home, go)
    terminal.say(f"meeting {found['id']} scheduled for {_when(starts)}")


def _status(meeting: dict[str, Any], now: datetime) -> str:
    if meeting["cancelled_at"]:
        return "cancelled"
    return "held" if datetime.fromisoformat(meeting["starts_at"]) <= now else "scheduled"


COLUMNS: tuple[Column, ...] = (
    ("meeting", lambda m: m["id"]),
    ("starts", lambda m: _when(datetime.fromisoformat(m["starts_at"]))),
    ("status", lambda m: m["status"]),
)


@meeting.command("list")
@click.argument("committee")
@format_option
@home_option
def list_meetings(committee: str, fmt: str, home: Path | None) -> None:
    """List the meetings of COMMITTEE: scheduled, held (its start has passed) or cancelled
    (titles: see 'attache meeting agenda')."""

    async def go(client: AttacheClient) -> list[dict[str, Any]]:
        return await client.meetings(committee)

    now = datetime.now(UTC)
    records = [{**m, "status": _status(m, now)} for m in with_client(home, go)]
    terminal.listing(fmt, records, COLUMNS)


@meeting.command("agenda")
@click.argument("meeting_id")
@home_option
def agenda(meeting_id: str, home: Path | None) -> None:
    """Show a meeting: title, place, agenda items (each with its banner), minutes and action
    items with their latest status: only what was released to you, each verified."""

    async def go(messenger: Messenger) -> tuple[MeetingAgenda, dict[str, dict[str, Any]]]:
        found = await Committees(messenger).agenda(meeting_id)
        if not any(item.documents for item in found.items):
            return found, {}
        # The attached versions by id, to name them: the channel's versions this device
        # may open (the agenda lists only those).
        versions = await messenger.client.document_versions(found.channel_id)
        return found, {v["id"]: v for v in versions}

    found, versions = with_messenger(home, go)
    status = "  CANCELLED" if found.cancelled_at else ""
    terminal.say(f"meeting {found.meeting_id}  {_when(found.starts_at)}{status}")
    _say_entry(found.info, [f"{found.title}", f"place: {found.place or '-'}"])
    terminal.say("")
    terminal.say("agenda:" if found.items else "agenda: (no items for you)")
    for number, item in enumerate(found.items, 1):
        terminal.say(f"{number}. item {item.item_id}")
        lines = [f"{item.title}"]
        if item.presenter:
            lines.append(f"presenter: {item.presenter}")
        if item.notes:
            lines.append(item.notes)
        lines += [_document(v, versions.get(v)) for v in item.documents]
        _say_entry(item.entry, lines)
    if found.minutes is not None:
        terminal.say("")
        terminal.say("minutes:")
        _say_entry(found.minutes, [found.minutes.get("text") or ""])
    if found.action_items:
        terminal.say("")
        terminal.say("action items:")
    for action in found.action_items:
        terminal.say(f"- action {action.item_id}")
        lines = [
            f"{action.description}",
            f"owner: {action.owner}  due: {action.due or '-'}  status: {action.status}",
        ]
        lines += [
            f"update by {u.sender} ({u.sender_nation}): {u.get('status')}"
            + (f", {u.get('note')}" if u.get("note") else "")
            for u in action.updates
            if u.verified
        ]
        _say_entry(action.entry, lines)


def _document(version_id: str, version: dict[str, Any] | None) -> str:
    if version is None:
        return f"document version {version_id} (attache doc get {version_id})"
    name = str(version["header"].get("filename") or "(no file name)")
    return (
        f"document {name}, version {version['number']}, {version['label']} "
        f"(attache doc get {version_id})"
    )


@meeting.command("item-add")
@click.argument("meeting_id")
@click.option("--title", required=True)
@click.option("--presenter", default=None)
@click.option("--notes", default=None)
@label_option
@home_option
def item_add(
    meeting_id: str,
    title: str,
    presenter: str | None,
    notes: str | None,
    label: str | None,
    home: Path | None,
) -> None:
    """Append an agenda item to a meeting (chair or secretary)."""

    async def go(messenger: Messenger) -> dict[str, Any]:
        return await Committees(messenger).add_agenda_item(
            meeting_id, title, presenter, notes, label=label
        )

    found = with_messenger(home, go)
    terminal.say(f"agenda item {found['id']} added at position {found['position'] + 1}")


@meeting.command("attach")
@click.argument("meeting_id")
@click.argument("item_id")
@click.argument("version_id")
@home_option
def attach(meeting_id: str, item_id: str, version_id: str, home: Path | None) -> None:
    """Attach document VERSION_ID (uploaded with 'attache doc put --channel COMMITTEE') to
    agenda item ITEM_ID. Its own label still decides who can open it."""

    async def go(client: AttacheClient) -> dict[str, Any]:
        return await client.attach_document(meeting_id, item_id, version_id)

    with_client(home, go)
    terminal.say(f"document version {version_id} attached to agenda item {item_id}")


@meeting.command("reorder")
@click.argument("meeting_id")
@click.argument("item_ids", nargs=-1, required=True)
@home_option
def reorder(meeting_id: str, item_ids: tuple[str, ...], home: Path | None) -> None:
    """Put the agenda items in the order ITEM_IDS (every item you can see, once each)."""

    async def go(client: AttacheClient) -> dict[str, Any]:
        return await client.reorder_agenda(meeting_id, item_ids)

    found = with_client(home, go)
    terminal.say("agenda reordered: " + " ".join(i["id"] for i in found["agenda"]))


@meeting.command("minutes")
@click.argument("meeting_id")
@click.argument("text")
@label_option
@home_option
def minutes(meeting_id: str, text: str, label: str | None, home: Path | None) -> None:
    """Record the minutes of a meeting: TEXT, or - for standard input (chair or secretary)."""
    body = sys.stdin.read().rstrip("\n") if text == "-" else text
    if not body.strip():
        abort("nothing to record: the minutes are empty")

    async def go(messenger: Messenger) -> dict[str, Any]:
        return await Committees(messenger).record_minutes(meeting_id, body, label=label)

    with_messenger(home, go)
    terminal.say(f"minutes recorded for meeting {meeting_id}")


@meeting.command("action")
@click.argument("meeting_id")
@click.argument("text")
@click.option("--owner", required=True, help="the owner: a username (or a user id)")
@click.option("--due", default=None, help="due date, YYYY-MM-DD")
@label_option
@home_option
def action(
    meeting_id: str,
    text: str,
    owner: str,
    due: str | None,
    label: str | None,
    home: Path | None,
) -> None:
    """Record an action item TEXT for OWNER (chair or secretary)."""
    due_date: date | None = None
    if due is not None:
        try:
            due_date = date.fromisoformat(due)
        except ValueError:
            abort(f"--due {due!r}: give a date like 2026-12-15")

    async def go(messenger: Messenger) -> tuple[str, dict[str, Any]]:
        # The item names its owner by username (docs/committees.md): one the directory knows,
        # since the server cannot check inside the encrypted item.
        name = await username(messenger.client, owner)
        made = await Committees(messenger).add_action_item(
            meeting_id, text, name, due_date, label=label
        )
        return name, made

    name, found = with_messenger(home, go)
    terminal.say(f"action item {found['id']} recorded for {name}")


@meeting.command("action-update")
@click.argument("item_id")
@click.option("--status", required=True, type=click.Choice(STATUSES))
@click.option("--note", default="")
@label_option
@home_option
def action_update(
    item_id: str, status: str, note: str, label: str | None, home: Path | None
) -> None:
    """Post a status update to an action item (labelled like the item unless --label)."""

    async def go(messenger: Messenger) -> dict[str, Any]:
        return await Committees(messenger).update_action_item(item_id, status, note, label=label)

    with_messenger(home, go)
    terminal.say(f"action item {item_id}: {status}")


@meeting.command("cancel")
@click.argument("meeting_id")
@home_option
def cancel(meeting_id: str, home: Path | None) -> None:
    """Cancel a meeting (chair or secretary)."""

    async def go(client: AttacheClient) -> dict[str, Any]:
        return await client.cancel_meeting(meeting_id)

    with_client(home, go)
    terminal.say(f"meeting {meeting_id} cancelled")
