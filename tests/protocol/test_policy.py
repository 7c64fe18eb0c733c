"""The access decision: each rule, each deny reason, fail-closed behaviour."""

from __future__ import annotations

import pytest

from protocol.catalog import load_default_catalog
from protocol.labels import Clearance, Label, parse_clearance, parse_label
from protocol.policy import Container, Decision, Subject, decide, expand_releasability

CATALOG = load_default_catalog()


def label(banner: str, originator: str | None = None) -> Label:
    return parse_label(banner, CATALOG, originator=originator)


def subject(
    nationality: str | None = "GBR", clearance: str | None = "NATO SECRET", user_id: str = "u1"
) -> Subject:
    cleared = None if clearance is None else parse_clearance(clearance, CATALOG)
    return Subject(user_id=user_id, nationality=nationality, clearance=cleared)


def channel(
    ceiling: str = "NATO SECRET//ATOMAL", members: frozenset[str] = frozenset({"u1"})
) -> Container:
    return Container(id="c1", ceiling=label(ceiling), members=members)


def reasons(who: Subject, banner: Label | str, where: Container | None = None) -> tuple[str, ...]:
    labelled = label(banner) if isinstance(banner, str) else banner
    return decide(who, labelled, where, CATALOG).reasons


def test_allowed_decision_records_the_expansion_and_the_catalog_version() -> None:
    decision = decide(subject(), label("NATO SECRET//REL TO FVEY"), channel(), CATALOG)
    assert decision == Decision(
        allowed=True,
        reasons=(),
        releasable_to=("AUS", "CAN", "GBR", "NZL", "USA"),
        catalog_version=CATALOG.version,
    )


def test_decision_outside_a_container_skips_membership_and_ceiling() -> None:
    assert reasons(subject(user_id="stranger"), "NATO SECRET//REL TO GBR") == ()


def test_decision_must_be_consistent() -> None:
    with pytest.raises(ValueError, match="allows exactly when it has no reasons"):
        Decision(allowed=True, reasons=("not a member",), releasable_to=(), catalog_version="v")


# --- each rule ---------------------------------------------------------------------------------


def test_rule_1_clearance_below_the_level() -> None:
    assert reasons(subject(clearance="NATO CONFIDENTIAL"), "NATO SECRET") == (
        "clearance NATO CONFIDENTIAL below NATO SECRET",
    )


def test_rule_1_through_a_both_ways_equivalence() -> None:
    assert reasons(subject(clearance="GBR SECRET"), "NATO SECRET") == ()
    assert reasons(subject(clearance="NATO SECRET"), label("GBR SECRET", "GBR")) == ()
    assert reasons(subject(clearance="GBR SECRET"), "COSMIC TOP SECRET") == (
        "clearance GBR SECRET below COSMIC TOP SECRET",
    )


def test_rule_1_through_a_one_way_equivalence() -> None:
    assert reasons(subject(clearance="GBR OFFICIAL-SENSITIVE"), "NATO RESTRICTED") == ()
    # GBR OFFICIAL-SENSITIVE is at least NATO RESTRICTED, so NATO RESTRICTED is below it.
    assert reasons(subject(clearance="NATO RESTRICTED"), label("O-S", "GBR")) == (
        "clearance NATO RESTRICTED below GBR OFFICIAL-SENSITIVE",
    )


def test_rule_1_incomparable_policies_deny() -> None:
    assert reasons(subject(clearance="GBR OFFICIAL"), "NATO UNCLASSIFIED") == (
        "clearance GBR OFFICIAL not comparable with NATO UNCLASSIFIED",
    )


def test_rule_2_nationality_not_in_rel_to() -> None:
    assert reasons(subject("FRA"), "NATO SECRET//REL TO USA, GBR") == (
        "nationality FRA not in REL TO USA, GBR",
    )
    assert reasons(subject("SWE"), "NATO SECRET//REL TO FVEY") == (
        "nationality SWE not in REL TO FVEY",
    )


def test_rule_2_default_releasability() -> None:
    assert reasons(subject("SWE"), "NATO SECRET") == ()
    assert reasons(subject("JPN"), "NATO SECRET") == (
        "nationality JPN not in REL TO NATO (the default of NATO)",
    )
    assert reasons(subject("GBR", "GBR SECRET"), label("SECRET", "GBR")) == ()
    assert reasons(subject("USA", "GBR SECRET"), label("SECRET", "GBR")) == (
        "nationality USA not in REL TO GBR (the default of GBR)",
    )
    assert reasons(subject("GBR", "GBR SECRET"), label("GBR SECRET")) == (
        "nationality GBR not in the default releasability of GBR (the originator, and there is "
        "none)",
    )


def test_rule_3_missing_restrictive_values() -> None:
    assert reasons(subject(clearance="NATO SECRET//CRYPTO"), "NATO SECRET//ATOMAL/CRYPTO") == (
        "missing category ATOMAL",
    )
    assert reasons(subject(), "NATO SECRET//ATOMAL/CRYPTO") == (
        "missing category ATOMAL",
        "missing category CRYPTO",
    )
    assert reasons(subject(clearance="NATO SECRET//ATOMAL/CRYPTO"), "NATO SECRET//ATOMAL") == ()


def test_rule_3_permissive_needs_one_value() -> None:
    assert (
        reasons(subject(clearance="NATO SECRET//MISSION NMI"), "NATO SECRET//MISSION KFOR, NMI")
        == ()
    )
    assert reasons(
        subject(clearance="NATO SECRET//MISSION EFP"), "NATO SECRET//MISSION KFOR, NMI"
    ) == ("missing category MISSION: needs one of KFOR, NMI",)


def test_rule_3_informative_categories_never_decide() -> None:
    assert reasons(subject(), "NATO SECRET//EXERCISE TRIDENT JUNCTURE") == ()


def test_rule_4_not_a_member() -> None:
    assert reasons(subject(user_id="u2"), "NATO SECRET", channel()) == ("not a member",)


def test_rule_5_label_above_the_ceiling() -> None:
    cleared = subject(clearance="COSMIC TOP SECRET//ATOMAL/CRYPTO")
    assert reasons(cleared, "COSMIC TOP SECRET", channel()) == (
        "label above the container ceiling: COSMIC TOP SECRET above NATO SECRET",
    )
    assert reasons(cleared, "NATO SECRET//CRYPTO", channel()) == (
        "label above the container ceiling: category CRYPTO",
    )
    unclassified = channel("NATO UNCLASSIFIED")
    assert reasons(subject(clearance="GBR OFFICIAL"), label("OFFICIAL", "GBR"), unclassified) == (
        "label above the container ceiling: GBR OFFICIAL not comparable with NATO UNCLASSIFIED",
    )


def test_rule_5_a_message_may_narrow_releasability_below_the_ceiling() -> None:
    ceiling = channel("NATO SECRET//REL TO USA, GBR", frozenset({"u1", "u2"}))
    narrowed = label("NATO SECRET//REL TO GBR")
    assert reasons(subject("GBR", user_id="u1"), narrowed, ceiling) == ()
    assert reasons(subject("USA", user_id="u2"), narrowed, ceiling) == (
        "nationality USA not in REL TO GBR",
    )


def test_every_failing_rule_is_reported() -> None:
    who = subject("FRA", "NATO CONFIDENTIAL", user_id="u9")
    assert reasons(who, "COSMIC TOP SECRET//CRYPTO//MISSION KFOR//REL TO FVEY", channel()) == (
        "clearance NATO CONFIDENTIAL below COSMIC TOP SECRET",
        "missing category CRYPTO",
        "missing category MISSION: needs one of KFOR",
        "nationality FRA not in REL TO FVEY",
        "not a member",
        "label above the container ceiling: COSMIC TOP SECRET above NATO SECRET",
        "label above the container ceiling: category CRYPTO",
    )


# --- fail closed -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "reason"),
    [
        (subject(nationality=None), "no nationality"),
        (subject(nationality="XYZ"), 'unknown nationality "XYZ"'),
        (subject(clearance=None), "no clearance"),
        (
            Subject("u1", "GBR", Clearance("NATO", "SEKRET")),
            'clearance: unknown classification level "SEKRET" in policy NATO',
        ),
        (
            Subject("u1", "GBR", Clearance("XYZ", "SECRET")),
            'clearance: unknown policy "XYZ"',
        ),
        (
            Subject("u1", "GBR", Clearance("NATO", "SECRET", {"FOO": frozenset({"X"})})),
            'clearance: unknown category "FOO"',
        ),
    ],
)
def test_subject_without_what_a_decision_needs_is_denied(who: Subject, reason: str) -> None:
    assert reasons(who, "NATO UNCLASSIFIED") == (reason,)


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (Label("XYZ", "SECRET"), 'label: unknown policy "XYZ"'),
        (Label("NATO", "SEKRET"), 'label: unknown classification level "SEKRET" in policy NATO'),
        (Label("NATO", "SECRET", {"FOO": frozenset({"X"})}), 'label: unknown category "FOO"'),
        (
            Label("NATO", "SECRET", {"CAVEAT": frozenset({"X"})}),
            'label: unknown value "X" of category CAVEAT',
        ),
        (
            Label("NATO", "SECRET", releasable_to=("XYZ",)),
            'label: unknown nation or group "XYZ" in REL TO',
        ),
    ],
)
def test_label_the_catalog_does_not_define_is_denied(bad: Label, reason: str) -> None:
    assert reasons(subject(), bad, channel()) == (reason,)


def test_a_group_from_another_directory_is_unknown_and_denied() -> None:
    catalog = CATALOG.with_directory([], {"DUO": ["GBR", "FRA"]})
    labelled = parse_label("NATO SECRET//REL TO DUO", catalog)
    allowed = decide(subject(), labelled, None, catalog)
    assert allowed.allowed
    assert allowed.releasable_to == ("FRA", "GBR")
    assert allowed.catalog_version == catalog.version != CATALOG.version
    denied = decide(subject(), labelled, None, CATALOG)
    assert denied.reasons == ('label: unknown nation or group "DUO" in REL TO',)
    assert denied.releasable_to == ()


def test_container_with_a_ceiling_the_catalog_does_not_define_denies() -> None:
    broken = Container(id="c1", ceiling=Label("NATO", "SEKRET"), members=frozenset({"u1"}))
    assert reasons(subject(), "NATO SECRET", broken) == (
        'container ceiling: unknown classification level "SEKRET" in policy NATO',
    )


def test_expand_releasability_is_the_one_the_decision_uses() -> None:
    labelled = label("NATO SECRET//REL TO FVEY, FRA")
    decision = decide(subject(), labelled, None, CATALOG)
    assert decision.releasable_to == tuple(sorted(expand_releasability(labelled, CATALOG)))
