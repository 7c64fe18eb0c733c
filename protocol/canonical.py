"""Canonical bytes (RFC 8785) and domain-separated digests.

Every signature, digest, HPKE ``info`` and AEAD associated data in Attaché begins with its own
context string, so that bytes made for one purpose can never be passed off as another. The
context is encoded as UTF-8 and terminated by a single zero byte, which cannot occur inside a
context string, so ``context || 0x00 || payload`` is unambiguous.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import rfc8785

# Context strings: one per purpose. Changing one is a protocol version change.
CTX_DEVICE_CERTIFICATE = "attache/v1/device-certificate"
CTX_DEVICE_REGISTRATION = "attache/v1/device-registration"
CTX_LOGIN = "attache/v1/login"
CTX_KEY_FINGERPRINT = "attache/v1/key-fingerprint"
CTX_AUTHORITY_KEY_ID = "attache/v1/authority-key-id"
CTX_SEALED_SECRET = "attache/v1/sealed-secret"
CTX_AUDIENCE_DEVICES = "attache/v1/audience-devices"
CTX_AUDIENCE_HEADER = "attache/v1/audience-header"
CTX_AUDIENCE_SIGNATURE = "attache/v1/audience-signature"
CTX_AUDIENCE_ENVELOPE = "attache/v1/audience-envelope"
CTX_MESSAGE_HEADER = "attache/v1/message-header"
CTX_MESSAGE_KEY = "attache/v1/message-key"
CTX_MESSAGE_KEY_COMMITMENT = "attache/v1/message-key-commitment"
CTX_MESSAGE_BODY = "attache/v1/message-body"
CTX_MESSAGE_BODY_DIGEST = "attache/v1/message-body-digest"
CTX_MESSAGE_SIGNATURE = "attache/v1/message-signature"
CTX_DOCUMENT_HEADER = "attache/v1/document-header"
CTX_DOCUMENT_KEY = "attache/v1/document-key"
CTX_DOCUMENT_KEY_COMMITMENT = "attache/v1/document-key-commitment"
CTX_DOCUMENT_CHUNK = "attache/v1/document-chunk"
CTX_DOCUMENT_CONTENT = "attache/v1/document-content"
CTX_DOCUMENT_SIGNATURE = "attache/v1/document-signature"
CTX_GRANT_HEADER = "attache/v1/grant-header"
CTX_GRANT_SIGNATURE = "attache/v1/grant-signature"
CTX_GRANT_ENVELOPE = "attache/v1/grant-envelope"
CTX_GRANT_ITEM_KEY_COMMITMENT = "attache/v1/grant-item-key-commitment"
CTX_ENROLMENT_CODE = "attache/v1/enrolment-code"
CTX_COALITION_POLICY = "attache/v1/coalition-policy"
CTX_COALITION_POLICY_SIGNATURE = "attache/v1/coalition-policy-signature"


class CanonicalizationError(ValueError):
    """The value cannot be expressed as RFC 8785 canonical JSON."""


_MAX_EXACT_INT = 2**53 - 1
_encode = json.JSONEncoder(
    ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False
).encode


class Encoded:
    """A JSON value with its RFC 8785 text, made once: ``canonical_json`` writes the text as
    it is wherever the value appears, instead of encoding the value again.

    For a part shared by many documents, such as a release's recipients (the same for every
    message sent under one audience while nothing changes), which was most of each message's
    audit leaf. The value must not be changed once wrapped; ``value`` is for whoever needs
    the value itself (a JSON column).
    """

    __slots__ = ("text", "value")

    def __init__(self, value: Any) -> None:
        self.value = value
        self.text = canonical_json(value).decode("utf-8")

    def __repr__(self) -> str:
        return f"Encoded({self.text})"


def _plain(value: Any, encoded: list[Encoded] | None = None) -> bool:
    r"""Whether the standard library's JSON encoder writes exactly the RFC 8785 bytes of ``value``.

    It does for dicts, lists, strings, booleans, null and integers in IEEE-754's exact range,
    provided no key holds a character outside the Basic Multilingual Plane (Python sorts keys
    by code point, RFC 8785 by UTF-16 code unit; the two orders agree within the BMP). Its
    string escapes are RFC 8785's: ``\"``, ``\\``, ``\b \t \n \f \r`` and ``\u00xx`` in
    lower case for other control characters, nothing else. Floats, whose shortest forms differ
    between the two, take the rfc8785 path. ``Encoded`` parts count as plain and are listed
    in ``encoded`` (without it, they do not count as plain).
    """
    # Written for speed: this walk runs once per audit leaf exported.
    stack = [value]
    pop, extend = stack.pop, stack.extend
    while stack:
        item = pop()
        kind = type(item)
        if kind is str:
            continue
        if kind is dict:
            try:
                ascii_keys = all(map(str.isascii, item))
            except TypeError:  # a key that is not a string
                return False
            if not ascii_keys and any(max(key, default="") >= "\ud800" for key in item):
                return False
            extend(item.values())
        elif kind is list:
            extend(item)
        elif kind is int:
            if not -_MAX_EXACT_INT <= item <= _MAX_EXACT_INT:
                return False
        elif kind is Encoded and encoded is not None:
            encoded.append(item)
        elif kind is not bool and item is not None:
            return False
    return True


def _without_encoded(value: Any) -> Any:
    """``value`` with each ``Encoded`` part replaced by the value it wraps."""
    kind = type(value)
    if kind is Encoded:
        return value.value
    if kind is dict:
        return {key: _without_encoded(item) for key, item in value.items()}
    if kind is list:
        return [_without_encoded(item) for item in value]
    return value


def _spliced(value: Any, parts: list[Encoded]) -> bytes | None:
    """The canonical text of a plain ``value`` with its ``Encoded`` parts written as their
    text: each part is encoded as a placeholder string (a NUL, a number, a NUL), whose JSON
    form is then replaced by the part's text. None if a placeholder's JSON form occurs other
    than once for each place of its part (a string of the document that happens to equal
    one): the caller then encodes the whole document."""
    places: dict[int, int] = {}
    for part in parts:
        places[id(part)] = places.get(id(part), 0) + 1
    unique = list({id(part): part for part in parts}.values())
    index = {id(part): n for n, part in enumerate(unique)}
    encoder = json.JSONEncoder(
        ensure_ascii=False,
        sort_keys=True,
        separators=(",", ":"),
        allow_nan=False,
        default=lambda part: f"\x00{index[id(part)]}\x00",
    )
    text = encoder.encode(value)
    for n, part in enumerate(unique):
        token = f'"\\u0000{n}\\u0000"'
        if text.count(token) != places[id(part)]:
            return None
        text = text.replace(token, part.text)
    return text.encode("utf-8")


def canonical_json(value: Mapping[str, Any] | list[Any]) -> bytes:
    """RFC 8785 (JCS) bytes of ``value``.

    Plain values (no floats; see ``_plain``) are encoded by the standard library, about six
    times faster than rfc8785, which handles everything else; a property test holds the two
    to the same bytes. Raises CanonicalizationError for values JSON cannot carry exactly
    (floats out of range, integers beyond 2**53, non-string keys, lone surrogates, bytes, ...).
    """
    try:
        parts: list[Encoded] = []
        if _plain(value, parts):
            if not parts:
                return _encode(value).encode("utf-8")
            spliced = _spliced(value, parts)
            if spliced is not None:
                return spliced
        # The rare path (floats, keys beyond the BMP): the walk may have stopped before a part.
        return bytes(rfc8785.dumps(_without_encoded(value)))
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise CanonicalizationError(str(exc)) from exc


def copy_json(value: Any) -> Any:
    """A copy of a JSON value (dicts, lists and immutable leaves), nothing shared that could be
    changed in place: what ``copy.deepcopy`` gives for such a value, in about half the time
    (no memo of shared parts, which a tree parsed from JSON does not have). Used on hot paths
    (each submit copies its header and its sender's certificate)."""
    kind = type(value)
    if kind is dict:
        return {key: copy_json(item) for key, item in value.items()}
    if kind is list:
        return [copy_json(item) for item in value]
    return value


def _check_context(context: str) -> bytes:
    encoded = context.encode("utf-8")
    if not encoded or b"\x00" in encoded:
        raise ValueError("a context string must be non-empty and contain no NUL byte")
    return encoded


def with_context(context: str, payload: bytes) -> bytes:
    """``context || 0x00 || payload``: the bytes that are signed or hashed."""
    return _check_context(context) + b"\x00" + payload


def signing_input(context: str, value: Mapping[str, Any]) -> bytes:
    """The exact bytes an Ed25519 signature over a JSON structure covers."""
    return with_context(context, canonical_json(value))


def digest(context: str, payload: bytes) -> bytes:
    """SHA-256 of ``context || 0x00 || payload``."""
    return hashlib.sha256(with_context(context, payload)).digest()
