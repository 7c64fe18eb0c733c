"""Refusals in the audit log, without letting a flood of them grow it without bound.

Every refusal of an authenticated request that touches another nation's people or content is
a decision, and so an audit event. Identical refusals (same actor, action, object and reasons)
within ``WINDOW`` are one window: its first refusal is logged at once, in the request's
transaction, as an event with ``count: 1``; the others are counted in ``audit_refusals`` and
logged as one event with their ``count`` (and the uid of the first event, ``repeats``) once the
window has closed, by the next identical refusal or by the integrator's sweep
(``log_closed_refusals``). The counts of a window's events add up to its refusals.

Callers raise their refusal with ``keep_changes=True`` so that the event and the count commit
although the request fails; they refuse before changing anything else.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from protocol.canonical import canonical_json
from server.audit import log as audit
from server.audit import repository as repo
from server.audit.models import AuditRefusal
from server.db.base import new_id, utcnow

# How long identical refusals are counted before their count is logged.
WINDOW = timedelta(seconds=60)
# Attempts to count a refusal while other transactions close the same window.
_ATTEMPTS = 3


def _actor_json(actor: audit.Actor) -> dict[str, Any]:
    return {
        "user_id": actor.user_id,
        "device_id": actor.device_id,
        "nation": actor.nation,
        "via": actor.via,
    }


async def record_refusal(
    session: AsyncSession,
    *,
    actor: audit.Actor,
    action: str,
    object_type: str,
    object_id: str,
    reasons: Iterable[str],
    subject_nation: str | None = None,
    label: dict[str, Any] | None = None,
    label_banner: str | None = None,
) -> None:
    """Audit a refusal: an event now if it opens a window, a count otherwise."""
    event = {
        "actor": _actor_json(actor),
        "action": action,
        "object_type": object_type,
        "object_id": object_id,
        "reasons": list(reasons),
        "subject_nation": subject_nation,
        "label": label,
        "label_banner": label_banner,
    }
    identity = {k: event[k] for k in ("actor", "action", "object_type", "object_id", "reasons")}
    key = hashlib.sha256(canonical_json(identity)).hexdigest()
    for _ in range(_ATTEMPTS):
        now = utcnow()
        uid = new_id()
        count = await repo.count_refusal(
            session,
            key=key,
            now=now,
            window_open_since=now - WINDOW,
            first_event_uid=uid,
            event=event,
        )
        if count == 1:
            _log(session, event, count=1, uid=uid)
            return
        if count is not None:
            return
        # The window under this key has closed: log it, then open a new one.
        closed = await repo.get_refusal(session, key)
        if closed is not None and await repo.take_closed_refusal(session, closed):
            _log_closed(session, closed)
    # Others kept closing and reopening the window: log this refusal on its own rather than
    # not at all.
    _log(session, event, count=1)


async def log_closed_refusals(session: AsyncSession) -> int:
    """Log the count of every window that has closed; the number of events written."""
    written = 0
    for closed in await repo.closed_refusals(session, utcnow() - WINDOW):
        if await repo.take_closed_refusal(session, closed):
            written += _log_closed(session, closed)
    return written


def _log_closed(session: AsyncSession, closed: AuditRefusal) -> int:
    """The event for a closed window's repeats, if it had any (the first is logged already)."""
    if closed.count <= 1:
        return 0
    _log(
        session,
        closed.event,
        count=closed.count - 1,
        repeats=closed.first_event_uid,
        first=closed.window_start.isoformat(),
        last=closed.last_at.isoformat(),
    )
    return 1


def _log(
    session: AsyncSession, event: dict[str, Any], *, uid: str | None = None, **details: Any
) -> None:
    actor = event["actor"]
    audit.record(
        session,
        actor=audit.Actor(
            user_id=actor["user_id"],
            device_id=actor["device_id"],
            nation=actor["nation"],
            via=actor["via"],
        ),
        action=event["action"],
        object_type=event["object_type"],
        object_id=event["object_id"],
        decision=audit.DENY,
        reasons=event["reasons"],
        subject_nation=event["subject_nation"],
        label=event["label"],
        label_banner=event["label_banner"],
        details={**details, "window_seconds": int(WINDOW.total_seconds())},
        uid=uid,
    )


__all__ = ["WINDOW", "log_closed_refusals", "record_refusal"]
