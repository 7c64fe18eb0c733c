"""The label catalog: policies, levels, categories, partner groups, equivalences and pickers.

The catalog is data, not code, in the spirit of a NATO SPIF: a TOML file (the default ships as
``protocol/catalogs/default.toml``; docs/labels.md describes its keys). Everything here is
immutable, and a :class:`Catalog` checks every invariant when it is built, so code holding one
never meets a dangling reference, an ambiguous banner or an equivalence that inverts an order.

Levels compare through a graph: within a policy, a higher level dominates a lower one; each
equivalence adds an edge between two policies ("equals" both ways, "at-least" and "at-most" one
way). Level A dominates level B when a path leads from A to B. With no path either way the two
are incomparable, and every decision between them denies.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from importlib import resources
from types import MappingProxyType
from typing import Any, NamedTuple, TypeVar

from protocol.canonical import canonical_json

# A nation: ISO 3166-1 alpha-3.
NATION = re.compile(r"[A-Z]{3}")
# One word naming a policy, a group, a category or a category's banner prefix.
NAME = re.compile(r"[A-Z][A-Z0-9-]*")
# What a banner may spell out: level names, short forms, markings, category values, privacy
# marks. Capital letters and digits in words joined by single spaces or hyphens, so that no
# phrase contains the banner separators "//", "/" or ",".
PHRASE = re.compile(r"[A-Z0-9]+(?:[ -][A-Z0-9]+)*")
_COLOUR = re.compile(r"#[0-9A-Fa-f]{6}")
_PICKER_KIND = re.compile(r"[a-z][a-z0-9-]*")
# The words that open a banner block of their own; see protocol.labels.
BANNER_KEYWORDS = frozenset({"REL", "PRIVACY", "REVIEW"})


class CatalogError(ValueError):
    """The catalog is malformed or inconsistent; the message says where."""


class CategoryKind(StrEnum):
    RESTRICTIVE = "restrictive"  # the subject must hold every value on the label
    PERMISSIVE = "permissive"  # the subject must hold at least one value on the label
    INFORMATIVE = "informative"  # shown in the banner, never decides


class Relation(StrEnum):
    EQUALS = "equals"  # each level dominates the other
    AT_LEAST = "at-least"  # the level dominates the other level, not the reverse
    AT_MOST = "at-most"  # the other level dominates the level, not the reverse


class LevelRef(NamedTuple):
    """A classification level, named by its policy and its name in that policy."""

    policy: str
    level: str


@dataclass(frozen=True)
class Level:
    name: str  # "SECRET", unique in its policy; what the canonical form records
    short: str  # "NS"; accepted when parsing, never rendered
    colour: str  # banner colour, "#c8102e"
    marking: str  # the classification as a banner writes it: "NATO SECRET", "COSMIC TOP SECRET"


@dataclass(frozen=True)
class Policy:
    """A marking policy. One named after a nation code is that nation's national policy."""

    name: str
    levels: tuple[Level, ...]  # lowest first
    # Names of nations and groups a label without REL TO is releasable to; None means the
    # label's originator nation alone.
    default_rel_to: tuple[str, ...] | None

    def level(self, name: str) -> Level | None:
        return next((level for level in self.levels if level.name == name), None)

    def lookup(self, text: str) -> Level | None:
        """The level whose name or short form is ``text``."""
        return next((level for level in self.levels if text in (level.name, level.short)), None)


@dataclass(frozen=True)
class Category:
    name: str
    kind: CategoryKind
    values: tuple[str, ...]  # in banner order
    prefix: str | None  # banner block "PREFIX v1, v2"; None: the values stand alone, "v1/v2"


@dataclass(frozen=True)
class Equivalence:
    level: LevelRef
    relation: Relation
    other: LevelRef


@dataclass(frozen=True)
class LabelPicker:
    """The labels offered for one kind of container, as banners in their rendered form."""

    labels: tuple[str, ...]
    default: str


@dataclass(frozen=True, eq=False)
class Catalog:
    """The whole catalog, checked when built (CatalogError otherwise). Load one with
    :func:`load_default_catalog` or :meth:`Catalog.from_toml`; catalogs compare by identity,
    and ``version`` names their content."""

    version: str
    nations: frozenset[str]
    groups: Mapping[str, frozenset[str]]
    policies: Mapping[str, Policy]
    categories: Mapping[str, Category]  # in banner order
    equivalences: tuple[Equivalence, ...]
    pickers: Mapping[str, LabelPicker]
    # Derived in __post_init__: classification text -> level, for every spelling that needs no
    # originator ("NATO SECRET", "COSMIC TOP SECRET", "NS"); the dominance relation between
    # levels as (higher-or-equal, lower-or-equal) pairs; category lookups for the banner parser.
    _classifications: Mapping[str, LevelRef] = field(init=False, repr=False)
    _at_least: frozenset[tuple[LevelRef, LevelRef]] = field(init=False, repr=False)
    _by_prefix: Mapping[str, Category] = field(init=False, repr=False)
    _by_value: Mapping[str, Category] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        freeze = object.__setattr__
        freeze(self, "nations", frozenset(self.nations))
        freeze(self, "groups", _frozen({k: frozenset(v) for k, v in self.groups.items()}))
        freeze(self, "policies", _frozen(self.policies))
        freeze(self, "categories", _frozen(self.categories))
        freeze(self, "equivalences", tuple(self.equivalences))
        freeze(self, "pickers", _frozen(self.pickers))
        if not self.version:
            raise CatalogError("version must not be empty")
        self._check_nations_and_groups()
        for key, policy in self.policies.items():
            self._check_policy(key, policy)
        freeze(
            self,
            "_classifications",
            _frozen(_classification_index(self.policies.values(), self.nations)),
        )
        self._check_national_levels()
        freeze(self, "_at_least", self._level_order())
        for key, category in self.categories.items():
            _check_category(key, category)
        freeze(self, "_by_prefix", _frozen(self._index_prefixes()))
        freeze(self, "_by_value", _frozen(self._index_values()))
        self._check_pickers()

    # --- loading ----------------------------------------------------------------------------

    @classmethod
    def from_toml(cls, text: str) -> Catalog:
        """Parse and check a catalog; CatalogError says what is wrong and where."""
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise CatalogError(f"not valid TOML: {exc}") from exc
        _check_keys(
            data, "catalog", {"version", "nations", "groups", "categories", "policies", "pickers"}
        )
        nations = frozenset(_strings(data["nations"], "nations"))
        groups = {
            name: frozenset(_strings(members, f"groups.{name}"))
            for name, members in _table(data["groups"], "groups").items()
        }
        categories = {
            name: _read_category(name, raw)
            for name, raw in _table(data["categories"], "categories").items()
        }
        policies: dict[str, Policy] = {}
        pending: list[tuple[str, LevelRef, Relation, str]] = []
        for name, raw in _table(data["policies"], "policies").items():
            policies[name], unresolved = _read_policy(name, raw)
            pending += unresolved
        pickers = {
            kind: _read_picker(kind, raw)
            for kind, raw in _table(data["pickers"], "pickers").items()
        }
        catalog = cls(
            version=_string(data["version"], "version"),
            nations=nations,
            groups=groups,
            policies=policies,
            categories=categories,
            equivalences=(),
            pickers=pickers,
        )
        # An equivalence names the other level as a banner writes it: resolved once the
        # policies are known to be sound, then checked with the rest.
        equivalences = []
        for where, level, relation, other in pending:
            ref = catalog.classification(other)
            if ref is None:
                raise CatalogError(f'{where}: unknown classification "{other}"')
            equivalences.append(Equivalence(level, relation, ref))
        return replace(catalog, equivalences=tuple(equivalences))

    def with_directory(
        self, nations: Iterable[str], groups: Mapping[str, Iterable[str]]
    ) -> Catalog:
        """This catalog extended with the nations and partner groups of the server's directory.

        A group's members must be known nations (this catalog's or ``nations``), and a group may
        not redefine one the catalog ships. The result's ``version`` gains a digest of what was
        added, so an audit event that records it pins the groups the decision used. Adding
        nothing new returns this catalog.
        """
        added_nations = frozenset(nations) - self.nations
        added_groups = {name: frozenset(members) for name, members in groups.items()}
        for name in sorted(added_groups):
            if name in self.groups:
                raise CatalogError(f'group "{name}" is already defined by the catalog')
        if not added_nations and not added_groups:
            return self
        added = {
            "nations": sorted(added_nations),
            "groups": {name: sorted(members) for name, members in added_groups.items()},
        }
        digest = hashlib.sha256(canonical_json(added)).hexdigest()[:16]
        return replace(
            self,
            version=f"{self.version}+directory.{digest}",
            nations=self.nations | added_nations,
            groups={**self.groups, **added_groups},
        )

    # --- queries ----------------------------------------------------------------------------

    def classification(self, text: str) -> LevelRef | None:
        """The level a classification written without an originator names: ``NATO SECRET``,
        ``COSMIC TOP SECRET``, ``NS``; None when it names none."""
        return self._classifications.get(text)

    def at_least(self, higher: LevelRef, lower: LevelRef) -> bool:
        """Whether ``higher`` dominates ``lower`` through the rank order and the equivalences.
        False for unknown levels and for levels that are incomparable."""
        return (higher, lower) in self._at_least

    def marking(self, ref: LevelRef) -> str:
        """How a banner writes a known level."""
        level = self.policies[ref.policy].level(ref.level)
        if level is None:
            raise KeyError(ref)
        return level.marking

    def category_with_prefix(self, prefix: str) -> Category | None:
        return self._by_prefix.get(prefix)

    def category_with_value(self, value: str) -> Category | None:
        """The category without a banner prefix that ``value`` belongs to."""
        return self._by_value.get(value)

    # --- invariants -------------------------------------------------------------------------

    def _check_nations_and_groups(self) -> None:
        for nation in sorted(self.nations):
            if not NATION.fullmatch(nation):
                raise CatalogError(f'nation "{nation}" is not an ISO 3166-1 alpha-3 code')
        for name, members in self.groups.items():
            if not NAME.fullmatch(name):
                raise CatalogError(f'group name "{name}" is not one capitalised word')
            if name in self.nations:
                raise CatalogError(f'group "{name}" has the name of a nation')
            for member in sorted(members):
                if member not in self.nations:
                    raise CatalogError(f'group "{name}": unknown nation "{member}"')

    def _check_policy(self, key: str, policy: Policy) -> None:
        where = f"policies.{key}"
        if policy.name != key:
            raise CatalogError(f"{where}: named {policy.name}")
        if not NAME.fullmatch(key):
            raise CatalogError(f'policy name "{key}" is not one capitalised word')
        if not policy.levels:
            raise CatalogError(f"{where}: has no levels")
        spellings: dict[str, str] = {}
        for level in policy.levels:
            for text in (level.name, level.short, level.marking):
                if not PHRASE.fullmatch(text):
                    raise CatalogError(
                        f'{where}: "{text}" must be capital letters and digits in words joined '
                        "by single spaces or hyphens"
                    )
            if not _COLOUR.fullmatch(level.colour):
                raise CatalogError(
                    f'{where}: colour "{level.colour}" of {level.name} is not #rrggbb'
                )
            for text in dict.fromkeys((level.name, level.short)):
                if spellings.setdefault(text, level.name) != level.name:
                    raise CatalogError(f'{where}: "{text}" names two levels')
        for name in policy.default_rel_to or ():
            if name not in self.nations and name not in self.groups:
                raise CatalogError(f'{where}.default_rel_to: unknown nation or group "{name}"')

    def _check_national_levels(self) -> None:
        # A banner that names no policy is read in its originator's national policy, after the
        # spellings that need no originator; no national spelling may shadow or be shadowed.
        for policy in self.policies.values():
            if policy.name not in self.nations:
                continue
            for level in policy.levels:
                for text in (level.name, level.short):
                    ref = self._classifications.get(text)
                    if ref is not None:
                        raise CatalogError(
                            f'policies.{policy.name}: "{text}" is also the classification '
                            f"{ref.policy} {ref.level}"
                        )
                    head, space, _ = text.partition(" ")
                    if space and head in self.policies:
                        raise CatalogError(
                            f'policies.{policy.name}: "{text}" begins with the policy name {head}'
                        )

    def _level_order(self) -> frozenset[tuple[LevelRef, LevelRef]]:
        below: dict[LevelRef, set[LevelRef]] = {}
        for policy in self.policies.values():
            refs = [LevelRef(policy.name, level.name) for level in policy.levels]
            for ref in refs:
                below[ref] = set()
            for low, high in itertools.pairwise(refs):
                below[high].add(low)
        for eq in self.equivalences:
            for ref in (eq.level, eq.other):
                if ref not in below:
                    raise CatalogError(
                        f"equivalence names the unknown level {ref.policy} {ref.level}"
                    )
            if eq.level.policy == eq.other.policy:
                raise CatalogError(
                    f"equivalence of {eq.level.policy} {eq.level.level} must name another policy"
                )
            if eq.relation in (Relation.EQUALS, Relation.AT_LEAST):
                below[eq.level].add(eq.other)
            if eq.relation in (Relation.EQUALS, Relation.AT_MOST):
                below[eq.other].add(eq.level)
        pairs: set[tuple[LevelRef, LevelRef]] = set()
        for start in below:
            reached, todo = {start}, [start]
            while todo:
                for ref in below[todo.pop()] - reached:
                    reached.add(ref)
                    todo.append(ref)
            pairs.update((start, ref) for ref in reached)
        # Equivalences must not let a level of a policy reach a higher level of the same policy:
        # that would make levels the catalog orders collapse into one or swap.
        for policy in self.policies.values():
            for i, lower in enumerate(policy.levels):
                for higher in policy.levels[i + 1 :]:
                    up = (LevelRef(policy.name, lower.name), LevelRef(policy.name, higher.name))
                    if up in pairs:
                        raise CatalogError(
                            f"equivalences make {lower.marking} at least {higher.marking}"
                        )
        return frozenset(pairs)

    def _index_prefixes(self) -> dict[str, Category]:
        by_prefix: dict[str, Category] = {}
        for category in self.categories.values():
            if category.prefix is None:
                continue
            if category.prefix in by_prefix:
                raise CatalogError(
                    f'categories.{category.name}: prefix "{category.prefix}" is already used'
                )
            by_prefix[category.prefix] = category
        return by_prefix

    def _index_values(self) -> dict[str, Category]:
        # A value without a prefix names its category alone, so it must be unique and must not
        # read as the start of another kind of block.
        by_value: dict[str, Category] = {}
        for category in self.categories.values():
            if category.prefix is not None:
                continue
            for value in category.values:
                other = by_value.setdefault(value, category)
                if other is not category:
                    raise CatalogError(
                        f'categories: value "{value}" belongs to both {other.name} and '
                        f"{category.name}; give one of them a prefix"
                    )
                head = value.partition(" ")[0]
                if head in BANNER_KEYWORDS or head in self._by_prefix:
                    raise CatalogError(
                        f'categories.{category.name}: value "{value}" begins with the banner '
                        f'keyword "{head}"'
                    )
        return by_value

    def _check_pickers(self) -> None:
        # protocol.labels imports this module; the pickers are checked with the banner parser
        # itself so that a picker can never offer a label the parser refuses.
        from protocol.labels import LabelError, parse_label, render_label

        for kind, picker in self.pickers.items():
            where = f"pickers.{kind}"
            if not _PICKER_KIND.fullmatch(kind):
                raise CatalogError(f'container kind "{kind}" must be lower-case letters and digits')
            if not picker.labels:
                raise CatalogError(f"{where}: offers no labels")
            if len(set(picker.labels)) != len(picker.labels):
                raise CatalogError(f"{where}: a label appears twice")
            if picker.default not in picker.labels:
                raise CatalogError(f'{where}: the default "{picker.default}" is not offered')
            for banner in picker.labels:
                try:
                    rendered = render_label(parse_label(banner, self), self)
                except LabelError as exc:
                    raise CatalogError(f'{where}: "{banner}": {exc}') from exc
                if rendered != banner:
                    raise CatalogError(f'{where}: write "{banner}" as "{rendered}"')


@functools.cache
def load_default_catalog() -> Catalog:
    """The catalog that ships with Attaché (immutable, so one instance serves every caller)."""
    source = resources.files("protocol") / "catalogs" / "default.toml"
    return Catalog.from_toml(source.read_text(encoding="utf-8"))


_K = TypeVar("_K")
_V = TypeVar("_V")


def _frozen(mapping: Mapping[_K, _V]) -> Mapping[_K, _V]:
    return MappingProxyType(dict(mapping))


def _check_category(key: str, category: Category) -> None:
    where = f"categories.{key}"
    if category.name != key:
        raise CatalogError(f"{where}: named {category.name}")
    if not NAME.fullmatch(key):
        raise CatalogError(f'category name "{key}" is not one capitalised word')
    if not category.values:
        raise CatalogError(f"{where}: has no values")
    if len(set(category.values)) != len(category.values):
        raise CatalogError(f"{where}: a value appears twice")
    for value in category.values:
        if not PHRASE.fullmatch(value):
            raise CatalogError(
                f'{where}: value "{value}" must be capital letters and digits in words joined by '
                "single spaces or hyphens"
            )
    if category.prefix is not None and (
        not NAME.fullmatch(category.prefix) or category.prefix in BANNER_KEYWORDS
    ):
        raise CatalogError(
            f'{where}: prefix "{category.prefix}" must be one capitalised word other than '
            f"{', '.join(sorted(BANNER_KEYWORDS))}"
        )


def _classification_index(
    policies: Iterable[Policy], nations: frozenset[str]
) -> dict[str, LevelRef]:
    """Every spelling of a level that needs no originator: ``POLICY NAME``, the level's marking,
    and the short form of a policy that is not national (``NS``)."""
    index: dict[str, LevelRef] = {}
    for policy in policies:
        for level in policy.levels:
            ref = LevelRef(policy.name, level.name)
            spellings = {f"{policy.name} {level.name}", level.marking}
            if policy.name not in nations:
                spellings.add(level.short)
            for text in spellings:
                other = index.setdefault(text, ref)
                if other != ref:
                    raise CatalogError(
                        f'classification "{text}" names both {other.policy} {other.level} and '
                        f"{ref.policy} {ref.level}"
                    )
    return index


# --- reading TOML ---------------------------------------------------------------------------


def _check_keys(
    table: Mapping[str, Any], where: str, required: set[str], optional: frozenset[str] = frozenset()
) -> None:
    # Unknown keys are refused: a misspelt key in a security catalog must not pass unnoticed.
    missing = sorted(required - table.keys())
    if missing:
        raise CatalogError(f'{where}: missing "{missing[0]}"')
    unknown = sorted(table.keys() - required - optional)
    if unknown:
        raise CatalogError(f'{where}: unknown key "{unknown[0]}"')


def _table(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise CatalogError(f"{where} must be a table")
    return value


def _string(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise CatalogError(f"{where} must be a string")
    return value


def _strings(value: object, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise CatalogError(f"{where} must be a list of strings")
    return tuple(value)


def _read_category(name: str, raw: object) -> Category:
    where = f"categories.{name}"
    table = _table(raw, where)
    _check_keys(table, where, {"kind", "values"}, frozenset({"prefix"}))
    kind = _string(table["kind"], f"{where}.kind")
    if kind not in set(CategoryKind):
        raise CatalogError(f'{where}.kind: "{kind}" is not one of {", ".join(CategoryKind)}')
    prefix = table.get("prefix")
    return Category(
        name=name,
        kind=CategoryKind(kind),
        values=_strings(table["values"], f"{where}.values"),
        prefix=None if prefix is None else _string(prefix, f"{where}.prefix"),
    )


def _read_policy(
    name: str, raw: object
) -> tuple[Policy, list[tuple[str, LevelRef, Relation, str]]]:
    """The policy, and its equivalences as (where, level, relation, other classification) for
    the caller to resolve once every policy is known."""
    where = f"policies.{name}"
    table = _table(raw, where)
    _check_keys(table, where, {"default_rel_to", "levels"}, frozenset({"equivalences"}))
    default = table["default_rel_to"]
    default_rel_to = (
        None
        if default == "originator"
        else _strings(default, f'{where}.default_rel_to (or "originator")')
    )
    levels = []
    if not isinstance(table["levels"], list):
        raise CatalogError(f"{where}.levels must be a list of tables")
    for i, raw_level in enumerate(table["levels"]):
        at = f"{where}.levels[{i}]"
        level = _table(raw_level, at)
        _check_keys(level, at, {"name", "short", "colour"}, frozenset({"marking"}))
        level_name = _string(level["name"], f"{at}.name")
        levels.append(
            Level(
                name=level_name,
                short=_string(level["short"], f"{at}.short"),
                colour=_string(level["colour"], f"{at}.colour"),
                marking=_string(level.get("marking", f"{name} {level_name}"), f"{at}.marking"),
            )
        )
    equivalences = []
    raw_equivalences = table.get("equivalences", [])
    if not isinstance(raw_equivalences, list):
        raise CatalogError(f"{where}.equivalences must be a list of tables")
    for i, raw_eq in enumerate(raw_equivalences):
        at = f"{where}.equivalences[{i}]"
        eq = _table(raw_eq, at)
        _check_keys(eq, at, {"level", "relation", "other"})
        relation = _string(eq["relation"], f"{at}.relation")
        if relation not in set(Relation):
            raise CatalogError(f'{at}.relation: "{relation}" is not one of {", ".join(Relation)}')
        level_name = _string(eq["level"], f"{at}.level")
        if all(level.name != level_name for level in levels):
            raise CatalogError(f'{at}: unknown level "{level_name}" in policy {name}')
        other = _string(eq["other"], f"{at}.other")
        equivalences.append((at, LevelRef(name, level_name), Relation(relation), other))
    return Policy(name, tuple(levels), default_rel_to), equivalences


def _read_picker(kind: str, raw: object) -> LabelPicker:
    where = f"pickers.{kind}"
    table = _table(raw, where)
    _check_keys(table, where, {"labels", "default"})
    return LabelPicker(
        labels=_strings(table["labels"], f"{where}.labels"),
        default=_string(table["default"], f"{where}.default"),
    )
