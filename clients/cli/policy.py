"""attache policy: the coalition policy this device holds the server to (docs/coalition.md)."""

from __future__ import annotations

import json
import os
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
    logged_leaf,
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
    build_policy,
    parse_policy,
    sign_policy,
    signing_nations,
)


@click.group()
def policy() -> None:
    """The coalition policy: nations, their authority keys, partner groups, the catalog."""


def _client(store: Keystore) -> AttacheClient:
    # The policy is public: no session is needed to read it.
    return AttacheClient(store.profile().server)


@policy.command("show")
@click.option(
    "--file",
    "file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="show the policy version in FILE instead (offline: a founding version being signed)",
)
@home_option
def show_command(file: Path | None, home: Path | None) -> None:
    """Show the policy pinned here and the server's latest, once verified from it; or, with
    --file, the version in FILE with its digest and signatures, for officers to compare."""
    if file is not None:
        _show_file(file)
        return
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
    logged = logged_leaf(store, latest)
    if logged is not None:
        terminal.say(
            f"  in the audit log: published at leaf {logged[0]}, proven at the checkpoint of "
            f"size {logged[1]}"
        )
    else:
        terminal.say(
            "  in the audit log: not proven here (pinned before clients checked the log, or "
            "waiting for the log); every later version must be"
        )
    _say_contents(latest)


def _say_contents(policy: CoalitionPolicy) -> None:
    """The threshold, the nations with their authority key ids, and the groups."""
    terminal.say(
        f"  threshold: {policy.threshold} of {len(policy.nations)} nations sign the next version"
    )
    terminal.say("nations:")
    for code, nation in sorted(policy.nations.items()):
        ids = ", ".join(sorted(nation.authority_keys))
        terminal.say(f"  {code}  {nation.name}  (authority keys {ids})")
    catalog = policy.catalog()
    terminal.say("groups:")
    for name in sorted(catalog.groups):
        where = "policy" if name in policy.groups else "catalog"
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


def _public_key(value: str, where: str = "") -> bytes:
    """An authority public key: the file 'attache authority init' writes beside the key
    (authority-NATION.pub), or the base64url text it prints. ``where`` prefixes refusals."""
    text = value.strip()
    path = Path(value)
    if path.exists() and not path.is_file():
        abort(f"{where}cannot read the authority key {path}: it is not a file")
    if path.is_file():
        try:
            text = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            abort(f"{where}cannot read the authority key {path}: {exc}")
    elif os.sep in value or value.endswith(".pub"):
        abort(f"{where}cannot read the authority key {path}: there is no such file")
    try:
        key = keys.b64u_decode(text)
    except ValueError:
        key = b""
    if len(key) != 32:
        abort(
            f"{where}{value!r} is neither an authority public key file (authority-NATION.pub, "
            "from 'attache authority init') nor the public key it prints"
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
@click.argument("digest", required=False)
@click.option(
    "--file",
    "file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="sign the founding version in FILE offline (from 'attache policy found') instead",
)
@click.option("--nation", required=True, help="your nation, whose authority key is held here")
@click.option("--yes", is_flag=True, help="do not ask for confirmation")
@home_option
def sign_command(
    digest: str | None, file: Path | None, nation: str, yes: bool, home: Path | None
) -> None:
    """Sign the proposed policy version DIGEST with your nation's authority key, after
    reading what it changes from the version held here. Give the digest after "--"
    (attache policy sign --nation GBR -- DIGEST): it may begin with "-".

    With --file FILE, sign the founding version in FILE on this machine, with no server:
    the signature is added to FILE, for the next founding nation to sign."""
    code = _nation(nation)
    if (digest is None) == (file is None):
        abort(
            "give either DIGEST (a proposal on the server) or --file FILE (a founding "
            "version, signed offline)"
        )
    if file is not None:
        _sign_file(file, code, yes, home)
        return
    assert digest is not None
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


# --- founding: made and signed offline by the founding nations' security officers ------------


def _founding_nation(value: str, seen: dict[str, PolicyNation]) -> PolicyNation:
    """``--nation CODE=NAME=KEY``: a founding nation, its name and its authority public key
    (authority-CODE.pub, or the key's text)."""
    code, sep, rest = value.partition("=")
    name, sep2, key = rest.partition("=")
    if not sep or not sep2 or not name.strip() or not key.strip():
        abort(
            f"--nation {value!r}: write CODE=NAME=KEY, such as "
            "USA=United States=authority-USA.pub (KEY: the file 'attache authority init' "
            "writes, or the public key it prints)"
        )
    code = _nation(code)
    if code in seen:
        abort(f"--nation {code} is given twice: one --nation per founding nation")
    try:
        return PolicyNation.of(code, name.strip(), [_public_key(key, f"--nation {code}: ")])
    except PolicyError as exc:
        abort(f"--nation {code}: {exc}")


def _read_signed(file: Path) -> SignedPolicy:
    """The signed policy document in ``file`` (a bare policy document has no signatures)."""
    found = _from_file(file) if file.is_file() else None
    if found is None:
        abort(f"cannot read {file}: there is no such file")
    return found if isinstance(found, SignedPolicy) else SignedPolicy(found, ())


def _write_signed(file: Path, signed: SignedPolicy, *, replace: bool) -> None:
    """``signed`` as FILE: written beside it and renamed over it, so that an interrupted
    write never leaves half a document (or loses the signatures already in it)."""
    text = json.dumps(signed.to_json(), indent=2, ensure_ascii=False) + "\n"
    partial = file.with_name(f".{file.name}.partial")
    try:
        partial.write_text(text, encoding="utf-8")
        if replace:
            os.replace(partial, file)
        else:
            # Not over a file that appeared meanwhile: link fails if the name is taken.
            os.link(partial, file)
            partial.unlink()
    except FileExistsError:
        partial.unlink(missing_ok=True)
        abort(f"{file} already exists; refusing to overwrite it")
    except OSError as exc:
        partial.unlink(missing_ok=True)
        abort(f"cannot write {file}: {exc.strerror or exc}")


def _founding_signatures(signed: SignedPolicy) -> tuple[list[str], list[str]]:
    """The founding nations whose signatures in ``signed`` count, and a sentence for each
    signature that does not (a file changed after signing is named as such)."""
    policy = signed.policy
    counted: list[str] = []
    problems: list[str] = []
    for entry in signed.signatures:
        listed = policy.nations.get(entry.nation)
        try:
            signing_nations(policy, SignedPolicy(policy, (entry,)))
        except PolicyError as exc:
            if listed is not None and entry.key_id in listed.authority_keys:
                problems.append(
                    f"{entry.nation}'s signature (key {entry.key_id}) does not verify over the "
                    f"digest {policy.digest_b64u}: the file was changed after {entry.nation} "
                    "signed it (or the signature is forged), so it no longer counts"
                )
            else:
                problems.append(str(exc))
            continue
        if entry.nation in counted:
            problems.append(f"{entry.nation} signed twice: a nation counts once")
            continue
        counted.append(entry.nation)
    return sorted(counted), problems


def _say_founding(file: Path, signed: SignedPolicy) -> tuple[list[str], list[str]]:
    """What an officer compares before signing: the digest, what it holds, who signed."""
    policy = signed.policy
    terminal.say(f"{file}: policy version {policy.policy_version} of {policy.coalition}")
    terminal.say(f"  digest: {policy.digest_b64u}")
    if policy.policy_version != 1:
        terminal.say(
            f"  not a founding version: it follows {keys.b64u_encode(policy.previous or b'')}"
        )
    _say_contents(policy)
    terminal.say(f"catalog: version {policy.catalog().version}, its TOML in the file")
    if policy.policy_version != 1:
        signers = sorted({s.nation for s in signed.signatures})
        terminal.say(
            f"signed by {', '.join(signers) or 'no nation'} (counted against version "
            f"{policy.policy_version - 1}, when proposed or published)"
        )
        return signers, []
    counted, problems = _founding_signatures(signed)
    missing = sorted(set(policy.nations) - set(counted))
    terminal.say(
        f"signed by {', '.join(counted) or 'no nation yet'}: {len(counted)} of the "
        f"{len(policy.nations)} founding nations"
        + (f"; missing {', '.join(missing)}" if missing else "")
    )
    for problem in problems:
        terminal.say(f"  not counted: {problem}")
    return counted, problems


def _show_file(file: Path) -> None:
    signed = _read_signed(file)
    counted, problems = _say_founding(file, signed)
    policy = signed.policy
    if policy.policy_version != 1:
        return
    if problems:
        terminal.say(
            "Signatures that do not count are never published: sign the file as the nations "
            "signed it, or make the founding version afresh ('attache policy found')."
        )
    elif len(counted) == len(policy.nations):
        terminal.say("Every founding nation has signed: the operator publishes it with")
        terminal.say(f"  attache-server policy publish {file}")
    else:
        terminal.say(
            "Compare the digest with the other officers' (out of band), then each missing "
            "nation signs it with"
        )
        terminal.say(f"  attache policy sign --file {file} --nation NATION")


@policy.command("found")
@click.option(
    "--coalition", required=True, help="the coalition's name: lowercase letters, digits, .-_"
)
@click.option(
    "--threshold",
    required=True,
    type=click.IntRange(min=1),
    help="how many of the nations must sign each later version",
)
@click.option(
    "--catalog",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="the label catalog's TOML (the one the server uses)",
)
@click.option(
    "--nation",
    "nations",
    metavar="CODE=NAME=KEY",
    multiple=True,
    required=True,
    help="a founding nation, e.g. USA=United States=authority-USA.pub (KEY: the public key "
    "file 'attache authority init' writes, or its text); one per nation",
)
@click.option(
    "--group",
    "groups",
    metavar="NAME=CODE,...",
    multiple=True,
    help="a partner group the coalition adds to the catalog's; repeatable",
)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="the file to write, for each founding nation to sign (attache policy sign --file)",
)
def found_command(
    coalition: str,
    threshold: int,
    catalog: Path,
    nations: tuple[str, ...],
    groups: tuple[str, ...],
    output: Path,
) -> None:
    """Make the founding version of a coalition policy (version 1), offline, in a file that
    each founding nation's security officer then signs with 'attache policy sign --file'
    and the operator publishes with 'attache-server policy publish FILE'."""
    try:
        toml = catalog.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = "there is no such file" if isinstance(exc, FileNotFoundError) else exc
        abort(f"cannot read the catalog {catalog}: {reason}")
    entries: dict[str, PolicyNation] = {}
    for value in nations:
        entry = _founding_nation(value, entries)
        entries[entry.code] = entry
    chosen: dict[str, list[str]] = {}
    for value in groups:
        name, members = _group(value)
        if not members:
            abort(f"--group {value!r}: a founding group needs its members (NAME=CODE,...)")
        if name in chosen:
            abort(f"--group {name} is given twice")
        chosen[name] = members
    if output.exists():
        abort(f"{output} already exists; refusing to overwrite it")
    try:
        founding = build_policy(
            coalition=coalition,
            nations=entries.values(),
            groups=chosen,
            catalog_toml=toml,
            threshold=threshold,
        )
    except PolicyError as exc:
        abort(f"cannot make that founding version: {exc}")
    _write_signed(output, SignedPolicy(founding, ()), replace=False)
    terminal.say(f"founding policy of {coalition} written to {output}, not yet signed")
    _show_file(output)


def _sign_file(file: Path, code: str, yes: bool, home: Path | None) -> None:
    """``code``'s signature added to the founding version in ``file``, with the nation's
    authority key held in this home; nothing else in the file changes."""
    signed = _read_signed(file)
    policy = signed.policy
    if policy.policy_version != 1:
        abort(
            f"{file} holds policy version {policy.policy_version}: only a founding version "
            "is signed from a file; later versions are proposals (attache policy sign -- DIGEST)"
        )
    counted, problems = _say_founding(file, signed)
    if problems:
        abort(
            f"{file} carries signatures that do not count ({'; '.join(problems)}); refusing to "
            "add one: sign the file as the nations signed it, or make the founding version "
            "afresh ('attache policy found') for every founding nation to sign"
        )
    if code not in policy.nations:
        abort(
            f"{code} is not a founding nation of {file} ({', '.join(sorted(policy.nations))}): "
            "only the nations it lists sign it"
        )
    if code in counted:
        abort(f"{code} has signed this founding version already")
    if not yes and not click.confirm(
        f"Sign it for {code}, having compared the digest with the other officers'?"
    ):
        abort("not signed")
    store = keystore(home)
    secret_a = authority_passphrase(code)
    authority = call(lambda: store.authority(code, secret_a))
    ours = SignedPolicy(policy, (sign_policy(policy, code, authority),))
    try:
        signing_nations(policy, ours)
    except PolicyError as exc:
        abort(f"{code} cannot sign this founding version: {exc}")
    _write_signed(file, signed.with_signature(ours.signatures[0]), replace=True)
    now = sorted({*counted, code})
    missing = sorted(set(policy.nations) - set(now))
    terminal.say(f"{code} signed the founding version of {policy.coalition} in {file}")
    if missing:
        terminal.say(
            f"  signed by {', '.join(now)}; still to sign: {', '.join(missing)}, each with"
        )
        terminal.say(f"  attache policy sign --file {file} --nation NATION")
    else:
        terminal.say("Every founding nation has signed: the operator publishes it with")
        terminal.say(f"  attache-server policy publish {file}")
