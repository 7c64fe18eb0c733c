"""Audiences and messages: the only place that composes HPKE, HKDF, AES-GCM and signatures for
content. ``docs/PROTOCOL.md`` is the byte-level contract; this module implements it.

Audience
    An immutable set of devices in one container, made by a sender's device: a random 32-byte
    audience key, a header signed by the creator device (which binds the sorted device ids and
    a digest of the exact keys sealed to), and one HPKE envelope of the audience key per device,
    whose ``info`` binds it to the audience, the device and the header.

Message
    A header (``hd`` is its digest), a per-message key ``HKDF-SHA256(audience key, info=CTX ||
    hd)``, a body ``nonce || key commitment || AES-256-GCM(message key, nonce, plaintext,
    aad=CTX || hd)`` and the sender device's signature over ``hd`` and the body digest. The
    message key is also the item key that a grant seals to devices outside the audience.

Every failure to check, verify or open raises ``EnvelopeError`` (a ValueError) whose message
names what failed. Nothing here trusts its input: headers are checked field by field, sizes are
bounded before any work, and signatures are verified before anything is decrypted.
"""

from __future__ import annotations

import hmac
import itertools
import re
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from protocol.canonical import (
    CTX_AUDIENCE_DEVICES,
    CTX_AUDIENCE_ENVELOPE,
    CTX_AUDIENCE_HEADER,
    CTX_AUDIENCE_SIGNATURE,
    CTX_MESSAGE_BODY,
    CTX_MESSAGE_BODY_DIGEST,
    CTX_MESSAGE_HEADER,
    CTX_MESSAGE_KEY,
    CTX_MESSAGE_KEY_COMMITMENT,
    CTX_MESSAGE_SIGNATURE,
    CanonicalizationError,
    canonical_json,
    copy_json,
    digest,
    with_context,
)
from protocol.keys import (
    HPKE_SUITE,
    SIGNATURE_SIZE,
    DeviceKeys,
    DevicePublicKeys,
    _b64u_decode_sized,
    _load_json_object,
    b64u_decode,
    b64u_encode,
    format_utc_time,
    load_signing_public_key,
    parse_utc_time,
)
from protocol.labels import Label

__all__ = [
    "AUDIENCE_FIELDS",
    "AUDIENCE_KEY_SIZE",
    "AUDIENCE_TYPE",
    "AUDIENCE_VERSION",
    "ENVELOPE_SIZE",
    "MAX_AUDIENCE_DEVICES",
    "MAX_CONTENT_TYPE_LENGTH",
    "MAX_ID_LENGTH",
    "MAX_LABEL_BYTES",
    "MAX_MESSAGE_BODY",
    "MAX_MESSAGE_PLAINTEXT",
    "MESSAGE_BODY_OVERHEAD",
    "MESSAGE_FIELDS",
    "MESSAGE_KEY_SIZE",
    "MESSAGE_TYPE",
    "MESSAGE_VERSION",
    "AudienceHeader",
    "EnvelopeError",
    "MessageHeader",
    "Recipient",
    "SealedAudience",
    "SealedMessage",
    "audience_header_digest",
    "check_audience_header",
    "check_message_header",
    "create_audience",
    "decrypt_message",
    "decrypt_with_item_key",
    "device_keys_digest",
    "encrypt_message",
    "message_header_digest",
    "message_key",
    "open_audience_envelope",
    "verify_audience",
    "verify_message",
    "verify_message_json",
]

AUDIENCE_TYPE: Final = "attache.audience"
AUDIENCE_VERSION: Final = 1
MESSAGE_TYPE: Final = "attache.message"
MESSAGE_VERSION: Final = 1

AUDIENCE_KEY_SIZE: Final = 32
MESSAGE_KEY_SIZE: Final = 32
DIGEST_SIZE: Final = 32
NONCE_SIZE: Final = 12
TAG_SIZE: Final = 16
KEY_COMMITMENT_SIZE: Final = 32
#: ``nonce (12) || key commitment (32) || ciphertext || tag (16)``: a body is this much longer
#: than its plaintext.
MESSAGE_BODY_OVERHEAD: Final = NONCE_SIZE + KEY_COMMITMENT_SIZE + TAG_SIZE
#: HPKE ``enc`` of X-Wing (1,120 bytes) followed by the sealed 32-byte audience key and its tag.
ENVELOPE_SIZE: Final = 1120 + AUDIENCE_KEY_SIZE + TAG_SIZE

MAX_MESSAGE_PLAINTEXT: Final = 256 * 1024
MAX_MESSAGE_BODY: Final = MAX_MESSAGE_PLAINTEXT + MESSAGE_BODY_OVERHEAD
MAX_AUDIENCE_DEVICES: Final = 1000
MAX_ID_LENGTH: Final = 64
MAX_CONTENT_TYPE_LENGTH: Final = 100
#: Bound on the RFC 8785 bytes of a message header's label.
MAX_LABEL_BYTES: Final = 8 * 1024

AUDIENCE_FIELDS: Final = frozenset(
    {
        "type",
        "version",
        "audience_id",
        "container",
        "creator_user",
        "creator_device",
        "devices",
        "device_keys_digest",
        "created_at",
    }
)
MESSAGE_FIELDS: Final = frozenset(
    {
        "type",
        "version",
        "message_id",
        "container",
        "sender_user",
        "sender_device",
        "audience_id",
        "sent_at",
        "label",
        "content_type",
        "reply_to",
    }
)

# Ids are ASCII, so "sorted ascending" means the same by code point, UTF-8 byte and UTF-16 unit.
_ID = re.compile(rf"[A-Za-z0-9._:-]{{1,{MAX_ID_LENGTH}}}")
# Client-chosen ids (audience, message) are UUIDs in their one canonical text form, so that an
# idempotency key cannot be spelled two ways.
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_CONTENT_TYPE = re.compile(rf"[\x20-\x7e]{{1,{MAX_CONTENT_TYPE_LENGTH}}}")


class EnvelopeError(ValueError):
    """An audience or message that is malformed, not validly signed, or cannot be opened."""


# --------------------------------------------------------------------------------------------
# Field checks


def _require_fields(header: Any, fields: frozenset[str], kind: str, type_: str) -> None:
    if not isinstance(header, Mapping):
        raise EnvelopeError(f"{kind} header must be a JSON object")
    if header.get("type") != type_:
        raise EnvelopeError(f"{kind} header field type must be {type_!r}")
    version = header.get("version")
    if type(version) is not int or version != 1:
        raise EnvelopeError(f"{kind} header field version: unsupported version {version!r}")
    present = set(header)
    if missing := fields - present:
        raise EnvelopeError(f"{kind} header lacks {', '.join(sorted(missing))}")
    if unknown := present - fields:
        raise EnvelopeError(
            f"{kind} header has unknown fields {', '.join(sorted(map(str, unknown)))}"
        )


def _id_field(header: Mapping[str, Any], name: str, kind: str) -> str:
    value = header[name]
    if not isinstance(value, str) or _ID.fullmatch(value) is None:
        raise EnvelopeError(
            f"{kind} header field {name} must be 1 to {MAX_ID_LENGTH} characters of "
            "A-Z a-z 0-9 . _ : -"
        )
    return value


def _uuid_field(header: Mapping[str, Any], name: str, kind: str) -> str:
    value = header[name]
    if not isinstance(value, str) or _UUID.fullmatch(value) is None:
        raise EnvelopeError(f"{kind} header field {name} must be a lower-case hyphenated UUID")
    return value


def _time_field(header: Mapping[str, Any], name: str, kind: str) -> datetime:
    try:
        return parse_utc_time(header[name])
    except ValueError as exc:
        raise EnvelopeError(f"{kind} header field {name} is malformed: {exc}") from exc


def _header_digest(context: str, header: Mapping[str, Any], kind: str) -> bytes:
    try:
        return digest(context, canonical_json(header))
    except CanonicalizationError as exc:  # pragma: no cover - fields are checked first
        raise EnvelopeError(f"{kind} header is not canonical JSON: {exc}") from exc


def _key_bytes(key: bytes, size: int, what: str) -> bytes:
    if not isinstance(key, bytes | bytearray | memoryview) or len(key) != size:
        raise EnvelopeError(f"{what} must be {size} bytes")
    return bytes(key)


def _verify(public_key: bytes, signature: bytes, message: bytes, what: str) -> None:
    try:
        verifier = load_signing_public_key(public_key)
    except ValueError as exc:
        raise EnvelopeError(f"{what}: the signing key is malformed: {exc}") from exc
    if len(signature) != SIGNATURE_SIZE:
        raise EnvelopeError(f"{what}: a signature is {SIGNATURE_SIZE} bytes")
    try:
        verifier.verify(bytes(signature), message)
    except InvalidSignature as exc:
        raise EnvelopeError(f"{what} is not valid for this signing key") from exc


def _load_wire(value: Mapping[str, Any] | str | bytes, kind: str) -> Mapping[str, Any]:
    if isinstance(value, str | bytes):
        try:
            return _load_json_object(value)
        except ValueError as exc:
            raise EnvelopeError(f"{kind} is not a JSON object: {exc}") from exc
    if not isinstance(value, Mapping):
        raise EnvelopeError(f"{kind} must be a JSON object")
    return value


def _wire_bytes(value: Any, what: str, *, size: int | None = None, maximum: int = 0) -> bytes:
    if not isinstance(value, str):
        raise EnvelopeError(f"{what} must be a base64url string")
    if size is None and len(value) > (maximum * 4 + 2) // 3:
        raise EnvelopeError(f"{what} is longer than {maximum} bytes")
    try:
        return _b64u_decode_sized(value, size, what) if size is not None else b64u_decode(value)
    except ValueError as exc:
        raise EnvelopeError(f"{what} is malformed: {exc}") from exc


# --------------------------------------------------------------------------------------------
# Audiences


@dataclass(frozen=True, slots=True)
class Recipient:
    """A device an audience is sealed to, with the public keys the creator checked."""

    device_id: str
    keys: DevicePublicKeys


@dataclass(frozen=True, slots=True)
class AudienceHeader:
    """The checked content of an audience header, and its digest ``hd``."""

    audience_id: str
    container: str
    creator_user: str
    creator_device: str
    devices: tuple[str, ...]
    device_keys_digest: str
    created_at: datetime
    header_digest: bytes

    def to_json(self) -> dict[str, Any]:
        return {
            "type": AUDIENCE_TYPE,
            "version": AUDIENCE_VERSION,
            "audience_id": self.audience_id,
            "container": self.container,
            "creator_user": self.creator_user,
            "creator_device": self.creator_device,
            "devices": list(self.devices),
            "device_keys_digest": self.device_keys_digest,
            "created_at": format_utc_time(self.created_at),
        }


def _device_list(header: Mapping[str, Any], kind: str, maximum: int) -> list[str]:
    """A header's ``devices``: a list of 1 to ``maximum`` ids in strictly ascending order."""
    devices = header["devices"]
    if not isinstance(devices, list) or not 1 <= len(devices) <= maximum:
        raise EnvelopeError(f"{kind} header field devices must be a list of 1 to {maximum} ids")
    for device in devices:
        if not isinstance(device, str) or _ID.fullmatch(device) is None:
            raise EnvelopeError(f"{kind} header field devices holds a malformed id {device!r}")
    if any(a >= b for a, b in itertools.pairwise(devices)):
        raise EnvelopeError(f"{kind} header field devices must be sorted ascending and unique")
    return devices


def check_audience_header(header: Mapping[str, Any]) -> AudienceHeader:
    """Check an audience header's structure (not its signature) and type its fields.

    All of ``AUDIENCE_FIELDS`` and no other; ``devices`` a non-empty list of at most
    ``MAX_AUDIENCE_DEVICES`` ids in strictly ascending order; ``device_keys_digest`` b64u of
    32 bytes; ``created_at`` RFC 3339 UTC. Raises EnvelopeError naming the field.
    """
    kind = "audience"
    _require_fields(header, AUDIENCE_FIELDS, kind, AUDIENCE_TYPE)
    devices = _device_list(header, kind, MAX_AUDIENCE_DEVICES)
    keys_digest = header["device_keys_digest"]
    _wire_bytes(keys_digest, "audience header field device_keys_digest", size=DIGEST_SIZE)
    return AudienceHeader(
        audience_id=_uuid_field(header, "audience_id", kind),
        container=_id_field(header, "container", kind),
        creator_user=_id_field(header, "creator_user", kind),
        creator_device=_id_field(header, "creator_device", kind),
        devices=tuple(devices),
        device_keys_digest=keys_digest,
        created_at=_time_field(header, "created_at", kind),
        header_digest=_header_digest(CTX_AUDIENCE_HEADER, header, kind),
    )


def audience_header_digest(header: Mapping[str, Any]) -> bytes:
    """``hd = digest(CTX_AUDIENCE_HEADER, canonical_json(header))`` of a checked header."""
    return check_audience_header(header).header_digest


def device_keys_digest(recipients: Iterable[Recipient]) -> str:
    """b64u of ``digest(CTX_AUDIENCE_DEVICES, canonical_json([[device_id, b64u(signing_key),
    b64u(encryption_key)], ...]))`` with the entries sorted by device id.

    This binds the exact keys an audience was sealed to; the server recomputes it from its own
    records. Raises EnvelopeError for a repeated device id.
    """
    entries = sorted(
        [r.device_id, b64u_encode(r.keys.signing_key), b64u_encode(r.keys.encryption_key)]
        for r in recipients
    )
    if any(a[0] == b[0] for a, b in itertools.pairwise(entries)):
        raise EnvelopeError("a device appears twice among the recipients")
    return b64u_encode(digest(CTX_AUDIENCE_DEVICES, canonical_json(entries)))


def _audience_signing_input(header_digest: bytes) -> bytes:
    return with_context(CTX_AUDIENCE_SIGNATURE, header_digest)


def _envelope_info(audience_id: str, device_id: str, header_digest: bytes) -> bytes:
    return with_context(
        CTX_AUDIENCE_ENVELOPE,
        canonical_json(
            {
                "audience_id": audience_id,
                "device_id": device_id,
                "header_digest": b64u_encode(header_digest),
            }
        ),
    )


def _sealed_to_json(
    header: Mapping[str, Any], signature: bytes, envelopes: Mapping[str, bytes]
) -> dict[str, Any]:
    """``{"header": {...}, "signature": b64u, "envelopes": {device_id: b64u}}``."""
    return {
        "header": copy_json(dict(header)),
        "signature": b64u_encode(signature),
        "envelopes": {device: b64u_encode(env) for device, env in envelopes.items()},
    }


def _sealed_from_json(
    value: Mapping[str, Any] | str | bytes,
    kind: str,
    listed_devices: Callable[[Mapping[str, Any]], Sequence[str]],
    envelope_size: int,
    *,
    partial: bool,
) -> tuple[dict[str, Any], bytes, dict[str, bytes]]:
    """The checked parts of a sealed ``kind`` (audience, grant): header, signature, envelopes.

    ``listed_devices`` checks the header's structure and returns its device list. Envelopes
    must be exactly one per listed device, or with ``partial`` (what a device receives) any
    non-empty subset of them. Raises EnvelopeError.
    """
    value = _load_wire(value, f"sealed {kind}")
    if set(value) != {"header", "signature", "envelopes"}:
        raise EnvelopeError(f"a sealed {kind} has exactly header, signature and envelopes")
    listed = set(listed_devices(value["header"]))
    signature = _wire_bytes(value["signature"], f"{kind} signature", size=SIGNATURE_SIZE)
    envelopes = value["envelopes"]
    if not isinstance(envelopes, Mapping):
        raise EnvelopeError(f"{kind} envelopes must be a JSON object")
    if unknown := set(envelopes) - listed:
        raise EnvelopeError(
            f"{kind} envelopes for unlisted devices {', '.join(sorted(map(str, unknown)))}"
        )
    if not partial and (missing := listed - set(envelopes)):
        raise EnvelopeError(f"{kind} envelopes missing for {', '.join(sorted(missing))}")
    if not envelopes:
        raise EnvelopeError(f"a sealed {kind} carries at least one envelope")
    return (
        copy_json(dict(value["header"])),
        signature,
        {
            device: _wire_bytes(text, f"{kind} envelope for {device}", size=envelope_size)
            for device, text in envelopes.items()
        },
    )


@dataclass(frozen=True, slots=True)
class SealedAudience:
    """An audience as it travels: the header exactly as signed, the creator device's signature,
    and the envelopes by device id (all of them when created; a device receives only its own).
    """

    header: dict[str, Any]
    signature: bytes
    envelopes: dict[str, bytes]

    def to_json(self) -> dict[str, Any]:
        """``{"header": {...}, "signature": b64u, "envelopes": {device_id: b64u}}``."""
        return _sealed_to_json(self.header, self.signature, self.envelopes)

    @classmethod
    def from_json(
        cls, value: Mapping[str, Any] | str | bytes, *, partial: bool = False
    ) -> SealedAudience:
        """Inverse of ``to_json``, checking structure (not the signature).

        Envelopes must be exactly one per listed device, or with ``partial=True`` (what a
        device receives) any non-empty subset of the listed devices. Raises EnvelopeError.
        """
        header, signature, envelopes = _sealed_from_json(
            value,
            "audience",
            lambda h: check_audience_header(h).devices,
            ENVELOPE_SIZE,
            partial=partial,
        )
        return cls(header=header, signature=signature, envelopes=envelopes)


def create_audience(
    creator_keys: DeviceKeys,
    *,
    audience_id: str,
    container: str,
    creator_user: str,
    creator_device: str,
    recipients: Sequence[Recipient],
    created_at: datetime,
) -> tuple[SealedAudience, bytes]:
    """Make an audience: a fresh random audience key sealed to each recipient device.

    Returns the sealed audience and the audience key (which the creator keeps to encrypt
    messages). ``audience_id`` is a fresh UUID chosen by the client; ``created_at`` must be
    timezone-aware (truncated to seconds). The caller has already checked each recipient's
    certificate and eligibility. Raises EnvelopeError for a malformed field, a repeated or
    unusable recipient, or more than ``MAX_AUDIENCE_DEVICES`` recipients.
    """
    return _seal_audience(
        creator_keys,
        audience_id=audience_id,
        container=container,
        creator_user=creator_user,
        creator_device=creator_device,
        recipients=recipients,
        created_at=created_at,
        audience_key=secrets.token_bytes(AUDIENCE_KEY_SIZE),
    )


def _seal_audience(
    creator_keys: DeviceKeys,
    *,
    audience_id: str,
    container: str,
    creator_user: str,
    creator_device: str,
    recipients: Sequence[Recipient],
    created_at: datetime,
    audience_key: bytes,
) -> tuple[SealedAudience, bytes]:
    # The audience key is a parameter only so that the known-answer vector could be made once.
    audience_key = _key_bytes(audience_key, AUDIENCE_KEY_SIZE, "an audience key")
    if len(recipients) > MAX_AUDIENCE_DEVICES:
        raise EnvelopeError(f"an audience holds at most {MAX_AUDIENCE_DEVICES} devices")
    try:
        created = format_utc_time(created_at)
    except ValueError as exc:
        raise EnvelopeError(f"audience header field created_at: {exc}") from exc
    header: dict[str, Any] = {
        "type": AUDIENCE_TYPE,
        "version": AUDIENCE_VERSION,
        "audience_id": audience_id,
        "container": container,
        "creator_user": creator_user,
        "creator_device": creator_device,
        "devices": sorted(r.device_id for r in recipients),
        "device_keys_digest": device_keys_digest(recipients),
        "created_at": created,
    }
    checked = check_audience_header(header)
    hd = checked.header_digest
    signature = creator_keys.signing_private_key().sign(_audience_signing_input(hd))
    envelopes: dict[str, bytes] = {}
    for recipient in sorted(recipients, key=lambda r: r.device_id):
        try:
            public_key = recipient.keys.encryption_public_key()
        except ValueError as exc:
            raise EnvelopeError(
                f"the encryption key of device {recipient.device_id} is unusable: {exc}"
            ) from exc
        envelopes[recipient.device_id] = HPKE_SUITE.encrypt(
            audience_key, public_key, info=_envelope_info(audience_id, recipient.device_id, hd)
        )
    return SealedAudience(header=header, signature=signature, envelopes=envelopes), audience_key


def verify_audience(
    header: Mapping[str, Any], signature: bytes, creator_signing_key: bytes
) -> AudienceHeader:
    """Check an audience header and its creator device's signature.

    ``creator_signing_key`` is the Ed25519 public key (32 raw bytes) of the device the header
    names as ``creator_device``; the caller looks it up and checks it belongs to
    ``creator_user``. Raises EnvelopeError.
    """
    checked = check_audience_header(header)
    _verify(
        creator_signing_key,
        signature,
        _audience_signing_input(checked.header_digest),
        "audience signature",
    )
    return checked


def open_audience_envelope(
    device_keys: DeviceKeys,
    device_id: str,
    header: Mapping[str, Any],
    signature: bytes,
    envelope: bytes,
    creator_signing_key: bytes,
) -> bytes:
    """The audience key, for the device ``device_id`` holding ``device_keys``.

    Verifies the creator's signature, checks that the device is listed, and opens the envelope
    with ``info`` naming this audience, this device and this header. Raises EnvelopeError for
    any failure.
    """
    checked = verify_audience(header, signature, creator_signing_key)
    if device_id not in checked.devices:
        raise EnvelopeError(f"device {device_id} is not in audience {checked.audience_id}")
    if len(envelope) != ENVELOPE_SIZE:
        raise EnvelopeError(f"an audience envelope is {ENVELOPE_SIZE} bytes")
    try:
        audience_key = HPKE_SUITE.decrypt(
            bytes(envelope),
            device_keys.encryption_private_key(),
            info=_envelope_info(checked.audience_id, device_id, checked.header_digest),
        )
    except (InvalidTag, ValueError) as exc:
        raise EnvelopeError(
            f"the envelope of audience {checked.audience_id} does not open for device {device_id}"
        ) from exc
    if len(audience_key) != AUDIENCE_KEY_SIZE:
        raise EnvelopeError("the envelope does not hold a 32-byte audience key")
    return audience_key


# --------------------------------------------------------------------------------------------
# Messages


@dataclass(frozen=True, slots=True)
class MessageHeader:
    """The checked content of a message header, and its digest ``hd``.

    ``label`` is the canonical label JSON as sent; parse it with ``Label.from_canonical``.
    """

    message_id: str
    container: str
    sender_user: str
    sender_device: str
    audience_id: str
    sent_at: datetime
    label: Mapping[str, Any]
    content_type: str
    reply_to: str | None
    header_digest: bytes

    def to_json(self) -> dict[str, Any]:
        return {
            "type": MESSAGE_TYPE,
            "version": MESSAGE_VERSION,
            "message_id": self.message_id,
            "container": self.container,
            "sender_user": self.sender_user,
            "sender_device": self.sender_device,
            "audience_id": self.audience_id,
            "sent_at": format_utc_time(self.sent_at),
            "label": copy_json(dict(self.label)),
            "content_type": self.content_type,
            "reply_to": self.reply_to,
        }


def check_message_header(header: Mapping[str, Any]) -> MessageHeader:
    """Check a message header's structure (not its signature) and type its fields.

    All of ``MESSAGE_FIELDS`` and no other. The label must be a JSON object of at most
    ``MAX_LABEL_BYTES`` canonical bytes; it is not checked against a catalog here. Raises
    EnvelopeError naming the field.
    """
    kind = "message"
    _require_fields(header, MESSAGE_FIELDS, kind, MESSAGE_TYPE)
    label = header["label"]
    if not isinstance(label, Mapping):
        raise EnvelopeError("message header field label must be a JSON object")
    try:
        label_bytes = canonical_json(label)
    except CanonicalizationError as exc:
        raise EnvelopeError(f"message header field label is not canonical JSON: {exc}") from exc
    if len(label_bytes) > MAX_LABEL_BYTES:
        raise EnvelopeError(f"message header field label is longer than {MAX_LABEL_BYTES} bytes")
    content_type = header["content_type"]
    if not isinstance(content_type, str) or _CONTENT_TYPE.fullmatch(content_type) is None:
        raise EnvelopeError(
            f"message header field content_type must be 1 to {MAX_CONTENT_TYPE_LENGTH} "
            "printable ASCII characters"
        )
    reply_to = None if header["reply_to"] is None else _uuid_field(header, "reply_to", kind)
    return MessageHeader(
        message_id=_uuid_field(header, "message_id", kind),
        container=_id_field(header, "container", kind),
        sender_user=_id_field(header, "sender_user", kind),
        sender_device=_id_field(header, "sender_device", kind),
        audience_id=_uuid_field(header, "audience_id", kind),
        sent_at=_time_field(header, "sent_at", kind),
        label=copy_json(dict(label)),
        content_type=content_type,
        reply_to=reply_to,
        header_digest=_header_digest(CTX_MESSAGE_HEADER, header, kind),
    )


def message_header_digest(header: Mapping[str, Any]) -> bytes:
    """``hd = digest(CTX_MESSAGE_HEADER, canonical_json(header))`` of a checked header."""
    return check_message_header(header).header_digest


def _derive_message_key(audience_key: bytes, header_digest: bytes) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(),
        length=MESSAGE_KEY_SIZE,
        salt=None,
        info=with_context(CTX_MESSAGE_KEY, header_digest),
    ).derive(audience_key)


def message_key(audience_key: bytes, header: Mapping[str, Any]) -> bytes:
    """The per-message key: HKDF-SHA256(ikm=audience key, no salt, info=with_context(
    CTX_MESSAGE_KEY, hd)), 32 bytes. It is also the item key a grant seals (never the
    audience key)."""
    audience_key = _key_bytes(audience_key, AUDIENCE_KEY_SIZE, "an audience key")
    return _derive_message_key(audience_key, check_message_header(header).header_digest)


def _key_commitment(item_key: bytes) -> bytes:
    return digest(CTX_MESSAGE_KEY_COMMITMENT, item_key)


def _body_digest(body: bytes) -> bytes:
    return digest(CTX_MESSAGE_BODY_DIGEST, body)


def _message_signing_input(header_digest: bytes, body: bytes) -> bytes:
    # Both digests are 32 bytes, so the concatenation is unambiguous.
    return with_context(CTX_MESSAGE_SIGNATURE, header_digest + _body_digest(body))


@dataclass(frozen=True, slots=True)
class SealedMessage:
    """A message as it travels: the header exactly as signed, the body and the signature."""

    header: dict[str, Any]
    body: bytes
    signature: bytes

    def to_json(self) -> dict[str, Any]:
        """``{"header": {...}, "body": b64u, "signature": b64u}``."""
        return {
            "header": copy_json(self.header),
            "body": b64u_encode(self.body),
            "signature": b64u_encode(self.signature),
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any] | str | bytes) -> SealedMessage:
        """Inverse of ``to_json``, checking structure and sizes (not the signature)."""
        return _sealed_from_wire(value)[0]


def _sealed_from_wire(
    value: Mapping[str, Any] | str | bytes,
) -> tuple[SealedMessage, MessageHeader]:
    """``SealedMessage.from_json``, with the header it checked."""
    value = _load_wire(value, "sealed message")
    if set(value) != {"header", "body", "signature"}:
        raise EnvelopeError("a sealed message has exactly header, body and signature")
    checked = check_message_header(value["header"])
    body = _wire_bytes(value["body"], "message body", maximum=MAX_MESSAGE_BODY)
    _check_body_size(body)
    sealed = SealedMessage(
        header=copy_json(dict(value["header"])),
        body=body,
        signature=_wire_bytes(value["signature"], "message signature", size=SIGNATURE_SIZE),
    )
    return sealed, checked


def _check_body_size(body: bytes) -> None:
    if len(body) < MESSAGE_BODY_OVERHEAD:
        raise EnvelopeError(f"a message body is at least {MESSAGE_BODY_OVERHEAD} bytes")
    if len(body) > MAX_MESSAGE_BODY:
        raise EnvelopeError(f"a message body is at most {MAX_MESSAGE_BODY} bytes")


def encrypt_message(
    sender_keys: DeviceKeys,
    audience_key: bytes,
    plaintext: bytes,
    *,
    message_id: str,
    container: str,
    sender_user: str,
    sender_device: str,
    audience_id: str,
    sent_at: datetime,
    label: Label | Mapping[str, Any],
    content_type: str,
    reply_to: str | None = None,
) -> SealedMessage:
    """Encrypt and sign a message for the audience whose key is ``audience_key``.

    ``message_id`` is a fresh UUID chosen by the client and reused on retries (the server's
    idempotency key); each call draws a fresh nonce, so a retry never reuses a (key, nonce)
    pair. ``label`` is a Label or its canonical dict. ``sent_at`` must be timezone-aware
    (truncated to seconds). Raises EnvelopeError for a malformed field or a plaintext longer
    than ``MAX_MESSAGE_PLAINTEXT``.
    """
    try:
        sent = format_utc_time(sent_at)
    except ValueError as exc:
        raise EnvelopeError(f"message header field sent_at: {exc}") from exc
    header: dict[str, Any] = {
        "type": MESSAGE_TYPE,
        "version": MESSAGE_VERSION,
        "message_id": message_id,
        "container": container,
        "sender_user": sender_user,
        "sender_device": sender_device,
        "audience_id": audience_id,
        "sent_at": sent,
        "label": label.canonical() if isinstance(label, Label) else copy_json(dict(label)),
        "content_type": content_type,
        "reply_to": reply_to,
    }
    return _seal_message(
        sender_keys, audience_key, header, plaintext, secrets.token_bytes(NONCE_SIZE)
    )


def _seal_message(
    sender_keys: DeviceKeys,
    audience_key: bytes,
    header: dict[str, Any],
    plaintext: bytes,
    nonce: bytes,
) -> SealedMessage:
    # The nonce is a parameter only so that the known-answer vector could be made once; a
    # nonce must never be reused under one message key.
    if len(plaintext) > MAX_MESSAGE_PLAINTEXT:
        raise EnvelopeError(f"a message plaintext is at most {MAX_MESSAGE_PLAINTEXT} bytes")
    audience_key = _key_bytes(audience_key, AUDIENCE_KEY_SIZE, "an audience key")
    hd = check_message_header(header).header_digest
    key = _derive_message_key(audience_key, hd)
    ciphertext = AESGCM(key).encrypt(nonce, bytes(plaintext), with_context(CTX_MESSAGE_BODY, hd))
    body = nonce + _key_commitment(key) + ciphertext
    signature = sender_keys.signing_private_key().sign(_message_signing_input(hd, body))
    return SealedMessage(header=header, body=body, signature=signature)


def verify_message(sealed: SealedMessage, sender_signing_key: bytes) -> MessageHeader:
    """Check a message's header and size, and the sender device's signature over the header
    digest and body digest. No key is needed: this is what the server checks.

    ``sender_signing_key`` is the Ed25519 public key (32 raw bytes) of the device the header
    names as ``sender_device``; the caller looks it up. Raises EnvelopeError.
    """
    checked = check_message_header(sealed.header)
    _check_body_size(sealed.body)
    _verify_message_signature(sealed, checked, sender_signing_key)
    return checked


def verify_message_json(
    value: Mapping[str, Any] | str | bytes, sender_signing_key: bytes
) -> tuple[SealedMessage, MessageHeader]:
    """``SealedMessage.from_json`` then ``verify_message``, checking the header once (a
    submit's header and label are canonicalised once, not twice). Raises EnvelopeError."""
    sealed, checked = _sealed_from_wire(value)
    _verify_message_signature(sealed, checked, sender_signing_key)
    return sealed, checked


def _verify_message_signature(
    sealed: SealedMessage, checked: MessageHeader, sender_signing_key: bytes
) -> None:
    _verify(
        sender_signing_key,
        sealed.signature,
        _message_signing_input(checked.header_digest, sealed.body),
        "message signature",
    )


def _open_body(checked: MessageHeader, body: bytes, item_key: bytes) -> bytes:
    nonce = body[:NONCE_SIZE]
    commitment = body[NONCE_SIZE : NONCE_SIZE + KEY_COMMITMENT_SIZE]
    if not hmac.compare_digest(commitment, _key_commitment(item_key)):
        raise EnvelopeError(f"message {checked.message_id} was not encrypted under this key")
    try:
        return AESGCM(item_key).decrypt(
            nonce,
            body[NONCE_SIZE + KEY_COMMITMENT_SIZE :],
            with_context(CTX_MESSAGE_BODY, checked.header_digest),
        )
    except InvalidTag as exc:
        raise EnvelopeError(f"message {checked.message_id} does not decrypt") from exc


def decrypt_with_item_key(
    sealed: SealedMessage, item_key: bytes, sender_signing_key: bytes
) -> bytes:
    """The plaintext of a message, given its item (message) key, e.g. from a grant.

    Verifies the signature first, then the key commitment, then decrypts. Raises EnvelopeError.
    """
    item_key = _key_bytes(item_key, MESSAGE_KEY_SIZE, "an item key")
    checked = verify_message(sealed, sender_signing_key)
    return _open_body(checked, sealed.body, item_key)


def decrypt_message(sealed: SealedMessage, audience_key: bytes, sender_signing_key: bytes) -> bytes:
    """The plaintext of a message, given the audience key (from ``open_audience_envelope``).

    Verifies the sender's signature first, then derives the message key, checks the key
    commitment and decrypts. Raises EnvelopeError. The caller still checks the label
    (``Label.from_canonical``), that ``sender_device`` belongs to ``sender_user``, and that the
    header's container and audience are the ones it expects.
    """
    audience_key = _key_bytes(audience_key, AUDIENCE_KEY_SIZE, "an audience key")
    checked = verify_message(sealed, sender_signing_key)
    item_key = _derive_message_key(audience_key, checked.header_digest)
    return _open_body(checked, sealed.body, item_key)
