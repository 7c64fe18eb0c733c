"""C2SP tlog-checkpoint bodies and C2SP signed-note Ed25519 signatures.

Pure and I/O-free; pyca/cryptography for Ed25519.

Checkpoint (c2sp.org/tlog-checkpoint)
    The note text ``<origin>\\n<size>\\n<root>\\n`` followed by optional extension lines, each
    ending in a newline: origin non-empty; size in ASCII decimal without leading zeros; root
    the standard base64 (RFC 4648 section 4, padded) of the 32-byte RFC 9162 root hash;
    extension lines non-empty. ``Checkpoint.parse`` accepts exactly what ``Checkpoint.body``
    produces and nothing else.

Signed note (c2sp.org/signed-note, Ed25519, signature type 0x01)
    ``text || "\\n" || signature lines``; each signature line is ``— <name> <base64(key id ||
    signature)>\\n`` with an em dash (U+2014), where the Ed25519 signature covers the text
    including its final newline, and ``key id = SHA-256(name || 0x0A || 0x01 || public
    key)[:4]``. A verifier key (vkey) is ``<name>+<hex key id>+<base64(0x01 || public key)>``.
    ``open_note`` ignores signatures from keys it does not know, rejects the whole note if a
    signature from a known key fails, and rejects a note no known key signed. Key names are
    non-empty and contain no Unicode space and no ``+``. Notes are valid UTF-8 without ASCII
    control characters other than newline, carry at most ``MAX_SIGNATURES`` signatures and
    ``MAX_NOTE_SIZE`` bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from protocol.merkle import HASH_SIZE

__all__ = [
    "MAX_NOTE_SIZE",
    "MAX_SIGNATURES",
    "SIGNATURE_TYPE_ED25519",
    "Checkpoint",
    "CheckpointError",
    "NoteSigner",
    "NoteVerifier",
    "note_key_id",
    "open_checkpoint",
    "open_note",
    "sign_checkpoint",
    "sign_note",
    "signature_line",
    "split_note",
]

SIGNATURE_TYPE_ED25519: Final = 0x01
#: More signatures than this make a note malformed (the limit of golang.org/x/mod/sumdb/note).
MAX_SIGNATURES: Final = 100
#: Every size is bounded: a note larger than this (UTF-8 bytes) is refused before any parsing.
MAX_NOTE_SIZE: Final = 1024 * 1024
#: Tree sizes are unsigned 63-bit, like the int64 sizes of the Go ecosystem.
MAX_TREE_SIZE: Final = 2**63 - 1

_KEY_ID_SIZE: Final = 4
_ED25519_PUBLIC_KEY_SIZE: Final = 32
_ED25519_SIGNATURE_SIZE: Final = 64
_SIGNATURE_PREFIX: Final = "\u2014 "
_TREE_SIZE = re.compile(r"0|[1-9][0-9]*")
_STD_BASE64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
_KEY_ID_HEX = re.compile(r"[0-9a-f]{8}")
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")


class CheckpointError(ValueError):
    """A checkpoint, note, signature or verifier key is malformed or does not verify."""


def _b64_encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _b64_decode(text: str, what: str) -> bytes:
    """Strict standard base64: padded, no whitespace, no non-zero trailing bits."""
    if _STD_BASE64.fullmatch(text) is None:
        raise CheckpointError(f"{what} is not standard padded base64")
    try:
        data = base64.b64decode(text, validate=True)
    except binascii.Error as exc:  # pragma: no cover - the pattern already excludes this
        raise CheckpointError(f"{what} is not standard padded base64") from exc
    if _b64_encode(data) != text:
        raise CheckpointError(f"{what} is not canonical base64: non-zero trailing bits")
    return data


def _check_text(text: str, what: str) -> bytes:
    """UTF-8 bytes of ``text``, which must be encodable and free of controls but newline."""
    if not isinstance(text, str):
        raise CheckpointError(f"{what} must be a string")
    try:
        encoded = text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise CheckpointError(f"{what} is not valid UTF-8 text") from exc
    if _CONTROL.search(text) is not None:
        raise CheckpointError(f"{what} contains an ASCII control character other than newline")
    return encoded


def _check_line(line: str, what: str) -> None:
    _check_text(line, what)
    if not line:
        raise CheckpointError(f"{what} is empty")
    if "\n" in line:
        raise CheckpointError(f"{what} contains a newline")


def _check_key_name(name: str) -> None:
    if not isinstance(name, str) or not name:
        raise CheckpointError("a key name must be a non-empty string")
    _check_text(name, f"key name {name!r}")
    if "+" in name or any(ch.isspace() for ch in name):
        raise CheckpointError(f"key name {name!r} contains a space or '+'")


# --------------------------------------------------------------------------------------------
# Checkpoint bodies


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A tree head: the log's origin, its size and its RFC 9162 root, plus extension lines.

    Construction checks every field (CheckpointError saying which is wrong).
    """

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_line(self.origin, "the origin line")
        if type(self.size) is not int or not 0 <= self.size <= MAX_TREE_SIZE:
            raise CheckpointError(f"tree size must be an int in 0..2**63-1, got {self.size!r}")
        if not isinstance(self.root, bytes) or len(self.root) != HASH_SIZE:
            raise CheckpointError(f"root hash must be {HASH_SIZE} bytes")
        if not isinstance(self.extensions, tuple):
            raise CheckpointError("extensions must be a tuple of lines")
        for number, line in enumerate(self.extensions, start=1):
            _check_line(line, f"extension line {number}")

    def body(self) -> str:
        """The note text: origin, size, base64 root and extension lines, each with ``\\n``."""
        lines = [self.origin, str(self.size), _b64_encode(self.root), *self.extensions]
        return "".join(line + "\n" for line in lines)

    @classmethod
    def parse(cls, body: str) -> Checkpoint:
        """Strict inverse of ``body()``; CheckpointError saying what is wrong otherwise."""
        _check_text(body, "checkpoint")
        if not body.endswith("\n"):
            raise CheckpointError("checkpoint does not end with a newline")
        lines = body[:-1].split("\n")
        if len(lines) < 3:
            raise CheckpointError(
                f"checkpoint has {len(lines)} lines; origin, size and root hash are required"
            )
        for number, line in enumerate(lines, start=1):
            if not line:
                raise CheckpointError(f"checkpoint line {number} is empty")
        origin, size_text, root_text, *extensions = lines
        if _TREE_SIZE.fullmatch(size_text) is None:
            raise CheckpointError(
                f"tree size {size_text!r} is not decimal digits without leading zeros"
            )
        size = int(size_text)
        if size > MAX_TREE_SIZE:
            raise CheckpointError(f"tree size {size_text} is larger than 2**63-1")
        root = _b64_decode(root_text, "root hash")
        if len(root) != HASH_SIZE:
            raise CheckpointError(f"root hash is {len(root)} bytes, not {HASH_SIZE}")
        return cls(origin=origin, size=size, root=root, extensions=tuple(extensions))


# --------------------------------------------------------------------------------------------
# Signers and verifiers


def note_key_id(name: str, public_key: bytes) -> bytes:
    """``SHA-256(name || 0x0A || 0x01 || public_key)[:4]``, the Ed25519 key ID of a note key."""
    _check_key_name(name)
    material = bytes([SIGNATURE_TYPE_ED25519]) + bytes(public_key)
    return hashlib.sha256(name.encode("utf-8") + b"\n" + material).digest()[:_KEY_ID_SIZE]


@dataclass(frozen=True, slots=True)
class NoteVerifier:
    """An Ed25519 note verifier key: a key name and a 32-byte raw public key."""

    name: str
    public_key: bytes

    def __post_init__(self) -> None:
        _check_key_name(self.name)
        if (
            not isinstance(self.public_key, bytes)
            or len(self.public_key) != _ED25519_PUBLIC_KEY_SIZE
        ):
            raise CheckpointError(f"an Ed25519 public key is {_ED25519_PUBLIC_KEY_SIZE} bytes")
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key)
        except ValueError as exc:  # pragma: no cover - every 32-byte string loads today
            raise CheckpointError("not an Ed25519 public key") from exc

    @property
    def key_id(self) -> bytes:
        return note_key_id(self.name, self.public_key)

    @classmethod
    def from_vkey(cls, vkey: str) -> NoteVerifier:
        """Parse ``<name>+<8 hex digits key id>+<base64(0x01 || public key)>``.

        CheckpointError for anything else, including a key id that is not the one the name
        and key imply, and a signature type other than Ed25519.
        """
        if not isinstance(vkey, str):
            raise CheckpointError("a verifier key must be a string")
        parts = vkey.split("+", 2)
        if len(parts) != 3:
            raise CheckpointError("a verifier key is <name>+<key id>+<key>")
        name, key_id_hex, key_b64 = parts
        _check_key_name(name)
        if _KEY_ID_HEX.fullmatch(key_id_hex) is None:
            raise CheckpointError("a verifier key id is 8 lower-case hex digits")
        material = _b64_decode(key_b64, "verifier key")
        if not material or material[0] != SIGNATURE_TYPE_ED25519:
            raise CheckpointError("verifier key is not an Ed25519 (type 0x01) key")
        if len(material) != 1 + _ED25519_PUBLIC_KEY_SIZE:
            raise CheckpointError("an Ed25519 verifier key holds 32 bytes")
        verifier = cls(name=name, public_key=material[1:])
        if verifier.key_id.hex() != key_id_hex:
            raise CheckpointError(f"verifier key id {key_id_hex} does not match its name and key")
        return verifier

    def vkey(self) -> str:
        material = bytes([SIGNATURE_TYPE_ED25519]) + self.public_key
        return f"{self.name}+{self.key_id.hex()}+{_b64_encode(material)}"

    def verify(self, message: bytes, signature: bytes) -> bool:
        """True only if ``signature`` is this key's Ed25519 signature over ``message``."""
        if len(signature) != _ED25519_SIGNATURE_SIZE:
            return False
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except InvalidSignature:
            return False
        return True


class NoteSigner:
    """Signs notes with an Ed25519 key under a key name (typically the log's origin)."""

    __slots__ = ("_private_key", "_verifier")

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        if not isinstance(private_key, Ed25519PrivateKey):
            raise CheckpointError("a note signer needs an Ed25519 private key")
        self._private_key = private_key
        self._verifier = NoteVerifier(name, private_key.public_key().public_bytes_raw())

    def __repr__(self) -> str:
        return f"NoteSigner({self.vkey()!r})"

    @property
    def name(self) -> str:
        return self._verifier.name

    @property
    def key_id(self) -> bytes:
        return self._verifier.key_id

    def verifier(self) -> NoteVerifier:
        return self._verifier

    def vkey(self) -> str:
        """The verifier key to publish for this signer."""
        return self._verifier.vkey()

    def _signature_line(self, text: str) -> str:
        """``— <name> <base64(key id || Ed25519(text))>\\n`` for a checked note text."""
        signature = self._private_key.sign(text.encode("utf-8"))
        return f"{_SIGNATURE_PREFIX}{self.name} {_b64_encode(self.key_id + signature)}\n"


# --------------------------------------------------------------------------------------------
# Notes


def _check_note_text(body: str) -> None:
    _check_text(body, "note text")
    if not body.endswith("\n"):
        raise CheckpointError("note text does not end with a newline")


def sign_note(body: str, *signers: NoteSigner) -> str:
    """The signed note: ``body``, a blank line, and one signature line per signer.

    ``body`` must be valid note text (non-empty, ending in a newline, no ASCII control
    character other than newline); CheckpointError otherwise.
    """
    _check_note_text(body)
    if not signers:
        raise CheckpointError("a note needs at least one signer")
    if len(signers) > MAX_SIGNATURES:
        raise CheckpointError(f"a note carries at most {MAX_SIGNATURES} signatures")
    note = body + "\n" + "".join(signer._signature_line(body) for signer in signers)
    if len(note.encode("utf-8")) > MAX_NOTE_SIZE:
        raise CheckpointError(f"the signed note would exceed {MAX_NOTE_SIZE} bytes")
    return note


def _verifier_table(
    verifiers: Iterable[NoteVerifier],
) -> dict[tuple[str, bytes], NoteVerifier]:
    table: dict[tuple[str, bytes], NoteVerifier] = {}
    for verifier in verifiers:
        if not isinstance(verifier, NoteVerifier):
            raise TypeError("verifiers must be NoteVerifier instances")
        key = (verifier.name, verifier.key_id)
        known = table.setdefault(key, verifier)
        if known.public_key != verifier.public_key:
            raise CheckpointError(
                f"ambiguous verifier keys: two keys named {verifier.name} "
                f"share key id {verifier.key_id.hex()}"
            )
    return table


def split_note(text: str) -> tuple[str, tuple[tuple[str, bytes], ...]]:
    """A note's text and its signature lines, each as (key name, key id || signature bytes),
    without verifying any: CheckpointError if the note is malformed (see the module
    docstring). For signature types other than ``open_note``'s, such as cosignatures."""
    if not isinstance(text, str):
        raise CheckpointError("a note must be a string")
    if len(text) > MAX_NOTE_SIZE or len(_check_text(text, "note")) > MAX_NOTE_SIZE:
        raise CheckpointError(f"note is larger than {MAX_NOTE_SIZE} bytes")
    split = text.rfind("\n\n")
    if split < 0:
        raise CheckpointError("note has no blank line before its signatures")
    body, block = text[: split + 1], text[split + 2 :]
    if not block:
        raise CheckpointError("note has no signature lines")
    if not block.endswith("\n"):
        raise CheckpointError("the last signature line does not end with a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise CheckpointError(f"note has {len(lines)} signatures; at most {MAX_SIGNATURES}")
    signatures = []
    for number, line in enumerate(lines, start=1):
        if not line.startswith(_SIGNATURE_PREFIX):
            raise CheckpointError(
                f"signature line {number} does not begin with an em dash (U+2014) and a space"
            )
        name, space, encoded = line[len(_SIGNATURE_PREFIX) :].partition(" ")
        if not space:
            raise CheckpointError(f"signature line {number} has no signature after the name")
        _check_key_name(name)
        blob = _b64_decode(encoded, f"signature on line {number}")
        if len(blob) < _KEY_ID_SIZE + 1:
            raise CheckpointError(f"signature on line {number} is too short")
        signatures.append((name, blob))
    return body, tuple(signatures)


def signature_line(name: str, blob: bytes) -> str:
    """``— <name> <base64(blob)>\\n``, a note signature line (blob: key id || signature)."""
    _check_key_name(name)
    return f"{_SIGNATURE_PREFIX}{name} {_b64_encode(blob)}\n"


def open_note(text: str, verifiers: Iterable[NoteVerifier]) -> tuple[str, tuple[str, ...]]:
    """Verify a signed note; returns its text and the names of the known keys that signed it.

    Signatures from keys not among ``verifiers`` (matched on name and key id together) are
    ignored. CheckpointError if the note is malformed (see the module docstring), if any
    signature from a known key fails, or if no known key signed it.
    """
    table = _verifier_table(verifiers)
    body, signatures = split_note(text)
    message = body.encode("utf-8")
    verified: dict[str, None] = {}
    for number, (name, blob) in enumerate(signatures, start=1):
        verifier = table.get((name, blob[:_KEY_ID_SIZE]))
        if verifier is None:
            continue
        if not verifier.verify(message, blob[_KEY_ID_SIZE:]):
            raise CheckpointError(
                f"invalid signature for key {name}+{blob[:_KEY_ID_SIZE].hex()} on line {number}"
            )
        verified[name] = None
    if not verified:
        raise CheckpointError("note has no valid signature from a known key")
    return body, tuple(verified)


def sign_checkpoint(checkpoint: Checkpoint, *signers: NoteSigner) -> str:
    """``sign_note(checkpoint.body(), *signers)``."""
    return sign_note(checkpoint.body(), *signers)


def open_checkpoint(text: str, verifiers: Iterable[NoteVerifier], *, origin: str) -> Checkpoint:
    """Verify a signed checkpoint note and parse it; its origin must be ``origin``.

    The origin check stops a checkpoint of one log (signed by a shared key) being passed off
    as another's. CheckpointError for anything ``open_note`` or ``Checkpoint.parse`` refuses.
    """
    body, _ = open_note(text, verifiers)
    checkpoint = Checkpoint.parse(body)
    if checkpoint.origin != origin:
        raise CheckpointError(
            f"checkpoint is for origin {checkpoint.origin!r}, expected {origin!r}"
        )
    return checkpoint
