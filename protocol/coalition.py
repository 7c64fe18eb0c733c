"""The coalition policy: one versioned document holding what no server alone may change.

docs/PROTOCOL.md §18 is the byte-level contract; this module implements it.

Document
    A policy version holds the nation registry (each nation with its enrolment authority
    public keys), the partner groups the coalition adds to the catalog's, the label catalog
    itself (its TOML text, whole) and a threshold. ``Catalog.from_toml(catalog)
    .with_directory(nations, groups)`` is the catalog it describes, exactly as ``GET
    /v1/catalog`` is rebuilt today. The catalog is carried as the text the nations read and
    sign, not as a digest of a file fetched elsewhere nor as a second JSON form of the catalog:
    the bytes signed are the bytes every client parses, and an independent client needs no
    canonical form of the catalog beyond its TOML (about 6 KB for the shipped one).

Chain
    Version 1 (the founding version) is signed by every nation it lists, each with one of its
    own keys in it. Version N+1 names the digest of version N and counts only when at least
    version N's ``threshold`` distinct nations of version N sign it, each with a key that
    version N lists for it. Signers are judged by version N alone: a nation that N+1 removes
    still counts (for its own removal too), a nation that N+1 adds does not, and a key that
    N+1 adds signs only from N+2 on. Every signature carried must be valid and counted: an
    unknown key, another nation's key, a forgery or a nation signing twice refuses the whole
    document rather than being skipped, so that what is stored is exactly what was checked.

Every failure raises ``PolicyError`` (a ValueError) whose message names what is wrong.
"""

from __future__ import annotations

import copy
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from cryptography.exceptions import InvalidSignature

from protocol.canonical import (
    CTX_COALITION_POLICY,
    CTX_COALITION_POLICY_SIGNATURE,
    CanonicalizationError,
    canonical_json,
    digest,
    with_context,
)
from protocol.catalog import NAME, NATION, Catalog, CatalogError
from protocol.keys import (
    AUTHORITY_KEY_ID_SIZE,
    ED25519_PUBLIC_KEY_SIZE,
    SIGNATURE_SIZE,
    AuthorityKey,
    _load_json_object,
    authority_key_id,
    b64u_decode,
    b64u_encode,
    load_signing_public_key,
)

__all__ = [
    "CTX_COALITION_POLICY",
    "CTX_COALITION_POLICY_SIGNATURE",
    "MAX_CATALOG_BYTES",
    "MAX_GROUPS",
    "MAX_KEYS_PER_NATION",
    "MAX_NATIONS",
    "MAX_POLICY_BYTES",
    "POLICY_FIELDS",
    "POLICY_FORMAT_VERSION",
    "CoalitionPolicy",
    "PolicyError",
    "PolicyNation",
    "PolicySignature",
    "SignedPolicy",
    "build_policy",
    "check_successor",
    "parse_policy",
    "sign_policy",
    "signing_nations",
    "verify_chain",
    "verify_founding",
    "verify_successor",
]

POLICY_FORMAT_VERSION: Final = 1
POLICY_FIELDS: Final = frozenset(
    {"version", "coalition", "policy_version", "previous", "threshold", "nations", "groups",
     "catalog"}
)  # fmt: skip
_NATION_FIELDS: Final = frozenset({"name", "authority_keys"})
_SIGNED_FIELDS: Final = frozenset({"policy", "signatures"})
_SIGNATURE_FIELDS: Final = frozenset({"nation", "key_id", "signature"})
_DIGEST_SIZE: Final = 32

MAX_NATIONS: Final = 300
MAX_KEYS_PER_NATION: Final = 8
MAX_GROUPS: Final = 256
MAX_CATALOG_BYTES: Final = 256 * 1024
MAX_POLICY_BYTES: Final = 1024 * 1024
_MAX_NAME = 120
_MAX_POLICY_VERSION = 2**53 - 1
_COALITION = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


class PolicyError(ValueError):
    """A coalition policy is malformed, not validly signed, or does not follow its predecessor."""


@dataclass(frozen=True, slots=True)
class PolicyNation:
    """A nation of the registry: its code, its name, and its authority keys by key id."""

    code: str
    name: str
    authority_keys: Mapping[str, bytes]

    @classmethod
    def of(cls, code: str, name: str, keys: Iterable[bytes]) -> PolicyNation:
        """The entry for ``code`` with these 32-byte authority public keys."""
        try:
            by_id = {authority_key_id(key): bytes(key) for key in keys}
        except ValueError as exc:
            raise PolicyError(f"nation {code}: {exc}") from exc
        return cls(code, name, MappingProxyType(by_id))

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "authority_keys": {kid: b64u_encode(key) for kid, key in self.authority_keys.items()},
        }


@dataclass(frozen=True, eq=False)
class CoalitionPolicy:
    """One policy version, checked for structure when parsed (not for its signatures).

    Build one with ``build_policy`` or ``parse_policy``. ``digest`` is
    ``digest(CTX_COALITION_POLICY, canonical_json(to_json()))``: the version's identity, what
    its successor names as ``previous`` and what nations sign.
    """

    coalition: str
    policy_version: int
    previous: bytes | None
    threshold: int
    nations: Mapping[str, PolicyNation]
    groups: Mapping[str, tuple[str, ...]]
    catalog_toml: str
    digest: bytes = field(init=False)
    _catalog: Catalog = field(init=False, repr=False)
    _key_owners: Mapping[str, str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        freeze = object.__setattr__
        freeze(self, "nations", MappingProxyType(dict(self.nations)))
        freeze(self, "groups", MappingProxyType({k: tuple(v) for k, v in self.groups.items()}))
        catalog, owners = _check_policy(self)
        freeze(self, "_catalog", catalog)
        freeze(self, "_key_owners", MappingProxyType(owners))
        try:
            encoded = canonical_json(self.to_json())
        except CanonicalizationError as exc:
            raise PolicyError(f"policy is not canonical JSON: {exc}") from exc
        if len(encoded) > MAX_POLICY_BYTES:
            raise PolicyError(f"policy is larger than {MAX_POLICY_BYTES} bytes")
        freeze(self, "digest", digest(CTX_COALITION_POLICY, encoded))

    def to_json(self) -> dict[str, Any]:
        """The policy document (what is hashed and signed, through its canonical JSON)."""
        return {
            "version": POLICY_FORMAT_VERSION,
            "coalition": self.coalition,
            "policy_version": self.policy_version,
            "previous": None if self.previous is None else b64u_encode(self.previous),
            "threshold": self.threshold,
            "nations": {code: nation.to_json() for code, nation in self.nations.items()},
            "groups": {name: list(members) for name, members in self.groups.items()},
            "catalog": self.catalog_toml,
        }

    def catalog(self) -> Catalog:
        """The catalog this version describes: its TOML with its nations and groups."""
        return self._catalog

    def nation_of_key(self, key_id: str) -> str | None:
        """The nation that lists authority key ``key_id`` in this version, if any."""
        return self._key_owners.get(key_id)

    def certificate_key(self, nation: object, key_id: object) -> bytes:
        """The authority key this version lists for ``nation`` under ``key_id`` (a device
        certificate's ``nation`` and ``authority_key_id``): the key the certificate must verify
        against. Raises PolicyError, naming the version, for a nation or key it does not list."""
        entry = self.nations.get(nation) if isinstance(nation, str) else None
        if entry is None:
            raise PolicyError(
                f"nation {nation} is not in coalition policy version {self.policy_version}: "
                "the coalition has not admitted it"
            )
        listed = entry.authority_keys.get(key_id) if isinstance(key_id, str) else None
        if listed is None:
            raise PolicyError(
                f"authority key {key_id} is not listed for {nation} in coalition policy "
                f"version {self.policy_version}"
            )
        return listed

    @property
    def digest_b64u(self) -> str:
        return b64u_encode(self.digest)

    def __repr__(self) -> str:
        return (
            f"CoalitionPolicy(coalition={self.coalition!r}, "
            f"policy_version={self.policy_version}, digest={self.digest_b64u!r})"
        )


@dataclass(frozen=True, slots=True)
class PolicySignature:
    """One nation's signature over a policy version's digest, with the key id it used."""

    nation: str
    key_id: str
    signature: bytes

    def to_json(self) -> dict[str, str]:
        return {
            "nation": self.nation,
            "key_id": self.key_id,
            "signature": b64u_encode(self.signature),
        }


@dataclass(frozen=True, slots=True)
class SignedPolicy:
    """A policy version and the signatures it carries; nothing here is verified yet.

    Wire form ``{"policy": {...}, "signatures": [{"nation", "key_id", "signature"}, ...]}``.
    """

    policy: CoalitionPolicy
    signatures: tuple[PolicySignature, ...]

    def to_json(self) -> dict[str, Any]:
        ordered = sorted(self.signatures, key=lambda s: (s.nation, s.key_id))
        return {"policy": self.policy.to_json(), "signatures": [s.to_json() for s in ordered]}

    def with_signature(self, signature: PolicySignature) -> SignedPolicy:
        return SignedPolicy(self.policy, (*self.signatures, signature))

    @classmethod
    def from_json(cls, value: Mapping[str, Any] | str | bytes) -> SignedPolicy:
        """Parse the wire form (an object, or JSON text); checks structure, not signatures."""
        document = _load(value, "signed policy")
        if set(document) != _SIGNED_FIELDS:
            raise PolicyError("a signed policy has exactly the fields policy and signatures")
        raw = document["signatures"]
        if not isinstance(raw, list) or len(raw) > MAX_NATIONS:
            raise PolicyError(f"signatures must be a list of at most {MAX_NATIONS}")
        return cls(parse_policy(document["policy"]), tuple(map(_parse_signature, raw)))


# --------------------------------------------------------------------------------------------
# Building, parsing, signing


def build_policy(
    *,
    coalition: str,
    nations: Iterable[PolicyNation],
    groups: Mapping[str, Iterable[str]],
    catalog_toml: str,
    threshold: int,
    previous: CoalitionPolicy | None = None,
) -> CoalitionPolicy:
    """A new policy version: the founding one, or the successor of ``previous``.

    Group members are sorted; everything else is checked as ``parse_policy`` checks it.
    """
    return CoalitionPolicy(
        coalition=coalition,
        policy_version=1 if previous is None else previous.policy_version + 1,
        previous=None if previous is None else previous.digest,
        threshold=threshold,
        nations={nation.code: nation for nation in nations},
        groups={name: tuple(sorted(set(members))) for name, members in groups.items()},
        catalog_toml=catalog_toml,
    )


def parse_policy(value: Mapping[str, Any] | str | bytes) -> CoalitionPolicy:
    """A policy document as received (object or JSON text), checked for structure.

    Refuses unknown or missing fields, a format version other than 1, and anything not in its
    one canonical spelling (group members unsorted or repeated, a key under a wrong id).
    """
    document = _load(value, "policy")
    if missing := POLICY_FIELDS - set(document):
        raise PolicyError(f"policy lacks {', '.join(sorted(missing))}")
    if unknown := set(document) - POLICY_FIELDS:
        raise PolicyError(f"policy has unknown fields {', '.join(sorted(map(str, unknown)))}")
    if not _is_int(document["version"]) or document["version"] != POLICY_FORMAT_VERSION:
        raise PolicyError(f"unsupported policy format version {document['version']!r}")
    policy_version = document["policy_version"]
    if not _is_int(policy_version):
        raise PolicyError("policy_version must be an integer")
    previous = document["previous"]
    if previous is not None:
        previous = _b64u(previous, _DIGEST_SIZE, "previous")
    threshold = document["threshold"]
    if not _is_int(threshold):
        raise PolicyError("threshold must be an integer")
    coalition = document["coalition"]
    if not isinstance(coalition, str):
        raise PolicyError("coalition must be a string")
    catalog = document["catalog"]
    if not isinstance(catalog, str):
        raise PolicyError("catalog must be the catalog's TOML text")
    policy = CoalitionPolicy(
        coalition=coalition,
        policy_version=policy_version,
        previous=previous,
        threshold=threshold,
        nations=_parse_nations(document["nations"]),
        groups=_parse_groups(document["groups"]),
        catalog_toml=catalog,
    )
    if policy.to_json() != document:
        raise PolicyError("policy is not in its canonical form")
    return policy


def _policy_signing_input(policy_digest: bytes) -> bytes:
    return with_context(CTX_COALITION_POLICY_SIGNATURE, policy_digest)


def sign_policy(policy: CoalitionPolicy, nation: str, authority: AuthorityKey) -> PolicySignature:
    """``nation``'s signature over ``policy`` with its authority key.

    Ed25519 over ``with_context(CTX_COALITION_POLICY_SIGNATURE, policy.digest)``. Whether the
    key may sign for the nation is decided by whoever verifies, against the version before.
    """
    if not isinstance(nation, str) or NATION.fullmatch(nation) is None:
        raise PolicyError(f"nation {nation!r} is not an ISO 3166-1 alpha-3 code")
    signature = authority._private_key.sign(_policy_signing_input(policy.digest))
    return PolicySignature(nation=nation, key_id=authority.key_id, signature=signature)


# --------------------------------------------------------------------------------------------
# Verifying


def signing_nations(signers: CoalitionPolicy, signed: SignedPolicy) -> frozenset[str]:
    """The nations whose signatures ``signed`` carries, judged by the keys ``signers`` lists.

    ``signers`` is the version before (or, for a founding version, the version itself). Every
    signature must count: a nation ``signers`` does not list, a key it does not list for that
    nation, a nation signing twice or a signature that does not verify raises PolicyError.
    """
    message = _policy_signing_input(signed.policy.digest)
    seen: set[str] = set()
    where = f"version {signers.policy_version}"
    for entry in signed.signatures:
        nation = signers.nations.get(entry.nation)
        if nation is None:
            raise PolicyError(
                f"signature by {entry.nation}, which is not a nation of {where}: "
                "only the nations of the version before can sign"
            )
        public_key = nation.authority_keys.get(entry.key_id)
        if public_key is None:
            owner = signers.nation_of_key(entry.key_id)
            if owner is not None:
                raise PolicyError(
                    f"signature for {entry.nation} made with key {entry.key_id}, "
                    f"which {where} lists for {owner}"
                )
            raise PolicyError(
                f"signature for {entry.nation} made with key {entry.key_id}, "
                f"which {where} does not list for {entry.nation}"
            )
        if entry.nation in seen:
            raise PolicyError(f"{entry.nation} signed twice: a nation counts once")
        seen.add(entry.nation)
        try:
            load_signing_public_key(public_key).verify(entry.signature, message)
        except (InvalidSignature, ValueError) as exc:
            raise PolicyError(
                f"the signature of {entry.nation} (key {entry.key_id}) does not verify: "
                f"forged, or not made over policy version {signed.policy.policy_version} as it "
                "stands"
            ) from exc
    return frozenset(seen)


def verify_founding(signed: SignedPolicy) -> CoalitionPolicy:
    """The founding version, once every nation it lists has signed it with one of its keys."""
    policy = signed.policy
    if policy.policy_version != 1 or policy.previous is not None:
        raise PolicyError(
            f"a founding policy is version 1 with no previous; this is version "
            f"{policy.policy_version}"
        )
    signers = signing_nations(policy, signed)
    if missing := set(policy.nations) - signers:
        raise PolicyError(
            "a founding policy must be signed by every nation it lists; "
            f"missing: {', '.join(sorted(missing))}"
        )
    return policy


def check_successor(previous: CoalitionPolicy, policy: CoalitionPolicy) -> None:
    """Whether ``policy`` may follow ``previous``, signatures aside (PolicyError otherwise)."""
    if policy.coalition != previous.coalition:
        raise PolicyError(
            f"policy of coalition {policy.coalition!r} cannot follow one of {previous.coalition!r}"
        )
    if policy.policy_version != previous.policy_version + 1:
        raise PolicyError(
            f"policy version {policy.policy_version} does not follow version "
            f"{previous.policy_version}: versions increase by one"
        )
    if policy.previous != previous.digest:
        raise PolicyError(
            f"policy version {policy.policy_version} names a previous version other than the "
            f"version {previous.policy_version} given ({previous.digest_b64u})"
        )


def verify_successor(previous: CoalitionPolicy, signed: SignedPolicy) -> CoalitionPolicy:
    """``signed``'s policy, once it follows ``previous`` and enough of its nations signed it."""
    policy = signed.policy
    check_successor(previous, policy)
    signers = signing_nations(previous, signed)
    if len(signers) < previous.threshold:
        named = ", ".join(sorted(signers)) or "none"
        raise PolicyError(
            f"policy version {policy.policy_version} is signed by {len(signers)} nation(s) of "
            f"version {previous.policy_version} ({named}); its threshold is {previous.threshold}"
        )
    return policy


def verify_chain(
    chain: Sequence[SignedPolicy], *, trusted: CoalitionPolicy | None = None
) -> CoalitionPolicy:
    """The last version of ``chain``, each checked against the one before.

    Without ``trusted`` the chain starts with the founding version; with it (a version the
    caller already holds, e.g. pinned), the chain starts with the version after it.
    """
    if not chain:
        if trusted is None:
            raise PolicyError("an empty chain holds no policy")
        return trusted
    current = trusted
    for signed in chain:
        current = verify_founding(signed) if current is None else verify_successor(current, signed)
    assert current is not None
    return current


# --------------------------------------------------------------------------------------------
# Structure


def _check_policy(policy: CoalitionPolicy) -> tuple[Catalog, dict[str, str]]:
    """Every structural rule of a policy version; its catalog and its key owners by key id."""
    if not isinstance(policy.coalition, str) or _COALITION.fullmatch(policy.coalition) is None:
        raise PolicyError("coalition must match [a-z0-9][a-z0-9._-]{0,63}")
    if not _is_int(policy.policy_version) or not 1 <= policy.policy_version <= _MAX_POLICY_VERSION:
        raise PolicyError("policy_version must be an integer from 1 to 2**53 - 1")
    if (policy.policy_version == 1) != (policy.previous is None):
        raise PolicyError("version 1 and only version 1 has no previous version")
    if policy.previous is not None and len(policy.previous) != _DIGEST_SIZE:
        raise PolicyError(f"previous must be a {_DIGEST_SIZE}-byte digest")
    if not 1 <= len(policy.nations) <= MAX_NATIONS:
        raise PolicyError(f"a policy lists 1 to {MAX_NATIONS} nations")
    if not _is_int(policy.threshold) or not 1 <= policy.threshold <= len(policy.nations):
        raise PolicyError(
            f"threshold {policy.threshold!r} must be from 1 to the number of nations "
            f"({len(policy.nations)})"
        )
    owners: dict[str, str] = {}
    for code, nation in policy.nations.items():
        _check_nation(code, nation)
        for key_id in nation.authority_keys:
            if (other := owners.setdefault(key_id, code)) != code:
                raise PolicyError(f"authority key {key_id} is listed for both {other} and {code}")
    if len(policy.groups) > MAX_GROUPS:
        raise PolicyError(f"a policy lists at most {MAX_GROUPS} groups")
    for name, members in policy.groups.items():
        if not isinstance(name, str) or NAME.fullmatch(name) is None:
            raise PolicyError(f"group name {name!r} is not one capitalised word")
        if not 1 <= len(members) <= MAX_NATIONS:
            raise PolicyError(f"group {name} must have 1 to {MAX_NATIONS} members")
        if list(members) != sorted(set(members)):
            raise PolicyError(f"group {name}: members must be sorted and distinct")
    if not isinstance(policy.catalog_toml, str):
        raise PolicyError("catalog must be the catalog's TOML text")
    if len(policy.catalog_toml.encode("utf-8", "surrogatepass")) > MAX_CATALOG_BYTES:
        raise PolicyError(f"catalog is larger than {MAX_CATALOG_BYTES} bytes")
    try:
        catalog = Catalog.from_toml(policy.catalog_toml).with_directory(
            policy.nations, policy.groups
        )
    except CatalogError as exc:
        raise PolicyError(f"catalog: {exc}") from exc
    return catalog, owners


def _check_nation(code: str, nation: PolicyNation) -> None:
    if not isinstance(code, str) or NATION.fullmatch(code) is None:
        raise PolicyError(f"nation {code!r} is not an ISO 3166-1 alpha-3 code")
    if nation.code != code:
        raise PolicyError(f"nation {code} is listed as {nation.code}")
    name = nation.name
    if not isinstance(name, str) or not 1 <= len(name) <= _MAX_NAME:
        raise PolicyError(f"nation {code}: name must be text of 1 to {_MAX_NAME} characters")
    if any(unicodedata.category(char).startswith("C") for char in name):
        raise PolicyError(f"nation {code}: name contains control or format characters")
    if not 1 <= len(nation.authority_keys) <= MAX_KEYS_PER_NATION:
        raise PolicyError(f"nation {code} must have 1 to {MAX_KEYS_PER_NATION} authority keys")
    for key_id, key in nation.authority_keys.items():
        if len(key) != ED25519_PUBLIC_KEY_SIZE:
            raise PolicyError(f"nation {code}: an authority key is {ED25519_PUBLIC_KEY_SIZE} bytes")
        try:
            load_signing_public_key(key)
        except ValueError as exc:
            raise PolicyError(f"nation {code}: authority key {key_id} is unusable: {exc}") from exc
        if authority_key_id(key) != key_id:
            raise PolicyError(f"nation {code}: authority key listed as {key_id} has another id")


def _parse_nations(value: object) -> dict[str, PolicyNation]:
    if not isinstance(value, Mapping):
        raise PolicyError("nations must be an object")
    if len(value) > MAX_NATIONS:
        raise PolicyError(f"a policy lists 1 to {MAX_NATIONS} nations")
    nations = {}
    for code, raw in value.items():
        if not isinstance(raw, Mapping) or set(raw) != _NATION_FIELDS:
            raise PolicyError(f"nation {code}: exactly the fields name and authority_keys")
        keys = raw["authority_keys"]
        if not isinstance(keys, Mapping) or len(keys) > MAX_KEYS_PER_NATION:
            raise PolicyError(
                f"nation {code}: authority_keys must be an object of 1 to "
                f"{MAX_KEYS_PER_NATION} keys"
            )
        decoded = {
            kid: _b64u(key, ED25519_PUBLIC_KEY_SIZE, f"nation {code}: authority key {kid}")
            for kid, key in keys.items()
        }
        nations[code] = PolicyNation(code, raw["name"], MappingProxyType(decoded))
    return nations


def _parse_groups(value: object) -> dict[str, tuple[str, ...]]:
    if not isinstance(value, Mapping):
        raise PolicyError("groups must be an object")
    if len(value) > MAX_GROUPS:
        raise PolicyError(f"a policy lists at most {MAX_GROUPS} groups")
    groups = {}
    for name, members in value.items():
        if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
            raise PolicyError(f"group {name}: members must be a list of nation codes")
        groups[name] = tuple(members)
    return groups


def _parse_signature(value: object) -> PolicySignature:
    if not isinstance(value, Mapping) or set(value) != _SIGNATURE_FIELDS:
        raise PolicyError("a signature has exactly the fields nation, key_id and signature")
    nation, key_id = value["nation"], value["key_id"]
    if not isinstance(nation, str) or NATION.fullmatch(nation) is None:
        raise PolicyError(f"signature nation {nation!r} is not an ISO 3166-1 alpha-3 code")
    _b64u(key_id, AUTHORITY_KEY_ID_SIZE, "signature key_id")
    return PolicySignature(
        nation=nation,
        key_id=key_id,
        signature=_b64u(value["signature"], SIGNATURE_SIZE, f"signature of {nation}"),
    )


def _load(value: Mapping[str, Any] | str | bytes, kind: str) -> Mapping[str, Any]:
    if isinstance(value, str | bytes):
        # Room for the signatures and for a sender's whitespace; the policy's own canonical
        # size is bounded once parsed.
        if len(value) > 2 * MAX_POLICY_BYTES:
            raise PolicyError(f"{kind} is larger than {2 * MAX_POLICY_BYTES} bytes")
        try:
            return _load_json_object(value)
        except ValueError as exc:
            raise PolicyError(f"{kind} is not a JSON object: {exc}") from exc
    if not isinstance(value, Mapping):
        raise PolicyError(f"{kind} must be a JSON object")
    return copy.deepcopy(dict(value))


def _b64u(value: object, size: int, what: str) -> bytes:
    if not isinstance(value, str) or len(value) > (size * 4 + 2) // 3:
        raise PolicyError(f"{what} must be base64url of {size} bytes")
    try:
        data = b64u_decode(value)
    except ValueError as exc:
        raise PolicyError(f"{what} is malformed: {exc}") from exc
    if len(data) != size:
        raise PolicyError(f"{what} must be {size} bytes, got {len(data)}")
    return data


def _is_int(value: object) -> bool:
    return type(value) is int
