"""The leaf form of an audit event: the exact bytes that enter the Merkle log.

A leaf is the RFC 8785 canonical JSON of the event, built once, when the event is recorded,
and stored in the event row's ``body``. The integrator hashes that body, the export serves it,
and auditors read events from it: what an auditor sees is always what the tree commits to, so
an edit to a row's body after integration no longer matches the signed tree. The row's other
columns only index the body for queries, and are trusted for nothing else: what is served is
filtered again by what the body says (``matches``), and an auditor's verification compares each
of them with its leaf (``row_index``, ``protocol.audit_index``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

from protocol.audit_index import format_time, leaf_index, parse_time

LEAF_VERSION = 1

#: Actions whose events every auditor is shown, a nation-scoped one too: they concern the
#: whole coalition, and what they record is public (a coalition policy version's publication,
#: served to anyone by GET /v1/policy). Each nation's auditors can then check the chain of
#: policy versions in the log themselves (PROTOCOL.md §18.6).
COALITION_WIDE = frozenset({"policy.publish"})


def event_leaf(
    *,
    uid: str,
    time: datetime,
    action: str,
    decision: str,
    actor: dict[str, str | None],
    object_type: str,
    object_id: str,
    subject_nation: str | None,
    label: dict[str, Any] | None,
    label_banner: str | None,
    reasons: list[str],
    details: dict[str, Any],
) -> dict[str, Any]:
    return {
        "v": LEAF_VERSION,
        "uid": uid,
        "time": format_time(time),
        "action": action,
        "decision": decision,
        "actor": actor,
        "object": {"type": object_type, "id": object_id},
        "subject_nation": subject_nation,
        "label": (
            {"banner": label_banner, "canonical": label}
            if label is not None or label_banner is not None
            else None
        ),
        "reasons": reasons,
        "details": details,
    }


def parse_body(body: str) -> dict[str, Any]:
    value = json.loads(body)
    if not isinstance(value, dict):
        raise ValueError("an audit leaf is a JSON object")
    return value


class _IndexedRow(Protocol):
    uid: str
    time: datetime
    action: str
    decision: str
    actor_user_id: str | None
    actor_nation: str | None
    object_id: str
    subject_nation: str | None
    label_banner: str | None


def row_index(row: _IndexedRow, channel_id: Any) -> dict[str, Any]:
    """The index columns of an event row as stored, in the form ``protocol.audit_index``
    derives from a leaf (``channel_id``: the ``details`` column's key of that name)."""
    return {
        "uid": row.uid,
        "time": format_time(row.time),
        "action": row.action,
        "decision": row.decision,
        "actor_user_id": row.actor_user_id,
        "actor_nation": row.actor_nation,
        "object_id": row.object_id,
        "subject_nation": row.subject_nation,
        "label_banner": row.label_banner,
        "channel_id": channel_id,
    }


def matches(
    leaf: Mapping[str, Any],
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    actor: str | None = None,
    nation: str | None = None,
    scope_nation: str | None = None,
    container: str | None = None,
    action: str | None = None,
    exclude_action: str | None = None,
    decision: str | None = None,
    label: str | None = None,
) -> bool:
    """Whether the leaf itself satisfies a query (the repository's filters, read from the leaf
    instead of the index columns)."""
    index = leaf_index(leaf)
    nations = (index["actor_nation"], index["subject_nation"])
    if since is not None or until is not None:
        try:
            when = parse_time(str(index["time"]))
        except ValueError:
            return False
        if (since is not None and when < since) or (until is not None and when >= until):
            return False
    return (
        (actor is None or index["actor_user_id"] == actor)
        and (nation is None or nation in nations)
        and (scope_nation is None or scope_nation in nations or index["action"] in COALITION_WIDE)
        and (container is None or container in (index["object_id"], index["channel_id"]))
        and (action is None or index["action"] == action)
        and (exclude_action is None or index["action"] != exclude_action)
        and (decision is None or index["decision"] == decision)
        and (label is None or index["label_banner"] == label)
    )
