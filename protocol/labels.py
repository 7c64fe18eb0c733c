"""Labels and clearances: banners, canonical JSON, dominance and join.

A banner is the text form of a label, shown at the top and bottom of every labelled item.
Grammar (``docs/labels.md`` has examples that parse and examples that are refused)::

    banner         = classification *( "//" block )
    classification = marking / short / level          ; see "Classification" below
    block          = rel-to / privacy / review / prefixed / bare
    rel-to         = "REL TO " name *( "," name )     ; nations and groups, order kept
    privacy        = "PRIVACY " phrase
    review         = "REVIEW " date                   ; YYYY-MM-DD
    prefixed       = prefix " " value *( "," value )  ; a category with a banner prefix
    bare           = value *( "/" value )             ; values of categories without a prefix
    phrase         = word *( ( " " / "-" ) word )     ; word = 1*( "A"-"Z" / "0"-"9" )

Classification: ``NATO SECRET`` (policy and level name), a level's own marking
(``COSMIC TOP SECRET``) and the short form of a policy that is not national (``NS``) name their
policy. Anything else (``SECRET``, ``S``) is a level name or short form in the national policy
of the originator nation, which the caller passes as ``originator``; without it the banner is
refused. Parsing is case-sensitive; whitespace around separators is free and runs of spaces
count as one. Blocks may come in any order, but each of REL TO, PRIVACY, REVIEW and each
prefixed category at most once, and no value twice. Rendering writes the canonical form: the
marking, then one block per category in catalog order (values in catalog order), then
REL TO as written, PRIVACY, REVIEW. The originator is not part of the banner: it comes with the
item, so ``parse_label(render_label(l, c), c, originator=l.originator) == l`` for every valid
label.

REL TO keeps the names as written, in the order written, groups unexpanded: that is what the
originator marked and what is shown. Two labels that differ only in that order are different
labels (and sign differently) but dominate each other. Groups are expanded only when a decision
is made (:func:`expand_releasability`). A label without REL TO takes its policy's default
releasability; for a national policy that is the originator alone, and with no originator, no
one.

Clearances use the same syntax without REL TO, PRIVACY and REVIEW, and must name their policy:
``NATO SECRET//ATOMAL``.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from types import MappingProxyType
from typing import Any

from protocol.catalog import PHRASE, Catalog, Category, CategoryKind, Level, LevelRef

_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_LABEL_KEYS = (
    "policy",
    "level",
    "categories",
    "rel_to",
    "originator",
    "privacy_mark",
    "review_date",
)
_CLEARANCE_KEYS = ("policy", "level", "categories")


class LabelError(ValueError):
    """A banner, label or clearance that the catalog does not define; the message names the
    offending token."""


def _freeze(categories: Mapping[str, Iterable[str]]) -> Mapping[str, frozenset[str]]:
    return MappingProxyType(_frozen_values(categories))


def _frozen_values(categories: Mapping[str, Iterable[str]]) -> dict[str, frozenset[str]]:
    return {name: frozenset(categories[name]) for name in sorted(categories)}


@dataclass(frozen=True)
class Label:
    """A classification label. Build one with :func:`parse_label` or
    :meth:`Label.from_canonical`, which check it against the catalog; a label built directly is
    checked by every function that uses it (and denied by the decision if it fails)."""

    policy: str
    level: str  # the level's name in its policy, not its marking: "TOP SECRET", not "COSMIC ..."
    categories: Mapping[str, frozenset[str]] = field(default_factory=dict)
    releasable_to: tuple[str, ...] = ()  # as written; empty means the policy's default
    originator: str | None = None
    privacy_mark: str | None = None
    review_date: date | None = None

    def __post_init__(self) -> None:
        # Frozen all the way down, so a label checked once stays as checked.
        object.__setattr__(self, "categories", _freeze(self.categories))
        object.__setattr__(self, "releasable_to", tuple(self.releasable_to))

    def __hash__(self) -> int:
        return hash(
            (
                self.policy,
                self.level,
                frozenset(self.categories.items()),
                self.releasable_to,
                self.originator,
                self.privacy_mark,
                self.review_date,
            )
        )

    def canonical(self) -> dict[str, Any]:
        """The one JSON form that is signed (RFC 8785 via protocol.canonical). Every key is
        always present; absent values are null, an absent REL TO is [], no categories is {}."""
        return {
            "policy": self.policy,
            "level": self.level,
            "categories": _canonical_categories(self.categories),
            "rel_to": list(self.releasable_to),
            "originator": self.originator,
            "privacy_mark": self.privacy_mark,
            "review_date": None if self.review_date is None else self.review_date.isoformat(),
        }

    @classmethod
    def from_canonical(cls, data: Mapping[str, Any], catalog: Catalog) -> Label:
        """The label ``data`` is the canonical form of; LabelError unless it is exactly that
        form and every name in it is in ``catalog``."""
        _check_shape(data, _LABEL_KEYS, "label")
        review = _optional_str(data, "review_date")
        label = cls(
            policy=_str(data, "policy"),
            level=_str(data, "level"),
            categories=_categories_field(data),
            releasable_to=_str_list(data["rel_to"], "rel_to"),
            originator=_optional_str(data, "originator"),
            privacy_mark=_optional_str(data, "privacy_mark"),
            review_date=None if review is None else _parse_date(review),
        )
        check_label(label, catalog)
        _check_canonical(label.canonical(), data, "label")
        return label


@dataclass(frozen=True)
class Clearance:
    """What a person is cleared for: a level and the category values they hold."""

    policy: str
    level: str
    categories: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "categories", _freeze(self.categories))

    def __hash__(self) -> int:
        return hash((self.policy, self.level, frozenset(self.categories.items())))

    def canonical(self) -> dict[str, Any]:
        """``{"policy", "level", "categories"}``, categories as for a label."""
        return {
            "policy": self.policy,
            "level": self.level,
            "categories": _canonical_categories(self.categories),
        }

    @classmethod
    def from_canonical(cls, data: Mapping[str, Any], catalog: Catalog) -> Clearance:
        _check_shape(data, _CLEARANCE_KEYS, "clearance")
        clearance = cls(
            policy=_str(data, "policy"),
            level=_str(data, "level"),
            categories=_categories_field(data),
        )
        check_clearance(clearance, catalog)
        _check_canonical(clearance.canonical(), data, "clearance")
        return clearance


# --- checking ---------------------------------------------------------------------------------


def check_label(label: Label, catalog: Catalog) -> None:
    """Raise LabelError naming the first part of ``label`` that ``catalog`` does not define."""
    _check_level(label.policy, label.level, catalog)
    _check_categories(label.categories, catalog)
    seen: set[str] = set()
    for name in label.releasable_to:
        if name not in catalog.nations and name not in catalog.groups:
            raise LabelError(f'unknown nation or group "{name}" in REL TO')
        if name in seen:
            raise LabelError(f'"{name}" appears twice in REL TO')
        seen.add(name)
    if label.originator is not None and label.originator not in catalog.nations:
        raise LabelError(f'unknown originator nation "{label.originator}"')
    if label.privacy_mark is not None and not PHRASE.fullmatch(label.privacy_mark):
        raise LabelError(
            f'invalid privacy mark "{label.privacy_mark}": use capital letters and digits in '
            "words joined by single spaces or hyphens"
        )


def check_clearance(clearance: Clearance, catalog: Catalog) -> None:
    """Raise LabelError naming the first part of ``clearance`` that ``catalog`` does not define."""
    _check_level(clearance.policy, clearance.level, catalog)
    _check_categories(clearance.categories, catalog)
    for name in clearance.categories:
        if catalog.categories[name].kind is CategoryKind.INFORMATIVE:
            raise LabelError(f"category {name} is informative; a clearance cannot hold it")


def _check_level(policy: str, level: str, catalog: Catalog) -> Level:
    known = catalog.policies.get(policy)
    if known is None:
        raise LabelError(f'unknown policy "{policy}"')
    found = known.level(level)
    if found is None:
        raise LabelError(f'unknown classification level "{level}" in policy {policy}')
    return found


def _check_categories(categories: Mapping[str, frozenset[str]], catalog: Catalog) -> None:
    for name, values in categories.items():
        category = catalog.categories.get(name)
        if category is None:
            raise LabelError(f'unknown category "{name}"')
        if not values:
            raise LabelError(f"category {name} has no values")
        for value in sorted(values):
            if value not in category.values:
                raise LabelError(f'unknown value "{value}" of category {name}')


# --- banners ----------------------------------------------------------------------------------


@dataclass
class _Banner:
    """What a banner says, gathered block by block."""

    level: LevelRef
    categories: dict[str, set[str]] = field(default_factory=dict)
    releasable_to: tuple[str, ...] | None = None
    privacy_mark: str | None = None
    review_date: date | None = None


def parse_label(banner: str, catalog: Catalog, *, originator: str | None = None) -> Label:
    """The label a banner writes. ``originator`` is the nation the item comes from: it becomes
    the label's originator and gives the policy of a banner that names none."""
    if originator is not None and originator not in catalog.nations:
        raise LabelError(f'unknown originator nation "{originator}"')
    parsed = _parse_banner(banner, catalog, originator)
    label = Label(
        policy=parsed.level.policy,
        level=parsed.level.level,
        categories=_frozen_values(parsed.categories),
        releasable_to=parsed.releasable_to or (),
        originator=originator,
        privacy_mark=parsed.privacy_mark,
        review_date=parsed.review_date,
    )
    check_label(label, catalog)
    return label


def render_label(label: Label, catalog: Catalog) -> str:
    """The banner of ``label``, in the long form."""
    check_label(label, catalog)
    blocks = [catalog.marking(_ref(label)), *_category_blocks(label.categories, catalog)]
    if label.releasable_to:
        blocks.append("REL TO " + ", ".join(label.releasable_to))
    if label.privacy_mark is not None:
        blocks.append(f"PRIVACY {label.privacy_mark}")
    if label.review_date is not None:
        blocks.append(f"REVIEW {label.review_date.isoformat()}")
    return "//".join(blocks)


def parse_clearance(text: str, catalog: Catalog) -> Clearance:
    """A clearance, written as a banner without REL TO, PRIVACY or REVIEW, that names its
    policy: ``NATO SECRET//ATOMAL``."""
    parsed = _parse_banner(text, catalog, None)
    for block, present in (
        ("REL TO", parsed.releasable_to is not None),
        ("PRIVACY", parsed.privacy_mark is not None),
        ("REVIEW", parsed.review_date is not None),
    ):
        if present:
            raise LabelError(f"{block} is not part of a clearance")
    clearance = Clearance(
        parsed.level.policy, parsed.level.level, _frozen_values(parsed.categories)
    )
    check_clearance(clearance, catalog)
    return clearance


def render_clearance(clearance: Clearance, catalog: Catalog) -> str:
    check_clearance(clearance, catalog)
    ref = LevelRef(clearance.policy, clearance.level)
    return "//".join([catalog.marking(ref), *_category_blocks(clearance.categories, catalog)])


def _parse_banner(text: str, catalog: Catalog, originator: str | None) -> _Banner:
    try:
        return _parse_blocks(text, catalog, originator)
    except LabelError as exc:
        if text == text.upper():
            raise
        # Banners are case-sensitive: say so, rather than name a policy or level as unknown
        # that was only written in small letters (``nato secret``).
        capitals = text.upper()
        try:
            _parse_blocks(capitals, catalog, originator)
        except LabelError:
            raise LabelError(f"{exc} (banners are written in capitals)") from None
        raise LabelError(
            f'"{text}" is not in capitals: banners are case-sensitive; write "{capitals}"'
        ) from None


def _parse_blocks(text: str, catalog: Catalog, originator: str | None) -> _Banner:
    blocks = [" ".join(block.split()) for block in text.split("//")]
    if blocks == [""]:
        raise LabelError("empty banner")
    if "" in blocks:
        raise LabelError(f'empty block in "{text}"')
    parsed = _Banner(_parse_classification(blocks[0], catalog, originator))
    for block in blocks[1:]:
        _parse_block(block, parsed, catalog)
    return parsed


def _parse_classification(text: str, catalog: Catalog, originator: str | None) -> LevelRef:
    ref = catalog.classification(text)
    if ref is not None:
        return ref
    if text in catalog.policies:
        raise LabelError(f'"{text}" names a policy but no classification level')
    head, space, rest = text.partition(" ")
    if space and head in catalog.policies:
        raise LabelError(f'unknown classification level "{rest}" in policy {head}')
    if originator is None:
        raise LabelError(
            f'"{text}" names no policy; a banner without one needs its originator nation'
        )
    policy = catalog.policies.get(originator)
    if policy is None:
        raise LabelError(f'"{text}" names no policy and {originator} has no national policy')
    level = policy.lookup(text)
    if level is None:
        raise LabelError(f'unknown classification level "{text}" in policy {originator}')
    return LevelRef(policy.name, level.name)


def _parse_block(block: str, parsed: _Banner, catalog: Catalog) -> None:
    keyword, _, rest = block.partition(" ")
    if keyword == "REL":
        to, _, names = rest.partition(" ")
        if to != "TO":
            raise LabelError(f'expected "REL TO" in "{block}"')
        if parsed.releasable_to is not None:
            raise LabelError("REL TO appears twice")
        # Whether each name is known is checked with the rest of the label.
        parsed.releasable_to = _items(names, "REL TO")
    elif keyword == "PRIVACY":
        if parsed.privacy_mark is not None:
            raise LabelError("PRIVACY appears twice")
        parsed.privacy_mark = rest
    elif keyword == "REVIEW":
        if parsed.review_date is not None:
            raise LabelError("REVIEW appears twice")
        parsed.review_date = _parse_date(rest)
    elif (category := catalog.category_with_prefix(keyword)) is not None:
        if category.name in parsed.categories:
            raise LabelError(f"{keyword} appears twice")
        values = _items(rest, keyword)
        for value in values:
            if value not in category.values:
                raise LabelError(f'unknown value "{value}" of category {category.name}')
        parsed.categories[category.name] = set(values)
    else:
        for value in (v.strip() for v in block.split("/")):
            if not value:
                raise LabelError(f'empty category in "{block}"')
            found = catalog.category_with_value(value)
            if found is None:
                raise LabelError(f'unknown category "{value}"')
            held = parsed.categories.setdefault(found.name, set())
            if value in held:
                raise LabelError(f'category "{value}" appears twice')
            held.add(value)


def _items(text: str, what: str) -> tuple[str, ...]:
    items = tuple(item.strip() for item in text.split(","))
    if items == ("",):
        raise LabelError(f"{what} names nothing")
    for i, item in enumerate(items):
        if not item:
            raise LabelError(f'empty entry in {what} "{text}"')
        if item in items[:i]:
            raise LabelError(f'"{item}" appears twice in {what}')
    return items


def _parse_date(text: str) -> date:
    if _DATE.fullmatch(text):
        with contextlib.suppress(ValueError):  # 2030-02-30: refused below like any other
            return date.fromisoformat(text)
    raise LabelError(f'invalid review date "{text}": expected a date as YYYY-MM-DD')


def _category_blocks(categories: Mapping[str, frozenset[str]], catalog: Catalog) -> list[str]:
    blocks = []
    for category in catalog.categories.values():
        held = categories.get(category.name)
        if not held:
            continue
        values = [value for value in category.values if value in held]
        if category.prefix is None:
            blocks.append("/".join(values))
        else:
            blocks.append(f"{category.prefix} {', '.join(values)}")
    return blocks


def banner_value(category: Category, value: str) -> str:
    """A category value as a banner shows it, for messages: ``ATOMAL``, ``MISSION KFOR``."""
    return value if category.prefix is None else f"{category.prefix} {value}"


# --- releasability, dominance, join -----------------------------------------------------------


def expand_releasability(label: Label, catalog: Catalog) -> frozenset[str]:
    """The nations ``label`` is releasable to: REL TO with its groups expanded, or the policy's
    default when there is none (the originator alone for a national policy; no one when there
    is no originator). LabelError for an unknown policy, nation or group."""
    names = label.releasable_to or default_releasability(label, catalog)
    nations: set[str] = set()
    for name in names:
        if name in catalog.nations:
            nations.add(name)
        elif name in catalog.groups:
            nations |= catalog.groups[name]
        else:
            raise LabelError(f'unknown nation or group "{name}" in REL TO')
    return frozenset(nations)


def default_releasability(label: Label, catalog: Catalog) -> tuple[str, ...]:
    """The names a label without REL TO is releasable to, unexpanded."""
    policy = catalog.policies.get(label.policy)
    if policy is None:
        raise LabelError(f'unknown policy "{label.policy}"')
    if policy.default_rel_to is not None:
        return policy.default_rel_to
    return () if label.originator is None else (label.originator,)


def dominates(a: Label, b: Label, catalog: Catalog) -> bool:
    """Whether ``a`` is at least as restrictive as ``b``: every subject allowed ``a`` is
    allowed ``b``.

    That holds when a's level dominates b's (through the equivalences), a holds every value of
    each of b's restrictive categories, for each permissive category b names a names a subset
    of b's values (a category a label does not name restricts no one), and a's expanded
    releasability is a subset of b's. Informative categories, the privacy mark, the review date
    and the originator (except through default releasability) do not count.

    This is a preorder: reflexive and transitive. Labels that dominate each other are equal in
    level (up to equivalence), restrictive and permissive values and expanded releasability,
    which is the partial order the docs describe.
    """
    check_label(a, catalog)
    check_label(b, catalog)
    if not catalog.at_least(_ref(a), _ref(b)):
        return False
    for name, category in catalog.categories.items():
        mine, theirs = a.categories.get(name), b.categories.get(name)
        if category.kind is CategoryKind.RESTRICTIVE and not (theirs or frozenset()) <= (
            mine or frozenset()
        ):
            return False
        if (
            category.kind is CategoryKind.PERMISSIVE
            and theirs is not None
            and (mine is None or not mine <= theirs)
        ):
            return False
    return expand_releasability(a, catalog) <= expand_releasability(b, catalog)


def ceiling_excess(label: Label, ceiling: Label, catalog: Catalog) -> tuple[str, ...]:
    """How ``label`` goes beyond a container's ``ceiling``; empty when it fits.

    A ceiling bounds the level and the restrictive categories. It does not bound releasability
    or permissive categories: a message may narrow releasability below the ceiling's (only the
    members it releases to get a key) and a wider one reaches no one beyond the members, each of
    whom the decision checks against the label itself.
    """
    check_label(label, catalog)
    check_label(ceiling, catalog)
    excess = []
    mine, limit = _ref(label), _ref(ceiling)
    if not catalog.at_least(limit, mine):
        relation = "above" if catalog.at_least(mine, limit) else "not comparable with"
        excess.append(f"{catalog.marking(mine)} {relation} {catalog.marking(limit)}")
    for name, category in catalog.categories.items():
        if category.kind is CategoryKind.RESTRICTIVE:
            allowed = ceiling.categories.get(name, frozenset())
            held = label.categories.get(name, frozenset())
            excess += [
                f"category {banner_value(category, value)}"
                for value in category.values
                if value in held and value not in allowed
            ]
    return tuple(excess)


def join(a: Label, b: Label, catalog: Catalog) -> Label:
    """The least upper bound of ``a`` and ``b``: the label of an aggregate holding both.

    The higher level (a's when they are equivalent), the union of restrictive and informative
    values, the intersection of each permissive category (one a label does not name restricts
    nothing) and of the expanded releasability. REL TO is a's or b's as written when that gives
    the same nations, else the nations, sorted. The originator is kept when both agree, and
    dropped otherwise; the privacy mark likewise, except that one label's mark is kept when the
    other has none; the review date is the later one, and none if either has none.
    LabelError when the levels are incomparable or the result would be releasable to no one or
    hold no value of a permissive category.
    """
    check_label(a, catalog)
    check_label(b, catalog)
    if catalog.at_least(_ref(a), _ref(b)):
        top = a
    elif catalog.at_least(_ref(b), _ref(a)):
        top = b
    else:
        raise LabelError(
            f"{catalog.marking(_ref(a))} and {catalog.marking(_ref(b))} are not comparable"
        )
    categories: dict[str, frozenset[str]] = {}
    for name, category in catalog.categories.items():
        mine, theirs = a.categories.get(name), b.categories.get(name)
        if category.kind is CategoryKind.PERMISSIVE and mine is not None and theirs is not None:
            values = mine & theirs
            if not values:
                raise LabelError(f"the labels hold no common value of category {name}")
        elif category.kind is CategoryKind.PERMISSIVE:
            values = mine or theirs or frozenset()
        else:
            values = (mine or frozenset()) | (theirs or frozenset())
        if values:
            categories[name] = values
    nations = expand_releasability(a, catalog) & expand_releasability(b, catalog)
    if not nations:
        raise LabelError("the labels are releasable to no common nation")
    joined = Label(
        policy=top.policy,
        level=top.level,
        categories=categories,
        originator=a.originator if a.originator == b.originator else None,
        privacy_mark=_privacy_mark(a.privacy_mark, b.privacy_mark),
        review_date=(
            None
            if a.review_date is None or b.review_date is None
            else max(a.review_date, b.review_date)
        ),
    )
    # A written REL TO (or the default, when neither wrote one) is kept only when it gives the
    # same nations in the joined label's own policy and originator.
    for written in (a.releasable_to, b.releasable_to):
        candidate = replace(joined, releasable_to=written)
        if expand_releasability(candidate, catalog) == nations:
            return candidate
    return replace(joined, releasable_to=tuple(sorted(nations)))


def _privacy_mark(mine: str | None, theirs: str | None) -> str | None:
    # Two different marks cannot be written as one; marks never decide access.
    if mine is None or theirs is None or mine == theirs:
        return mine or theirs
    return None


def _ref(label: Label) -> LevelRef:
    return LevelRef(label.policy, label.level)


# --- canonical form ---------------------------------------------------------------------------


def _canonical_categories(categories: Mapping[str, frozenset[str]]) -> dict[str, list[str]]:
    return {name: sorted(categories[name]) for name in sorted(categories)}


def _check_shape(data: Mapping[str, Any], keys: tuple[str, ...], what: str) -> None:
    if not isinstance(data, Mapping):
        raise LabelError(f"a canonical {what} must be a JSON object")
    missing = [key for key in keys if key not in data]
    if missing:
        raise LabelError(f'canonical {what} lacks "{missing[0]}"')
    unknown = sorted(set(data) - set(keys))
    if unknown:
        raise LabelError(f'canonical {what} has the unknown key "{unknown[0]}"')


def _check_canonical(expected: dict[str, Any], data: Mapping[str, Any], what: str) -> None:
    # One label has one canonical form, so a signature covers exactly one meaning.
    if expected != dict(data):
        raise LabelError(
            f"{what} is not in canonical form: category values must be sorted and unique"
        )


def _str(data: Mapping[str, Any], key: str) -> str:
    value = data[key]
    if not isinstance(value, str):
        raise LabelError(f'"{key}" must be a string')
    return value


def _optional_str(data: Mapping[str, Any], key: str) -> str | None:
    return None if data[key] is None else _str(data, key)


def _str_list(value: object, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise LabelError(f'"{key}" must be a list of strings')
    return tuple(value)


def _categories_field(data: Mapping[str, Any]) -> dict[str, frozenset[str]]:
    # Duplicates and order are lost here and caught by _check_canonical.
    categories = data["categories"]
    if not isinstance(categories, dict):
        raise LabelError('"categories" must be an object')
    return {
        name: frozenset(_str_list(values, f"categories.{name}"))
        for name, values in categories.items()
    }
