"""Labels and clearances: banners, canonical form, dominance, join."""

from __future__ import annotations

import dataclasses
import re
from datetime import date
from typing import Any

import pytest

from protocol.canonical import canonical_json
from protocol.catalog import load_default_catalog
from protocol.labels import (
    Clearance,
    Label,
    LabelError,
    ceiling_excess,
    check_label,
    dominates,
    expand_releasability,
    join,
    parse_clearance,
    parse_label,
    render_clearance,
    render_label,
)

CATALOG = load_default_catalog()


def exact(message: str) -> str:
    return f"^{re.escape(message)}$"


def label(banner: str, originator: str | None = None) -> Label:
    return parse_label(banner, CATALOG, originator=originator)


# --- parsing and rendering ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("banner", "originator", "expected"),
    [
        pytest.param(
            "NATO SECRET//REL TO USA, GBR, FRA",
            None,
            Label("NATO", "SECRET", releasable_to=("USA", "GBR", "FRA")),
            id="rel-to-nations",
        ),
        pytest.param(
            "NATO CONFIDENTIAL//ATOMAL",
            None,
            Label("NATO", "CONFIDENTIAL", {"CAVEAT": frozenset({"ATOMAL"})}),
            id="caveat",
        ),
        pytest.param("NATO UNCLASSIFIED", None, Label("NATO", "UNCLASSIFIED"), id="unclassified"),
        pytest.param(
            "GBR OFFICIAL-SENSITIVE",
            "GBR",
            Label("GBR", "OFFICIAL-SENSITIVE", originator="GBR"),
            id="national",
        ),
        pytest.param("COSMIC TOP SECRET", None, Label("NATO", "TOP SECRET"), id="own-marking"),
        pytest.param(
            "NATO SECRET//ATOMAL/CRYPTO//MISSION KFOR, NMI//EXERCISE TRIDENT JUNCTURE"
            "//REL TO FVEY, FRA//PRIVACY STAFF//REVIEW 2030-01-31",
            "FRA",
            Label(
                "NATO",
                "SECRET",
                {
                    "CAVEAT": frozenset({"ATOMAL", "CRYPTO"}),
                    "MISSION": frozenset({"KFOR", "NMI"}),
                    "EXERCISE": frozenset({"TRIDENT JUNCTURE"}),
                },
                releasable_to=("FVEY", "FRA"),
                originator="FRA",
                privacy_mark="STAFF",
                review_date=date(2030, 1, 31),
            ),
            id="everything",
        ),
    ],
)
def test_banner_parses_and_renders_back(
    banner: str, originator: str | None, expected: Label
) -> None:
    parsed = label(banner, originator)
    assert parsed == expected
    assert render_label(parsed, CATALOG) == banner


@pytest.mark.parametrize(
    ("banner", "originator", "rendered"),
    [
        pytest.param("NS//REL TO USA", None, "NATO SECRET//REL TO USA", id="nato-short"),
        pytest.param("CTS", None, "COSMIC TOP SECRET", id="cosmic-short"),
        pytest.param("NATO TOP SECRET", None, "COSMIC TOP SECRET", id="policy-and-name"),
        pytest.param("S//REL TO USA, GBR", "USA", "USA SECRET//REL TO USA, GBR", id="us-short"),
        pytest.param("O-S", "GBR", "GBR OFFICIAL-SENSITIVE", id="gbr-short"),
        pytest.param("NS", "GBR", "NATO SECRET", id="international-short-any-originator"),
        pytest.param(
            "  NATO   SECRET // REL TO  USA ,GBR ",
            None,
            "NATO SECRET//REL TO USA, GBR",
            id="whitespace",
        ),
        pytest.param(
            "NATO SECRET//REL TO USA//CRYPTO//ATOMAL",
            None,
            "NATO SECRET//ATOMAL/CRYPTO//REL TO USA",
            id="any-order",
        ),
        pytest.param(
            "NATO SECRET//MISSION NMI, KFOR", None, "NATO SECRET//MISSION KFOR, NMI", id="values"
        ),
    ],
)
def test_banner_renders_in_long_canonical_form(
    banner: str, originator: str | None, rendered: str
) -> None:
    assert render_label(label(banner, originator), CATALOG) == rendered


def test_banner_without_policy_takes_the_originators_policy() -> None:
    parsed = label("SECRET//REL TO FVEY", "USA")
    assert parsed == Label("USA", "SECRET", releasable_to=("FVEY",), originator="USA")
    assert render_label(parsed, CATALOG) == "USA SECRET//REL TO FVEY"


def test_rel_to_keeps_the_order_written() -> None:
    assert label("NATO SECRET//REL TO USA, GBR").releasable_to == ("USA", "GBR")
    assert label("NATO SECRET//REL TO GBR, USA").releasable_to == ("GBR", "USA")
    assert label("NATO SECRET//REL TO GBR, USA") != label("NATO SECRET//REL TO USA, GBR")


def test_a_banner_naming_its_policy_ignores_the_originators_policy() -> None:
    parsed = label("NATO SECRET", "GBR")
    assert (parsed.policy, parsed.originator) == ("NATO", "GBR")


BAD_BANNERS = [
    ("", None, "empty banner"),
    ("NATO SECRET//", None, 'empty block in "NATO SECRET//"'),
    ("NATO SEKRET", None, 'unknown classification level "SEKRET" in policy NATO'),
    ("SEKRET", "USA", 'unknown classification level "SEKRET" in policy USA'),
    ("NS", "XYZ", 'unknown originator nation "XYZ"'),
    ("NATO", None, '"NATO" names a policy but no classification level'),
    (
        "SECRET//REL TO FVEY",
        None,
        '"SECRET" names no policy; a banner without one needs its originator nation',
    ),
    ("SECRET", "NOR", '"SECRET" names no policy and NOR has no national policy'),
    ("nato secret", None, '"nato secret" is not in capitals: banners are case-sensitive; write '
     '"NATO SECRET"'),
    ("nato secret", "USA", '"nato secret" is not in capitals: banners are case-sensitive; write '
     '"NATO SECRET"'),
    ("nato sekret", None, '"nato sekret" names no policy; a banner without one needs its '
     "originator nation (banners are written in capitals)"),
    ("NATO SECRET//REL TO USA, XYZ", None, 'unknown nation or group "XYZ" in REL TO'),
    ("NATO SECRET//REL TO USA, USA", None, '"USA" appears twice in REL TO'),
    ("NATO SECRET//REL TO USA,, GBR", None, 'empty entry in REL TO "USA,, GBR"'),
    ("NATO SECRET//REL TO", None, "REL TO names nothing"),
    ("NATO SECRET//REL USA", None, 'expected "REL TO" in "REL USA"'),
    ("NATO SECRET//REL TO USA//REL TO GBR", None, "REL TO appears twice"),
    ("NATO SECRET//FOO", None, 'unknown category "FOO"'),
    ("NATO SECRET//ATOMAL/FOO", None, 'unknown category "FOO"'),
    ("NATO SECRET//ATOMAL//ATOMAL", None, 'category "ATOMAL" appears twice'),
    ("NATO SECRET//ATOMAL/", None, 'empty category in "ATOMAL/"'),
    ("NATO SECRET///ATOMAL", None, 'empty category in "/ATOMAL"'),
    ("NATO SECRET//MISSION FOO", None, 'unknown value "FOO" of category MISSION'),
    ("NATO SECRET//MISSION", None, "MISSION names nothing"),
    ("NATO SECRET//MISSION KFOR//MISSION NMI", None, "MISSION appears twice"),
    ("NATO SECRET//MISSION KFOR, KFOR", None, '"KFOR" appears twice in MISSION'),
    ("NATO SECRET//PRIVACY staff", None, 'invalid privacy mark "staff": use capital letters and '
     "digits in words joined by single spaces or hyphens"),
    ("NATO SECRET//PRIVACY A//PRIVACY B", None, "PRIVACY appears twice"),
    ("NATO SECRET//REVIEW 2030-02-30", None, 'invalid review date "2030-02-30": expected a date '
     "as YYYY-MM-DD"),
    ("NATO SECRET//REVIEW 20300101", None, 'invalid review date "20300101": expected a date as '
     "YYYY-MM-DD"),
    ("NATO SECRET//REVIEW 2030-01-01//REVIEW 2031-01-01", None, "REVIEW appears twice"),
]  # fmt: skip


@pytest.mark.parametrize(("banner", "originator", "message"), BAD_BANNERS)
def test_bad_banner_is_refused_naming_the_token(
    banner: str, originator: str | None, message: str
) -> None:
    with pytest.raises(LabelError, match=exact(message)):
        parse_label(banner, CATALOG, originator=originator)


BAD_LABELS = [
    (Label("XYZ", "SECRET"), 'unknown policy "XYZ"'),
    (Label("NATO", "SEKRET"), 'unknown classification level "SEKRET" in policy NATO'),
    (Label("NATO", "NS"), 'unknown classification level "NS" in policy NATO'),
    (Label("NATO", "SECRET", {"FOO": frozenset({"X"})}), 'unknown category "FOO"'),
    (
        Label("NATO", "SECRET", {"CAVEAT": frozenset({"FOO"})}),
        'unknown value "FOO" of category CAVEAT',
    ),
    (Label("NATO", "SECRET", {"CAVEAT": frozenset()}), "category CAVEAT has no values"),
    (Label("NATO", "SECRET", releasable_to=("XYZ",)), 'unknown nation or group "XYZ" in REL TO'),
    (Label("NATO", "SECRET", originator="XYZ"), 'unknown originator nation "XYZ"'),
    (
        Label("NATO", "SECRET", privacy_mark="A//B"),
        'invalid privacy mark "A//B": use capital letters and digits in words joined by single '
        "spaces or hyphens",
    ),
]


@pytest.mark.parametrize(("bad", "message"), BAD_LABELS)
def test_unknown_parts_of_a_label_are_refused_naming_the_token(bad: Label, message: str) -> None:
    with pytest.raises(LabelError, match=exact(message)):
        check_label(bad, CATALOG)
    with pytest.raises(LabelError, match=exact(message)):
        render_label(bad, CATALOG)


def test_label_is_immutable_and_hashable() -> None:
    parsed = label("NATO SECRET//ATOMAL//REL TO USA")
    with pytest.raises(dataclasses.FrozenInstanceError):
        parsed.level = "TOP SECRET"  # type: ignore[misc]
    with pytest.raises(TypeError):
        parsed.categories["CAVEAT"] = frozenset({"CRYPTO"})  # type: ignore[index]
    assert hash(parsed) == hash(label("NATO SECRET//ATOMAL//REL TO USA"))
    assert len({parsed, label("NATO SECRET//REL TO USA//ATOMAL")}) == 1


def test_label_does_not_share_the_callers_collections() -> None:
    values = {"ATOMAL"}
    built = Label("NATO", "SECRET", {"CAVEAT": values}, ["USA"])  # type: ignore[dict-item,arg-type]
    values.add("CRYPTO")
    assert built.categories["CAVEAT"] == {"ATOMAL"}
    assert built.releasable_to == ("USA",)


# --- canonical form ----------------------------------------------------------------------------


def test_canonical_form_of_a_full_label() -> None:
    parsed = label(
        "NATO SECRET//ATOMAL/CRYPTO//MISSION NMI, KFOR//REL TO USA, GBR//PRIVACY STAFF"
        "//REVIEW 2030-01-31",
        "GBR",
    )
    assert parsed.canonical() == {
        "policy": "NATO",
        "level": "SECRET",
        "categories": {"CAVEAT": ["ATOMAL", "CRYPTO"], "MISSION": ["KFOR", "NMI"]},
        "rel_to": ["USA", "GBR"],
        "originator": "GBR",
        "privacy_mark": "STAFF",
        "review_date": "2030-01-31",
    }


def test_canonical_form_of_a_bare_label_keeps_every_key() -> None:
    assert label("COSMIC TOP SECRET").canonical() == {
        "policy": "NATO",
        "level": "TOP SECRET",
        "categories": {},
        "rel_to": [],
        "originator": None,
        "privacy_mark": None,
        "review_date": None,
    }


def test_canonical_bytes() -> None:
    # A known answer: RFC 8785 sorts keys and writes no spaces.
    parsed = label("NATO SECRET//ATOMAL//REL TO USA, GBR", "GBR")
    assert canonical_json(parsed.canonical()) == (
        b'{"categories":{"CAVEAT":["ATOMAL"]},"level":"SECRET","originator":"GBR",'
        b'"policy":"NATO","privacy_mark":null,"rel_to":["USA","GBR"],"review_date":null}'
    )


def test_canonical_round_trip() -> None:
    parsed = label("NATO SECRET//ATOMAL//MISSION KFOR//REL TO FVEY//REVIEW 2030-01-31", "USA")
    assert Label.from_canonical(parsed.canonical(), CATALOG) == parsed


def canonical(**changes: Any) -> dict[str, Any]:
    data = label("NATO SECRET//ATOMAL/CRYPTO//REL TO USA", "USA").canonical()
    data.update(changes)
    return data


BAD_CANONICAL = [
    (
        {key: value for key, value in canonical().items() if key != "originator"},
        'canonical label lacks "originator"',
    ),
    (canonical(colour="red"), 'canonical label has the unknown key "colour"'),
    (canonical(level=3), '"level" must be a string'),
    (canonical(rel_to="USA"), '"rel_to" must be a list of strings'),
    (canonical(categories=["CAVEAT"]), '"categories" must be an object'),
    (canonical(categories={"CAVEAT": "ATOMAL"}), '"categories.CAVEAT" must be a list of strings'),
    (canonical(level="SEKRET"), 'unknown classification level "SEKRET" in policy NATO'),
    (canonical(rel_to=["USA", "XYZ"]), 'unknown nation or group "XYZ" in REL TO'),
    (canonical(categories={"FOO": ["X"]}), 'unknown category "FOO"'),
    (canonical(review_date="2030-1-31"), 'invalid review date "2030-1-31": expected a date as '
     "YYYY-MM-DD"),
    (
        canonical(categories={"CAVEAT": ["CRYPTO", "ATOMAL"]}),
        "label is not in canonical form: category values must be sorted and unique",
    ),
    (
        canonical(categories={"CAVEAT": ["ATOMAL", "ATOMAL"]}),
        "label is not in canonical form: category values must be sorted and unique",
    ),
    (canonical(categories={"CAVEAT": []}), "category CAVEAT has no values"),
]  # fmt: skip


@pytest.mark.parametrize(("data", "message"), BAD_CANONICAL)
def test_from_canonical_refuses_anything_but_the_canonical_form(
    data: dict[str, Any], message: str
) -> None:
    with pytest.raises(LabelError, match=exact(message)):
        Label.from_canonical(data, CATALOG)


# --- releasability -----------------------------------------------------------------------------


def test_expand_releasability_expands_groups() -> None:
    assert expand_releasability(label("NATO SECRET//REL TO FVEY, FRA"), CATALOG) == {
        "AUS", "CAN", "FRA", "GBR", "NZL", "USA",
    }  # fmt: skip


def test_expand_releasability_of_the_default() -> None:
    assert expand_releasability(label("NATO SECRET"), CATALOG) == CATALOG.groups["NATO"]
    assert expand_releasability(label("SECRET", "GBR"), CATALOG) == {"GBR"}
    # A national default is the originator alone, whatever the policy's nation.
    assert expand_releasability(label("GBR SECRET", "USA"), CATALOG) == {"USA"}
    assert expand_releasability(label("GBR SECRET"), CATALOG) == frozenset()


def test_expand_releasability_uses_directory_groups() -> None:
    catalog = CATALOG.with_directory([], {"DUO": ["FRA", "DEU"]})
    parsed = parse_label("NATO SECRET//REL TO DUO", catalog)
    assert expand_releasability(parsed, catalog) == {"FRA", "DEU"}
    with pytest.raises(LabelError, match=exact('unknown nation or group "DUO" in REL TO')):
        expand_releasability(parsed, CATALOG)


# --- dominance ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("higher", "lower"),
    [
        ("NATO SECRET", "NATO CONFIDENTIAL"),
        ("NATO SECRET//ATOMAL", "NATO SECRET"),
        ("NATO SECRET//ATOMAL/CRYPTO", "NATO CONFIDENTIAL//ATOMAL"),
        ("NATO SECRET//REL TO USA", "NATO SECRET//REL TO USA, GBR"),
        ("NATO SECRET//REL TO USA, GBR", "NATO SECRET//REL TO FVEY"),
        ("NATO SECRET//REL TO USA, GBR, CAN", "NATO SECRET"),  # the default: all of NATO
        ("NATO SECRET//MISSION KFOR", "NATO SECRET//MISSION KFOR, NMI"),
        ("NATO SECRET//MISSION KFOR", "NATO SECRET"),
        ("GBR SECRET//REL TO GBR, USA", "NATO SECRET//REL TO FVEY"),
        ("COSMIC TOP SECRET//REL TO USA", "GBR OFFICIAL//REL TO USA"),
    ],
)
def test_dominates_strictly(higher: str, lower: str) -> None:
    assert dominates(label(higher), label(lower), CATALOG)
    assert not dominates(label(lower), label(higher), CATALOG)


def test_group_and_its_members_dominate_each_other() -> None:
    group = label("NATO SECRET//REL TO FVEY")
    members = label("NATO SECRET//REL TO USA, GBR, CAN, AUS, NZL")
    assert dominates(group, members, CATALOG)
    assert dominates(members, group, CATALOG)


def test_informative_parts_do_not_count() -> None:
    plain = label("NATO SECRET")
    marked = label("NATO SECRET//EXERCISE TRIDENT JUNCTURE//PRIVACY STAFF//REVIEW 2030-01-01")
    assert dominates(plain, marked, CATALOG)
    assert dominates(marked, plain, CATALOG)


def test_equivalent_policies_compare_both_ways() -> None:
    gbr, nato = label("GBR SECRET//REL TO GBR"), label("NATO SECRET//REL TO GBR")
    assert dominates(gbr, nato, CATALOG)
    assert dominates(nato, gbr, CATALOG)


def test_one_way_equivalence_dominates_one_way() -> None:
    gbr = label("GBR OFFICIAL-SENSITIVE//REL TO GBR")
    nato = label("NATO RESTRICTED//REL TO GBR")
    assert dominates(gbr, nato, CATALOG)
    assert not dominates(nato, gbr, CATALOG)


def test_incomparable_policies_dominate_neither_way() -> None:
    gbr, nato = label("GBR OFFICIAL//REL TO GBR"), label("NATO UNCLASSIFIED//REL TO GBR")
    assert not dominates(gbr, nato, CATALOG)
    assert not dominates(nato, gbr, CATALOG)


def test_dominates_refuses_unknown_labels() -> None:
    with pytest.raises(LabelError, match=exact('unknown policy "XYZ"')):
        dominates(Label("XYZ", "SECRET"), label("NATO SECRET"), CATALOG)


# --- ceiling -----------------------------------------------------------------------------------


def test_ceiling_bounds_level_and_restrictive_categories() -> None:
    ceiling = label("NATO SECRET//ATOMAL//REL TO USA, GBR")
    assert ceiling_excess(label("NATO CONFIDENTIAL//ATOMAL//REL TO USA"), ceiling, CATALOG) == ()
    assert ceiling_excess(label("GBR SECRET//REL TO FVEY", "GBR"), ceiling, CATALOG) == ()
    assert ceiling_excess(label("COSMIC TOP SECRET//CRYPTO/ATOMAL"), ceiling, CATALOG) == (
        "COSMIC TOP SECRET above NATO SECRET",
        "category CRYPTO",
    )
    assert ceiling_excess(label("GBR OFFICIAL", "GBR"), label("NATO UNCLASSIFIED"), CATALOG) == (
        "GBR OFFICIAL not comparable with NATO UNCLASSIFIED",
    )


# --- join --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "joined"),
    [
        ("NATO SECRET", "NATO CONFIDENTIAL", "NATO SECRET"),
        ("NATO CONFIDENTIAL//ATOMAL", "NATO SECRET//CRYPTO", "NATO SECRET//ATOMAL/CRYPTO"),
        ("NATO SECRET//REL TO FVEY", "NATO SECRET//REL TO FVEY", "NATO SECRET//REL TO FVEY"),
        ("NATO SECRET//REL TO FVEY", "NATO SECRET//REL TO USA, GBR",
         "NATO SECRET//REL TO USA, GBR"),
        ("NATO SECRET//REL TO FVEY", "NATO SECRET//REL TO EU, CAN", "NATO SECRET//REL TO CAN"),
        ("NATO SECRET//REL TO FVEY", "NATO SECRET//REL TO FRA, GBR, USA",
         "NATO SECRET//REL TO GBR, USA"),
        ("NATO SECRET//REL TO FVEY", "NATO SECRET", "NATO SECRET//REL TO CAN, GBR, USA"),
        ("NATO SECRET//REL TO FVEY", "NATO SECRET//REL TO FVEY, JPN", "NATO SECRET//REL TO FVEY"),
        ("NATO SECRET//MISSION KFOR, NMI", "NATO SECRET//MISSION NMI, EFP",
         "NATO SECRET//MISSION NMI"),
        ("NATO SECRET//MISSION KFOR", "NATO SECRET", "NATO SECRET//MISSION KFOR"),
        ("NATO SECRET//EXERCISE TRIDENT JUNCTURE", "NATO SECRET//EXERCISE STEADFAST DEFENDER",
         "NATO SECRET//EXERCISE STEADFAST DEFENDER, TRIDENT JUNCTURE"),
        ("GBR SECRET//REL TO GBR", "NATO SECRET//REL TO GBR", "GBR SECRET//REL TO GBR"),
        ("NATO SECRET//REL TO GBR", "GBR SECRET//REL TO GBR", "NATO SECRET//REL TO GBR"),
        ("GBR OFFICIAL-SENSITIVE//REL TO GBR", "NATO RESTRICTED//REL TO GBR",
         "GBR OFFICIAL-SENSITIVE//REL TO GBR"),
    ],
)  # fmt: skip
def test_join(a: str, b: str, joined: str) -> None:
    assert render_label(join(label(a), label(b), CATALOG), CATALOG) == joined


def test_join_keeps_a_default_only_when_it_means_the_same() -> None:
    national = label("SECRET", "GBR")  # releasable to GBR alone, by default
    assert join(national, label("SECRET//ATOMAL", "GBR"), CATALOG) == label("SECRET//ATOMAL", "GBR")
    # Across originators the default would change meaning, so the nations are written out.
    joined = join(national, label("NATO SECRET//REL TO GBR, FRA", "FRA"), CATALOG)
    assert (joined.policy, joined.originator, joined.releasable_to) == ("GBR", None, ("GBR",))


def test_join_of_markings_and_review_dates() -> None:
    a = label("NATO SECRET//PRIVACY STAFF//REVIEW 2030-01-01", "GBR")
    b = label("NATO SECRET//REVIEW 2031-06-30", "GBR")
    c = label("NATO SECRET//PRIVACY MEDICAL", "USA")
    d = label("NATO SECRET//REVIEW 2029-01-01")
    ab = join(a, b, CATALOG)
    assert (ab.privacy_mark, ab.review_date, ab.originator) == ("STAFF", date(2031, 6, 30), "GBR")
    ac = join(a, c, CATALOG)
    assert (ac.privacy_mark, ac.review_date, ac.originator) == (None, None, None)
    ad = join(a, d, CATALOG)
    assert (ad.privacy_mark, ad.review_date, ad.originator) == ("STAFF", date(2030, 1, 1), None)


@pytest.mark.parametrize(
    ("a", "b", "message"),
    [
        (
            "GBR OFFICIAL//REL TO GBR",
            "NATO UNCLASSIFIED",
            "GBR OFFICIAL and NATO UNCLASSIFIED are not comparable",
        ),
        (
            "NATO SECRET//REL TO FVEY",
            "NATO SECRET//REL TO FRA",
            "the labels are releasable to no common nation",
        ),
        (
            "NATO SECRET//MISSION KFOR",
            "NATO SECRET//MISSION NMI",
            "the labels hold no common value of category MISSION",
        ),
    ],
)
def test_join_refuses(a: str, b: str, message: str) -> None:
    with pytest.raises(LabelError, match=exact(message)):
        join(label(a), label(b), CATALOG)


# --- clearances --------------------------------------------------------------------------------


def test_clearance_parses_renders_and_round_trips() -> None:
    cleared = parse_clearance("NATO SECRET//CRYPTO/ATOMAL//MISSION KFOR", CATALOG)
    assert cleared == Clearance(
        "NATO",
        "SECRET",
        {"CAVEAT": frozenset({"ATOMAL", "CRYPTO"}), "MISSION": frozenset({"KFOR"})},
    )
    assert render_clearance(cleared, CATALOG) == "NATO SECRET//ATOMAL/CRYPTO//MISSION KFOR"
    assert cleared.canonical() == {
        "policy": "NATO",
        "level": "SECRET",
        "categories": {"CAVEAT": ["ATOMAL", "CRYPTO"], "MISSION": ["KFOR"]},
    }
    assert Clearance.from_canonical(cleared.canonical(), CATALOG) == cleared
    assert parse_clearance("NS", CATALOG) == Clearance("NATO", "SECRET")
    assert parse_clearance("GBR SECRET", CATALOG) == Clearance("GBR", "SECRET")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("NATO SEKRET", 'unknown classification level "SEKRET" in policy NATO'),
        ("SECRET", '"SECRET" names no policy; a banner without one needs its originator nation'),
        ("NATO SECRET//FOO", 'unknown category "FOO"'),
        ("NATO SECRET//REL TO USA", "REL TO is not part of a clearance"),
        ("NATO SECRET//PRIVACY STAFF", "PRIVACY is not part of a clearance"),
        ("NATO SECRET//REVIEW 2030-01-01", "REVIEW is not part of a clearance"),
        (
            "NATO SECRET//EXERCISE TRIDENT JUNCTURE",
            "category EXERCISE is informative; a clearance cannot hold it",
        ),
    ],
)
def test_bad_clearance_is_refused_naming_the_token(text: str, message: str) -> None:
    with pytest.raises(LabelError, match=exact(message)):
        parse_clearance(text, CATALOG)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"policy": "NATO", "level": "SECRET"}, 'canonical clearance lacks "categories"'),
        (
            {"policy": "NATO", "level": "SECRET", "categories": {}, "rel_to": []},
            'canonical clearance has the unknown key "rel_to"',
        ),
        (
            {"policy": "XYZ", "level": "SECRET", "categories": {}},
            'unknown policy "XYZ"',
        ),
        (
            {"policy": "NATO", "level": "SECRET", "categories": {"CAVEAT": ["CRYPTO", "ATOMAL"]}},
            "clearance is not in canonical form: category values must be sorted and unique",
        ),
    ],
)
def test_clearance_from_canonical_refuses(data: dict[str, Any], message: str) -> None:
    with pytest.raises(LabelError, match=exact(message)):
        Clearance.from_canonical(data, CATALOG)
