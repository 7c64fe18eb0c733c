"""Foreign disclosure: a member asks to release an item (a message or a document version) to
further partners; a disclosure officer of the item's originator nation approves or refuses;
then a device that holds the item's key seals that key (never an audience key) to the devices
the wider label newly admits: a grant, checked like a submit. Every step is audited.
"""

from __future__ import annotations

import dataclasses
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from protocol import envelopes, grants, keys
from protocol.catalog import Catalog
from protocol.labels import (
    Label,
    LabelError,
    check_label,
    default_releasability,
    expand_releasability,
    render_label,
)
from protocol.policy import decide
from server.audit import log as audit
from server.audit.refusals import record_refusal
from server.auth.principal import ROLE_DISCLOSURE_OFFICER, Principal
from server.channels import repository as channel_repo
from server.channels.models import Channel
from server.channels.service import Refused, container_of, eligibility, roster, subject_of
from server.db.base import utcnow
from server.devices.models import Device
from server.documents import repository as document_repo
from server.documents.models import COMPLETE
from server.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from server.releases import repository as repo
from server.releases.models import (
    APPROVED,
    DOCUMENT_VERSION,
    GRANTED,
    MESSAGE,
    PENDING,
    REFUSED,
    GrantEnvelope,
    ItemGrant,
    ReleaseRequest,
)

ITEM_TYPES = (MESSAGE, DOCUMENT_VERSION)


@dataclass(frozen=True)
class Item:
    """A releasable item as the server knows it: where it lives, its label now (the last
    granted label version, else its own), and the devices that hold its key; its own label
    (as its sender signed it) and when it was stored."""

    item_type: str
    item_id: str
    channel: Channel
    label: dict[str, Any]
    banner: str
    audience_id: str
    holders: frozenset[str]
    own_label: dict[str, Any]
    created_at: datetime


async def load_item(session: AsyncSession, item_type: str, item_id: str) -> Item | None:
    if item_type == MESSAGE:
        message = await channel_repo.get_message(session, item_id)
        if message is None:
            return None
        channel_id, label, banner, audience_id, created_at = (
            message.channel_id,
            message.label,
            message.label_banner,
            message.audience_id,
            message.created_at,
        )
    elif item_type == DOCUMENT_VERSION:
        version = await document_repo.get_version(session, item_id)
        if version is None or version.status != COMPLETE:
            return None
        document = await document_repo.get_document(session, version.document_id)
        assert document is not None
        channel_id, label, banner, audience_id, created_at = (
            document.channel_id,
            version.label,
            version.label_banner,
            version.audience_id,
            version.created_at,
        )
    else:
        return None
    channel = await channel_repo.get_channel(session, channel_id)
    assert channel is not None
    own_label = label
    granted = await repo.grants_for(session, item_id)
    if granted:
        label, banner = granted[-1].label, granted[-1].label_banner
    holders = await channel_repo.audience_device_ids(
        session, audience_id
    ) | await repo.granted_device_ids(session, item_id)
    return Item(
        item_type, item_id, channel, label, banner, audience_id, holders, own_label, created_at
    )


async def access_item(
    session: AsyncSession,
    principal: Principal,
    catalog: Catalog,
    item_type: str,
    item_id: str,
    *,
    action: str,
) -> Item:
    """An item the caller's device holds and the caller may read now; else it does not exist
    (and the refusal of one that does is audited as a denied ``action``, and kept)."""
    item = await load_item(session, item_type, item_id)
    if item is None:
        raise NotFound(f"no {item_type} {item_id!r} for you")
    label = Label.from_canonical(item.label, catalog)
    if principal.device.id not in item.holders:
        reasons = ["this device holds no key for the item"]
    else:
        container = await container_of(session, item.channel, catalog)
        decision = decide(subject_of(principal.user, catalog), label, container, catalog)
        reasons = [] if decision.allowed else list(decision.reasons)
    if reasons:
        await _refuse(session, principal, action, item, label.originator, reasons)
        raise NotFound(f"no {item_type} {item_id!r} for you", keep_changes=True)
    return item


async def _refuse(
    session: AsyncSession,
    principal: Principal,
    action: str,
    item: Item,
    originator: str | None,
    reasons: list[str],
) -> None:
    await record_refusal(
        session,
        actor=principal.actor,
        action=action,
        object_type=item.item_type,
        object_id=item.item_id,
        reasons=reasons,
        subject_nation=originator,
        label=item.label,
        label_banner=item.banner,
    )


def widened(label: Label, add: list[str], catalog: Catalog) -> Label:
    """``label`` with ``add`` appended to its releasability (written out from the policy's
    default if the label had none)."""
    current = list(label.releasable_to) or list(default_releasability(label, catalog))
    wider = dataclasses.replace(
        label, releasable_to=tuple(current + [n for n in add if n not in current])
    )
    try:
        check_label(wider, catalog)
    except LabelError as exc:
        raise InvalidInput(f"cannot release to {', '.join(add)}: {exc}", field="add") from exc
    if expand_releasability(wider, catalog) <= expand_releasability(label, catalog):
        raise InvalidInput(
            f"{render_label(label, catalog)} already releases to {', '.join(add)}", field="add"
        )
    return wider


async def do_request_release(
    session: AsyncSession,
    principal: Principal,
    catalog: Catalog,
    *,
    item_type: str,
    item_id: str,
    add: list[str],
    reason: str,
) -> ReleaseRequest:
    """Ask the originator nation to release an item the caller may read to ``add`` too.
    A refused request is audited (and kept)."""
    item = await access_item(
        session, principal, catalog, item_type, item_id, action="release.request"
    )
    label = Label.from_canonical(item.label, catalog)
    try:
        if label.originator is None:
            raise InvalidInput("this item names no originator nation to ask")
        wider = widened(label, add, catalog)
    except InvalidInput as exc:
        await _refuse(session, principal, "release.request", item, label.originator, [exc.detail])
        raise InvalidInput(exc.detail, keep_changes=True, **exc.fields) from None
    request = ReleaseRequest(
        item_type=item_type,
        item_id=item_id,
        channel_id=item.channel.id,
        requested_by=principal.user.id,
        originator=label.originator,
        label=item.label,
        label_banner=item.banner,
        requested_label=wider.canonical(),
        requested_banner=render_label(wider, catalog),
        reason=reason,
    )
    session.add(request)
    await session.flush()
    audit.record(
        session,
        actor=principal.actor,
        action="release.request",
        object_type="release_request",
        object_id=request.id,
        subject_nation=label.originator,
        label=request.requested_label,
        label_banner=request.requested_banner,
        details={
            "item_type": item_type,
            "item_id": item_id,
            "from": item.banner,
            "add": add,
            "reason": reason,
        },
    )
    return request


def is_decider(principal: Principal, request: ReleaseRequest) -> bool:
    return (
        principal.has_role(ROLE_DISCLOSURE_OFFICER)
        and principal.user.nationality == request.originator
    )


async def access_request(
    session: AsyncSession, principal: Principal, request_id: str, *, action: str
) -> ReleaseRequest:
    """A request its requester or a disclosure officer of its originator nation may see; to
    others it does not exist, and their attempt at ``action`` on it is audited (and kept)."""
    request = await repo.get_request(session, request_id, lock=True)
    if request is None:
        raise NotFound(f"no release request {request_id!r} for you")
    if not (request.requested_by == principal.user.id or is_decider(principal, request)):
        reason = f"neither the requester nor a disclosure officer of {request.originator}"
        await _refuse_request(session, principal, request, action, [reason])
        raise NotFound(f"no release request {request_id!r} for you", keep_changes=True)
    return request


async def _refuse_request(
    session: AsyncSession,
    principal: Principal,
    request: ReleaseRequest,
    action: str,
    reasons: list[str],
) -> None:
    """Audit a refused ``action`` on ``request``, under its originator and requested label."""
    await record_refusal(
        session,
        actor=principal.actor,
        action=action,
        object_type="release_request",
        object_id=request.id,
        reasons=reasons,
        subject_nation=request.originator,
        label=request.requested_label,
        label_banner=request.requested_banner,
    )


async def do_decide(
    session: AsyncSession,
    principal: Principal,
    request: ReleaseRequest,
    *,
    approve: bool,
    reason: str,
) -> ReleaseRequest:
    """Approve or refuse. Only a disclosure officer of the originator nation, never the
    requester; a refused attempt is audited."""
    why = []
    if not is_decider(principal, request):
        why.append(f"only a disclosure officer of {request.originator} decides")
    if request.requested_by == principal.user.id:
        why.append("a requester cannot decide their own request")
    action = "release.approve" if approve else "release.refuse"
    if why:
        await _refuse_request(session, principal, request, action, why)
        raise PermissionDenied("; ".join(why), keep_changes=True)
    if request.status != PENDING:
        raise Conflict(f"this request is already {request.status}", state=request.status)
    request.status = APPROVED if approve else REFUSED
    request.decided_by = principal.user.id
    request.decision_reason = reason
    request.decided_at = utcnow()
    audit.record(
        session,
        actor=principal.actor,
        action=action,
        object_type="release_request",
        object_id=request.id,
        subject_nation=request.originator,
        label=request.requested_label,
        label_banner=request.requested_banner,
        details={"item_type": request.item_type, "item_id": request.item_id, "reason": reason},
    )
    return request


async def do_grant(
    session: AsyncSession,
    principal: Principal,
    catalog: Catalog,
    request: ReleaseRequest,
    sealed: dict[str, Any],
) -> ItemGrant:
    """Store the grant carrying out an approved request, checked as a submit is: signed by
    the caller's device, which holds the item; for exactly the approved label; sealed to
    exactly the devices the wider label admits now that do not hold the item yet, with the
    keys the server knows for them."""
    if request.status != APPROVED:
        raise Conflict(f"the request is {request.status}, not approved", state=request.status)
    item = await access_item(
        session, principal, catalog, request.item_type, request.item_id, action="release.grant"
    )
    try:
        grant = grants.SealedGrant.from_json(sealed)
        header = grants.verify_grant(grant.header, grant.signature, principal.device.signing_key)
    except (envelopes.EnvelopeError, ValueError) as exc:
        raise InvalidInput(f"grant refused: {exc}", field="grant") from exc
    mismatched = [
        name
        for name, ok in (
            ("request_id", header.request_id == request.id),
            ("item", (header.item_type, header.item_id) == (request.item_type, request.item_id)),
            ("container", header.container == item.channel.id),
            (
                "grantor",
                (header.grantor_user, header.grantor_device)
                == (principal.user.id, principal.device.id),
            ),
            ("label", dict(header.label) == request.requested_label),
            ("previous_label", dict(header.previous_label) == request.label),
        )
        if not ok
    ]
    if mismatched:
        raise InvalidInput(
            f"the grant does not match the approved request: {', '.join(mismatched)}", field="grant"
        )
    if set(grant.envelopes) != set(header.devices):
        raise InvalidInput(
            "there must be exactly one envelope per listed device", field="envelopes"
        )
    # Due: the devices the wider label admits that the previous one did not, and that do not
    # hold the item yet. A member who joined after the item was sent is not released anything.
    wider = Label.from_canonical(request.requested_label, catalog)
    now = await eligibility(session, item.channel, wider, catalog)
    before = await eligibility(
        session, item.channel, Label.from_canonical(request.label, catalog), catalog
    )
    due = set(now.eligible) - set(before.eligible) - item.holders
    listed = set(header.devices)
    if listed - due:
        refused = sorted(listed - due)
        audit.record(
            session,
            actor=principal.actor,
            action="release.grant",
            object_type="release_request",
            object_id=request.id,
            decision=audit.DENY,
            reasons=["devices not newly eligible for the approved label"],
            subject_nation=request.originator,
            label=request.requested_label,
            label_banner=request.requested_banner,
            details={"devices": refused},
        )
        raise Refused(
            f"the grant goes beyond the approved label {request.requested_banner}",
            keep_changes=True,
            devices=refused,
        )
    if due - listed:
        raise Conflict(
            f"{len(due - listed)} newly eligible device(s) are missing from the grant",
            devices=sorted(due - listed),
        )
    devices = {device.id: device for device, _ in await roster(session, item.channel)}
    check_sealed_to(devices, header)
    row = await store_grant(
        session,
        principal,
        grant,
        header,
        request_id=request.id,
        item_type=request.item_type,
        item_id=request.item_id,
        channel_id=item.channel.id,
        label=request.requested_label,
        banner=request.requested_banner,
    )
    request.status = GRANTED
    audit.record(
        session,
        actor=principal.actor,
        action="release.grant",
        object_type="release_request",
        object_id=request.id,
        subject_nation=request.originator,
        label=request.requested_label,
        label_banner=request.requested_banner,
        details={
            "item_type": request.item_type,
            "item_id": request.item_id,
            "grant_id": row.id,
            "released_to": [{"device_id": d, **now.eligible[d].entry()} for d in sorted(listed)],
        },
    )
    await session.flush()
    return row


async def access_request_to_grant(
    session: AsyncSession, principal: Principal, catalog: Catalog, request_id: str
) -> ReleaseRequest:
    """A request that any holder of its item may carry out once approved (typically the
    requester, or the item's sender); to others it does not exist."""
    request = await repo.get_request(session, request_id, lock=True)
    if request is None:
        raise NotFound(f"no release request {request_id!r} for you")
    await access_item(
        session, principal, catalog, request.item_type, request.item_id, action="release.grant"
    )
    return request


def check_sealed_to(devices: Mapping[str, Device], header: grants.GrantHeader) -> None:
    """Refuse a grant whose keys digest is not that of its devices' keys on record: it was
    sealed to other keys than those devices hold."""
    recipients = [
        envelopes.Recipient(
            d, keys.DevicePublicKeys(devices[d].signing_key, devices[d].encryption_key)
        )
        for d in header.devices
    ]
    if not hmac.compare_digest(envelopes.device_keys_digest(recipients), header.device_keys_digest):
        raise InvalidInput(
            "the grant was sealed to keys other than these devices' keys", field="grant"
        )


async def store_grant(
    session: AsyncSession,
    principal: Principal,
    grant: grants.SealedGrant,
    header: grants.GrantHeader,
    *,
    request_id: str | None,
    item_type: str,
    item_id: str,
    channel_id: str,
    label: dict[str, Any],
    banner: str,
) -> ItemGrant:
    """Store a checked grant (a release's, or a history grant with no request) and its
    envelopes, one per device."""
    row = ItemGrant(
        id=header.grant_id,
        request_id=request_id,
        item_type=item_type,
        item_id=item_id,
        channel_id=channel_id,
        grantor_device_id=principal.device.id,
        label=label,
        label_banner=banner,
        header=dict(grant.header),
        signature=grant.signature,
    )
    session.add(row)
    await session.flush()
    session.add_all(
        GrantEnvelope(grant_id=row.id, device_id=d, envelope=e) for d, e in grant.envelopes.items()
    )
    return row
