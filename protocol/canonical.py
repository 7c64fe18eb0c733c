"""Canonical bytes (RFC 8785) and domain-separated digests.

Every signature, digest, HPKE ``info`` and AEAD associated data in Attaché begins with its own
context string, so that bytes made for one purpose can never be passed off as another. The
context is encoded as UTF-8 and terminated by a single zero byte, which cannot occur inside a
context string, so ``context || 0x00 || payload`` is unambiguous.
"""

from __future__ import annotations

import hashlib
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


class CanonicalizationError(ValueError):
    """The value cannot be expressed as RFC 8785 canonical JSON."""


def canonical_json(value: Mapping[str, Any] | list[Any]) -> bytes:
    """RFC 8785 (JCS) bytes of ``value``.

    Raises CanonicalizationError for values JSON cannot carry exactly (floats out of the
    IEEE-754 safe range, non-string keys, bytes, ...).
    """
    try:
        return bytes(rfc8785.dumps(value))
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise CanonicalizationError(str(exc)) from exc


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
