"""Properties of the label grammar, dominance, join and the access decision (hypothesis).

Labels are drawn from the default catalog over a small set of names, so that random pairs and
triples are often comparable and the implications below are exercised, not vacuously true.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.canonical import canonical_json
from protocol.catalog import CategoryKind, LevelRef, load_default_catalog
from protocol.labels import (
    Clearance,
    Label,
    LabelError,
    dominates,
    expand_releasability,
    join,
    parse_clearance,
    parse_label,
    render_label,
)
from protocol.policy import Container, Subject, decide

CATALOG = load_default_catalog()
PROPERTY = settings(max_examples=100, deadline=None)

NAMES = ("USA", "GBR", "FRA", "CAN", "SWE", "FVEY", "NATO", "EU")
NATIONALITIES = ("USA", "GBR", "FRA", "CAN", "SWE", "AUS", "JPN")
ORIGINATORS = (None, "USA", "GBR", "FRA")
USERS = ("u1", "u2")


def ref(label: Label) -> LevelRef:
    return LevelRef(label.policy, label.level)


@st.composite
def labels(
    draw: st.DrawFn,
    policies: tuple[str, ...] = tuple(CATALOG.policies),
    names: tuple[str, ...] = NAMES,
    width: int = 3,
) -> Label:
    """Labels of ``policies`` naming ``names`` in REL TO, with the first ``width`` values of
    each category: narrower universes make random labels comparable more often."""
    policy = draw(st.sampled_from(policies))
    categories = {}
    for name, category in CATALOG.categories.items():
        values = draw(st.frozensets(st.sampled_from(category.values[:width]), max_size=2))
        if values:
            categories[name] = values
    return Label(
        policy=policy,
        level=draw(st.sampled_from(CATALOG.policies[policy].levels)).name,
        categories=categories,
        releasable_to=tuple(draw(st.lists(st.sampled_from(names), unique=True, max_size=3))),
        originator=draw(st.sampled_from(ORIGINATORS)),
        privacy_mark=draw(st.sampled_from((None, "STAFF", "MEDICAL IN CONFIDENCE"))),
        review_date=draw(st.none() | st.dates(date(2025, 1, 1), date(2040, 12, 31))),
    )


# Two policies related by equivalences, few names and values: dominance holds often.
close_labels = labels(("NATO", "GBR"), ("USA", "GBR", "FRA", "FVEY"), width=2)


@st.composite
def clearances(draw: st.DrawFn) -> Clearance:
    # Biased towards high levels and many values, so that decisions often allow.
    policy = draw(st.sampled_from(tuple(CATALOG.policies)))
    levels = CATALOG.policies[policy].levels
    rank = max(draw(st.integers(0, len(levels) - 1)), draw(st.integers(0, len(levels) - 1)))
    categories = {}
    for name, category in CATALOG.categories.items():
        if category.kind is not CategoryKind.INFORMATIVE:
            every = frozenset(category.values)
            values = draw(st.just(every) | st.frozensets(st.sampled_from(category.values)))
            if values:
                categories[name] = values
    return Clearance(policy, levels[rank].name, categories)


TOP_CLEARANCE = parse_clearance("COSMIC TOP SECRET//ATOMAL/BOHEMIA/CRYPTO//MISSION EFP", CATALOG)
subjects = st.builds(
    Subject,
    user_id=st.sampled_from(USERS),
    nationality=st.sampled_from((None, *NATIONALITIES, *NATIONALITIES[:3])),
    clearance=st.none() | clearances() | st.just(TOP_CLEARANCE),
)
containers = (
    st.none()
    | st.none()
    | st.builds(
        Container,
        id=st.just("c1"),
        ceiling=labels()
        | st.just(parse_label("COSMIC TOP SECRET//ATOMAL/BOHEMIA/CRYPTO", CATALOG)),
        members=st.just(frozenset(USERS)) | st.frozensets(st.sampled_from(USERS)),
    )
)


def allowed(subject: Subject, label: Label, container: Container | None) -> bool:
    return decide(subject, label, container, CATALOG).allowed


@st.composite
def raised(draw: st.DrawFn, label: Label) -> Label:
    """``label`` made more restrictive one way: a higher level, another restrictive value, or a
    narrower REL TO."""
    way = draw(st.sampled_from(("level", "category", "narrow")))
    if way == "level":
        levels = CATALOG.policies[label.policy].levels
        rank = [level.name for level in levels].index(label.level)
        higher = draw(st.sampled_from(levels[rank:]))
        return dataclasses.replace(label, level=higher.name)
    if way == "category":
        caveat = CATALOG.categories["CAVEAT"]
        values = label.categories.get("CAVEAT", frozenset()) | {
            draw(st.sampled_from(caveat.values))
        }
        return dataclasses.replace(label, categories={**label.categories, "CAVEAT": values})
    nations = sorted(expand_releasability(label, CATALOG))
    if not nations:
        return label
    narrower = draw(st.lists(st.sampled_from(nations), min_size=1, unique=True))
    return dataclasses.replace(label, releasable_to=tuple(narrower))


# --- the grammar and the canonical form --------------------------------------------------------


@PROPERTY
@given(labels())
def test_parse_render_round_trip(label: Label) -> None:
    banner = render_label(label, CATALOG)
    assert parse_label(banner, CATALOG, originator=label.originator) == label


@PROPERTY
@given(labels())
def test_canonical_round_trip(label: Label) -> None:
    data = json.loads(canonical_json(label.canonical()))
    assert data == label.canonical()
    assert Label.from_canonical(data, CATALOG) == label


@PROPERTY
@given(clearances())
def test_clearance_canonical_round_trip(clearance: Clearance) -> None:
    data = json.loads(canonical_json(clearance.canonical()))
    assert Clearance.from_canonical(data, CATALOG) == clearance


# --- dominance is a partial order --------------------------------------------------------------


@PROPERTY
@given(labels())
def test_dominance_is_reflexive(label: Label) -> None:
    assert dominates(label, label, CATALOG)


@PROPERTY
@given(st.data(), close_labels)
def test_dominance_is_transitive(data: st.DataObject, c: Label) -> None:
    # b and a are either unrelated labels or raised from the one below, so chains occur often.
    b = data.draw(close_labels | raised(c))
    a = data.draw(close_labels | raised(b))
    if dominates(a, b, CATALOG) and dominates(b, c, CATALOG):
        assert dominates(a, c, CATALOG)


@PROPERTY
@given(close_labels, close_labels)
def test_dominance_is_antisymmetric_on_what_decides(a: Label, b: Label) -> None:
    if dominates(a, b, CATALOG) and dominates(b, a, CATALOG):
        if a.policy == b.policy:
            assert a.level == b.level
        for name, category in CATALOG.categories.items():
            if category.kind is not CategoryKind.INFORMATIVE:
                assert a.categories.get(name) == b.categories.get(name)
        assert expand_releasability(a, CATALOG) == expand_releasability(b, CATALOG)


# --- the decision ------------------------------------------------------------------------------


@PROPERTY
@given(subjects, labels(), containers)
def test_no_one_outside_the_expanded_rel_to_is_allowed(
    subject: Subject, label: Label, container: Container | None
) -> None:
    if allowed(subject, label, container):
        assert subject.nationality in expand_releasability(label, CATALOG)


@PROPERTY
@given(subjects, labels(), containers)
def test_a_decision_allows_exactly_when_it_has_no_reasons(
    subject: Subject, label: Label, container: Container | None
) -> None:
    decision = decide(subject, label, container, CATALOG)
    assert decision.allowed == (decision.reasons == ())
    assert decision.catalog_version == CATALOG.version


@PROPERTY
@given(st.data(), labels(), subjects, containers)
def test_raising_a_label_never_widens_who_is_allowed(
    data: st.DataObject, label: Label, subject: Subject, container: Container | None
) -> None:
    higher = data.draw(raised(label))
    assert dominates(higher, label, CATALOG)
    if allowed(subject, higher, container):
        assert allowed(subject, label, container)


@PROPERTY
@given(close_labels, close_labels, subjects, containers)
def test_a_dominating_label_never_allows_more(
    a: Label, b: Label, subject: Subject, container: Container | None
) -> None:
    if dominates(a, b, CATALOG) and allowed(subject, a, container):
        assert allowed(subject, b, container)


# --- join is the least upper bound -------------------------------------------------------------


def joinable(a: Label, b: Label) -> bool:
    if not (CATALOG.at_least(ref(a), ref(b)) or CATALOG.at_least(ref(b), ref(a))):
        return False
    if not expand_releasability(a, CATALOG) & expand_releasability(b, CATALOG):
        return False
    mine, theirs = a.categories.get("MISSION"), b.categories.get("MISSION")
    return mine is None or theirs is None or bool(mine & theirs)


@PROPERTY
@given(close_labels, close_labels, close_labels)
def test_join_is_the_least_upper_bound(a: Label, b: Label, c: Label) -> None:
    if not joinable(a, b):
        with pytest.raises(LabelError):
            join(a, b, CATALOG)
        return
    joined = join(a, b, CATALOG)
    assert dominates(joined, a, CATALOG)
    assert dominates(joined, b, CATALOG)
    if dominates(c, a, CATALOG) and dominates(c, b, CATALOG):
        assert dominates(c, joined, CATALOG)


@PROPERTY
@given(close_labels)
def test_join_with_itself_is_itself(label: Label) -> None:
    if expand_releasability(label, CATALOG):
        assert join(label, label, CATALOG) == label


def test_join_is_the_least_upper_bound_of_every_pair_in_a_small_universe() -> None:
    # Exhaustive where hypothesis is sparse: the labels dominating join(a, b) are exactly those
    # dominating both a and b.
    universe = [
        Label("NATO", level, {"CAVEAT": caveat, "MISSION": mission}, releasable_to)
        for level, caveat, mission, releasable_to in itertools.product(
            ("RESTRICTED", "SECRET"),
            (frozenset(), frozenset({"ATOMAL"}), frozenset({"ATOMAL", "CRYPTO"})),
            (frozenset(), frozenset({"KFOR"}), frozenset({"NMI"}), frozenset({"KFOR", "NMI"})),
            ((), ("USA",), ("GBR", "USA"), ("FVEY",), ("FRA",)),
        )
    ]
    universe = [  # an empty value set is written by leaving the category out
        Label(u.policy, u.level, {k: v for k, v in u.categories.items() if v}, u.releasable_to)
        for u in universe
    ]
    cache: dict[tuple[object, ...], int] = {}

    def upper_bounds(label: Label) -> int:
        key = (
            label.level,
            label.categories.get("CAVEAT"),
            label.categories.get("MISSION"),
            expand_releasability(label, CATALOG),
        )
        if key not in cache:
            cache[key] = sum(1 << i for i, c in enumerate(universe) if dominates(c, label, CATALOG))
        return cache[key]

    for a, b in itertools.product(universe, repeat=2):
        if joinable(a, b):
            assert upper_bounds(join(a, b, CATALOG)) == upper_bounds(a) & upper_bounds(b)
        else:
            with pytest.raises(LabelError):
                join(a, b, CATALOG)
