"""Committees and meetings for programs: ``Committees``, over a ``Messenger``.

    async with await Messenger.open(Keystore(), passphrase="...") as m:
        c = Committees(m)
        meeting = await c.schedule_meeting("nato-liaison", starts_at, "Quarterly review", "Room 4")
        await c.add_agenda_item(meeting["id"], "Logistics", label="NATO SECRET//REL TO USA, GBR")
        agenda = await c.agenda(meeting["id"])
        for item in agenda.items:
            print(item.banner, item.title)

Everything with meaning is a labelled message in the committee's channel, sent with
``Messenger.send`` (so it is sealed only to the devices its label releases it to) and then
linked into the meeting by id. Reading fetches the structure, then this device's deliveries in
the channel, and verifies and decrypts each referenced message exactly as ``Messenger`` does
for a text message; it also checks that each message has the content type its place needs and
that a status update replies to its action item. A referenced message this device was not
given shows as "an item you are not cleared to read" (the server normally leaves such items
out altogether).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from clients.sdk.messaging import MessagingError, Messenger, ReceivedMessage, SentMessage
from protocol import committees as content

NOT_CLEARED = "an item you are not cleared to read"


@dataclass(frozen=True)
class CommitteeEntry:
    """One committee message, verified and decoded. Only when ``verified`` are ``fields``,
    ``sender`` and ``label`` vouched for by the sender's device; otherwise ``fields`` is empty
    and ``problem`` says why."""

    message_id: str
    banner: str
    sender: str | None
    sender_nation: str | None
    sent_at: datetime | None
    fields: Mapping[str, str]
    verified: bool
    problem: str | None

    def get(self, name: str) -> str | None:
        return self.fields.get(name)


@dataclass(frozen=True)
class AgendaEntry:
    item_id: str
    position: int
    entry: CommitteeEntry
    # Attached document versions this device can open (open them with Documents.get).
    documents: tuple[str, ...] = ()

    @property
    def banner(self) -> str:
        return self.entry.banner

    @property
    def title(self) -> str | None:
        return self.entry.get("title")

    @property
    def presenter(self) -> str | None:
        return self.entry.get("presenter")

    @property
    def notes(self) -> str | None:
        return self.entry.get("notes")


@dataclass(frozen=True)
class ActionItemEntry:
    item_id: str
    entry: CommitteeEntry
    updates: tuple[CommitteeEntry, ...] = ()

    @property
    def description(self) -> str | None:
        return self.entry.get("description")

    @property
    def owner(self) -> str | None:
        return self.entry.get("owner")

    @property
    def due(self) -> str | None:
        return self.entry.get("due")

    @property
    def status(self) -> str | None:
        """The latest verified update's status, else the item's own."""
        for update in reversed(self.updates):
            if update.verified and update.get("status"):
                return update.get("status")
        return self.entry.get("status")


@dataclass(frozen=True)
class MeetingAgenda:
    meeting_id: str
    committee_id: str
    channel_id: str
    starts_at: datetime
    cancelled_at: datetime | None
    info: CommitteeEntry
    items: tuple[AgendaEntry, ...] = ()
    minutes: CommitteeEntry | None = None
    action_items: tuple[ActionItemEntry, ...] = field(default=())

    @property
    def title(self) -> str | None:
        return self.info.get("title")

    @property
    def place(self) -> str | None:
        return self.info.get("place")


class Committees:
    """A Messenger's committee work: create, schedule, agenda, minutes, action items."""

    def __init__(self, messenger: Messenger) -> None:
        self.messenger = messenger
        self.client = messenger.client

    # --- committees --------------------------------------------------------------------------

    async def create_committee(
        self,
        name: str,
        ceiling: str,
        *,
        chair: str,
        secretary: str,
        labels: Sequence[str] = (),
        default_label: str | None = None,
    ) -> dict[str, Any]:
        return await self.client.create_committee(
            name,
            ceiling,
            chair=chair,
            secretary=secretary,
            labels=labels,
            default_label=default_label,
        )

    # --- writing -----------------------------------------------------------------------------

    async def _send(
        self,
        channel_id: str,
        content_type: str,
        fields: Mapping[str, str | None],
        *,
        label: str | None,
        reply_to: str | None = None,
    ) -> SentMessage:
        try:
            body = content.encode(content_type, fields).decode("utf-8")
        except content.ContentError as exc:
            raise MessagingError(str(exc)) from exc
        return await self.messenger.send(
            channel_id, body, label=label, reply_to=reply_to, content_type=content_type
        )

    async def schedule_meeting(
        self,
        committee: str,
        starts_at: datetime,
        title: str,
        place: str | None = None,
        *,
        label: str | None = None,
    ) -> dict[str, Any]:
        """Send the meeting's title and place (or link) as a labelled message, then schedule
        the meeting at ``starts_at`` (with a time zone) referring to it."""
        if starts_at.tzinfo is None:
            raise MessagingError("give the meeting's start with a time zone (e.g. UTC)")
        found = await self.client.committee(committee)
        sent = await self._send(
            str(found["channel_id"]),
            content.MEETING,
            {"title": title, "place": place},
            label=label,
        )
        return await self.client.schedule_meeting(
            str(found["id"]), starts_at.isoformat(), sent.message_id
        )

    async def _channel_of(self, meeting: str) -> str:
        return str((await self.client.meeting(meeting))["channel_id"])

    async def add_agenda_item(
        self,
        meeting: str,
        title: str,
        presenter: str | None = None,
        notes: str | None = None,
        *,
        label: str | None = None,
    ) -> dict[str, Any]:
        """Send an agenda item as a labelled message and append it to the meeting's agenda;
        only the members its label releases it to will see it (or that it exists)."""
        sent = await self._send(
            await self._channel_of(meeting),
            content.AGENDA_ITEM,
            {"title": title, "presenter": presenter, "notes": notes},
            label=label,
        )
        return await self.client.add_agenda_item(meeting, sent.message_id)

    async def reorder_agenda(self, meeting: str, item_ids: Sequence[str]) -> dict[str, Any]:
        """Every agenda item you can see, once each, in the new order."""
        return await self.client.reorder_agenda(meeting, item_ids)

    async def remove_agenda_item(self, meeting: str, item_id: str) -> None:
        await self.client.remove_agenda_item(meeting, item_id)

    async def attach_document(self, meeting: str, item_id: str, version_id: str) -> dict[str, Any]:
        """Attach a document version (uploaded with ``Documents.put`` to the committee) to an
        agenda item; its own label still decides who can open it."""
        return await self.client.attach_document(meeting, item_id, version_id)

    async def record_minutes(
        self, meeting: str, text: str, *, label: str | None = None
    ) -> dict[str, Any]:
        sent = await self._send(
            await self._channel_of(meeting), content.MINUTES, {"text": text}, label=label
        )
        return await self.client.record_minutes(meeting, sent.message_id)

    async def add_action_item(
        self,
        meeting: str,
        description: str,
        owner: str,
        due: date | str | None = None,
        *,
        label: str | None = None,
    ) -> dict[str, Any]:
        """An action item (status ``open``) for ``owner`` (a username), due on ``due``."""
        due_text = due.isoformat() if isinstance(due, date) else due
        sent = await self._send(
            await self._channel_of(meeting),
            content.ACTION_ITEM,
            {"description": description, "owner": owner, "due": due_text, "status": "open"},
            label=label,
        )
        return await self.client.add_action_item(meeting, sent.message_id)

    async def update_action_item(
        self, item: str, status: str, note: str = "", *, label: str | None = None
    ) -> dict[str, Any]:
        """Post a status update replying to the action item's message. Its label defaults to
        the action item's own, so a note reaches no one the item did not."""
        found = await self.client.action_item(item)
        channel_id = str(found["channel_id"])
        if label is None:
            message_id = str(found["message_id"])
            opened = await self._open(channel_id, {message_id})
            entry = _entry(opened.get(message_id), message_id, content.ACTION_ITEM, None)
            if not entry.verified:
                raise MessagingError(f"the action item cannot be read here: {entry.problem}")
            label = entry.banner
        sent = await self._send(
            channel_id,
            content.ACTION_ITEM_UPDATE,
            {"status": status, "note": note or None},
            label=label,
            reply_to=str(found["message_id"]),
        )
        return await self.client.update_action_item(item, sent.message_id)

    # --- reading -----------------------------------------------------------------------------

    async def _open(self, channel_id: str, wanted: set[str]) -> dict[str, ReceivedMessage]:
        """This device's deliveries in the channel among ``wanted``, verified and decrypted."""
        found: dict[str, ReceivedMessage] = {}
        after = 0
        while wanted - set(found):
            page = await self.client.channel_messages(channel_id, after=after)
            for item in page["items"]:
                header = (item.get("message") or {}).get("header") or {}
                claimed = header.get("message_id")
                if claimed in wanted and claimed not in found:
                    opened = await self.messenger.open_item(
                        item, content_types=tuple(content.CONTENT_TYPES)
                    )
                    found[claimed] = opened
            after = int(page["cursor"])
            if not page["more"]:
                break
        return found

    async def agenda(self, meeting: str) -> MeetingAgenda:
        """The meeting with its title and place, agenda items, minutes and action items with
        their latest status: each decrypted and verified, with its banner."""
        structure = await self.client.meeting(meeting)
        channel_id = str(structure["channel_id"])
        wanted = {str(structure["info_message_id"])}
        wanted |= {str(i["message_id"]) for i in structure["agenda"]}
        for action in structure["action_items"]:
            wanted.add(str(action["message_id"]))
            wanted |= {str(u["message_id"]) for u in action["updates"]}
        if structure.get("minutes_message_id"):
            wanted.add(str(structure["minutes_message_id"]))
        opened = await self._open(channel_id, wanted)

        def entry(message_id: str, kind: str, reply_to: str | None = None) -> CommitteeEntry:
            return _entry(opened.get(message_id), message_id, kind, reply_to)

        minutes_id = structure.get("minutes_message_id")
        return MeetingAgenda(
            meeting_id=str(structure["id"]),
            committee_id=str(structure["committee_id"]),
            channel_id=channel_id,
            starts_at=datetime.fromisoformat(structure["starts_at"]),
            cancelled_at=(
                datetime.fromisoformat(structure["cancelled_at"])
                if structure.get("cancelled_at")
                else None
            ),
            info=entry(str(structure["info_message_id"]), content.MEETING),
            items=tuple(
                AgendaEntry(
                    str(i["id"]),
                    int(i["position"]),
                    entry(str(i["message_id"]), content.AGENDA_ITEM),
                    tuple(str(v) for v in i.get("documents", [])),
                )
                for i in structure["agenda"]
            ),
            minutes=entry(str(minutes_id), content.MINUTES) if minutes_id else None,
            action_items=tuple(
                ActionItemEntry(
                    str(a["id"]),
                    entry(str(a["message_id"]), content.ACTION_ITEM),
                    tuple(
                        entry(str(u["message_id"]), content.ACTION_ITEM_UPDATE, a["message_id"])
                        for u in a["updates"]
                    ),
                )
                for a in structure["action_items"]
            ),
        )


def _entry(
    message: ReceivedMessage | None, message_id: str, kind: str, reply_to: str | None
) -> CommitteeEntry:
    """A referenced message checked for its place: delivered, verified, of the content type
    ``kind``, replying to ``reply_to`` when given, with a body of the right shape."""
    if message is None:
        return CommitteeEntry(message_id, "(no label)", None, None, None, {}, False, NOT_CLEARED)
    base: dict[str, Any] = {
        "message_id": message_id,
        "banner": message.banner,
        "sender": message.sender,
        "sender_nation": message.sender_nation,
        "sent_at": message.sent_at,
    }
    problem = message.problem
    fields: dict[str, str] = {}
    if message.verified:
        if content.media_type(message.content_type or "") != kind:
            problem = f"the message is of type {message.content_type}, not {kind}"
        elif reply_to is not None and message.reply_to != reply_to:
            problem = "the update does not reply to its action item"
        else:
            try:
                fields = content.decode(kind, (message.text or "").encode("utf-8"))
            except content.ContentError as exc:
                problem = f"the message's content is malformed: {exc}"
    if problem is not None:
        return CommitteeEntry(**base, fields={}, verified=False, problem=problem)
    return CommitteeEntry(**base, fields=fields, verified=True, problem=None)
