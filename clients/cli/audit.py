"""attache audit: read, export and verify the audit log (auditors)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from clients.cli._common import (
    call,
    format_option,
    home_option,
    keystore,
    name_of,
    passphrase,
    run,
    show,
    usernames,
    with_client,
)
from clients.cli.terminal import Column, abort, terminal
from clients.sdk import AttacheClient, connect
from clients.sdk import witness as witnesses
from clients.sdk.audit import (
    CompareReport,
    VerifyReport,
    compare_checkpoints,
    export_checkpoints,
    prove_event,
    verify_log,
)
from protocol.checkpoint import CheckpointError
from protocol.cosignature import CosignatureVerifier


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


def _witness_keys(given: Sequence[str], minimum: int | None) -> list[CosignatureVerifier]:
    pinned = []
    for vkey in given:
        try:
            pinned.append(CosignatureVerifier.from_vkey(vkey.strip()))
        except CheckpointError as exc:
            abort(f"--witness {vkey!r}: {exc}")
    if len({w.name for w in pinned}) != len(pinned):
        abort("each --witness must name a different witness")
    if minimum is not None and minimum > len(pinned):
        abort(f"--min-witnesses {minimum} needs at least {minimum} --witness keys")
    return pinned


@audit.command("verify")
@click.option("--vkey", default=None, help="the audit key to pin (from the operator, out of band)")
@click.option(
    "--witness",
    "witness_keys",
    multiple=True,
    help="a witness's key (name+key id+base64, from its nation, out of band); repeatable",
)
@click.option(
    "--min-witnesses",
    type=click.IntRange(min=1),
    default=None,
    help="how many of the --witness keys must have cosigned the checkpoint (default: all)",
)
@click.option(
    "--max-age",
    type=click.IntRange(min=1),
    default=None,
    help="seconds: a witness's cosignature older than this does not count",
)
@home_option
def verify(
    vkey: str | None,
    witness_keys: tuple[str, ...],
    min_witnesses: int | None,
    max_age: int | None,
    home: Path | None,
) -> None:
    """Download the whole log, recompute its tree and check it against the signed checkpoint
    and against what was verified here before; with --witness, the checkpoint must carry the
    witnesses' cosignatures too."""
    pinned = _witness_keys(witness_keys, min_witnesses)
    if max_age is not None and not pinned:
        abort("--max-age limits witnesses' cosignatures: give their keys with --witness")
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

                return await verify_log(
                    client,
                    store.home,
                    vkey=vkey,
                    progress=progress,
                    witnesses=pinned,
                    min_witnesses=min_witnesses,
                    max_age=max_age,
                )

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
    if report.behind:
        terminal.say(
            f"the witnesses' latest checkpoint, of {report.size} leaves, is a prefix of the "
            f"{report.previous_size} verified here before; nothing new to verify"
        )
        terminal.say(f"  cosigned by: {', '.join(sorted(report.witnesses))}")
        return
    before = (
        f", consistent with the {report.previous_size} verified before"
        if report.previous_size
        else ""
    )
    terminal.say(f"audit log verified: {report.size} leaves, root {report.root.hex()}{before}")
    if report.witnesses:
        terminal.say(f"  cosigned by: {', '.join(sorted(report.witnesses))}")
    if report.directories is None:
        terminal.say(
            "  key directory: not recomputed (you are not shown every nation's key events)"
        )
    elif report.directories:
        terminal.say(
            f"  key directory: {report.directories} directory leaves match the device key events"
        )
    if report.policy:
        first, digest, index = report.policy[0][0], report.policy[-1][1], report.policy[-1][2]
        last = report.policy[-1][0]
        span = f"version {last}" if first == last else f"versions {first} to {last}"
        terminal.say(
            f"  coalition policy: {span} published in the log as one chain, each as the server "
            f"serves it and validly signed (version {last}: digest {digest}, leaf {index})"
        )
    else:
        terminal.say("  coalition policy: no version published in the log")
    if report.policy_pending:
        pending = ", ".join(str(v) for v in report.policy_pending)
        terminal.say(
            f"  coalition policy: version(s) {pending} published after this checkpoint, "
            "checked at the next verification"
        )


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


@audit.command("checkpoints")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="write them to this file (default: print them)",
)
@home_option
def checkpoints(out: Path | None, home: Path | None) -> None:
    """The signed checkpoints verified here, as JSON, for another auditor to compare with
    'attache audit compare'."""
    store = keystore(home)
    exported = call(lambda: export_checkpoints(store.home, store.profile().server))
    text = json.dumps(exported, indent=1, ensure_ascii=False) + "\n"
    if out is None:
        click.echo(text, nl=False)
        return
    out.write_text(text, encoding="utf-8")
    terminal.say(f"{len(exported['checkpoints'])} signed checkpoints written to {out}")


@audit.command("compare")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@home_option
def compare(file: Path, home: Path | None) -> None:
    """Compare another auditor's checkpoints (their 'attache audit checkpoints') with the log
    verified here: the same size with another root, or a larger size that does not extend
    this log, is a FORK: the server showed the two of you different histories."""
    try:
        other = json.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        abort(f"cannot read {file}: {exc.strerror}")
    except ValueError:
        abort(f"{file} is not JSON: ask for the output of 'attache audit checkpoints'")
    store = keystore(home)

    async def go(client: AttacheClient) -> CompareReport:
        return await compare_checkpoints(client, store.home, client.server, other)

    report = with_client(home, go)
    for line in report.invalid + report.unchecked:
        terminal.err.print(f"  - {line}")
    if report.forks:
        for line in report.forks:
            terminal.err.print(f"  - {line}")
        abort(
            f"FORK: {len(report.forks)} of their checkpoints contradict the log verified here; "
            "keep both files: together they prove the server signed two histories"
        )
    if report.invalid:
        abort(f"{len(report.invalid)} of their checkpoints are not signed by the log's key")
    terminal.say(
        f"{report.agreed} of their checkpoints agree with the log verified here"
        + (f"; {len(report.unchecked)} beyond it unchecked" if report.unchecked else "")
    )


@audit.group("witness")
def witness() -> None:
    """Run a nation's witness: cosign the log's checkpoints after checking each extends the
    last one cosigned (C2SP tlog-cosignature)."""


def _witness_passphrase(confirm: bool = False) -> str:
    return passphrase("Witness key passphrase", env="ATTACHE_WITNESS_PASSPHRASE", confirm=confirm)


def _default(home: Path | None, given: Path | None, name: str) -> Path:
    return given if given is not None else keystore(home).home / "witness" / name


key_option = click.option(
    "--key",
    "key_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="the witness's key file (default: witness/witness.key in the home)",
)


@witness.command("init")
@click.option("--name", required=True, help="the witness's name, e.g. witness.gbr.example/w1")
@key_option
@home_option
def witness_init(name: str, key_path: Path | None, home: Path | None) -> None:
    """Create the witness's Ed25519 key, sealed under a passphrase
    (ATTACHE_WITNESS_PASSPHRASE), and print its key for auditors to pin."""
    path = _default(home, key_path, "witness.key")
    if path.exists():
        abort(f"{path} already exists; refusing to overwrite a witness key")
    secret = _witness_passphrase(confirm=True)
    signer = call(lambda: witnesses.create_key(path, name, secret))
    terminal.say(f"witness key created: {path}")
    terminal.say(f"  witness key: {signer.vkey()}")
    terminal.say("Give the witness key to the auditors who will require its cosignature:")
    terminal.say(f"  attache audit verify --witness {signer.vkey()}")


@witness.command("run")
@key_option
@click.option(
    "--state",
    "state_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="the witness's state file (default: witness/state.json in the home); back it up",
)
@click.option("--vkey", default=None, help="the log's audit key to pin (from the operator)")
@home_option
def witness_run(
    key_path: Path | None, state_path: Path | None, vkey: str | None, home: Path | None
) -> None:
    """Fetch the latest checkpoint, check it extends the one cosigned last (an RFC 9162
    consistency proof), cosign it and post the cosignature. Run it from cron."""
    key_file = _default(home, key_path, "witness.key")
    state_file = _default(home, state_path, "state.json")
    secret = _witness_passphrase()
    signer = call(lambda: witnesses.load_key(key_file, secret))

    async def go(client: AttacheClient) -> witnesses.WitnessResult:
        return await witnesses.cosign_latest(client, signer, state_file, log_vkey=vkey)

    result = with_client(home, go)
    if result.log_pinned_now:
        terminal.say(
            "pinned the server's audit key on first use: compare it with the operator's "
            "(attache-server audit key)"
        )
    since = (
        f", consistent with size {result.previous_size} cosigned before"
        if result.previous_size is not None
        else ""
    )
    stored = "" if result.new else " (the server already held this witness's cosignature)"
    terminal.say(
        f"cosigned the checkpoint of size {result.size}, root {result.root.hex()}{since}{stored}"
    )
