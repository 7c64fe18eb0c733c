"""C2SP tlog-cosignature v1 (Ed25519): witnesses' cosignatures of checkpoints.

Two known-answer sources. The spec's own example (c2sp.org/tlog-cosignature) gives a
cosignature line and the message it signs, but no public key: its line must decode to the
example's timestamp and its message must be rebuilt byte for byte; its signature cannot be
checked. vectors/cosignature_v1.json was generated once from the fixed seed it records
(Ed25519 is deterministic), and is recomputed here with raw hashlib and pyca primitives too.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
import struct
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.checkpoint import Checkpoint, CheckpointError, NoteSigner, open_checkpoint
from protocol.checkpoint import sign_checkpoint as sign
from protocol.cosignature import (
    Cosignature,
    CosignatureSigner,
    CosignatureVerifier,
    WitnessRefusal,
    check_extends,
    check_witnesses,
    cosignature_key_id,
    cosigned_message,
    note_cosignatures,
)
from protocol.merkle import MerkleTree, leaf_hash

VECTOR: dict[str, Any] = json.loads(
    (Path(__file__).parent / "vectors" / "cosignature_v1.json").read_text(encoding="utf-8")
)

SPEC_BODY = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
SPEC_LINE = (
    "— witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2"
    "oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA=="
)
SPEC_MESSAGE = (
    "cosignature/v1\ntime 1679315147\nexample.com/behind-the-sofa\n20852163\n"
    "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
)


def test_the_spec_example_line_and_message() -> None:
    cosignature = Cosignature.parse_line(SPEC_LINE)
    assert cosignature.name == "witness.example.com/w1"
    assert cosignature.timestamp == 1679315147
    assert len(cosignature.signature) == 64
    assert cosigned_message(SPEC_BODY, cosignature.timestamp) == SPEC_MESSAGE.encode()
    assert cosignature.line() == SPEC_LINE + "\n"


def test_the_vector_independently() -> None:
    seed = bytes.fromhex(VECTOR["seed"])
    key = Ed25519PrivateKey.from_private_bytes(seed)
    public = key.public_key().public_bytes_raw()
    assert public.hex() == VECTOR["public_key"]
    name = VECTOR["name"].encode()
    key_id = hashlib.sha256(name + b"\n\x04" + public).digest()[:4]
    assert key_id.hex() == VECTOR["key_id"]
    vkey_key = base64.b64encode(b"\x04" + public).decode()
    assert VECTOR["vkey"] == f"{VECTOR['name']}+{key_id.hex()}+{vkey_key}"
    message = f"cosignature/v1\ntime {VECTOR['timestamp']}\n{VECTOR['checkpoint']}".encode()
    assert message.decode() == VECTOR["message"]
    signature = key.sign(message)
    assert signature.hex() == VECTOR["signature"]
    blob = key_id + struct.pack(">Q", VECTOR["timestamp"]) + signature
    assert VECTOR["line"] == f"— {VECTOR['name']} {base64.b64encode(blob).decode()}\n"


def test_the_vector_through_the_module() -> None:
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(VECTOR["seed"]))
    signer = CosignatureSigner(VECTOR["name"], key)
    assert signer.vkey() == VECTOR["vkey"]
    cosignature = signer.cosign(VECTOR["checkpoint"], VECTOR["timestamp"])
    assert cosignature.line() == VECTOR["line"]
    verifier = CosignatureVerifier.from_vkey(VECTOR["vkey"])
    assert verifier == signer.verifier()
    assert cosignature_key_id(VECTOR["name"], verifier.public_key).hex() == VECTOR["key_id"]
    assert verifier.verify(VECTOR["checkpoint"], Cosignature.parse_line(VECTOR["line"]))


LOG = NoteSigner("attache.example/audit", Ed25519PrivateKey.generate())


def _tree(n: int) -> MerkleTree:
    return MerkleTree(leaf_hash(f"event {i}".encode()) for i in range(n))


def _note(size: int, *witnesses: CosignatureSigner, tree: MerkleTree | None = None) -> str:
    tree = tree or _tree(size)
    body = Checkpoint(LOG.name, size, tree.root(size)).body()
    note = sign(Checkpoint.parse(body), LOG)
    return note + "".join(w.cosign(body, 1_700_000_000 + size).line() for w in witnesses)


def _witness(name: str) -> CosignatureSigner:
    return CosignatureSigner(name, Ed25519PrivateKey.generate())


def test_a_cosigned_note_still_opens_for_the_log_key() -> None:
    gbr = _witness("witness.gbr/w1")
    note = _note(5, gbr)
    assert open_checkpoint(note, [LOG.verifier()], origin=LOG.name).size == 5
    body, found = note_cosignatures(note)
    assert [c.name for c in found] == ["witness.gbr/w1"]
    assert gbr.verifier().verify(body, found[0])


def test_valid_forged_and_missing_witnesses() -> None:
    gbr, fra, usa = _witness("witness.gbr/w1"), _witness("witness.fra/w1"), _witness("usa")
    note = _note(7, gbr, fra)
    pinned = [gbr.verifier(), fra.verifier(), usa.verifier()]
    check = check_witnesses(note, pinned)
    assert set(check.valid) == {"witness.gbr/w1", "witness.fra/w1"}
    assert check.missing == ("usa",)
    assert check.problems(2) == []
    assert "2 valid cosignatures of the 3 required" in check.problems(3)[0]
    assert "(missing: usa)" in check.problems(3)[0]

    # A line under fra's name and key id whose signature is not fra's: forged, and named.
    body, _ = note_cosignatures(note)
    forger = CosignatureSigner("witness.fra/w1", Ed25519PrivateKey.generate())
    impostor = forger.cosign(body, 1)
    forged_line = Cosignature(
        "witness.fra/w1", fra.verifier().key_id, impostor.timestamp, impostor.signature
    ).line()
    forged = _note(7, gbr) + forged_line
    check = check_witnesses(forged, pinned)
    assert check.forged == ("witness.fra/w1",)
    assert check.problems(1) == [
        "the cosignature of witness witness.fra/w1 does not verify with its pinned key: forged"
    ]


def test_a_cosignature_of_another_checkpoint_does_not_count() -> None:
    gbr = _witness("witness.gbr/w1")
    other = Checkpoint(LOG.name, 7, b"\x07" * 32).body()
    moved = _note(7) + gbr.cosign(other, 5).line()
    assert check_witnesses(moved, [gbr.verifier()]).forged == ("witness.gbr/w1",)


def test_witness_keys_are_refused_when_malformed() -> None:
    gbr = _witness("witness.gbr/w1")
    good = gbr.vkey()
    name, key_id, key = good.split("+", 2)
    log_type = base64.b64encode(b"\x01" + gbr.verifier().public_key).decode()
    for bad, said in [
        (f"{name}+{key_id}+{log_type}", "not a witness key"),
        (f"{name}+00000000+{key}", "does not match"),
        (f"{name}+{key_id}", "is <name>+<key id>+<key>"),
        (f"{name}+{key_id}+{key[:-1]}", "base64"),
        (f"a b+{key_id}+{key}", "space"),
    ]:
        with pytest.raises(CheckpointError, match=re.escape(said)):
            CosignatureVerifier.from_vkey(bad)


def test_malformed_cosignatures() -> None:
    with pytest.raises(CheckpointError, match="not 76"):
        Cosignature.parse_line("— w " + base64.b64encode(b"x" * 70).decode())
    with pytest.raises(CheckpointError, match="em dash"):
        Cosignature.parse_line("- w " + base64.b64encode(b"x" * 76).decode())
    too_late = b"abcd" + struct.pack(">Q", 2**63) + b"s" * 64
    with pytest.raises(CheckpointError, match="2\\*\\*63"):
        Cosignature.parse_line("— w " + base64.b64encode(too_late).decode())
    with pytest.raises(CheckpointError):
        _witness("w").cosign("not a checkpoint\n", 1)
    with pytest.raises(CheckpointError):
        _witness("w").cosign(SPEC_BODY, -1)


def test_check_extends() -> None:
    tree = _tree(20)
    at = {n: Checkpoint(LOG.name, n, tree.root(n)) for n in (0, 5, 12, 20)}
    check_extends(None, at[5], [])
    check_extends((0, tree.root(0)), at[5], [])
    check_extends((5, tree.root(5)), at[5], [])
    check_extends((5, tree.root(5)), at[12], tree.consistency_proof(5, 12))
    with pytest.raises(WitnessRefusal, match="older than the size 12"):
        check_extends((12, tree.root(12)), at[5], [])
    forked = _tree(12)  # the same first 11 leaves, another 12th
    forked_tree = MerkleTree([*(leaf_hash(f"event {i}".encode()) for i in range(11)), b"x" * 32])
    assert forked.root(12) != forked_tree.root(12)
    with pytest.raises(WitnessRefusal, match="FORK: the log served a checkpoint of size 12"):
        check_extends((12, forked_tree.root(12)), at[12], [])
    with pytest.raises(WitnessRefusal, match="FORK: the checkpoint of size 20 is not consistent"):
        check_extends((12, forked_tree.root(12)), at[20], tree.consistency_proof(12, 20))
    with pytest.raises(WitnessRefusal, match="not consistent"):
        check_extends((5, tree.root(5)), at[20], [])


@given(st.text(max_size=200))
@settings(max_examples=300, deadline=None)
def test_any_text_is_a_witness_key_or_a_checkpoint_error(text: str) -> None:
    with contextlib.suppress(CheckpointError):
        CosignatureVerifier.from_vkey(text)
    with contextlib.suppress(CheckpointError):
        Cosignature.parse_line(text)
    name, key_id, _ = _witness("w").vkey().split("+", 2)
    with contextlib.suppress(CheckpointError):
        CosignatureVerifier.from_vkey(f"{name}+{key_id}+{text}")


def test_old_cosignatures_do_not_count_when_a_verifier_limits_their_age() -> None:
    gbr, fra = _witness("witness.gbr/w1"), _witness("witness.fra/w1")
    body = Checkpoint(LOG.name, 3, _tree(3).root(3)).body()
    note = (
        sign(Checkpoint.parse(body), LOG)
        + gbr.cosign(body, 1_000_000).line()
        + fra.cosign(body, 1_000_900).line()
    )
    pinned = [gbr.verifier(), fra.verifier()]
    assert len(check_witnesses(note, pinned).valid) == 2
    check = check_witnesses(note, pinned, now=1_001_000, max_age=600)
    assert check.valid == {"witness.fra/w1": 1_000_900}
    assert check.stale == {"witness.gbr/w1": 1000}
    assert check.problems(2) == [
        "the checkpoint has 1 valid cosignatures of the 2 required from the witnesses pinned "
        "(missing: none; too old: witness.gbr/w1, cosigned 1000 s ago)"
    ]
    with pytest.raises(ValueError, match="together"):
        check_witnesses(note, pinned, max_age=600)
