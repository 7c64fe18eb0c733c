"""Key transparency (protocol/transparency.py, PROTOCOL.md §19): the key directory as key
events build it, and a client's check of a device's bundle against a server that lies.

``Log`` is an in-memory audit log that behaves as the integrator does (each checkpoint ends
in a directory leaf) unless a test makes it misbehave; each test then plays the malicious
server by changing what a bundle says, and the client must refuse with a sentence naming it.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pymerkle import InmemoryTree

from protocol import merkle
from protocol import transparency as kt
from protocol.canonical import canonical_json
from protocol.checkpoint import Checkpoint, NoteSigner, NoteVerifier, sign_checkpoint
from protocol.keys import b64u_decode, b64u_encode

ORIGIN = "attache.example/audit"
OTHER = b64u_encode(b"\x01" * 32)  # a hash no proof here contains


def _leaf(action: str, device: str, user: str | None, details: dict[str, Any]) -> dict[str, Any]:
    return {
        "v": 1,
        "uid": str(uuid.uuid4()),
        "time": "2026-11-26T19:00:00Z",
        "action": action,
        "decision": "allow",
        "actor": {"user": user, "device": device, "nation": "GBR"},
        "object": {"type": "device", "id": device},
        "subject_nation": "GBR",
        "label": None,
        "reasons": [],
        "details": {"via": "api", **details},
    }


class Device:
    def __init__(self) -> None:
        self.id = str(uuid.uuid4())
        self.user = str(uuid.uuid4())
        self.signing_key = os.urandom(32)
        self.encryption_key = os.urandom(1216)

    def register(self, status: str = "pending") -> dict[str, Any]:
        return _leaf(
            "device.register",
            self.id,
            self.user,
            {
                "status": status,
                "signing_key": b64u_encode(self.signing_key),
                "encryption_key_sha256": b64u_encode(hashlib.sha256(self.encryption_key).digest()),
            },
        )

    def certify(self) -> dict[str, Any]:
        return _leaf("device.certify", self.id, None, {"status": ["pending", "active"]})

    def revoke(self) -> dict[str, Any]:
        return _leaf("device.revoke", self.id, self.user, {"status": ["active", "revoked"]})


class Log:
    """An audit log with a key directory, as an honest integrator keeps them."""

    def __init__(self, key: Ed25519PrivateKey | None = None) -> None:
        self.signer = NoteSigner(ORIGIN, key or Ed25519PrivateKey.generate())
        self.tree = merkle.MerkleTree()
        self.leaves: list[bytes] = []
        self.directory = kt.KeyDirectory()
        # size -> (note, directory snapshot) of each checkpoint
        self.checkpoints: dict[int, tuple[str, kt.KeyDirectory]] = {}

    def add(self, leaf: dict[str, Any]) -> int:
        data = canonical_json(leaf)
        index = self.tree.append(merkle.leaf_hash(data))
        self.leaves.append(data)
        assert self.directory.apply(index, leaf) is None
        return index

    def checkpoint(self, *, directory: kt.KeyDirectory | None = None) -> int:
        """End the batch with a directory leaf (of ``directory``, to lie) and sign."""
        root, size = (directory or self.directory).root()
        leaf = _leaf("keys.directory", "directory", None, {})
        leaf["object"] = {"type": "keys", "id": "directory"}
        leaf["details"] = {"via": "integrator", "directory": kt.directory_details(root, size)}
        self.add(leaf)
        return self.sign(directory)

    def sign(self, directory: kt.KeyDirectory | None = None) -> int:
        size = self.tree.size
        note = sign_checkpoint(Checkpoint(ORIGIN, size, self.tree.root()), self.signer)
        self.checkpoints[size] = (note, copy.deepcopy(directory or self.directory))
        return size

    def bundle(self, device: str, size: int | None = None, old: int = 0) -> dict[str, Any]:
        """What an honest server serves for ``device`` at checkpoint ``size``."""
        size = size or max(self.checkpoints)
        note, directory = self.checkpoints[size]
        entry = directory.get(device)
        assert entry is not None
        tree, positions = directory.tree()
        position = positions[device]

        def b64(hashes: list[bytes]) -> list[str]:
            return [b64u_encode(h) for h in hashes]

        return {
            "device_id": device,
            "checkpoint": {
                "size": size,
                "root": b64u_encode(self.tree.root(size)),
                "note": note,
                "old": old,
                "consistency": b64(self.tree.consistency_proof(old, size) if old else []),
            },
            "directory": {
                "index": size - 1,
                "leaf": self.leaves[size - 1].decode(),
                "proof": b64(self.tree.inclusion_proof(size - 1, size)),
            },
            "entry": {
                "index": position,
                "size": tree.size,
                "data": entry.encode().decode(),
                "proof": b64(tree.inclusion_proof(position)),
            },
            "registration": {
                "index": entry.registered,
                "leaf": self.leaves[entry.registered].decode(),
                "proof": b64(self.tree.inclusion_proof(entry.registered, size)),
            },
        }

    def held(self, size: int) -> tuple[int, bytes]:
        return size, self.tree.root(size)


def _verify(
    log: Log, device: Device, bundle: dict[str, Any], held: tuple[int, bytes] | None = None
) -> kt.VerifiedDevice:
    return kt.verify_device(
        bundle,
        log_key=log.signer.verifier(),
        device_id=device.id,
        user_id=device.user,
        signing_key=device.signing_key,
        encryption_key=device.encryption_key,
        held=held,
    )


@pytest.fixture
def log() -> Log:
    return Log()


@pytest.fixture
def alice(log: Log) -> Device:
    """An active device, among others, in a log of a few checkpoints."""
    alice, bob, carol = Device(), Device(), Device()
    log.add(alice.register())
    log.add(bob.register())
    log.checkpoint()
    log.add(alice.certify())
    log.add(carol.register("active"))
    log.add(bob.certify())
    log.checkpoint()
    return alice


def test_an_active_device_is_shown_at_the_checkpoint(log: Log, alice: Device) -> None:
    verified = _verify(log, alice, log.bundle(alice.id))
    assert verified.entry.status == "active"
    assert verified.entry.registered == 0
    assert verified.entry.event == 3
    assert (verified.size, verified.root) == log.held(max(log.checkpoints))
    # Against a checkpoint seen before: the server proves the new one extends it.
    first = min(log.checkpoints)
    _verify(log, alice, log.bundle(alice.id, old=first), held=log.held(first))


def test_a_pending_device_is_refused(log: Log) -> None:
    dave = Device()
    log.add(dave.register())
    log.checkpoint()
    with pytest.raises(kt.TransparencyError, match="is pending in the key directory"):
        _verify(log, dave, log.bundle(dave.id))


def test_a_revoked_device_is_refused_naming_its_revocation(log: Log, alice: Device) -> None:
    index = log.add(alice.revoke())
    log.checkpoint()
    with pytest.raises(
        kt.TransparencyError, match=f"is revoked in the key directory .* leaf {index}"
    ):
        _verify(log, alice, log.bundle(alice.id))


def test_a_device_not_in_the_directory_is_refused(log: Log, alice: Device) -> None:
    """The server has no entry for a device it made up: it can only show another's."""
    stranger = Device()
    bundle = log.bundle(alice.id)
    with pytest.raises(kt.TransparencyError, match=f"is for device {alice.id}, not {stranger.id}"):
        _verify(log, stranger, bundle)
    # Or forge an entry for it: not in the directory the log commits to.
    forged = kt.DirectoryEntry(
        stranger.id,
        stranger.user,
        b64u_encode(stranger.signing_key),
        b64u_encode(hashlib.sha256(stranger.encryption_key).digest()),
        "active",
        0,
        1,
    )
    bundle["entry"]["data"] = forged.encode().decode()
    with pytest.raises(kt.TransparencyError, match="is not in the key directory at checkpoint"):
        _verify(log, stranger, bundle)


def test_a_revoked_device_shown_with_its_older_entry_is_refused(log: Log, alice: Device) -> None:
    """The revoked device's entry from the directory before its revocation, with its proof
    there, shown under the current directory leaf."""
    before = max(log.checkpoints)
    stale = log.bundle(alice.id, before)
    log.add(alice.revoke())
    log.checkpoint()
    bundle = log.bundle(alice.id)
    bundle["entry"] = stale["entry"]
    with pytest.raises(kt.TransparencyError, match="is not in the key directory at checkpoint"):
        _verify(log, alice, bundle)


def test_an_older_directory_served_as_current_is_refused(log: Log, alice: Device) -> None:
    """The server replays the checkpoint before the revocation to a client that has seen a
    later one."""
    before = max(log.checkpoints)
    log.add(alice.revoke())
    after = log.checkpoint()
    with pytest.raises(kt.TransparencyError, match="older than the one of size"):
        _verify(log, alice, log.bundle(alice.id, before), held=log.held(after))


def test_a_key_event_after_the_directory_leaf_is_caught(log: Log, alice: Device) -> None:
    """A server that signs a checkpoint with a revocation after the last directory leaf and
    shows the directory from before it."""
    honest = log.bundle(alice.id)
    log.add(alice.revoke())
    size = log.sign()  # no directory leaf at the end
    bundle = copy.deepcopy(honest)
    bundle["checkpoint"]["note"] = log.checkpoints[size][0]
    bundle["directory"]["proof"] = [
        b64u_encode(h) for h in log.tree.inclusion_proof(bundle["directory"]["index"], size)
    ]
    bundle["registration"]["proof"] = [b64u_encode(h) for h in log.tree.inclusion_proof(0, size)]
    with pytest.raises(kt.TransparencyError, match=r"not the last leaf .* could be hidden"):
        _verify(log, alice, bundle)
    # Moving the index to the last leaf does not help: that leaf is the revocation.
    bundle["directory"]["index"] = size - 1
    bundle["directory"]["proof"] = [b64u_encode(h) for h in log.tree.inclusion_proof(size - 1)]
    with pytest.raises(kt.TransparencyError, match="is not the leaf at index"):
        _verify(log, alice, bundle)


@pytest.mark.parametrize(
    ("part", "change", "message"),
    [
        ("entry", lambda e: e.update(data=e["data"].replace("active", "revoked")), "not in the"),
        ("entry", lambda e: e.update(index=e["index"] + 1), "not in the key directory"),
        ("entry", lambda e: e["proof"].__setitem__(0, OTHER), "not in the key directory"),
        ("entry", lambda e: e.update(data=e["data"] + " "), "not in canonical form"),
        ("directory", lambda d: d["proof"].pop(), "is not the leaf at index"),
        ("directory", lambda d: d.update(leaf=d["leaf"].replace('"size"', '"size" ')), "is not"),
        ("registration", lambda r: r["proof"].__setitem__(0, OTHER), "registration of device"),
        ("registration", lambda r: r.update(index=1), "registration of device"),
        ("checkpoint", lambda c: c.update(note=c["note"].replace("\n", "\n ", 1)), "signed"),
    ],
)
def test_a_tampered_bundle_is_refused(
    log: Log, alice: Device, part: str, change: Any, message: str
) -> None:
    bundle = log.bundle(alice.id)
    change(bundle[part])
    with pytest.raises(kt.TransparencyError, match=message):
        _verify(log, alice, bundle)


def test_a_checkpoint_not_signed_by_the_audit_key_is_refused(log: Log, alice: Device) -> None:
    """The whole log rebuilt and signed with a key of the server's own making."""
    forger = Log()
    forger.tree, forger.leaves, forger.directory = log.tree, log.leaves, log.directory
    size = forger.sign()
    bundle = log.bundle(alice.id)
    bundle["checkpoint"]["note"] = forger.checkpoints[size][0]
    with pytest.raises(kt.TransparencyError, match="not signed by the pinned audit key"):
        _verify(log, alice, bundle)


def test_a_fork_from_the_checkpoint_held_is_refused(log: Log, alice: Device) -> None:
    first = min(log.checkpoints)
    other = Log(None)
    other.signer = log.signer  # the server's own key, signing another history
    mallory = Device()
    other.add(mallory.register())
    for leaf in log.leaves[1:]:
        other.tree.append(merkle.leaf_hash(leaf))
        other.leaves.append(leaf)
    other.directory = log.directory
    size = other.sign()
    bundle = log.bundle(alice.id)
    bundle["checkpoint"]["note"] = other.checkpoints[size][0]
    with pytest.raises(kt.TransparencyError, match="not consistent with the one of size"):
        _verify(log, alice, bundle, held=log.held(first))
    # At the very size held, another root is a fork too.
    with pytest.raises(kt.TransparencyError, match="another root than the one seen before"):
        _verify(log, alice, log.bundle(alice.id), held=(size, b"\x00" * 32))


def test_keys_other_than_the_certificates_are_refused(log: Log, alice: Device) -> None:
    impostor = Device()
    impostor.id, impostor.user = alice.id, alice.user
    with pytest.raises(kt.TransparencyError, match=r"other keys .* than its certificate"):
        _verify(log, impostor, log.bundle(alice.id))
    other_user = Device()
    other_user.id = alice.id
    other_user.signing_key, other_user.encryption_key = alice.signing_key, alice.encryption_key
    with pytest.raises(kt.TransparencyError, match=f"for user {alice.user}, not"):
        _verify(log, other_user, log.bundle(alice.id))


def test_a_malformed_bundle_is_refused_with_what_is_missing(log: Log, alice: Device) -> None:
    bundle = log.bundle(alice.id)
    del bundle["registration"]
    with pytest.raises(kt.TransparencyError, match="has no registration object"):
        _verify(log, alice, bundle)
    with pytest.raises(kt.TransparencyError, match="not a JSON object"):
        _verify(log, alice, [])  # type: ignore[arg-type]


def test_a_lying_directory_passes_the_client_and_is_caught_by_recomputing_it(
    log: Log, alice: Device
) -> None:
    """A server holding the audit key may write a directory leaf that shows a revoked device
    as active: each proof holds. What catches it is an auditor recomputing every directory
    leaf from the key events before it (clients/sdk/audit.py), as here."""
    lie = copy.deepcopy(log.directory)
    log.add(alice.revoke())
    log.checkpoint(directory=lie)
    bundle = log.bundle(alice.id)
    assert _verify(log, alice, bundle).entry.status == "active"
    replayed = kt.KeyDirectory()
    for index, data in enumerate(log.leaves[:-1]):
        replayed.apply(index, kt.parse_leaf(data))
    claimed = kt.parse_directory_leaf(kt.parse_leaf(log.leaves[-1]))
    assert claimed != replayed.root()


def test_key_events_that_do_not_fit_are_refused_by_the_directory() -> None:
    directory = kt.KeyDirectory()
    alice, ghost = Device(), Device()
    assert directory.apply(0, alice.register()) is None
    assert "registered again" in str(directory.apply(1, alice.register()))
    assert "never registered" in str(directory.apply(2, ghost.certify()))
    assert "never registered" in str(directory.apply(3, ghost.revoke()))
    assert directory.apply(4, alice.revoke()) is None
    assert "revoked, is certified again" in str(directory.apply(5, alice.certify()))
    no_keys = ghost.register()
    del no_keys["details"]["signing_key"]
    assert "lacks its keys" in str(directory.apply(6, no_keys))
    denied = ghost.register()
    denied["decision"] = "deny"
    assert directory.apply(7, denied) is None
    assert len(directory) == 1
    entry = directory.get(alice.id)
    assert entry is not None
    assert (entry.status, entry.registered, entry.event) == ("revoked", 0, 4)


def test_the_directory_root_is_the_rfc9162_tree_of_sorted_entries() -> None:
    directory = kt.KeyDirectory()
    devices = [Device() for _ in range(5)]
    for index, device in enumerate(devices):
        directory.apply(index, device.register("active"))
    ordered = sorted(devices, key=lambda d: d.id)
    expected = merkle.root(
        [merkle.leaf_hash(canonical_json(directory.get(d.id).to_json())) for d in ordered]  # type: ignore[union-attr]
    )
    assert directory.root() == (expected, 5)
    assert kt.KeyDirectory().root() == (merkle.EMPTY_ROOT, 0)
    entry = directory.get(ordered[0].id)
    assert entry is not None
    assert kt.DirectoryEntry.parse(entry.encode()) == entry


VECTOR: dict[str, Any] = json.loads(
    (Path(__file__).parent / "vectors" / "key_directory_v1.json").read_text(encoding="utf-8")
)


def test_the_vector_directory_is_recomputed_independently() -> None:
    """The directory of the vector's key events, rebuilt from its leaves by the rules of
    PROTOCOL.md §19.1, has the entries and root it records; pymerkle (an independent RFC 9162
    implementation) gives the same roots from the raw bytes."""
    leaves = VECTOR["leaves"]
    directory = kt.KeyDirectory()
    for index, data in enumerate(leaves[:-1]):
        assert directory.apply(index, kt.parse_leaf(data)) is None
    assert [e.encode().decode() for e in directory.entries()] == VECTOR["entries"]
    statuses = {e.device: e.status for e in directory.entries()}
    assert statuses == {"d-alice": "active", "d-bob": "revoked", "d-carol": "active"}
    entries_tree = InmemoryTree(algorithm="sha256")
    for entry in VECTOR["entries"]:
        entries_tree.append_entry(entry.encode("utf-8"))
    assert entries_tree.get_root() == b64u_decode(VECTOR["directory_root"])
    assert kt.parse_directory_leaf(kt.parse_leaf(leaves[-1])) == (
        b64u_decode(VECTOR["directory_root"]),
        VECTOR["directory_size"],
    )
    log_tree = InmemoryTree(algorithm="sha256")
    for data in leaves:
        log_tree.append_entry(data.encode("utf-8"))
    assert log_tree.get_root() == b64u_decode(VECTOR["tree_root"])
    # Each entry's bytes are its canonical form, sorted by device id.
    devices = [json.loads(e)["device"] for e in VECTOR["entries"]]
    assert devices == sorted(devices)
    for entry in VECTOR["entries"]:
        assert canonical_json(json.loads(entry)).decode() == entry


def test_the_vector_bundle_verifies_and_its_log_key_is_the_seeds() -> None:
    seed = bytes.fromhex(VECTOR["log_seed"])
    signer = NoteSigner(ORIGIN, Ed25519PrivateKey.from_private_bytes(seed))
    assert signer.vkey() == VECTOR["vkey"]
    alice = next(d for d in VECTOR["devices"] if d["name"] == "alice")
    verified = kt.verify_device(
        VECTOR["bundle"],
        log_key=NoteVerifier.from_vkey(VECTOR["vkey"]),
        device_id=alice["device_id"],
        user_id=alice["user_id"],
        signing_key=b64u_decode(alice["signing_key"]),
        encryption_key=b64u_decode(alice["encryption_key"]),
    )
    assert (verified.size, verified.entry.status) == (VECTOR["tree_size"], "active")
    assert verified.entry.encode().decode() == VECTOR["bundle"]["entry"]["data"]
