"""attache audit: read, export and verify the audit log (auditors)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from clients.cli._common import (
    format_option,
    home_option,
    keystore,
    name_of,
    run,
    show,
    usernames,
    with_client,
)
from clients.cli.terminal import Column, abort, terminal
from clients.sdk import AttacheClient, connect
from clients.sdk.audit import VerifyReport, prove_event, verify_log


@click.group()
def audit() -> None:
    """The audit log: who was given or refused what, verifiable on your own machine."""


def _label(event: Mapping[str, Any]) -> str:
    return show((event.get("label") or {}).get("banner"))


def _object(entry: Mapping[str, Any]) -> str:
    """``type:id``; a user by name (``user:alice``), as the entry's ``object_username`` says."""
    kind, ident = entry["event"]["object"]["type"], entry["event"]["object"]["id"]
    return f"{kind}:{entry.get('object_username') or ident}"


# The CSV's columns; the table shows those of TABLE. The id is what 'attache audit prove'
# takes; the leaf is the event's index in the log. People by name; their ids in actor_id
# and in the JSON.
FIELDS: tuple[Column, ...] = (
    ("id", lambda e: str(e["id"])),
    ("leaf", lambda e: show(e.get("leaf_index"))),
    ("time", lambda e: e["event"]["time"]),
    ("action", lambda e: e["event"]["action"]),
    ("decision", lambda e: e["event"]["decision"]),
    ("actor", lambda e: show(e.get("actor_username") or e["event"]["actor"]["user"])),
    ("actor_id", lambda e: show(e["event"]["actor"]["user"])),
    ("actor_nation", lambda e: show(e["event"]["actor"]["nation"])),
    ("object", _object),
    ("subject_nation", lambda e: show(e["event"].get("subject_nation"))),
    ("label", lambda e: _label(e["event"])),
    ("reasons", lambda e: "; ".join(e["event"].get("reasons") or []) or "-"),
)
TABLE = ("id", "time", "action", "decision", "actor", "actor_nation", "object", "label", "reasons")


@audit.command("log")
@click.option("--since", default=None, help="ISO 8601 time, inclusive; UTC unless it has a zone")
@click.option("--until", default=None, help="ISO 8601 time, exclusive; UTC unless it has a zone")
@click.option("--actor", default=None, help="the actor: a username (or a user id)")
@click.option("--nation", default=None, help="actor or subject nation")
@click.option("--container", default=None, help="channel id")
@click.option(
    "--action",
    default=None,
    help="e.g. message.submit; reads of the log (audit.read) are listed only when asked for",
)
@click.option("--decision", type=click.Choice(["allow", "deny"]), default=None)
@click.option("--label", default=None, help="exact banner")
@click.option("--limit", default=1000, show_default=True, help="most events to fetch")
@format_option
@home_option
def log(
    since: str | None,
    until: str | None,
    actor: str | None,
    nation: str | None,
    container: str | None,
    action: str | None,
    decision: str | None,
    label: str | None,
    limit: int,
    fmt: str,
    home: Path | None,
) -> None:
    """List audit events, filtered; --format json or csv to export. JSON gives each event as
    {"id", "leaf_index", "event", "actor_username", "object_username"}: the id for 'attache
    audit prove', the leaf's index in the log, the event exactly as the log commits to it
    (people by user id), and the usernames of its actor and of a user it is about (else
    null)."""
    params = {
        "since": since,
        "until": until,
        "actor": actor,
        "nation": nation.upper() if nation else None,
        "container": container,
        "action": action,
        "decision": decision,
        "label": label,
    }
    query = {k: v for k, v in params.items() if v is not None}

    async def go(client: AttacheClient) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        after = 0
        while len(found) < limit:
            asked = min(1000, limit - len(found))
            page = await client.request(
                "GET", "/v1/audit/events", params={**query, "after": after, "limit": asked}
            )
            found += page["events"]
            # A short page is the end: asking again would cost one more (audited) read.
            if len(page["events"]) < asked:
                break
            after = page["cursor"]
        names = await usernames(client) if found else {}
        return [_named(entry, names) for entry in found]

    entries = with_client(home, go)
    columns = FIELDS if fmt != "table" else tuple(c for c in FIELDS if c[0] in TABLE)
    terminal.listing(fmt, entries, columns)


def _named(entry: dict[str, Any], names: Mapping[str, str]) -> dict[str, Any]:
    """The entry with the usernames of the people its event names by id."""
    event = entry["event"]
    about = event["object"]["id"] if event["object"]["type"] == "user" else None
    return {
        **entry,
        "actor_username": name_of(names, event["actor"]["user"]),
        "object_username": name_of(names, about),
    }


@audit.command("verify")
@click.option("--vkey", default=None, help="the audit key to pin (from the operator, out of band)")
@home_option
def verify(vkey: str | None, home: Path | None) -> None:
    """Download the whole log, recompute its tree and check it against the signed checkpoint
    and against what was verified here before."""
    store = keystore(home)

    async def go() -> VerifyReport:
        client = await connect(store)
        async with client:
            with Progress(
                TextColumn("verifying"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=terminal.err,
                transient=True,
            ) as bar:
                task = bar.add_task("leaves", total=None)

                def progress(done: int, total: int) -> None:
                    bar.update(task, completed=done, total=total)

                return await verify_log(client, store.home, vkey=vkey, progress=progress)

    report = run(go())
    if report.key_pinned_now:
        terminal.say(
            "pinned the server's audit key on first use: compare it with the operator's "
            "(attache-server audit key)"
        )
    if not report.ok:
        for problem in report.problems:
            terminal.err.print(f"  - {problem}")
        where = (
            f" (first bad leaf: {report.first_bad_index})"
            if report.first_bad_index is not None
            else ""
        )
        abort(f"VERIFICATION FAILED{where}: the audit log does not match what was signed or seen")
    before = (
        f", consistent with the {report.previous_size} verified before"
        if report.previous_size
        else ""
    )
    terminal.say(f"audit log verified: {report.size} leaves, root {report.root.hex()}{before}")


@audit.command("prove")
@click.argument("event_id", type=int)
@click.option("--vkey", default=None, help="the audit key to pin (from the operator, out of band)")
@home_option
def prove(event_id: int, vkey: str | None, home: Path | None) -> None:
    """Check locally that EVENT_ID is in the signed log, with an RFC 9162 inclusion proof."""
    if event_id < 1:
        abort(f"there is no event {event_id}: event ids start at 1 (see 'attache audit log')")
    store = keystore(home)

    async def go(client: AttacheClient) -> Any:
        return await prove_event(client, store.home, event_id, vkey=vkey)

    result = with_client(home, go)
    terminal.say(
        f"event {event_id} ({result.event['action']}, {result.event['decision']}) is leaf "
        f"{result.index} of the signed log of {result.size} leaves: inclusion proof verified"
    )
