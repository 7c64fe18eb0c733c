"""The access decision: may this subject receive content with this label in this container?

Every access in Attaché goes through :func:`decide` (DESIGN.md, "Access decision"). It allows
only when all of these hold, and otherwise lists every one that fails:

1. the subject's clearance dominates the label's level, through the equivalence table;
2. the subject's nationality is in the label's expanded releasability;
3. the subject holds every value of each restrictive category on the label, and at least one
   value of each permissive category on it;
4. the subject is a member of the container;
5. the container's ceiling bounds the label (level and restrictive categories; see
   :func:`protocol.labels.ceiling_excess` for why releasability is not part of it).

With ``container=None`` (a decision outside any container, such as whether a person is cleared
for a container's ceiling before joining it) rules 4 and 5 are skipped.

It fails closed: an unknown policy, level, category, value, nation or group, a label or
clearance the catalog cannot check, a subject with no nationality or no clearance, and levels
that no equivalence relates all deny, each with its reason.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.catalog import Catalog, CategoryKind, LevelRef
from protocol.labels import (
    Clearance,
    Label,
    LabelError,
    banner_value,
    ceiling_excess,
    check_clearance,
    check_label,
    default_releasability,
    expand_releasability,
)

__all__ = ["Container", "Decision", "Subject", "decide", "expand_releasability"]


@dataclass(frozen=True)
class Subject:
    user_id: str
    nationality: str | None  # None: a person no nation vouches for, denied everything
    clearance: Clearance | None  # None: not cleared, denied everything


@dataclass(frozen=True)
class Container:
    """A channel or committee, as far as a decision needs it."""

    id: str
    ceiling: Label
    members: frozenset[str]  # user ids


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reasons: tuple[str, ...]  # every rule that failed; empty exactly when allowed
    # The nations the label's releasability expanded to (sorted; empty when it could not be
    # expanded) and the catalog version, for the audit event that records the decision.
    releasable_to: tuple[str, ...]
    catalog_version: str

    def __post_init__(self) -> None:
        if self.allowed == bool(self.reasons):
            raise ValueError("a decision allows exactly when it has no reasons")


def decide(
    subject: Subject, label: Label, container: Container | None, catalog: Catalog
) -> Decision:
    """Whether ``subject`` may receive content labelled ``label`` in ``container``, and why not."""
    reasons: list[str] = []

    nations: frozenset[str] | None = None
    try:
        check_label(label, catalog)
        nations = expand_releasability(label, catalog)
    except LabelError as exc:
        reasons.append(f"label: {exc}")

    clearance = subject.clearance
    if clearance is None:
        reasons.append("no clearance")
    else:
        try:
            check_clearance(clearance, catalog)
        except LabelError as exc:
            reasons.append(f"clearance: {exc}")
            clearance = None

    ceiling_ok = False
    if container is not None:
        try:
            check_label(container.ceiling, catalog)
            ceiling_ok = True
        except LabelError as exc:
            reasons.append(f"container ceiling: {exc}")

    if nations is not None and clearance is not None:
        reasons += _clearance_reasons(clearance, label, catalog)  # rules 1 and 3

    if subject.nationality is None:  # rule 2
        reasons.append("no nationality")
    elif subject.nationality not in catalog.nations:
        reasons.append(f'unknown nationality "{subject.nationality}"')
    elif nations is not None and subject.nationality not in nations:
        reasons.append(
            f"nationality {subject.nationality} not in {_releasability_text(label, catalog)}"
        )

    if container is not None and subject.user_id not in container.members:  # rule 4
        reasons.append("not a member")

    if container is not None and ceiling_ok and nations is not None:  # rule 5
        reasons += [
            f"label above the container ceiling: {excess}"
            for excess in ceiling_excess(label, container.ceiling, catalog)
        ]

    return Decision(
        allowed=not reasons,
        reasons=tuple(reasons),
        releasable_to=tuple(sorted(nations or ())),
        catalog_version=catalog.version,
    )


def _clearance_reasons(clearance: Clearance, label: Label, catalog: Catalog) -> list[str]:
    reasons = []
    held, needed = LevelRef(clearance.policy, clearance.level), LevelRef(label.policy, label.level)
    if not catalog.at_least(held, needed):
        relation = "below" if catalog.at_least(needed, held) else "not comparable with"
        reasons.append(f"clearance {catalog.marking(held)} {relation} {catalog.marking(needed)}")
    for name, category in catalog.categories.items():
        required = label.categories.get(name)
        if required is None:
            continue
        holds = clearance.categories.get(name, frozenset())
        if category.kind is CategoryKind.RESTRICTIVE:
            reasons += [
                f"missing category {banner_value(category, value)}"
                for value in category.values
                if value in required and value not in holds
            ]
        elif category.kind is CategoryKind.PERMISSIVE and not required & holds:
            values = [value for value in category.values if value in required]
            reasons.append(f"missing category {name}: needs one of {', '.join(values)}")
    return reasons


def _releasability_text(label: Label, catalog: Catalog) -> str:
    """The releasability the subject was checked against, as the reader would recognise it."""
    if label.releasable_to:
        return "REL TO " + ", ".join(label.releasable_to)
    names = default_releasability(label, catalog)
    if not names:
        return f"the default releasability of {label.policy} (the originator, and there is none)"
    return f"REL TO {', '.join(names)} (the default of {label.policy})"
