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

Each version is also bound through the audit log (PROTOCOL.md §18.6): before a version is
accepted (at enrolment, on first use, when following), ``PolicyLog.prove`` checks its
``policy.publish`` leaf's inclusion proof (``GET /v1/policy/{version}/proof``) against the
audit key pinned at enrolment and a checkpoint that extends the one the home keeps, so that a
version the server shows some clients but never logged, or logged with another digest, is
refused, naming the version; auditors hold the log to one chain (``clients.sdk.audit``). The
latest version proven is recorded in ``policy-log.json``; a version pinned before this check
existed is not refused for lacking a proof, but said (a warning) until one is shown.
"""

from __future__ import annotations

import asyncio
import difflib
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from clients.sdk._client import ApiError, AttacheClient
from clients.sdk.keystore import Keystore, KeystoreError, WitnessRequirement, _write_private
from clients.sdk.transparency import NOT_LOGGED_WAIT, DeviceTransparency
from protocol import checkpoint as notes
from protocol import keys, policy_log
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
from protocol.cosignature import check_witnesses
from protocol.keys import AuthorityKey
from protocol.transparency import TransparencyError

log = logging.getLogger("attache.sdk")
log.addHandler(logging.NullHandler())  # a library's: shown only where the program logs

NO_POLICY = (
    "warning: the server publishes no coalition policy, so this client takes the nations' "
    "authority keys, the partner groups and the label catalog from the server on first use; "
    "a compromised server could add a nation or widen a group (docs/coalition.md)"
)


class PolicyRefused(Exception):
    """The server's coalition policy cannot be held to: the message says what was wrong."""


class NotLoggedYet(PolicyRefused):
    """The server says the version's publication is not in a checkpoint yet (it waits for the
    audit integrator's next batch) and it still was not after the time allowed."""


#: Seconds to keep asking for a version's proof while its publication waits for the audit
#: integrator's next batch (every second by default), as for a device not logged yet.
LOG_WAIT = NOT_LOGGED_WAIT
_FIRST_DELAY = 0.1
_MAX_DELAY = 1.0
#: Where a home records the latest policy version it saw proven in the audit log.
LOGGED_FILE = "policy-log.json"


class PolicyLog:
    """The audit log as this device holds it, for proving policy versions (PROTOCOL.md
    §18.6): the pinned audit key and the largest checkpoint verified, read from and kept in
    the keystore when one is given (``Keystore.keep_checkpoint``, as the key directory's
    checks keep it)."""

    def __init__(
        self,
        client: AttacheClient,
        log_key: notes.NoteVerifier,
        held: tuple[int, bytes] | None = None,
        *,
        keystore: Keystore | None = None,
        wait: float = LOG_WAIT,
    ) -> None:
        self.client = client
        self.log_key = log_key
        self.held = held
        self.keystore = keystore
        self.wait = wait
        # The proof of the last version ``pin_policy`` proved, for enrolment to record.
        self.proven: policy_log.VerifiedPublication | None = None

    @classmethod
    def for_key(cls, client: AttacheClient, vkey: str, *, wait: float = LOG_WAIT) -> PolicyLog:
        """For a device being enrolled: the audit key it is about to pin, no checkpoint yet."""
        try:
            return cls(client, notes.NoteVerifier.from_vkey(vkey), wait=wait)
        except notes.CheckpointError as exc:
            raise PolicyRefused(f"the server's audit key is not a log's key: {exc}") from exc

    @classmethod
    async def for_keystore(
        cls, client: AttacheClient, keystore: Keystore, *, wait: float | None = None
    ) -> PolicyLog:
        """The audit key pinned in ``keystore`` (pinned now, on first use, for a home from
        before key transparency: ``DeviceTransparency.for_keystore`` says so) and the
        checkpoint kept there."""
        try:
            checker = await DeviceTransparency.for_keystore(client, keystore)
        except (TransparencyError, KeystoreError) as exc:
            raise PolicyRefused(f"cannot check the audit log: {exc}") from exc
        wait = LOG_WAIT if wait is None else wait
        return cls(client, checker.log_key, checker.held, keystore=keystore, wait=wait)

    async def prove(self, policy: CoalitionPolicy) -> policy_log.VerifiedPublication:
        """``policy``'s publication, proven in the log at a checkpoint that extends the one
        held; PolicyRefused naming the version otherwise. While the server says the leaf is
        not in a checkpoint yet (503), asks again for up to ``wait`` seconds."""
        version = policy.policy_version
        self._adopt_kept()
        required = self._required()
        deadline = time.monotonic() + self.wait
        delay = _FIRST_DELAY
        while True:
            params: dict[str, Any] = {"old": 0 if self.held is None else self.held[0]}
            if required is not None:
                # At the latest checkpoint the witnesses required here cosigned, as bundles.
                params |= {"witness": required.names(), "min_witnesses": required.minimum}
            try:
                answer = await self.client.request(
                    "GET", f"/v1/policy/{int(version)}/proof", params=params
                )
                break
            except ApiError as exc:
                now = time.monotonic()
                if exc.status == 503 and now < deadline:
                    await asyncio.sleep(min(delay, deadline - now))
                    delay = min(delay * 2, _MAX_DELAY)
                    continue
                if exc.status in (404, 503):
                    refusal = NotLoggedYet if exc.status == 503 else PolicyRefused
                    raise refusal(
                        f"coalition policy version {version} is not in the audit log (the "
                        f"server says: {exc.detail}); refusing it"
                    ) from exc
                raise PolicyRefused(
                    f"cannot check that coalition policy version {version} is in the audit "
                    f"log: {exc.detail}"
                ) from exc
        if required is not None:
            self._check_cosignatures(answer, required, version)
        try:
            verified = policy_log.verify_publication(
                answer, log_key=self.log_key, policy=policy, held=self.held
            )
        except TransparencyError as exc:
            raise PolicyRefused(f"coalition policy version {version} is refused: {exc}") from exc
        self._hold(verified.size, verified.root, cosigned=required is not None)
        return verified

    def _required(self) -> WitnessRequirement | None:
        """The witnesses this home requires (``Keystore.required_witnesses``), or None."""
        if self.keystore is None:
            return None
        try:
            return self.keystore.required_witnesses()
        except KeystoreError as exc:
            raise PolicyRefused(f"cannot check the audit log: {exc}") from exc

    @staticmethod
    def _check_cosignatures(answer: Any, required: WitnessRequirement, version: int) -> None:
        """The proof's checkpoint carries the cosignatures required here (as a bundle's must,
        clients.sdk.transparency), before anything in it is believed."""
        part = answer.get("checkpoint") if isinstance(answer, dict) else None
        note = part.get("note") if isinstance(part, dict) else None
        if not isinstance(note, str):
            raise PolicyRefused(f"the proof of coalition policy version {version} has no note")
        now = None if required.max_age is None else int(time.time())
        try:
            found = check_witnesses(note, required.verifiers(), now=now, max_age=required.max_age)
        except notes.CheckpointError as exc:
            raise PolicyRefused(
                f"coalition policy version {version} is refused: its checkpoint note is "
                f"malformed: {exc}"
            ) from exc
        problems = found.problems(required.minimum)
        if problems:
            raise PolicyRefused(
                f"coalition policy version {version} is refused: the checkpoint it is proven at "
                "lacks the witnesses' cosignatures this device requires: " + "; ".join(problems)
            )

    def settle(self, keystore: Keystore) -> None:
        """At enrolment, once the device is saved, its audit key and its policy pinned: record
        the last version ``pin_policy`` proved, and keep the checkpoint it was proven at."""
        if self.proven is None:
            return
        record_logged(keystore, self.proven)
        self.keystore = keystore
        held, self.held = self.held, None
        if held is not None:
            self._hold(*held)

    def _adopt_kept(self) -> None:
        """Be held to a larger checkpoint another run, or the key directory's checks, kept."""
        if self.keystore is None:
            return
        try:
            kept = self.keystore.held_checkpoint()
        except KeystoreError as exc:
            raise PolicyRefused(f"cannot check the audit log: {exc}") from exc
        if kept is not None and (self.held is None or kept[0] >= self.held[0]):
            if self.held is not None and kept[0] == self.held[0] and kept[1] != self.held[1]:
                raise PolicyRefused(
                    f"the checkpoint of size {kept[0]} kept in {self.keystore.home} has another "
                    "root than the one verified here: the log forked"
                )
            self.held = kept

    def _hold(self, size: int, root: bytes, *, cosigned: bool = False) -> None:
        """Hold the checkpoint a proof verified at, and keep it in the home: the server is
        then bound to a log that holds the publication, since every later checkpoint this
        home accepts (a bundle's, a proof's) must extend it. A home that requires witnesses
        keeps only checkpoints they cosigned: one checked without them (at enrolment, before
        the requirement is kept) is held for this run only."""
        if self.held == (size, root):
            return
        self.held = (size, root)
        if self.keystore is None or (not cosigned and self._requires_witnesses()):
            return
        try:
            self.keystore.keep_checkpoint(size, root)
        except KeystoreError as exc:
            # Another process kept a larger one meanwhile: the next proof is held to it.
            kept = self.keystore.held_checkpoint()
            if kept is None or kept[0] <= size:
                raise PolicyRefused(f"cannot keep the audit log's checkpoint: {exc}") from exc

    def _requires_witnesses(self) -> bool:
        try:
            return self._required() is not None
        except PolicyRefused:
            return True


def logged_version(keystore: Keystore) -> tuple[int, str] | None:
    """The latest policy version (number, digest b64u) this home saw proven in the log."""
    try:
        data = json.loads((keystore.home / LOGGED_FILE).read_text(encoding="utf-8"))
        return int(data["policy_version"]), str(data["digest"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise KeystoreError(f"{keystore.home / LOGGED_FILE} is damaged: {exc}") from exc


def logged_leaf(keystore: Keystore, policy: CoalitionPolicy) -> tuple[int, int] | None:
    """(leaf index, checkpoint size) at which this home saw ``policy`` proven in the log, or
    None if it did not (a version pinned before clients checked, or not proven yet)."""
    try:
        data = json.loads((keystore.home / LOGGED_FILE).read_text(encoding="utf-8"))
        if (data["policy_version"], data["digest"]) != (policy.policy_version, policy.digest_b64u):
            return None
        return int(data["index"]), int(data["size"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        return None  # logged_version names a damaged file


def record_logged(keystore: Keystore, proven: policy_log.VerifiedPublication) -> None:
    """Record that this home saw ``proven``'s version in the log (at its leaf and checkpoint)."""
    found = proven.publication
    record = {
        "policy_version": found.policy_version,
        "digest": found.digest,
        "index": proven.index,
        "size": proven.size,
    }
    keystore.home.mkdir(parents=True, exist_ok=True, mode=0o700)
    _write_private(keystore.home / LOGGED_FILE, json.dumps(record, indent=1).encode())


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
) -> list[CoalitionPolicy]:
    """The versions after ``held`` up to ``served``'s, once each is a valid successor of the
    one before (none when ``served`` is ``held``)."""
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
        return []
    current = held
    followed: list[CoalitionPolicy] = []
    for version in range(start + 1, last + 1):
        signed = await _step(client, version, last, served)
        try:
            current = verify_successor(current, signed)
        except PolicyError as exc:
            raise PolicyRefused(
                f"the server's coalition policy version {signed.policy.policy_version} does not "
                f"follow version {current.policy_version} held here: {exc}"
            ) from exc
        followed.append(current)
    return followed


async def _from_founding(
    client: AttacheClient, served: SignedPolicy, expect: bytes | None
) -> list[CoalitionPolicy]:
    """Every version from the founding one to ``served``'s, once the chain is valid (and the
    founding version is ``expect``, when given)."""
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
    return [policy, *await _follow(client, policy, served)]


async def _prove_all(
    checker: PolicyLog, versions: Sequence[CoalitionPolicy]
) -> policy_log.VerifiedPublication | None:
    """Prove each of ``versions`` in the log, in order; the last one's proof."""
    proven = None
    for policy in versions:
        proven = await checker.prove(policy)
    return proven


async def pin_policy(
    client: AttacheClient,
    *,
    expect_founding: bytes | None = None,
    audit_log: PolicyLog | None = None,
) -> tuple[bytes, SignedPolicy] | None:
    """At enrolment: the server's latest policy and its founding digest, verified from the
    founding version (``expect_founding``, when the security officer gave its digest), and,
    with ``audit_log`` (for the audit key about to be pinned), every version proven in the
    audit log (``audit_log.settle`` then records it); None when the server publishes none.
    The caller pins it once the device is saved."""
    served = await fetch_policy(client)
    if served is None:
        if expect_founding is not None:
            raise PolicyRefused(
                "you were given a coalition policy digest, but the server publishes no "
                "coalition policy; refusing to enrol without it"
            )
        return None
    chain = await _from_founding(client, served, expect_founding)
    if audit_log is not None:
        audit_log.proven = await _prove_all(audit_log, chain)
    return chain[0].digest, served


async def hold_policy(
    client: AttacheClient, keystore: Keystore, *, check_log: bool = True
) -> HeldPolicy | None:
    """The policy in force for this device, following the server from the one pinned.

    Fetches ``GET /v1/policy``; accepts a later version only through valid successors of the
    one held, each proven in the audit log (unless ``check_log`` is False), and pins it. With
    none pinned, a served policy is verified from its founding version, proven, and pinned
    (first use); with none pinned and none served, None (``NO_POLICY``). A version held from
    before this home checked the log is kept, and said, until the log proves it.
    """
    held = keystore.policy_pin()
    served = await fetch_policy(client)
    if held is None:
        if served is None:
            log.warning(NO_POLICY)
            return None
        chain = await _from_founding(client, served, None)
        proven = None
        if check_log:
            proven = await _prove_all(await PolicyLog.for_keystore(client, keystore), chain)
        keystore.pin_policy(chain[0].digest, served)
        if proven is not None:
            record_logged(keystore, proven)
        log.warning(
            "pinned coalition policy version %d (founding digest %s) on first use",
            served.policy.policy_version,
            keys.b64u_encode(chain[0].digest),
        )
        return HeldPolicy(chain[0].digest, served, pinned_now=True)
    founding, latest = held
    if served is None:
        raise PolicyRefused(
            f"this device holds coalition policy version {latest.policy.policy_version}, but "
            "the server publishes none: refusing to fall back to trusting the server's "
            "directory"
        )
    followed = await _follow(client, latest.policy, served)
    if check_log and followed:
        proven = await _prove_all(await PolicyLog.for_keystore(client, keystore), followed)
        assert proven is not None
        keystore.pin_policy(founding, served)
        record_logged(keystore, proven)
    elif check_log:
        await _check_held(client, keystore, latest.policy)
    elif followed:
        keystore.pin_policy(founding, served)
    if followed:
        return HeldPolicy(founding, served, previous_version=latest.policy.policy_version)
    return HeldPolicy(founding, latest)


async def _check_held(client: AttacheClient, keystore: Keystore, held: CoalitionPolicy) -> None:
    """The version held, when this home has not seen it proven in the log (it was pinned
    before clients checked: an older deployment's home): proven now and recorded if the log
    shows it; otherwise kept, since it was accepted before, and said (a warning). Nothing
    accepted before is refused for this; every later version must be in the log."""
    try:
        recorded = logged_version(keystore)
    except KeystoreError as exc:
        log.warning("%s; checking the policy held again", exc)
        recorded = None
    if recorded == (held.policy_version, held.digest_b64u):
        return
    try:
        checker = await PolicyLog.for_keystore(client, keystore, wait=0.0)
        proven = await checker.prove(held)
    except NotLoggedYet:
        return  # published moments ago: asked again at the next use
    except PolicyRefused as exc:
        log.warning(
            "coalition policy version %d held here was pinned before this client checked "
            "policy versions in the audit log, and the log does not prove it (%s): it stays "
            "held, as it was accepted before; every later version must be in the log",
            held.policy_version,
            exc,
        )
        return
    record_logged(keystore, proven)


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
