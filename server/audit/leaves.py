"""The leaf form of an audit event: the exact bytes that enter the Merkle log.

A leaf is the RFC 8785 canonical JSON of ``event_leaf(event)``. It is built from the stored
row both when the event is integrated and whenever it is exported, so an edit to a row after
integration changes the exported leaf and no longer matches the signed tree.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from protocol.canonical import canonical_json

LEAF_VERSION = 1


class EventLike(Protocol):
    """An audit event row: the ORM object, or a plain row with the same column names."""

    id: int
    time: datetime
    action: str
    decision: str
    actor_user_id: str | None
    actor_device_id: str | None
    actor_nation: str | None
    object_type: str
    object_id: str
    subject_nation: str | None
    label_banner: str | None
    label: dict[str, Any] | None
    reasons: list[str]
    details: dict[str, Any]


def event_leaf(event: EventLike) -> dict[str, Any]:
    return {
        "v": LEAF_VERSION,
        "id": event.id,
        "time": event.time.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "action": event.action,
        "decision": event.decision,
        "actor": {
            "user": event.actor_user_id,
            "device": event.actor_device_id,
            "nation": event.actor_nation,
        },
        "object": {"type": event.object_type, "id": event.object_id},
        "subject_nation": event.subject_nation,
        "label": (
            {"banner": event.label_banner, "canonical": event.label}
            if event.label is not None or event.label_banner is not None
            else None
        ),
        "reasons": list(event.reasons),
        "details": event.details,
    }


def leaf_bytes(event: EventLike) -> bytes:
    return canonical_json(event_leaf(event))
