from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import AwareDatetime, Field, StringConstraints

from server.channels.schemas import ChannelName, MemberRead
from server.committees.models import ActionItem, ActionItemUpdate, AgendaItem, Meeting
from server.committees.service import ActionItemView, CommitteeView, MeetingView
from server.directory.models import User
from server.schemas import LabelText, ReadModel, StrictModel

UserRef = Annotated[str, StringConstraints(min_length=1, max_length=64)]
MessageId = Annotated[str, StringConstraints(min_length=1, max_length=64)]


def _member(user: User) -> MemberRead:
    return MemberRead(user_id=user.id, username=user.username, nationality=user.nationality)


class CommitteeCreate(StrictModel):
    name: ChannelName
    ceiling: LabelText
    chair: UserRef = Field(description="id or username; cleared for the ceiling")
    secretary: UserRef = Field(description="id or username; cleared for the ceiling")
    labels: Annotated[list[LabelText], Field(max_length=32)] = Field(default_factory=list)
    default_label: LabelText | None = None


class CommitteeMemberCreate(StrictModel):
    user: UserRef


class CommitteeRead(ReadModel):
    id: str
    name: str
    channel_id: str
    ceiling: str
    ceiling_canonical: dict[str, Any]
    labels: list[str]
    default_label: str
    chair: MemberRead
    secretary: MemberRead
    created_by: str
    created_at: datetime
    members: list[MemberRead]

    @classmethod
    def of(cls, view: CommitteeView) -> CommitteeRead:
        c, ch = view.committee, view.channel
        return cls(
            id=c.id,
            name=ch.name,
            channel_id=ch.id,
            ceiling=ch.ceiling_banner,
            ceiling_canonical=ch.ceiling,
            labels=list(ch.labels),
            default_label=ch.default_label,
            chair=_member(view.chair),
            secretary=_member(view.secretary),
            created_by=c.created_by,
            created_at=c.created_at,
            members=[_member(u) for u in view.members],
        )


class MeetingCreate(StrictModel):
    starts_at: AwareDatetime = Field(description="with a time zone; stored in UTC")
    info_message_id: MessageId = Field(
        description="a meeting message (title, place or link) you sent in the committee"
    )


class MeetingRead(ReadModel):
    id: str
    committee_id: str
    channel_id: str
    starts_at: datetime
    info_message_id: str
    minutes_message_id: str | None
    created_by: str
    created_at: datetime
    cancelled_at: datetime | None

    @classmethod
    def of(cls, meeting: Meeting, channel_id: str, minutes: str | None) -> MeetingRead:
        return cls(
            id=meeting.id,
            committee_id=meeting.committee_id,
            channel_id=channel_id,
            starts_at=meeting.starts_at,
            info_message_id=meeting.info_message_id,
            minutes_message_id=minutes,
            created_by=meeting.created_by,
            created_at=meeting.created_at,
            cancelled_at=meeting.cancelled_at,
        )


class AgendaItemCreate(StrictModel):
    message_id: MessageId


class AgendaItemRead(ReadModel):
    id: str
    meeting_id: str
    position: int = Field(description="0-based, among the items you can see")
    message_id: str
    created_by: str
    created_at: datetime
    documents: list[str] = Field(
        default_factory=list, description="attached document versions that you can open"
    )

    @classmethod
    def of(
        cls, item: AgendaItem, position: int, documents: list[str] | None = None
    ) -> AgendaItemRead:
        return cls(
            id=item.id,
            meeting_id=item.meeting_id,
            position=position,
            message_id=item.message_id,
            created_by=item.created_by,
            created_at=item.created_at,
            documents=documents or [],
        )


class AgendaDocumentCreate(StrictModel):
    version_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]


class AgendaOrderUpdate(StrictModel):
    item_ids: Annotated[list[MessageId], Field(max_length=100)] = Field(
        description="every agenda item you can see, once each, in the new order"
    )


class MinutesUpdate(StrictModel):
    message_id: MessageId


class ActionItemCreate(StrictModel):
    message_id: MessageId


class ActionItemUpdateCreate(StrictModel):
    message_id: MessageId = Field(description="a status update replying to the item's message")


class ActionItemUpdateRead(ReadModel):
    id: str
    message_id: str
    created_by: str
    created_at: datetime

    @classmethod
    def of(cls, update: ActionItemUpdate) -> ActionItemUpdateRead:
        return cls(
            id=update.id,
            message_id=update.message_id,
            created_by=update.created_by,
            created_at=update.created_at,
        )


class ActionItemRead(ReadModel):
    id: str
    meeting_id: str
    channel_id: str
    message_id: str
    created_by: str
    created_at: datetime
    updates: list[ActionItemUpdateRead] = Field(description="oldest first")

    @classmethod
    def of(cls, view: ActionItemView, channel_id: str) -> ActionItemRead:
        item: ActionItem = view.item
        return cls(
            id=item.id,
            meeting_id=item.meeting_id,
            channel_id=channel_id,
            message_id=item.message_id,
            created_by=item.created_by,
            created_at=item.created_at,
            updates=[ActionItemUpdateRead.of(u) for u in view.updates],
        )


class MeetingDetailRead(MeetingRead):
    agenda: list[AgendaItemRead]
    action_items: list[ActionItemRead]

    @classmethod
    def of_view(
        cls, view: MeetingView, documents: dict[str, list[str]] | None = None
    ) -> MeetingDetailRead:
        channel_id = view.context.channel.id
        summary = MeetingRead.of(view.context.meeting, channel_id, view.minutes_message_id)
        attached = documents or {}
        return cls(
            **summary.model_dump(),
            agenda=[
                AgendaItemRead.of(item, n, attached.get(item.id))
                for n, item in enumerate(view.agenda)
            ],
            action_items=[ActionItemRead.of(a, channel_id) for a in view.action_items],
        )
