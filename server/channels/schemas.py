from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, cast

import orjson
from pydantic import Field, StringConstraints

from protocol import keys
from server.channels.models import Channel
from server.channels.service import DeliveryItem, Recipient, Recipients
from server.devices.models import Device
from server.directory.models import User
from server.schemas import MAX_B64U_TEXT, B64u, LabelText, ReadModel, StrictModel, parse_body

ChannelName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
MAX_HEADER_FIELDS = 32
Header = Annotated[dict[str, Any], Field(max_length=MAX_HEADER_FIELDS)]


class ChannelCreate(StrictModel):
    name: ChannelName
    ceiling: LabelText
    labels: Annotated[list[LabelText], Field(max_length=32)] = Field(default_factory=list)
    default_label: LabelText | None = None


class MemberRead(ReadModel):
    user_id: str
    username: str
    nationality: str | None


class ChannelRead(ReadModel):
    id: str
    name: str
    ceiling: str
    ceiling_canonical: dict[str, Any]
    labels: list[str]
    default_label: str
    created_by: str
    created_at: datetime
    members: list[MemberRead]

    @classmethod
    def of(cls, channel: Channel, members: list[User]) -> ChannelRead:
        return cls(
            id=channel.id,
            name=channel.name,
            ceiling=channel.ceiling_banner,
            ceiling_canonical=channel.ceiling,
            labels=list(channel.labels),
            default_label=channel.default_label,
            created_by=channel.created_by,
            created_at=channel.created_at,
            members=[
                MemberRead(user_id=u.id, username=u.username, nationality=u.nationality)
                for u in members
            ],
        )


class MemberAdd(StrictModel):
    user: Annotated[str, StringConstraints(min_length=1, max_length=64)]


class RosterDevice(ReadModel):
    device_id: str
    user_id: str
    username: str
    nationality: str | None
    signing_key: str
    encryption_key: str
    certificate: dict[str, Any] | None

    @classmethod
    def of(cls, device: Device, user: User) -> RosterDevice:
        return cls(
            device_id=device.id,
            user_id=user.id,
            username=user.username,
            nationality=user.nationality,
            signing_key=keys.b64u_encode(device.signing_key),
            encryption_key=keys.b64u_encode(device.encryption_key),
            certificate=device.certificate,
        )


class AudienceCreate(StrictModel):
    header: Header
    signature: B64u
    envelopes: Annotated[
        dict[str, Annotated[str, StringConstraints(max_length=2048)]], Field(max_length=1000)
    ]


class AudienceCreated(ReadModel):
    audience_id: str
    devices: list[str]


MAX_SUBMIT_BODY_TEXT = 400_000


class MessageCreate(StrictModel):
    header: Header
    body: Annotated[str, StringConstraints(min_length=1, max_length=MAX_SUBMIT_BODY_TEXT)]
    signature: B64u


def read_message_create(raw: bytes) -> dict[str, Any]:
    """A submit's body as ``MessageCreate(...).model_dump()`` would give it, read once.

    The busiest request's body: parsed by orjson and taken as it is when it is plainly of
    ``MessageCreate``'s form (exactly its three fields, within its bounds, the signature
    base64url, no NUL anywhere) and holds nothing orjson reads differently from the JSON
    reader pydantic uses (a float, which is how orjson reads an integer beyond 64 bits).
    Anything else, valid or not, goes through ``parse_body(MessageCreate)``: the same value,
    or the same 422, as before this path existed (tests/server/test_submit_body.py holds the
    two to each other). Pydantic's validation, its dump and the copy between cost more than
    the rest of reading the request.
    """
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        value = None
    if _plainly_message_create(value):
        return cast(dict[str, Any], value)
    return parse_body(MessageCreate, raw).model_dump()


def _plainly_message_create(value: Any) -> bool:
    if type(value) is not dict or value.keys() != {"header", "body", "signature"}:
        return False
    header, body, signature = value["header"], value["body"], value["signature"]
    if type(header) is not dict or len(header) > MAX_HEADER_FIELDS:
        return False
    if type(body) is not str or not 1 <= len(body) <= MAX_SUBMIT_BODY_TEXT:
        return False
    if type(signature) is not str or not 1 <= len(signature) <= MAX_B64U_TEXT:
        return False
    try:
        keys.b64u_decode(signature)
    except ValueError:
        return False
    return _plain(value)


def _plain(value: Any) -> bool:
    """No NUL in any string or key, and no float, anywhere in ``value``."""
    kind = type(value)
    if kind is str:
        return "\x00" not in value
    if kind is dict:
        return all("\x00" not in k and _plain(v) for k, v in value.items())
    if kind is list:
        return all(_plain(v) for v in value)
    return kind is not float


class MessageAccepted(ReadModel):
    seq: int
    message_id: str
    created: bool
    label: str
    released_to: list[str]


class SealedMessageRead(ReadModel):
    header: dict[str, Any]
    body: str
    signature: str


class AudienceRead(ReadModel):
    header: dict[str, Any]
    signature: str
    envelope: str | None = Field(
        description="this device's envelope, and no other (none when a grant gave the key)"
    )


class GrantRead(ReadModel):
    header: dict[str, Any]
    signature: str
    envelope: str = Field(description="the item key sealed to this device")
    grantor_certificate: dict[str, Any] | None


class DeliveryRead(ReadModel):
    seq: int
    channel_id: str
    label: str
    message: SealedMessageRead
    audience: AudienceRead
    sender_certificate: dict[str, Any] | None
    grant: GrantRead | None = None

    @classmethod
    def of(cls, item: DeliveryItem) -> DeliveryRead:
        m, a = item.message, item.audience
        return cls(
            seq=m.seq,
            channel_id=m.channel_id,
            label=item.label_banner or m.label_banner,
            message=SealedMessageRead(
                header=m.header,
                body=keys.b64u_encode(m.body),
                signature=keys.b64u_encode(m.signature),
            ),
            audience=AudienceRead(
                header=a.header,
                signature=keys.b64u_encode(a.signature),
                envelope=keys.b64u_encode(item.envelope) if item.envelope else None,
            ),
            sender_certificate=item.sender_certificate,
            grant=(
                GrantRead(
                    header=item.grant.header,
                    signature=keys.b64u_encode(item.grant.signature),
                    envelope=keys.b64u_encode(item.grant_envelope or b""),
                    grantor_certificate=item.grantor_certificate,
                )
                if item.grant is not None
                else None
            ),
        )

    @staticmethod
    def pushed(item: DeliveryItem, envelope: str) -> dict[str, Any]:
        """``of(item).model_dump(mode="json")`` for a push (no grant), with ``envelope`` in
        place of the device's: the same keys, in the same order, built without pydantic for
        the frame every submit makes (tests/server/test_delivery.py compares the two)."""
        m, a = item.message, item.audience
        return {
            "seq": m.seq,
            "channel_id": m.channel_id,
            "label": item.label_banner or m.label_banner,
            "message": {
                "header": m.header,
                "body": keys.b64u_encode(m.body),
                "signature": keys.b64u_encode(m.signature),
            },
            "audience": {
                "header": a.header,
                "signature": keys.b64u_encode(a.signature),
                "envelope": envelope,
            },
            "sender_certificate": item.sender_certificate,
            "grant": None,
        }


class SyncRead(ReadModel):
    items: list[DeliveryRead]
    cursor: int = Field(description="pass as `after` to continue")
    more: bool


class SyncHead(ReadModel):
    cursor: int = Field(description="pass as `after` later to get only what is sent from now")


class RecipientRead(ReadModel):
    user_id: str | None
    username: str | None
    nation: str | None = Field(description="the nation the decision was made with")
    device_id: str | None
    label: str | None = Field(description="the label it was released under")
    grant_id: str | None = Field(description="the release grant that gave it; none: the send")
    shared: bool = Field(
        default=False, description="the grant was a history grant to a member who joined later"
    )
    reasons: list[str] = Field(description="why not, as the decision recorded them")
    at: datetime

    @classmethod
    def of(cls, found: Recipient) -> RecipientRead:
        return cls(
            user_id=found.user_id,
            username=found.username,
            nation=found.nation,
            device_id=found.device_id,
            label=found.label,
            grant_id=found.grant_id,
            shared=found.shared,
            reasons=list(found.reasons),
            at=found.at,
        )


class MessageRecipientsRead(ReadModel):
    message_id: str
    seq: int
    channel_id: str
    channel: str = Field(description="the channel's name (a committee's is the committee's)")
    committee: bool
    label: str = Field(description="the label now: the last release's, else the sender's")
    sent_label: str
    sent_at: datetime
    released_to: list[RecipientRead]
    not_released: list[RecipientRead] = Field(
        description="members refused at the send, with the reasons, and not released to since"
    )
    withheld: list[RecipientRead] = Field(
        description="devices released to whose delivery was refused later, with the reasons"
    )

    @classmethod
    def of(cls, found: Recipients) -> MessageRecipientsRead:
        m = found.message
        return cls(
            message_id=m.id,
            seq=m.seq,
            channel_id=found.channel.id,
            channel=found.channel.name,
            committee=found.committee,
            label=found.label_banner,
            sent_label=m.label_banner,
            sent_at=m.created_at,
            released_to=[RecipientRead.of(r) for r in found.released_to],
            not_released=[RecipientRead.of(r) for r in found.not_released],
            withheld=[RecipientRead.of(r) for r in found.withheld],
        )
