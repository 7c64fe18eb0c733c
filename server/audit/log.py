"""Append audit events inside the caller's transaction.

An event is added to the same session as the action it records, so the action and its event
commit together or not at all. Events never carry plaintext or key material.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec

from sqlalchemy.ext.asyncio import AsyncSession

from protocol.canonical import Encoded, canonical_json
from server.audit.leaves import event_leaf
from server.audit.models import AuditEvent
from server.db.base import new_id, utcnow

P = ParamSpec("P")

ALLOW = "allow"
DENY = "deny"


@dataclass(frozen=True)
class Actor:
    """Who did something: a signed-in user on a device, the operator CLI, or a nation authority."""

    user_id: str | None
    device_id: str | None
    nation: str | None
    via: str = "api"


OPERATOR_CLI = Actor(user_id=None, device_id=None, nation=None, via="attache-server")


def event(
    *,
    actor: Actor | None,
    action: str,
    object_type: str,
    object_id: str,
    decision: str = ALLOW,
    reasons: Iterable[str] = (),
    subject_nation: str | None = None,
    label: dict[str, Any] | None = None,
    label_banner: str | None = None,
    details: dict[str, Any] | None = None,
    uid: str | None = None,
) -> AuditEvent:
    if decision not in (ALLOW, DENY):
        raise ValueError(f"audit decision must be allow or deny, not {decision!r}")
    uid, now = uid or new_id(), utcnow()
    full_details = {"via": actor.via if actor else "anonymous", **(details or {})}
    leaf = event_leaf(
        uid=uid,
        time=now,
        action=action,
        decision=decision,
        actor={
            "user": actor.user_id if actor else None,
            "device": actor.device_id if actor else None,
            "nation": actor.nation if actor else None,
        },
        object_type=object_type,
        object_id=object_id,
        subject_nation=subject_nation,
        label=label,
        label_banner=label_banner,
        reasons=list(reasons),
        details=full_details,
    )

    return AuditEvent(
        uid=uid,
        time=now,
        body=canonical_json(leaf).decode("utf-8"),
        action=action,
        decision=decision,
        actor_user_id=actor.user_id if actor else None,
        actor_device_id=actor.device_id if actor else None,
        actor_nation=actor.nation if actor else None,
        object_type=object_type,
        object_id=object_id,
        subject_nation=subject_nation,
        label=label,
        label_banner=label_banner,
        reasons=list(reasons),
        # The column holds the values; the leaf's text took parts encoded once as they are.
        details={k: v.value if type(v) is Encoded else v for k, v in full_details.items()},
    )


def _adding(build: Callable[P, AuditEvent]) -> Callable[Concatenate[AsyncSession, P], AuditEvent]:
    def add(session: AsyncSession, /, *args: P.args, **kwargs: P.kwargs) -> AuditEvent:
        built = build(*args, **kwargs)
        session.add(built)
        return built

    return add


record = _adding(event)
"""Add an audit event (``event``'s fields) to ``session``: it commits with the action it
records, or not at all. The hot path builds one with ``event`` and stages it instead
(``server.db.engine.stage``)."""
