"""attache policy: the coalition policy this device holds the server to (docs/coalition.md)."""

from __future__ import annotations

from pathlib import Path

import click

from clients.cli._common import home_option, keystore, run
from clients.cli.terminal import terminal
from clients.sdk import AttacheClient, Keystore
from clients.sdk.coalition import (
    NO_POLICY,
    HeldPolicy,
    describe_changes,
    hold_policy,
    policy_versions,
)
from protocol.coalition import CoalitionPolicy


@click.group()
def policy() -> None:
    """The coalition policy: nations, their authority keys, partner groups, the catalog."""


def _client(store: Keystore) -> AttacheClient:
    # The policy is public: no session is needed to read it.
    return AttacheClient(store.profile().server)


@policy.command("show")
@home_option
def show_command(home: Path | None) -> None:
    """Show the policy pinned here and the server's latest, once verified from it."""
    store = keystore(home)

    async def go() -> tuple[HeldPolicy | None, CoalitionPolicy | None]:
        pinned = store.policy_pin()
        async with _client(store) as client:
            held = await hold_policy(client, store)
        return held, None if pinned is None else pinned[1].policy

    held, before = run(go())
    if held is None:
        terminal.say(NO_POLICY)
        return
    latest = held.policy
    terminal.say(f"coalition {latest.coalition}, policy version {latest.policy_version}")
    terminal.say(f"  founding digest: {held.founding_b64u}")
    terminal.say(f"  digest:          {latest.digest_b64u}")
    if held.pinned_now:
        terminal.say("  pinned now, on first use: compare the founding digest with your officer's")
    elif before is not None and before.policy_version != latest.policy_version:
        terminal.say(
            f"  pinned here: version {before.policy_version}; the server's version "
            f"{latest.policy_version} follows it with valid signatures and is pinned now"
        )
    else:
        terminal.say(f"  pinned here: version {latest.policy_version}, the server's latest")
    terminal.say(
        f"  threshold: {latest.threshold} of {len(latest.nations)} nations sign the next version"
    )
    terminal.say("nations:")
    for code, nation in sorted(latest.nations.items()):
        ids = ", ".join(sorted(nation.authority_keys))
        terminal.say(f"  {code}  {nation.name}  (authority keys {ids})")
    catalog = latest.catalog()
    terminal.say("groups:")
    for name in sorted(catalog.groups):
        where = "policy" if name in latest.groups else "catalog"
        members = ", ".join(sorted(catalog.groups[name]))
        terminal.say(f"  {name} ({where}): {members}")


@policy.command("diff")
@click.argument("old", type=click.IntRange(min=1))
@click.argument("new", type=click.IntRange(min=1))
@home_option
def diff_command(old: int, new: int, home: Path | None) -> None:
    """Show what changed from policy version OLD to version NEW, both verified."""
    store = keystore(home)

    async def go() -> dict[int, CoalitionPolicy]:
        async with _client(store) as client:
            return await policy_versions(client, store, old, new)

    found = run(go())
    lines = describe_changes(found[old], found[new])
    terminal.say(f"coalition policy version {old} -> version {new}:")
    for line in lines or ["  no change"]:
        terminal.say(line if line.startswith("  ") else f"  {line}")
