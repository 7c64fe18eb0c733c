"""What an audit event's index columns must say, derived from its leaf alone.

Beside each event's leaf (the RFC 8785 JSON that the Merkle tree commits to) the server keeps
a few columns that index it for queries. The tree does not cover them, so an edited column
could steer a query: find an event for a filter its leaf does not satisfy, or hide it from one
it does. Both sides therefore derive the index from the leaf with this one function: the server
serves and filters by what the leaf says, and an auditor's verification compares every column
the server reports against it, naming the first that differs.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

# The columns that queries select on, in the order a verification compares them. Each is the
# name of the column in the server's audit_events table, except ``channel_id``, the key of the
# ``details`` column that the container filter reads.
INDEX_COLUMNS = (
    "uid",
    "time",
    "action",
    "decision",
    "actor_user_id",
    "actor_nation",
    "object_id",
    "subject_nation",
    "label_banner",
    "channel_id",
)

TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def format_time(value: datetime) -> str:
    """A time as leaves write it: UTC, microseconds, ``Z``."""
    return value.astimezone(UTC).strftime(TIME_FORMAT)


def parse_time(value: str) -> datetime:
    return datetime.strptime(value, TIME_FORMAT).replace(tzinfo=UTC)


def _part(value: Any, key: str) -> Any:
    return value.get(key) if isinstance(value, Mapping) else None


def leaf_index(leaf: Mapping[str, Any]) -> dict[str, Any]:
    """The value each index column must hold for this leaf (None where the leaf has none)."""
    return {
        "uid": leaf.get("uid"),
        "time": leaf.get("time"),
        "action": leaf.get("action"),
        "decision": leaf.get("decision"),
        "actor_user_id": _part(leaf.get("actor"), "user"),
        "actor_nation": _part(leaf.get("actor"), "nation"),
        "object_id": _part(leaf.get("object"), "id"),
        "subject_nation": leaf.get("subject_nation"),
        "label_banner": _part(leaf.get("label"), "banner"),
        "channel_id": _part(leaf.get("details"), "channel_id"),
    }


def first_difference(
    leaf: Mapping[str, Any], columns: Mapping[str, Any]
) -> tuple[str, Any, Any] | None:
    """(column, what the column says, what the leaf says) for the first index column, in
    ``INDEX_COLUMNS`` order, that disagrees with the leaf; None if all agree. A column missing
    from ``columns`` disagrees."""
    expected = leaf_index(leaf)
    for name in INDEX_COLUMNS:
        if name not in columns or columns[name] != expected[name]:
            return name, columns.get(name), expected[name]
    return None
