"""Foreign disclosure from a program: ask for an item (a message or a document version) to be
released to further nations, decide as a disclosure officer, and carry out an approved release.

    async with await Messenger.open(Keystore(), passphrase="...") as m:
        request = await Releases(m).request("message", message_id, ["FRA"], reason="FRA leads")
        ...  # a disclosure officer of the originator nation approves
        await Releases(m).grant(request["id"])

Carrying out a release (``grant``) needs a device that holds the item's key. The client seals
that key (the message key or the document-version key, never an audience key) to the devices
it has itself found newly eligible under the approved label, from their certificates verified
against the pins, exactly as ``Messenger.send`` chooses an audience (PROTOCOL.md §16).
"""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from clients.sdk._client import ApiError
from clients.sdk.messaging import MessagingError, Messenger, _Unverifiable, _Verified
from protocol import envelopes, grants, keys, stream
from protocol.labels import Label, LabelError
from protocol.policy import Container

MESSAGE = "message"
DOCUMENT_VERSION = "document_version"
ITEM_TYPES = (MESSAGE, DOCUMENT_VERSION)


@dataclass(frozen=True)
class _ProvenKey:
    """The key this device holds to an item, proven the item's by its sender's signature and
    key commitment, with the item's signed header and the audience it came through."""

    header: Mapping[str, Any]
    audience: Mapping[str, Any]
    item_key: bytes


@dataclass(frozen=True)
class _HeldItem:
    """An item this device holds: its key, checked against the sender's signed commitment,
    and the devices its audience already gave it to."""

    item_key: bytes
    holders: frozenset[str]


class Releases:
    def __init__(self, messenger: Messenger) -> None:
        self.m = messenger

    async def request(
        self, item_type: str, item_id: str, add: Sequence[str], reason: str = ""
    ) -> dict[str, Any]:
        """Ask the originator nation to release ``item_id`` to the nations ``add`` too."""
        if item_type not in ITEM_TYPES:
            raise MessagingError(f"an item is a message or a document_version, not {item_type}")
        if not add:
            raise MessagingError("name at least one nation to release to")
        return await self.m.client.request_release(item_type, item_id, list(add), reason)

    async def list(self, status: str | None = None) -> builtins.list[dict[str, Any]]:
        """Your requests and, for a disclosure officer, those about your nation's items."""
        return await self.m.client.releases(status)

    async def approve(self, request_id: str, reason: str = "") -> dict[str, Any]:
        return await self.m.client.decide_release(request_id, approve=True, reason=reason)

    async def refuse(self, request_id: str, reason: str = "") -> dict[str, Any]:
        return await self.m.client.decide_release(request_id, approve=False, reason=reason)

    async def grant(self, request_id: str) -> dict[str, Any]:
        """Carry out an approved request: seal the item's key to the devices its approved
        label newly admits, under a label version signed by this device."""
        request = next((r for r in await self.list() if r["id"] == request_id), None)
        if request is None:
            raise MessagingError(f"no release request {request_id} for you")
        if request["status"] != "approved":
            raise MessagingError(f"release request {request_id} is {request['status']}")
        channel_id = str(request["channel_id"])
        try:
            if request["item_type"] == MESSAGE:
                held = await self._message(channel_id, str(request["item_id"]))
            else:
                held = await self._document(str(request["item_id"]))
            previous = Label.from_canonical(request["label_canonical"], self.m.catalog)
            wider = Label.from_canonical(request["requested_label_canonical"], self.m.catalog)
            grants.check_label_widening(previous, wider, self.m.catalog)
        except (_Unverifiable, LabelError, envelopes.EnvelopeError, stream.DocumentError) as exc:
            raise MessagingError(f"cannot release {request['item_id']}: {exc}") from exc
        info = await self.m.client.channel(channel_id)
        ceiling = Label.from_canonical(info["ceiling_canonical"], self.m.catalog)
        for attempt in (1, 2):
            roster = await self.m.client.roster(channel_id)
            verified, _ = await self.m._check_roster(roster)
            container = Container(channel_id, ceiling, frozenset(str(e["user_id"]) for e in roster))
            before = {d.device_id for d in self._eligible(verified, previous, container)}
            due = [
                d
                for d in self._eligible(verified, wider, container)
                if d.device_id not in before and d.device_id not in held.holders
            ]
            if not due:
                raise MessagingError(
                    f"no device in the channel is newly eligible for {request['requested_label']}"
                )
            try:
                sealed = grants.create_grant(
                    self.m._device_keys,
                    held.item_key,
                    grant_id=str(uuid.uuid4()),
                    request_id=request_id,
                    item_type=str(request["item_type"]),
                    item_id=str(request["item_id"]),
                    container=channel_id,
                    grantor_user=self.m.user_id,
                    grantor_device=self.m.device_id,
                    previous_label=request["label_canonical"],
                    label=request["requested_label_canonical"],
                    recipients=[
                        envelopes.Recipient(d.device_id, d.certificate.device_keys) for d in due
                    ],
                    created_at=datetime.now(UTC),
                )
            except envelopes.EnvelopeError as exc:
                raise MessagingError(f"cannot seal the grant: {exc}") from exc
            try:
                return await self.m.client.grant_release(request_id, sealed.to_json())
            except ApiError as exc:
                if exc.status == 409 and attempt == 1:
                    continue  # a device became eligible since the roster was fetched
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _eligible(
        self, verified: Sequence[_Verified], label: Label, container: Container
    ) -> builtins.list[_Verified]:
        try:
            return self.m._eligible(verified, label, container)
        except MessagingError:
            return []

    async def _sender_key(self, certificate: Any, header: Mapping[str, Any]) -> bytes:
        """The signing key of the item's sender device, from its certificate verified here."""
        body = await self.m._verify_certificate(certificate, datetime.now(UTC))
        if body.device_id != header.get("sender_device") or body.user_id != header.get(
            "sender_user"
        ):
            raise _Unverifiable("the sender's certificate is for another device or user")
        return body.device_keys.signing_key

    async def _item_key(
        self,
        item_header: Mapping[str, Any],
        audience: Mapping[str, Any],
        grant: Mapping[str, Any] | None,
        signing_key: bytes,
        derive: Any,
    ) -> bytes:
        """The item key this device holds: from the grant that released the item to it, or
        derived from the audience key its envelope seals."""
        if grant is not None:
            released = await self.m._open_grant(grant, item_header, item_header["label"])
            return released.item_key
        if audience.get("envelope") is None:
            raise _Unverifiable("this device holds no key for the item")
        audience_key = envelopes.open_audience_envelope(
            self.m._device_keys,
            self.m.device_id,
            audience["header"],
            keys.b64u_decode(audience["signature"]),
            keys.b64u_decode(audience["envelope"]),
            signing_key,
        )
        key: bytes = derive(audience_key, item_header)
        return key

    async def _message_key(self, item: Mapping[str, Any]) -> _ProvenKey:
        """The key of a delivered message (an item of a channel's message pages)."""
        header = item["message"]["header"]
        signing_key = await self._sender_key(item.get("sender_certificate"), header)
        item_key = await self._item_key(
            header, item["audience"], item.get("grant"), signing_key, envelopes.message_key
        )
        # The sender's signature and key commitment prove the key is the message's.
        sealed = envelopes.SealedMessage.from_json(item["message"])
        envelopes.decrypt_with_item_key(sealed, item_key, signing_key)
        return _ProvenKey(header, item["audience"], item_key)

    async def _document_key(self, version_id: str) -> _ProvenKey:
        """The key of a document version, fetched with its header from the server."""
        access = await self.m.client.open_document_version(version_id)
        version = access["version"]
        header = version["header"]
        # The version asked about, under an audience its sender made (as Documents.get checks
        # a download): a genuine other version's key must not be released under this id.
        checked = stream.check_document_header(header)
        if checked.version_id != version_id:
            raise _Unverifiable(f"the server gave version {checked.version_id} for {version_id}")
        audience = envelopes.check_audience_header(access["audience"]["header"])
        if (audience.audience_id, audience.creator_device, audience.container) != (
            checked.audience_id,
            checked.sender_device,
            checked.container,
        ):
            raise _Unverifiable("the version came with an audience its sender did not make")
        signing_key = await self._sender_key(access.get("sender_certificate"), header)
        item_key = await self._item_key(
            header, access["audience"], access.get("grant"), signing_key, stream.document_key
        )
        # The sender's signed trailer and key commitment prove the key is the version's.
        trailer = stream.SealedDocumentTrailer.from_json(version["trailer"])
        stream.DocumentDecryptor(header, trailer, item_key, signing_key)
        return _ProvenKey(header, access["audience"], item_key)

    @staticmethod
    def _held(proven: _ProvenKey) -> _HeldItem:
        audience = envelopes.check_audience_header(proven.audience["header"])
        return _HeldItem(proven.item_key, frozenset(audience.devices))

    async def _message(self, channel_id: str, message_id: str) -> _HeldItem:
        after = 0
        while True:
            page = await self.m.client.channel_messages(channel_id, after=after)
            for item in page["items"]:
                if item["message"]["header"].get("message_id") == message_id:
                    return self._held(await self._message_key(item))
            after = int(page["cursor"])
            if not page["more"]:
                raise MessagingError(f"this device holds no message {message_id}")

    async def _document(self, version_id: str) -> _HeldItem:
        return self._held(await self._document_key(version_id))
