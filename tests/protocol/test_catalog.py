"""The label catalog: the shipped default, loading from TOML, invariants, the directory."""

from __future__ import annotations

import dataclasses
import re
from importlib import resources

import pytest

from protocol.catalog import (
    Catalog,
    CatalogError,
    CategoryKind,
    LevelRef,
    Relation,
    load_default_catalog,
)

CATALOG = load_default_catalog()

NATO_MEMBERS = {
    "ALB", "BEL", "BGR", "CAN", "CZE", "DEU", "DNK", "ESP", "EST", "FIN", "FRA", "GBR", "GRC",
    "HRV", "HUN", "ISL", "ITA", "LTU", "LUX", "LVA", "MKD", "MNE", "NLD", "NOR", "POL", "PRT",
    "ROU", "SVK", "SVN", "SWE", "TUR", "USA",
}  # fmt: skip
EU_MEMBERS = {
    "AUT", "BEL", "BGR", "CYP", "CZE", "DEU", "DNK", "ESP", "EST", "FIN", "FRA", "GRC", "HRV",
    "HUN", "IRL", "ITA", "LTU", "LUX", "LVA", "MLT", "NLD", "POL", "PRT", "ROU", "SVK", "SVN",
    "SWE",
}  # fmt: skip

# A small valid catalog; each malformed variant below changes one thing in it.
MINIMAL = """
version = "test-1"
nations = ["FRA", "GBR", "USA"]

[groups]
NATO = ["FRA", "GBR", "USA"]

[categories.CAVEAT]
kind = "restrictive"
values = ["ATOMAL"]

[categories.MISSION]
kind = "permissive"
prefix = "MISSION"
values = ["KFOR"]

[policies.NATO]
default_rel_to = ["NATO"]
levels = [
  { name = "UNCLASSIFIED", short = "NU", colour = "#007a33" },
  { name = "SECRET", short = "NS", colour = "#c8102e" },
]

[policies.GBR]
default_rel_to = "originator"
levels = [
  { name = "OFFICIAL", short = "O", colour = "#007a33" },
  { name = "SECRET", short = "S", colour = "#c8102e" },
]
equivalences = [
  { level = "SECRET", relation = "equals", other = "NATO SECRET" },
]

[pickers.channel]
default = "NATO UNCLASSIFIED"
labels = ["NATO UNCLASSIFIED", "NATO SECRET//REL TO NATO"]
"""


def variant(old: str, new: str) -> str:
    assert old in MINIMAL, old
    return MINIMAL.replace(old, new, 1)


def exact(message: str) -> str:
    return f"^{re.escape(message)}$"


# --- the shipped catalog ---------------------------------------------------------------------


def test_default_catalog_ships_as_package_data() -> None:
    assert (resources.files("protocol") / "catalogs" / "default.toml").is_file()
    assert load_default_catalog() is CATALOG


def test_default_catalog_has_a_version() -> None:
    assert CATALOG.version == "attache-default-2025.1"


def test_default_groups() -> None:
    assert CATALOG.groups["NATO"] == NATO_MEMBERS
    assert len(CATALOG.groups["NATO"]) == 32
    assert CATALOG.groups["FVEY"] == {"AUS", "CAN", "GBR", "NZL", "USA"}
    assert CATALOG.groups["EU"] == EU_MEMBERS
    assert len(CATALOG.groups["EU"]) == 27


def test_default_nations_cover_every_group_and_more() -> None:
    members = set().union(*CATALOG.groups.values())
    assert members < CATALOG.nations
    assert {"JPN", "KOR", "UKR", "CHE"} <= CATALOG.nations - members


def test_default_policies() -> None:
    assert list(CATALOG.policies) == ["NATO", "USA", "GBR", "FRA", "DEU"]
    nato = CATALOG.policies["NATO"]
    assert [level.name for level in nato.levels] == [
        "UNCLASSIFIED", "RESTRICTED", "CONFIDENTIAL", "SECRET", "TOP SECRET",
    ]  # fmt: skip
    secret = nato.level("SECRET")
    assert secret is not None
    assert (secret.short, secret.colour, secret.marking) == ("NS", "#c8102e", "NATO SECRET")
    assert CATALOG.marking(LevelRef("NATO", "TOP SECRET")) == "COSMIC TOP SECRET"
    assert nato.default_rel_to == ("NATO",)
    assert CATALOG.policies["GBR"].default_rel_to is None  # the originator alone


def test_default_categories() -> None:
    kinds = {name: category.kind for name, category in CATALOG.categories.items()}
    assert kinds == {
        "CAVEAT": CategoryKind.RESTRICTIVE,
        "MISSION": CategoryKind.PERMISSIVE,
        "EXERCISE": CategoryKind.INFORMATIVE,
    }
    assert CATALOG.categories["CAVEAT"].values == ("ATOMAL", "BOHEMIA", "CRYPTO")
    assert CATALOG.category_with_value("ATOMAL") is CATALOG.categories["CAVEAT"]
    assert CATALOG.category_with_prefix("MISSION") is CATALOG.categories["MISSION"]
    assert CATALOG.category_with_value("KFOR") is None  # prefixed values are not bare


def test_default_pickers() -> None:
    assert set(CATALOG.pickers) == {"channel", "committee"}
    for picker in CATALOG.pickers.values():
        assert picker.default in picker.labels


def test_classification_spellings() -> None:
    assert CATALOG.classification("NATO SECRET") == LevelRef("NATO", "SECRET")
    assert CATALOG.classification("NS") == LevelRef("NATO", "SECRET")
    assert CATALOG.classification("COSMIC TOP SECRET") == LevelRef("NATO", "TOP SECRET")
    assert CATALOG.classification("NATO TOP SECRET") == LevelRef("NATO", "TOP SECRET")
    assert CATALOG.classification("GBR OFFICIAL-SENSITIVE") == LevelRef("GBR", "OFFICIAL-SENSITIVE")
    # National short forms and bare names need an originator; the catalog alone does not read them.
    assert CATALOG.classification("S") is None
    assert CATALOG.classification("SECRET") is None


# --- equivalences ------------------------------------------------------------------------------


def ref(policy: str, level: str) -> LevelRef:
    return LevelRef(policy, level)


def test_levels_of_one_policy_follow_their_order() -> None:
    assert CATALOG.at_least(ref("NATO", "SECRET"), ref("NATO", "CONFIDENTIAL"))
    assert CATALOG.at_least(ref("NATO", "SECRET"), ref("NATO", "SECRET"))
    assert not CATALOG.at_least(ref("NATO", "CONFIDENTIAL"), ref("NATO", "SECRET"))


def test_both_ways_equivalence_compares_both_ways() -> None:
    assert CATALOG.at_least(ref("GBR", "SECRET"), ref("NATO", "SECRET"))
    assert CATALOG.at_least(ref("NATO", "SECRET"), ref("GBR", "SECRET"))


def test_equivalences_compose_through_the_reference_and_the_order() -> None:
    assert CATALOG.at_least(ref("GBR", "SECRET"), ref("USA", "SECRET"))
    assert CATALOG.at_least(ref("DEU", "STRENG GEHEIM"), ref("FRA", "SECRET"))
    assert CATALOG.at_least(ref("NATO", "SECRET"), ref("GBR", "OFFICIAL"))
    assert not CATALOG.at_least(ref("USA", "CONFIDENTIAL"), ref("GBR", "SECRET"))


def test_one_way_equivalence_compares_one_way() -> None:
    assert CATALOG.at_least(ref("GBR", "OFFICIAL-SENSITIVE"), ref("NATO", "RESTRICTED"))
    assert not CATALOG.at_least(ref("NATO", "RESTRICTED"), ref("GBR", "OFFICIAL-SENSITIVE"))
    assert CATALOG.at_least(ref("NATO", "UNCLASSIFIED"), ref("USA", "UNCLASSIFIED"))
    assert not CATALOG.at_least(ref("USA", "UNCLASSIFIED"), ref("NATO", "UNCLASSIFIED"))


def test_no_equivalence_means_incomparable() -> None:
    assert not CATALOG.at_least(ref("GBR", "OFFICIAL"), ref("NATO", "UNCLASSIFIED"))
    assert not CATALOG.at_least(ref("NATO", "UNCLASSIFIED"), ref("GBR", "OFFICIAL"))


def test_unknown_levels_compare_with_nothing() -> None:
    assert not CATALOG.at_least(ref("NATO", "SEKRET"), ref("NATO", "SEKRET"))
    assert not CATALOG.at_least(ref("XYZ", "SECRET"), ref("NATO", "UNCLASSIFIED"))


# --- immutability ------------------------------------------------------------------------------


def test_catalog_is_immutable() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        CATALOG.version = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        CATALOG.groups["EVIL"] = frozenset({"USA"})  # type: ignore[index]
    with pytest.raises(AttributeError):
        CATALOG.groups["FVEY"].add("FRA")  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        CATALOG.policies["NATO"] = CATALOG.policies["GBR"]  # type: ignore[index]


def test_a_catalog_built_from_mutable_mappings_does_not_share_them() -> None:
    groups = {name: set(members) for name, members in CATALOG.groups.items()}
    built = dataclasses.replace(CATALOG, groups=groups)  # type: ignore[arg-type]
    groups["FVEY"].add("FRA")
    assert "FRA" not in built.groups["FVEY"]


# --- loading -----------------------------------------------------------------------------------


def test_minimal_catalog_loads() -> None:
    catalog = Catalog.from_toml(MINIMAL)
    assert catalog.version == "test-1"
    assert catalog.equivalences[0].relation is Relation.EQUALS
    assert catalog.at_least(ref("NATO", "SECRET"), ref("GBR", "SECRET"))


def test_equivalence_relations() -> None:
    at_least = Catalog.from_toml(variant('relation = "equals"', 'relation = "at-least"'))
    assert at_least.at_least(ref("GBR", "SECRET"), ref("NATO", "SECRET"))
    assert not at_least.at_least(ref("NATO", "SECRET"), ref("GBR", "SECRET"))
    at_most = Catalog.from_toml(variant('relation = "equals"', 'relation = "at-most"'))
    assert at_most.at_least(ref("NATO", "SECRET"), ref("GBR", "SECRET"))
    assert not at_most.at_least(ref("GBR", "SECRET"), ref("NATO", "SECRET"))


MALFORMED = [
    pytest.param("version = ", "not valid TOML: ", id="toml"),
    pytest.param(MINIMAL.replace('version = "test-1"\n', ""), 'catalog: missing "version"',
                 id="missing-key"),
    pytest.param(variant('version = "test-1"', 'version = "test-1"\nowner = "me"'),
                 'catalog: unknown key "owner"', id="unknown-key"),
    pytest.param(variant('version = "test-1"', "version = 1"), "version must be a string",
                 id="version-type"),
    pytest.param(variant('version = "test-1"', 'version = ""'), "version must not be empty",
                 id="version-empty"),
    pytest.param(variant('"FRA", "GBR", "USA"]\n\n', '"FRA", "GBR", "us"]\n\n'),
                 'nation "us" is not an ISO 3166-1 alpha-3 code', id="nation-code"),
    pytest.param(variant('NATO = ["FRA", "GBR", "USA"]', 'NATO = ["FRA", "GBR", "XYZ"]'),
                 'group "NATO": unknown nation "XYZ"', id="group-member"),
    pytest.param(variant("[groups]\n", '[groups]\nUSA = ["USA"]\n'),
                 'group "USA" has the name of a nation', id="group-named-as-nation"),
    pytest.param(variant("[groups]\n", '[groups]\nnato = ["USA"]\n'),
                 'group name "nato" is not one capitalised word', id="group-name"),
    pytest.param(variant('kind = "restrictive"', 'kind = "mandatory"'),
                 'categories.CAVEAT.kind: "mandatory" is not one of restrictive, permissive, '
                 "informative", id="category-kind"),
    pytest.param(variant('values = ["ATOMAL"]', "values = []"), "categories.CAVEAT: has no values",
                 id="category-empty"),
    pytest.param(variant('values = ["ATOMAL"]', 'values = ["ATOMAL", "ATOMAL"]'),
                 "categories.CAVEAT: a value appears twice", id="category-duplicate"),
    pytest.param(variant('values = ["ATOMAL"]', 'values = ["ATOMAL/CRYPTO"]'),
                 'categories.CAVEAT: value "ATOMAL/CRYPTO" must be capital letters and digits in '
                 "words joined by single spaces or hyphens", id="category-value-syntax"),
    pytest.param(variant('prefix = "MISSION"', 'prefix = "REL"'),
                 'categories.MISSION: prefix "REL" must be one capitalised word other than '
                 "PRIVACY, REL, REVIEW", id="prefix-keyword"),
    pytest.param(variant('prefix = "MISSION"\nvalues = ["KFOR"]', 'values = ["ATOMAL"]'),
                 'categories: value "ATOMAL" belongs to both CAVEAT and MISSION; give one of them '
                 "a prefix", id="bare-value-twice"),
    pytest.param(variant('values = ["ATOMAL"]', 'values = ["MISSION X"]'),
                 'categories.CAVEAT: value "MISSION X" begins with the banner keyword "MISSION"',
                 id="bare-value-reads-as-prefix"),
    pytest.param(variant('values = ["ATOMAL"]', 'values = ["REVIEW"]'),
                 'categories.CAVEAT: value "REVIEW" begins with the banner keyword "REVIEW"',
                 id="bare-value-reads-as-keyword"),
    pytest.param(variant('default_rel_to = ["NATO"]', 'default_rel_to = ["XYZ"]'),
                 'policies.NATO.default_rel_to: unknown nation or group "XYZ"', id="default-rel"),
    pytest.param(variant('default_rel_to = ["NATO"]', 'default_rel_to = "everyone"'),
                 'policies.NATO.default_rel_to (or "originator") must be a list of strings',
                 id="default-rel-word"),
    pytest.param(variant('{ name = "UNCLASSIFIED", short', '{ title = "UNCLASSIFIED", short'),
                 'policies.NATO.levels[0]: missing "name"', id="level-key"),
    pytest.param(variant('short = "NU", colour', 'short = "NU", rank = 1, colour'),
                 'policies.NATO.levels[0]: unknown key "rank"', id="level-unknown-key"),
    pytest.param(variant('colour = "#c8102e" },\n]\n\n[policies.GBR]',
                         'colour = "red" },\n]\n\n[policies.GBR]'),
                 'policies.NATO: colour "red" of SECRET is not #rrggbb', id="level-colour"),
    pytest.param(variant('short = "NS"', 'short = "NU"'), 'policies.NATO: "NU" names two levels',
                 id="level-short-twice"),
    pytest.param(variant('name = "SECRET", short = "NS"', 'name = "SECRET//X", short = "NS"'),
                 'policies.NATO: "SECRET//X" must be capital letters and digits in words joined by '
                 "single spaces or hyphens", id="level-syntax"),
    pytest.param(variant("""levels = [
  { name = "UNCLASSIFIED", short = "NU", colour = "#007a33" },
  { name = "SECRET", short = "NS", colour = "#c8102e" },
]""", "levels = []"), "policies.NATO: has no levels", id="no-levels"),
    pytest.param(variant('short = "O"', 'short = "NS"'),
                 'policies.GBR: "NS" is also the classification NATO SECRET',
                 id="national-short-shadowed"),
    pytest.param(variant('name = "OFFICIAL"', 'name = "NATO OFFICIAL"'),
                 'policies.GBR: "NATO OFFICIAL" begins with the policy name NATO',
                 id="national-level-reads-as-policy"),
    pytest.param(variant('short = "NU", colour = "#007a33" }',
                         'short = "NU", colour = "#007a33", marking = "NATO SECRET" }'),
                 'classification "NATO SECRET" names both NATO UNCLASSIFIED and NATO SECRET',
                 id="marking-twice"),
    pytest.param(variant('relation = "equals"', 'relation = "same"'),
                 'policies.GBR.equivalences[0].relation: "same" is not one of equals, at-least, '
                 "at-most", id="relation"),
    pytest.param(variant('other = "NATO SECRET"', 'other = "NATO SEKRET"'),
                 'policies.GBR.equivalences[0]: unknown classification "NATO SEKRET"',
                 id="equivalence-other"),
    pytest.param(variant('{ level = "SECRET", relation', '{ level = "TOP SECRET", relation'),
                 'policies.GBR.equivalences[0]: unknown level "TOP SECRET" in policy GBR',
                 id="equivalence-level"),
    pytest.param(variant('other = "NATO SECRET"', 'other = "GBR OFFICIAL"'),
                 "equivalence of GBR SECRET must name another policy", id="equivalence-self"),
    pytest.param(variant('{ level = "SECRET", relation = "equals", other = "NATO SECRET" },',
                         '{ level = "SECRET", relation = "equals", other = "NATO SECRET" },\n'
                         '  { level = "OFFICIAL", relation = "equals", other = "NATO SECRET" },'),
                 "equivalences make GBR OFFICIAL at least GBR SECRET", id="equivalence-collapse"),
    pytest.param(variant('default = "NATO UNCLASSIFIED"', 'default = "NATO SECRET"'),
                 'pickers.channel: the default "NATO SECRET" is not offered', id="picker-default"),
    pytest.param(variant('"NATO SECRET//REL TO NATO"]', '"NATO SECRET//REL TO XYZ"]'),
                 'pickers.channel: "NATO SECRET//REL TO XYZ": unknown nation or group "XYZ" in '
                 "REL TO", id="picker-unparsable"),
    pytest.param(variant('"NATO SECRET//REL TO NATO"]', '"NS//REL TO NATO"]'),
                 'pickers.channel: write "NS//REL TO NATO" as "NATO SECRET//REL TO NATO"',
                 id="picker-not-rendered"),
    pytest.param(variant('"NATO SECRET//REL TO NATO"]', '"NATO UNCLASSIFIED"]'),
                 "pickers.channel: a label appears twice", id="picker-twice"),
    pytest.param(variant("[pickers.channel]", "[pickers.Channel]"),
                 'container kind "Channel" must be lower-case letters and digits',
                 id="picker-kind"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "message"), MALFORMED)
def test_malformed_catalog_is_refused_with_its_reason(text: str, message: str) -> None:
    with pytest.raises(CatalogError) as caught:
        Catalog.from_toml(text)
    assert str(caught.value).startswith(message)


# --- the directory -----------------------------------------------------------------------------


def test_with_directory_adds_nations_and_groups() -> None:
    extended = CATALOG.with_directory(["XKX"], {"KFOR-TCN": ["XKX", "USA"], "DUO": ["FRA"]})
    assert "XKX" in extended.nations
    assert extended.groups["KFOR-TCN"] == {"XKX", "USA"}
    assert extended.groups["FVEY"] == CATALOG.groups["FVEY"]
    assert "XKX" not in CATALOG.nations  # the original is unchanged
    assert "KFOR-TCN" not in CATALOG.groups


def test_with_directory_version_names_what_was_added() -> None:
    one = CATALOG.with_directory(["USA"], {"DUO": ["FRA", "GBR"]})
    again = CATALOG.with_directory([], {"DUO": ["GBR", "FRA"]})
    other = CATALOG.with_directory([], {"DUO": ["FRA"]})
    assert one.version.startswith(f"{CATALOG.version}+directory.")
    assert one.version == again.version  # nations already known and member order do not count
    assert one.version != other.version


def test_with_directory_adding_nothing_new_is_the_same_catalog() -> None:
    assert CATALOG.with_directory(["USA", "GBR"], {}) is CATALOG


def test_with_directory_refuses_an_unknown_member() -> None:
    with pytest.raises(CatalogError, match=exact('group "DUO": unknown nation "XYZ"')):
        CATALOG.with_directory([], {"DUO": ["FRA", "XYZ"]})


def test_with_directory_refuses_to_redefine_a_catalog_group() -> None:
    with pytest.raises(CatalogError, match=exact('group "FVEY" is already defined by the catalog')):
        CATALOG.with_directory([], {"FVEY": ["USA"]})


def test_with_directory_refuses_a_group_named_like_a_nation() -> None:
    with pytest.raises(CatalogError, match=exact('group "FRA" has the name of a nation')):
        CATALOG.with_directory([], {"FRA": ["USA"]})


def test_with_directory_refuses_a_malformed_nation() -> None:
    with pytest.raises(
        CatalogError, match=exact('nation "Kosovo" is not an ISO 3166-1 alpha-3 code')
    ):
        CATALOG.with_directory(["Kosovo"], {})
