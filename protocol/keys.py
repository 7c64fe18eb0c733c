"""Device keys, authority keys, device certificates, proofs of possession, secrets at rest.

Everything here is pure and I/O-free and uses pyca/cryptography primitives only.

Device keys
    A device holds an Ed25519 signing key and a 32-byte X-Wing seed (its HPKE encryption private
    key). ``SHAKE256(seed, 96)`` gives the ML-KEM-768 seed (first 64 bytes, ``d || z``) and the
    X25519 private key (last 32); the public encryption key is the ML-KEM-768 public key (1,184
    bytes) followed by the X25519 public key (32 bytes), 1,216 bytes in all. This is X-Wing as in
    draft-connolly-cfrg-xwing-kem and HPKE KEM 0x647a (``MLKEM768-X25519``), so any conforming HPKE
    library decrypts what Attaché encrypts.

Encodings
    Public keys, signatures and nonces travel as base64url without padding (RFC 4648 section 5);
    decoding is strict: other alphabets, padding, whitespace and non-zero trailing bits are
    refused. Times travel as RFC 3339 UTC strings with seconds precision and a ``Z``.

Device certificate
    Issued by a nation's enrolment authority key (Ed25519); wire form
    ``{"body": {...}, "signature": "<b64u>"}`` where the signature is Ed25519 over
    ``signing_input(CTX_DEVICE_CERTIFICATE, body)``. The body's fields are listed in
    ``CERTIFICATE_FIELDS``; see ``CertificateBody``.

Secrets at rest
    ``seal_secret``/``open_secret``: Argon2id (parameters recorded in the blob, accepted only
    between ``KDF_MINIMUM`` and ``KDF_MAXIMUM``) and AES-256-GCM; see ``seal_secret``.
"""

from __future__ import annotations

import base64
import copy
import functools
import hashlib
import json
import re
import secrets
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import ed25519, mlkem, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

from protocol.canonical import (
    CTX_AUTHORITY_KEY_ID,
    CTX_DEVICE_CERTIFICATE,
    CTX_DEVICE_REGISTRATION,
    CTX_KEY_FINGERPRINT,
    CTX_LOGIN,
    CTX_SEALED_SECRET,
    CanonicalizationError,
    canonical_json,
    digest,
    signing_input,
    with_context,
)

__all__ = [
    "CERTIFICATE_FIELDS",
    "CERTIFICATE_VERSION",
    "ED25519_PUBLIC_KEY_SIZE",
    "ED25519_SEED_SIZE",
    "ENCRYPTION_PUBLIC_KEY_SIZE",
    "HPKE_SUITE",
    "KDF_MAXIMUM",
    "KDF_MINIMUM",
    "LOGIN_CHALLENGE_SIZE",
    "SIGNATURE_SIZE",
    "XWING_SEED_SIZE",
    "AuthorityKey",
    "CertificateBody",
    "CertificateError",
    "DeviceCertificate",
    "DeviceKeys",
    "DevicePublicKeys",
    "KdfParams",
    "SecretError",
    "authority_key_id",
    "b64u_decode",
    "b64u_encode",
    "fingerprint",
    "format_utc_time",
    "issue_certificate",
    "load_encryption_public_key",
    "load_signing_public_key",
    "login_payload",
    "new_login_challenge",
    "open_secret",
    "parse_utc_time",
    "registration_payload",
    "seal_secret",
    "sign_login",
    "sign_registration",
    "verify_certificate",
    "verify_login",
    "verify_registration",
    "xwing_private_key",
    "xwing_public_bytes",
]

ED25519_SEED_SIZE: Final = 32
ED25519_PUBLIC_KEY_SIZE: Final = 32
SIGNATURE_SIZE: Final = 64
XWING_SEED_SIZE: Final = 32
MLKEM768_PUBLIC_KEY_SIZE: Final = 1184
X25519_PUBLIC_KEY_SIZE: Final = 32
ENCRYPTION_PUBLIC_KEY_SIZE: Final = MLKEM768_PUBLIC_KEY_SIZE + X25519_PUBLIC_KEY_SIZE
FINGERPRINT_SIZE: Final = 20
AUTHORITY_KEY_ID_SIZE: Final = 16
CERTIFICATE_SERIAL_SIZE: Final = 16
LOGIN_CHALLENGE_SIZE: Final = 32

#: The one HPKE suite of protocol v1 (RFC 9180 base mode, KEM 0x647a, HKDF-SHA256, AES-256-GCM).
HPKE_SUITE: Final = hpke.Suite(
    hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM
)


# --------------------------------------------------------------------------------------------
# Encodings


_B64U_TEXT = re.compile(r"[A-Za-z0-9_-]*")


def b64u_encode(data: bytes) -> str:
    """Base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64u_decode(text: str) -> bytes:
    """Strict inverse of ``b64u_encode``.

    Raises ValueError for anything ``b64u_encode`` could not have produced: characters outside
    the base64url alphabet (including ``=``, ``+``, ``/`` and whitespace), an impossible length,
    or non-zero unused bits in the last character (which would let two strings decode alike).
    """
    if not isinstance(text, str):
        raise ValueError("base64url data must be a string")
    if _B64U_TEXT.fullmatch(text) is None:
        raise ValueError("not unpadded base64url: unexpected character")
    if len(text) % 4 == 1:
        raise ValueError("not unpadded base64url: impossible length")
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if b64u_encode(data) != text:
        raise ValueError("not canonical base64url: non-zero trailing bits")
    return data


def _b64u_decode_sized(text: str, size: int, what: str) -> bytes:
    data = b64u_decode(text)
    if len(data) != size:
        raise ValueError(f"{what} must be {size} bytes, got {len(data)}")
    return data


_UTC_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")


def format_utc_time(moment: datetime) -> str:
    """RFC 3339 UTC with seconds precision and ``Z``; sub-second digits are dropped.

    Raises ValueError for a naive datetime: a time without a zone is ambiguous.
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("a timezone-aware datetime is required")
    return moment.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_utc_time(text: str) -> datetime:
    """Strict inverse of ``format_utc_time`` (no offsets other than ``Z``, no fractions)."""
    if not isinstance(text, str) or _UTC_TIME.fullmatch(text) is None:
        raise ValueError(f"not an RFC 3339 UTC time of the form YYYY-MM-DDTHH:MM:SSZ: {text!r}")
    # The form is fixed by the pattern; fromisoformat checks the ranges (month, day of the
    # month, hour, ...) as strptime would, in a twentieth of its time (every submit parses
    # its header's times).
    try:
        return datetime.fromisoformat(text[:-1]).replace(tzinfo=UTC)
    except ValueError as exc:
        raise ValueError(f"not an RFC 3339 UTC time: {text!r} ({exc})") from None


def fingerprint(public_key: bytes) -> str:
    """Human-comparable fingerprint of public key bytes, for reading aloud out of band.

    The first 20 bytes of ``digest(CTX_KEY_FINGERPRINT, public_key)`` as ten groups of four
    lower-case hex digits, e.g. ``"3f2a 9c01 ..."``.
    """
    hexed = digest(CTX_KEY_FINGERPRINT, bytes(public_key))[:FINGERPRINT_SIZE].hex()
    return " ".join(hexed[i : i + 4] for i in range(0, len(hexed), 4))


# --------------------------------------------------------------------------------------------
# Key loading and X-Wing


def _xwing_parts(seed: bytes) -> tuple[mlkem.MLKEM768PrivateKey, x25519.X25519PrivateKey]:
    if len(seed) != XWING_SEED_SIZE:
        raise ValueError(f"an X-Wing seed is {XWING_SEED_SIZE} bytes, got {len(seed)}")
    expanded = hashlib.shake_256(bytes(seed)).digest(96)
    return (
        mlkem.MLKEM768PrivateKey.from_seed_bytes(expanded[:64]),
        x25519.X25519PrivateKey.from_private_bytes(expanded[64:]),
    )


def xwing_private_key(seed: bytes) -> hpke.MLKEM768X25519PrivateKey:
    """The HPKE private key object for a 32-byte X-Wing seed."""
    mlkem_key, x25519_key = _xwing_parts(seed)
    return hpke.MLKEM768X25519PrivateKey(mlkem_key, x25519_key)


def xwing_public_bytes(seed: bytes) -> bytes:
    """The 1,216-byte public encryption key for a 32-byte X-Wing seed."""
    mlkem_key, x25519_key = _xwing_parts(seed)
    return mlkem_key.public_key().public_bytes_raw() + x25519_key.public_key().public_bytes_raw()


def load_encryption_public_key(data: bytes) -> hpke.MLKEM768X25519PublicKey:
    """The HPKE public key object for a 1,216-byte X-Wing public key encoding.

    Raises ValueError for a wrong length, an ML-KEM-768 key that fails the FIPS 203 encapsulation
    key check, or an X25519 part that is a low-order point (sealing to it would fail for every
    sender, so a key like that must not enter a certificate).
    """
    data = bytes(data)
    if len(data) != ENCRYPTION_PUBLIC_KEY_SIZE:
        raise ValueError(
            f"an encryption public key is {ENCRYPTION_PUBLIC_KEY_SIZE} bytes, got {len(data)}"
        )
    mlkem_key = mlkem.MLKEM768PublicKey.from_public_bytes(data[:MLKEM768_PUBLIC_KEY_SIZE])
    x25519_key = x25519.X25519PublicKey.from_public_bytes(data[MLKEM768_PUBLIC_KEY_SIZE:])
    try:
        # OpenSSL refuses an all-zero shared secret, which is exactly the low-order case.
        x25519.X25519PrivateKey.generate().exchange(x25519_key)
    except ValueError as exc:
        raise ValueError("the X25519 part of the encryption key is a low-order point") from exc
    return hpke.MLKEM768X25519PublicKey(mlkem_key, x25519_key)


def load_signing_public_key(data: bytes) -> ed25519.Ed25519PublicKey:
    """The Ed25519 public key object for 32 raw bytes (ValueError otherwise)."""
    data = bytes(data)
    if len(data) != ED25519_PUBLIC_KEY_SIZE:
        raise ValueError(
            f"an Ed25519 public key is {ED25519_PUBLIC_KEY_SIZE} bytes, got {len(data)}"
        )
    return _signing_public_key(data)


@functools.lru_cache(maxsize=4096)
def _signing_public_key(data: bytes) -> ed25519.Ed25519PublicKey:
    # Loaded once per key: a server verifies each device's messages with the same key (the
    # load was a twentieth of a verification). Key objects are immutable; a key that does not
    # load raises, and nothing is kept of it.
    return ed25519.Ed25519PublicKey.from_public_bytes(data)


def _verify_signature(
    public_key: bytes, signature: bytes, context: str, value: Mapping[str, Any]
) -> bool:
    if len(public_key) != ED25519_PUBLIC_KEY_SIZE or len(signature) != SIGNATURE_SIZE:
        return False
    message = signing_input(context, value)
    try:
        load_signing_public_key(public_key).verify(bytes(signature), message)
    except (InvalidSignature, ValueError):
        return False
    return True


# --------------------------------------------------------------------------------------------
# Device keys


@dataclass(frozen=True, slots=True, repr=False)
class DevicePublicKeys:
    """A device's public keys as raw bytes: Ed25519 (32 bytes) and X-Wing (1,216 bytes).

    Construction checks lengths only; ``encryption_public_key()`` and ``signing_public_key()``
    do the full checks.
    """

    signing_key: bytes
    encryption_key: bytes

    def __post_init__(self) -> None:
        if len(self.signing_key) != ED25519_PUBLIC_KEY_SIZE:
            raise ValueError(f"a signing public key is {ED25519_PUBLIC_KEY_SIZE} bytes")
        if len(self.encryption_key) != ENCRYPTION_PUBLIC_KEY_SIZE:
            raise ValueError(f"an encryption public key is {ENCRYPTION_PUBLIC_KEY_SIZE} bytes")

    def signing_public_key(self) -> ed25519.Ed25519PublicKey:
        return load_signing_public_key(self.signing_key)

    def encryption_public_key(self) -> hpke.MLKEM768X25519PublicKey:
        return load_encryption_public_key(self.encryption_key)

    def fingerprint(self) -> str:
        """Fingerprint over both keys (``signing_key || encryption_key``; fixed sizes)."""
        return fingerprint(self.signing_key + self.encryption_key)

    def __repr__(self) -> str:
        return f"DevicePublicKeys(fingerprint={self.fingerprint()!r})"

    def to_json(self) -> dict[str, str]:
        return {
            "signing_key": b64u_encode(self.signing_key),
            "encryption_key": b64u_encode(self.encryption_key),
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> DevicePublicKeys:
        """Inverse of ``to_json``; ValueError for missing, unknown or malformed fields."""
        if not isinstance(value, Mapping) or set(value) != {"signing_key", "encryption_key"}:
            raise ValueError("device public keys need exactly signing_key and encryption_key")
        return cls(
            signing_key=_b64u_decode_sized(
                value["signing_key"], ED25519_PUBLIC_KEY_SIZE, "signing_key"
            ),
            encryption_key=_b64u_decode_sized(
                value["encryption_key"], ENCRYPTION_PUBLIC_KEY_SIZE, "encryption_key"
            ),
        )


class DeviceKeys:
    """A device's private keys: an Ed25519 signing key and a 32-byte X-Wing seed."""

    __slots__ = ("_public", "_signing_key", "_xwing_seed")

    PRIVATE_BYTES_SIZE: Final = ED25519_SEED_SIZE + XWING_SEED_SIZE

    def __init__(self, signing_key: ed25519.Ed25519PrivateKey, xwing_seed: bytes) -> None:
        if len(xwing_seed) != XWING_SEED_SIZE:
            raise ValueError(f"an X-Wing seed is {XWING_SEED_SIZE} bytes")
        self._signing_key = signing_key
        self._xwing_seed = bytes(xwing_seed)
        self._public = DevicePublicKeys(
            signing_key=signing_key.public_key().public_bytes_raw(),
            encryption_key=xwing_public_bytes(self._xwing_seed),
        )

    @classmethod
    def generate(cls) -> DeviceKeys:
        return cls(ed25519.Ed25519PrivateKey.generate(), secrets.token_bytes(XWING_SEED_SIZE))

    @classmethod
    def from_private_bytes(cls, data: bytes) -> DeviceKeys:
        """Inverse of ``to_private_bytes``."""
        if len(data) != cls.PRIVATE_BYTES_SIZE:
            raise ValueError(f"device private keys are {cls.PRIVATE_BYTES_SIZE} bytes")
        return cls(
            ed25519.Ed25519PrivateKey.from_private_bytes(bytes(data[:ED25519_SEED_SIZE])),
            bytes(data[ED25519_SEED_SIZE:]),
        )

    def to_private_bytes(self) -> bytes:
        """64 bytes: the Ed25519 private seed (32) followed by the X-Wing seed (32).

        This is all the private material a device has; store it only through ``seal_secret``.
        """
        return self._signing_key.private_bytes_raw() + self._xwing_seed

    def signing_private_key(self) -> ed25519.Ed25519PrivateKey:
        return self._signing_key

    def encryption_private_key(self) -> hpke.MLKEM768X25519PrivateKey:
        return xwing_private_key(self._xwing_seed)

    def public(self) -> DevicePublicKeys:
        return self._public

    def __repr__(self) -> str:
        return f"DeviceKeys(fingerprint={self._public.fingerprint()!r})"


# --------------------------------------------------------------------------------------------
# Enrolment authority


def authority_key_id(public_key: bytes) -> str:
    """b64u of the first 16 bytes of ``digest(CTX_AUTHORITY_KEY_ID, public_key)``."""
    if len(public_key) != ED25519_PUBLIC_KEY_SIZE:
        raise ValueError(f"an authority public key is {ED25519_PUBLIC_KEY_SIZE} bytes")
    return b64u_encode(digest(CTX_AUTHORITY_KEY_ID, bytes(public_key))[:AUTHORITY_KEY_ID_SIZE])


class AuthorityKey:
    """A nation's enrolment authority key (Ed25519), held only by its security officer."""

    __slots__ = ("_private_key", "_public_bytes")

    def __init__(self, private_key: ed25519.Ed25519PrivateKey) -> None:
        self._private_key = private_key
        self._public_bytes = private_key.public_key().public_bytes_raw()

    @classmethod
    def generate(cls) -> AuthorityKey:
        return cls(ed25519.Ed25519PrivateKey.generate())

    @classmethod
    def from_private_bytes(cls, data: bytes) -> AuthorityKey:
        """From the 32-byte Ed25519 private seed."""
        if len(data) != ED25519_SEED_SIZE:
            raise ValueError(f"an authority private key is {ED25519_SEED_SIZE} bytes")
        return cls(ed25519.Ed25519PrivateKey.from_private_bytes(bytes(data)))

    def to_private_bytes(self) -> bytes:
        """The 32-byte Ed25519 private seed; store it only through ``seal_secret``."""
        return self._private_key.private_bytes_raw()

    def public_bytes(self) -> bytes:
        return self._public_bytes

    @property
    def key_id(self) -> str:
        return authority_key_id(self._public_bytes)

    def fingerprint(self) -> str:
        return fingerprint(self._public_bytes)

    def __repr__(self) -> str:
        return f"AuthorityKey(key_id={self.key_id!r})"


# --------------------------------------------------------------------------------------------
# Device certificates


CERTIFICATE_VERSION: Final = 1
CERTIFICATE_FIELDS: Final = frozenset(
    {
        "version",
        "serial",
        "device_id",
        "user_id",
        "username",
        "nation",
        "nationality",
        "clearance",
        "signing_key",
        "encryption_key",
        "issued_at",
        "expires_at",
        "authority_key_id",
    }
)
_NATION = re.compile(r"[A-Z]{3}")
_MAX_TEXT = 256


class CertificateError(ValueError):
    """A device certificate is malformed, not validly signed by the pinned key, or not valid now."""


@dataclass(frozen=True, slots=True)
class CertificateBody:
    """The checked content of a device certificate.

    Wire fields (all required, no others): ``version`` (1), ``serial`` (b64u, 16 random
    bytes), ``device_id``, ``user_id``, ``username`` (text, 1-256 characters, no control or
    format characters), ``nation`` (the issuing nation) and ``nationality`` (ISO 3166-1 alpha-3;
    equal, since a nation vouches only for its own people), ``clearance`` (a JSON object, the
    canonical clearance of protocol.labels, opaque here), ``signing_key`` and ``encryption_key``
    (b64u), ``issued_at`` and ``expires_at`` (RFC 3339 UTC, seconds, ``Z``) and
    ``authority_key_id`` (``authority_key_id`` of the issuing key).
    """

    version: int
    serial: str
    device_id: str
    user_id: str
    username: str
    nation: str
    nationality: str
    clearance: Mapping[str, Any]
    device_keys: DevicePublicKeys
    issued_at: datetime
    expires_at: datetime
    authority_key_id: str

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "serial": self.serial,
            "device_id": self.device_id,
            "user_id": self.user_id,
            "username": self.username,
            "nation": self.nation,
            "nationality": self.nationality,
            "clearance": copy.deepcopy(dict(self.clearance)),
            "signing_key": b64u_encode(self.device_keys.signing_key),
            "encryption_key": b64u_encode(self.device_keys.encryption_key),
            "issued_at": format_utc_time(self.issued_at),
            "expires_at": format_utc_time(self.expires_at),
            "authority_key_id": self.authority_key_id,
        }


def _text_field(body: Mapping[str, Any], name: str) -> str:
    value = body[name]
    if not isinstance(value, str) or not 1 <= len(value) <= _MAX_TEXT:
        raise CertificateError(f"certificate field {name} must be text of 1 to {_MAX_TEXT} chars")
    if any(unicodedata.category(char).startswith("C") for char in value):
        raise CertificateError(f"certificate field {name} contains control or format characters")
    return value


def _nation_field(body: Mapping[str, Any], name: str) -> str:
    value = body[name]
    if not isinstance(value, str) or _NATION.fullmatch(value) is None:
        raise CertificateError(f"certificate field {name} must be an ISO 3166-1 alpha-3 code")
    return value


def _b64u_field(body: Mapping[str, Any], name: str, size: int) -> bytes:
    try:
        return _b64u_decode_sized(body[name], size, name)
    except ValueError as exc:
        raise CertificateError(f"certificate field {name} is malformed: {exc}") from exc


def _time_field(body: Mapping[str, Any], name: str) -> datetime:
    try:
        return parse_utc_time(body[name])
    except ValueError as exc:
        raise CertificateError(f"certificate field {name} is malformed: {exc}") from exc


def _parse_certificate_body(body: Mapping[str, Any]) -> CertificateBody:
    """Check the structure of a certificate body (not its signature) and type its fields."""
    if not isinstance(body, Mapping):
        raise CertificateError("certificate body must be a JSON object")
    version = body.get("version")
    if type(version) is not int or version != CERTIFICATE_VERSION:
        raise CertificateError(f"unsupported certificate version {version!r}")
    present = set(body)
    if missing := CERTIFICATE_FIELDS - present:
        raise CertificateError(f"certificate body lacks {', '.join(sorted(missing))}")
    if unknown := present - CERTIFICATE_FIELDS:
        raise CertificateError(
            f"certificate body has unknown fields {', '.join(sorted(map(str, unknown)))}"
        )
    nation = _nation_field(body, "nation")
    nationality = _nation_field(body, "nationality")
    if nationality != nation:
        raise CertificateError(
            f"certificate issued by {nation} for a user of nationality {nationality}: "
            "a nation vouches only for its own people"
        )
    clearance = body["clearance"]
    if not isinstance(clearance, Mapping):
        raise CertificateError("certificate field clearance must be a JSON object")
    try:
        canonical_json(clearance)
    except CanonicalizationError as exc:
        raise CertificateError(f"certificate field clearance is not canonical JSON: {exc}") from exc
    serial = _b64u_field(body, "serial", CERTIFICATE_SERIAL_SIZE)
    _b64u_field(body, "authority_key_id", AUTHORITY_KEY_ID_SIZE)
    signing_key = _b64u_field(body, "signing_key", ED25519_PUBLIC_KEY_SIZE)
    encryption_key = _b64u_field(body, "encryption_key", ENCRYPTION_PUBLIC_KEY_SIZE)
    try:
        load_encryption_public_key(encryption_key)
    except ValueError as exc:
        raise CertificateError(f"certificate field encryption_key is unusable: {exc}") from exc
    issued_at = _time_field(body, "issued_at")
    expires_at = _time_field(body, "expires_at")
    if expires_at <= issued_at:
        raise CertificateError("certificate expires_at must be later than issued_at")
    return CertificateBody(
        version=version,
        serial=b64u_encode(serial),
        device_id=_text_field(body, "device_id"),
        user_id=_text_field(body, "user_id"),
        username=_text_field(body, "username"),
        nation=nation,
        nationality=nationality,
        clearance=copy.deepcopy(dict(clearance)),
        device_keys=DevicePublicKeys(signing_key=signing_key, encryption_key=encryption_key),
        issued_at=issued_at,
        expires_at=expires_at,
        authority_key_id=body["authority_key_id"],
    )


def _load_json_object(data: str | bytes) -> dict[str, Any]:
    """json.loads that refuses duplicate keys, NaN/Infinity and non-object documents."""

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in pairs:
            if key in result:
                raise ValueError(f"duplicate JSON key {key!r}")
            result[key] = value
        return result

    def no_constants(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    try:
        value = json.loads(data, object_pairs_hook=no_duplicates, parse_constant=no_constants)
    except RecursionError as exc:
        raise ValueError("JSON nested too deeply") from exc
    if not isinstance(value, dict):
        raise ValueError("expected a JSON object")
    return value


@dataclass(frozen=True, slots=True)
class DeviceCertificate:
    """A device certificate as received: the body exactly as signed, and the signature.

    Nothing in ``body`` is trustworthy before ``verify_certificate`` returns.
    """

    body: Mapping[str, Any]
    signature: bytes

    def to_json(self) -> dict[str, Any]:
        """Wire form ``{"body": {...}, "signature": "<b64u>"}``."""
        return {"body": copy.deepcopy(dict(self.body)), "signature": b64u_encode(self.signature)}

    @classmethod
    def from_json(cls, value: Mapping[str, Any] | str | bytes) -> DeviceCertificate:
        """Parse the wire form (an object, or JSON text); checks the envelope only.

        Raises CertificateError if the value is not exactly ``{"body": object, "signature":
        b64u of 64 bytes}``. The body itself is checked by ``verify_certificate``.
        """
        if isinstance(value, str | bytes):
            try:
                value = _load_json_object(value)
            except ValueError as exc:
                raise CertificateError(f"certificate is not a JSON object: {exc}") from exc
        if not isinstance(value, Mapping) or set(value) != {"body", "signature"}:
            raise CertificateError("certificate must have exactly the fields body and signature")
        body = value["body"]
        if not isinstance(body, Mapping):
            raise CertificateError("certificate body must be a JSON object")
        signature_text = value["signature"]
        try:
            signature = _b64u_decode_sized(signature_text, SIGNATURE_SIZE, "signature")
        except ValueError as exc:
            raise CertificateError(f"certificate signature is malformed: {exc}") from exc
        return cls(body=copy.deepcopy(dict(body)), signature=signature)


def issue_certificate(
    authority: AuthorityKey,
    *,
    device_id: str,
    user_id: str,
    username: str,
    nationality: str,
    clearance: Mapping[str, Any],
    device_keys: DevicePublicKeys,
    issued_at: datetime,
    expires_at: datetime,
    serial: str | None = None,
) -> DeviceCertificate:
    """Sign a device certificate with a nation's enrolment authority key.

    The issuing ``nation`` is ``nationality``: a nation vouches only for its own people.
    ``issued_at``/``expires_at`` must be timezone-aware; they are truncated to seconds.
    ``serial`` is random unless given (b64u of 16 bytes; given only for test vectors).
    Raises CertificateError (a ValueError) if the result would not pass ``verify_certificate``'s
    structural checks.
    """
    if serial is None:
        serial = b64u_encode(secrets.token_bytes(CERTIFICATE_SERIAL_SIZE))
    body: dict[str, Any] = {
        "version": CERTIFICATE_VERSION,
        "serial": serial,
        "device_id": device_id,
        "user_id": user_id,
        "username": username,
        "nation": nationality,
        "nationality": nationality,
        "clearance": copy.deepcopy(dict(clearance)),
        "signing_key": b64u_encode(device_keys.signing_key),
        "encryption_key": b64u_encode(device_keys.encryption_key),
        "issued_at": format_utc_time(issued_at),
        "expires_at": format_utc_time(expires_at),
        "authority_key_id": authority.key_id,
    }
    _parse_certificate_body(body)
    signature = authority._private_key.sign(signing_input(CTX_DEVICE_CERTIFICATE, body))
    return DeviceCertificate(body=body, signature=signature)


def verify_certificate(
    certificate: DeviceCertificate,
    authority_keys: Mapping[str, bytes] | bytes,
    *,
    now: datetime,
    leeway: timedelta = timedelta(0),
) -> CertificateBody:
    """Check a device certificate and return its typed body.

    ``authority_keys`` maps each nation to its pinned enrolment authority public key (32 raw
    bytes), or is one such key when the caller already knows which one must have signed.
    Checks, in order: version, structure (every field present and well-formed, no other
    field), the pinned key of the body's nation, that ``authority_key_id`` names that key, the
    signature over ``signing_input(CTX_DEVICE_CERTIFICATE, body)``, and
    ``issued_at <= now + leeway`` and ``now - leeway < expires_at``.
    Raises CertificateError saying which check failed.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be a timezone-aware datetime")
    parsed = _parse_certificate_body(certificate.body)
    if isinstance(authority_keys, Mapping):
        pinned = authority_keys.get(parsed.nation)
        if pinned is None:
            raise CertificateError(
                f"no enrolment authority key is pinned for nation {parsed.nation}"
            )
    else:
        pinned = authority_keys
    if len(pinned) != ED25519_PUBLIC_KEY_SIZE:
        raise CertificateError(f"the pinned authority key for {parsed.nation} is malformed")
    pinned_id = authority_key_id(pinned)
    if parsed.authority_key_id != pinned_id:
        raise CertificateError(
            f"certificate names authority key {parsed.authority_key_id}, "
            f"but the pinned key for {parsed.nation} is {pinned_id}"
        )
    if not _verify_signature(
        pinned, certificate.signature, CTX_DEVICE_CERTIFICATE, certificate.body
    ):
        raise CertificateError(
            f"certificate signature is not valid for the {parsed.nation} authority key"
        )
    if now + leeway < parsed.issued_at:
        raise CertificateError(
            f"certificate is not valid before {format_utc_time(parsed.issued_at)}"
        )
    if now - leeway >= parsed.expires_at:
        raise CertificateError(f"certificate expired at {format_utc_time(parsed.expires_at)}")
    return parsed


# --------------------------------------------------------------------------------------------
# Proof of possession at registration


def registration_payload(
    public: DevicePublicKeys, *, user: str, nonce: str, server: str
) -> dict[str, str]:
    """What a device signs at enrolment: both public keys, bound to a user, nonce and server.

    ``user`` is the user the enrolment is for (as the server names it), ``nonce`` the
    server-issued, single-use enrolment code id or challenge, ``server`` the server origin.
    """
    return {
        "user": user,
        "nonce": nonce,
        "server": server,
        "signing_key": b64u_encode(public.signing_key),
        "encryption_key": b64u_encode(public.encryption_key),
    }


def sign_registration(keys: DeviceKeys, *, user: str, nonce: str, server: str) -> bytes:
    """Ed25519 over ``signing_input(CTX_DEVICE_REGISTRATION, registration_payload(...))``."""
    payload = registration_payload(keys.public(), user=user, nonce=nonce, server=server)
    return keys.signing_private_key().sign(signing_input(CTX_DEVICE_REGISTRATION, payload))


def verify_registration(
    public: DevicePublicKeys, signature: bytes, *, user: str, nonce: str, server: str
) -> bool:
    """True only if ``signature`` is the device's registration proof and both keys are usable."""
    try:
        public.encryption_public_key()
    except ValueError:
        return False
    payload = registration_payload(public, user=user, nonce=nonce, server=server)
    return _verify_signature(public.signing_key, signature, CTX_DEVICE_REGISTRATION, payload)


# --------------------------------------------------------------------------------------------
# Login challenge-response

_LOGIN_FIELDS: Final = frozenset({"device_id", "challenge", "server_origin"})


def new_login_challenge() -> str:
    """A fresh 32-byte random challenge, b64u (the server keeps it single-use and short-lived)."""
    return b64u_encode(secrets.token_bytes(LOGIN_CHALLENGE_SIZE))


def login_payload(*, device_id: str, challenge: str, server_origin: str) -> dict[str, str]:
    """The login statement a device signs. ValueError if ``challenge`` is not b64u of 32 bytes."""
    _b64u_decode_sized(challenge, LOGIN_CHALLENGE_SIZE, "challenge")
    if not device_id or not server_origin:
        raise ValueError("device_id and server_origin must be non-empty")
    return {"device_id": device_id, "challenge": challenge, "server_origin": server_origin}


def _is_login_payload(payload: Mapping[str, Any]) -> bool:
    return isinstance(payload, Mapping) and set(payload) == _LOGIN_FIELDS


def sign_login(keys: DeviceKeys, payload: Mapping[str, Any]) -> bytes:
    """Ed25519 over ``signing_input(CTX_LOGIN, payload)``; payload from ``login_payload``."""
    if not _is_login_payload(payload):
        raise ValueError("not a login payload; build it with login_payload()")
    return keys.signing_private_key().sign(signing_input(CTX_LOGIN, payload))


def verify_login(signing_public_key: bytes, payload: Mapping[str, Any], signature: bytes) -> bool:
    """True only if ``signature`` is the device's login signature over ``payload``.

    The caller builds ``payload`` itself from the challenge it issued, the device id claimed and
    its own origin, and keeps each challenge single-use.
    """
    if not _is_login_payload(payload):
        return False
    return _verify_signature(signing_public_key, signature, CTX_LOGIN, payload)


# --------------------------------------------------------------------------------------------
# Secrets at rest


class SecretError(ValueError):
    """A sealed secret cannot be opened (wrong passphrase, damage, or an unacceptable file)."""


@dataclass(frozen=True, slots=True)
class KdfParams:
    """Argon2id parameters (RFC 9106). The defaults are the ones to use.

    ``memory_kib`` is in KiB. Blobs record their parameters, so the defaults can rise later;
    ``open_secret`` refuses parameters outside ``KDF_MINIMUM``..``KDF_MAXIMUM``.
    """

    memory_kib: int = 64 * 1024
    iterations: int = 3
    lanes: int = 1

    @classmethod
    def for_tests(cls) -> KdfParams:
        """The cheapest accepted parameters (``KDF_MINIMUM``). Tests only, never for real keys."""
        return KDF_MINIMUM

    def check(self) -> None:
        """SecretError unless every parameter lies within the accepted range."""
        for name in ("memory_kib", "iterations", "lanes"):
            value = getattr(self, name)
            low, high = getattr(KDF_MINIMUM, name), getattr(KDF_MAXIMUM, name)
            if type(value) is not int or not low <= value <= high:
                raise SecretError(
                    f"Argon2id {name}={value!r} is outside the accepted range {low}..{high}"
                )


#: OWASP's minimum for Argon2id (19 MiB, 2 passes, 1 lane): below it a stolen file is too cheap
#: to attack; a tampered file must not be able to weaken the KDF.
KDF_MINIMUM: Final = KdfParams(memory_kib=19 * 1024, iterations=2, lanes=1)
#: Above this a tampered file could pin the CPU or exhaust memory when opened.
KDF_MAXIMUM: Final = KdfParams(memory_kib=1024 * 1024, iterations=10, lanes=16)

_SEALED_TYPE: Final = "attache-sealed-secret"
_SEALED_VERSION: Final = 1
_SEALED_FIELDS: Final = frozenset({"type", "version", "purpose", "kdf", "nonce", "ciphertext"})
_KDF_FIELDS: Final = frozenset({"algorithm", "memory_kib", "iterations", "lanes", "salt"})
_SALT_SIZE: Final = 16
_NONCE_SIZE: Final = 12
_PURPOSE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_DAMAGED: Final = "wrong passphrase or damaged key file"


def _check_purpose(purpose: str) -> None:
    if not isinstance(purpose, str) or _PURPOSE.fullmatch(purpose) is None:
        raise ValueError("purpose must match [a-z0-9][a-z0-9._-]{0,63}")


def _passphrase_bytes(passphrase: str) -> bytes:
    # NFC so that the same passphrase typed on systems that compose differently still opens.
    return unicodedata.normalize("NFC", passphrase).encode("utf-8")


def _sealed_key(passphrase: str, salt: bytes, params: KdfParams) -> bytes:
    return Argon2id(
        salt=salt,
        length=32,
        iterations=params.iterations,
        lanes=params.lanes,
        memory_cost=params.memory_kib,
    ).derive(_passphrase_bytes(passphrase))


def _sealed_associated_data(header: Mapping[str, Any]) -> bytes:
    return with_context(CTX_SEALED_SECRET, canonical_json(header))


def seal_secret(
    passphrase: str, plaintext: bytes, *, purpose: str, params: KdfParams | None = None
) -> bytes:
    """Encrypt ``plaintext`` under a passphrase, for storage on disk.

    Key = Argon2id(NFC(passphrase) as UTF-8, random 16-byte salt, ``params``), 32 bytes;
    AES-256-GCM with a random 12-byte nonce. The blob is RFC 8785 JSON (UTF-8)::

        {"ciphertext": b64u, "kdf": {"algorithm": "argon2id", "iterations": int,
         "lanes": int, "memory_kib": int, "salt": b64u}, "nonce": b64u,
         "purpose": str, "type": "attache-sealed-secret", "version": 1}

    The associated data is ``with_context(CTX_SEALED_SECRET, canonical_json(blob without
    "ciphertext"))``: format, version, purpose, KDF parameters, salt and nonce are all bound.
    ``purpose`` (e.g. ``"device-keys"``, ``"authority-key"``) stops one kind of secret being
    opened as another.
    """
    _check_purpose(purpose)
    if not passphrase:
        raise ValueError("an empty passphrase protects nothing")
    params = params or KdfParams()
    params.check()
    salt = secrets.token_bytes(_SALT_SIZE)
    nonce = secrets.token_bytes(_NONCE_SIZE)
    header: dict[str, Any] = {
        "type": _SEALED_TYPE,
        "version": _SEALED_VERSION,
        "purpose": purpose,
        "kdf": {
            "algorithm": "argon2id",
            "memory_kib": params.memory_kib,
            "iterations": params.iterations,
            "lanes": params.lanes,
            "salt": b64u_encode(salt),
        },
        "nonce": b64u_encode(nonce),
    }
    key = _sealed_key(passphrase, salt, params)
    ciphertext = AESGCM(key).encrypt(nonce, bytes(plaintext), _sealed_associated_data(header))
    return canonical_json({**header, "ciphertext": b64u_encode(ciphertext)})


def open_secret(passphrase: str, blob: bytes, *, purpose: str) -> bytes:
    """Inverse of ``seal_secret``.

    Raises SecretError: ``"wrong passphrase or damaged key file"`` for a wrong passphrase or any
    change to the blob, and a more specific message for a blob of another purpose or version,
    or one asking for KDF parameters outside the accepted range (checked before any work).
    """
    _check_purpose(purpose)
    try:
        document = _load_json_object(blob)
    except ValueError as exc:
        raise SecretError(_DAMAGED) from exc
    if set(document) != _SEALED_FIELDS or document["type"] != _SEALED_TYPE:
        raise SecretError(_DAMAGED)
    if type(document["version"]) is not int or document["version"] != _SEALED_VERSION:
        raise SecretError(f"unsupported key file version {document['version']!r}")
    if document["purpose"] != purpose:
        raise SecretError(f"this file holds a {document['purpose']!r} secret, not {purpose!r}")
    kdf = document["kdf"]
    if not isinstance(kdf, dict) or set(kdf) != _KDF_FIELDS or kdf["algorithm"] != "argon2id":
        raise SecretError(_DAMAGED)
    params = KdfParams(
        memory_kib=kdf["memory_kib"], iterations=kdf["iterations"], lanes=kdf["lanes"]
    )
    params.check()
    try:
        salt = _b64u_decode_sized(kdf["salt"], _SALT_SIZE, "salt")
        nonce = _b64u_decode_sized(document["nonce"], _NONCE_SIZE, "nonce")
        ciphertext = b64u_decode(document["ciphertext"])
    except ValueError as exc:
        raise SecretError(_DAMAGED) from exc
    header = {name: value for name, value in document.items() if name != "ciphertext"}
    key = _sealed_key(passphrase, salt, params)
    try:
        return AESGCM(key).decrypt(nonce, ciphertext, _sealed_associated_data(header))
    except InvalidTag as exc:
        raise SecretError(_DAMAGED) from exc
