"""Key transparency: the key directory, and a client's check of a device's current status.

Pure and I/O-free. PROTOCOL.md §19 is the contract; this module is its reference.

Key events
    The audit log's ``device.register``, ``device.certify`` and ``device.revoke`` leaves (allow
    decisions). Read in log order they give each device ever registered its current status.

Key directory
    One entry per device ever registered (``DirectoryEntry``): device and user ids, the public
    keys as the registration leaf records them (the Ed25519 key, the SHA-256 of the X-Wing
    key), the status (``pending``, ``active``, ``revoked``), the log index of its registration
    and of its latest key event. Its root is the RFC 9162 Merkle tree over the entries' RFC
    8785 bytes, sorted by device id (code point order, which for ids is byte order).

Directory leaves
    The integrator ends every checkpoint with a ``keys.directory`` leaf holding the root and
    size of the directory over every key event before it. Witnesses cosign origin, size and
    root only, so the directory is bound through the tree, never in a checkpoint extension
    line. A client checks that the directory leaf is the checkpoint's last leaf: then no key
    event of that checkpoint can follow it. Auditors recompute every directory leaf from the
    key events before it (``KeyDirectory``), so a directory that lies is caught.

``verify_device`` is what a client does with the bundle ``GET /v1/devices/{id}/transparency``
serves: every refusal is a ``TransparencyError`` whose message says what was wrong.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from protocol import checkpoint as notes
from protocol import merkle
from protocol.canonical import canonical_json

__all__ = [
    "DIRECTORY_ACTION",
    "KEY_ACTIONS",
    "DirectoryEntry",
    "KeyDirectory",
    "TransparencyError",
    "VerifiedDevice",
    "directory_details",
    "is_key_event",
    "parse_directory_leaf",
    "parse_leaf",
    "verify_checkpoint",
    "verify_device",
]

REGISTER: Final = "device.register"
CERTIFY: Final = "device.certify"
REVOKE: Final = "device.revoke"
#: Leaves whose actions change the key directory (allow decisions only).
KEY_ACTIONS: Final = frozenset({REGISTER, CERTIFY, REVOKE})
#: The action of a directory leaf.
DIRECTORY_ACTION: Final = "keys.directory"

PENDING: Final = "pending"
ACTIVE: Final = "active"
REVOKED: Final = "revoked"
STATUSES: Final = (PENDING, ACTIVE, REVOKED)

_ENTRY_FIELDS: Final = frozenset(
    {"device", "user", "signing_key", "encryption_key_sha256", "status", "registered", "event"}
)
_MAX_INDEX: Final = 2**53 - 1


class TransparencyError(ValueError):
    """A key directory, a directory leaf or a transparency bundle is malformed or does not
    prove what it must; the message says what was wrong."""


class CheckpointRefused(TransparencyError):
    """The checkpoint itself is refused (not signed by the pinned key, older than or forked
    from the one held): the whole log is in doubt, not one device."""


class NotLogged(TransparencyError):
    """The directory does not show the device active *yet*: not in it, or pending there. A
    device certified since the latest checkpoint looks like this until the integrator logs
    it, so a client may ask again shortly before refusing it."""


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64u_decode(text: object, what: str) -> bytes:
    if not isinstance(text, str):
        raise TransparencyError(f"{what} is not a base64url string")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as exc:
        raise TransparencyError(f"{what} is not base64url") from exc
    if _b64u(data) != text:
        raise TransparencyError(f"{what} is not canonical unpadded base64url")
    return data


def _index(value: object, what: str) -> int:
    if type(value) is not int or not 0 <= value <= _MAX_INDEX:
        raise TransparencyError(f"{what} is not an index (an integer from 0 to 2^53 - 1)")
    return value


def parse_leaf(data: str | bytes, what: str = "the leaf") -> dict[str, Any]:
    """A log leaf's JSON object, refusing duplicate keys and NaN (PROTOCOL.md §1)."""

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
    except ValueError as exc:
        raise TransparencyError(f"{what} is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise TransparencyError(f"{what} is not a JSON object")
    return value


def _field(leaf: Mapping[str, Any], *path: str) -> Any:
    value: Any = leaf
    for name in path:
        value = value.get(name) if isinstance(value, Mapping) else None
    return value


def is_key_event(leaf: Mapping[str, Any]) -> bool:
    """Whether an audit leaf changes the key directory."""
    return leaf.get("action") in KEY_ACTIONS and leaf.get("decision") == "allow"


# --------------------------------------------------------------------------------------------
# Entries and the directory


@dataclass(frozen=True, slots=True)
class DirectoryEntry:
    """One device's line in the key directory (PROTOCOL.md §19.1)."""

    device: str
    user: str
    signing_key: str  # b64u of the Ed25519 public key, as the registration leaf has it
    encryption_key_sha256: str  # b64u of SHA-256 of the X-Wing public key
    status: str
    registered: int  # log index of its device.register leaf
    event: int  # log index of its latest key event

    def to_json(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "user": self.user,
            "signing_key": self.signing_key,
            "encryption_key_sha256": self.encryption_key_sha256,
            "status": self.status,
            "registered": self.registered,
            "event": self.event,
        }

    def encode(self) -> bytes:
        """The entry's RFC 8785 bytes: what the directory tree's leaf hashes."""
        return canonical_json(self.to_json())

    def leaf_hash(self) -> bytes:
        return merkle.leaf_hash(self.encode())

    @classmethod
    def parse(cls, data: str | bytes) -> DirectoryEntry:
        """Strict: exactly the fields of §19.1, well formed, and ``data`` its canonical bytes."""
        value = parse_leaf(data, "the directory entry")
        if set(value) != _ENTRY_FIELDS:
            raise TransparencyError(
                "the directory entry must have exactly the fields "
                + ", ".join(sorted(_ENTRY_FIELDS))
            )
        for name in ("device", "user", "signing_key", "encryption_key_sha256", "status"):
            if not isinstance(value[name], str) or not value[name]:
                raise TransparencyError(f"the directory entry's {name} is not a non-empty string")
        if value["status"] not in STATUSES:
            raise TransparencyError(f"the directory entry's status {value['status']!r} is unknown")
        if len(_b64u_decode(value["signing_key"], "the entry's signing_key")) != 32:
            raise TransparencyError("the directory entry's signing_key is not 32 bytes")
        sha = _b64u_decode(value["encryption_key_sha256"], "the entry's encryption_key_sha256")
        if len(sha) != 32:
            raise TransparencyError("the directory entry's encryption_key_sha256 is not 32 bytes")
        entry = cls(
            device=value["device"],
            user=value["user"],
            signing_key=value["signing_key"],
            encryption_key_sha256=value["encryption_key_sha256"],
            status=value["status"],
            registered=_index(value["registered"], "the directory entry's registered"),
            event=_index(value["event"], "the directory entry's event"),
        )
        raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        if entry.encode() != raw:
            raise TransparencyError("the directory entry is not in canonical form (RFC 8785)")
        return entry


class KeyDirectory:
    """The key directory as key events build it, in log order.

    The integrator keeps one to write directory leaves; an auditor builds one from the leaves
    it downloads and compares every directory leaf with it. ``apply`` refuses (returns why) a
    key event that does not fit, leaving the directory as it was: a second registration of a
    device, a certification or revocation of a device never registered, a certification of a
    revoked device, or a registration without its keys.
    """

    def __init__(self, entries: Iterable[DirectoryEntry] = ()) -> None:
        self._entries: dict[str, DirectoryEntry] = {e.device: e for e in entries}
        self._hashes: dict[str, bytes] = {}
        self._root: tuple[bytes, int] | None = None

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, device: str) -> DirectoryEntry | None:
        return self._entries.get(device)

    def entries(self) -> list[DirectoryEntry]:
        """Every entry, sorted by device id: the directory tree's leaf order."""
        return [self._entries[d] for d in sorted(self._entries)]

    def apply(self, index: int, leaf: Mapping[str, Any]) -> str | None:
        """Apply the key event at log ``index``; None if applied (or not a key event), else
        why it was refused."""
        if not is_key_event(leaf):
            return None
        action = leaf["action"]
        device = _field(leaf, "object", "id")
        if _field(leaf, "object", "type") != "device" or not isinstance(device, str) or not device:
            return f"{action} at leaf {index} names no device"
        known = self._entries.get(device)
        if action == REGISTER:
            user = _field(leaf, "actor", "user")
            signing_key = _field(leaf, "details", "signing_key")
            sha = _field(leaf, "details", "encryption_key_sha256")
            status = _field(leaf, "details", "status")
            if known is not None:
                return f"device {device} is registered again at leaf {index}"
            if not all(isinstance(v, str) and v for v in (user, signing_key, sha)):
                return f"the registration of device {device} at leaf {index} lacks its keys"
            if status not in (PENDING, ACTIVE):
                return f"the registration of device {device} at leaf {index} has no status"
            entry = DirectoryEntry(device, user, signing_key, sha, status, index, index)
        elif known is None:
            return f"{action} at leaf {index} is for device {device}, never registered"
        elif action == CERTIFY:
            if known.status == REVOKED:
                return f"device {device}, revoked, is certified again at leaf {index}"
            entry = DirectoryEntry(**{**known.to_json(), "status": ACTIVE, "event": index})
        else:
            entry = DirectoryEntry(**{**known.to_json(), "status": REVOKED, "event": index})
        self._entries[device] = entry
        self._hashes.pop(device, None)
        self._root = None
        return None

    def _leaf_hashes(self) -> list[bytes]:
        hashes = []
        for device in sorted(self._entries):
            digest = self._hashes.get(device)
            if digest is None:
                digest = self._hashes[device] = self._entries[device].leaf_hash()
            hashes.append(digest)
        return hashes

    def root(self) -> tuple[bytes, int]:
        """(root, size) of the directory tree; recomputed only after a change."""
        if self._root is None:
            hashes = self._leaf_hashes()
            self._root = (merkle.root(hashes), len(hashes))
        return self._root

    def tree(self) -> tuple[merkle.MerkleTree, dict[str, int]]:
        """The directory tree and each device's position in it, for serving proofs."""
        order = sorted(self._entries)
        return merkle.MerkleTree(self._leaf_hashes()), {d: i for i, d in enumerate(order)}


def directory_details(root: bytes, size: int) -> dict[str, Any]:
    """The ``directory`` member of a directory leaf's ``details``."""
    return {"root": _b64u(root), "size": size}


def parse_directory_leaf(leaf: Mapping[str, Any]) -> tuple[bytes, int]:
    """(root, size) of a ``keys.directory`` leaf; TransparencyError if it is not one."""
    if leaf.get("action") != DIRECTORY_ACTION or leaf.get("decision") != "allow":
        raise TransparencyError(
            f"the leaf is a {leaf.get('action')!r} event, not a key directory ({DIRECTORY_ACTION})"
        )
    directory = _field(leaf, "details", "directory")
    if not isinstance(directory, Mapping) or set(directory) != {"root", "size"}:
        raise TransparencyError("the directory leaf's details.directory is not {root, size}")
    root = _b64u_decode(directory["root"], "the directory root")
    if len(root) != merkle.HASH_SIZE:
        raise TransparencyError("the directory root is not 32 bytes")
    return root, _index(directory["size"], "the directory size")


# --------------------------------------------------------------------------------------------
# What a client checks


@dataclass(frozen=True)
class VerifiedDevice:
    """A device shown registered, active and with the certificate's keys at checkpoint
    (``size``, ``root``), whose signed ``note`` the client keeps to hold the server to it."""

    size: int
    root: bytes
    note: str
    entry: DirectoryEntry


def _hashes(value: object, what: str) -> list[bytes]:
    if not isinstance(value, list) or len(value) > 128:
        raise TransparencyError(f"{what} is not a list of hashes")
    return [_b64u_decode(h, f"a hash of {what}") for h in value]


def _part(bundle: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = bundle.get(name)
    if not isinstance(value, Mapping):
        raise TransparencyError(f"the transparency bundle has no {name} object")
    return value


def _text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise TransparencyError(f"the bundle's {what} is missing or not text")
    return value


def verify_checkpoint(
    checkpoint: Mapping[str, Any],
    *,
    log_key: notes.NoteVerifier,
    held: tuple[int, bytes] | None = None,
) -> tuple[int, bytes, str]:
    """Step 1 of PROTOCOL.md §19.4, for any answer that proves something at the latest
    checkpoint (a device's bundle, a policy version's publication): ``checkpoint`` is its
    ``{"note", "consistency", ...}`` part. Returns (size, root, note) once the note verifies
    with the pinned audit key for its origin and extends ``held`` (size, root), if any;
    ``CheckpointRefused`` otherwise, naming what was wrong."""
    note = _text(checkpoint.get("note"), "checkpoint note")
    try:
        signed = notes.open_checkpoint(note, [log_key], origin=log_key.name)
    except notes.CheckpointError as exc:
        raise CheckpointRefused(
            f"the checkpoint is not signed by the pinned audit key: {exc}"
        ) from exc
    size, root = signed.size, signed.root
    if held is not None:
        held_size, held_root = held
        if size < held_size:
            raise CheckpointRefused(
                f"the server shows a checkpoint of size {size}, older than the one of size "
                f"{held_size} seen before: an old key directory served as current"
            )
        if size == held_size and root != held_root:
            raise CheckpointRefused(
                f"the checkpoint of size {size} has another root than the one seen before: "
                "the log forked"
            )
        if size > held_size > 0:
            proof = _hashes(checkpoint.get("consistency"), "the consistency proof")
            if not merkle.verify_consistency(held_size, size, held_root, root, proof):
                raise CheckpointRefused(
                    f"the checkpoint of size {size} is not consistent with the one of size "
                    f"{held_size} seen before: the log forked or was rewritten"
                )
    return size, root, note


def verify_device(
    bundle: Mapping[str, Any],
    *,
    log_key: notes.NoteVerifier,
    device_id: str,
    user_id: str,
    signing_key: bytes,
    encryption_key: bytes,
    held: tuple[int, bytes] | None = None,
) -> VerifiedDevice:
    """Check a transparency bundle (PROTOCOL.md §19.4) for the device a verified certificate
    names (its id, user id and public keys), against the pinned audit key ``log_key`` (whose
    name is the log's origin) and the checkpoint ``held`` (size, root) seen before, if any.

    Returns the checkpoint and entry; raises TransparencyError naming what was wrong: a
    checkpoint not signed by the audit key, older than or inconsistent with the one held; a
    directory leaf that is not the checkpoint's last leaf, or not in the tree; an entry not
    in the directory, or for another device, user or keys; a device pending or revoked; a
    registration leaf that is not in the tree or does not match the entry.
    """
    if not isinstance(bundle, Mapping):
        raise TransparencyError("the transparency bundle is not a JSON object")
    checkpoint = _part(bundle, "checkpoint")
    directory = _part(bundle, "directory")
    entry_part = _part(bundle, "entry")
    registration = _part(bundle, "registration")

    # 1. The checkpoint: signed by the pinned audit key, for its log, not behind the one held.
    size, root, note = verify_checkpoint(checkpoint, log_key=log_key, held=held)

    # 2. The directory leaf: the checkpoint's last leaf, so no later key event is hidden.
    directory_index = _index(directory.get("index"), "the directory leaf's index")
    if size == 0 or directory_index != size - 1:
        raise TransparencyError(
            f"the directory leaf is at index {directory_index}, not the last leaf ({size - 1}) "
            f"of the checkpoint of size {size}: a later key event could be hidden"
        )
    directory_bytes = _text(directory.get("leaf"), "directory leaf").encode("utf-8")
    if not merkle.verify_inclusion(
        merkle.leaf_hash(directory_bytes),
        directory_index,
        size,
        _hashes(directory.get("proof"), "the directory leaf's proof"),
        root,
    ):
        raise TransparencyError(
            f"the directory leaf is not the leaf at index {directory_index} of the signed log"
        )
    directory_root, directory_size = parse_directory_leaf(
        parse_leaf(directory_bytes, "the directory leaf")
    )

    # 3. The device's entry, in that directory, for this device, user and keys, active.
    entry_bytes = _text(entry_part.get("data"), "directory entry").encode("utf-8")
    entry = DirectoryEntry.parse(entry_bytes)
    if entry.device != device_id:
        raise TransparencyError(
            f"the directory entry is for device {entry.device}, not {device_id}"
        )
    entry_index = _index(entry_part.get("index"), "the entry's index")
    if entry_index >= directory_size or not merkle.verify_inclusion(
        merkle.leaf_hash(entry_bytes),
        entry_index,
        directory_size,
        _hashes(entry_part.get("proof"), "the entry's proof"),
        directory_root,
    ):
        raise TransparencyError(
            f"device {device_id} is not in the key directory at checkpoint {size}: its entry's "
            "inclusion proof does not verify"
        )
    if entry.user != user_id:
        raise TransparencyError(
            f"the key directory has device {device_id} for user {entry.user}, not {user_id}"
        )
    if entry.signing_key != _b64u(signing_key) or entry.encryption_key_sha256 != _b64u(
        hashlib.sha256(encryption_key).digest()
    ):
        raise TransparencyError(
            f"the key directory has other keys for device {device_id} than its certificate"
        )
    if entry.status != ACTIVE:
        refusal = NotLogged if entry.status == PENDING else TransparencyError
        raise refusal(
            f"device {device_id} is {entry.status} in the key directory at checkpoint {size} "
            f"(key event at leaf {entry.event})"
        )
    if not entry.registered <= entry.event < directory_index:
        raise TransparencyError(
            f"the entry of device {device_id} names key events at leaves {entry.registered} "
            f"and {entry.event}, not before its directory leaf {directory_index}"
        )

    # 4. Its registration leaf: in the log, where the entry says, with the same keys.
    registration_index = _index(registration.get("index"), "the registration leaf's index")
    registration_bytes = _text(registration.get("leaf"), "registration leaf").encode("utf-8")
    if registration_index != entry.registered or not merkle.verify_inclusion(
        merkle.leaf_hash(registration_bytes),
        registration_index,
        size,
        _hashes(registration.get("proof"), "the registration leaf's proof"),
        root,
    ):
        raise TransparencyError(
            f"the registration of device {device_id} is not in the signed log at leaf "
            f"{entry.registered}"
        )
    leaf = parse_leaf(registration_bytes, "the registration leaf")
    expected = {
        "action": (leaf.get("action"), REGISTER),
        "decision": (leaf.get("decision"), "allow"),
        "object": (leaf.get("object"), {"type": "device", "id": device_id}),
        "user": (_field(leaf, "actor", "user"), user_id),
        "signing_key": (_field(leaf, "details", "signing_key"), entry.signing_key),
        "encryption_key_sha256": (
            _field(leaf, "details", "encryption_key_sha256"),
            entry.encryption_key_sha256,
        ),
    }
    wrong = [name for name, (got, want) in expected.items() if got != want]
    if wrong:
        raise TransparencyError(
            f"the registration leaf of device {device_id} differs from its directory entry in "
            + ", ".join(wrong)
        )
    return VerifiedDevice(size=size, root=root, note=note, entry=entry)
