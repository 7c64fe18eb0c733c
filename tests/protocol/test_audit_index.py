"""protocol.audit_index: the index columns an audit leaf implies, and the first that differs."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from protocol.audit_index import INDEX_COLUMNS, first_difference, format_time, leaf_index

LEAF: dict[str, Any] = {
    "v": 1,
    "uid": "u-1",
    "time": "2026-11-26T04:00:00.000001Z",
    "action": "message.submit",
    "decision": "allow",
    "actor": {"user": "alice", "device": "d-1", "nation": "USA"},
    "object": {"type": "message", "id": "m-1"},
    "subject_nation": "USA",
    "label": {"banner": "NATO SECRET", "canonical": {}},
    "reasons": [],
    "details": {"channel_id": "c-1"},
}


def test_the_index_is_read_from_the_leaf() -> None:
    assert leaf_index(LEAF) == {
        "uid": "u-1",
        "time": "2026-11-26T04:00:00.000001Z",
        "action": "message.submit",
        "decision": "allow",
        "actor_user_id": "alice",
        "actor_nation": "USA",
        "object_id": "m-1",
        "subject_nation": "USA",
        "label_banner": "NATO SECRET",
        "channel_id": "c-1",
    }
    assert tuple(leaf_index(LEAF)) == INDEX_COLUMNS
    assert format_time(datetime(2026, 11, 26, 4, 0, 0, 1, tzinfo=UTC)) == LEAF["time"]


def test_the_first_differing_column_is_named() -> None:
    columns = leaf_index(LEAF)
    assert first_difference(LEAF, columns) is None
    steered = {**columns, "decision": "deny", "label_banner": "NATO UNCLASSIFIED"}
    assert first_difference(LEAF, steered) == ("decision", "deny", "allow")
    missing = {k: v for k, v in columns.items() if k != "channel_id"}
    assert first_difference(LEAF, missing) == ("channel_id", None, "c-1")


def test_a_malformed_leaf_implies_no_values_rather_than_failing() -> None:
    leaf = {"actor": "alice", "object": None, "label": None, "details": []}
    assert set(leaf_index(leaf).values()) == {None}
