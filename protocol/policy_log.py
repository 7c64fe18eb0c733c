"""Coalition policy versions bound through the audit log (PROTOCOL.md §18.6).

Pure and I/O-free. The server records every published version as a ``policy.publish`` leaf
(allow) naming the version, its policy digest and the digest of the version before. Witnesses
cosign a checkpoint's origin, size and root, never extension lines, so the policy is bound
through the tree: a version is *in the log* when its publication leaf is, and the log holds
one chain of publications.

``verify_publication`` is what a client does with ``GET /v1/policy/{version}/proof`` before
it accepts a version; ``PolicyChain`` is what an auditor does with the leaves, in log order:
versions 1, 2, 3 ... each naming the one before, with no gap and no second publication of a
version (a fork). Refusals are ``TransparencyError``s whose messages say what was wrong.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from protocol import checkpoint as notes
from protocol import merkle
from protocol.coalition import CoalitionPolicy
from protocol.transparency import (
    TransparencyError,
    _b64u,
    _b64u_decode,
    _field,
    _hashes,
    _index,
    _part,
    _text,
    parse_leaf,
    verify_checkpoint,
)

__all__ = [
    "PUBLISH_ACTION",
    "PolicyChain",
    "Publication",
    "VerifiedPublication",
    "is_publication",
    "parse_publication",
    "verify_publication",
]

#: The action of a policy version's publication leaf (allow decisions only).
PUBLISH_ACTION: Final = "policy.publish"
_MAX_VERSION: Final = 2**53 - 1


@dataclass(frozen=True, slots=True)
class Publication:
    """What a ``policy.publish`` leaf says: the version, its digest and its predecessor's
    (b64u; None for the founding version), and the coalition."""

    policy_version: int
    digest: str
    previous: str | None
    coalition: str


def is_publication(leaf: Mapping[str, Any]) -> bool:
    """Whether an audit leaf publishes a coalition policy version (refusals do not)."""
    return leaf.get("action") == PUBLISH_ACTION and leaf.get("decision") == "allow"


def _digest(value: object, what: str) -> str:
    if len(_b64u_decode(value, what)) != merkle.HASH_SIZE:
        raise TransparencyError(f"{what} is not 32 bytes")
    assert isinstance(value, str)
    return value


def parse_publication(leaf: Mapping[str, Any]) -> Publication:
    """The publication a ``policy.publish`` (allow) leaf records; TransparencyError if it is
    not one or is malformed. ``object`` is ``{"type": "policy", "id": "<version>"}`` (the
    version in decimal, no leading zero); ``details`` holds ``coalition``, ``digest`` and
    ``previous`` (null for version 1)."""
    if not is_publication(leaf):
        raise TransparencyError(
            f"the leaf is a {leaf.get('action')!r} ({leaf.get('decision')!r}) event, not a "
            f"policy publication ({PUBLISH_ACTION}, allow)"
        )
    kind, ident = _field(leaf, "object", "type"), _field(leaf, "object", "id")
    if kind != "policy" or not isinstance(ident, str) or not ident.isascii():
        raise TransparencyError("the publication leaf's object is not a policy version")
    if not ident.isdigit() or str(int(ident)) != ident or not 1 <= int(ident) <= _MAX_VERSION:
        raise TransparencyError(f"the publication leaf names no policy version ({ident!r})")
    version = int(ident)
    details = leaf.get("details")
    if not isinstance(details, Mapping):
        raise TransparencyError(f"the publication of version {version} has no details")
    coalition = details.get("coalition")
    if not isinstance(coalition, str) or not coalition:
        raise TransparencyError(f"the publication of version {version} names no coalition")
    digest = _digest(details.get("digest"), f"the digest of version {version}'s publication")
    previous = details.get("previous", ...)
    if previous is ...:
        raise TransparencyError(f"the publication of version {version} has no previous digest")
    if previous is not None:
        previous = _digest(previous, f"the previous digest of version {version}'s publication")
    if (version == 1) != (previous is None):
        raise TransparencyError(
            f"the publication of version {version} has "
            + ("a previous digest" if version == 1 else "no previous digest")
        )
    return Publication(version, digest, previous, coalition)


# --------------------------------------------------------------------------------------------
# What a client checks


@dataclass(frozen=True)
class VerifiedPublication:
    """A policy version shown published in the log at checkpoint (``size``, ``root``), by the
    leaf at ``index``."""

    size: int
    root: bytes
    note: str
    index: int
    publication: Publication


def verify_publication(
    answer: Mapping[str, Any],
    *,
    log_key: notes.NoteVerifier,
    policy: CoalitionPolicy,
    held: tuple[int, bytes] | None = None,
) -> VerifiedPublication:
    """Check ``GET /v1/policy/{version}/proof`` (PROTOCOL.md §18.6) for ``policy``, a version
    whose signatures the client verified: the checkpoint verifies with the pinned audit key
    and extends ``held`` (as §19.4 step 1), and the publication leaf is in its tree and
    records exactly this version (number, coalition, digest, and its predecessor's digest).

    Raises ``CheckpointRefused`` for the checkpoint, ``TransparencyError`` naming the version
    otherwise."""
    version = policy.policy_version
    if not isinstance(answer, Mapping):
        raise TransparencyError(f"the proof of coalition policy version {version} is not JSON")
    size, root, note = verify_checkpoint(_part(answer, "checkpoint"), log_key=log_key, held=held)
    part = _part(answer, "publication")
    index = _index(part.get("index"), "the publication leaf's index")
    data = _text(part.get("leaf"), "publication leaf").encode("utf-8")
    if index >= size or not merkle.verify_inclusion(
        merkle.leaf_hash(data), index, size, _hashes(part.get("proof"), "the proof"), root
    ):
        raise TransparencyError(
            f"coalition policy version {version} is not in the audit log: the inclusion proof "
            f"of its publication (leaf {index}) does not verify at the checkpoint of size {size}"
        )
    try:
        found = parse_publication(parse_leaf(data, "the publication leaf"))
    except TransparencyError as exc:
        raise TransparencyError(
            f"the leaf {index} shown as coalition policy version {version}'s publication is "
            f"not one: {exc}"
        ) from exc
    previous = None if policy.previous is None else _b64u(policy.previous)
    expected = Publication(version, policy.digest_b64u, previous, policy.coalition)
    if found != expected:
        wrong = [
            name
            for name in ("policy_version", "digest", "previous", "coalition")
            if getattr(found, name) != getattr(expected, name)
        ]
        raise TransparencyError(
            f"the audit log's publication at leaf {index} is not coalition policy version "
            f"{version} as served: its {', '.join(wrong)} differ"
            + (
                f" (the log has digest {found.digest}, the server serves {expected.digest})"
                if "digest" in wrong
                else ""
            )
        )
    return VerifiedPublication(size, root, note, index, found)


# --------------------------------------------------------------------------------------------
# What an auditor checks


@dataclass(frozen=True, slots=True)
class LoggedVersion:
    """A publication as an auditor found it: what it says and the leaf it is at."""

    index: int
    publication: Publication


class PolicyChain:
    """The chain of policy publications in log order (PROTOCOL.md §18.6, §19.5): version 1
    with no previous digest, then each version one more than the last, naming the last one's
    digest. ``apply`` returns why a publication breaks it (a gap, a fork, a wrong previous
    digest, another coalition, a malformed leaf), naming the leaf; the first publication of a
    version stays the chain's."""

    def __init__(self) -> None:
        self.versions: dict[int, LoggedVersion] = {}
        self.latest: LoggedVersion | None = None

    def apply(self, index: int, leaf: Mapping[str, Any]) -> str | None:
        if not is_publication(leaf):
            return None
        try:
            found = parse_publication(leaf)
        except TransparencyError as exc:
            return f"leaf {index}: a malformed policy publication: {exc}"
        version, latest = found.policy_version, self.latest
        last = 0 if latest is None else latest.publication.policy_version
        first = self.versions.get(version)
        if first is not None or version <= last:
            where = (
                f"leaf {first.index} published it first (digest {first.publication.digest})"
                if first is not None
                else f"version {last} was published before it"
            )
            return (
                f"leaf {index}: FORK: coalition policy version {version} is published again "
                f"(digest {found.digest}); {where}"
            )
        logged = LoggedVersion(index, found)
        self.versions[version] = logged
        self.latest = logged
        if version != last + 1:
            return (
                f"leaf {index}: coalition policy version {version} is published, but version "
                f"{last + 1} never was: a gap in the chain"
            )
        assert latest is not None or version == 1
        if latest is not None and found.coalition != latest.publication.coalition:
            return (
                f"leaf {index}: coalition policy version {version} is of coalition "
                f"{found.coalition!r}, not {latest.publication.coalition!r} as version {last}"
            )
        expected = None if latest is None else latest.publication.digest
        if found.previous != expected:
            assert latest is not None
            return (
                f"leaf {index}: coalition policy version {version} names previous digest "
                f"{found.previous}, but version {last} was published at leaf {latest.index} "
                f"with digest {expected}: the chain is broken"
            )
        return None
