"""RFC 9162 Merkle trees: roots, node storage, inclusion and consistency proofs, verification.

Checked four ways: the RFC 6962 reference tree (vectors/merkle_rfc6962.json, copied from
transparency-dev/merkle and not produced by Attaché); roots from the independent pymerkle
library; a literal transcription in this file of RFC 9162's recursive definitions (MTH, PATH,
PROOF/SUBPROOF), against which the iterative, node-based code must agree for every index and
size of small trees; and hypothesis properties (proofs verify, and fail once anything changes).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pymerkle import InmemoryTree  # type: ignore[import-untyped]

from protocol.merkle import (
    EMPTY_ROOT,
    MerkleTree,
    RootBuilder,
    append_nodes,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    nodes_for_append,
    nodes_for_consistency_proof,
    nodes_for_inclusion_proof,
    nodes_for_root,
    root,
    root_from_nodes,
    verify_consistency,
    verify_inclusion,
)

VECTOR: dict[str, Any] = json.loads(
    (Path(__file__).parent / "vectors" / "merkle_rfc6962.json").read_text(encoding="utf-8")
)
VECTOR_LEAVES = [leaf_hash(bytes.fromhex(data)) for data in VECTOR["leaves"]]
VECTOR_ROOTS = [bytes.fromhex(value) for value in VECTOR["roots"]]

MAX_SIZE = 300
LEAVES = [leaf_hash(i.to_bytes(4, "big")) for i in range(MAX_SIZE)]
TREE = MerkleTree(LEAVES)  # every size up to MAX_SIZE is a prefix of this one


def _flip(value: bytes, bit: int = 0) -> bytes:
    return value[:0] + bytes([value[0] ^ (1 << bit)]) + value[1:]


# --------------------------------------------------------------------------------------------
# RFC 9162 section 2.1, transcribed literally (recursive, on lists of leaf hashes)


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def rfc_mth(d: Sequence[bytes]) -> bytes:
    if len(d) == 0:
        return hashlib.sha256(b"").digest()
    if len(d) == 1:
        return d[0]
    k = _k(len(d))
    return hashlib.sha256(b"\x01" + rfc_mth(d[:k]) + rfc_mth(d[k:])).digest()


def rfc_path(m: int, d: Sequence[bytes]) -> list[bytes]:
    if len(d) == 1:
        return []
    k = _k(len(d))
    if m < k:
        return [*rfc_path(m, d[:k]), rfc_mth(d[k:])]
    return [*rfc_path(m - k, d[k:]), rfc_mth(d[:k])]


def rfc_subproof(m: int, d: Sequence[bytes], b: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if b else [rfc_mth(d)]
    k = _k(n)
    if m <= k:
        return [*rfc_subproof(m, d[:k], b), rfc_mth(d[k:])]
    return [*rfc_subproof(m - k, d[k:], False), rfc_mth(d[:k])]


def rfc_proof(m: int, d: Sequence[bytes]) -> list[bytes]:
    return rfc_subproof(m, d, True)


# --------------------------------------------------------------------------------------------
# Hashing and the reference tree


def test_hashes_use_rfc9162_prefixes() -> None:
    assert leaf_hash(b"abc") == hashlib.sha256(b"\x00abc").digest()
    assert (
        node_hash(b"L" * 32, b"R" * 32) == hashlib.sha256(b"\x01" + b"L" * 32 + b"R" * 32).digest()
    )
    assert EMPTY_ROOT == hashlib.sha256(b"").digest()
    assert root([]) == EMPTY_ROOT


@pytest.mark.parametrize("size", range(len(VECTOR_ROOTS)))
def test_reference_tree_roots(size: int) -> None:
    want = VECTOR_ROOTS[size]
    tree = MerkleTree(VECTOR_LEAVES)
    assert root(VECTOR_LEAVES[:size]) == want
    assert tree.root(size) == want
    assert root_from_nodes(size, tree.node) == want
    assert rfc_mth(VECTOR_LEAVES[:size]) == want


@pytest.mark.parametrize("case", VECTOR["inclusion"], ids=lambda c: f"{c['index']}-{c['size']}")
def test_reference_inclusion_proofs(case: dict[str, Any]) -> None:
    index, size = case["index"], case["size"]
    proof = [bytes.fromhex(value) for value in case["proof"]]
    tree = MerkleTree(VECTOR_LEAVES)
    assert tree.inclusion_proof(index, size) == proof
    leaf, good_root = VECTOR_LEAVES[index], VECTOR_ROOTS[size]
    assert verify_inclusion(leaf, index, size, proof, good_root)
    # The corruptions transparency-dev's verify_test.go probes with.
    some_hash = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")
    probes = [
        (leaf, index - 1, size, proof, good_root),
        (leaf, index + 1, size, proof, good_root),
        (leaf, index ^ 2, size, proof, good_root),
        (leaf, index, size * 2, proof, good_root),
        (leaf, index, size // 2, proof, good_root),
        (b"WrongLeaf", index, size, proof, good_root),
        (leaf, index, size, proof, EMPTY_ROOT),
        (leaf, index, size, proof, some_hash),
        (leaf, index, size, [*proof, b""], good_root),
        (leaf, index, size, [*proof, good_root], good_root),
        (leaf, index, size, [b"", *proof], good_root),
        (leaf, index, size, [good_root, *proof], good_root),
    ]
    probes += [
        (leaf, index, size, [*proof[:i], _flip(proof[i], 3), *proof[i + 1 :]], good_root)
        for i in range(len(proof))
    ]
    if proof:
        probes.append((leaf, index, size, proof[:-1], good_root))
    if len(proof) > 1:
        probes.append((leaf, index, size, [proof[0], some_hash, *proof[1:]], good_root))
    for probe in probes:
        assert not verify_inclusion(*probe), probe


@pytest.mark.parametrize(
    "case", VECTOR["consistency"], ids=lambda c: f"{c['old_size']}-{c['new_size']}"
)
def test_reference_consistency_proofs(case: dict[str, Any]) -> None:
    m, n = case["old_size"], case["new_size"]
    proof = [bytes.fromhex(value) for value in case["proof"]]
    tree = MerkleTree(VECTOR_LEAVES)
    assert tree.consistency_proof(m, n) == proof
    r1, r2 = VECTOR_ROOTS[m], VECTOR_ROOTS[n]
    assert verify_consistency(m, n, r1, r2, proof)
    if not proof:
        return
    probes = [
        (m - 1, n, r1, r2, proof),
        (m + 1, n, r1, r2, proof),
        (m ^ 2, n, r1, r2, proof),
        (m, n * 2, r1, r2, proof),
        (m, n // 2, r1, r2, proof),
        (m, n, b"WrongRoot", r2, proof),
        (m, n, r1, b"WrongRoot", proof),
        (m, n, r2, r1, proof),
        (m, n, r1, r2, []),
        (m, n, r1, r2, [*proof, b""]),
        (m, n, r1, r2, [*proof, r1]),
        (m, n, r1, r2, [*proof, r2]),
        (m, n, r1, r2, [b"", *proof]),
        (m, n, r1, r2, [r1, *proof]),
        (m, n, r1, r2, [r2, *proof]),
        (m, n, r1, r2, [proof[0], *proof]),
        (m, n, r1, r2, proof[:-1]),
    ]
    probes += [
        (m, n, r1, r2, [*proof[:i], _flip(proof[i], 4), *proof[i + 1 :]]) for i in range(len(proof))
    ]
    for probe in probes:
        assert not verify_consistency(*probe), probe


def test_trivial_consistency_cases() -> None:
    """Sizes RFC 9162 leaves undefined, decided as transparency-dev does, plus EMPTY_ROOT."""
    r = VECTOR_ROOTS
    assert verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    assert verify_consistency(0, 5, EMPTY_ROOT, r[5], [])
    assert verify_consistency(1, 1, r[1], r[1], [])
    assert not verify_consistency(0, 0, r[1], r[1], [])  # an empty tree has one root
    assert not verify_consistency(0, 5, r[1], r[5], [])
    assert not verify_consistency(0, 0, EMPTY_ROOT, r[1], [])
    assert not verify_consistency(1, 1, r[1], r[2], [])
    assert not verify_consistency(1, 1, r[1], r[1], [EMPTY_ROOT])
    assert not verify_consistency(0, 1, EMPTY_ROOT, r[1], [EMPTY_ROOT])
    assert not verify_consistency(1, 0, r[1], EMPTY_ROOT, [])
    assert not verify_consistency(2, 1, r[2], r[1], [])
    assert not verify_consistency(1, 2, r[1], r[2], [])


# --------------------------------------------------------------------------------------------
# Independent implementations


def test_roots_match_pymerkle_for_small_sizes() -> None:
    reference = InmemoryTree(algorithm="sha256")
    builder = RootBuilder()
    for i in range(130):
        data = i.to_bytes(4, "big")
        reference.append_entry(data)
        builder.add(leaf_hash(data))
        size = i + 1
        assert builder.root() == reference.get_root(size) == TREE.root(size), size


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_roots_match_pymerkle_for_random_larger_sizes(seed: int) -> None:
    rng = random.Random(seed)
    size = rng.randrange(131, 3000)
    entries = [rng.randbytes(rng.randrange(0, 80)) for _ in range(size)]
    reference = InmemoryTree(algorithm="sha256")
    for entry in entries:
        reference.append_entry(entry)
    tree = MerkleTree(leaf_hash(entry) for entry in entries)
    for probe in {size, rng.randrange(1, size), rng.randrange(1, size)}:
        assert tree.root(probe) == reference.get_root(probe)


def test_proofs_match_rfc_definitions_for_every_index_and_size() -> None:
    for n in range(1, 40):
        d = LEAVES[:n]
        for i in range(n):
            assert TREE.inclusion_proof(i, n) == rfc_path(i, d), (i, n)
        for m in range(1, n + 1):
            assert TREE.consistency_proof(m, n) == rfc_proof(m, d), (m, n)


# --------------------------------------------------------------------------------------------
# Properties

sizes = st.integers(min_value=1, max_value=MAX_SIZE)


@settings(max_examples=150, deadline=None)
@given(data=st.data(), size=sizes)
def test_inclusion_proof_verifies_and_binds_everything(data: st.DataObject, size: int) -> None:
    index = data.draw(st.integers(0, size - 1), label="index")
    proof = TREE.inclusion_proof(index, size)
    good_root, leaf = TREE.root(size), LEAVES[index]
    assert verify_inclusion(leaf, index, size, proof, good_root)

    other = data.draw(st.integers(0, MAX_SIZE - 1).filter(lambda j: j != index), label="other")
    assert not verify_inclusion(LEAVES[other], index, size, proof, good_root)
    if other < size:
        assert not verify_inclusion(leaf, other, size, proof, good_root)
    # A proof for one size must not pass against the root of another size of the same log.
    other_sizes = [s for s in range(index + 1, MAX_SIZE + 1) if s != size]
    if other_sizes:
        other_size = data.draw(st.sampled_from(other_sizes), label="other_size")
        assert not verify_inclusion(leaf, index, other_size, proof, TREE.root(other_size))

    bit = data.draw(st.integers(0, 7), label="bit")
    assert not verify_inclusion(_flip(leaf, bit), index, size, proof, good_root)
    assert not verify_inclusion(leaf, index, size, proof, _flip(good_root, bit))
    for i in range(len(proof)):
        tampered = [*proof[:i], _flip(proof[i], bit), *proof[i + 1 :]]
        assert not verify_inclusion(leaf, index, size, tampered, good_root)
    assert not verify_inclusion(leaf, index, size, [*proof, good_root], good_root)
    if proof:
        assert not verify_inclusion(leaf, index, size, proof[:-1], good_root)


def test_inclusion_proof_fails_for_every_other_index() -> None:
    for n in (1, 2, 3, 5, 8, 13, 16, 17, 31):
        good_root = TREE.root(n)
        for i in range(n):
            proof = TREE.inclusion_proof(i, n)
            for j in range(n):
                assert verify_inclusion(LEAVES[i], j, n, proof, good_root) == (i == j), (i, j, n)


@settings(max_examples=150, deadline=None)
@given(data=st.data(), new_size=sizes)
def test_consistency_proof_verifies_and_binds_everything(
    data: st.DataObject, new_size: int
) -> None:
    old_size = data.draw(st.integers(0, new_size), label="old_size")
    proof = TREE.consistency_proof(old_size, new_size)
    old_root, new_root = TREE.root(old_size), TREE.root(new_size)
    assert verify_consistency(old_size, new_size, old_root, new_root, proof)

    bit = data.draw(st.integers(0, 7), label="bit")
    assert not verify_consistency(old_size, new_size, _flip(old_root, bit), new_root, proof)
    if old_size:
        assert not verify_consistency(old_size, new_size, old_root, _flip(new_root, bit), proof)
    for i in range(len(proof)):
        tampered = [*proof[:i], _flip(proof[i], bit), *proof[i + 1 :]]
        assert not verify_consistency(old_size, new_size, old_root, new_root, tampered)
    assert not verify_consistency(old_size, new_size, old_root, new_root, [*proof, new_root])
    if proof:
        assert not verify_consistency(old_size, new_size, old_root, new_root, proof[:-1])
    # A forked history: the same sizes, one leaf of the old tree changed.
    if old_size:
        forked = list(LEAVES[:new_size])
        forked[data.draw(st.integers(0, old_size - 1), label="forked")] = leaf_hash(b"fork")
        fork = MerkleTree(forked)
        assert not verify_consistency(old_size, new_size, old_root, fork.root(), proof)
        assert not verify_consistency(
            old_size, new_size, old_root, fork.root(), fork.consistency_proof(old_size)
        )
    # A non-trivial proof does not pass for other sizes of the same log, with their roots.
    if proof:
        other_old = data.draw(st.integers(0, new_size).filter(lambda s: s != old_size))
        assert not verify_consistency(other_old, new_size, TREE.root(other_old), new_root, proof)
        other_new = data.draw(st.integers(old_size, MAX_SIZE).filter(lambda s: s != new_size))
        assert not verify_consistency(old_size, other_new, old_root, TREE.root(other_new), proof)


@settings(max_examples=100, deadline=None)
@given(
    size=st.integers(0, 200),
    cuts=st.lists(st.integers(0, 200), max_size=12),
)
def test_appending_in_any_batches_gives_the_same_nodes(size: int, cuts: list[int]) -> None:
    bounds = sorted({0, size, *(c for c in cuts if c < size)})
    store: dict[tuple[int, int], bytes] = {}
    for start, end in itertools.pairwise(bounds):
        get, asked = _recording_getter(start, store)
        for level, index, node in append_nodes(start, LEAVES[start:end], get):
            assert (level, index) not in store
            store[(level, index)] = node
        assert set(asked) <= set(nodes_for_append(start))
        assert len(asked) == len(set(asked))
        assert root_from_nodes(end, _recording_getter(end, store)[0]) == TREE.root(end)
    # Exactly the perfect nodes of the tree, each with its subtree's MTH.
    expected = {
        (level, index) for level in range(size.bit_length()) for index in range(size >> level)
    }
    assert set(store) == expected
    for (level, index), node in store.items():
        assert node == TREE.node(level, index)
        assert node == rfc_mth(LEAVES[index << level : (index + 1) << level])


def test_empty_batch_creates_nothing_and_reads_nothing() -> None:
    def get(level: int, index: int) -> bytes:
        raise AssertionError("no read expected")

    assert append_nodes(5, [], get) == []
    assert append_nodes(0, [LEAVES[0]], get) == [(0, 0, LEAVES[0])]


@settings(max_examples=100, deadline=None)
@given(leaves=st.lists(st.binary(min_size=32, max_size=32), max_size=140))
def test_root_builder_and_root_from_nodes_agree_with_mth(leaves: list[bytes]) -> None:
    builder = RootBuilder()
    tree = MerkleTree()
    for size, leaf in enumerate(leaves, start=1):
        builder.add(leaf)
        tree.append(leaf)
        assert builder.size == size
        assert builder.root() == tree.root() == rfc_mth(leaves[:size])
    assert root(leaves) == rfc_mth(leaves) == root_from_nodes(len(leaves), tree.node)


# --------------------------------------------------------------------------------------------
# Node reads: only existing perfect nodes, O(log n) of them, exactly those announced


def _recording_getter(
    size: int, store: dict[tuple[int, int], bytes] | None = None
) -> tuple[Callable[[int, int], bytes], list[tuple[int, int]]]:
    """A node reader over ``store`` (default: TREE) that records each read and fails on any
    node that does not exist at tree size ``size``."""
    asked: list[tuple[int, int]] = []

    def get(level: int, index: int) -> bytes:
        assert level >= 0, (level, index, size)
        assert (index + 1) << level <= size, (level, index, size)
        asked.append((level, index))
        return TREE.node(level, index) if store is None else store[(level, index)]

    return get, asked


@pytest.mark.parametrize("size", [1, 2, 3, 7, 8, 9, 100, 255, 256, 257, MAX_SIZE])
def test_node_reads_are_logarithmic_and_announced(size: int) -> None:
    limit = 2 * size.bit_length() + 1
    get, asked = _recording_getter(size)
    assert root_from_nodes(size, get) == TREE.root(size)
    assert sorted(asked) == sorted(nodes_for_root(size))
    assert len(asked) == size.bit_count()
    for index in {0, 1 % size, size // 2, size - 2 if size > 1 else 0, size - 1}:
        get, asked = _recording_getter(size)
        assert inclusion_proof(index, size, get) == TREE.inclusion_proof(index, size)
        assert set(asked) == set(nodes_for_inclusion_proof(index, size))
        assert len(asked) <= limit
    for old_size in {0, 1, size // 3, size // 2, size - 1, size}:
        get, asked = _recording_getter(size)
        assert consistency_proof(old_size, size, get) == TREE.consistency_proof(old_size, size)
        assert set(asked) == set(nodes_for_consistency_proof(old_size, size))
        assert len(asked) <= limit


# --------------------------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize(
    "args",
    [
        (LEAVES[0], 0, 0, [], EMPTY_ROOT),  # empty tree
        (LEAVES[0], 1, 1, [], LEAVES[0]),  # index == size
        (LEAVES[0], -1, 1, [], LEAVES[0]),
        (LEAVES[0], True, 2, [LEAVES[0]], TREE.root(2)),  # bool is not an index
        (LEAVES[0], 0, 1.0, [], LEAVES[0]),
        (LEAVES[0][:31], 0, 1, [], LEAVES[0][:31]),  # short hashes
        (LEAVES[0], 0, 1, [], b""),
        (LEAVES[0], 0, 2, [LEAVES[1][:31]], TREE.root(2)),
        (LEAVES[0], 0, 2, ["not bytes"], TREE.root(2)),
        (LEAVES[0], 0, 2, LEAVES[1], TREE.root(2)),  # bytes, not a list of hashes
        (LEAVES[0], 0, 2, None, TREE.root(2)),
        ("not bytes", 0, 1, [], LEAVES[0]),
        (LEAVES[0], 0, 2**70, [LEAVES[1]] * 70, TREE.root(2)),
    ],
)
def test_verify_inclusion_rejects_malformed_input(args: tuple[Any, ...]) -> None:
    assert verify_inclusion(*args) is False


@pytest.mark.parametrize(
    "args",
    [
        (-1, 2, EMPTY_ROOT, TREE.root(2), []),
        (3, 2, TREE.root(3), TREE.root(2), []),
        (1, 2, TREE.root(1)[:31], TREE.root(2), [LEAVES[1]]),
        (1, 2, TREE.root(1), TREE.root(2), [LEAVES[1][:31]]),
        (1, 2, TREE.root(1), TREE.root(2), [bytearray(LEAVES[1])]),
        (1, 2, TREE.root(1), TREE.root(2), "x" * 32),
        (1, 2, TREE.root(1), TREE.root(2), None),
        (True, 2, TREE.root(1), TREE.root(2), [LEAVES[1]]),
        (1, 2**70, TREE.root(1), TREE.root(2), [LEAVES[1]] * 70),
    ],
)
def test_verify_consistency_rejects_malformed_input(args: tuple[Any, ...]) -> None:
    assert verify_consistency(*args) is False


def test_proof_generation_refuses_impossible_requests() -> None:
    with pytest.raises(ValueError, match="not below tree size"):
        TREE.inclusion_proof(5, 5)
    with pytest.raises(ValueError, match="non-negative"):
        inclusion_proof(-1, 5, TREE.node)
    with pytest.raises(ValueError, match="larger than new_size"):
        consistency_proof(6, 5, TREE.node)
    with pytest.raises(ValueError, match="beyond the tree size"):
        TREE.root(MAX_SIZE + 1)
    with pytest.raises(ValueError, match="32 bytes"):
        MerkleTree([b"short"])
    with pytest.raises(ValueError, match="32 bytes"):
        RootBuilder().add(b"short")
    with pytest.raises(KeyError):
        TREE.node(1, MAX_SIZE)
