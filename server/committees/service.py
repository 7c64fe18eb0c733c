"""Committees: a channel plus roles, meetings, ordered agenda items, minutes and action items.

The server never sees what any of it says. Titles, places, agenda items, minutes and action
items are labelled, encrypted messages in the committee's channel, submitted through the
channel's message path (so the ceiling and releasability are enforced exactly as for any
message); this module links them into structure and order. A link is accepted only for a
message of this committee's channel, sent by the caller, of the content type its role needs,
and not linked anywhere else.

Reads show a caller only the items whose message their device may receive now (its envelope is
in the message's audience and ``decide`` allows): the rest are left out entirely, so that an
item whose label excludes someone does not reveal that it exists. Non-members get 404 for
everything; members who are not the chair or the secretary get 403 (audited) for management.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from protocol import committees as content
from protocol.catalog import Catalog
from protocol.labels import Label, LabelError
from protocol.policy import Decision, decide
from server.audit import log as audit
from server.auth.principal import Principal
from server.channels import repository as channels_repo
from server.channels import service as channels
from server.channels.models import Channel, Message
from server.committees import repository as repo
from server.committees.models import (
    ActionItem,
    ActionItemUpdate,
    AgendaDocument,
    AgendaItem,
    Committee,
    Meeting,
)
from server.db.base import utcnow
from server.directory.models import User
from server.directory.service import access_user
from server.documents import service as documents
from server.errors import Conflict, InvalidInput, NotFound, PermissionDenied

MAX_AGENDA_ITEMS = 100
MAX_ACTION_ITEMS = 200
MAX_ACTION_ITEM_UPDATES = 200
MAX_MEETINGS_LISTED = 500
NOT_A_MANAGER = "not the committee's chair or secretary"


@dataclass(frozen=True)
class CommitteeView:
    committee: Committee
    channel: Channel
    members: list[User]
    chair: User
    secretary: User


@dataclass(frozen=True)
class MeetingContext:
    """A meeting the caller may see, with its committee and the committee's channel."""

    meeting: Meeting
    committee: Committee
    channel: Channel


@dataclass(frozen=True)
class ActionItemView:
    item: ActionItem
    updates: list[ActionItemUpdate]


@dataclass(frozen=True)
class MeetingView:
    """A meeting as one caller's device may see it: only what it may receive."""

    context: MeetingContext
    agenda: list[AgendaItem]
    minutes_message_id: str | None
    action_items: list[ActionItemView]


# --- access ----------------------------------------------------------------------------------


async def access_committee(
    session: AsyncSession, principal: Principal, ref: str
) -> tuple[Committee, Channel]:
    """A committee by id or name, for its members only; to anyone else it does not exist."""
    committee = await repo.get_committee(session, ref)
    channel = (
        await channels_repo.get_channel(session, committee.channel_id)
        if committee is not None
        else await channels_repo.get_channel_by_name(session, ref)
    )
    if committee is None and channel is not None:
        committee = await repo.get_committee_by_channel(session, channel.id)
    if (
        committee is None
        or channel is None
        or await channels_repo.get_membership(session, channel.id, principal.user.id) is None
    ):
        raise NotFound(f"no committee {ref!r} of yours", committee=ref)
    return committee, channel


async def access_meeting(
    session: AsyncSession,
    principal: Principal,
    catalog: Catalog,
    meeting_id: str,
    *,
    for_update: bool = False,
) -> MeetingContext:
    """A meeting of a committee the caller is a member of, whose info message the caller's
    device may receive; to anyone else it does not exist."""
    meeting = await repo.get_meeting(session, meeting_id, for_update=for_update)
    if meeting is not None:
        committee = await repo.get_committee(session, meeting.committee_id)
        assert committee is not None
        channel = await channels_repo.get_channel(session, committee.channel_id)
        assert channel is not None
        member = await channels_repo.get_membership(session, channel.id, principal.user.id)
        if member is not None and await receivable(
            session, principal, catalog, channel, [meeting.info_message_id]
        ):
            return MeetingContext(meeting, committee, channel)
    raise NotFound(f"no meeting {meeting_id!r} of yours", meeting=meeting_id)


async def access_action_item(
    session: AsyncSession, principal: Principal, catalog: Catalog, item_id: str
) -> tuple[ActionItem, MeetingContext]:
    """An action item whose message, and whose meeting, the caller's device may receive."""
    item = await repo.get_action_item(session, item_id)
    if item is not None:
        try:
            context = await access_meeting(session, principal, catalog, item.meeting_id)
        except NotFound:
            pass
        else:
            if await receivable(session, principal, catalog, context.channel, [item.message_id]):
                return item, context
    raise NotFound(f"no action item {item_id!r} of yours", action_item=item_id)


async def receivable(
    session: AsyncSession,
    principal: Principal,
    catalog: Catalog,
    channel: Channel,
    message_ids: Collection[str],
) -> frozenset[str]:
    """Those of ``message_ids`` that the caller's device would be delivered now: its envelope
    is in the message's audience and ``decide`` allows the caller. The same decision as
    ``channels.service.deliver``, without recording a delivery."""
    held = await repo.messages_held_by_device(session, principal.device.id, set(message_ids))
    if not held:
        return frozenset()
    container = await channels.container_of(session, channel, catalog)
    subject = channels.subject_of(principal.user, catalog)
    allowed: set[str] = set()
    for message in held:
        if message.channel_id != channel.id:
            continue
        try:
            label = Label.from_canonical(message.label, catalog)
        except LabelError:
            continue  # a label this catalog no longer knows: fail closed
        if decide(subject, label, container, catalog).allowed:
            allowed.add(message.id)
    return frozenset(allowed)


def _is_manager(committee: Committee, user: User) -> bool:
    return user.id in (committee.chair_id, committee.secretary_id)


def check_manager(
    session: AsyncSession,
    principal: Principal,
    committee: Committee,
    *,
    action: str,
    object_type: str,
    object_id: str,
    details: dict[str, Any] | None = None,
) -> None:
    """Only the chair and the secretary manage a committee; a refusal is audited (and the
    deny event committed with it)."""
    if _is_manager(committee, principal.user):
        return
    audit.record(
        session,
        actor=principal.actor,
        action=action,
        object_type=object_type,
        object_id=object_id,
        decision=audit.DENY,
        reasons=[NOT_A_MANAGER],
        subject_nation=principal.user.nationality,
        details={"committee_id": committee.id, **(details or {})},
    )
    raise PermissionDenied(
        f"only the committee's chair or secretary may do this ({action})",
        keep_changes=True,
        reasons=[NOT_A_MANAGER],
    )


def check_open(meeting: Meeting) -> None:
    if meeting.cancelled_at is not None:
        raise Conflict("the meeting is cancelled", meeting=meeting.id)


async def check_linkable(
    session: AsyncSession,
    principal: Principal,
    channel: Channel,
    message_id: str,
    content_type: str,
    *,
    field: str = "message_id",
) -> Message:
    """The message ``message_id``, if it may be linked into this committee's structure: it is
    in the committee's channel, the caller sent it, it has ``content_type``, and nothing links
    it yet. A missing message, another channel's and another sender's look the same."""
    message = await channels_repo.get_message(session, message_id)
    if (
        message is None
        or message.channel_id != channel.id
        or message.sender_user_id != principal.user.id
    ):
        raise InvalidInput(f"{field} must name a message you sent in this committee", field=field)
    sent_as = content.media_type(str(message.header.get("content_type", "")))
    if sent_as != content_type:
        raise InvalidInput(
            f"{field} names a message of type {sent_as}, not {content_type}", field=field
        )
    if await repo.is_linked(session, message.id):
        raise Conflict(f"message {message.id} is already linked", message_id=message.id)
    return message


def _record(
    session: AsyncSession,
    principal: Principal,
    action: str,
    *,
    object_type: str,
    object_id: str,
    message: Message | None = None,
    details: dict[str, Any],
) -> None:
    audit.record(
        session,
        actor=principal.actor,
        action=action,
        object_type=object_type,
        object_id=object_id,
        subject_nation=principal.user.nationality,
        label=message.label if message else None,
        label_banner=message.label_banner if message else None,
        details=details,
    )


# --- committees and members ------------------------------------------------------------------


async def committee_view(
    session: AsyncSession, committee: Committee, channel: Channel
) -> CommitteeView:
    members = list(await channels_repo.members(session, channel.id))
    by_id = {m.id: m for m in members}
    chair = by_id.get(committee.chair_id) or await access_user(session, committee.chair_id)
    secretary = by_id.get(committee.secretary_id) or await access_user(
        session, committee.secretary_id
    )
    return CommitteeView(committee, channel, members, chair, secretary)


async def committees_of(session: AsyncSession, principal: Principal) -> list[CommitteeView]:
    return [
        await committee_view(session, committee, channel)
        for committee, channel in await repo.committees_of(session, principal.user.id)
    ]


def _ceiling_decision(user: User, ceiling: Label, catalog: Catalog) -> Decision:
    decision = decide(channels.subject_of(user, catalog), ceiling, None, catalog)
    if decision.allowed and not user.active:
        return Decision(
            False, ("account disabled",), decision.releasable_to, decision.catalog_version
        )
    return decision


async def do_create_committee(
    session: AsyncSession,
    principal: Principal,
    catalog: Catalog,
    *,
    name: str,
    ceiling: str,
    chair: User,
    secretary: User,
    labels: Sequence[str] = (),
    default_label: str | None = None,
) -> Committee:
    """Create a committee and its channel; the creator, the chair and the secretary are its
    first members.

    Preconditions: the creator, the chair and the secretary are cleared for the ceiling. A
    chair or secretary who is not is refused before anything is made (a deny event is kept).
    """
    ceiling_label = channels.check_label_text(
        ceiling, catalog, originator=principal.user.nationality, field="ceiling"
    )
    for role, user in (("chair", chair), ("secretary", secretary)):
        decision = _ceiling_decision(user, ceiling_label, catalog)
        if not decision.allowed:
            audit.record(
                session,
                actor=principal.actor,
                action="committee.create",
                object_type="committee",
                object_id=name,
                decision=audit.DENY,
                reasons=decision.reasons,
                subject_nation=user.nationality,
                label=ceiling_label.canonical(),
                details={"name": name, "role": role, "user_id": user.id},
            )
            raise channels.Refused(
                f"{user.username} cannot be {role} of {name}: {'; '.join(decision.reasons)}",
                keep_changes=True,
                reasons=list(decision.reasons),
            )
    channel = await channels.do_create_channel(
        session,
        principal,
        catalog,
        name=name,
        ceiling=ceiling,
        labels=labels,
        default_label=default_label,
    )
    committee = Committee(
        channel_id=channel.id,
        chair_id=chair.id,
        secretary_id=secretary.id,
        created_by=principal.user.id,
    )
    session.add(committee)
    await session.flush()
    for user in dict.fromkeys((chair, secretary)):
        if user.id != principal.user.id:
            await channels.do_add_member(
                session, principal, catalog, channel, user, by_committee=True
            )
    audit.record(
        session,
        actor=principal.actor,
        action="committee.create",
        object_type="committee",
        object_id=committee.id,
        subject_nation=principal.user.nationality,
        label=channel.ceiling,
        label_banner=channel.ceiling_banner,
        details={
            "name": name,
            "channel_id": channel.id,
            "chair_id": chair.id,
            "secretary_id": secretary.id,
        },
    )
    await session.flush()
    return committee


async def do_add_member(
    session: AsyncSession,
    principal: Principal,
    catalog: Catalog,
    committee: Committee,
    channel: Channel,
    user: User,
) -> None:
    """Add ``user`` to the committee. Preconditions: the caller is its chair or secretary and
    the user is cleared for the ceiling (``channels.do_add_member`` decides and audits
    ``channel.member_add``; this audits ``committee.member_add``, either way)."""
    details = {"committee_id": committee.id, "user_id": user.id}
    check_manager(
        session,
        principal,
        committee,
        action="committee.member_add",
        object_type="committee",
        object_id=committee.id,
        details={"user_id": user.id},
    )
    try:
        await channels.do_add_member(session, principal, catalog, channel, user, by_committee=True)
    except channels.Refused as exc:
        audit.record(
            session,
            actor=principal.actor,
            action="committee.member_add",
            object_type="committee",
            object_id=committee.id,
            decision=audit.DENY,
            reasons=exc.fields.get("reasons", []),
            subject_nation=user.nationality,
            label=channel.ceiling,
            label_banner=channel.ceiling_banner,
            details=details,
        )
        raise
    audit.record(
        session,
        actor=principal.actor,
        action="committee.member_add",
        object_type="committee",
        object_id=committee.id,
        subject_nation=user.nationality,
        label=channel.ceiling,
        label_banner=channel.ceiling_banner,
        details=details,
    )


async def do_remove_member(
    session: AsyncSession,
    principal: Principal,
    committee: Committee,
    channel: Channel,
    user: User,
) -> None:
    """Remove ``user``. Members remove themselves; the chair or the secretary removes anyone
    but the chair and the secretary, who stay members while they hold the role."""
    if user.id != principal.user.id:
        check_manager(
            session,
            principal,
            committee,
            action="committee.member_remove",
            object_type="committee",
            object_id=committee.id,
            details={"user_id": user.id},
        )
    if _is_manager(committee, user):
        raise Conflict(
            f"{user.username} is the committee's chair or secretary and stays a member",
            user=user.username,
        )
    await channels.do_remove_member(session, principal, channel, user, by_committee=True)
    audit.record(
        session,
        actor=principal.actor,
        action="committee.member_remove",
        object_type="committee",
        object_id=committee.id,
        subject_nation=user.nationality,
        details={"committee_id": committee.id, "user_id": user.id},
    )


# --- meetings --------------------------------------------------------------------------------


async def meetings_of(
    session: AsyncSession,
    principal: Principal,
    catalog: Catalog,
    channel: Channel,
    committee: Committee,
    *,
    since: datetime | None,
    limit: int,
) -> list[Meeting]:
    """The committee's meetings whose info message this device may receive, by start time."""
    found = await repo.meetings_of(session, committee.id, since=since, limit=limit)
    visible = await receivable(
        session, principal, catalog, channel, [m.info_message_id for m in found]
    )
    return [m for m in found if m.info_message_id in visible]


async def do_schedule_meeting(
    session: AsyncSession,
    principal: Principal,
    committee: Committee,
    channel: Channel,
    *,
    starts_at: datetime,
    info_message_id: str,
) -> Meeting:
    """Schedule a meeting whose title and place are in ``info_message_id`` (a meeting message
    the caller sent in the committee's channel). Preconditions: chair or secretary."""
    check_manager(
        session,
        principal,
        committee,
        action="meeting.schedule",
        object_type="committee",
        object_id=committee.id,
    )
    message = await check_linkable(
        session, principal, channel, info_message_id, content.MEETING, field="info_message_id"
    )
    meeting = Meeting(
        committee_id=committee.id,
        starts_at=starts_at,
        info_message_id=message.id,
        created_by=principal.user.id,
    )
    session.add(meeting)
    await session.flush()
    _record(
        session,
        principal,
        "meeting.schedule",
        object_type="meeting",
        object_id=meeting.id,
        message=message,
        details={
            "committee_id": committee.id,
            "starts_at": starts_at.isoformat(),
            "message_id": message.id,
        },
    )
    return meeting


async def do_cancel_meeting(
    session: AsyncSession, principal: Principal, context: MeetingContext
) -> Meeting:
    """Cancel a meeting that is not cancelled yet. Preconditions: chair or secretary."""
    meeting = context.meeting
    check_manager(
        session,
        principal,
        context.committee,
        action="meeting.cancel",
        object_type="meeting",
        object_id=meeting.id,
    )
    check_open(meeting)
    meeting.cancelled_at = utcnow()
    await session.flush()
    _record(
        session,
        principal,
        "meeting.cancel",
        object_type="meeting",
        object_id=meeting.id,
        details={"committee_id": context.committee.id},
    )
    return meeting


async def meeting_view(
    session: AsyncSession, principal: Principal, catalog: Catalog, context: MeetingContext
) -> MeetingView:
    """The meeting's structure, keeping only what this device may receive."""
    meeting = context.meeting
    agenda = list(await repo.agenda_items(session, meeting.id))
    actions = list(await repo.action_items(session, meeting.id))
    updates = list(await repo.updates_of(session, [a.id for a in actions]))
    wanted = [i.message_id for i in agenda] + [a.message_id for a in actions]
    wanted += [u.message_id for u in updates]
    if meeting.minutes_message_id is not None:
        wanted.append(meeting.minutes_message_id)
    visible = await receivable(session, principal, catalog, context.channel, wanted)
    by_item: dict[str, list[ActionItemUpdate]] = {}
    for u in updates:
        if u.message_id in visible:
            by_item.setdefault(u.action_item_id, []).append(u)
    return MeetingView(
        context=context,
        agenda=[i for i in agenda if i.message_id in visible],
        minutes_message_id=(
            meeting.minutes_message_id if meeting.minutes_message_id in visible else None
        ),
        action_items=[
            ActionItemView(a, by_item.get(a.id, [])) for a in actions if a.message_id in visible
        ],
    )


# --- agenda ----------------------------------------------------------------------------------


async def do_add_agenda_item(
    session: AsyncSession, principal: Principal, context: MeetingContext, *, message_id: str
) -> AgendaItem:
    """Append an agenda item (an agenda-item message the caller sent in the committee's
    channel). Preconditions: chair or secretary; the meeting is not cancelled."""
    meeting = context.meeting
    check_manager(
        session,
        principal,
        context.committee,
        action="agenda.add",
        object_type="meeting",
        object_id=meeting.id,
    )
    check_open(meeting)
    message = await check_linkable(
        session, principal, context.channel, message_id, content.AGENDA_ITEM
    )
    items = await repo.agenda_items(session, meeting.id)
    if len(items) >= MAX_AGENDA_ITEMS:
        raise Conflict(f"a meeting has at most {MAX_AGENDA_ITEMS} agenda items")
    item = AgendaItem(
        meeting_id=meeting.id,
        position=len(items),
        message_id=message.id,
        created_by=principal.user.id,
    )
    session.add(item)
    await session.flush()
    _record(
        session,
        principal,
        "agenda.add",
        object_type="agenda_item",
        object_id=item.id,
        message=message,
        details={
            "committee_id": context.committee.id,
            "meeting_id": meeting.id,
            "message_id": message.id,
            "position": item.position,
        },
    )
    return item


async def do_reorder_agenda(
    session: AsyncSession,
    principal: Principal,
    catalog: Catalog,
    context: MeetingContext,
    item_ids: Sequence[str],
) -> None:
    """Put the agenda items the caller can see in the order of ``item_ids``, which must be a
    permutation of exactly those items. Items the caller cannot see keep their places, so
    reordering reveals nothing about them. Preconditions: chair or secretary; not cancelled."""
    meeting = context.meeting
    check_manager(
        session,
        principal,
        context.committee,
        action="agenda.reorder",
        object_type="meeting",
        object_id=meeting.id,
    )
    check_open(meeting)
    items = list(await repo.agenda_items(session, meeting.id))
    visible_ids = await receivable(
        session, principal, catalog, context.channel, [i.message_id for i in items]
    )
    visible = [i for i in items if i.message_id in visible_ids]
    by_id = {i.id: i for i in visible}
    if len(item_ids) != len(visible) or set(item_ids) != set(by_id):
        raise InvalidInput(
            "give every agenda item of the meeting exactly once, in the new order",
            field="item_ids",
            expected=len(visible),
        )
    before = [i.id for i in visible]
    reordered = iter(by_id[i] for i in item_ids)
    order = [next(reordered) if i.message_id in visible_ids else i for i in items]
    await repo.renumber(session, order)
    _record(
        session,
        principal,
        "agenda.reorder",
        object_type="meeting",
        object_id=meeting.id,
        details={
            "committee_id": context.committee.id,
            "old_order": before,
            "new_order": list(item_ids),
        },
    )


async def do_remove_agenda_item(
    session: AsyncSession,
    principal: Principal,
    catalog: Catalog,
    context: MeetingContext,
    item_id: str,
) -> None:
    """Remove an agenda item the caller can see; later items move up. The message stays in the
    channel. Preconditions: chair or secretary; not cancelled."""
    meeting = context.meeting
    check_manager(
        session,
        principal,
        context.committee,
        action="agenda.remove",
        object_type="meeting",
        object_id=meeting.id,
        details={"item_id": item_id},
    )
    check_open(meeting)
    items = list(await repo.agenda_items(session, meeting.id))
    found = next((i for i in items if i.id == item_id), None)
    if found is None or not await receivable(
        session, principal, catalog, context.channel, [found.message_id]
    ):
        raise NotFound(f"no agenda item {item_id!r} in this meeting", item=item_id)
    await session.delete(found)
    await session.flush()
    await repo.renumber(session, [i for i in items if i.id != item_id])
    _record(
        session,
        principal,
        "agenda.remove",
        object_type="agenda_item",
        object_id=item_id,
        details={
            "committee_id": context.committee.id,
            "meeting_id": meeting.id,
            "message_id": found.message_id,
            "position": found.position,
        },
    )


# --- minutes and action items ----------------------------------------------------------------


async def do_record_minutes(
    session: AsyncSession, principal: Principal, context: MeetingContext, *, message_id: str
) -> Meeting:
    """Link the meeting's minutes (a minutes message the caller sent in the committee's
    channel), replacing any earlier minutes, which stay in the channel. Preconditions: chair or
    secretary; not cancelled."""
    meeting = context.meeting
    check_manager(
        session,
        principal,
        context.committee,
        action="minutes.record",
        object_type="meeting",
        object_id=meeting.id,
    )
    check_open(meeting)
    message = await check_linkable(session, principal, context.channel, message_id, content.MINUTES)
    previous = meeting.minutes_message_id
    meeting.minutes_message_id = message.id
    await session.flush()
    _record(
        session,
        principal,
        "minutes.record",
        object_type="meeting",
        object_id=meeting.id,
        message=message,
        details={
            "committee_id": context.committee.id,
            "message_id": message.id,
            "previous_message_id": previous,
        },
    )
    return meeting


async def do_add_action_item(
    session: AsyncSession, principal: Principal, context: MeetingContext, *, message_id: str
) -> ActionItem:
    """Link an action item (an action-item message the caller sent in the committee's
    channel). Preconditions: chair or secretary; not cancelled."""
    meeting = context.meeting
    check_manager(
        session,
        principal,
        context.committee,
        action="action_item.add",
        object_type="meeting",
        object_id=meeting.id,
    )
    check_open(meeting)
    message = await check_linkable(
        session, principal, context.channel, message_id, content.ACTION_ITEM
    )
    if await repo.count_action_items(session, meeting.id) >= MAX_ACTION_ITEMS:
        raise Conflict(f"a meeting has at most {MAX_ACTION_ITEMS} action items")
    item = ActionItem(meeting_id=meeting.id, message_id=message.id, created_by=principal.user.id)
    session.add(item)
    await session.flush()
    _record(
        session,
        principal,
        "action_item.add",
        object_type="action_item",
        object_id=item.id,
        message=message,
        details={
            "committee_id": context.committee.id,
            "meeting_id": meeting.id,
            "message_id": message.id,
        },
    )
    return item


async def do_update_action_item(
    session: AsyncSession,
    principal: Principal,
    item: ActionItem,
    context: MeetingContext,
    *,
    message_id: str,
) -> ActionItemUpdate:
    """Link a status update: an action-item-update message the caller sent in the committee's
    channel, replying to the item's message. Any member who can see the item may post one
    (the server cannot read who owns it); clients show who posted each."""
    message = await check_linkable(
        session, principal, context.channel, message_id, content.ACTION_ITEM_UPDATE
    )
    if message.header.get("reply_to") != item.message_id:
        raise InvalidInput(
            "a status update must reply to the action item's message", field="message_id"
        )
    if await repo.count_updates(session, item.id) >= MAX_ACTION_ITEM_UPDATES:
        raise Conflict(f"an action item has at most {MAX_ACTION_ITEM_UPDATES} updates")
    update = ActionItemUpdate(
        action_item_id=item.id, message_id=message.id, created_by=principal.user.id
    )
    session.add(update)
    await session.flush()
    _record(
        session,
        principal,
        "action_item.update",
        object_type="action_item",
        object_id=item.id,
        message=message,
        details={
            "committee_id": context.committee.id,
            "meeting_id": context.meeting.id,
            "message_id": message.id,
        },
    )
    return update


async def action_item_view(
    session: AsyncSession,
    principal: Principal,
    catalog: Catalog,
    item: ActionItem,
    context: MeetingContext,
) -> ActionItemView:
    updates = list(await repo.updates_of(session, [item.id]))
    visible = await receivable(
        session, principal, catalog, context.channel, [u.message_id for u in updates]
    )
    return ActionItemView(item, [u for u in updates if u.message_id in visible])


# --- agenda documents ------------------------------------------------------------------------


async def _openable_versions(
    session: AsyncSession, principal: Principal, catalog: Catalog, channel: Channel
) -> set[str]:
    """The document versions in the committee's channel this device could open now (the
    documents service's own rule: complete, key held, allowed by the label now)."""
    return {v.id for v in await documents.list_versions(session, principal, catalog, channel)}


async def do_attach_document(
    session: AsyncSession,
    principal: Principal,
    catalog: Catalog,
    context: MeetingContext,
    item_id: str,
    version_id: str,
) -> AgendaDocument:
    """Attach a document version of this committee to an agenda item. Preconditions: chair or
    secretary; the meeting is open; the caller can see the item and open the version. The
    version's own label decides who can open it; an agenda item never widens it."""
    meeting = context.meeting
    check_manager(
        session,
        principal,
        context.committee,
        action="agenda.attach",
        object_type="meeting",
        object_id=meeting.id,
        details={"agenda_item_id": item_id, "version_id": version_id},
    )
    check_open(meeting)
    view = await meeting_view(session, principal, catalog, context)
    if item_id not in {i.id for i in view.agenda}:
        raise NotFound(f"no agenda item {item_id!r} in this meeting for you")
    if version_id not in await _openable_versions(session, principal, catalog, context.channel):
        raise InvalidInput(
            "version_id must name a document version of this committee that you can open",
            field="version_id",
        )
    if await session.get(AgendaDocument, (item_id, version_id)) is not None:
        raise Conflict("this version is already attached to this item")
    attached = AgendaDocument(
        agenda_item_id=item_id, version_id=version_id, attached_by=principal.user.id
    )
    session.add(attached)
    await session.flush()
    audit.record(
        session,
        actor=principal.actor,
        action="agenda.attach",
        object_type="agenda_item",
        object_id=item_id,
        subject_nation=principal.user.nationality,
        details={
            "committee_id": context.committee.id,
            "meeting_id": meeting.id,
            "version_id": version_id,
        },
    )
    return attached


async def agenda_documents(
    session: AsyncSession,
    principal: Principal,
    catalog: Catalog,
    context: MeetingContext,
    item_ids: Collection[str],
) -> dict[str, list[str]]:
    """For each visible agenda item, the attached versions this device can open now; the
    others are not listed (their existence is not released to it either)."""
    openable = await _openable_versions(session, principal, catalog, context.channel)
    found: dict[str, list[str]] = {item: [] for item in item_ids}
    for row in await repo.agenda_documents(session, list(item_ids)):
        if row.version_id in openable:
            found[row.agenda_item_id].append(row.version_id)
    return found
