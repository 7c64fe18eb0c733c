"""C2SP tlog-cosignature v1 (Ed25519): witnesses' timestamped cosignatures of checkpoints.

Pure and I/O-free; pyca/cryptography for Ed25519.

Cosignature (c2sp.org/tlog-cosignature, the Ed25519 type)
    A note signature line ``— <witness name> <base64(key id || timestamp || signature)>\\n``
    appended to a checkpoint's signed note, where

    - ``key id = SHA-256(<name> || 0x0A || 0x04 || 32-byte Ed25519 public key)[:4]``
      (signature type 0x04; the log's own key uses 0x01, so the two never collide);
    - ``timestamp`` is a big-endian u64, POSIX seconds when the witness cosigned, at most
      2**63 - 1;
    - ``signature`` is the 64-byte Ed25519 signature over ``"cosignature/v1\\n" || "time " ||
      decimal(timestamp) || "\\n" || <checkpoint note text>`` (the whole text, extension lines
      and its final newline included, no signature line).

    A verifier key (vkey) is ``<name>+<hex key id>+<base64(0x04 || public key)>``. The signed
    message does not commit to the name: one key must never serve two witness names.

Semantics: a cosignature says that, at ``timestamp``, the checkpoint is the largest the
witness has seen of the log named by the origin line, and that it is consistent with every
checkpoint of that log the witness cosigned before (``check_extends`` is that check). What it
says is about the origin, size and root; nothing about extension lines.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from protocol import merkle
from protocol.checkpoint import (
    MAX_TREE_SIZE,
    Checkpoint,
    CheckpointError,
    NoteVerifier,
    signature_line,
    split_note,
)

__all__ = [
    "COSIGNATURE_SIZE",
    "SIGNATURE_TYPE_COSIGNATURE_V1",
    "Cosignature",
    "CosignatureSigner",
    "CosignatureVerifier",
    "WitnessCheck",
    "WitnessRefusal",
    "check_extends",
    "check_witnesses",
    "cosignature_key_id",
    "cosigned_message",
    "note_cosignatures",
]

SIGNATURE_TYPE_COSIGNATURE_V1: Final = 0x04
_KEY_ID_SIZE: Final = 4
_TIMESTAMP_SIZE: Final = 8
_SIGNATURE_SIZE: Final = 64
_PUBLIC_KEY_SIZE: Final = 32
#: key id, timestamp and Ed25519 signature: the bytes of one cosignature line.
COSIGNATURE_SIZE: Final = _KEY_ID_SIZE + _TIMESTAMP_SIZE + _SIGNATURE_SIZE
MAX_TIMESTAMP: Final = 2**63 - 1


def cosignature_key_id(name: str, public_key: bytes) -> bytes:
    """``SHA-256(name || 0x0A || 0x04 || public_key)[:4]``."""
    # NoteVerifier checks the name (non-empty, no space, no '+') and the key's size.
    NoteVerifier(name, bytes(public_key))
    material = bytes([SIGNATURE_TYPE_COSIGNATURE_V1]) + bytes(public_key)
    return hashlib.sha256(name.encode("utf-8") + b"\n" + material).digest()[:_KEY_ID_SIZE]


def _check_timestamp(timestamp: int) -> None:
    if type(timestamp) is not int or not 0 <= timestamp <= MAX_TIMESTAMP:
        raise CheckpointError(f"a cosignature's time is an int in 0..2**63-1, got {timestamp!r}")


def cosigned_message(body: str, timestamp: int) -> bytes:
    """``cosignature/v1\\ntime <timestamp>\\n`` followed by the checkpoint's note text."""
    _check_timestamp(timestamp)
    Checkpoint.parse(body)  # a checkpoint, and nothing else, is cosigned
    return f"cosignature/v1\ntime {timestamp}\n{body}".encode()


@dataclass(frozen=True, slots=True)
class Cosignature:
    """One witness's cosignature as it travels: name, key id, time and signature."""

    name: str
    key_id: bytes
    timestamp: int
    signature: bytes

    def line(self) -> str:
        """The note signature line, with its final newline."""
        blob = self.key_id + struct.pack(">Q", self.timestamp) + self.signature
        return signature_line(self.name, blob)

    @classmethod
    def from_blob(cls, name: str, blob: bytes) -> Cosignature:
        if len(blob) != COSIGNATURE_SIZE:
            raise CheckpointError(
                f"a cosignature of {name} is {len(blob)} bytes, not {COSIGNATURE_SIZE}"
            )
        (timestamp,) = struct.unpack(">Q", blob[_KEY_ID_SIZE : _KEY_ID_SIZE + _TIMESTAMP_SIZE])
        if timestamp > MAX_TIMESTAMP:
            raise CheckpointError(f"the cosignature of {name} has a time beyond 2**63-1")
        return cls(name, blob[:_KEY_ID_SIZE], timestamp, blob[_KEY_ID_SIZE + _TIMESTAMP_SIZE :])

    @classmethod
    def parse_line(cls, line: str) -> Cosignature:
        """One signature line (with or without its newline), as a cosignature."""
        text = line if line.endswith("\n") else line + "\n"
        # A line is checked as the signature block of a minimal note.
        _, signatures = split_note("x\n\n" + text)
        if len(signatures) != 1:
            raise CheckpointError("give exactly one cosignature line")
        return cls.from_blob(*signatures[0])


@dataclass(frozen=True, slots=True)
class CosignatureVerifier:
    """A witness as a verifier knows it: its name and its pinned 32-byte Ed25519 key."""

    name: str
    public_key: bytes

    def __post_init__(self) -> None:
        NoteVerifier(self.name, self.public_key)  # checks the name and the key

    @property
    def key_id(self) -> bytes:
        return cosignature_key_id(self.name, self.public_key)

    @classmethod
    def from_vkey(cls, vkey: str) -> CosignatureVerifier:
        """Parse ``<name>+<8 hex digits>+<base64(0x04 || key)>``; CheckpointError otherwise,
        including for a key id that the name and key do not give."""
        if not isinstance(vkey, str):
            raise CheckpointError("a witness key must be a string")
        parts = vkey.split("+", 2)
        if len(parts) != 3:
            raise CheckpointError("a witness key is <name>+<key id>+<key>")
        name, key_id_hex, key_b64 = parts
        try:
            material = base64.b64decode(key_b64, validate=True)
        except ValueError as exc:  # binascii.Error, or a character outside ASCII
            raise CheckpointError("a witness key's key is not standard base64") from exc
        if base64.b64encode(material).decode("ascii") != key_b64:
            raise CheckpointError("a witness key's key is not canonical base64")
        if not material or material[0] != SIGNATURE_TYPE_COSIGNATURE_V1:
            raise CheckpointError(
                "not a witness key: its type is not 0x04 (C2SP tlog-cosignature v1, Ed25519)"
            )
        if len(material) != 1 + _PUBLIC_KEY_SIZE:
            raise CheckpointError("a witness's Ed25519 key holds 32 bytes")
        verifier = cls(name, material[1:])
        if verifier.key_id.hex() != key_id_hex:
            raise CheckpointError(f"witness key id {key_id_hex} does not match its name and key")
        return verifier

    def vkey(self) -> str:
        material = bytes([SIGNATURE_TYPE_COSIGNATURE_V1]) + self.public_key
        return f"{self.name}+{self.key_id.hex()}+{base64.b64encode(material).decode('ascii')}"

    def matches(self, cosignature: Cosignature) -> bool:
        """Whether ``cosignature`` claims to be this witness's (name and key id)."""
        return cosignature.name == self.name and hmac.compare_digest(
            cosignature.key_id, self.key_id
        )

    def verify(self, body: str, cosignature: Cosignature) -> bool:
        """True only if ``cosignature`` is this witness's, over the checkpoint text ``body``."""
        if not self.matches(cosignature) or len(cosignature.signature) != _SIGNATURE_SIZE:
            return False
        try:
            message = cosigned_message(body, cosignature.timestamp)
        except CheckpointError:
            return False
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(
                cosignature.signature, message
            )
        except InvalidSignature:
            return False
        return True


class CosignatureSigner:
    """A witness's signing key under its name."""

    __slots__ = ("_private_key", "_verifier")

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        if not isinstance(private_key, Ed25519PrivateKey):
            raise CheckpointError("a witness needs an Ed25519 private key")
        self._private_key = private_key
        self._verifier = CosignatureVerifier(name, private_key.public_key().public_bytes_raw())

    def __repr__(self) -> str:
        return f"CosignatureSigner({self.vkey()!r})"

    @property
    def name(self) -> str:
        return self._verifier.name

    def verifier(self) -> CosignatureVerifier:
        return self._verifier

    def vkey(self) -> str:
        return self._verifier.vkey()

    def cosign(self, body: str, timestamp: int) -> Cosignature:
        """The cosignature of the checkpoint text ``body`` at ``timestamp`` (POSIX seconds).

        Only a caller that has checked ``check_extends`` against everything this witness
        cosigned before may call this: the signature says it did."""
        signature = self._private_key.sign(cosigned_message(body, timestamp))
        return Cosignature(self.name, self._verifier.key_id, timestamp, signature)


def note_cosignatures(text: str) -> tuple[str, tuple[Cosignature, ...]]:
    """A signed checkpoint's text and the signature lines that have a cosignature's shape
    (76 bytes); others (the log's own, other types) are left out. Nothing is verified."""
    body, signatures = split_note(text)
    found = []
    for name, blob in signatures:
        if len(blob) == COSIGNATURE_SIZE:
            found.append(Cosignature.from_blob(name, blob))
    return body, tuple(found)


@dataclass(frozen=True, slots=True)
class WitnessCheck:
    """What a note's cosignatures say for the witnesses a verifier requires."""

    valid: dict[str, int]  # witness name -> timestamp of its valid (and fresh) cosignature
    forged: tuple[str, ...]  # witnesses whose line claims their key but does not verify
    missing: tuple[str, ...]  # required witnesses with no cosignature line at all
    # Witnesses whose valid cosignature is older than the verifier's limit: name -> its age
    # in seconds. They do not count: an old cosignature vouches for an old view.
    stale: dict[str, int] = field(default_factory=dict)

    def problems(self, minimum: int) -> list[str]:
        """Plain sentences, empty when at least ``minimum`` witnesses cosigned validly (and
        recently enough) and none of the required ones has a forged line."""
        said = [
            f"the cosignature of witness {name} does not verify with its pinned key: forged"
            for name in self.forged
        ]
        if len(self.valid) < minimum:
            absent = ", ".join(self.missing) if self.missing else "none"
            old = "".join(
                f"; too old: {name}, cosigned {age} s ago" for name, age in self.stale.items()
            )
            said.append(
                f"the checkpoint has {len(self.valid)} valid cosignatures of the {minimum} "
                f"required from the witnesses pinned (missing: {absent}{old})"
            )
        return said


def check_witnesses(
    text: str,
    witnesses: Iterable[CosignatureVerifier],
    *,
    now: int | None = None,
    max_age: int | None = None,
) -> WitnessCheck:
    """Check a signed checkpoint's cosignatures against the pinned ``witnesses``.

    Lines of unknown witnesses are ignored (a verifier counts only those it pinned); a line
    that names a pinned witness and its key id but does not verify is ``forged``. With
    ``max_age`` (seconds) and ``now`` (POSIX seconds), a valid cosignature made more than
    ``max_age`` before ``now`` is ``stale`` and does not count: a server replaying an old,
    honestly cosigned checkpoint to a verifier that never saw a newer one is caught so.
    CheckpointError if the note or its text is malformed."""
    if (now is None) != (max_age is None):
        raise ValueError("give now and max_age together")
    body, found = note_cosignatures(text)
    Checkpoint.parse(body)
    valid: dict[str, int] = {}
    forged: list[str] = []
    missing: list[str] = []
    stale: dict[str, int] = {}
    for witness in witnesses:
        claimed = [c for c in found if witness.matches(c)]
        if not claimed:
            missing.append(witness.name)
        elif not all(witness.verify(body, c) for c in claimed):
            forged.append(witness.name)
        else:
            newest = max(c.timestamp for c in claimed)
            if now is not None and max_age is not None and now - newest > max_age:
                stale[witness.name] = now - newest
            else:
                valid[witness.name] = newest
    return WitnessCheck(valid, tuple(forged), tuple(missing), stale)


class WitnessRefusal(ValueError):
    """The log's checkpoint does not extend what this witness cosigned before; the message
    names how (a fork, a rollback, a failed consistency proof)."""


def check_extends(
    previous: tuple[int, bytes] | None, checkpoint: Checkpoint, proof: Sequence[bytes]
) -> None:
    """The witness's one rule: ``checkpoint`` must be consistent with ``previous`` (size,
    root), the largest checkpoint this witness cosigned of that log, by an RFC 9162
    consistency ``proof``; the same size must have the same root; a smaller size is a
    rollback. WitnessRefusal naming what was wrong; nothing when there is no previous."""
    if previous is None:
        return
    size, root = previous
    if not 0 <= size <= MAX_TREE_SIZE:
        raise WitnessRefusal(f"the witness's state holds an impossible size {size}")
    if checkpoint.size < size:
        raise WitnessRefusal(
            f"the log served a checkpoint of size {checkpoint.size}, older than the size "
            f"{size} this witness cosigned: a rollback or a replayed checkpoint"
        )
    if checkpoint.size == size:
        if not hmac.compare_digest(checkpoint.root, root):
            raise WitnessRefusal(
                f"FORK: the log served a checkpoint of size {size} with root "
                f"{checkpoint.root.hex()}, but this witness cosigned size {size} with root "
                f"{root.hex()}"
            )
        return
    if size == 0:
        return  # every tree extends the empty one
    if not merkle.verify_consistency(size, checkpoint.size, root, checkpoint.root, list(proof)):
        raise WitnessRefusal(
            f"FORK: the checkpoint of size {checkpoint.size} is not consistent with the size "
            f"{size} this witness cosigned (the consistency proof fails)"
        )
