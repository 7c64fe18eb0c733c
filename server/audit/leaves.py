"""The leaf form of an audit event: the exact bytes that enter the Merkle log.

A leaf is the RFC 8785 canonical JSON of the event, built once, when the event is recorded,
and stored in the event row's ``body``. The integrator hashes that body, the export serves it,
and auditors read events from it: what an auditor sees is always what the tree commits to, so
an edit to a row's body after integration no longer matches the signed tree. The row's other
columns only index the body for queries.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

LEAF_VERSION = 1


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
        "time": time.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
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
