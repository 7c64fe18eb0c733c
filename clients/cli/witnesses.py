"""attache witness: which nations' witnesses must have cosigned the key directory's
checkpoints before this device seals to anyone (PROTOCOL.md §19.4, docs/client.md).

A group of its own, not under ``attache audit``: ``audit witness`` *runs* a nation's witness
and ``audit verify --witness`` requires witnesses for one auditor's run, while this sets what
every send, document, release and history grant of this home requires, for every user, not
only auditors. It is local state beside the pinned audit key (transparency.json), as
``attache policy show`` shows the pinned coalition policy; nothing here asks the server, and
nothing the server answers changes it.
"""

from __future__ import annotations

from pathlib import Path

import click

from clients.cli._common import call, home_option, keystore
from clients.cli.terminal import abort, terminal
from clients.sdk.keystore import Keystore, WitnessRequirement


@click.group("witness")
def witness() -> None:
    """The witnesses whose cosignatures this device requires before it seals to anyone."""


def requirement(
    vkeys: tuple[str, ...], minimum: int | None, max_age: int | None, *, flag: str = "--min"
) -> WitnessRequirement | None:
    """The requirement the options give (None when no key is given), or abort with a
    sentence: a bad key, a witness named twice, a minimum beyond the keys given."""
    if not vkeys:
        if minimum is not None or max_age is not None:
            abort(f"{flag} and the maximum age concern witnesses: give their keys with --witness")
        return None
    if minimum is not None and minimum > len(vkeys):
        abort(f"{flag} {minimum} needs at least {minimum} witness keys, not {len(vkeys)}")
    return call(lambda: WitnessRequirement.of(list(vkeys), minimum, max_age))


def describe(required: WitnessRequirement | None) -> list[str]:
    """What is required, in lines."""
    if required is None:
        return [
            "no witness required: key directory checkpoints are checked against the audit key "
            "and the checkpoint kept here only"
        ]
    age = (
        f", each cosigned at most {required.max_age} s before the check"
        if required.max_age is not None
        else ""
    )
    lines = [f"requiring {required.minimum} of {len(required.vkeys)} witnesses{age}:"]
    lines += [f"  {vkey}" for vkey in required.vkeys]
    return lines


@witness.command("require")
@click.argument("vkeys", nargs=-1, required=True, metavar="VKEY...")
@click.option(
    "--min",
    "minimum",
    type=click.IntRange(min=1),
    default=None,
    help="how many of these witnesses must have cosigned (default: all)",
)
@click.option(
    "--max-age",
    type=click.IntRange(min=1),
    default=None,
    help="seconds: a cosignature older than this does not count (default: any age)",
)
@click.option(
    "--force",
    is_flag=True,
    help="allow loosening: dropping a witness, fewer of them, or older cosignatures",
)
@home_option
def require(
    vkeys: tuple[str, ...],
    minimum: int | None,
    max_age: int | None,
    force: bool,
    home: Path | None,
) -> None:
    """Require these witnesses' cosignatures (each VKEY name+key id+base64, from its nation,
    out of band), in place of those required before. Loosening needs --force."""
    required = requirement(vkeys, minimum, max_age)
    store = keystore(home)
    call(store.profile)
    call(lambda: store.require_witnesses(required, loosen=force))
    for line in describe(required):
        terminal.say(line)


@witness.command("show")
@home_option
def show_command(home: Path | None) -> None:
    """Show the witnesses this device requires."""
    store: Keystore = keystore(home)
    call(store.profile)
    for line in describe(call(store.required_witnesses)):
        terminal.say(line)


@witness.command("forget")
@click.option("--force", is_flag=True, help="required: this stops requiring any witness")
@home_option
def forget(force: bool, home: Path | None) -> None:
    """Stop requiring witnesses' cosignatures (a loosening: needs --force)."""
    store = keystore(home)
    call(store.profile)
    if not force:
        abort("that stops requiring any witness's cosignature: say so with --force")
    call(lambda: store.require_witnesses(None, loosen=True))
    for line in describe(None):
        terminal.say(line)
