"""Audiences and messages: round trips, structure checks, and every tamper case.

Known-answer vectors are in test_protocol_vectors.py.
"""

from __future__ import annotations

import copy
import json
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import pytest

from protocol import envelopes
from protocol.catalog import load_default_catalog
from protocol.envelopes import (
    ENVELOPE_SIZE,
    MAX_AUDIENCE_DEVICES,
    MAX_MESSAGE_PLAINTEXT,
    MESSAGE_BODY_OVERHEAD,
    EnvelopeError,
    Recipient,
    SealedAudience,
    SealedMessage,
    check_audience_header,
    check_message_header,
    create_audience,
    decrypt_message,
    decrypt_with_item_key,
    device_keys_digest,
    encrypt_message,
    message_header_digest,
    message_key,
    open_audience_envelope,
    verify_audience,
    verify_message,
)
from protocol.keys import DeviceKeys, b64u_encode
from protocol.labels import parse_label

CATALOG = load_default_catalog()
LABEL = parse_label("NATO SECRET//REL TO USA, GBR", CATALOG, originator="GBR")
CONTAINER = "6f1c9e52-3b7a-4d1e-9a0f-2c4b8d6e0a11"
CREATED = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
PLAINTEXT = b"Meeting moved to 14:00, room 2."


@dataclass(frozen=True)
class Device:
    user_id: str
    device_id: str
    keys: DeviceKeys

    def recipient(self) -> Recipient:
        return Recipient(self.device_id, self.keys.public())

    @property
    def signing_key(self) -> bytes:
        return self.keys.public().signing_key


def new_device(user_id: str | None = None) -> Device:
    return Device(user_id or str(uuid.uuid4()), str(uuid.uuid4()), DeviceKeys.generate())


@dataclass(frozen=True)
class World:
    sender: Device
    alice: Device
    bob: Device
    outsider: Device
    audience: SealedAudience
    audience_key: bytes

    @property
    def members(self) -> list[Device]:
        return [self.sender, self.alice, self.bob]

    def send(self, plaintext: bytes = PLAINTEXT, **fields: Any) -> SealedMessage:
        defaults: dict[str, Any] = {
            "message_id": str(uuid.uuid4()),
            "container": CONTAINER,
            "sender_user": self.sender.user_id,
            "sender_device": self.sender.device_id,
            "audience_id": self.audience.header["audience_id"],
            "sent_at": CREATED,
            "label": LABEL,
            "content_type": "text/plain; charset=utf-8",
        }
        return encrypt_message(
            self.sender.keys, self.audience_key, plaintext, **(defaults | fields)
        )


@pytest.fixture(scope="module")
def world() -> World:
    sender, alice, bob, outsider = (new_device() for _ in range(4))
    audience, key = create_audience(
        sender.keys,
        audience_id=str(uuid.uuid4()),
        container=CONTAINER,
        creator_user=sender.user_id,
        creator_device=sender.device_id,
        recipients=[d.recipient() for d in (bob, sender, alice)],
        created_at=CREATED,
    )
    return World(sender, alice, bob, outsider, audience, key)


def _open(world: World, device: Device, audience: SealedAudience | None = None) -> bytes:
    audience = audience or world.audience
    return open_audience_envelope(
        device.keys,
        device.device_id,
        audience.header,
        audience.signature,
        audience.envelopes[device.device_id],
        world.sender.signing_key,
    )


def _resign_audience(world: World, header: dict[str, Any]) -> bytes:
    """The creator's valid signature over a changed header (the creator is not the attacker
    here; this shows the envelopes are bound to the header independently of the signature)."""
    hd = check_audience_header(header).header_digest
    return world.sender.keys.signing_private_key().sign(envelopes._audience_signing_input(hd))


def _resign_message(world: World, sealed: SealedMessage) -> SealedMessage:
    hd = check_message_header(sealed.header).header_digest
    signature = world.sender.keys.signing_private_key().sign(
        envelopes._message_signing_input(hd, sealed.body)
    )
    return replace(sealed, signature=signature)


def _flip(data: bytes, index: int) -> bytes:
    changed = bytearray(data)
    changed[index] ^= 0x01
    return bytes(changed)


# ---------------------------------------------------------------------------------------------
# Audiences: round trips


def test_audience_header_lists_sorted_devices(world: World) -> None:
    header = check_audience_header(world.audience.header)
    assert list(header.devices) == sorted(d.device_id for d in world.members)
    assert set(world.audience.envelopes) == set(header.devices)
    assert header.creator_device == world.sender.device_id
    assert header.created_at == CREATED
    assert header.to_json() == world.audience.header
    assert all(len(e) == ENVELOPE_SIZE for e in world.audience.envelopes.values())


def test_every_member_opens_the_same_audience_key(world: World) -> None:
    assert len(world.audience_key) == 32
    for device in world.members:
        assert _open(world, device) == world.audience_key


def test_sealed_audience_wire_roundtrip(world: World) -> None:
    wire = json.dumps(world.audience.to_json())
    restored = SealedAudience.from_json(wire)
    assert restored == world.audience
    assert SealedAudience.from_json(json.loads(wire)) == world.audience
    assert _open(world, world.alice, restored) == world.audience_key


def test_partial_sealed_audience_is_what_a_device_receives(world: World) -> None:
    wire = world.audience.to_json()
    wire["envelopes"] = {world.bob.device_id: wire["envelopes"][world.bob.device_id]}
    with pytest.raises(EnvelopeError, match="missing for"):
        SealedAudience.from_json(wire)
    partial = SealedAudience.from_json(wire, partial=True)
    assert _open(world, world.bob, partial) == world.audience_key


def test_verify_audience_returns_typed_header(world: World) -> None:
    header = verify_audience(
        world.audience.header, world.audience.signature, world.sender.signing_key
    )
    assert header.audience_id == world.audience.header["audience_id"]
    assert header.container == CONTAINER


def test_device_keys_digest_binds_ids_and_keys(world: World) -> None:
    recipients = [d.recipient() for d in world.members]
    digest = device_keys_digest(recipients)
    assert digest == world.audience.header["device_keys_digest"]
    assert device_keys_digest(reversed(recipients)) == digest
    swapped = [
        Recipient(world.sender.device_id, world.alice.keys.public()),
        Recipient(world.alice.device_id, world.sender.keys.public()),
        world.bob.recipient(),
    ]
    assert device_keys_digest(swapped) != digest
    other = [*recipients[:2], Recipient(recipients[2].device_id, world.outsider.keys.public())]
    assert device_keys_digest(other) != digest


def test_device_keys_digest_refuses_repeated_device(world: World) -> None:
    with pytest.raises(EnvelopeError, match="twice"):
        device_keys_digest([world.alice.recipient(), world.alice.recipient()])


def test_create_audience_refuses_repeated_recipient(world: World) -> None:
    with pytest.raises(EnvelopeError, match="twice"):
        create_audience(
            world.sender.keys,
            audience_id=str(uuid.uuid4()),
            container=CONTAINER,
            creator_user=world.sender.user_id,
            creator_device=world.sender.device_id,
            recipients=[world.alice.recipient(), world.alice.recipient()],
            created_at=CREATED,
        )


def test_create_audience_refuses_too_many_devices(world: World) -> None:
    public = world.alice.keys.public()
    recipients = [Recipient(f"d{i:05d}", public) for i in range(MAX_AUDIENCE_DEVICES + 1)]
    with pytest.raises(EnvelopeError, match="at most 1000"):
        create_audience(
            world.sender.keys,
            audience_id=str(uuid.uuid4()),
            container=CONTAINER,
            creator_user=world.sender.user_id,
            creator_device=world.sender.device_id,
            recipients=recipients,
            created_at=CREATED,
        )


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("audience_id", "not-a-uuid"),
        ("audience_id", "0E6A4F2C-8B1D-4E3A-B7C9-5D2F1A0E9C51"),
        ("container", ""),
        ("container", "x" * 65),
        ("creator_user", "with space"),
        ("creator_device", "caf\u00e9"),
    ],
)
def test_create_audience_refuses_malformed_fields(world: World, field: str, value: str) -> None:
    fields: dict[str, Any] = {
        "audience_id": str(uuid.uuid4()),
        "container": CONTAINER,
        "creator_user": world.sender.user_id,
        "creator_device": world.sender.device_id,
    }
    fields[field] = value
    with pytest.raises(EnvelopeError, match=field):
        create_audience(
            world.sender.keys,
            recipients=[world.alice.recipient()],
            created_at=CREATED,
            **fields,
        )


def test_create_audience_refuses_naive_time(world: World) -> None:
    with pytest.raises(EnvelopeError, match="created_at"):
        create_audience(
            world.sender.keys,
            audience_id=str(uuid.uuid4()),
            container=CONTAINER,
            creator_user=world.sender.user_id,
            creator_device=world.sender.device_id,
            recipients=[world.alice.recipient()],
            created_at=CREATED.replace(tzinfo=None),
        )


# ---------------------------------------------------------------------------------------------
# Audiences: structure


def _audience_header(world: World, **changes: Any) -> dict[str, Any]:
    header = copy.deepcopy(world.audience.header)
    header.update(changes)
    return header


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"type": "attache.message"}, "type"),
        ({"version": 2}, "version"),
        ({"version": True}, "version"),
        ({"version": "1"}, "version"),
        ({"extra": 1}, "unknown fields extra"),
        ({"devices": []}, "devices"),
        ({"devices": "abc"}, "devices"),
        ({"devices": ["b", "a"]}, "sorted"),
        ({"devices": ["a", "a"]}, "sorted"),
        ({"devices": ["a", 7]}, "devices"),
        ({"devices": [f"d{i:05d}" for i in range(MAX_AUDIENCE_DEVICES + 1)]}, "devices"),
        ({"device_keys_digest": b64u_encode(bytes(31))}, "device_keys_digest"),
        ({"device_keys_digest": "not base64!"}, "device_keys_digest"),
        ({"created_at": "2026-03-04T05:06:07+00:00"}, "created_at"),
        ({"created_at": 1}, "created_at"),
        ({"container": None}, "container"),
    ],
)
def test_check_audience_header_names_the_field(
    world: World, changes: dict[str, Any], match: str
) -> None:
    with pytest.raises(EnvelopeError, match=match):
        check_audience_header(_audience_header(world, **changes))


def test_check_audience_header_names_a_missing_field(world: World) -> None:
    header = _audience_header(world)
    del header["device_keys_digest"]
    with pytest.raises(EnvelopeError, match="lacks device_keys_digest"):
        check_audience_header(header)


def test_check_audience_header_accepts_the_maximum_devices(world: World) -> None:
    devices = [f"d{i:05d}" for i in range(MAX_AUDIENCE_DEVICES)]
    assert len(check_audience_header(_audience_header(world, devices=devices)).devices) == 1000


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda w: w.pop("envelopes"), "exactly header"),
        (lambda w: w.update(extra=1), "exactly header"),
        (lambda w: w.update(signature=w["signature"] + "A"), "signature"),
        (lambda w: w.update(envelopes=[]), "JSON object"),
        (lambda w: w["envelopes"].update(stranger=w["signature"]), "unlisted"),
        (lambda w: w["header"].update(container="?"), "container"),
    ],
)
def test_sealed_audience_from_json_checks_structure(world: World, mutate: Any, match: str) -> None:
    wire = world.audience.to_json()
    mutate(wire)
    with pytest.raises(EnvelopeError, match=match):
        SealedAudience.from_json(wire)


def test_sealed_audience_from_json_checks_envelope_size(world: World) -> None:
    wire = world.audience.to_json()
    wire["envelopes"][world.bob.device_id] = b64u_encode(bytes(ENVELOPE_SIZE - 1))
    with pytest.raises(EnvelopeError, match="envelope"):
        SealedAudience.from_json(wire)


@pytest.mark.parametrize("text", ["[]", "{", '{"header": {}, "header": {}}', "NaN"])
def test_sealed_audience_from_json_refuses_bad_json(text: str) -> None:
    with pytest.raises(EnvelopeError, match="JSON object"):
        SealedAudience.from_json(text)


# ---------------------------------------------------------------------------------------------
# Audiences: tampering


@pytest.mark.parametrize(
    "changes",
    [
        {"container": "another-container"},
        {"creator_user": "someone-else"},
        {"creator_device": "another-device"},
        {"created_at": "2026-03-04T05:06:08Z"},
        {"audience_id": str(uuid.uuid4())},
        {"device_keys_digest": b64u_encode(bytes(32))},
    ],
)
def test_changed_audience_header_fails(world: World, changes: dict[str, Any]) -> None:
    header = _audience_header(world, **changes)
    with pytest.raises(EnvelopeError, match="signature"):
        verify_audience(header, world.audience.signature, world.sender.signing_key)
    forged = replace(world.audience, header=header)
    with pytest.raises(EnvelopeError, match="signature"):
        _open(world, world.alice, forged)


def test_changed_device_list_fails(world: World) -> None:
    devices = sorted([*world.audience.header["devices"], world.outsider.device_id])
    header = _audience_header(world, devices=devices)
    with pytest.raises(EnvelopeError, match="signature"):
        verify_audience(header, world.audience.signature, world.sender.signing_key)
    removed = _audience_header(world, devices=[world.alice.device_id])
    with pytest.raises(EnvelopeError, match="signature"):
        _open(world, world.alice, replace(world.audience, header=removed))


def test_envelopes_are_bound_to_their_header_even_if_resigned(world: World) -> None:
    # Even the creator's own signature over a changed header does not make old envelopes open.
    header = _audience_header(world, container="another-container")
    resigned = replace(world.audience, header=header, signature=_resign_audience(world, header))
    verify_audience(header, resigned.signature, world.sender.signing_key)
    with pytest.raises(EnvelopeError, match="does not open"):
        _open(world, world.alice, resigned)


@pytest.mark.parametrize("index", [0, 1119, 1120, ENVELOPE_SIZE - 1])
def test_changed_envelope_fails(world: World, index: int) -> None:
    envelope = _flip(world.audience.envelopes[world.alice.device_id], index)
    with pytest.raises(EnvelopeError, match="does not open"):
        open_audience_envelope(
            world.alice.keys,
            world.alice.device_id,
            world.audience.header,
            world.audience.signature,
            envelope,
            world.sender.signing_key,
        )


def test_truncated_envelope_fails(world: World) -> None:
    with pytest.raises(EnvelopeError, match="envelope"):
        open_audience_envelope(
            world.alice.keys,
            world.alice.device_id,
            world.audience.header,
            world.audience.signature,
            world.audience.envelopes[world.alice.device_id][:-1],
            world.sender.signing_key,
        )


def test_envelope_swapped_between_devices_fails(world: World) -> None:
    with pytest.raises(EnvelopeError, match="does not open"):
        open_audience_envelope(
            world.alice.keys,
            world.alice.device_id,
            world.audience.header,
            world.audience.signature,
            world.audience.envelopes[world.bob.device_id],
            world.sender.signing_key,
        )


def test_envelope_opened_under_another_listed_device_id_fails(world: World) -> None:
    # Alice's own envelope, claimed under Bob's id: the info names the device, so it fails.
    with pytest.raises(EnvelopeError, match="does not open"):
        open_audience_envelope(
            world.alice.keys,
            world.bob.device_id,
            world.audience.header,
            world.audience.signature,
            world.audience.envelopes[world.alice.device_id],
            world.sender.signing_key,
        )


def test_device_not_in_audience_cannot_open(world: World) -> None:
    with pytest.raises(EnvelopeError, match="not in audience"):
        open_audience_envelope(
            world.outsider.keys,
            world.outsider.device_id,
            world.audience.header,
            world.audience.signature,
            world.audience.envelopes[world.alice.device_id],
            world.sender.signing_key,
        )
    # Nor by claiming a listed device's id with its own keys.
    with pytest.raises(EnvelopeError, match="does not open"):
        open_audience_envelope(
            world.outsider.keys,
            world.alice.device_id,
            world.audience.header,
            world.audience.signature,
            world.audience.envelopes[world.alice.device_id],
            world.sender.signing_key,
        )


def test_audience_signed_by_another_device_fails(world: World) -> None:
    hd = check_audience_header(world.audience.header).header_digest
    forged = world.outsider.keys.signing_private_key().sign(envelopes._audience_signing_input(hd))
    with pytest.raises(EnvelopeError, match="signature"):
        verify_audience(world.audience.header, forged, world.sender.signing_key)
    with pytest.raises(EnvelopeError, match="signature"):
        verify_audience(world.audience.header, world.audience.signature, world.alice.signing_key)


@pytest.mark.parametrize(("key", "signature"), [(bytes(31), bytes(64)), (None, bytes(63))])
def test_malformed_audience_signature_or_key_fails(
    world: World, key: bytes | None, signature: bytes
) -> None:
    with pytest.raises(EnvelopeError, match="signature"):
        verify_audience(world.audience.header, signature, key or world.sender.signing_key)


# ---------------------------------------------------------------------------------------------
# Messages: round trips


def test_message_roundtrip_for_every_member(world: World) -> None:
    sealed = world.send()
    for device in world.members:
        key = _open(world, device)
        assert decrypt_message(sealed, key, world.sender.signing_key) == PLAINTEXT


def test_message_wire_roundtrip(world: World) -> None:
    sealed = world.send(reply_to=str(uuid.uuid4()))
    restored = SealedMessage.from_json(json.dumps(sealed.to_json()))
    assert restored == sealed
    assert decrypt_message(restored, world.audience_key, world.sender.signing_key) == PLAINTEXT


def test_message_header_fields(world: World) -> None:
    message_id = str(uuid.uuid4())
    sealed = world.send(message_id=message_id)
    header = verify_message(sealed, world.sender.signing_key)
    assert header.message_id == message_id
    assert header.sender_device == world.sender.device_id
    assert header.label == LABEL.canonical()
    assert header.reply_to is None
    assert header.sent_at == CREATED
    assert header.to_json() == sealed.header
    assert header.header_digest == message_header_digest(sealed.header)
    assert len(sealed.body) == len(PLAINTEXT) + MESSAGE_BODY_OVERHEAD


def test_label_as_canonical_dict_is_the_same_header(world: World) -> None:
    message_id = str(uuid.uuid4())
    a = world.send(message_id=message_id)
    b = world.send(message_id=message_id, label=LABEL.canonical())
    assert a.header == b.header


def test_retry_with_same_message_id_uses_a_fresh_nonce(world: World) -> None:
    message_id = str(uuid.uuid4())
    first, second = world.send(message_id=message_id), world.send(message_id=message_id)
    assert first.header == second.header
    assert first.body[:12] != second.body[:12]
    for sealed in (first, second):
        assert decrypt_message(sealed, world.audience_key, world.sender.signing_key) == PLAINTEXT


def test_item_key_decrypts_and_is_not_the_audience_key(world: World) -> None:
    sealed = world.send()
    item_key = message_key(world.audience_key, sealed.header)
    assert item_key != world.audience_key
    assert decrypt_with_item_key(sealed, item_key, world.sender.signing_key) == PLAINTEXT
    other = world.send()
    assert message_key(world.audience_key, other.header) != item_key
    with pytest.raises(EnvelopeError, match="not encrypted under this key"):
        decrypt_with_item_key(other, item_key, world.sender.signing_key)
    with pytest.raises(EnvelopeError, match="not encrypted under this key"):
        decrypt_with_item_key(sealed, world.audience_key, world.sender.signing_key)


@pytest.mark.parametrize("size", [0, 1, MAX_MESSAGE_PLAINTEXT])
def test_plaintext_sizes_up_to_the_maximum(world: World, size: int) -> None:
    plaintext = bytes(range(256)) * (size // 256) + bytes(size % 256)
    sealed = SealedMessage.from_json(world.send(plaintext).to_json())
    assert decrypt_message(sealed, world.audience_key, world.sender.signing_key) == plaintext


def test_oversize_plaintext_fails(world: World) -> None:
    with pytest.raises(EnvelopeError, match="at most"):
        world.send(bytes(MAX_MESSAGE_PLAINTEXT + 1))


def test_oversize_body_is_refused_on_the_wire(world: World) -> None:
    wire = world.send().to_json()
    wire["body"] = b64u_encode(bytes(MAX_MESSAGE_PLAINTEXT + MESSAGE_BODY_OVERHEAD + 1))
    with pytest.raises(EnvelopeError, match="longer than"):
        SealedMessage.from_json(wire)


def test_wrong_audience_key_fails(world: World) -> None:
    sealed = world.send()
    with pytest.raises(EnvelopeError, match="not encrypted under this key"):
        decrypt_message(sealed, bytes(32), world.sender.signing_key)
    with pytest.raises(EnvelopeError, match="32 bytes"):
        decrypt_message(sealed, bytes(16), world.sender.signing_key)


# ---------------------------------------------------------------------------------------------
# Messages: structure


def _message_header(world: World, **changes: Any) -> dict[str, Any]:
    header = copy.deepcopy(world.send().header)
    header.update(changes)
    return header


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"type": "attache.audience"}, "type"),
        ({"version": 0}, "version"),
        ({"extra": None}, "unknown fields extra"),
        ({"message_id": "1"}, "message_id"),
        ({"audience_id": None}, "audience_id"),
        ({"reply_to": ""}, "reply_to"),
        ({"sender_user": "x" * 65}, "sender_user"),
        ({"sender_device": "a/b"}, "sender_device"),
        ({"container": 5}, "container"),
        ({"sent_at": "2026-03-04T05:06:07.5Z"}, "sent_at"),
        ({"label": "NATO SECRET"}, "label"),
        ({"label": {"policy": 1.5e300 * 1e300}}, "label"),
        ({"label": {"policy": "x" * 9000}}, "label"),
        ({"content_type": ""}, "content_type"),
        ({"content_type": "t" * 101}, "content_type"),
        ({"content_type": "text/plain\n"}, "content_type"),
        ({"content_type": "text/pl\u00e4in"}, "content_type"),
    ],
)
def test_check_message_header_names_the_field(
    world: World, changes: dict[str, Any], match: str
) -> None:
    with pytest.raises(EnvelopeError, match=match):
        check_message_header(_message_header(world, **changes))


def test_check_message_header_names_a_missing_field(world: World) -> None:
    header = _message_header(world)
    del header["reply_to"]
    with pytest.raises(EnvelopeError, match="lacks reply_to"):
        check_message_header(header)


def test_encrypt_message_refuses_malformed_fields(world: World) -> None:
    with pytest.raises(EnvelopeError, match="message_id"):
        world.send(message_id="retry-1")
    with pytest.raises(EnvelopeError, match="sent_at"):
        world.send(sent_at=CREATED.replace(tzinfo=None))
    with pytest.raises(EnvelopeError, match="32 bytes"):
        encrypt_message(
            world.sender.keys,
            b"short",
            PLAINTEXT,
            message_id=str(uuid.uuid4()),
            container=CONTAINER,
            sender_user=world.sender.user_id,
            sender_device=world.sender.device_id,
            audience_id=world.audience.header["audience_id"],
            sent_at=CREATED,
            label=LABEL,
            content_type="text/plain",
        )


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda w: w.pop("body"), "exactly header"),
        (lambda w: w.update(extra=1), "exactly header"),
        (lambda w: w.update(body=5), "body"),
        (lambda w: w.update(body=w["body"] + "="), "body"),
        (lambda w: w.update(signature=w["signature"][:-2]), "signature"),
        (lambda w: w["header"].update(version=2), "version"),
    ],
)
def test_sealed_message_from_json_checks_structure(world: World, mutate: Any, match: str) -> None:
    wire = world.send().to_json()
    mutate(wire)
    with pytest.raises(EnvelopeError, match=match):
        SealedMessage.from_json(wire)


# ---------------------------------------------------------------------------------------------
# Messages: tampering


def _changed_label(**changes: Any) -> dict[str, Any]:
    return LABEL.canonical() | changes


@pytest.mark.parametrize(
    "label",
    [
        _changed_label(level="CONFIDENTIAL"),
        _changed_label(rel_to=["USA", "GBR", "FRA"]),
        _changed_label(rel_to=["GBR", "USA"]),
        _changed_label(rel_to=["NATO"]),
        _changed_label(originator="USA"),
        _changed_label(categories={"CAVEAT": ["ATOMAL"]}),
        _changed_label(privacy_mark="STAFF"),
        _changed_label(review_date="2030-01-01"),
    ],
)
def test_changed_label_fails(world: World, label: dict[str, Any]) -> None:
    sealed = world.send()
    forged = replace(sealed, header=sealed.header | {"label": label})
    with pytest.raises(EnvelopeError, match="signature"):
        decrypt_message(forged, world.audience_key, world.sender.signing_key)
    # Bound by the key and the associated data too, not only by the signature.
    with pytest.raises(EnvelopeError, match="not encrypted under this key"):
        decrypt_message(
            _resign_message(world, forged), world.audience_key, world.sender.signing_key
        )


MESSAGE_CHANGES: list[tuple[str, Any]] = [
    ("message_id", str(uuid.uuid4())),
    ("container", "another-container"),
    ("sender_user", "someone-else"),
    ("sender_device", "another-device"),
    ("audience_id", str(uuid.uuid4())),
    ("sent_at", "2026-03-04T05:06:08Z"),
    ("content_type", "text/html"),
    ("reply_to", str(uuid.uuid4())),
]


def test_every_message_field_is_covered() -> None:
    covered = {name for name, _ in MESSAGE_CHANGES} | {"label", "type", "version"}
    assert covered == envelopes.MESSAGE_FIELDS


@pytest.mark.parametrize(("field", "value"), MESSAGE_CHANGES)
def test_changed_message_header_field_fails(world: World, field: str, value: Any) -> None:
    sealed = world.send()
    forged = replace(sealed, header=sealed.header | {field: value})
    with pytest.raises(EnvelopeError, match="signature"):
        verify_message(forged, world.sender.signing_key)
    with pytest.raises(EnvelopeError, match="signature"):
        decrypt_message(forged, world.audience_key, world.sender.signing_key)
    with pytest.raises(EnvelopeError, match="not encrypted under this key"):
        decrypt_message(
            _resign_message(world, forged), world.audience_key, world.sender.signing_key
        )


@pytest.mark.parametrize(("field", "value"), MESSAGE_CHANGES)
def test_a_changed_header_field_on_the_wire_fails_in_one_step(
    world: World, field: str, value: Any
) -> None:
    # What the server checks a submit with: parsed, checked and verified with the header
    # canonicalised once; it refuses exactly what the two steps refuse.
    wire = world.send().to_json()
    wire["header"] = wire["header"] | {field: value}
    with pytest.raises(EnvelopeError, match="signature"):
        envelopes.verify_message_json(wire, world.sender.signing_key)


def test_verifying_on_the_wire_in_one_step_is_the_two_steps(world: World) -> None:
    sealed = world.send(reply_to=str(uuid.uuid4()))
    restored, header = envelopes.verify_message_json(
        json.dumps(sealed.to_json()), world.sender.signing_key
    )
    assert restored == sealed
    assert header == verify_message(sealed, world.sender.signing_key)
    with pytest.raises(EnvelopeError, match="signature"):
        envelopes.verify_message_json(sealed.to_json(), world.alice.signing_key)
    short = sealed.to_json() | {"body": b64u_encode(sealed.body[:12])}
    with pytest.raises(EnvelopeError, match="at least"):
        envelopes.verify_message_json(short, world.sender.signing_key)


@pytest.mark.parametrize(
    "index",
    [0, 11, 12, 43, 44, 44 + len(PLAINTEXT) - 1, 44 + len(PLAINTEXT), -1],
    ids=["nonce0", "nonce11", "commit0", "commit31", "ct0", "ct-last", "tag0", "tag-last"],
)
def test_changed_body_byte_fails(world: World, index: int) -> None:
    sealed = world.send()
    forged = replace(sealed, body=_flip(sealed.body, index))
    with pytest.raises(EnvelopeError, match="signature"):
        decrypt_message(forged, world.audience_key, world.sender.signing_key)
    with pytest.raises(EnvelopeError, match=r"not encrypted under this key|does not decrypt"):
        decrypt_message(
            _resign_message(world, forged), world.audience_key, world.sender.signing_key
        )


@pytest.mark.parametrize("length", [0, 12, MESSAGE_BODY_OVERHEAD - 1])
def test_truncated_body_below_the_minimum_fails(world: World, length: int) -> None:
    sealed = world.send()
    forged = replace(sealed, body=sealed.body[:length])
    with pytest.raises(EnvelopeError, match="at least"):
        decrypt_message(forged, world.audience_key, world.sender.signing_key)
    with pytest.raises(EnvelopeError, match="at least"):
        SealedMessage.from_json(forged.to_json())


@pytest.mark.parametrize("cut", [1, 16, len(PLAINTEXT)])
def test_truncated_body_fails(world: World, cut: int) -> None:
    sealed = world.send()
    forged = replace(sealed, body=sealed.body[:-cut])
    with pytest.raises(EnvelopeError, match="signature"):
        decrypt_message(forged, world.audience_key, world.sender.signing_key)
    with pytest.raises(EnvelopeError, match="does not decrypt"):
        decrypt_message(
            _resign_message(world, forged), world.audience_key, world.sender.signing_key
        )


def test_body_moved_to_another_header_fails(world: World) -> None:
    first = world.send(b"first")
    second = world.send(b"second")
    moved = replace(second, body=first.body)
    with pytest.raises(EnvelopeError, match="signature"):
        decrypt_message(moved, world.audience_key, world.sender.signing_key)
    moved_with_signature = replace(second, body=first.body, signature=first.signature)
    with pytest.raises(EnvelopeError, match="signature"):
        decrypt_message(moved_with_signature, world.audience_key, world.sender.signing_key)
    with pytest.raises(EnvelopeError, match="not encrypted under this key"):
        decrypt_message(_resign_message(world, moved), world.audience_key, world.sender.signing_key)


def test_message_signed_by_another_device_fails(world: World) -> None:
    sealed = world.send()
    hd = check_message_header(sealed.header).header_digest
    forged = world.alice.keys.signing_private_key().sign(
        envelopes._message_signing_input(hd, sealed.body)
    )
    with pytest.raises(EnvelopeError, match="signature"):
        verify_message(replace(sealed, signature=forged), world.sender.signing_key)
    # An audience member holds the audience key, yet cannot pass off a message as the sender's.
    impostor = encrypt_message(
        world.alice.keys,
        world.audience_key,
        b"forged",
        message_id=str(uuid.uuid4()),
        container=CONTAINER,
        sender_user=world.sender.user_id,
        sender_device=world.sender.device_id,
        audience_id=world.audience.header["audience_id"],
        sent_at=CREATED,
        label=LABEL,
        content_type="text/plain",
    )
    with pytest.raises(EnvelopeError, match="signature"):
        decrypt_message(impostor, world.audience_key, world.sender.signing_key)
    with pytest.raises(EnvelopeError, match="signature"):
        decrypt_message(sealed, world.audience_key, world.alice.signing_key)


def test_message_signature_is_not_an_audience_signature(world: World) -> None:
    # Domain separation: the same key signing a 32-byte digest under another context.
    sealed = world.send()
    hd = check_message_header(sealed.header).header_digest
    wrong = world.sender.keys.signing_private_key().sign(envelopes._audience_signing_input(hd))
    with pytest.raises(EnvelopeError, match="signature"):
        verify_message(replace(sealed, signature=wrong), world.sender.signing_key)
