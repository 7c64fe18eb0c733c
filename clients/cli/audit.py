"""attache audit: read, export and verify the audit log (auditors)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from clients.cli._common import home_option, keystore, run, show, with_client
from clients.cli.terminal import abort, terminal
from clients.sdk import AttacheClient, connect
from clients.sdk.audit import VerifyReport, prove_event, verify_log


@click.group()
def audit() -> None:
    """The audit log: who was given or refused what, verifiable on your own machine."""


FIELDS = (
    "id",
    "leaf",
    "time",
    "action",
    "decision",
    "actor",
    "actor_nation",
    "object",
    "subject_nation",
    "label",
    "reasons",
)


def _flat(entry: dict[str, Any]) -> dict[str, str]:
    event = entry["event"]
    label = event.get("label") or {}
    return {
        "id": str(entry["id"]),
        "leaf": show(entry.get("leaf_index")),
        "time": event["time"],
        "action": event["action"],
        "decision": event["decision"],
        "actor": show(event["actor"]["user"]),
        "actor_nation": show(event["actor"]["nation"]),
        "object": f"{event['object']['type']}:{event['object']['id']}",
        "subject_nation": show(event.get("subject_nation")),
        "label": show(label.get("banner")),
        "reasons": "; ".join(event.get("reasons") or []) or "-",
    }


@audit.command("log")
@click.option("--since", default=None, help="ISO 8601 time, inclusive; UTC unless it has a zone")
@click.option("--until", default=None, help="ISO 8601 time, exclusive; UTC unless it has a zone")
@click.option("--actor", default=None, help="actor user id")
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
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table")
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
    """List audit events, filtered; --format json or csv to export."""
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
        return found

    entries = with_client(home, go)
    if fmt == "json":
        terminal.say(json.dumps([e["event"] for e in entries], indent=2))
        return
    rows = [_flat(e) for e in entries]
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
        terminal.out.file.write(buffer.getvalue())
        return
    columns = ("id", "time", "action", "decision", "actor_nation", "object", "label", "reasons")
    terminal.table(*columns, rows=[tuple(r[c] for c in columns) for r in rows])


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
    store = keystore(home)

    async def go(client: AttacheClient) -> Any:
        return await prove_event(client, store.home, event_id, vkey=vkey)

    result = with_client(home, go)
    terminal.say(
        f"event {event_id} ({result.event['action']}, {result.event['decision']}) is leaf "
        f"{result.index} of the signed log of {result.size} leaves: inclusion proof verified"
    )
