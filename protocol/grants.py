"""Item grants: releasing one item (a message or a document version) to further devices, after a
disclosure officer approved a wider label. ``docs/PROTOCOL.md`` ("Item grants and label
versions") is the byte-level contract; this module implements it.

Grant
    A *label version* statement signed by the granting device: a header naming the release
    request, the item, its previous label and the approved wider label, the devices it is
    sealed to (with a digest of their exact keys) and a commitment to the item key; ``hd`` is
    its digest. The *item key* (the message key, or the document-version key: never the
    audience key) is sealed with HPKE to each listed device, with an ``info`` that binds the
    grant, the device and ``hd``.

History grant
    The same header with ``request_id`` null: the item's key sealed to devices of members who
    joined after it was sent, whom its label (``previous_label``, the item's own, and
    ``label``, its label now) already admits. No approval, no widening by the grant itself;
    ``check_history_labels`` is the recipient's check of its labels.

A recipient opens its envelope, checks the opened key against the signed commitment, and then
decrypts the item with that key (``envelopes.decrypt_with_item_key`` or
``stream.DocumentDecryptor``), whose own signed commitment proves the key is the item's.

Every failure to check, verify or open raises ``EnvelopeError`` (a ValueError) whose message
names what failed. Nothing here trusts its input: headers are checked field by field, sizes are
bounded before any work, and signatures are verified before anything is decrypted.
"""

from __future__ import annotations

import copy
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from cryptography.exceptions import InvalidTag

from protocol.canonical import (
    CTX_GRANT_ENVELOPE,
    CTX_GRANT_HEADER,
    CTX_GRANT_ITEM_KEY_COMMITMENT,
    CTX_GRANT_SIGNATURE,
    CanonicalizationError,
    canonical_json,
    digest,
    with_context,
)
from protocol.catalog import Catalog
from protocol.envelopes import (
    DIGEST_SIZE,
    ENVELOPE_SIZE,
    MAX_AUDIENCE_DEVICES,
    MAX_LABEL_BYTES,
    MESSAGE_KEY_SIZE,
    EnvelopeError,
    Recipient,
    _device_list,
    _header_digest,
    _id_field,
    _key_bytes,
    _require_fields,
    _sealed_from_json,
    _sealed_to_json,
    _time_field,
    _uuid_field,
    _verify,
    _wire_bytes,
    check_message_header,
    device_keys_digest,
)
from protocol.keys import (
    HPKE_SUITE,
    DeviceKeys,
    b64u_encode,
    format_utc_time,
)
from protocol.labels import Label, LabelError, expand_releasability
from protocol.stream import DocumentError, check_document_header

__all__ = [
    "GRANT_ENVELOPE_SIZE",
    "GRANT_FIELDS",
    "GRANT_TYPE",
    "GRANT_VERSION",
    "ITEM_KEY_SIZE",
    "ITEM_TYPES",
    "MAX_GRANT_DEVICES",
    "GrantHeader",
    "SealedGrant",
    "check_grant_header",
    "check_grant_item",
    "check_history_labels",
    "check_label_widening",
    "create_grant",
    "grant_header_digest",
    "item_key_commitment",
    "open_grant",
    "verify_grant",
]

GRANT_TYPE: Final = "attache.grant"
GRANT_VERSION: Final = 1

#: The item key is a message key or a document-version key; both are 32 bytes
#: (``envelopes.MESSAGE_KEY_SIZE`` and ``stream.DOCUMENT_KEY_SIZE``).
ITEM_KEY_SIZE: Final = MESSAGE_KEY_SIZE
#: HPKE ``enc`` of X-Wing (1,120 bytes), the sealed 32-byte item key and its tag: the same size
#: as an audience envelope.
GRANT_ENVELOPE_SIZE: Final = ENVELOPE_SIZE
MAX_GRANT_DEVICES: Final = MAX_AUDIENCE_DEVICES
ITEM_TYPES: Final = frozenset({"message", "document_version"})

GRANT_FIELDS: Final = frozenset(
    {
        "type",
        "version",
        "grant_id",
        "request_id",
        "item_type",
        "item_id",
        "container",
        "grantor_user",
        "grantor_device",
        "previous_label",
        "label",
        "devices",
        "device_keys_digest",
        "item_key_commitment",
        "created_at",
    }
)


# --------------------------------------------------------------------------------------------
# Header


@dataclass(frozen=True, slots=True)
class GrantHeader:
    """The checked content of a grant header (a label version), and its digest ``hd``.

    ``previous_label`` and ``label`` are the canonical label JSON as sent; parse them with
    ``Label.from_canonical`` (``check_label_widening`` does). ``request_id`` is None in a
    history grant (``is_history``). ``item_id`` is the message id of
    a message, the version id of a document version.
    """

    grant_id: str
    request_id: str | None  # None in a history grant
    item_type: str
    item_id: str
    container: str
    grantor_user: str
    grantor_device: str
    previous_label: Mapping[str, Any]
    label: Mapping[str, Any]
    devices: tuple[str, ...]
    device_keys_digest: str
    item_key_commitment: str
    created_at: datetime
    header_digest: bytes

    @property
    def is_history(self) -> bool:
        """A history grant: no release request, the item's own label unchanged or as a release
        left it (PROTOCOL.md §16.7)."""
        return self.request_id is None

    def to_json(self) -> dict[str, Any]:
        return {
            "type": GRANT_TYPE,
            "version": GRANT_VERSION,
            "grant_id": self.grant_id,
            "request_id": self.request_id,
            "item_type": self.item_type,
            "item_id": self.item_id,
            "container": self.container,
            "grantor_user": self.grantor_user,
            "grantor_device": self.grantor_device,
            "previous_label": copy.deepcopy(dict(self.previous_label)),
            "label": copy.deepcopy(dict(self.label)),
            "devices": list(self.devices),
            "device_keys_digest": self.device_keys_digest,
            "item_key_commitment": self.item_key_commitment,
            "created_at": format_utc_time(self.created_at),
        }


def _label_field(header: Mapping[str, Any], name: str) -> dict[str, Any]:
    label = header[name]
    if not isinstance(label, Mapping):
        raise EnvelopeError(f"grant header field {name} must be a JSON object")
    try:
        label_bytes = canonical_json(label)
    except CanonicalizationError as exc:
        raise EnvelopeError(f"grant header field {name} is not canonical JSON: {exc}") from exc
    if len(label_bytes) > MAX_LABEL_BYTES:
        raise EnvelopeError(f"grant header field {name} is longer than {MAX_LABEL_BYTES} bytes")
    return copy.deepcopy(dict(label))


def check_grant_header(header: Mapping[str, Any]) -> GrantHeader:
    """Check a grant header's structure (not its signature) and type its fields.

    All of ``GRANT_FIELDS`` and no other; ``grant_id`` and ``item_id`` lower-case UUIDs;
    ``request_id`` one too, or null in a history grant; ``item_type`` ``"message"`` or
    ``"document_version"``; both labels JSON objects of at most ``MAX_LABEL_BYTES`` canonical
    bytes (not checked against a catalog here); ``devices`` a non-empty list of at most
    ``MAX_GRANT_DEVICES`` ids in strictly ascending order; ``device_keys_digest`` and
    ``item_key_commitment`` b64u of 32 bytes; ``created_at`` RFC 3339 UTC. Raises
    EnvelopeError naming the field.
    """
    kind = "grant"
    _require_fields(header, GRANT_FIELDS, kind, GRANT_TYPE)
    item_type = header["item_type"]
    if not isinstance(item_type, str) or item_type not in ITEM_TYPES:
        raise EnvelopeError("grant header field item_type must be 'message' or 'document_version'")
    devices = _device_list(header, kind, MAX_GRANT_DEVICES)
    keys_digest = header["device_keys_digest"]
    _wire_bytes(keys_digest, "grant header field device_keys_digest", size=DIGEST_SIZE)
    commitment = header["item_key_commitment"]
    _wire_bytes(commitment, "grant header field item_key_commitment", size=DIGEST_SIZE)
    return GrantHeader(
        grant_id=_uuid_field(header, "grant_id", kind),
        request_id=(
            None if header["request_id"] is None else _uuid_field(header, "request_id", kind)
        ),
        item_type=item_type,
        item_id=_uuid_field(header, "item_id", kind),
        container=_id_field(header, "container", kind),
        grantor_user=_id_field(header, "grantor_user", kind),
        grantor_device=_id_field(header, "grantor_device", kind),
        previous_label=_label_field(header, "previous_label"),
        label=_label_field(header, "label"),
        devices=tuple(devices),
        device_keys_digest=keys_digest,
        item_key_commitment=commitment,
        created_at=_time_field(header, "created_at", kind),
        header_digest=_header_digest(CTX_GRANT_HEADER, header, kind),
    )


def grant_header_digest(header: Mapping[str, Any]) -> bytes:
    """``hd = digest(CTX_GRANT_HEADER, canonical_json(header))`` of a checked header."""
    return check_grant_header(header).header_digest


def item_key_commitment(item_key: bytes) -> str:
    """b64u of ``digest(CTX_GRANT_ITEM_KEY_COMMITMENT, item_key)``, the header's
    ``item_key_commitment``. Raises EnvelopeError unless the key is 32 bytes."""
    item_key = _key_bytes(item_key, ITEM_KEY_SIZE, "an item key")
    return b64u_encode(digest(CTX_GRANT_ITEM_KEY_COMMITMENT, item_key))


def _grant_signing_input(header_digest: bytes) -> bytes:
    return with_context(CTX_GRANT_SIGNATURE, header_digest)


def _envelope_info(grant_id: str, device_id: str, header_digest: bytes) -> bytes:
    return with_context(
        CTX_GRANT_ENVELOPE,
        canonical_json(
            {
                "grant_id": grant_id,
                "device_id": device_id,
                "header_digest": b64u_encode(header_digest),
            }
        ),
    )


# --------------------------------------------------------------------------------------------
# Labels and items: what a recipient checks besides the cryptography


def _parse_label(value: Label | Mapping[str, Any], what: str, catalog: Catalog) -> Label:
    if isinstance(value, Label):
        return value
    try:
        return Label.from_canonical(value, catalog)
    except (LabelError, KeyError, TypeError) as exc:
        raise EnvelopeError(f"grant {what} is not a valid label: {exc}") from exc


def check_label_widening(
    previous_label: Label | Mapping[str, Any],
    label: Label | Mapping[str, Any],
    catalog: Catalog,
) -> tuple[Label, Label]:
    """Check that ``label`` is exactly ``previous_label`` with its releasability widened.

    Both are parsed against ``catalog`` (a canonical dict must be exactly the canonical form).
    Every field but REL TO must be equal (policy, level, categories, originator, privacy mark,
    review date), and the nations ``label`` is releasable to (groups expanded) must be a strict
    superset of those of ``previous_label``. Returns the two parsed labels. Raises
    EnvelopeError naming what differs.
    """
    previous = _parse_label(previous_label, "previous_label", catalog)
    new = _parse_label(label, "label", catalog)
    for name in ("policy", "level", "categories", "originator", "privacy_mark", "review_date"):
        if getattr(previous, name) != getattr(new, name):
            raise EnvelopeError(
                f"the grant's label changes {name}; a release may only widen releasability"
            )
    try:
        before = expand_releasability(previous, catalog)
        after = expand_releasability(new, catalog)
    except LabelError as exc:
        raise EnvelopeError(f"the grant's releasability cannot be expanded: {exc}") from exc
    if lost := before - after:
        raise EnvelopeError(
            f"the grant's label narrows releasability: it drops {', '.join(sorted(lost))}"
        )
    if before == after:
        raise EnvelopeError("the grant's label does not widen releasability")
    return previous, new


def check_history_labels(
    grant: GrantHeader, signed_label: Mapping[str, Any], catalog: Catalog
) -> Label:
    """Check a history grant's labels (PROTOCOL.md §16.7): ``previous_label`` is exactly the
    label the item's sender signed (``signed_label``, its canonical JSON), and ``label`` is
    that label or one widening only its releasability. Returns ``label`` parsed: the label to
    show the item under. Raises EnvelopeError."""
    if not grant.is_history:
        raise EnvelopeError(f"grant {grant.grant_id} is a release grant, not a history grant")
    if dict(grant.previous_label) != dict(signed_label):
        raise EnvelopeError("the history grant names a label other than the one the sender signed")
    previous = _parse_label(grant.previous_label, "previous_label", catalog)
    if dict(grant.label) == dict(grant.previous_label):
        return previous
    _, label = check_label_widening(previous, grant.label, catalog)
    return label


def check_grant_item(grant: GrantHeader, item_header: Mapping[str, Any]) -> None:
    """Check that a grant names the item whose header is ``item_header``: a message header for
    ``item_type`` ``"message"`` (``item_id`` its ``message_id``), a document version header for
    ``"document_version"`` (``item_id`` its ``version_id``), in the same container.

    The grant's key opening the item (``envelopes.decrypt_with_item_key`` or
    ``stream.DocumentDecryptor``, both checking the item's own signed key commitment) proves
    the key is the item's; this check proves the grant's label version is about that item.
    Raises EnvelopeError.
    """
    if grant.item_type == "message":
        message = check_message_header(item_header)
        item_id, container = message.message_id, message.container
    else:
        try:
            document = check_document_header(item_header)
        except DocumentError as exc:
            raise EnvelopeError(f"the granted document version header: {exc}") from exc
        item_id, container = document.version_id, document.container
    if item_id != grant.item_id:
        raise EnvelopeError(f"grant {grant.grant_id} is for item {grant.item_id}, not {item_id}")
    if container != grant.container:
        raise EnvelopeError(
            f"grant {grant.grant_id} names container {grant.container}, the item is in {container}"
        )


# --------------------------------------------------------------------------------------------
# Sealed grants


@dataclass(frozen=True, slots=True)
class SealedGrant:
    """A grant as it travels: the header exactly as signed, the grantor device's signature,
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
    ) -> SealedGrant:
        """Inverse of ``to_json``, checking structure (not the signature).

        Envelopes must be exactly one per listed device, or with ``partial=True`` (what a
        device receives) any non-empty subset of the listed devices. Raises EnvelopeError.
        """
        header, signature, envelopes = _sealed_from_json(
            value,
            "grant",
            lambda h: check_grant_header(h).devices,
            GRANT_ENVELOPE_SIZE,
            partial=partial,
        )
        return cls(header=header, signature=signature, envelopes=envelopes)


def create_grant(
    grantor_keys: DeviceKeys,
    item_key: bytes,
    *,
    grant_id: str,
    request_id: str | None,
    item_type: str,
    item_id: str,
    container: str,
    grantor_user: str,
    grantor_device: str,
    previous_label: Label | Mapping[str, Any],
    label: Label | Mapping[str, Any],
    recipients: Sequence[Recipient],
    created_at: datetime,
) -> SealedGrant:
    """Make a grant: the item key sealed to each recipient device, under a header (the new
    label version) signed by the grantor device.

    ``item_key`` is the item's own key: ``envelopes.message_key(audience_key, header)`` for a
    message, ``stream.document_key(audience_key, header)`` (or ``DocumentEncryptor.item_key``)
    for a document version; never an audience key. ``item_id`` is the message id or the
    document version id. ``grant_id`` is a fresh UUID chosen by the client; ``request_id`` the
    approved release request's, or None for a history grant (then ``previous_label`` is the
    item's own label and ``label`` its label now, PROTOCOL.md §16.7). Labels are Labels or their
    canonical dicts; ``label`` is the approved one (or the label now). ``created_at`` must be
    timezone-aware (truncated to seconds). The caller has already checked each recipient's
    certificate and eligibility for ``label``. Raises EnvelopeError for a malformed field, a
    repeated or unusable recipient, or more than ``MAX_GRANT_DEVICES`` recipients.
    """
    item_key = _key_bytes(item_key, ITEM_KEY_SIZE, "an item key")
    if len(recipients) > MAX_GRANT_DEVICES:
        raise EnvelopeError(f"a grant holds at most {MAX_GRANT_DEVICES} devices")
    try:
        created = format_utc_time(created_at)
    except ValueError as exc:
        raise EnvelopeError(f"grant header field created_at: {exc}") from exc
    header: dict[str, Any] = {
        "type": GRANT_TYPE,
        "version": GRANT_VERSION,
        "grant_id": grant_id,
        "request_id": request_id,
        "item_type": item_type,
        "item_id": item_id,
        "container": container,
        "grantor_user": grantor_user,
        "grantor_device": grantor_device,
        "previous_label": _canonical_label(previous_label),
        "label": _canonical_label(label),
        "devices": sorted(r.device_id for r in recipients),
        "device_keys_digest": device_keys_digest(recipients),
        "item_key_commitment": item_key_commitment(item_key),
        "created_at": created,
    }
    checked = check_grant_header(header)
    hd = checked.header_digest
    signature = grantor_keys.signing_private_key().sign(_grant_signing_input(hd))
    envelopes: dict[str, bytes] = {}
    for recipient in sorted(recipients, key=lambda r: r.device_id):
        try:
            public_key = recipient.keys.encryption_public_key()
        except ValueError as exc:
            raise EnvelopeError(
                f"the encryption key of device {recipient.device_id} is unusable: {exc}"
            ) from exc
        envelopes[recipient.device_id] = HPKE_SUITE.encrypt(
            item_key, public_key, info=_envelope_info(grant_id, recipient.device_id, hd)
        )
    return SealedGrant(header=header, signature=signature, envelopes=envelopes)


def _canonical_label(label: Label | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(label, Label):
        return label.canonical()
    if not isinstance(label, Mapping):
        raise EnvelopeError("a grant label must be a Label or its canonical JSON object")
    return copy.deepcopy(dict(label))


def verify_grant(
    header: Mapping[str, Any], signature: bytes, grantor_signing_key: bytes
) -> GrantHeader:
    """Check a grant header and its grantor device's signature. No key is needed: this is what
    the server checks.

    ``grantor_signing_key`` is the Ed25519 public key (32 raw bytes) of the device the header
    names as ``grantor_device``; the caller looks it up and checks it belongs to
    ``grantor_user``. Raises EnvelopeError.
    """
    checked = check_grant_header(header)
    _verify(
        grantor_signing_key,
        signature,
        _grant_signing_input(checked.header_digest),
        "grant signature",
    )
    return checked


def open_grant(
    device_keys: DeviceKeys,
    device_id: str,
    header: Mapping[str, Any],
    signature: bytes,
    envelope: bytes,
    grantor_signing_key: bytes,
) -> bytes:
    """The item key, for the device ``device_id`` holding ``device_keys``.

    Verifies the grantor's signature, checks that the device is listed, opens the envelope
    with ``info`` naming this grant, this device and this header, and checks the opened key
    against the signed ``item_key_commitment`` (constant time). Raises EnvelopeError for any
    failure. The caller then decrypts the item with the key, checks the grant names that item
    (``check_grant_item``) and that its label only widens releasability
    (``check_label_widening``).
    """
    checked = verify_grant(header, signature, grantor_signing_key)
    if device_id not in checked.devices:
        raise EnvelopeError(f"device {device_id} is not in grant {checked.grant_id}")
    if not isinstance(envelope, bytes | bytearray | memoryview):
        raise EnvelopeError("a grant envelope must be bytes")
    if len(envelope) != GRANT_ENVELOPE_SIZE:
        raise EnvelopeError(f"a grant envelope is {GRANT_ENVELOPE_SIZE} bytes")
    try:
        item_key = HPKE_SUITE.decrypt(
            bytes(envelope),
            device_keys.encryption_private_key(),
            info=_envelope_info(checked.grant_id, device_id, checked.header_digest),
        )
    except (InvalidTag, ValueError) as exc:
        raise EnvelopeError(
            f"the envelope of grant {checked.grant_id} does not open for device {device_id}"
        ) from exc
    if len(item_key) != ITEM_KEY_SIZE:
        raise EnvelopeError("the grant envelope does not hold a 32-byte item key")
    if not hmac.compare_digest(item_key_commitment(item_key), checked.item_key_commitment):
        raise EnvelopeError(
            f"the key sealed in grant {checked.grant_id} does not match its item_key_commitment"
        )
    return item_key
