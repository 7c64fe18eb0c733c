"""C2SP checkpoints and signed notes.

Two known-answer sources. vectors/merkle_checkpoint.json was generated once by the first
protocol/checkpoint.py from the fixed Ed25519 seed it records (Ed25519 is deterministic, so any
change means the wire format changed). The PeterNeumann and EnochRoot keys, note and signatures
below are copied from golang.org/x/mod/sumdb/note's note_test.go, the reference implementation
of C2SP signed-note, and do not depend on Attaché: reproducing them byte for byte shows that Go
verifiers accept our notes and that we accept theirs.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.checkpoint import (
    MAX_NOTE_SIZE,
    MAX_SIGNATURES,
    Checkpoint,
    CheckpointError,
    NoteSigner,
    NoteVerifier,
    note_key_id,
    open_checkpoint,
    open_note,
    sign_checkpoint,
    sign_note,
)
from protocol.merkle import MerkleTree, leaf_hash

VECTOR: dict[str, Any] = json.loads(
    (Path(__file__).parent / "vectors" / "merkle_checkpoint.json").read_text(encoding="utf-8")
)
RFC6962: dict[str, Any] = json.loads(
    (Path(__file__).parent / "vectors" / "merkle_rfc6962.json").read_text(encoding="utf-8")
)

# golang.org/x/mod/sumdb/note note_test.go
GO_PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_PETER_SIG = (
    "\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqd"
    "ngotpRZb6KE6RyyBwJnAM=\n"
)
GO_ENOCH_SIG = (
    "\u2014 EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnW"
    "Lox33WWd1RvMc+QQ=\n"
)

ORIGIN = "attache.example/audit"


def _seed_signer(name: str, seed: bytes) -> NoteSigner:
    return NoteSigner(name, Ed25519PrivateKey.from_private_bytes(seed))


def _go_peter_signer() -> NoteSigner:
    # PRIVATE+KEY+<name>+<key id>+<base64(0x01 || 32-byte seed)>; the base64 may contain '+'.
    _, _, name, _, material = GO_PETER_SKEY.split("+", 4)
    decoded = base64.b64decode(material)
    assert decoded[0] == 0x01
    return _seed_signer(name, decoded[1:])


SIGNER = _seed_signer(VECTOR["key_name"], bytes.fromhex(VECTOR["ed25519_seed"]))
OTHER = _seed_signer("witness.example/w1", bytes(range(0x80, 0xA0)))


# --------------------------------------------------------------------------------------------
# Known answers


def test_vector_key() -> None:
    assert SIGNER.verifier().public_key.hex() == VECTOR["public_key"]
    assert SIGNER.key_id.hex() == VECTOR["key_id"]
    assert SIGNER.vkey() == VECTOR["vkey"]
    assert NoteVerifier.from_vkey(VECTOR["vkey"]) == SIGNER.verifier()


@pytest.mark.parametrize("case", VECTOR["checkpoints"], ids=lambda c: str(c["size"]))
def test_vector_checkpoints(case: dict[str, Any]) -> None:
    leaves = [leaf_hash(bytes.fromhex(data)) for data in RFC6962["leaves"]]
    assert MerkleTree(leaves).root(case["size"]).hex() == case["root"]
    checkpoint = Checkpoint(
        case["origin"], case["size"], bytes.fromhex(case["root"]), tuple(case["extensions"])
    )
    assert checkpoint.body() == case["body"]
    assert Checkpoint.parse(case["body"]) == checkpoint
    assert sign_checkpoint(checkpoint, SIGNER) == case["note"]
    verifier = NoteVerifier.from_vkey(VECTOR["vkey"])
    assert open_checkpoint(case["note"], [verifier], origin=ORIGIN) == checkpoint
    assert open_note(case["note"], [verifier]) == (case["body"], (ORIGIN,))


def test_go_reference_keys() -> None:
    peter = NoteVerifier.from_vkey(GO_PETER_VKEY)
    assert peter.name == "PeterNeumann"
    assert peter.key_id == bytes.fromhex("c74f20a3")
    assert peter.vkey() == GO_PETER_VKEY
    assert NoteVerifier.from_vkey(GO_ENOCH_VKEY).key_id == bytes.fromhex("af0cfe78")
    signer = _go_peter_signer()
    assert signer.vkey() == GO_PETER_VKEY
    assert note_key_id("PeterNeumann", peter.public_key) == bytes.fromhex("c74f20a3")


def test_go_reference_note_is_reproduced_byte_for_byte() -> None:
    assert sign_note(GO_TEXT, _go_peter_signer()) == GO_TEXT + "\n" + GO_PETER_SIG


def test_go_reference_open() -> None:
    peter = NoteVerifier.from_vkey(GO_PETER_VKEY)
    enoch = NoteVerifier.from_vkey(GO_ENOCH_VKEY)
    note = GO_TEXT + "\n" + GO_PETER_SIG + GO_ENOCH_SIG
    assert open_note(note, [peter]) == (GO_TEXT, ("PeterNeumann",))
    assert open_note(note, [peter, enoch]) == (GO_TEXT, ("PeterNeumann", "EnochRoot"))
    assert open_note(note, [enoch]) == (GO_TEXT, ("EnochRoot",))
    with pytest.raises(CheckpointError, match="no valid signature from a known key"):
        open_note(note, [])
    # Repeated signatures and unknown ones are fine; a corrupt unknown one is ignored too.
    enoch_bad = GO_ENOCH_SIG[:60] + "ABCD" + GO_ENOCH_SIG[60:]
    repeated = GO_PETER_SIG * 2 + GO_ENOCH_SIG * 2 + enoch_bad
    assert open_note(GO_TEXT + "\n" + repeated, [peter]) == (GO_TEXT, ("PeterNeumann",))
    with pytest.raises(CheckpointError, match="at most 100"):
        open_note(GO_TEXT + "\n" + GO_PETER_SIG * 101, [peter])
    with pytest.raises(CheckpointError, match="invalid signature for key PeterNeumann\\+c74f20a3"):
        open_note(GO_TEXT + "\n" + GO_PETER_SIG[:60] + "ABCD" + GO_PETER_SIG[60:], [peter])


@pytest.mark.parametrize(
    "note",
    [
        GO_TEXT,
        GO_TEXT + "\n",
        GO_TEXT + "\n" + GO_PETER_SIG[:-1],
        "\x01" + GO_TEXT + "\n" + GO_PETER_SIG,
        "\udcff" + GO_TEXT + "\n" + GO_PETER_SIG,  # what "\xff" decodes to with surrogateescape
        GO_TEXT + "\n" + "\u2014 Bad Name " + GO_PETER_SIG.split(" ")[-1],
        GO_TEXT + "\n" + GO_PETER_SIG + "Unexpected line.\n",
    ],
)
def test_go_reference_malformed_notes(note: str) -> None:
    with pytest.raises(CheckpointError):
        open_note(note, [NoteVerifier.from_vkey(GO_PETER_VKEY)])


def test_go_reference_vkey_manglings_are_refused() -> None:
    vkey = GO_PETER_VKEY
    candidates = {vkey[i:j] for i in range(len(vkey)) for j in range(i + 1, len(vkey) + 1)}
    candidates |= {vkey[:i] + chr(ord(vkey[i]) + 1) + vkey[i + 1 :] for i in range(len(vkey))}
    candidates.discard(vkey)
    candidates |= {
        # Wrong key length and unknown algorithm, each with its key id adjusted.
        "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
        "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    }
    for candidate in candidates:
        with pytest.raises(CheckpointError):
            NoteVerifier.from_vkey(candidate)


# --------------------------------------------------------------------------------------------
# Checkpoint bodies

origins = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40)
extension_lines = st.lists(origins, max_size=3).map(tuple)


@settings(max_examples=100, deadline=None)
@given(
    origin=origins,
    size=st.integers(0, 2**63 - 1),
    root=st.binary(min_size=32, max_size=32),
    extensions=extension_lines,
)
def test_checkpoint_round_trip(
    origin: str, size: int, root: bytes, extensions: tuple[str, ...]
) -> None:
    checkpoint = Checkpoint(origin, size, root, extensions)
    body = checkpoint.body()
    assert body.endswith("\n")
    assert body.count("\n") == 3 + len(extensions)
    assert Checkpoint.parse(body) == checkpoint


def test_checkpoint_body_layout() -> None:
    root = bytes(range(32))
    body = Checkpoint("example.com/log", 20852163, root, ("ext one",)).body()
    assert body == f"example.com/log\n20852163\n{base64.b64encode(root).decode()}\next one\n"


GOOD_ROOT = base64.b64encode(bytes(32)).decode()
URLSAFE_ROOT = base64.urlsafe_b64encode(bytes([0xFF]) * 32).decode()


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (f"o\n1\n{GOOD_ROOT}", "does not end with a newline"),
        ("o\n1\n", "2 lines"),
        ("", "does not end with a newline"),
        (f"\n1\n{GOOD_ROOT}\n", "line 1 is empty"),
        (f"o\n1\n{GOOD_ROOT}\n\n", "line 4 is empty"),
        (f"o\n1\n{GOOD_ROOT}\next\n\n", "line 5 is empty"),
        (f"o\n01\n{GOOD_ROOT}\n", "leading zeros"),
        (f"o\n+1\n{GOOD_ROOT}\n", "decimal digits"),
        (f"o\n-1\n{GOOD_ROOT}\n", "decimal digits"),
        (f"o\n 1\n{GOOD_ROOT}\n", "decimal digits"),
        (f"o\n1_0\n{GOOD_ROOT}\n", "decimal digits"),
        (f"o\n\uff11\n{GOOD_ROOT}\n", "decimal digits"),  # fullwidth digit one
        (f"o\n{2**63}\n{GOOD_ROOT}\n", "larger than"),
        ("o\n1\nAAAA\n", "not 32"),
        (f"o\n1\n{GOOD_ROOT.rstrip('=')}\n", "base64"),
        (f"o\n1\n{GOOD_ROOT[:-2]}B=\n", "trailing bits"),
        (f"o\n1\n{URLSAFE_ROOT}\n", "base64"),
        (f"o\n1\n {GOOD_ROOT}\n", "base64"),
        (f"o\r\n1\n{GOOD_ROOT}\n", "control character"),
        (f"o\x00\n1\n{GOOD_ROOT}\n", "control character"),
        (f"o\udc80\n1\n{GOOD_ROOT}\n", "UTF-8"),
    ],
)
def test_checkpoint_parse_refuses(body: str, reason: str) -> None:
    with pytest.raises(CheckpointError, match=reason):
        Checkpoint.parse(body)


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"origin": ""}, "origin line is empty"),
        ({"origin": "a\nb"}, "origin line contains a newline"),
        ({"origin": "a\tb"}, "control character"),
        ({"size": -1}, "tree size"),
        ({"size": True}, "tree size"),
        ({"size": 2**63}, "tree size"),
        ({"root": bytes(31)}, "32 bytes"),
        ({"root": "00" * 32}, "32 bytes"),
        ({"extensions": ("",)}, "extension line 1 is empty"),
        ({"extensions": ("a", "b\nc")}, "extension line 2 contains a newline"),
        ({"extensions": ["a"]}, "tuple"),
    ],
)
def test_checkpoint_construction_refuses(kwargs: dict[str, Any], reason: str) -> None:
    fields: dict[str, Any] = {"origin": ORIGIN, "size": 1, "root": bytes(32)}
    with pytest.raises(CheckpointError, match=reason):
        Checkpoint(**{**fields, **kwargs})


# --------------------------------------------------------------------------------------------
# Signed notes

CHECKPOINT = Checkpoint(ORIGIN, 8, bytes.fromhex(VECTOR["checkpoints"][0]["root"]))


def test_note_round_trip_with_several_signers() -> None:
    note = sign_checkpoint(CHECKPOINT, SIGNER, OTHER)
    body = CHECKPOINT.body()
    assert note.startswith(body + "\n\u2014 " + ORIGIN + " ")
    assert open_note(note, [SIGNER.verifier(), OTHER.verifier()]) == (body, (ORIGIN, OTHER.name))
    assert open_note(note, [OTHER.verifier()]) == (body, (OTHER.name,))
    assert open_checkpoint(note, [SIGNER.verifier()], origin=ORIGIN) == CHECKPOINT


def test_note_text_may_hold_blank_lines() -> None:
    text = "first\n\nthird\n"
    assert open_note(sign_note(text, SIGNER), [SIGNER.verifier()]) == (text, (ORIGIN,))


def test_tampered_body_is_refused() -> None:
    note = sign_checkpoint(CHECKPOINT, SIGNER)
    tampered = note.replace("\n8\n", "\n9\n", 1)
    assert tampered != note
    with pytest.raises(CheckpointError, match="invalid signature"):
        open_note(tampered, [SIGNER.verifier()])


def test_tampered_signature_is_refused() -> None:
    note = sign_checkpoint(CHECKPOINT, SIGNER)
    body, line = note.split("\n\n")
    blob = bytearray(base64.b64decode(line.split(" ")[-1]))
    blob[10] ^= 1
    forged = body + "\n\n\u2014 " + ORIGIN + " " + base64.b64encode(bytes(blob)).decode() + "\n"
    with pytest.raises(CheckpointError, match="invalid signature"):
        open_note(forged, [SIGNER.verifier()])
    # A wrong-length signature from a known key is an invalid signature, not an unknown one.
    short = base64.b64encode(SIGNER.key_id + bytes(10)).decode()
    with pytest.raises(CheckpointError, match="invalid signature"):
        open_note(f"{body}\n\n\u2014 {ORIGIN} {short}\n", [SIGNER.verifier()])


def test_a_known_key_that_fails_rejects_the_note_even_if_another_verifies() -> None:
    good = sign_checkpoint(CHECKPOINT, SIGNER, OTHER)
    body, lines = good.split("\n\n")
    other_line = lines.split("\n")[1]
    other_for_other_body = sign_note("something else\n", OTHER).split("\n\n")[1]
    note = body + "\n\n" + lines.split("\n")[0] + "\n" + other_for_other_body
    assert other_line not in note
    with pytest.raises(CheckpointError, match="invalid signature for key witness"):
        open_note(note, [SIGNER.verifier(), OTHER.verifier()])
    assert open_note(note, [SIGNER.verifier()]) == (body + "\n", (ORIGIN,))


def test_unknown_keys_are_matched_on_name_and_key_id_together() -> None:
    note = sign_checkpoint(CHECKPOINT, SIGNER)
    # Same name, another key: a different key id, so the signature is not this key's.
    impostor = _seed_signer(ORIGIN, bytes(32)).verifier()
    with pytest.raises(CheckpointError, match="no valid signature from a known key"):
        open_note(note, [impostor])
    # Same key, another name: a different key id as well.
    renamed = NoteVerifier("other.example/audit", SIGNER.verifier().public_key)
    with pytest.raises(CheckpointError, match="no valid signature from a known key"):
        open_note(note, [renamed])


@pytest.mark.parametrize("dash", ["-", "--", "\u2013", "\u2015", "\u2014\u2014", ""])
def test_signature_line_without_em_dash_is_refused(dash: str) -> None:
    body, line = sign_checkpoint(CHECKPOINT, SIGNER).split("\n\n")
    with pytest.raises(CheckpointError, match="em dash"):
        open_note(body + "\n\n" + dash + line.removeprefix("\u2014"), [SIGNER.verifier()])


def test_signature_count_limit() -> None:
    line = sign_checkpoint(CHECKPOINT, SIGNER).split("\n\n")[1]
    body = CHECKPOINT.body()
    assert open_note(body + "\n" + line * MAX_SIGNATURES, [SIGNER.verifier()])[1] == (ORIGIN,)
    with pytest.raises(CheckpointError, match="101 signatures"):
        open_note(body + "\n" + line * (MAX_SIGNATURES + 1), [SIGNER.verifier()])
    with pytest.raises(CheckpointError, match="at most 100"):
        sign_note(body, *[SIGNER] * (MAX_SIGNATURES + 1))


@pytest.mark.parametrize(
    ("note", "reason"),
    [
        ("text\n\u2014 a AAAAAAA=\n", "no blank line"),
        ("text\n\n", "no signature lines"),
        ("text\n\n\u2014 a AAAAAAA=", "does not end with a newline"),
        ("text\n\n\u2014 a\n", "no signature after the name"),
        ("text\n\n\u2014 a+b AAAAAAA=\n", "key name"),
        ("text\n\n\u2014  AAAAAAA=\n", "non-empty"),
        ("text\n\n\u2014 a AAAA\n", "too short"),
        ("text\n\n\u2014 a AAAAAAA\n", "base64"),
        ("text\n\n\u2014 a AAAAAAA= \n", "base64"),
        ("text\r\n\n\u2014 a AAAAAAA=\n", "control character"),
        ("x" * MAX_NOTE_SIZE + "\n\n\u2014 a AAAAAAA=\n", "larger than"),
    ],
)
def test_malformed_notes_are_refused(note: str, reason: str) -> None:
    with pytest.raises(CheckpointError, match=reason):
        open_note(note, [SIGNER.verifier()])


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("no final newline", "does not end with a newline"),
        ("", "does not end with a newline"),
        ("bell\x07\n", "control character"),
    ],
)
def test_sign_note_refuses_bad_text(body: str, reason: str) -> None:
    with pytest.raises(CheckpointError, match=reason):
        sign_note(body, SIGNER)


def test_sign_note_needs_a_signer() -> None:
    with pytest.raises(CheckpointError, match="at least one signer"):
        sign_note("text\n")


@pytest.mark.parametrize("name", ["", "a b", "a+b", "a\u00a0b", "a\u3000b", "tab\tname", "a\nb"])
def test_key_name_rules(name: str) -> None:
    with pytest.raises(CheckpointError):
        _seed_signer(name, bytes(32))
    with pytest.raises(CheckpointError):
        NoteVerifier(name, SIGNER.verifier().public_key)


def test_verifier_refuses_a_malformed_public_key() -> None:
    with pytest.raises(CheckpointError, match="32 bytes"):
        NoteVerifier(ORIGIN, bytes(31))


def test_ambiguous_verifiers_are_refused() -> None:
    # Seeds 23610 and 140234 (big-endian, 32 bytes) give two keys whose key ids under ORIGIN
    # collide (ad5b8e7c), found once by a birthday search. Such keys cannot be told apart by
    # a signature line, so open_note refuses rather than guess; one key listed twice is fine.
    first = _seed_signer(ORIGIN, (23610).to_bytes(32, "big"))
    second = _seed_signer(ORIGIN, (140234).to_bytes(32, "big"))
    assert first.key_id == second.key_id == bytes.fromhex("ad5b8e7c")
    note = sign_checkpoint(CHECKPOINT, first)
    assert open_note(note, [first.verifier(), first.verifier()])[1] == (ORIGIN,)
    with pytest.raises(CheckpointError, match="ambiguous"):
        open_note(note, [first.verifier(), second.verifier()])
    with pytest.raises(CheckpointError, match="invalid signature"):
        open_note(note, [second.verifier()])


def test_open_checkpoint_checks_the_origin_and_the_body() -> None:
    note = sign_checkpoint(CHECKPOINT, SIGNER)
    with pytest.raises(CheckpointError, match=r"expected 'other\.example/log'"):
        open_checkpoint(note, [SIGNER.verifier()], origin="other.example/log")
    not_a_checkpoint = sign_note("just\ntwo lines\n", SIGNER)
    with pytest.raises(CheckpointError, match="2 lines"):
        open_checkpoint(not_a_checkpoint, [SIGNER.verifier()], origin=ORIGIN)
