"""The coalition policy (protocol/coalition.py, docs/PROTOCOL.md §18): tests that try to break it.

Known-answer vectors live in vectors/coalition_policy_v1.json; ``test_vector_*`` below recompute
them with raw hashlib, rfc8785 and pyca/cryptography, following the document, before checking
them through the module.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from protocol.catalog import LevelRef, load_default_catalog
from protocol.coalition import (
    CTX_COALITION_POLICY,
    CTX_COALITION_POLICY_SIGNATURE,
    MAX_KEYS_PER_NATION,
    CoalitionPolicy,
    PolicyError,
    PolicyNation,
    PolicySignature,
    SignedPolicy,
    build_policy,
    check_successor,
    parse_policy,
    sign_policy,
    signing_nations,
    verify_chain,
    verify_founding,
    verify_successor,
)
from protocol.keys import AuthorityKey, b64u_decode, b64u_encode

VECTOR: dict[str, Any] = json.loads(
    (Path(__file__).parent / "vectors" / "coalition_policy_v1.json").read_text(encoding="utf-8")
)
DEFAULT_TOML = (
    Path(__file__).resolve().parents[2] / "protocol" / "catalogs" / "default.toml"
).read_text(encoding="utf-8")
NAMES = {"USA": "United States", "GBR": "United Kingdom", "FRA": "France", "DEU": "Germany"}


def key(label: str) -> AuthorityKey:
    return AuthorityKey.from_private_bytes(hashlib.sha256(label.encode()).digest())


KEYS = {label: key(label) for label in ("USA-1", "USA-2", "GBR-1", "FRA-1", "DEU-1", "ZZZ-1")}


def nation(code: str, *labels: str, name: str | None = None) -> PolicyNation:
    return PolicyNation.of(
        code, name or NAMES.get(code, code), [KEYS[label].public_bytes() for label in labels]
    )


def founding(threshold: int = 2) -> CoalitionPolicy:
    return build_policy(
        coalition="test-coalition",
        nations=[nation("USA", "USA-1"), nation("GBR", "GBR-1"), nation("FRA", "FRA-1")],
        groups={"TRILAT": ["USA", "GBR", "FRA"]},
        catalog_toml=DEFAULT_TOML,
        threshold=threshold,
    )


def signed(policy: CoalitionPolicy, *signers: str) -> SignedPolicy:
    """``policy`` signed by each ``NATION-n`` key label, as that nation."""
    signatures = tuple(sign_policy(policy, label[:3], KEYS[label]) for label in signers)
    return SignedPolicy(policy, signatures)


def successor(previous: CoalitionPolicy, **changes: Any) -> CoalitionPolicy:
    fields: dict[str, Any] = {
        "coalition": previous.coalition,
        "nations": list(previous.nations.values()),
        "groups": dict(previous.groups),
        "catalog_toml": previous.catalog_toml,
        "threshold": previous.threshold,
        "previous": previous,
    }
    return build_policy(**(fields | changes))


def over_the_wire(document: SignedPolicy | dict[str, Any]) -> SignedPolicy:
    value = document.to_json() if isinstance(document, SignedPolicy) else document
    return SignedPolicy.from_json(json.dumps(value))


@pytest.fixture(scope="module")
def v1() -> CoalitionPolicy:
    return founding()


@pytest.fixture(scope="module")
def chain(v1: CoalitionPolicy) -> list[SignedPolicy]:
    return [signed(v1, "USA-1", "GBR-1", "FRA-1")]


# --- the document -----------------------------------------------------------------------------


def test_round_trip_keeps_bytes_and_digest(v1: CoalitionPolicy) -> None:
    document = signed(v1, "USA-1", "GBR-1", "FRA-1")
    again = over_the_wire(document)
    assert again.policy.to_json() == v1.to_json()
    assert again.policy.digest == v1.digest
    assert again.to_json() == document.to_json()
    assert parse_policy(rfc8785.dumps(v1.to_json())).digest == v1.digest


def test_digest_is_the_context_digest_of_the_canonical_form(v1: CoalitionPolicy) -> None:
    encoded = rfc8785.dumps(v1.to_json())
    expected = hashlib.sha256(CTX_COALITION_POLICY.encode() + b"\x00" + encoded).digest()
    assert v1.digest == expected


def test_catalog_is_the_toml_with_the_policy_nations_and_groups(v1: CoalitionPolicy) -> None:
    catalog = v1.catalog()
    assert catalog.groups["TRILAT"] == frozenset({"USA", "GBR", "FRA"})
    assert catalog.groups["NATO"] == load_default_catalog().groups["NATO"]
    assert catalog.version.startswith("attache-default-")


def test_nation_of_key(v1: CoalitionPolicy) -> None:
    assert v1.nation_of_key(KEYS["GBR-1"].key_id) == "GBR"
    assert v1.nation_of_key(KEYS["ZZZ-1"].key_id) is None


def test_contexts_differ_from_every_other() -> None:
    from protocol import canonical

    others = [
        v
        for k, v in vars(canonical).items()
        if k.startswith("CTX_")
        and k not in ("CTX_COALITION_POLICY", "CTX_COALITION_POLICY_SIGNATURE")
    ]
    assert CTX_COALITION_POLICY not in others
    assert CTX_COALITION_POLICY_SIGNATURE not in others
    assert CTX_COALITION_POLICY != CTX_COALITION_POLICY_SIGNATURE


# --- the founding version ---------------------------------------------------------------------


def test_founding_signed_by_every_founder(v1: CoalitionPolicy, chain: list[SignedPolicy]) -> None:
    assert verify_founding(over_the_wire(chain[0])).digest == v1.digest
    assert verify_chain(chain) is chain[0].policy


def test_founding_missing_a_founder(v1: CoalitionPolicy) -> None:
    with pytest.raises(PolicyError, match="every nation it lists; missing: FRA"):
        verify_founding(signed(v1, "USA-1", "GBR-1"))


def test_founding_signed_by_an_outsider(v1: CoalitionPolicy) -> None:
    with pytest.raises(PolicyError, match="ZZZ, which is not a nation of version 1"):
        verify_founding(signed(v1, "USA-1", "GBR-1", "FRA-1", "ZZZ-1"))


def test_a_later_version_is_not_a_founding_one(v1: CoalitionPolicy) -> None:
    v2 = successor(v1)
    with pytest.raises(PolicyError, match="a founding policy is version 1"):
        verify_founding(signed(v2, "USA-1", "GBR-1", "FRA-1"))
    with pytest.raises(PolicyError, match="a founding policy is version 1"):
        verify_chain([signed(v2, "USA-1", "GBR-1", "FRA-1")])


def test_a_server_founding_its_own_coalition_does_not_replace_the_pinned_one(
    v1: CoalitionPolicy,
) -> None:
    # Anyone can found a coalition of their own; a client holds the one it pinned.
    fake = build_policy(
        coalition="test-coalition",
        nations=[nation("USA", "ZZZ-1")],
        groups={},
        catalog_toml=DEFAULT_TOML,
        threshold=1,
    )
    fake_chain = [SignedPolicy(fake, (sign_policy(fake, "USA", KEYS["ZZZ-1"]),))]
    assert verify_chain(fake_chain) is fake
    with pytest.raises(PolicyError, match="does not follow version 1"):
        verify_chain(fake_chain, trusted=v1)


# --- successors -------------------------------------------------------------------------------


def test_successor_with_the_threshold(v1: CoalitionPolicy, chain: list[SignedPolicy]) -> None:
    v2 = successor(v1, groups={"TRILAT": ["FRA", "GBR", "USA"], "DUO": ["GBR", "USA"]})
    assert verify_chain([*chain, signed(v2, "USA-1", "FRA-1")]) is v2
    assert verify_successor(v1, over_the_wire(signed(v2, "GBR-1", "FRA-1"))).digest == v2.digest
    assert verify_chain([signed(v2, "USA-1", "GBR-1", "FRA-1")], trusted=v1) is v2


def test_too_few_signers(v1: CoalitionPolicy) -> None:
    v2 = successor(v1)
    with pytest.raises(PolicyError, match=r"signed by 1 nation\(s\) of version 1 \(USA\); its "):
        verify_successor(v1, signed(v2, "USA-1"))
    with pytest.raises(PolicyError, match=r"signed by 0 nation\(s\) of version 1 \(none\)"):
        verify_successor(v1, signed(v2))


def test_duplicate_signer_counts_once_and_is_refused(v1: CoalitionPolicy) -> None:
    v2 = successor(v1)
    with pytest.raises(PolicyError, match="USA signed twice"):
        verify_successor(v1, signed(v2, "USA-1", "USA-1"))


def test_duplicate_signer_with_two_of_its_keys(chain: list[SignedPolicy]) -> None:
    v1 = chain[0].policy
    v2 = successor(
        v1, nations=[nation("USA", "USA-1", "USA-2"), nation("GBR", "GBR-1"), v1.nations["FRA"]]
    )
    v3 = successor(v2)
    chain2 = [*chain, signed(v2, "USA-1", "GBR-1")]
    with pytest.raises(PolicyError, match="USA signed twice"):
        verify_chain([*chain2, signed(v3, "USA-1", "USA-2")])
    assert verify_chain([*chain2, signed(v3, "USA-2", "GBR-1")]) is v3


def test_wrong_signer(v1: CoalitionPolicy) -> None:
    v2 = successor(v1)
    claimed = SignedPolicy(v2, (sign_policy(v2, "USA", KEYS["FRA-1"]),))
    with pytest.raises(PolicyError, match=r"made with key .*, which version 1 lists for FRA"):
        verify_successor(v1, claimed.with_signature(sign_policy(v2, "GBR", KEYS["GBR-1"])))


def test_forged_signatures(v1: CoalitionPolicy) -> None:
    v2 = successor(v1)
    good = signed(v2, "USA-1", "GBR-1")
    for forged in (
        bytes(64),
        bytes(reversed(good.signatures[0].signature)),
        KEYS["USA-1"]._private_key.sign(b"something else"),
        # The right key over the version's digest, but without the signature context.
        KEYS["USA-1"]._private_key.sign(v2.digest),
        # ... or over version 1.
        sign_policy(v1, "USA", KEYS["USA-1"]).signature,
    ):
        entry = PolicySignature("USA", KEYS["USA-1"].key_id, forged)
        with pytest.raises(PolicyError, match=r"signature of USA .* does not verify"):
            verify_successor(v1, SignedPolicy(v2, (entry, good.signatures[1])))


def test_unknown_key_claimed_by_a_listed_nation(v1: CoalitionPolicy) -> None:
    v2 = successor(v1)
    ghost = SignedPolicy(v2, (sign_policy(v2, "USA", KEYS["ZZZ-1"]),))
    with pytest.raises(PolicyError, match="which version 1 does not list for USA"):
        verify_successor(v1, ghost.with_signature(sign_policy(v2, "GBR", KEYS["GBR-1"])))


@pytest.mark.parametrize(
    "change",
    [
        lambda p: p.__setitem__("threshold", 1),
        lambda p: p["groups"]["TRILAT"].remove("FRA"),
        lambda p: p["groups"].__setitem__("WIDE", ["FRA", "GBR", "USA"]),
        lambda p: p.__setitem__("catalog", p["catalog"].replace("#c8102e", "#c8102f")),
        lambda p: p.__setitem__("catalog", p["catalog"] + "\n"),
        lambda p: p["nations"]["FRA"].__setitem__("name", "Francia"),
        lambda p: p["nations"]["FRA"].__setitem__(
            "authority_keys",
            {KEYS["ZZZ-1"].key_id: b64u_encode(KEYS["ZZZ-1"].public_bytes())},
        ),
        lambda p: p.__setitem__("coalition", "other-coalition"),
    ],
    ids=[
        "threshold",
        "group-narrowed",
        "group-added",
        "catalog",
        "catalog-space",
        "name",
        "key",
        "coalition",
    ],
)
def test_tampered_after_signing(v1: CoalitionPolicy, change: Any) -> None:
    v2 = successor(v1)
    wire = signed(v2, "USA-1", "GBR-1", "FRA-1").to_json()
    change(wire["policy"])
    with pytest.raises(PolicyError, match=r"does not verify|cannot follow"):
        verify_successor(v1, over_the_wire(wire))


def test_tampered_founding(v1: CoalitionPolicy) -> None:
    wire = signed(v1, "USA-1", "GBR-1", "FRA-1").to_json()
    wire["policy"]["catalog"] = wire["policy"]["catalog"].replace(
        'FVEY = ["AUS", "CAN", "GBR", "NZL", "USA"]',
        'FVEY = ["AUS", "CAN", "FRA", "GBR", "NZL", "USA"]',
    )
    assert wire["policy"]["catalog"] != v1.catalog_toml
    with pytest.raises(PolicyError, match="does not verify"):
        verify_founding(over_the_wire(wire))


def test_version_must_increase_by_one(v1: CoalitionPolicy, chain: list[SignedPolicy]) -> None:
    v2 = successor(v1)
    v3 = successor(v2)
    s2, s3 = signed(v2, "USA-1", "GBR-1"), signed(v3, "USA-1", "GBR-1")
    with pytest.raises(PolicyError, match="version 3 does not follow version 1"):
        verify_chain([*chain, s3])
    with pytest.raises(PolicyError, match="version 2 does not follow version 2"):
        verify_chain([*chain, s2, s2])
    with pytest.raises(PolicyError, match="version 1 does not follow version 2"):
        verify_chain([*chain, s2, chain[0]])


def test_replay_of_an_old_version_to_a_client_that_holds_a_newer_one(
    v1: CoalitionPolicy, chain: list[SignedPolicy]
) -> None:
    v2 = successor(v1, threshold=3)
    v3 = successor(v2, groups={})
    held = verify_chain(
        [*chain, signed(v2, "USA-1", "GBR-1"), signed(v3, "USA-1", "GBR-1", "FRA-1")]
    )
    assert held is v3
    with pytest.raises(PolicyError, match="version 2 does not follow version 3"):
        verify_chain([signed(v2, "USA-1", "GBR-1")], trusted=held)
    with pytest.raises(PolicyError, match="version 1 does not follow version 3"):
        verify_chain(chain, trusted=held)
    assert verify_chain([], trusted=held) is held
    with pytest.raises(PolicyError, match="an empty chain"):
        verify_chain([])


def test_a_fork_does_not_continue_from_the_other_branch(
    v1: CoalitionPolicy, chain: list[SignedPolicy]
) -> None:
    # Two version 2s, each signed by a threshold (2 of 3, overlapping in GBR): a version 3 made
    # on one does not follow the other.
    left = successor(v1, groups={"LEFT": ["GBR", "USA"]})
    right = successor(v1, groups={"RIGHT": ["FRA", "GBR"]})
    after_left = successor(left)
    assert verify_chain([*chain, signed(right, "FRA-1", "GBR-1")]) is right
    with pytest.raises(PolicyError, match="names a previous version other than the version 2"):
        verify_chain(
            [*chain, signed(right, "FRA-1", "GBR-1"), signed(after_left, "USA-1", "GBR-1")]
        )
    with pytest.raises(PolicyError, match="names a previous version"):
        check_successor(right, after_left)


def test_coalition_must_stay_the_same(v1: CoalitionPolicy) -> None:
    v2 = successor(v1, coalition="other-coalition")
    with pytest.raises(PolicyError, match="cannot follow one of 'test-coalition'"):
        verify_successor(v1, signed(v2, "USA-1", "GBR-1", "FRA-1"))


# --- the malicious server ---------------------------------------------------------------------


def test_server_made_nation_zzz_with_its_own_key(v1: CoalitionPolicy) -> None:
    toml = DEFAULT_TOML.replace('"CHE", "JPN"', '"CHE", "ZZZ", "JPN"').replace(
        '"TUR", "USA",\n]\nFVEY', '"TUR", "USA", "ZZZ",\n]\nFVEY'
    )
    v2 = successor(
        v1,
        catalog_toml=toml,
        nations=[*v1.nations.values(), nation("ZZZ", "ZZZ-1", name="Server")],
    )
    assert "ZZZ" in v2.catalog().groups["NATO"]
    with pytest.raises(PolicyError, match="ZZZ, which is not a nation of version 1"):
        verify_successor(v1, signed(v2, "ZZZ-1"))
    # Nor with one honest signature beside its own.
    with pytest.raises(PolicyError, match="ZZZ, which is not a nation of version 1"):
        verify_successor(v1, signed(v2, "USA-1", "ZZZ-1"))
    # Nor by signing as a listed nation with its own key.
    with pytest.raises(PolicyError, match="does not list for USA"):
        verify_successor(v1, SignedPolicy(v2, (sign_policy(v2, "USA", KEYS["ZZZ-1"]),)))
    # It takes the threshold of the nations already in.
    assert verify_successor(v1, signed(v2, "USA-1", "FRA-1")) is v2


def test_server_widening_a_group_or_lowering_a_level(v1: CoalitionPolicy) -> None:
    widened = successor(v1, groups={"TRILAT": ["DEU", "FRA", "GBR", "USA"]})
    # A NATO RESTRICTED clearance would then read GBR OFFICIAL-SENSITIVE.
    lowered = successor(
        v1,
        catalog_toml=DEFAULT_TOML.replace(
            '"OFFICIAL-SENSITIVE", relation = "at-least"',
            '"OFFICIAL-SENSITIVE", relation = "equals"',
        ),
    )
    restricted, sensitive = LevelRef("NATO", "RESTRICTED"), LevelRef("GBR", "OFFICIAL-SENSITIVE")
    assert not v1.catalog().at_least(restricted, sensitive)
    assert lowered.catalog().at_least(restricted, sensitive)
    for policy in (widened, lowered):
        with pytest.raises(PolicyError, match="its threshold is 2"):
            verify_successor(v1, signed(policy, "GBR-1"))


# --- nations removed, added, keys rotated ------------------------------------------------------


def test_key_rotation_through_a_policy_change(chain: list[SignedPolicy]) -> None:
    v1 = chain[0].policy
    rotated = [nation("USA", "USA-2"), v1.nations["GBR"], v1.nations["FRA"]]
    v2 = successor(v1, nations=rotated)
    v3 = successor(v2, groups={})
    # The new key cannot sign its own introduction: version 1 does not list it.
    with pytest.raises(PolicyError, match="which version 1 does not list for USA"):
        verify_successor(v1, signed(v2, "USA-2", "GBR-1"))
    chain2 = [*chain, signed(v2, "USA-1", "GBR-1")]
    assert verify_chain(chain2) is v2
    # From then on the new key signs, and the old one no longer does.
    assert verify_chain([*chain2, signed(v3, "USA-2", "FRA-1")]) is v3
    with pytest.raises(PolicyError, match="which version 2 does not list for USA"):
        verify_chain([*chain2, signed(v3, "USA-1", "FRA-1")])


def test_a_removed_nation_counts_for_the_version_that_removes_it(
    chain: list[SignedPolicy],
) -> None:
    v1 = chain[0].policy
    v2 = successor(
        v1,
        nations=[v1.nations["USA"], v1.nations["GBR"]],
        groups={"TRILAT": ["GBR", "USA"]},
    )
    chain2 = [*chain, signed(v2, "FRA-1", "GBR-1")]
    assert verify_chain(chain2) is v2
    v3 = successor(v2)
    with pytest.raises(PolicyError, match="FRA, which is not a nation of version 2"):
        verify_chain([*chain2, signed(v3, "FRA-1", "GBR-1")])


def test_an_added_nation_signs_only_from_the_next_version(chain: list[SignedPolicy]) -> None:
    v1 = chain[0].policy
    v2 = successor(v1, nations=[*v1.nations.values(), nation("DEU", "DEU-1")], threshold=3)
    with pytest.raises(PolicyError, match="DEU, which is not a nation of version 1"):
        verify_successor(v1, signed(v2, "USA-1", "GBR-1", "DEU-1"))
    chain2 = [*chain, signed(v2, "USA-1", "GBR-1")]
    v3 = successor(v2)
    # Version 2's threshold (3) now applies, and DEU counts.
    with pytest.raises(PolicyError, match="its threshold is 3"):
        verify_chain([*chain2, signed(v3, "USA-1", "DEU-1")])
    assert verify_chain([*chain2, signed(v3, "USA-1", "DEU-1", "FRA-1")]) is v3


def test_signing_nations_reports_who_signed(v1: CoalitionPolicy) -> None:
    v2 = successor(v1)
    assert signing_nations(v1, signed(v2, "GBR-1", "FRA-1")) == {"GBR", "FRA"}


# --- structure --------------------------------------------------------------------------------


@pytest.mark.parametrize("threshold", [0, 4, -1])
def test_threshold_within_the_nations(threshold: int) -> None:
    with pytest.raises(PolicyError, match=r"threshold .* must be from 1 to the number of nations"):
        founding(threshold)


def malformed_cases() -> list[tuple[str, Any, str]]:
    def edit(path: str, value: Any) -> Any:
        def apply(p: dict[str, Any]) -> None:
            *parents, last = path.split(".")
            target = p
            for part in parents:
                target = target[part]
            if value is KeyError:
                del target[last]
            else:
                target[last] = value

        return apply

    usa_id = KEYS["USA-1"].key_id
    gbr_key = b64u_encode(KEYS["GBR-1"].public_bytes())
    return [
        ("version", edit("version", 2), "unsupported policy format version 2"),
        ("version-bool", edit("version", True), "unsupported policy format version True"),
        ("unknown", edit("extra", 1), "unknown fields extra"),
        ("missing", edit("catalog", KeyError), "policy lacks catalog"),
        ("policy-version-text", edit("policy_version", "1"), "policy_version must be an integer"),
        ("policy-version-0", edit("policy_version", 0), "policy_version must be an integer from"),
        ("previous-on-v1", edit("previous", b64u_encode(bytes(32))), "only version 1 has no"),
        ("previous-short", edit("previous", "AAAA"), "previous must be 32 bytes"),
        ("threshold-float", edit("threshold", 2.0), "threshold must be an integer"),
        ("coalition", edit("coalition", "Test Coalition"), "coalition must match"),
        ("nation-code", edit("nations.usa", {"name": "x", "authority_keys": {}}), "alpha-3"),
        ("no-nations", edit("nations", {}), "1 to 300 nations"),
        ("no-keys", edit("nations.USA.authority_keys", {}), "1 to 8 authority keys"),
        ("key-id", edit(f"nations.USA.authority_keys.{usa_id}", gbr_key), "has another id"),
        (
            "key-twice",
            edit("nations.USA.authority_keys", {KEYS["GBR-1"].key_id: gbr_key}),
            "listed for both",
        ),
        ("key-size", edit(f"nations.USA.authority_keys.{usa_id}", "AAAA"), "32 bytes"),
        ("nation-field", edit("nations.USA.flag", "x"), "exactly the fields name"),
        ("nation-name", edit("nations.USA.name", "U\u200bS"), "control or format"),
        ("group-unsorted", edit("groups.TRILAT", ["USA", "GBR"]), "sorted and distinct"),
        ("group-repeated", edit("groups.TRILAT", ["GBR", "GBR"]), "sorted and distinct"),
        ("group-empty", edit("groups.TRILAT", []), "1 to 300 members"),
        ("group-name", edit("groups.trilat", ["GBR"]), "one capitalised word"),
        ("group-member", edit("groups.TRILAT", ["GBR", "XXX"]), 'unknown nation "XXX"'),
        ("group-redefined", edit("groups.NATO", ["GBR"]), "already defined by the catalog"),
        ("catalog-broken", edit("catalog", "version = "), "catalog: not valid TOML"),
        ("catalog-type", edit("catalog", {"version": "x"}), "catalog must be the catalog's TOML"),
    ]


@pytest.mark.parametrize(("change", "message"), [(c, m) for _, c, m in malformed_cases()],
                         ids=[name for name, _, _ in malformed_cases()])  # fmt: skip
def test_malformed_policy_is_refused(v1: CoalitionPolicy, change: Any, message: str) -> None:
    document = copy.deepcopy(v1.to_json())
    change(document)
    with pytest.raises(PolicyError, match=message):
        parse_policy(document)


def test_key_limit() -> None:
    keys = [AuthorityKey.generate().public_bytes() for _ in range(MAX_KEYS_PER_NATION + 1)]
    with pytest.raises(PolicyError, match="1 to 8 authority keys"):
        build_policy(
            coalition="c",
            nations=[PolicyNation.of("USA", "United States", keys)],
            groups={},
            catalog_toml=DEFAULT_TOML,
            threshold=1,
        )


def test_json_text_with_duplicate_keys_is_refused(v1: CoalitionPolicy) -> None:
    text = json.dumps(v1.to_json())
    duplicated = text.replace('"threshold": 2', '"threshold": 2, "threshold": 1')
    with pytest.raises(PolicyError, match="duplicate JSON key 'threshold'"):
        parse_policy(duplicated)


def test_oversized_documents_are_refused_before_parsing(v1: CoalitionPolicy) -> None:
    with pytest.raises(PolicyError, match="larger than"):
        parse_policy(" " * (3 * 1024 * 1024))
    document = v1.to_json()
    document["catalog"] = DEFAULT_TOML + "#" * (256 * 1024)
    with pytest.raises(PolicyError, match="catalog is larger than"):
        parse_policy(document)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"policy": {}}, "exactly the fields policy and signatures"),
        ({"policy": {}, "signatures": {}}, "signatures must be a list"),
        ([], "must be a JSON object"),
    ],
)
def test_malformed_signed_policy(value: Any, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        SignedPolicy.from_json(value)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"nation": "USA", "key_id": "x"}, "exactly the fields nation, key_id and signature"),
        ({"nation": "us", "key_id": "x", "signature": "x"}, "alpha-3"),
        ({"nation": "USA", "key_id": "AAAA", "signature": "x"}, "key_id must be 16 bytes"),
        (
            {"nation": "USA", "key_id": "A" * 22, "signature": "AAAA"},
            "signature of USA must be 64 bytes",
        ),
    ],
)
def test_malformed_signature_entry(v1: CoalitionPolicy, entry: Any, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        SignedPolicy.from_json({"policy": v1.to_json(), "signatures": [entry]})


# --- known-answer vectors ---------------------------------------------------------------------


def raw_digest(policy: dict[str, Any]) -> bytes:
    return hashlib.sha256(b"attache/v1/coalition-policy\x00" + rfc8785.dumps(policy)).digest()


def unb64u(text: str) -> bytes:
    return b64u_decode(text)


def test_vector_recomputed_from_the_document() -> None:
    """Every version's digest and signature, by docs/PROTOCOL.md §18 and raw primitives."""
    seeds = VECTOR["authority_seeds"]
    for label, key_id in VECTOR["authority_key_ids"].items():
        public = ed25519.Ed25519PrivateKey.from_private_bytes(bytes.fromhex(seeds[label]))
        raw = public.public_key().public_bytes_raw()
        expected = hashlib.sha256(b"attache/v1/authority-key-id\x00" + raw).digest()[:16]
        assert b64u_encode(expected) == key_id
    previous: dict[str, Any] | None = None
    for version in VECTOR["versions"]:
        policy = version["signed"]["policy"]
        assert hashlib.sha256(rfc8785.dumps(policy)).hexdigest() == version["canonical_sha256"]
        policy_digest = raw_digest(policy)
        assert policy_digest.hex() == version["digest"]
        signers = policy if previous is None else previous
        if previous is not None:
            assert unb64u(policy["previous"]) == raw_digest(previous)
            assert policy["policy_version"] == previous["policy_version"] + 1
        message = b"attache/v1/coalition-policy-signature\x00" + policy_digest
        counted = set()
        for entry in version["signed"]["signatures"]:
            public_key = signers["nations"][entry["nation"]]["authority_keys"][entry["key_id"]]
            verifier = ed25519.Ed25519PublicKey.from_public_bytes(unb64u(public_key))
            verifier.verify(unb64u(entry["signature"]), message)
            counted.add(entry["nation"])
        if previous is None:
            assert counted == set(policy["nations"])
        else:
            assert len(counted) >= previous["threshold"]
        previous = policy


def test_vector_reproduced_by_the_implementation() -> None:
    keys = {
        label: AuthorityKey.from_private_bytes(bytes.fromhex(seed))
        for label, seed in VECTOR["authority_seeds"].items()
    }
    chain = [SignedPolicy.from_json(version["signed"]) for version in VECTOR["versions"]]
    latest = verify_chain(chain)
    assert latest.digest.hex() == VECTOR["versions"][-1]["digest"]
    for document, version in zip(chain, VECTOR["versions"], strict=True):
        assert document.to_json() == version["signed"]
        for entry in document.signatures:
            label = next(k for k, v in VECTOR["authority_key_ids"].items() if v == entry.key_id)
            assert sign_policy(document.policy, entry.nation, keys[label]) == entry


RULES = {
    "threshold": "its threshold is",
    "key-not-in-previous": "does not list for",
    "signer-not-in-previous": "which is not a nation of version",
    "signature": "does not verify",
    "duplicate-signer": "signed twice",
    "wrong-signer": r"which version \d+ lists for",
    "version": "does not follow version",
}


@pytest.mark.parametrize("case", VECTOR["invalid"], ids=lambda case: case["description"][:40])
def test_vector_invalid_cases(case: dict[str, Any]) -> None:
    founding_version = SignedPolicy.from_json(VECTOR["versions"][0]["signed"])
    with pytest.raises(PolicyError, match=RULES[case["rule"]]):
        verify_chain([founding_version, SignedPolicy.from_json(case["signed"])])


def test_vector_invalid_signatures_fail_raw_verification_too() -> None:
    founding_policy = VECTOR["versions"][0]["signed"]["policy"]
    case = next(c for c in VECTOR["invalid"] if c["rule"] == "signature")
    message = b"attache/v1/coalition-policy-signature\x00" + raw_digest(case["signed"]["policy"])
    entry = case["signed"]["signatures"][0]
    public_key = founding_policy["nations"][entry["nation"]]["authority_keys"][entry["key_id"]]
    verifier = ed25519.Ed25519PublicKey.from_public_bytes(unb64u(public_key))
    with pytest.raises(InvalidSignature):
        verifier.verify(unb64u(entry["signature"]), message)
