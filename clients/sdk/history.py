"""History grants from a program (PROTOCOL.md §16.7): give the members who joined a channel
after items were sent (or whose clearance was raised) the items their label already admits,
and see what waits for a key.

    async with await Messenger.open(Keystore(), passphrase="...") as m:
        shared = await History(m).share("liaison")       # as a member holding the keys
        waiting = await History(m).waiting("liaison")    # as the newcomer

    History(m).share_on_roster_changes()  # then m.follow(): shares whenever a roster changes

The server lists what it finds due; this client seals each item's own key (never an audience
key) only to the devices it has itself verified (their certificates against the pins) and
decided eligible (``decide``, under the item's label), exactly as ``Messenger.send`` chooses an
audience. The first grant for a device wins: a member's client that comes second is told so
(409) and moves on.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from clients.sdk._client import ApiError
from clients.sdk.messaging import MessagingError, Messenger, _Unverifiable, _Verified
from clients.sdk.releases import ITEM_TYPES, MESSAGE, Releases
from protocol import envelopes, grants, stream
from protocol.labels import Label, LabelError
from protocol.policy import Container


@dataclass(frozen=True)
class Shared:
    """One item this client shared, or tried to: ``devices`` it sealed to, ``created`` False
    when the server already held this grant, and ``problem`` when it was not shared."""

    item_id: str
    seq: int  # 0 for a document version
    label: str
    devices: tuple[str, ...] = ()
    created: bool = False
    problem: str | None = None
    item_type: str = "message"  # or "document_version"


@dataclass(frozen=True)
class Waiting:
    """An item this device's user may read but holds no key to yet: a member's client has not
    shared it so far."""

    item_id: str
    seq: int  # 0 for a document version
    label: str  # as the server claims it: nothing verifies it until the key comes
    sent_at: str
    item_type: str = "message"  # or "document_version"


class History:
    def __init__(self, messenger: Messenger) -> None:
        self.m = messenger

    async def waiting(self, channel: str) -> list[Waiting]:
        """The items of ``channel``'s history window (messages and document versions) that
        wait for a key from a member."""
        found: list[Waiting] = []
        async for page in self._pages(channel):
            found += [
                Waiting(
                    str(w["item_id"]),
                    int(w["seq"]),
                    str(w["label"]),
                    str(w["sent_at"]),
                    str(w["item_type"]),
                )
                for w in page["waiting"]
                if w.get("item_type") in ITEM_TYPES
            ]
        return found

    async def share(self, channel: str) -> list[Shared]:
        """Give every device that the server finds due, and that this client verifies and
        decides eligible too, the past messages and document versions of ``channel`` that
        this device holds."""
        due: list[Mapping[str, Any]] = []
        async for page in self._pages(channel):
            due += [d for d in page["due"] if d.get("item_type") in ITEM_TYPES]
        if not due:
            return []
        info = await self.m.client.channel(channel)
        channel_id = str(info["id"])
        ceiling = Label.from_canonical(info["ceiling_canonical"], self.m.catalog)
        roster = await self.m.client.roster(channel_id)
        verified, _ = await self.m._check_roster(roster)
        container = Container(channel_id, ceiling, frozenset(str(e["user_id"]) for e in roster))
        messages = [d for d in due if d["item_type"] == MESSAGE]
        items = await self._held(
            channel_id,
            {str(d["item_id"]) for d in messages},
            min((int(d["seq"]) for d in messages), default=1),
        )
        return [await self._share_one(channel_id, d, items, verified, container) for d in due]

    def share_on_roster_changes(self) -> None:
        """Share history whenever the Messenger's stream says a channel's roster changed."""
        self.m.history_sharer = self.share

    async def _pages(self, channel: str) -> AsyncIterator[dict[str, Any]]:
        after = 0
        while True:
            page = await self.m.client.history(channel, after=after)
            yield page
            after = int(page["cursor"])
            if not page["more"]:
                return

    async def _held(
        self, channel_id: str, wanted: set[str], first_seq: int
    ) -> dict[str, Mapping[str, Any]]:
        """The delivered items among ``wanted``, by message id, read from ``first_seq`` on."""
        found: dict[str, Mapping[str, Any]] = {}
        after = first_seq - 1
        while wanted - set(found):
            page = await self.m.client.channel_messages(channel_id, after=after)
            for item in page["items"]:
                message_id = item["message"]["header"].get("message_id")
                if message_id in wanted:
                    found[str(message_id)] = item
            after = int(page["cursor"])
            if not page["more"]:
                break
        return found

    async def _share_one(
        self,
        channel_id: str,
        due: Mapping[str, Any],
        items: Mapping[str, Mapping[str, Any]],
        verified: list[_Verified],
        container: Container,
    ) -> Shared:
        item_type = str(due["item_type"])
        item_id, seq, banner = str(due["item_id"]), int(due["seq"]), str(due["label"])

        def failed(problem: str) -> Shared:
            return Shared(item_id, seq, banner, problem=problem, item_type=item_type)

        try:
            if item_type == MESSAGE:
                item = items.get(item_id)
                if item is None:
                    return failed("this device no longer holds it")
                signed_label = item["message"]["header"]["label"]
                item_key = (await Releases(self.m)._message_key(item)).item_key
            else:
                proven = await Releases(self.m)._document_key(item_id)
                signed_label, item_key = dict(proven.header["label"]), proven.item_key
            label = Label.from_canonical(due["label_canonical"], self.m.catalog)
            if dict(due["label_canonical"]) != dict(signed_label):
                # Its label now is one a release widened: only its releasability may differ.
                grants.check_label_widening(signed_label, label, self.m.catalog)
        except (
            _Unverifiable,
            LabelError,
            envelopes.EnvelopeError,
            stream.DocumentError,
            KeyError,
        ) as exc:
            return failed(f"cannot share it: {exc}")
        wanted = {str(d) for d in due["devices"]}
        try:
            eligible = self.m._eligible(verified, label, container)
        except MessagingError:
            eligible = []
        to = [d for d in eligible if d.device_id in wanted]
        if not to:
            return failed("no device due that this client verifies")
        sealed = grants.create_grant(
            self.m._device_keys,
            item_key,
            grant_id=str(uuid.uuid4()),
            request_id=None,
            item_type=item_type,
            item_id=item_id,
            container=channel_id,
            grantor_user=self.m.user_id,
            grantor_device=self.m.device_id,
            previous_label=signed_label,
            label=due["label_canonical"],
            recipients=[envelopes.Recipient(d.device_id, d.certificate.device_keys) for d in to],
            created_at=datetime.now(UTC),
        )
        try:
            answer = await self.m.client.grant_history(channel_id, sealed.to_json())
        except ApiError as exc:
            if exc.status in (403, 409, 422):
                return failed(exc.detail)
            raise
        devices = tuple(answer["devices"])
        return Shared(item_id, seq, banner, devices, bool(answer["created"]), None, item_type)
