"""Item grants (protocol/grants.py): a message and a document version released to new devices
and opened with the existing decryptors, the wire form, structure checks, every tamper case,
context separation from audiences, and the byte layout of docs/PROTOCOL.md recomputed with raw
primitives.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
import rfc8785
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric import ed25519

from protocol import envelopes, grants, stream
from protocol.canonical import (
    CTX_GRANT_ENVELOPE,
    CTX_GRANT_HEADER,
    CTX_GRANT_ITEM_KEY_COMMITMENT,
    CTX_GRANT_SIGNATURE,
    CTX_MESSAGE_KEY_COMMITMENT,
    digest,
)
from protocol.catalog import load_default_catalog
from protocol.envelopes import (
    EnvelopeError,
    Recipient,
    SealedAudience,
    SealedMessage,
    create_audience,
    decrypt_with_item_key,
    encrypt_message,
    message_key,
    open_audience_envelope,
)
from protocol.grants import (
    GRANT_ENVELOPE_SIZE,
    GRANT_FIELDS,
    ITEM_KEY_SIZE,
    MAX_GRANT_DEVICES,
    SealedGrant,
    check_grant_header,
    check_grant_item,
    check_label_widening,
    create_grant,
    grant_header_digest,
    item_key_commitment,
    open_grant,
    verify_grant,
)
from protocol.keys import HPKE_SUITE, DeviceKeys, b64u_encode
from protocol.labels import Label, parse_label
from protocol.stream import DocumentDecryptor, DocumentEncryptor, SealedDocumentTrailer

CATALOG = load_default_catalog()
LABEL = parse_label("NATO SECRET//REL TO USA, GBR", CATALOG, originator="GBR")
WIDER = parse_label("NATO SECRET//REL TO USA, GBR, FRA", CATALOG, originator="GBR")
CONTAINER = "6f1c9e52-3b7a-4d1e-9a0f-2c4b8d6e0a11"
CREATED = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
GRANTED = datetime(2026, 3, 5, 9, 0, 0, tzinfo=UTC)
PLAINTEXT = b"Meeting moved to 14:00, room 2."
DOCUMENT = bytes(i % 251 for i in range(70_000))  # two chunks


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


def new_device() -> Device:
    return Device(str(uuid.uuid4()), str(uuid.uuid4()), DeviceKeys.generate())


@dataclass(frozen=True)
class World:
    sender: Device  # GBR, sent the message and uploaded the document
    grantor: Device  # a USA member of the audience: holds the item keys, not the sender
    fra1: Device  # newly eligible devices, outside the audience
    fra2: Device
    outsider: Device
    audience: SealedAudience
    audience_key: bytes
    message: SealedMessage
    document_header: dict[str, Any]
    document_ciphertext: bytes
    trailer: SealedDocumentTrailer
    document_key: bytes
    message_grant: SealedGrant
    document_grant: SealedGrant

    @property
    def message_key(self) -> bytes:
        return message_key(self.audience_key, self.message.header)


def _grant(
    grantor: Device,
    item_key: bytes,
    recipients: list[Device],
    *,
    item_type: str,
    item_id: str,
    **fields: Any,
) -> SealedGrant:
    values: dict[str, Any] = {
        "grant_id": str(uuid.uuid4()),
        "request_id": str(uuid.uuid4()),
        "item_type": item_type,
        "item_id": item_id,
        "container": CONTAINER,
        "grantor_user": grantor.user_id,
        "grantor_device": grantor.device_id,
        "previous_label": LABEL,
        "label": WIDER,
        "recipients": [d.recipient() for d in recipients],
        "created_at": GRANTED,
    }
    return create_grant(grantor.keys, item_key, **(values | fields))


@pytest.fixture(scope="module")
def world() -> World:
    sender, grantor, fra1, fra2, outsider = (new_device() for _ in range(5))
    audience, audience_key = create_audience(
        sender.keys,
        audience_id=str(uuid.uuid4()),
        container=CONTAINER,
        creator_user=sender.user_id,
        creator_device=sender.device_id,
        recipients=[sender.recipient(), grantor.recipient()],
        created_at=CREATED,
    )
    message = encrypt_message(
        sender.keys,
        audience_key,
        PLAINTEXT,
        message_id=str(uuid.uuid4()),
        container=CONTAINER,
        sender_user=sender.user_id,
        sender_device=sender.device_id,
        audience_id=audience.header["audience_id"],
        sent_at=CREATED,
        label=LABEL,
        content_type="text/plain; charset=utf-8",
    )
    encryptor = DocumentEncryptor(
        sender.keys,
        audience_key,
        document_id=str(uuid.uuid4()),
        version_id=str(uuid.uuid4()),
        version_number=1,
        container=CONTAINER,
        sender_user=sender.user_id,
        sender_device=sender.device_id,
        audience_id=audience.header["audience_id"],
        created_at=CREATED,
        label=LABEL,
        filename="agenda.pdf",
        content_type="application/pdf",
        size=len(DOCUMENT),
    )
    ciphertext = b"".join(encryptor.encrypt_chunks([DOCUMENT]))
    trailer = encryptor.finish()
    document_header = encryptor.header

    # The grantor is a member of the audience: it derives the item keys from the audience key
    # it opened, exactly as it would to read the items.
    grantor_audience_key = open_audience_envelope(
        grantor.keys,
        grantor.device_id,
        audience.header,
        audience.signature,
        audience.envelopes[grantor.device_id],
        sender.signing_key,
    )
    item_message_key = message_key(grantor_audience_key, message.header)
    item_document_key = stream.document_key(grantor_audience_key, document_header)
    assert item_document_key == encryptor.item_key
    message_grant = _grant(
        grantor,
        item_message_key,
        [fra2, fra1],
        item_type="message",
        item_id=message.header["message_id"],
    )
    document_grant = _grant(
        grantor,
        item_document_key,
        [fra1, fra2],
        item_type="document_version",
        item_id=document_header["version_id"],
    )
    return World(
        sender,
        grantor,
        fra1,
        fra2,
        outsider,
        audience,
        audience_key,
        message,
        document_header,
        ciphertext,
        trailer,
        item_document_key,
        message_grant,
        document_grant,
    )


def _open(
    world: World,
    device: Device,
    grant: SealedGrant | None = None,
    *,
    envelope: bytes | None = None,
    header: dict[str, Any] | None = None,
    signature: bytes | None = None,
    grantor_signing_key: bytes | None = None,
) -> bytes:
    grant = grant or world.message_grant
    return open_grant(
        device.keys,
        device.device_id,
        grant.header if header is None else header,
        grant.signature if signature is None else signature,
        grant.envelopes[device.device_id] if envelope is None else envelope,
        world.grantor.signing_key if grantor_signing_key is None else grantor_signing_key,
    )


def _sign(device: Device, header: dict[str, Any]) -> bytes:
    """``device``'s valid signature over ``header`` (a re-signing grantor, or another device)."""
    return device.keys.signing_private_key().sign(
        grants._grant_signing_input(grant_header_digest(header))
    )


def _decrypt_document(world: World, key: bytes) -> bytes:
    decryptor = DocumentDecryptor(
        world.document_header, world.trailer, key, world.sender.signing_key
    )
    plaintext = b"".join(decryptor.decrypt_chunks([world.document_ciphertext]))
    decryptor.finish()
    return plaintext


# ---------------------------------------------------------------------------------------------
# Round trips


def test_a_granted_message_opens_for_each_new_device(world: World) -> None:
    for device in (world.fra1, world.fra2):
        key = _open(world, device)
        assert key == world.message_key
        assert decrypt_with_item_key(world.message, key, world.sender.signing_key) == PLAINTEXT


def test_a_granted_document_version_opens_for_each_new_device(world: World) -> None:
    for device in (world.fra1, world.fra2):
        key = _open(world, device, world.document_grant)
        assert key == world.document_key
        assert _decrypt_document(world, key) == DOCUMENT


def test_the_grant_seals_the_item_key_never_the_audience_key(world: World) -> None:
    key = _open(world, world.fra1)
    assert key != world.audience_key
    assert world.message_grant.header["item_key_commitment"] == item_key_commitment(
        world.message_key
    )
    assert world.document_grant.header["item_key_commitment"] == item_key_commitment(
        world.document_key
    )


def test_grant_header_is_typed_and_round_trips(world: World) -> None:
    header = check_grant_header(world.message_grant.header)
    assert header.to_json() == world.message_grant.header
    assert list(header.devices) == sorted([world.fra1.device_id, world.fra2.device_id])
    assert header.item_type == "message"
    assert header.item_id == world.message.header["message_id"]
    assert header.grantor_device == world.grantor.device_id
    assert header.previous_label == LABEL.canonical()
    assert header.label == WIDER.canonical()
    assert header.created_at == GRANTED
    assert set(world.message_grant.header) == GRANT_FIELDS
    assert all(len(e) == GRANT_ENVELOPE_SIZE for e in world.message_grant.envelopes.values())


def test_server_verifies_without_keys(world: World) -> None:
    checked = verify_grant(
        world.document_grant.header, world.document_grant.signature, world.grantor.signing_key
    )
    assert checked.item_type == "document_version"
    # The server recomputes the digest of the keys it has on record for the listed devices.
    assert checked.device_keys_digest == envelopes.device_keys_digest(
        [world.fra1.recipient(), world.fra2.recipient()]
    )


def test_sealed_grant_wire_roundtrip(world: World) -> None:
    wire = json.dumps(world.message_grant.to_json())
    restored = SealedGrant.from_json(wire)
    assert restored == world.message_grant
    assert SealedGrant.from_json(json.loads(wire)) == world.message_grant
    assert _open(world, world.fra2, restored) == world.message_key


def test_partial_sealed_grant_is_what_a_device_receives(world: World) -> None:
    wire = world.message_grant.to_json()
    wire["envelopes"] = {world.fra1.device_id: wire["envelopes"][world.fra1.device_id]}
    with pytest.raises(EnvelopeError, match="missing for"):
        SealedGrant.from_json(wire)
    partial = SealedGrant.from_json(wire, partial=True)
    assert _open(world, world.fra1, partial) == world.message_key


@pytest.mark.parametrize(
    "change",
    [
        lambda w: w | {"extra": 1},
        lambda w: {k: v for k, v in w.items() if k != "envelopes"},
        lambda w: w | {"envelopes": {}},
        lambda w: w | {"envelopes": []},
        lambda w: (
            w | {"envelopes": w["envelopes"] | {"stranger": next(iter(w["envelopes"].values()))}}
        ),
        lambda w: w | {"envelopes": {k: v[:-2] for k, v in w["envelopes"].items()}},
        lambda w: w | {"signature": w["signature"][:-2]},
        lambda w: w | {"header": w["header"] | {"version": 2}},
    ],
)
def test_sealed_grant_wire_form_is_strict(world: World, change: Any) -> None:
    with pytest.raises(EnvelopeError):
        SealedGrant.from_json(change(world.message_grant.to_json()), partial=True)


def test_sealed_grant_refuses_non_json() -> None:
    with pytest.raises(EnvelopeError, match="not a JSON object"):
        SealedGrant.from_json("[1]")
    with pytest.raises(EnvelopeError, match="not a JSON object"):
        SealedGrant.from_json('{"header": 1, "header": 2}')


def test_the_recipient_checks_item_and_label(world: World) -> None:
    message_grant = check_grant_header(world.message_grant.header)
    document_grant = check_grant_header(world.document_grant.header)
    check_grant_item(message_grant, world.message.header)
    check_grant_item(document_grant, world.document_header)
    previous, new = check_label_widening(message_grant.previous_label, message_grant.label, CATALOG)
    assert (previous, new) == (LABEL, WIDER)
    with pytest.raises(EnvelopeError, match="is for item"):
        check_grant_item(document_grant, {**world.document_header, "version_id": str(uuid.uuid4())})
    with pytest.raises(EnvelopeError):  # a grant for a message names no document
        check_grant_item(message_grant, world.document_header)
    with pytest.raises(EnvelopeError):
        check_grant_item(document_grant, world.message.header)
    other = {**world.message.header, "container": "another-container"}
    with pytest.raises(EnvelopeError, match="container"):
        check_grant_item(message_grant, other)


# ---------------------------------------------------------------------------------------------
# Labels: a release only widens releasability


@pytest.mark.parametrize(
    ("previous", "new", "match"),
    [
        ("NATO SECRET//REL TO USA, GBR", "NATO SECRET//REL TO USA, GBR", "does not widen"),
        ("NATO SECRET//REL TO USA, GBR", "NATO SECRET//REL TO GBR, USA", "does not widen"),
        ("NATO SECRET//REL TO USA, GBR", "NATO SECRET//REL TO USA, FRA", "drops GBR"),
        ("NATO SECRET//REL TO USA, GBR", "NATO CONFIDENTIAL//REL TO USA, GBR, FRA", "level"),
        ("NATO SECRET//REL TO USA, GBR", "NATO TOP SECRET//REL TO USA, GBR, FRA", "level"),
    ],
)
def test_label_widening_refuses_anything_but_wider_releasability(
    previous: str, new: str, match: str
) -> None:
    with pytest.raises(EnvelopeError, match=match):
        check_label_widening(
            parse_label(previous, CATALOG, originator="GBR"),
            parse_label(new, CATALOG, originator="GBR").canonical(),
            CATALOG,
        )


def test_label_widening_accepts_groups_and_default_releasability() -> None:
    national = parse_label("GBR SECRET", CATALOG, originator="GBR")
    check_label_widening(
        national, parse_label("GBR SECRET//REL TO GBR, FRA", CATALOG, originator="GBR"), CATALOG
    )
    check_label_widening(
        LABEL, parse_label("NATO SECRET//REL TO NATO", CATALOG, originator="GBR"), CATALOG
    )


def test_label_widening_refuses_another_originator_and_bad_labels() -> None:
    with pytest.raises(EnvelopeError, match="originator"):
        check_label_widening(
            LABEL,
            parse_label("NATO SECRET//REL TO USA, GBR, FRA", CATALOG, originator="USA"),
            CATALOG,
        )
    with pytest.raises(EnvelopeError, match="not a valid label"):
        check_label_widening(LABEL.canonical() | {"level": "BOGUS"}, WIDER, CATALOG)
    with pytest.raises(EnvelopeError, match="not a valid label"):
        check_label_widening(LABEL, {"policy": "NATO"}, CATALOG)


# ---------------------------------------------------------------------------------------------
# Tampering: every case raises EnvelopeError


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("label", parse_label("NATO SECRET//REL TO NATO", CATALOG, originator="GBR").canonical()),
        ("previous_label", WIDER.canonical()),
        ("item_id", str(uuid.uuid4())),
        ("item_type", "document_version"),
        ("container", "another-container"),
        ("request_id", str(uuid.uuid4())),
        ("grantor_user", "someone-else"),
        ("created_at", "2026-03-06T00:00:00Z"),
    ],
)
def test_a_changed_header_field_is_detected(world: World, field: str, value: Any) -> None:
    header = copy.deepcopy(world.message_grant.header) | {field: value}
    # As sent: the signature no longer verifies.
    with pytest.raises(EnvelopeError, match="grant signature is not valid"):
        _open(world, world.fra1, header=header)
    # Even re-signed by the grantor, the envelope is bound to the header it was sealed under.
    with pytest.raises(EnvelopeError, match="does not open"):
        _open(world, world.fra1, header=header, signature=_sign(world.grantor, header))


def test_a_changed_device_list_is_detected(world: World) -> None:
    header = copy.deepcopy(world.message_grant.header)
    header["devices"] = sorted([world.fra1.device_id, world.outsider.device_id])
    with pytest.raises(EnvelopeError, match="grant signature is not valid"):
        _open(world, world.fra1, header=header)
    with pytest.raises(EnvelopeError, match="does not open"):
        _open(world, world.fra1, header=header, signature=_sign(world.grantor, header))
    # The outsider, now listed, still has no envelope that opens for it.
    with pytest.raises(EnvelopeError, match="does not open"):
        _open(
            world,
            world.outsider,
            header=header,
            signature=_sign(world.grantor, header),
            envelope=world.message_grant.envelopes[world.fra2.device_id],
        )


def test_a_changed_keys_digest_is_detected(world: World) -> None:
    header = copy.deepcopy(world.message_grant.header)
    header["device_keys_digest"] = b64u_encode(bytes(32))
    with pytest.raises(EnvelopeError, match="grant signature is not valid"):
        _open(world, world.fra1, header=header)


def test_an_envelope_swapped_between_devices_does_not_open(world: World) -> None:
    with pytest.raises(EnvelopeError, match="does not open"):
        _open(world, world.fra1, envelope=world.message_grant.envelopes[world.fra2.device_id])


def test_an_envelope_moved_between_grants_does_not_open(world: World) -> None:
    with pytest.raises(EnvelopeError, match="does not open"):
        _open(world, world.fra1, envelope=world.document_grant.envelopes[world.fra1.device_id])


def test_a_device_not_listed_is_refused(world: World) -> None:
    with pytest.raises(EnvelopeError, match="is not in grant"):
        _open(world, world.outsider, envelope=world.message_grant.envelopes[world.fra1.device_id])


def test_a_signature_by_another_device_is_refused(world: World) -> None:
    forged = _sign(world.outsider, world.message_grant.header)
    with pytest.raises(EnvelopeError, match="grant signature is not valid"):
        _open(world, world.fra1, signature=forged)
    with pytest.raises(EnvelopeError, match="grant signature is not valid"):
        verify_grant(world.message_grant.header, forged, world.grantor.signing_key)
    with pytest.raises(EnvelopeError, match="grant signature is not valid"):
        _open(world, world.fra1, grantor_signing_key=world.outsider.signing_key)


def test_malformed_signature_and_envelope_are_refused(world: World) -> None:
    with pytest.raises(EnvelopeError, match="64 bytes"):
        _open(world, world.fra1, signature=world.message_grant.signature[:-1])
    with pytest.raises(EnvelopeError, match=f"{GRANT_ENVELOPE_SIZE} bytes"):
        _open(world, world.fra1, envelope=world.message_grant.envelopes[world.fra1.device_id][:-1])
    flipped = bytearray(world.message_grant.envelopes[world.fra1.device_id])
    flipped[-1] ^= 1
    with pytest.raises(EnvelopeError, match="does not open"):
        _open(world, world.fra1, envelope=bytes(flipped))


def test_a_sealed_key_that_does_not_match_the_commitment_is_detected(world: World) -> None:
    # A grantor commits to the item key but seals another one, under a valid signature and the
    # correct info: the recipient detects it after opening.
    hd = grant_header_digest(world.message_grant.header)
    envelope = HPKE_SUITE.encrypt(
        secrets.token_bytes(ITEM_KEY_SIZE),
        world.fra1.keys.public().encryption_public_key(),
        info=grants._envelope_info(
            world.message_grant.header["grant_id"], world.fra1.device_id, hd
        ),
    )
    with pytest.raises(EnvelopeError, match="does not match its item_key_commitment"):
        _open(world, world.fra1, envelope=envelope)


def test_a_grant_of_the_wrong_key_fails_at_the_item(world: World) -> None:
    # Consistent but wrong: the audience key (or another item's key) committed and sealed. The
    # grant opens, but the item's own signed commitment refuses the key.
    for wrong in (world.audience_key, world.document_key):
        grant = _grant(
            world.grantor,
            wrong,
            [world.fra1],
            item_type="message",
            item_id=world.message.header["message_id"],
        )
        key = _open(world, world.fra1, grant)
        with pytest.raises(EnvelopeError, match="not encrypted under this key"):
            decrypt_with_item_key(world.message, key, world.sender.signing_key)
    with pytest.raises(stream.DocumentError, match="not encrypted under this key"):
        _decrypt_document(world, world.message_key)


# ---------------------------------------------------------------------------------------------
# Context separation


def test_a_grant_envelope_is_not_an_audience_envelope(world: World) -> None:
    grant = world.message_grant
    hd = grant_header_digest(grant.header)
    envelope = grant.envelopes[world.fra1.device_id]
    private = world.fra1.keys.encryption_private_key()
    assert (
        HPKE_SUITE.decrypt(
            envelope,
            private,
            info=grants._envelope_info(grant.header["grant_id"], world.fra1.device_id, hd),
        )
        == world.message_key
    )
    # The same id, device and digest under the audience context do not open it.
    with pytest.raises(InvalidTag):
        HPKE_SUITE.decrypt(
            envelope,
            private,
            info=envelopes._envelope_info(grant.header["grant_id"], world.fra1.device_id, hd),
        )


def test_an_audience_envelope_is_not_a_grant_envelope(world: World) -> None:
    audience = world.audience
    hd = envelopes.audience_header_digest(audience.header)
    envelope = audience.envelopes[world.grantor.device_id]
    private = world.grantor.keys.encryption_private_key()
    with pytest.raises(InvalidTag):
        HPKE_SUITE.decrypt(
            envelope,
            private,
            info=grants._envelope_info(audience.header["audience_id"], world.grantor.device_id, hd),
        )
    # Through the API: a grant listing the audience member, handed its audience envelope.
    grant = _grant(
        world.grantor,
        world.message_key,
        [world.grantor],
        item_type="message",
        item_id=world.message.header["message_id"],
    )
    with pytest.raises(EnvelopeError, match="does not open"):
        _open(world, world.grantor, grant, envelope=envelope)
    # And the other way: a grant envelope handed to open_audience_envelope.
    with pytest.raises(EnvelopeError, match="does not open"):
        open_audience_envelope(
            world.grantor.keys,
            world.grantor.device_id,
            audience.header,
            audience.signature,
            grant.envelopes[world.grantor.device_id],
            world.sender.signing_key,
        )


def test_a_grant_header_is_not_an_audience_header(world: World) -> None:
    with pytest.raises(EnvelopeError):
        verify_grant(world.audience.header, world.audience.signature, world.sender.signing_key)
    with pytest.raises(EnvelopeError):
        envelopes.verify_audience(
            world.message_grant.header, world.message_grant.signature, world.grantor.signing_key
        )


def test_commitments_are_context_separated(world: World) -> None:
    key = world.message_key
    assert item_key_commitment(key) != b64u_encode(digest(CTX_MESSAGE_KEY_COMMITMENT, key))
    assert ITEM_KEY_SIZE == envelopes.MESSAGE_KEY_SIZE == stream.DOCUMENT_KEY_SIZE


# ---------------------------------------------------------------------------------------------
# Structure


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("type", "attache.audience", "type"),
        ("version", 2, "version"),
        ("version", True, "version"),
        ("grant_id", "not-a-uuid", "grant_id"),
        ("grant_id", str(uuid.uuid4()).upper(), "grant_id"),
        ("request_id", 7, "request_id"),
        ("request_id", "not-a-uuid", "request_id"),
        ("item_id", 7, "item_id"),
        ("item_type", "audience", "item_type"),
        ("item_type", None, "item_type"),
        ("container", "", "container"),
        ("container", "a/b", "container"),
        ("grantor_user", "x" * 65, "grantor_user"),
        ("grantor_device", None, "grantor_device"),
        ("label", "NATO SECRET", "label"),
        ("label", {"x": "a" * 9000}, "label"),
        ("previous_label", [], "previous_label"),
        ("previous_label", {"x": 1.5e400}, "previous_label"),
        ("devices", [], "devices"),
        ("devices", "dev", "devices"),
        ("devices", ["b", "a"], "devices"),
        ("devices", ["a", "a"], "devices"),
        ("devices", ["a b"], "devices"),
        ("devices", [f"d{i:05d}" for i in range(MAX_GRANT_DEVICES + 1)], "devices"),
        ("device_keys_digest", b64u_encode(bytes(31)), "device_keys_digest"),
        ("device_keys_digest", 1, "device_keys_digest"),
        ("item_key_commitment", b64u_encode(bytes(33)), "item_key_commitment"),
        ("item_key_commitment", "a+b/", "item_key_commitment"),
        ("created_at", "2026-03-05T09:00:00+00:00", "created_at"),
        ("created_at", 0, "created_at"),
    ],
)
def test_header_fields_are_checked(world: World, field: str, value: Any, match: str) -> None:
    header = copy.deepcopy(world.message_grant.header) | {field: value}
    with pytest.raises(EnvelopeError, match=match):
        check_grant_header(header)


def test_missing_and_unknown_fields_are_refused(world: World) -> None:
    header = copy.deepcopy(world.message_grant.header)
    del header["item_key_commitment"]
    with pytest.raises(EnvelopeError, match="lacks item_key_commitment"):
        check_grant_header(header)
    with pytest.raises(EnvelopeError, match="unknown fields"):
        check_grant_header(world.message_grant.header | {"audience_id": str(uuid.uuid4())})
    with pytest.raises(EnvelopeError, match="JSON object"):
        check_grant_header([])  # type: ignore[arg-type]


def test_create_grant_refuses_bad_input(world: World) -> None:
    item_id = world.message.header["message_id"]
    with pytest.raises(EnvelopeError, match="32 bytes"):
        _grant(world.grantor, b"short", [world.fra1], item_type="message", item_id=item_id)
    with pytest.raises(EnvelopeError, match="twice"):
        _grant(
            world.grantor,
            world.message_key,
            [world.fra1, world.fra1],
            item_type="message",
            item_id=item_id,
        )
    with pytest.raises(EnvelopeError, match="created_at"):
        _grant(
            world.grantor,
            world.message_key,
            [world.fra1],
            item_type="message",
            item_id=item_id,
            created_at=datetime(2026, 3, 5),
        )
    with pytest.raises(EnvelopeError, match="item_type"):
        _grant(world.grantor, world.message_key, [world.fra1], item_type="doc", item_id=item_id)
    with pytest.raises(EnvelopeError, match="devices"):
        _grant(world.grantor, world.message_key, [], item_type="message", item_id=item_id)


# ---------------------------------------------------------------------------------------------
# docs/PROTOCOL.md, recomputed with raw primitives


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _ctx(context: str, payload: bytes) -> bytes:
    return context.encode("utf-8") + b"\x00" + payload


def test_the_byte_layout_is_the_documented_one(world: World) -> None:
    grant = world.document_grant
    header = grant.header
    hd = hashlib.sha256(_ctx(CTX_GRANT_HEADER, bytes(rfc8785.dumps(header)))).digest()
    assert hd == grant_header_digest(header)
    assert header["item_key_commitment"] == _b64u(
        hashlib.sha256(_ctx(CTX_GRANT_ITEM_KEY_COMMITMENT, world.document_key)).digest()
    )
    entries = sorted(
        [d.device_id, _b64u(d.keys.public().signing_key), _b64u(d.keys.public().encryption_key)]
        for d in (world.fra1, world.fra2)
    )
    assert header["device_keys_digest"] == _b64u(
        hashlib.sha256(_ctx("attache/v1/audience-devices", bytes(rfc8785.dumps(entries)))).digest()
    )
    ed25519.Ed25519PublicKey.from_public_bytes(world.grantor.signing_key).verify(
        grant.signature, _ctx(CTX_GRANT_SIGNATURE, hd)
    )
    for device in (world.fra1, world.fra2):
        info = _ctx(
            CTX_GRANT_ENVELOPE,
            bytes(
                rfc8785.dumps(
                    {
                        "grant_id": header["grant_id"],
                        "device_id": device.device_id,
                        "header_digest": _b64u(hd),
                    }
                )
            ),
        )
        opened = HPKE_SUITE.decrypt(
            grant.envelopes[device.device_id], device.keys.encryption_private_key(), info=info
        )
        assert opened == world.document_key


def test_labels_in_the_header_are_the_canonical_labels(world: World) -> None:
    header = check_grant_header(world.message_grant.header)
    assert Label.from_canonical(header.previous_label, CATALOG) == LABEL
    assert Label.from_canonical(header.label, CATALOG) == WIDER


# ---------------------------------------------------------------------------------------------
# History grants (PROTOCOL.md §16.7)


def _history(world: World, **fields: Any) -> SealedGrant:
    values: dict[str, Any] = {"request_id": None, "previous_label": LABEL, "label": LABEL}
    return _grant(
        world.grantor,
        world.message_key,
        [world.fra1],
        item_type="message",
        item_id=world.message.header["message_id"],
        **(values | fields),
    )


def test_a_history_grant_opens_the_item_under_its_own_label(world: World) -> None:
    sealed = _history(world)
    header = check_grant_header(sealed.header)
    assert header.is_history
    assert sealed.header["request_id"] is None
    key = open_grant(
        world.fra1.keys,
        world.fra1.device_id,
        sealed.header,
        sealed.signature,
        sealed.envelopes[world.fra1.device_id],
        world.grantor.signing_key,
    )
    assert decrypt_with_item_key(world.message, key, world.sender.signing_key) == PLAINTEXT
    assert grants.check_history_labels(header, world.message.header["label"], CATALOG) == LABEL


def test_a_history_grant_may_carry_the_label_a_release_left(world: World) -> None:
    header = check_grant_header(_history(world, label=WIDER).header)
    assert grants.check_history_labels(header, world.message.header["label"], CATALOG) == WIDER


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"previous_label": WIDER, "label": WIDER}, "other than the one the sender signed"),
        (
            {"label": parse_label("NATO SECRET//REL TO USA", CATALOG, originator="GBR")},
            "narrows",
        ),
        (
            {"label": parse_label("NATO CONFIDENTIAL//REL TO USA, GBR", CATALOG, originator="GBR")},
            "changes level",
        ),
        ({"request_id": str(uuid.uuid4()), "label": WIDER}, "release grant"),
    ],
)
def test_a_history_grant_cannot_change_the_label(
    world: World, fields: dict[str, Any], match: str
) -> None:
    header = check_grant_header(_history(world, **fields).header)
    with pytest.raises(EnvelopeError, match=match):
        grants.check_history_labels(header, world.message.header["label"], CATALOG)
