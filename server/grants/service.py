"""History grants (PROTOCOL.md §16.7): a member who joined a channel later is given the past
items its label already admits, by a client of a member that holds their keys. No request and
no approval: the server checks exactly that the unchanged label admits each device, with the
same ``decide`` a submit uses, and only for items within the channel's history window. Every
grant is audited, allowed or refused.

This domain sits above ``channels`` and ``releases``: it stores its grants in the releases'
tables, where delivery already finds them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from protocol import envelopes, grants
from protocol.catalog import Catalog
from protocol.labels import Label
from server.audit import log as audit
from server.audit.refusals import record_refusal
from server.auth.principal import Principal
from server.channels.models import Channel
from server.channels.service import Eligibility, Refused, eligibility, roster
from server.db.base import utcnow
from server.db.engine import serialise
from server.errors import Conflict, InvalidInput, PermissionDenied
from server.grants import repository as repo
from server.releases import repository as release_repo
from server.releases.models import ItemGrant
from server.releases.service import Item, access_item, check_sealed_to, store_grant

ACTION = "history.grant"
MAX_HISTORY_DAYS = 3650
# Document versions are listed on a history's first page, the newest this many at most.
MAX_HISTORY_VERSIONS = 500


@dataclass(frozen=True)
class Due:
    """An item the caller's device holds, and the devices eligible for it now without a key."""

    item_type: str
    item_id: str
    seq: int
    label: str
    label_canonical: dict[str, Any]
    devices: list[str]


@dataclass(frozen=True)
class Waiting:
    """An item the caller is eligible for now but holds no key to."""

    item_type: str
    item_id: str
    seq: int
    label: str
    sent_at: datetime


@dataclass(frozen=True)
class History:
    history_days: int
    due: list[Due]
    waiting: list[Waiting]
    cursor: int
    more: bool


async def history(
    session: AsyncSession,
    principal: Principal,
    catalog: Catalog,
    channel: Channel,
    *,
    after: int,
    limit: int,
) -> History:
    """A page of the channel's messages within its history window after ``after`` (and, on
    the first page, its complete document versions within it, with ``seq`` 0): those this
    device holds that devices eligible now lack (``due``), and those this device's user is
    eligible for now but lacks (``waiting``). Each label is decided once per page."""
    days = await repo.history_days(session, channel.id)
    since = utcnow() - timedelta(days=days)
    messages = await repo.messages_since(session, channel.id, since, after, limit)
    versions = (
        await repo.versions_since(session, channel.id, since, MAX_HISTORY_VERSIONS)
        if after == 0
        else []
    )
    items = [
        *(
            ("document_version", v.id, 0, v.audience_id, v.label, v.label_banner, v.created_at)
            for v in reversed(versions)
        ),
        *(
            ("message", m.id, m.seq, m.audience_id, m.label, m.label_banner, m.created_at)
            for m in messages
        ),
    ]
    ids = [i[1] for i in items]
    audiences = await repo.audience_devices(session, sorted({i[3] for i in items}))
    granted = await repo.granted_devices(session, ids)
    latest = {i: g[-1] for i, g in (await release_repo.grants_for_items(session, ids)).items()}
    decided: dict[str, Eligibility] = {}
    due: list[Due] = []
    waiting: list[Waiting] = []
    me = principal.device.id
    for item_type, item_id, seq, audience_id, label_json, banner, created_at in items:
        if item_id in latest:
            label_json, banner = latest[item_id].label, latest[item_id].label_banner
        key = json.dumps(label_json, sort_keys=True)
        if key not in decided:
            label = Label.from_canonical(label_json, catalog)
            decided[key] = await eligibility(session, channel, label, catalog)
        eligible = decided[key].eligible
        holders = audiences[audience_id] | granted[item_id]
        if me in holders:
            if lacking := sorted(set(eligible) - holders):
                due.append(Due(item_type, item_id, seq, banner, label_json, lacking))
        elif me in eligible:
            waiting.append(Waiting(item_type, item_id, seq, banner, created_at))
    cursor = messages[-1].seq if messages else after
    return History(days, due, waiting, cursor, len(messages) == limit)


@dataclass(frozen=True)
class Granted:
    grant: ItemGrant
    devices: list[str]
    created: bool


async def do_history_grant(
    session: AsyncSession,
    principal: Principal,
    catalog: Catalog,
    channel: Channel,
    sealed: dict[str, Any],
) -> Granted:
    """Store a history grant: signed by the caller's device, which holds the item and whose
    user may read it now; for the item's own label and its label now; for an item within the
    channel's history window; sealed to devices each eligible now under that label (decided as
    a submit is) that hold no key for it yet, with the keys the server knows for them.

    The same grant sent again is answered as stored (``created`` False); a device that holds
    the item by then (another member's grant came first) is a conflict. A refusal by the
    policy or the window is audited and kept."""
    try:
        grant = grants.SealedGrant.from_json(sealed)
        header = grants.verify_grant(grant.header, grant.signature, principal.device.signing_key)
    except (envelopes.EnvelopeError, ValueError) as exc:
        raise InvalidInput(f"grant refused: {exc}", field="grant") from exc
    if not header.is_history:
        raise InvalidInput(
            "a grant that names a release request is made at /v1/releases/{id}/grant",
            field="grant",
        )
    # Grants of one item are made one at a time: the first for a device wins, and a repeat
    # finds the grant it repeats.
    await serialise(session, "item-grant", header.item_id)
    stored = await repo.get_grant(session, header.grant_id)
    if stored is not None:
        if stored.header == dict(grant.header) and stored.signature == grant.signature:
            return Granted(stored, await repo.grant_device_ids(session, stored.id), created=False)
        raise Conflict(f"grant id {header.grant_id} names another grant", field="grant_id")
    item = await access_item(
        session, principal, catalog, header.item_type, header.item_id, action=ACTION
    )
    mismatched = [
        name
        for name, ok in (
            ("container", header.container == item.channel.id == channel.id),
            (
                "grantor",
                (header.grantor_user, header.grantor_device)
                == (principal.user.id, principal.device.id),
            ),
            ("previous_label", dict(header.previous_label) == item.own_label),
            ("label", dict(header.label) == item.label),
        )
        if not ok
    ]
    if mismatched:
        raise InvalidInput(
            f"the history grant does not match the item: {', '.join(mismatched)}", field="grant"
        )
    label = Label.from_canonical(item.label, catalog)
    days = await repo.history_days(session, channel.id)
    if item.created_at < utcnow() - timedelta(days=days):
        reason = f"sent before the channel's history window of {days} days"
        await _refuse(session, principal, item, label.originator, [reason], {"window_days": days})
        raise Refused(f"the item was {reason}", keep_changes=True, window=days)
    now = await eligibility(session, item.channel, label, catalog)
    listed = list(header.devices)
    if ineligible := [d for d in listed if d not in now.eligible]:
        devices = await _devices_of(session, item.channel)
        why = [_why(d, devices, now) for d in ineligible]
        reasons = sorted({r for entry in why for r in entry["reasons"]})
        await _refuse(session, principal, item, label.originator, reasons, {"devices": why})
        raise Refused(
            f"{len(ineligible)} device(s) are not eligible for {item.banner}: {'; '.join(reasons)}",
            keep_changes=True,
            devices=ineligible,
        )
    if holding := sorted(set(listed) & item.holders):
        raise Conflict(
            f"{len(holding)} device(s) hold the item already: another member shared it first",
            devices=holding,
        )
    check_sealed_to(await _devices_of(session, item.channel), header)
    row = await store_grant(
        session,
        principal,
        grant,
        header,
        request_id=None,
        item_type=item.item_type,
        item_id=item.item_id,
        channel_id=item.channel.id,
        label=item.label,
        banner=item.banner,
    )
    audit.record(
        session,
        actor=principal.actor,
        action=ACTION,
        object_type=item.item_type,
        object_id=item.item_id,
        subject_nation=label.originator,
        label=item.label,
        label_banner=item.banner,
        details={
            "channel_id": item.channel.id,
            "grant_id": row.id,
            "granted_to": [{"device_id": d, **now.eligible[d].entry()} for d in listed],
        },
    )
    await session.flush()
    return Granted(row, listed, created=True)


async def _devices_of(session: AsyncSession, channel: Channel) -> dict[str, Any]:
    return {device.id: device for device, _ in await roster(session, channel)}


def _why(device_id: str, devices: dict[str, Any], now: Eligibility) -> dict[str, Any]:
    device = devices.get(device_id)
    user_id = device.user_id if device is not None else None
    if user_id is not None and user_id in now.refused:
        who, decision = now.refused[user_id]
        return {"device_id": device_id, **who.entry(decision)}
    return {
        "device_id": device_id,
        "user_id": user_id,
        "reasons": ["not an active, certified device of a member"],
    }


async def _refuse(
    session: AsyncSession,
    principal: Principal,
    item: Item,
    originator: str | None,
    reasons: Sequence[str],
    details: dict[str, Any],
) -> None:
    # Each refused attempt is its own event (not coalesced): it names the devices refused.
    audit.record(
        session,
        actor=principal.actor,
        action=ACTION,
        object_type=item.item_type,
        object_id=item.item_id,
        decision=audit.DENY,
        reasons=list(reasons),
        subject_nation=originator,
        label=item.label,
        label_banner=item.banner,
        details={"channel_id": item.channel.id, **details},
    )


async def do_set_history_window(
    session: AsyncSession, principal: Principal, channel: Channel, days: int
) -> int:
    """Set how far back a history grant reaches in ``channel``. Only its creator; a refused
    attempt is audited."""
    if channel.created_by != principal.user.id:
        await record_refusal(
            session,
            actor=principal.actor,
            action="channel.history_window",
            object_type="channel",
            object_id=channel.id,
            reasons=["only the channel's creator sets its history window"],
            label=channel.ceiling,
            label_banner=channel.ceiling_banner,
        )
        raise PermissionDenied(
            "only the channel's creator sets its history window", keep_changes=True
        )
    before = await repo.history_days(session, channel.id)
    await repo.set_history_days(session, channel.id, days)
    audit.record(
        session,
        actor=principal.actor,
        action="channel.history_window",
        object_type="channel",
        object_id=channel.id,
        label=channel.ceiling,
        label_banner=channel.ceiling_banner,
        details={"from": before, "to": days},
    )
    return days
