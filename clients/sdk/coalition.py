"""The coalition policy as this device holds it (docs/coalition.md, PROTOCOL.md §18).

A device pins the policy at enrolment: the digest of its founding version and the latest
version, verified from the founding one. On each use (``Messenger.open``, ``attache policy``)
it fetches ``GET /v1/policy`` and accepts a later version only through a chain of valid
successors of the one it holds (``protocol.coalition.verify_successor``, each step fetched with
``GET /v1/policy/{version}``); an older version, another version of the same number (a fork), a
successor short of its signatures, or no policy at all once one is pinned, is refused with
``PolicyRefused`` naming what was wrong.

With a policy held, the client trusts a nation's authority key only if the policy lists it for
that nation, and computes the catalog (its groups and nations) from the policy, never from
``GET /v1/catalog`` or ``GET /v1/nations``: a nation or group member the server added on its own
does not exist here.

A server that publishes no policy (deployments from before it) is used as before, trusting
its nations and catalog on first use, and ``NO_POLICY`` is said (logged, and shown by the CLI).
The first policy such a server publishes is pinned on first use, as at enrolment.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from clients.sdk._client import AttacheClient
from clients.sdk.keystore import Keystore
from protocol import keys
from protocol.coalition import (
    CoalitionPolicy,
    PolicyError,
    PolicyNation,
    SignedPolicy,
    build_policy,
    check_successor,
    sign_policy,
    signing_nations,
    verify_founding,
    verify_successor,
)
from protocol.keys import AuthorityKey

log = logging.getLogger("attache.sdk")
log.addHandler(logging.NullHandler())  # a library's: shown only where the program logs

NO_POLICY = (
    "warning: the server publishes no coalition policy, so this client takes the nations' "
    "authority keys, the partner groups and the label catalog from the server on first use; "
    "a compromised server could add a nation or widen a group (docs/coalition.md)"
)


class PolicyRefused(Exception):
    """The server's coalition policy cannot be held to: the message says what was wrong."""


@dataclass(frozen=True)
class HeldPolicy:
    """The policy this device holds to: its founding digest and its latest verified version."""

    founding: bytes
    latest: SignedPolicy
    pinned_now: bool = False  # pinned by this call (at enrolment, or on first use)
    previous_version: int | None = None  # the version held before this call, if any

    @property
    def policy(self) -> CoalitionPolicy:
        return self.latest.policy

    @property
    def founding_b64u(self) -> str:
        return keys.b64u_encode(self.founding)


async def fetch_policy(
    client: AttacheClient, policy_version: int | None = None
) -> SignedPolicy | None:
    """The signed policy the server serves (the latest, or ``policy_version``), parsed for
    structure only; None when it serves none."""
    raw = await client.policy(policy_version)
    if raw is None:
        return None
    try:
        return SignedPolicy.from_json(raw)
    except PolicyError as exc:
        which = "latest" if policy_version is None else f"version {policy_version} of the"
        raise PolicyRefused(f"the server's {which} coalition policy is malformed: {exc}") from exc


async def _step(
    client: AttacheClient, policy_version: int, last: int, served: SignedPolicy
) -> SignedPolicy:
    if policy_version == last:
        return served
    signed = await fetch_policy(client, policy_version)
    if signed is None:
        raise PolicyRefused(
            f"the server serves coalition policy version {last} but not version "
            f"{policy_version}, without which it cannot be verified; refusing it"
        )
    return signed


async def _follow(
    client: AttacheClient, held: CoalitionPolicy, served: SignedPolicy
) -> CoalitionPolicy:
    """``served``'s policy, once every version from ``held`` to it is a valid successor."""
    start, last = held.policy_version, served.policy.policy_version
    if last < start:
        raise PolicyRefused(
            f"the server serves coalition policy version {last}, older than version {start} "
            "held here: a replayed or rolled-back policy is refused"
        )
    if last == start:
        if served.policy.digest != held.digest:
            raise PolicyRefused(
                f"the server serves a coalition policy version {last} other than the one held "
                f"here ({served.policy.digest_b64u}, not {held.digest_b64u}): a fork is refused"
            )
        return held
    current = held
    for version in range(start + 1, last + 1):
        signed = await _step(client, version, last, served)
        try:
            current = verify_successor(current, signed)
        except PolicyError as exc:
            raise PolicyRefused(
                f"the server's coalition policy version {signed.policy.policy_version} does not "
                f"follow version {current.policy_version} held here: {exc}"
            ) from exc
    return current


async def _from_founding(
    client: AttacheClient, served: SignedPolicy, expect: bytes | None
) -> bytes:
    """The founding digest of ``served``, once the chain from the founding version to it is
    valid (and the founding version is ``expect``, when given)."""
    founding = await _step(client, 1, served.policy.policy_version, served)
    try:
        policy = verify_founding(founding)
    except PolicyError as exc:
        raise PolicyRefused(f"the server's founding coalition policy is refused: {exc}") from exc
    if expect is not None and policy.digest != expect:
        raise PolicyRefused(
            f"the server's founding coalition policy has digest {policy.digest_b64u}, not "
            f"{keys.b64u_encode(expect)} as you were given; refusing it"
        )
    await _follow(client, policy, served)
    return policy.digest


async def pin_policy(
    client: AttacheClient, *, expect_founding: bytes | None = None
) -> tuple[bytes, SignedPolicy] | None:
    """At enrolment: the server's latest policy and its founding digest, verified from the
    founding version (``expect_founding``, when the security officer gave its digest);
    None when the server publishes none. The caller pins it once the device is saved."""
    served = await fetch_policy(client)
    if served is None:
        if expect_founding is not None:
            raise PolicyRefused(
                "you were given a coalition policy digest, but the server publishes no "
                "coalition policy; refusing to enrol without it"
            )
        return None
    return await _from_founding(client, served, expect_founding), served


async def hold_policy(client: AttacheClient, keystore: Keystore) -> HeldPolicy | None:
    """The policy in force for this device, following the server from the one pinned.

    Fetches ``GET /v1/policy``; accepts a later version only through valid successors of the
    one held, and pins it. With none pinned, a served policy is verified from its founding
    version and pinned (first use); with none pinned and none served, None (``NO_POLICY``).
    """
    held = keystore.policy_pin()
    served = await fetch_policy(client)
    if held is None:
        if served is None:
            log.warning(NO_POLICY)
            return None
        founding = await _from_founding(client, served, None)
        keystore.pin_policy(founding, served)
        log.warning(
            "pinned coalition policy version %d (founding digest %s) on first use",
            served.policy.policy_version,
            keys.b64u_encode(founding),
        )
        return HeldPolicy(founding, served, pinned_now=True)
    founding, latest = held
    if served is None:
        raise PolicyRefused(
            f"this device holds coalition policy version {latest.policy.policy_version}, but "
            "the server publishes none: refusing to fall back to trusting the server's "
            "directory"
        )
    policy = await _follow(client, latest.policy, served)
    if policy.policy_version != latest.policy.policy_version:
        keystore.pin_policy(founding, served)
        return HeldPolicy(founding, served, previous_version=latest.policy.policy_version)
    return HeldPolicy(founding, latest)


async def policy_versions(
    client: AttacheClient, keystore: Keystore, *wanted: int
) -> dict[int, CoalitionPolicy]:
    """Versions ``wanted`` of the held policy, each verified through the chain from the
    pinned founding version (and through the version held), for showing and comparing."""
    held = await hold_policy(client, keystore)
    if held is None:
        raise PolicyRefused("there is no coalition policy: the server publishes none")
    last = held.policy.policy_version
    for version in wanted:
        if not 1 <= version <= last:
            raise PolicyRefused(
                f"there is no coalition policy version {version}: the latest is version {last}"
            )
    found: dict[int, CoalitionPolicy] = {}
    current: CoalitionPolicy | None = None
    for version in range(1, max(wanted, default=0) + 1):
        signed = await _step(client, version, last, held.latest)
        try:
            current = (
                verify_founding(signed) if current is None else verify_successor(current, signed)
            )
        except PolicyError as exc:
            raise PolicyRefused(
                f"the server's coalition policy version {version} is refused: {exc}"
            ) from exc
        if version == 1 and current.digest != held.founding:
            raise PolicyRefused(
                "the server's founding coalition policy is not the one pinned here "
                f"({current.digest_b64u}, not {held.founding_b64u})"
            )
        if version in wanted:
            found[version] = current
    if last in found and found[last].digest != held.policy.digest:
        raise PolicyRefused(f"the server serves two different coalition policy versions {last}")
    return found


def describe_changes(old: CoalitionPolicy, new: CoalitionPolicy) -> list[str]:
    """What changed from ``old`` to ``new``, one plain line each (empty when nothing did)."""
    lines: list[str] = []
    if old.coalition != new.coalition:
        lines.append(f"coalition {old.coalition} -> {new.coalition}")
    if old.threshold != new.threshold:
        lines.append(f"threshold {old.threshold} -> {new.threshold}")
    for code in sorted(set(old.nations) | set(new.nations)):
        before, after = old.nations.get(code), new.nations.get(code)
        if before is None and after is not None:
            lines.append(
                f"+ nation {code} ({after.name}), keys {', '.join(sorted(after.authority_keys))}"
            )
            continue
        if after is None and before is not None:
            lines.append(f"- nation {code} ({before.name})")
            continue
        assert before is not None
        assert after is not None
        if before.name != after.name:
            lines.append(f"~ nation {code} name {before.name!r} -> {after.name!r}")
        for kid in sorted(set(after.authority_keys) - set(before.authority_keys)):
            lines.append(f"+ nation {code} authority key {kid}")
        for kid in sorted(set(before.authority_keys) - set(after.authority_keys)):
            lines.append(f"- nation {code} authority key {kid}")
    for name in sorted(set(old.groups) | set(new.groups)):
        was, now = set(old.groups.get(name, ())), set(new.groups.get(name, ()))
        if name not in old.groups:
            lines.append(f"+ group {name}: {', '.join(sorted(now))}")
        elif name not in new.groups:
            lines.append(f"- group {name}")
        elif was != now:
            change = [f"+{m}" for m in sorted(now - was)] + [f"-{m}" for m in sorted(was - now)]
            lines.append(f"~ group {name}: {' '.join(change)}")
    if old.catalog_toml != new.catalog_toml:
        lines.append("~ catalog:")
        lines.extend(
            "  " + line.rstrip("\n")
            for line in difflib.unified_diff(
                old.catalog_toml.splitlines(),
                new.catalog_toml.splitlines(),
                f"catalog v{old.policy_version}",
                f"catalog v{new.policy_version}",
                n=1,
                lineterm="",
            )
        )
    return lines


# --- governing the policy: proposals and signatures ------------------------------------------


@dataclass(frozen=True)
class PolicyEdits:
    """Changes from one policy version to the next (``next_version`` applies them).

    ``groups`` sets each named group to the members given; an empty list removes the group.
    ``add_keys`` adds authority keys to nations already listed and ``remove_keys`` removes
    keys by id: rotating a nation's key is both, signed with the old key (the new one counts
    only from the version after).
    """

    add_nations: Sequence[PolicyNation] = ()
    remove_nations: Sequence[str] = ()
    add_keys: Mapping[str, Sequence[bytes]] = field(default_factory=dict)
    remove_keys: Sequence[str] = ()
    groups: Mapping[str, Sequence[str]] = field(default_factory=dict)
    threshold: int | None = None
    catalog_toml: str | None = None


def next_version(current: CoalitionPolicy, edits: PolicyEdits) -> CoalitionPolicy:
    """The version after ``current`` with ``edits`` applied; PolicyError naming what cannot
    be done (a nation added twice, a key or nation not listed, no change at all)."""
    nations = dict(current.nations)
    for nation in edits.add_nations:
        if nation.code in nations:
            raise PolicyError(
                f"{nation.code} is already a nation of policy version {current.policy_version}"
            )
        nations[nation.code] = nation
    for code in edits.remove_nations:
        if nations.pop(code, None) is None:
            raise PolicyError(f"{code} is not a nation of policy version {current.policy_version}")
    for code, added in edits.add_keys.items():
        entry = nations.get(code)
        if entry is None:
            raise PolicyError(
                f"{code} is not a nation of policy version {current.policy_version}: add it "
                "as a nation with its authority key"
            )
        fresh = PolicyNation.of(code, entry.name, added)
        if taken := set(fresh.authority_keys) & set(entry.authority_keys):
            raise PolicyError(f"{code} already has authority key {', '.join(sorted(taken))}")
        keys_ = {**entry.authority_keys, **fresh.authority_keys}
        nations[code] = PolicyNation.of(code, entry.name, keys_.values())
    for key_id in edits.remove_keys:
        owner = next((c for c, n in nations.items() if key_id in n.authority_keys), None)
        if owner is None:
            raise PolicyError(
                f"no nation of policy version {current.policy_version} has authority key {key_id}"
            )
        entry = nations[owner]
        left = [key for kid, key in entry.authority_keys.items() if kid != key_id]
        if not left:
            raise PolicyError(
                f"authority key {key_id} is {owner}'s only key: add its new key in the same "
                "proposal (a rotation), or remove the nation"
            )
        nations[owner] = PolicyNation.of(owner, entry.name, left)
    groups = {name: list(members) for name, members in current.groups.items()}
    for name, members in edits.groups.items():
        if members:
            groups[name] = list(members)
        elif groups.pop(name, None) is None:
            raise PolicyError(
                f"policy version {current.policy_version} has no group {name} to remove"
            )
    threshold = current.threshold if edits.threshold is None else edits.threshold
    policy = build_policy(
        coalition=current.coalition,
        nations=nations.values(),
        groups=groups,
        catalog_toml=current.catalog_toml if edits.catalog_toml is None else edits.catalog_toml,
        threshold=threshold,
        previous=current,
    )
    if not describe_changes(current, policy):
        raise PolicyError("nothing to propose: the edits leave the policy as it is")
    return policy


def check_own_signature(held: CoalitionPolicy, signed: SignedPolicy) -> None:
    """PolicyError unless every signature ``signed`` carries counts under ``held`` (the
    latest version, whose nations sign the next): checked here before the server sees it."""
    signing_nations(held, signed)


async def propose(
    client: AttacheClient,
    held: CoalitionPolicy,
    proposal: CoalitionPolicy | SignedPolicy,
    signer: tuple[str, AuthorityKey] | None = None,
) -> dict[str, Any]:
    """Propose a version after ``held`` (with the signatures it carries, and ``signer``'s
    nation's when given) through ``POST /v1/policy/proposals``; the proposal as the server
    stores it. Every signature must count under ``held``, checked here first."""
    signed = proposal if isinstance(proposal, SignedPolicy) else SignedPolicy(proposal, ())
    policy = signed.policy
    try:
        check_successor(held, policy)
        if signer is not None:
            signed = signed.with_signature(sign_policy(policy, *signer))
        check_own_signature(held, signed)
    except PolicyError as exc:
        raise PolicyRefused(
            f"cannot propose policy version {policy.policy_version}: {exc}"
        ) from exc
    return await client.propose_policy(signed.to_json())


async def fetch_proposal(client: AttacheClient, held: CoalitionPolicy, digest: str) -> SignedPolicy:
    """The server's proposal ``digest``, once it is that digest and follows ``held``."""
    raw = await client.policy_proposal(digest)
    try:
        proposal = SignedPolicy.from_json(raw)
    except PolicyError as exc:
        raise PolicyRefused(f"the server's proposal {digest} is malformed: {exc}") from exc
    if proposal.policy.digest_b64u != digest:
        raise PolicyRefused(
            f"the server answered for proposal {digest} with another version "
            f"({proposal.policy.digest_b64u}); refusing to sign it"
        )
    try:
        check_successor(held, proposal.policy)
    except PolicyError as exc:
        raise PolicyRefused(
            f"proposal {digest} does not follow policy version {held.policy_version} held "
            f"here: {exc}"
        ) from exc
    return proposal


async def sign_proposal(
    client: AttacheClient,
    held: CoalitionPolicy,
    proposal: SignedPolicy,
    nation: str,
    authority: AuthorityKey,
) -> dict[str, Any]:
    """Add ``nation``'s signature over ``proposal`` (made here with its authority key, which
    ``held`` must list for it) through ``POST /v1/policy/proposals``."""
    try:
        signed = SignedPolicy(proposal.policy, (sign_policy(proposal.policy, nation, authority),))
        check_own_signature(held, signed)
    except PolicyError as exc:
        raise PolicyRefused(
            f"{nation} cannot sign policy version {proposal.policy.policy_version}: {exc}"
        ) from exc
    return await client.propose_policy(signed.to_json())
