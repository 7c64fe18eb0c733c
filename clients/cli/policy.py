"""attache policy: the coalition policy this device holds the server to (docs/coalition.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from clients.cli._common import (
    authority_passphrase,
    call,
    device_passphrase,
    home_option,
    keystore,
    run,
)
from clients.cli.terminal import abort, terminal
from clients.sdk import AttacheClient, Keystore, connect
from clients.sdk.coalition import (
    NO_POLICY,
    HeldPolicy,
    PolicyEdits,
    PolicyRefused,
    describe_changes,
    fetch_proposal,
    hold_policy,
    next_version,
    policy_versions,
    propose,
    sign_proposal,
)
from protocol import keys
from protocol.coalition import (
    CoalitionPolicy,
    PolicyError,
    PolicyNation,
    SignedPolicy,
    parse_policy,
)


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


# --- governing: propose, sign, proposals (security officers) ----------------------------------


def _nation(value: str) -> str:
    code = value.strip().upper()
    if len(code) != 3 or not code.isalpha():
        abort(f"{value!r} is not an ISO 3166-1 alpha-3 nation code such as USA")
    return code


def _public_key(value: str) -> bytes:
    """An authority public key: the file 'attache authority init' writes beside the key
    (authority-NATION.pub), or the base64url text it prints."""
    text = value.strip()
    path = Path(value)
    if path.is_file():
        try:
            text = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            abort(f"cannot read the authority key {path}: {exc}")
    try:
        key = keys.b64u_decode(text)
    except ValueError:
        key = b""
    if len(key) != 32:
        abort(
            f"{value!r} is neither an authority public key file (authority-NATION.pub, from "
            "'attache authority init') nor the public key it prints"
        )
    return key


def _group(value: str) -> tuple[str, list[str]]:
    name, sep, members = value.partition("=")
    if not sep or not name.strip():
        abort(f"--group {value!r}: write NAME=CODE,CODE,... (NAME= removes the group)")
    return name.strip(), [_nation(m) for m in members.split(",") if m.strip()]


def _from_file(path: Path) -> CoalitionPolicy | SignedPolicy:
    """A whole next version: a policy document, or a signed one whose signatures go along."""
    try:
        text = path.read_text(encoding="utf-8")
        document = json.loads(text)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        abort(f"cannot read {path} as a JSON policy document: {exc}")
    try:
        if isinstance(document, dict) and set(document) == {"policy", "signatures"}:
            return SignedPolicy.from_json(text)
        return parse_policy(text)
    except PolicyError as exc:
        abort(f"{path} is not a coalition policy: {exc}")


async def _signed_in(store: Keystore, secret: str | None) -> AttacheClient:
    """This device's client: its saved session, or signed in afresh with the device key."""
    return await connect(store, passphrase=secret)


def _secret(store: Keystore) -> str | None:
    """The device passphrase, asked only when no session is saved to sign in with."""
    call(store.profile)  # no device here: say so before asking anything
    return None if store.session_token() is not None else device_passphrase()


def _held(held: HeldPolicy | None) -> CoalitionPolicy:
    if held is None:
        raise PolicyRefused(
            "the server publishes no coalition policy yet: its nations sign a founding version "
            "and the operator publishes it (attache-server policy publish FILE) before any "
            "change can be proposed"
        )
    return held.policy


def _say_proposal(found: dict[str, Any], policy: CoalitionPolicy) -> None:
    digest = found["digest"]
    signers = found["signers"]
    terminal.say(
        f"  signed by {', '.join(signers) or 'no nation yet'}: {len(signers)} of the "
        f"{found['threshold']} signatures version {policy.policy_version - 1}'s threshold needs"
    )
    if found["ready"]:
        terminal.say("Ready: the operator publishes it with")
        terminal.say(f"  attache-server policy publish --proposal {digest}")
    else:
        terminal.say("The other nations' security officers sign it with")
        # "--" before the digest: a base64url digest may begin with "-", which would else be
        # read as an option.
        terminal.say(f"  attache policy sign --nation NATION -- {digest}")


def _edits(
    add_nation: str | None,
    name: str | None,
    add_key: str | None,
    authority_key: str | None,
    remove_keys: tuple[str, ...],
    remove_nations: tuple[str, ...],
    groups: tuple[str, ...],
    threshold: int | None,
    catalog: Path | None,
) -> PolicyEdits:
    """The command line's edits, read and checked before anything is sent."""
    new_key = [] if authority_key is None else [_public_key(authority_key)]
    toml = None
    if catalog is not None:
        try:
            toml = catalog.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            abort(f"cannot read the catalog {catalog}: {exc}")
    try:
        return PolicyEdits(
            add_nations=[PolicyNation.of(_nation(add_nation), name or "", new_key)]
            if add_nation
            else [],
            remove_nations=[_nation(code) for code in remove_nations],
            add_keys={_nation(add_key): new_key} if add_key else {},
            remove_keys=list(remove_keys),
            groups=dict(_group(g) for g in groups),
            threshold=threshold,
            catalog_toml=toml,
        )
    except PolicyError as exc:
        abort(f"cannot propose that change: {exc}")


@policy.command("propose")
@click.argument(
    "file", required=False, type=click.Path(dir_okay=False, exists=True, path_type=Path)
)
@click.option("--add-nation", metavar="CODE", help="add a nation (with --name, --authority-key)")
@click.option("--name", help="the added nation's name, e.g. Germany")
@click.option(
    "--authority-key",
    metavar="FILE|KEY",
    help="the added nation's or added key's public key: authority-NATION.pub, or its text",
)
@click.option(
    "--add-key",
    metavar="NATION",
    help="add --authority-key to NATION's keys (rotating: with --remove-key for the old one)",
)
@click.option(
    "--remove-key",
    "remove_keys",
    metavar="KEY_ID",
    multiple=True,
    help="remove an authority key by its id (attache policy show lists them)",
)
@click.option(
    "--remove-nation", "remove_nations", metavar="CODE", multiple=True, help="remove a nation"
)
@click.option(
    "--group",
    "groups",
    metavar="NAME=CODE,...",
    multiple=True,
    help="set a partner group's members (NAME= removes the group); repeatable",
)
@click.option("--threshold", type=click.IntRange(min=1), help="signatures the next change needs")
@click.option(
    "--catalog",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="the label catalog's new TOML",
)
@click.option("--sign-as", metavar="NATION", help="sign it at once with NATION's key held here")
@home_option
def propose_command(
    file: Path | None,
    add_nation: str | None,
    name: str | None,
    authority_key: str | None,
    add_key: str | None,
    remove_keys: tuple[str, ...],
    remove_nations: tuple[str, ...],
    groups: tuple[str, ...],
    threshold: int | None,
    catalog: Path | None,
    sign_as: str | None,
    home: Path | None,
) -> None:
    """Propose the next policy version: FILE (a whole policy document), or edits of the
    latest version. The server stores it for the nations' security officers to sign."""
    edited = any((add_nation, add_key, remove_keys, remove_nations, groups, threshold, catalog))
    if (file is None) == (not edited):
        abort(
            "give either FILE (the whole next version) or edits such as --add-nation, "
            "--add-key, --remove-key, --group, --threshold (see --help)"
        )
    if add_nation and add_key:
        abort("one nation's keys per proposal: --add-nation or --add-key, not both")
    if (add_nation or add_key) and authority_key is None:
        abort(f"{'--add-nation' if add_nation else '--add-key'} needs --authority-key FILE")
    if authority_key is not None and not (add_nation or add_key):
        abort("--authority-key goes with --add-nation or --add-key")
    if add_nation and not name:
        abort("--add-nation needs --name, the nation's name (e.g. --name Germany)")
    store = keystore(home)
    signer = None
    if sign_as is not None:
        code = _nation(sign_as)
        call(store.profile)
        secret_a = authority_passphrase(code)
        signer = (code, call(lambda: store.authority(code, secret_a)))
    secret = _secret(store)

    given: CoalitionPolicy | SignedPolicy | PolicyEdits = (
        _from_file(file)
        if file is not None
        else _edits(
            add_nation,
            name,
            add_key,
            authority_key,
            remove_keys,
            remove_nations,
            groups,
            threshold,
            catalog,
        )
    )

    async def go() -> tuple[CoalitionPolicy, CoalitionPolicy, dict[str, Any]]:
        async with await _signed_in(store, secret) as client:
            held = _held(await hold_policy(client, store))
            proposal = given
            if isinstance(given, PolicyEdits):
                try:
                    proposal = next_version(held, given)
                except PolicyError as exc:
                    raise PolicyRefused(f"cannot propose that change: {exc}") from exc
            assert not isinstance(proposal, PolicyEdits)
            found = await propose(client, held, proposal, signer)
            policy = proposal.policy if isinstance(proposal, SignedPolicy) else proposal
            return held, policy, found

    held, proposed, found = run(go())
    terminal.say(
        f"proposed policy version {proposed.policy_version} of {proposed.coalition}, "
        f"digest {found['digest']}"
    )
    for line in describe_changes(held, proposed):
        terminal.say(line if line.startswith("  ") else f"  {line}")
    _say_proposal(found, proposed)


@policy.command("sign")
@click.argument("digest")
@click.option("--nation", required=True, help="your nation, whose authority key is held here")
@click.option("--yes", is_flag=True, help="do not ask for confirmation")
@home_option
def sign_command(digest: str, nation: str, yes: bool, home: Path | None) -> None:
    """Sign the proposed policy version DIGEST with your nation's authority key, after
    reading what it changes from the version held here. Give the digest after "--"
    (attache policy sign --nation GBR -- DIGEST): it may begin with "-"."""
    code = _nation(nation)
    store = keystore(home)
    secret = _secret(store)

    async def fetch() -> tuple[CoalitionPolicy, SignedPolicy]:
        async with await _signed_in(store, secret) as client:
            held = _held(await hold_policy(client, store))
            return held, await fetch_proposal(client, held, digest)

    held, proposal = run(fetch())
    policy = proposal.policy
    signers = sorted({s.nation for s in proposal.signatures})
    terminal.say(
        f"proposed policy version {policy.policy_version} of {policy.coalition}, digest {digest}"
    )
    terminal.say(f"  signed so far by {', '.join(signers) or 'no nation'}; changes:")
    for line in describe_changes(held, policy):
        terminal.say(line if line.startswith("  ") else f"  {line}")
    if code in signers:
        abort(f"{code} has signed policy version {policy.policy_version} already")
    if not yes and not click.confirm(f"Sign it for {code}?"):
        abort("not signed")
    secret_a = authority_passphrase(code)
    authority = call(lambda: store.authority(code, secret_a))

    async def submit() -> dict[str, Any]:
        async with await _signed_in(store, None) as client:
            return await sign_proposal(client, held, proposal, code, authority)

    found = run(submit())
    terminal.say(f"{code} signed policy version {policy.policy_version}")
    _say_proposal(found, policy)


@policy.command("proposals")
@home_option
def proposals_command(home: Path | None) -> None:
    """The proposals for the next policy version, with who has signed each."""
    store = keystore(home)
    secret = _secret(store)

    async def go() -> list[dict[str, Any]]:
        async with await _signed_in(store, secret) as client:
            return await client.policy_proposals()

    found = run(go())
    if not found:
        terminal.say("no proposal for the next policy version")
    for item in found:
        ready = "ready to publish" if item["ready"] else "not ready"
        terminal.say(
            f"{item['digest']}  version {item['policy_version']}  signed by "
            f"{', '.join(item['signers']) or 'none'} ({len(item['signers'])} of "
            f"{item['threshold']}, {ready})"
        )
