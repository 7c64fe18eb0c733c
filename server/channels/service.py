"""Channels: membership, audiences, message submission with releasability enforced, delivery.

Every access to labelled content goes through ``protocol.policy.decide``. The server never
holds a key: it decides which devices are given an envelope, and refuses an audience that
would give one to a device that is not eligible for the message's label.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy.ext.asyncio import AsyncSession

from protocol import envelopes, keys
from protocol.canonical import Encoded
from protocol.catalog import Catalog
from protocol.labels import (
    Clearance,
    Label,
    LabelError,
    ceiling_excess,
    parse_label,
    render_label,
)
from protocol.policy import Container, Decision, Subject, decide
from server.audit import log as audit
from server.audit import repository as audit_repo
from server.audit.refusals import record_refusal
from server.auth.principal import Principal
from server.channels import repository as repo
from server.channels.models import (
    Audience,
    AudienceEnvelope,
    Channel,
    ChannelMember,
    Message,
)
from server.db.base import column_values, detached, utcnow
from server.db.changes import kept
from server.db.engine import serialise, stage
from server.devices.models import DEVICE_ACTIVE, Device
from server.directory.models import User
from server.directory.service import access_user
from server.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    PermissionDenied,
    PreconditionFailed,
    ServiceError,
)
from server.releases import repository as release_repo
from server.releases.models import GrantEnvelope, ItemGrant

MAX_PICKER_LABELS = 32


class Refused(ServiceError):
    """A decision denied the request. The deny event is committed with the refusal."""

    status = 403
    code = "refused"
    title = "Refused by the releasability policy"


class RosterChanged(PreconditionFailed):
    code = "roster-changed"
    title = "The roster changed since the sender fetched it"


class AudienceIncomplete(Conflict):
    code = "audience-incomplete"
    title = "Eligible devices are missing from the audience"


# --- labels and subjects ---------------------------------------------------------------------


def check_label_text(text: str, catalog: Catalog, *, originator: str | None, field: str) -> Label:
    try:
        return parse_label(text, catalog, originator=originator)
    except LabelError as exc:
        raise InvalidInput(f"{field} {text!r}: {exc}", field=field) from exc


@dataclass(frozen=True, slots=True)
class KnownLabel:
    """A label read from its canonical form and checked against a catalog, with its banner:
    what every submit under the same label would work out again."""

    label: Label
    banner: str
    key: str  # its canonical form's JSON with sorted keys: equal keys, equal labels


# Per catalog (catalogs compare by identity and never change; the memo goes with its
# catalog): a label's JSON text -> the label it is, or the clearance. A label is read and
# checked once, not once per message, which was most of the releasability gate's work. Only
# forms that passed are kept; the form is compared as text, so nothing parsed differently
# can share an entry.
_KNOWN: WeakKeyDictionary[Catalog, dict[str, Any]] = WeakKeyDictionary()
_KNOWN_PER_CATALOG = 4096


def _known(catalog: Catalog, key: str) -> tuple[dict[str, Any], Any]:
    memo = _KNOWN.get(catalog)
    if memo is None:
        memo = _KNOWN.setdefault(catalog, {})
    return memo, memo.get(key)


def _remember(memo: dict[str, Any], key: str, value: Any) -> None:
    if len(memo) >= _KNOWN_PER_CATALOG:
        memo.clear()  # a flood of distinct labels costs a re-read, never unbounded memory
    memo[key] = value


def known_label(data: Mapping[str, Any], catalog: Catalog) -> KnownLabel:
    """``Label.from_canonical`` and ``render_label`` of ``data``, once per catalog and form;
    LabelError as they raise it."""
    key = json.dumps(data, sort_keys=True)
    memo, hit = _known(catalog, "label:" + key)
    if hit is None:
        label = Label.from_canonical(data, catalog)
        canonical = json.dumps(label.canonical(), sort_keys=True)
        hit = KnownLabel(label, render_label(label, catalog), canonical)
        _remember(memo, "label:" + key, hit)
    known: KnownLabel = hit
    return known


def _clearance(data: Mapping[str, Any], catalog: Catalog) -> Clearance:
    key = "clearance:" + json.dumps(data, sort_keys=True)
    memo, hit = _known(catalog, key)
    if hit is None:
        hit = Clearance.from_canonical(data, catalog)
        _remember(memo, key, hit)
    clearance: Clearance = hit
    return clearance


def subject_of(user: User, catalog: Catalog) -> Subject:
    return _subject(user.id, user.nationality, user.clearance, catalog)


def _subject(
    user_id: str, nationality: str | None, clearance: dict[str, Any] | None, catalog: Catalog
) -> Subject:
    parsed: Clearance | None = None
    if clearance is not None:
        try:
            parsed = _clearance(clearance, catalog)
        except LabelError:
            parsed = None  # unknown to this catalog: fail closed
    return Subject(user_id=user_id, nationality=nationality, clearance=parsed)


def ceiling_of(channel: Channel, catalog: Catalog) -> Label:
    return known_label(channel.ceiling, catalog).label


async def container_of(session: AsyncSession, channel: Channel, catalog: Catalog) -> Container:
    return Container(
        id=channel.id,
        ceiling=ceiling_of(channel, catalog),
        members=await members_of(session, channel.id),
    )


def _decision_details(decision: Decision) -> dict[str, Any]:
    return {"releasable_to": list(decision.releasable_to), "catalog": decision.catalog_version}


# --- channels and members --------------------------------------------------------------------


async def access_channel(session: AsyncSession, principal: Principal, ref: str) -> Channel:
    """A channel by id or name, for its members only; to anyone else it does not exist."""
    cache = kept(session, "channels", 4096)
    channel: Channel | None = cache.get(ref) if cache is not None else None
    if channel is None:
        channel = await repo.get_channel(session, ref) or await repo.get_channel_by_name(
            session, ref
        )
        # Kept as a copy of its own (a channel's id, name, ceiling and picker never change):
        # not this session's instance, which a rollback of this request would expire under
        # every later request that took it from the cache.
        if channel is not None and cache is not None:
            kept_copy = detached(Channel, column_values(channel))
            cache.put(ref, cache.log.version, frozenset(), kept_copy)
    if channel is None or principal.user.id not in await members_of(session, channel.id):
        raise NotFound(f"no channel {ref!r} of yours", channel=ref)
    return channel


async def do_create_channel(
    session: AsyncSession,
    principal: Principal,
    catalog: Catalog,
    *,
    name: str,
    ceiling: str,
    labels: Sequence[str] = (),
    default_label: str | None = None,
) -> Channel:
    """Create a channel with its ceiling and label picker; the creator is its first member.

    Preconditions: the creator is cleared for the ceiling. Each picker label must fit under
    the ceiling. The picker offers labels to senders; the ceiling is what the server enforces.
    """
    originator = principal.user.nationality
    ceiling_label = check_label_text(ceiling, catalog, originator=originator, field="ceiling")
    picker = list(dict.fromkeys(labels)) or [render_label(ceiling_label, catalog)]
    if len(picker) > MAX_PICKER_LABELS:
        raise InvalidInput(f"a picker holds at most {MAX_PICKER_LABELS} labels", field="labels")
    rendered: list[str] = []
    for text in picker:
        label = check_label_text(text, catalog, originator=originator, field="labels")
        excess = ceiling_excess(label, ceiling_label, catalog)
        if excess:
            raise InvalidInput(
                f"picker label {text!r} exceeds the ceiling: {'; '.join(excess)}", field="labels"
            )
        rendered.append(render_label(label, catalog))
    default = rendered[0]
    if default_label is not None:
        wanted = render_label(
            check_label_text(default_label, catalog, originator=originator, field="default_label"),
            catalog,
        )
        if wanted not in rendered:
            raise InvalidInput("the default label must be one of the picker's labels")
        default = wanted
    decision = decide(subject_of(principal.user, catalog), ceiling_label, None, catalog)
    if not decision.allowed:
        raise PermissionDenied(
            f"you are not cleared for the ceiling {ceiling!r}: {'; '.join(decision.reasons)}",
            reasons=list(decision.reasons),
        )
    await serialise(session, "channel-name", name)
    if await repo.get_channel_by_name(session, name) is not None:
        raise Conflict(f"a channel named {name!r} exists", channel=name)
    channel = Channel(
        name=name,
        ceiling=ceiling_label.canonical(),
        ceiling_banner=render_label(ceiling_label, catalog),
        labels=rendered,
        default_label=default,
        created_by=principal.user.id,
    )
    session.add(channel)
    await session.flush()
    session.add(
        ChannelMember(channel_id=channel.id, user_id=principal.user.id, added_by=principal.user.id)
    )
    audit.record(
        session,
        actor=principal.actor,
        action="channel.create",
        object_type="channel",
        object_id=channel.id,
        label=channel.ceiling,
        label_banner=channel.ceiling_banner,
        details={"name": name, "labels": rendered, "default_label": default},
    )
    await session.flush()
    return channel


async def do_add_member(
    session: AsyncSession,
    principal: Principal,
    catalog: Catalog,
    channel: Channel,
    user: User,
    *,
    by_committee: bool = False,
) -> None:
    """Add ``user``; preconditions: the caller is a member (``access_channel``) and the user is
    cleared for the ceiling (the refusal gives every reason, and is audited).

    A committee's channel is managed through its committee (``by_committee``, once the
    committee has checked the caller's role); directly, it is refused and audited.
    """
    if not by_committee:
        await _check_not_a_committee_channel(
            session, principal, channel, "channel.member_add", user
        )
    await serialise(session, "membership", channel.id, user.id)
    if await repo.get_membership(session, channel.id, user.id) is not None:
        raise Conflict(f"{user.username} is already a member", user=user.username)
    ceiling = ceiling_of(channel, catalog)
    decision = decide(subject_of(user, catalog), ceiling, None, catalog)
    if not user.active:
        decision = Decision(
            False, ("account disabled",), decision.releasable_to, decision.catalog_version
        )
    if not decision.allowed:
        audit.record(
            session,
            actor=principal.actor,
            action="channel.member_add",
            object_type="channel",
            object_id=channel.id,
            decision=audit.DENY,
            reasons=decision.reasons,
            subject_nation=user.nationality,
            label=channel.ceiling,
            label_banner=channel.ceiling_banner,
            details={"user_id": user.id, **_decision_details(decision)},
        )
        raise Refused(
            f"{user.username} cannot join {channel.name}: {'; '.join(decision.reasons)}",
            keep_changes=True,
            reasons=list(decision.reasons),
        )
    session.add(ChannelMember(channel_id=channel.id, user_id=user.id, added_by=principal.user.id))
    audit.record(
        session,
        actor=principal.actor,
        action="channel.member_add",
        object_type="channel",
        object_id=channel.id,
        subject_nation=user.nationality,
        label=channel.ceiling,
        label_banner=channel.ceiling_banner,
        details={"user_id": user.id, **_decision_details(decision)},
    )
    await session.flush()


async def do_remove_member(
    session: AsyncSession,
    principal: Principal,
    channel: Channel,
    user: User,
    *,
    by_committee: bool = False,
) -> None:
    """Remove ``user``. Members remove themselves; the channel's creator removes anyone; a
    committee's channel only through its committee (``by_committee``: roles checked there).

    Audiences that hold the user's devices become unusable for new messages at once: a
    message is accepted only if its audience equals the devices eligible now.
    """
    if not by_committee:
        await _check_not_a_committee_channel(
            session, principal, channel, "channel.member_remove", user
        )
        if user.id != principal.user.id and channel.created_by != principal.user.id:
            raise PermissionDenied("only the channel's creator removes other members")
    await serialise(session, "membership", channel.id, user.id)
    if await repo.get_membership(session, channel.id, user.id) is None:
        raise NotFound(f"{user.username} is not a member", user=user.username)
    await repo.remove_member(session, channel.id, user.id)
    audit.record(
        session,
        actor=principal.actor,
        action="channel.member_remove",
        object_type="channel",
        object_id=channel.id,
        subject_nation=user.nationality,
        details={"user_id": user.id},
    )


async def _check_not_a_committee_channel(
    session: AsyncSession, principal: Principal, channel: Channel, action: str, user: User
) -> None:
    if not await repo.is_committee_channel(session, channel.id):
        return
    reason = "the channel belongs to a committee, whose chair or secretary manages its members"
    audit.record(
        session,
        actor=principal.actor,
        action=action,
        object_type="channel",
        object_id=channel.id,
        decision=audit.DENY,
        reasons=[reason],
        subject_nation=user.nationality,
        details={"user_id": user.id},
    )
    raise PermissionDenied(f"{reason} (attache committee ...)", keep_changes=True)


async def roster(session: AsyncSession, channel: Channel) -> Sequence[tuple[Device, User]]:
    """Members' active devices with their certificates: what a sender verifies and seals to."""
    return await repo.active_member_devices(session, channel.id)


async def roster_tag_of(session: AsyncSession, channel: Channel, catalog: Catalog) -> str:
    """An entity tag for ``channel``'s roster, so that a sender who holds the roster
    revalidates it with no work on either side (``If-None-Match``, ``If-Match``).

    A digest of what the roster is made of: its members, each member's clearance and status,
    their active devices with their keys and certificates, and the catalog's version (its
    nations and groups). So it changes whenever any of these does, and every server process
    gives the same tag for the same roster: behind a load balancer, a roster fetched from one
    process and a submit made through another agree (a tag made of a process's own change-log
    version would have been refused by every other process, 412 after 412). Kept until the
    change log says that something it is made of changed."""
    tags = kept(session, "roster-tags", 4096)
    tag: str | None = tags.get((channel.id, catalog.version)) if tags is not None else None
    if tag is None:
        version = tags.log.version if tags is not None else 0
        members = await members_of(session, channel.id)
        devices = await roster(session, channel)
        tag = _roster_digest(catalog, members, devices)
        if tags is not None:
            depends = _roster_depends(channel.id, members)
            tags.put((channel.id, catalog.version), version, depends, tag)
    return tag


def _roster_digest(
    catalog: Catalog, members: frozenset[str], devices: Sequence[tuple[Device, User]]
) -> str:
    users = {user.id: user for _, user in devices}
    content = {
        "catalog": catalog.version,
        "members": sorted(members),
        "users": {
            user_id: [user.clearance, user.active, user.nationality, user.username]
            for user_id, user in sorted(users.items())
        },
        "devices": [
            [d.id, d.user_id, d.signing_key.hex(), d.encryption_key.hex(), d.certificate]
            for d, _ in sorted(devices, key=lambda pair: pair[0].id)
        ],
    }
    text = json.dumps(content, sort_keys=True, separators=(",", ":"))
    # An entity tag, not a security check: what a sender may seal to is decided at submit.
    return '"' + hashlib.sha256(text.encode()).hexdigest()[:32] + '"'


def _roster_depends(channel_id: str, members: frozenset[str]) -> frozenset[str]:
    """What a channel's roster is made of: its membership and each member (their clearance,
    status and devices)."""
    return frozenset({f"channel:{channel_id}", *(f"user:{u}" for u in members)})


async def members_of(session: AsyncSession, channel_id: str) -> frozenset[str]:
    """The user ids of ``channel_id``'s members, kept until its membership changes."""
    cache = kept(session, "members", 4096)
    found: frozenset[str] | None = cache.get(channel_id) if cache is not None else None
    if found is None:
        version = cache.log.version if cache is not None else 0
        found = await repo.member_ids(session, channel_id)
        if cache is not None:
            cache.put(channel_id, version, frozenset({f"channel:{channel_id}"}), found)
    return found


# --- eligibility -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Who:
    """A member as a decision names them: their user id and nation."""

    user_id: str
    nation: str | None

    def entry(self, decision: Decision | None = None) -> dict[str, Any]:
        entry: dict[str, Any] = {"user_id": self.user_id, "nation": self.nation}
        if decision is not None:
            entry["reasons"] = list(decision.reasons)
        return entry


@dataclass(frozen=True)
class Eligibility:
    eligible: dict[str, Who]  # device id -> its user
    refused: dict[str, tuple[Who, Decision]]  # user id -> user, decision
    # The change log's version before what this was decided on was read: it holds as long as
    # the channel's membership and members are unchanged since (``server.db.changes``).
    version: int = 0
    members: frozenset[str] = frozenset()  # the channel's member user ids

    @cached_property
    def released_entries(self) -> Encoded:
        """The audit details' ``released_to``: each eligible device with its user."""
        return Encoded(
            [{"device_id": d, **self.eligible[d].entry()} for d in sorted(self.eligible)]
        )

    @cached_property
    def refused_entries(self) -> Encoded:
        """The audit details' ``not_released``: each member refused, with the reasons."""
        return Encoded([who.entry(decision) for who, decision in self.refused.values()])


async def eligibility(
    session: AsyncSession, channel: Channel, label: Label, catalog: Catalog, key: str | None = None
) -> Eligibility:
    """The devices eligible for ``label`` in ``channel`` now, and each member refused, with why.

    Decided once per (channel, label, catalog version) and kept until a membership, a member,
    one of their devices or the catalog changes: a submit under an unchanged membership makes
    no decision and reads nothing.
    """
    cache = kept(session, "eligibility", 1024)
    # ``key``, where the caller has it, is the label's canonical JSON with sorted keys.
    kept_as = (channel.id, key or json.dumps(label.canonical(), sort_keys=True), catalog.version)
    hit: Eligibility | None = cache.get(kept_as) if cache is not None else None
    if hit is not None:
        return hit
    version = cache.log.version if cache is not None else 0
    container = await container_of(session, channel, catalog)
    eligible: dict[str, Who] = {}
    refused: dict[str, tuple[Who, Decision]] = {}
    decisions: dict[str, Decision] = {}
    for row in await repo.member_device_facts(session, channel.id):
        who = Who(row.user_id, row.nationality)
        if row.user_id not in decisions:
            subject = _subject(row.user_id, row.nationality, row.clearance, catalog)
            decision = decide(subject, label, container, catalog)
            if decision.allowed and not row.active:
                decision = Decision(
                    False, ("account disabled",), decision.releasable_to, decision.catalog_version
                )
            decisions[row.user_id] = decision
        decision = decisions[row.user_id]
        if decision.allowed and row.certified:
            eligible[row.device_id] = who
        elif not decision.allowed:
            refused[row.user_id] = (who, decision)
    depends = _roster_depends(channel.id, container.members)
    found = Eligibility(eligible, refused, version, container.members)
    if cache is not None:
        cache.put(kept_as, version, depends, found)
    return found


async def audience_of(session: AsyncSession, audience_id: str) -> Audience | None:
    """An audience's row, read once: audiences never change (kept detached, read only)."""
    cache = kept(session, "audiences", 4096)
    found: Audience | None = cache.get(audience_id) if cache is not None else None
    if found is None:
        found = await repo.get_audience(session, audience_id)
        if found is not None and cache is not None:
            cache.put(audience_id, cache.log.version, frozenset(), found)
    return found


async def audience_envelopes(session: AsyncSession, audience_id: str) -> Mapping[str, str]:
    """An audience's envelopes (device id -> base64url), read once: audiences never change."""
    cache = kept(session, "audience-envelopes", 4096)
    found: dict[str, str] | None = cache.get(audience_id) if cache is not None else None
    if found is None:
        found = {
            device_id: keys.b64u_encode(envelope)
            for device_id, envelope in await repo.audience_envelopes(session, audience_id)
        }
        if cache is not None and found:
            cache.put(audience_id, cache.log.version, frozenset(), found)
    return found


# --- audiences -------------------------------------------------------------------------------


async def do_create_audience(
    session: AsyncSession, principal: Principal, channel: Channel, sealed: dict[str, Any]
) -> Audience:
    """Store an audience made by the caller's device.

    Checks: the header is well formed, names this channel and the caller's user and device,
    is signed by the caller's device, lists only active devices of members, binds the keys the
    server knows for them, and carries exactly one envelope per listed device.
    """
    try:
        audience = envelopes.SealedAudience.from_json(sealed)
        header = envelopes.verify_audience(
            audience.header, audience.signature, principal.device.signing_key
        )
    except (envelopes.EnvelopeError, ValueError) as exc:
        raise InvalidInput(f"audience refused: {exc}", field="audience") from exc
    if header.container != channel.id:
        raise InvalidInput("the audience names another container", field="header.container")
    if header.creator_device != principal.device.id or header.creator_user != principal.user.id:
        raise InvalidInput("an audience is made by the submitting device", field="header")
    if set(audience.envelopes) != set(header.devices):
        raise InvalidInput(
            "there must be exactly one envelope per listed device", field="envelopes"
        )
    await serialise(session, "audience", header.audience_id)
    if await repo.get_audience(session, header.audience_id) is not None:
        raise Conflict(f"audience {header.audience_id} exists", audience_id=header.audience_id)
    devices = {device.id: device for device, _ in await roster(session, channel)}
    unknown = sorted(set(header.devices) - set(devices))
    if unknown:
        raise InvalidInput(
            "the audience lists devices that are not active devices of this channel's members",
            field="header.devices",
            devices=unknown,
        )
    recipients = [
        envelopes.Recipient(
            device_id,
            keys.DevicePublicKeys(
                devices[device_id].signing_key, devices[device_id].encryption_key
            ),
        )
        for device_id in header.devices
    ]
    if not hmac.compare_digest(envelopes.device_keys_digest(recipients), header.device_keys_digest):
        raise InvalidInput(
            "the audience was sealed to keys other than these devices' keys",
            field="header.device_keys_digest",
        )
    row = Audience(
        id=header.audience_id,
        channel_id=channel.id,
        creator_device_id=principal.device.id,
        header=dict(audience.header),
        signature=audience.signature,
    )
    session.add(row)
    await session.flush()
    session.add_all(
        AudienceEnvelope(audience_id=row.id, device_id=device_id, envelope=envelope)
        for device_id, envelope in audience.envelopes.items()
    )
    await session.flush()
    return row


# --- messages --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Release:
    """What the releasability gate established for one item: its label, audience, and who is
    eligible now (exactly the audience's devices)."""

    label: Label
    banner: str
    audience: Audience
    now: Eligibility
    sender: Decision

    def details(self) -> dict[str, Any]:
        """For the allow event: the devices released to and the members not, with why (each
        list encoded once per eligibility, which every message under it shares)."""
        return {
            "released_to": self.now.released_entries,
            "not_released": self.now.refused_entries,
            **_decision_details(self.sender),
        }


async def check_release(
    session: AsyncSession,
    principal: Principal,
    catalog: Catalog,
    channel: Channel,
    *,
    label_json: Mapping[str, Any],
    audience_id: str,
    action: str,
    object_type: str,
    object_id: str,
) -> Release:
    """The one releasability gate for content sent into a container (messages, documents).

    The label must parse, be of the sender's nation, fit under the ceiling, and the sender be
    cleared for it and a member; the audience must be one this device made in this container,
    holding exactly the devices eligible now. A device that is not eligible is a refusal,
    audited as a deny naming it (spillage stopped here); eligible devices missing give 409.
    """
    try:
        known = known_label(label_json, catalog)
    except LabelError as exc:
        raise InvalidInput(f"label refused: {exc}", field="header.label") from exc
    label, banner = known.label, known.banner
    if label.originator != principal.user.nationality:
        raise InvalidInput(
            f"the label's originator must be the sender's nation {principal.user.nationality}",
            field="header.label.originator",
        )
    now = await eligibility(session, channel, label, catalog, key=known.key)
    container = Container(id=channel.id, ceiling=ceiling_of(channel, catalog), members=now.members)

    def refuse(reasons: Sequence[str], detail: str, **fields: Any) -> Refused:
        audit.record(
            session,
            actor=principal.actor,
            action=action,
            object_type=object_type,
            object_id=object_id,
            decision=audit.DENY,
            reasons=reasons,
            subject_nation=principal.user.nationality,
            label=label.canonical(),
            label_banner=banner,
            details={"channel_id": channel.id, "audience_id": audience_id, **fields},
        )
        return Refused(detail, keep_changes=True, reasons=list(reasons), **fields)

    sender = decide(subject_of(principal.user, catalog), label, container, catalog)
    if not sender.allowed:
        raise refuse(sender.reasons, f"you may not send {banner} here: {'; '.join(sender.reasons)}")

    audience = await audience_of(session, audience_id)
    if audience is None or audience.channel_id != channel.id:
        raise InvalidInput(f"unknown audience {audience_id}", field="header.audience_id")
    if audience.creator_device_id != principal.device.id:
        # Recipients verify the audience with the sender's own key: a device sends only
        # under audiences it made.
        raise InvalidInput("send under an audience this device made", field="header.audience_id")
    members = frozenset(await audience_envelopes(session, audience.id))
    ineligible = sorted(members - set(now.eligible))
    if ineligible:
        named = [await _why_ineligible(session, d, now, container) for d in ineligible]
        raise refuse(
            sorted({reason for entry in named for reason in entry["reasons"]}),
            f"the audience holds {len(named)} device(s) not eligible for {banner}",
            ineligible=named,
        )
    missing = sorted(set(now.eligible) - members)
    if missing:
        raise AudienceIncomplete(
            f"{len(missing)} eligible device(s) are missing from the audience; make a new one",
            devices=missing,
        )
    return Release(label, banner, audience, now, sender)


@dataclass(frozen=True)
class Submitted:
    message: Message
    created: bool
    released_to: list[str]  # device ids
    # For the push, when created: the audience, the recipients (device id -> user id) and the
    # change log's version their eligibility was decided at.
    audience: Audience | None = None
    recipients: dict[str, str] = field(default_factory=dict)
    version: int = 0


def open_submission(
    principal: Principal, channel: Channel, sealed: dict[str, Any]
) -> tuple[envelopes.SealedMessage, envelopes.MessageHeader]:
    """Check a submitted message's form and its signature by the submitting device (no
    database: done before the message waits for its transaction)."""
    try:
        message, header = envelopes.verify_message_json(sealed, principal.device.signing_key)
    except (envelopes.EnvelopeError, ValueError) as exc:
        raise InvalidInput(f"message refused: {exc}", field="message") from exc
    if header.container != channel.id:
        raise InvalidInput("the message names another container", field="header.container")
    if header.sender_device != principal.device.id or header.sender_user != principal.user.id:
        raise InvalidInput("a message is sent by the submitting device", field="header")
    return message, header


async def submit_message_in(
    session: AsyncSession,
    principal: Principal,
    catalog: Catalog,
    channel: Channel,
    message: envelopes.SealedMessage,
    header: envelopes.MessageHeader,
    existing: Message | None,
    roster_tag: str | None = None,
) -> Submitted:
    """Accept a message whose audience is exactly the devices eligible for its label.

    ``existing`` is the stored message with this id, read after the id was serialised
    (``server.channels.submits``). Idempotent on the message id: the same message submitted
    again returns the stored one, whatever has changed since; another message under a used
    id is 409. Refused (and audited as a deny) when the sender may not send it, when the
    label exceeds the ceiling, or when the audience holds a device that is not eligible; 409
    listing the missing eligible devices, so the sender makes a new audience and retries.
    With ``roster_tag`` (the roster's ETag the sender sealed for), a roster changed since is
    412, before anything is decided: a sender that had not yet seen a change is never taken
    for a spill attempt.

    Stages the message and its audit event in ``session``, so that the messages of a
    batch are written together; raises before adding anything unless its
    refusal keeps its changes (the deny event).
    """
    if existing is not None:
        same = (
            existing.channel_id == channel.id
            and existing.sender_device_id == principal.device.id
            and hmac.compare_digest(existing.signature, message.signature)
            and hmac.compare_digest(existing.body, message.body)
        )
        if not same:
            raise Conflict(
                f"message id {header.message_id} is already used", message_id=header.message_id
            )
        return Submitted(existing, created=False, released_to=[])
    if roster_tag is not None and roster_tag != await roster_tag_of(session, channel, catalog):
        # The sender sealed to a roster that has changed since: nothing it could mean is
        # decided here, so nothing is refused or audited; it fetches the roster and retries.
        raise RosterChanged(
            "the channel's roster changed since you fetched it; fetch it again and re-seal",
            channel=channel.id,
        )

    release = await check_release(
        session,
        principal,
        catalog,
        channel,
        label_json=header.label,
        audience_id=header.audience_id,
        action="message.submit",
        object_type="message",
        object_id=header.message_id,
    )
    label, banner, audience, now = release.label, release.banner, release.audience, release.now

    row = Message(
        id=header.message_id,
        channel_id=channel.id,
        audience_id=audience.id,
        sender_user_id=principal.user.id,
        sender_device_id=principal.device.id,
        label=label.canonical(),
        label_banner=banner,
        header=dict(message.header),
        body=message.body,
        signature=message.signature,
        created_at=utcnow(),
    )
    # Staged, not added: the batch's messages and events go in one INSERT per table, not
    # through the unit of work (server.db.engine.stage).
    stage(session, row)
    released = sorted(now.eligible)
    event = audit.event(
        actor=principal.actor,
        action="message.submit",
        object_type="message",
        object_id=row.id,
        subject_nation=principal.user.nationality,
        label=row.label,
        label_banner=banner,
        details={"channel_id": channel.id, "audience_id": audience.id, **release.details()},
    )
    stage(session, event, key_back=False)
    return Submitted(
        row,
        created=True,
        released_to=released,
        audience=audience,
        recipients={d: now.eligible[d].user_id for d in released},
        version=now.version,
    )


async def _why_ineligible(
    session: AsyncSession, device_id: str, now: Eligibility, container: Container
) -> dict[str, Any]:
    """Name an ineligible device of an audience, its user and the reasons, for the refusal."""
    device = await repo.device(session, device_id)
    user = await access_user(session, device.user_id) if device else None
    reasons: list[str] = []
    if device is None or device.status != DEVICE_ACTIVE:
        reasons.append("device not active")
    if user is not None and user.id in now.refused:
        reasons += now.refused[user.id][1].reasons
    elif user is not None and user.id not in container.members:
        reasons.append("not a member")
    return {
        "device_id": device_id,
        "user_id": user.id if user else None,
        "nation": user.nationality if user else None,
        "reasons": reasons or ["not eligible"],
    }


# --- delivery --------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeliveryItem:
    message: Message
    audience: Audience
    # This device's envelope: in the audience, or, for a device a release admitted later, in
    # the grant (which then carries the message's label now and its grantor's certificate).
    envelope: bytes | None
    sender_certificate: dict[str, Any] | None
    grant: ItemGrant | None = None
    grant_envelope: bytes | None = None
    grantor_certificate: dict[str, Any] | None = None
    label_banner: str = ""


@dataclass
class PageFacts:
    """What deciding and building deliveries reads, for a page of messages and one device, in
    a few queries instead of several per message."""

    envelopes: dict[str, bytes]  # audience id -> this device's envelope
    grants: dict[str, list[ItemGrant]]  # message id -> its grants, oldest first
    granted: dict[str, tuple[ItemGrant, GrantEnvelope]]  # message id -> latest holding grant
    certificates: dict[str, dict[str, Any] | None]  # device id -> certificate
    decisions: dict[tuple[str, str], Decision] = field(default_factory=dict)

    @classmethod
    async def load(
        cls, session: AsyncSession, device_id: str, messages: Sequence[Message]
    ) -> PageFacts:
        ids = [m.id for m in messages]
        envelopes = await repo.envelopes_of_device(
            session, device_id, sorted({m.audience_id for m in messages})
        )
        grants = await release_repo.grants_for_items(session, ids)
        granted = await release_repo.grant_envelopes_for_items(session, ids, device_id)
        devices = {m.sender_device_id for m in messages}
        devices |= {g.grantor_device_id for g, _ in granted.values()}
        certificates = await repo.certificates_of(session, sorted(devices))
        return cls(envelopes, grants, granted, certificates)


async def deliver(
    session: AsyncSession,
    principal: Principal,
    catalog: Catalog,
    message: Message,
    channel: Channel,
    container: Container | None = None,
    facts: PageFacts | None = None,
) -> DeliveryItem | None:
    """The decision made again at delivery: this device gets the message and its own envelope
    only if it is in the audience and its user is eligible now. ``container`` is the channel
    as ``container_of`` gives it, and ``facts`` what ``PageFacts.load`` read for a page that
    holds this message, if the caller already has them. A withholding is recorded and
    audited once per message and device; a delivery is not recorded (the recipients are fixed
    at submit and named by its audit event; a device's progress is its cursor)."""
    facts = facts or await PageFacts.load(session, principal.device.id, [message])
    envelope = facts.envelopes.get(message.audience_id)
    granted = facts.granted.get(message.id)
    if envelope is None and granted is None:
        return None  # never given the key: nothing to withhold, nothing to say
    # The label now: the last released label version, if any release was granted.
    latest = facts.grants.get(message.id, [])[-1:]
    label_json = latest[0].label if latest else message.label
    banner = latest[0].label_banner if latest else message.label_banner
    container = container or await container_of(session, channel, catalog)
    key = (channel.id, json.dumps(label_json, sort_keys=True))
    decision = facts.decisions.get(key)
    if decision is None:
        label = Label.from_canonical(label_json, catalog)
        decision = decide(subject_of(principal.user, catalog), label, container, catalog)
        facts.decisions[key] = decision
    if not decision.allowed:
        # Recorded once per message and device, whoever gets there first (a push and a sync
        # may race): only the first records and audits it.
        if await repo.record_withheld(session, message.seq, principal.device.id):
            audit.record(
                session,
                actor=principal.actor,
                action="message.withhold",
                object_type="message",
                object_id=message.id,
                decision=audit.DENY,
                reasons=decision.reasons,
                subject_nation=principal.user.nationality,
                label=label_json,
                label_banner=banner,
                details={
                    "channel_id": channel.id,
                    "device_id": principal.device.id,
                    **_decision_details(decision),
                },
            )
        return None
    audience = await audience_of(session, message.audience_id)
    assert audience is not None
    grant, grant_envelope, grantor_certificate = None, None, None
    if envelope is None and granted is not None:
        grant, grant_envelope = granted[0], granted[1].envelope
        grantor_certificate = facts.certificates.get(grant.grantor_device_id)
    return DeliveryItem(
        message=message,
        audience=audience,
        envelope=envelope,
        sender_certificate=facts.certificates.get(message.sender_device_id),
        grant=grant,
        grant_envelope=grant_envelope,
        grantor_certificate=grantor_certificate,
        # A device that received the message from its sender is shown the label the sender
        # signed: that is what its client can verify. One admitted by a release is shown the
        # released label, which the grant it holds signs. Both are decided against the label
        # now, which a release only ever widens.
        label_banner=banner if grant is not None else message.label_banner,
    )


async def sync(
    session: AsyncSession,
    principal: Principal,
    catalog: Catalog,
    *,
    after: int,
    limit: int,
    channel: Channel | None = None,
) -> tuple[list[DeliveryItem], int, bool]:
    """What this device missed since ``after``, in order; returns the items, the cursor to
    resume from (the last sequence number examined, delivered or not) and whether more may
    follow.

    The candidates are the messages whose audience holds this device, wherever its user is a
    member now, so that a user who left a channel is refused (and the refusal audited) rather
    than silently skipped.
    """
    messages = await repo.messages_for_device(
        session, principal.device.id, after, limit, channel.id if channel else None
    )
    # Each channel and its membership, the envelopes, grants and certificates are read once
    # per page, not once per message; each (channel, label) is decided once per page.
    facts = await PageFacts.load(session, principal.device.id, messages)
    channels: dict[str, tuple[Channel, Container]] = {}
    items = []
    cursor = after
    for message in messages:
        cursor = message.seq
        if message.channel_id not in channels:
            found = channel or await repo.get_channel(session, message.channel_id)
            assert found is not None
            assert found.id == message.channel_id
            channels[found.id] = (found, await container_of(session, found, catalog))
        where, container = channels[message.channel_id]
        item = await deliver(session, principal, catalog, message, where, container, facts)
        if item is not None:
            items.append(item)
    return items, cursor, len(messages) == limit


# --- what became of a message: its sender's view ---------------------------------------------


@dataclass(frozen=True)
class Recipient:
    """A member as the server's decisions about one message recorded them: released to (with
    the device and the label, and the grant if a release gave it), or not (with the reasons)."""

    user_id: str | None
    username: str | None
    nation: str | None
    at: datetime
    device_id: str | None = None
    label: str | None = None
    grant_id: str | None = None
    reasons: tuple[str, ...] = ()
    shared: bool = False  # given by a history grant (a member who joined later), not a release


@dataclass(frozen=True)
class Recipients:
    message: Message
    channel: Channel
    committee: bool  # the channel is a committee's
    label_banner: str  # the label now: the last release's, else the sender's
    released_to: list[Recipient]
    not_released: list[Recipient]  # members refused at the send, and not released to since
    withheld: list[Recipient]  # devices released to, then refused at delivery


async def access_sent_message(
    session: AsyncSession, principal: Principal, catalog: Catalog, message_id: str
) -> tuple[Message, Channel]:
    """A message the caller sent, in a channel where they may still read it; to anyone else
    it does not exist (and the refusal of one that does is audited, and kept)."""
    message = await repo.get_message(session, message_id)
    if message is None:
        raise NotFound(f"no message {message_id!r} of yours", message=message_id)
    channel = await repo.get_channel(session, message.channel_id)
    assert channel is not None
    label = Label.from_canonical(message.label, catalog)
    if message.sender_user_id != principal.user.id:
        reasons = ["only its sender sees who a message was released to"]
    else:
        container = await container_of(session, channel, catalog)
        decision = decide(subject_of(principal.user, catalog), label, container, catalog)
        reasons = [] if decision.allowed else list(decision.reasons)
    if reasons:
        await record_refusal(
            session,
            actor=principal.actor,
            action="message.recipients",
            object_type="message",
            object_id=message.id,
            reasons=reasons,
            subject_nation=label.originator,
            label=message.label,
            label_banner=message.label_banner,
        )
        raise NotFound(f"no message {message_id!r} of yours", keep_changes=True, message=message_id)
    return message, channel


async def recipients(session: AsyncSession, message: Message, channel: Channel) -> Recipients:
    """Who ``message`` was released to and who not, as the server recorded each decision in
    the audit log: the submit's (the devices sealed to, and every member refused with the
    reasons), each release grant's (the devices it admitted), each history grant's (members
    who joined later, given it under its label) and each withholding at delivery. Nothing is
    decided again: this is the record."""
    found = await release_repo.grants_for(session, message.id)
    grants = {g.request_id: g for g in found if g.request_id is not None}
    shared = {g.id: g for g in found if g.request_id is None}
    events = await audit_repo.events_about(
        session,
        [message.id, *grants],
        ["message.submit", "release.grant", "history.grant", "message.withhold"],
    )
    released: list[Recipient] = []
    refused: dict[str, Recipient] = {}
    withheld: list[Recipient] = []
    for event in events:
        details = event.details or {}
        if event.action == "message.withhold" and event.decision == audit.DENY:
            withheld.append(
                Recipient(
                    user_id=event.actor_user_id,
                    username=None,
                    nation=event.subject_nation,
                    at=event.time,
                    device_id=details.get("device_id"),
                    reasons=tuple(event.reasons),
                )
            )
        if event.decision != audit.ALLOW:
            continue
        if event.action == "message.submit" and event.object_id == message.id:
            for entry in details.get("released_to", []):
                released.append(
                    Recipient(
                        user_id=entry.get("user_id"),
                        username=None,
                        nation=entry.get("nation"),
                        at=event.time,
                        device_id=entry.get("device_id"),
                        label=message.label_banner,
                    )
                )
            for entry in details.get("not_released", []):
                refused[str(entry.get("user_id"))] = Recipient(
                    user_id=entry.get("user_id"),
                    username=None,
                    nation=entry.get("nation"),
                    at=event.time,
                    reasons=tuple(entry.get("reasons", ())),
                )
        elif event.action in ("release.grant", "history.grant"):
            if event.action == "release.grant" and event.object_id in grants:
                grant, entries = grants[event.object_id], details.get("released_to", [])
            elif event.action == "history.grant" and details.get("grant_id") in shared:
                grant, entries = shared[details["grant_id"]], details.get("granted_to", [])
            else:
                continue
            for entry in entries:
                released.append(
                    Recipient(
                        user_id=entry.get("user_id"),
                        username=None,
                        nation=entry.get("nation"),
                        at=event.time,
                        device_id=entry.get("device_id"),
                        label=grant.label_banner,
                        grant_id=grant.id,
                        shared=grant.request_id is None,
                    )
                )
    holders = {r.user_id for r in released}
    not_released = [r for user, r in refused.items() if user not in holders]
    names = await repo.usernames_of(
        session, sorted({str(r.user_id) for r in (*released, *not_released, *withheld)})
    )

    def named(found: list[Recipient]) -> list[Recipient]:
        return [dataclasses.replace(r, username=names.get(str(r.user_id))) for r in found]

    latest = sorted(found, key=lambda g: g.created_at)
    return Recipients(
        message=message,
        channel=channel,
        committee=await repo.is_committee_channel(session, channel.id),
        label_banner=latest[-1].label_banner if latest else message.label_banner,
        released_to=named(released),
        not_released=named(not_released),
        withheld=named(withheld),
    )
