"""RFC 9162 section 2.1 Merkle trees: hashes, roots, inclusion and consistency proofs.

Pure and I/O-free; ``hashlib`` only. Every hash is SHA-256 and 32 bytes long.

Hashing (RFC 9162 section 2.1.1)
    ``leaf_hash(d) = SHA-256(0x00 || d)``, ``node_hash(l, r) = SHA-256(0x01 || l || r)``, the
    root of the empty tree is ``SHA-256("")`` and the root of ``n > 1`` leaves splits them at the
    largest power of two smaller than ``n``. A root does not commit to the tree size: a proof
    is only meaningful against a ``(size, root)`` pair taken together from a signed checkpoint.

Node storage
    A log stores *perfect nodes*. Node ``(level, index)`` is the root of the perfect subtree over
    leaves ``[index * 2**level, (index + 1) * 2**level)``; level 0 nodes are the leaf hashes. A
    perfect node never changes once every leaf under it exists, so a log can persist each one as
    it is created (``append_nodes``) and answer every question about any tree size up to its
    own from them: roots of past sizes, inclusion and consistency proofs. Subtrees on the right
    edge of a tree that are not perfect are computed on the fly from at most ``log2(n)`` perfect
    nodes. Each function that reads nodes takes ``get(level, index) -> bytes`` and asks only for
    nodes that exist at the tree size it is given; ``nodes_for_*`` list those nodes beforehand so
    that a caller can fetch them in one query (``get`` is synchronous).

Verification
    ``verify_inclusion`` and ``verify_consistency`` are the algorithms of RFC 9162 sections
    2.1.3.2 and 2.1.4.2, step for step, after checking that the proof has exactly the length the
    sizes imply. They return False, never raise, for anything a proof or root could be.

Streaming
    ``RootBuilder`` computes the root of leaves arriving one at a time in O(log n) memory, and
    can report the root at every intermediate size, which is how an auditor recomputes a log.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from typing import Final

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "MerkleTree",
    "NodeGetter",
    "RootBuilder",
    "append_nodes",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "nodes_for_append",
    "nodes_for_consistency_proof",
    "nodes_for_inclusion_proof",
    "nodes_for_root",
    "root",
    "root_from_nodes",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE: Final = 32
LEAF_PREFIX: Final = b"\x00"
NODE_PREFIX: Final = b"\x01"
#: MTH({}): the root of the empty tree, SHA-256 of the empty string.
EMPTY_ROOT: Final = hashlib.sha256(b"").digest()

#: ``get(level, index)`` returns the stored hash of perfect node ``(level, index)``.
NodeGetter = Callable[[int, int], bytes]

_sha256 = hashlib.sha256


def leaf_hash(data: bytes) -> bytes:
    """``SHA-256(0x00 || data)``: the hash of one log entry."""
    return _sha256(LEAF_PREFIX + bytes(data)).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``: the hash of an interior node."""
    return _sha256(NODE_PREFIX + left + right).digest()


def _check_hash(value: bytes, what: str) -> bytes:
    if not isinstance(value, bytes | bytearray) or len(value) != HASH_SIZE:
        raise ValueError(f"{what} must be {HASH_SIZE} bytes")
    return bytes(value)


def _check_size(value: int, what: str) -> int:
    if type(value) is not int or value < 0:
        raise ValueError(f"{what} must be a non-negative int, got {value!r}")
    return value


# --------------------------------------------------------------------------------------------
# Roots


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH over ``leaf_hashes`` (already hashed with ``leaf_hash``); ``EMPTY_ROOT`` if none."""
    builder = RootBuilder()
    builder.add_many(leaf_hashes)
    return builder.root()


class RootBuilder:
    """The root of a sequence of leaf hashes fed in order, in O(log n) memory.

    Holds the roots of the perfect subtrees the leaves so far decompose into, largest first
    (one per set bit of the size, like a binary counter). ``root()`` may be called at any point
    and gives the root at the current size, so an auditor streaming a log can check every
    checkpoint it meets on the way.
    """

    __slots__ = ("_size", "_stack")

    def __init__(self) -> None:
        self._size = 0
        self._stack: list[bytes] = []

    @property
    def size(self) -> int:
        """The number of leaves added so far."""
        return self._size

    def add(self, leaf_hash: bytes) -> None:
        """Append one leaf hash (32 bytes; ValueError otherwise)."""
        self.add_many((leaf_hash,))

    def add_many(self, leaf_hashes: Iterable[bytes]) -> None:
        """Append leaf hashes in order (each 32 bytes; ValueError otherwise)."""
        # One loop with local names: this is the inner loop of a full audit.
        stack = self._stack
        size = self._size
        sha256 = _sha256
        prefix = NODE_PREFIX
        try:
            for value in leaf_hashes:
                if not isinstance(value, bytes) or len(value) != HASH_SIZE:
                    raise ValueError(f"a leaf hash must be {HASH_SIZE} bytes")
                node = value
                # Each trailing one bit of the old size is a completed subtree to merge with.
                position = size
                while position & 1:
                    node = sha256(prefix + stack.pop() + node).digest()
                    position >>= 1
                stack.append(node)
                size += 1
        finally:
            self._size = size

    def root(self) -> bytes:
        """The root at the current size."""
        stack = self._stack
        if not stack:
            return EMPTY_ROOT
        node = stack[-1]
        for left in reversed(stack[:-1]):
            node = node_hash(left, node)
        return node


# --------------------------------------------------------------------------------------------
# Perfect nodes: which ones each question needs


def _largest_power_of_two_below(n: int) -> int:
    """The k of RFC 9162: the largest power of two strictly smaller than ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def _perfect_blocks(start: int, end: int) -> list[tuple[int, int]]:
    """The perfect nodes covering ``[start, end)``, largest first.

    Only called for the subtrees RFC 9162's recursion visits: ``start`` is a multiple of a
    power of two at least ``end - start``, so the blocks follow the binary digits of the width
    and MTH of the range is their right fold (see ``_subtree_hash``).
    """
    blocks = []
    while start < end:
        level = (end - start).bit_length() - 1
        if start:
            level = min(level, (start & -start).bit_length() - 1)
        blocks.append((level, start >> level))
        start += 1 << level
    return blocks


def _subtree_hash(start: int, end: int, get: NodeGetter) -> bytes:
    """MTH(D[start:end]) for a subtree of RFC 9162's recursion, from perfect nodes."""
    blocks = _perfect_blocks(start, end)
    node = get(*blocks[-1])
    for level, index in reversed(blocks[:-1]):
        node = node_hash(get(level, index), node)
    return node


def _inclusion_plan(index: int, size: int) -> list[tuple[int, int]]:
    """The subtrees ``[start, end)`` whose hashes make PATH(index, D[0:size]), leaf first."""
    siblings = []
    start, end = 0, size
    while end - start > 1:
        k = _largest_power_of_two_below(end - start)
        if index < start + k:
            siblings.append((start + k, end))
            end = start + k
        else:
            siblings.append((start, start + k))
            start += k
    siblings.reverse()
    return siblings


def _consistency_plan(old_size: int, new_size: int) -> list[tuple[int, int]]:
    """The subtrees whose hashes make PROOF(old_size, D[0:new_size]), in proof order.

    Iterative SUBPROOF(m, D[start:end], b): the recursion appends one hash per level after the
    recursive part, so hashes are gathered top-down and reversed, and the terminal
    ``MTH(D[start:end])`` (emitted only when ``b`` is false) comes first.
    """
    if old_size == 0 or old_size == new_size:
        return []
    gathered = []
    start, end, complete = 0, new_size, True
    while old_size != end:
        k = _largest_power_of_two_below(end - start)
        if old_size - start <= k:
            gathered.append((start + k, end))
            end = start + k
        else:
            gathered.append((start, start + k))
            start += k
            complete = False
    gathered.reverse()
    if not complete:
        gathered.insert(0, (start, end))
    return gathered


def _unique_blocks(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    seen: dict[tuple[int, int], None] = {}
    for start, end in ranges:
        for block in _perfect_blocks(start, end):
            seen[block] = None
    return list(seen)


def _check_index(index: int, size: int) -> None:
    _check_size(size, "size")
    _check_size(index, "index")
    if index >= size:
        raise ValueError(f"leaf index {index} is not below tree size {size}")


def _check_sizes(old_size: int, new_size: int) -> None:
    _check_size(old_size, "old_size")
    _check_size(new_size, "new_size")
    if old_size > new_size:
        raise ValueError(f"old_size {old_size} is larger than new_size {new_size}")


def nodes_for_root(size: int) -> list[tuple[int, int]]:
    """The perfect nodes ``root_from_nodes(size, ...)`` reads: one per set bit of ``size``."""
    return _perfect_blocks(0, _check_size(size, "size"))


def nodes_for_append(size: int) -> list[tuple[int, int]]:
    """The perfect nodes ``append_nodes(size, ...)`` may read: the right frontier of the tree.

    The same nodes as ``nodes_for_root(size)``; a batch that does not reach a frontier node's
    sibling position does not read it.
    """
    return nodes_for_root(size)


def nodes_for_inclusion_proof(index: int, size: int) -> list[tuple[int, int]]:
    """The perfect nodes ``inclusion_proof(index, size, ...)`` reads (at most 2 log2 n)."""
    _check_index(index, size)
    return _unique_blocks(_inclusion_plan(index, size))


def nodes_for_consistency_proof(old_size: int, new_size: int) -> list[tuple[int, int]]:
    """The perfect nodes ``consistency_proof(old_size, new_size, ...)`` reads."""
    _check_sizes(old_size, new_size)
    return _unique_blocks(_consistency_plan(old_size, new_size))


# --------------------------------------------------------------------------------------------
# Building and proving from perfect nodes


def append_nodes(
    size: int, new_leaf_hashes: Sequence[bytes], get: NodeGetter
) -> list[tuple[int, int, bytes]]:
    """Every perfect node ``(level, index, hash)`` created by appending a batch of leaves.

    ``size`` is the tree size before the batch; ``get`` reads existing perfect nodes of that
    tree and is only asked for nodes of its right frontier (``nodes_for_append(size)``), each at
    most once. The result lists the new leaves' level 0 nodes and every interior node they
    complete, in creation order; storing all of them keeps the storage contract. Appending in
    any split of batches yields the same nodes.
    """
    _check_size(size, "size")
    # The frontier of the old tree, as coordinates until a merge first needs its hash.
    stack: list[bytes | tuple[int, int]] = list(_perfect_blocks(0, size))
    created: list[tuple[int, int, bytes]] = []
    position = size
    for value in new_leaf_hashes:
        node = _check_hash(value, "a leaf hash")
        created.append((0, position, node))
        level, index = 0, position
        while index & 1:
            left = stack.pop()
            if isinstance(left, tuple):
                left = get(*left)
            node = node_hash(left, node)
            level, index = level + 1, index >> 1
            created.append((level, index, node))
        stack.append(node)
        position += 1
    return created


def root_from_nodes(size: int, get: NodeGetter) -> bytes:
    """MTH of the first ``size`` leaves, from ``popcount(size)`` perfect nodes."""
    if _check_size(size, "size") == 0:
        return EMPTY_ROOT
    return _subtree_hash(0, size, get)


def inclusion_proof(index: int, size: int, get: NodeGetter) -> list[bytes]:
    """RFC 9162 PATH(index, D[0:size]): the audit path of leaf ``index``, leaf end first.

    ValueError unless ``0 <= index < size``.
    """
    _check_index(index, size)
    return [_subtree_hash(start, end, get) for start, end in _inclusion_plan(index, size)]


def consistency_proof(old_size: int, new_size: int, get: NodeGetter) -> list[bytes]:
    """RFC 9162 PROOF(old_size, D[0:new_size]).

    Empty when ``old_size`` is 0 or equal to ``new_size`` (RFC 9162 defines proofs for
    ``0 < old_size < new_size`` only; those two cases need none). ValueError unless
    ``0 <= old_size <= new_size``.
    """
    _check_sizes(old_size, new_size)
    return [_subtree_hash(start, end, get) for start, end in _consistency_plan(old_size, new_size)]


class MerkleTree:
    """An in-memory log: leaf hashes and perfect nodes, built with ``append_nodes``.

    For tests, clients and tools; the server keeps the same nodes in its database.
    """

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        self._leaves: list[bytes] = []
        self._nodes: dict[tuple[int, int], bytes] = {}
        self.extend(leaf_hashes)

    @property
    def size(self) -> int:
        return len(self._leaves)

    def node(self, level: int, index: int) -> bytes:
        """The perfect node ``(level, index)``; KeyError if it does not exist yet."""
        if level == 0:
            if not 0 <= index < len(self._leaves):
                raise KeyError((level, index))
            return self._leaves[index]
        return self._nodes[(level, index)]

    def append(self, leaf_hash: bytes) -> int:
        """Append one leaf hash; returns its index."""
        self.extend((leaf_hash,))
        return self.size - 1

    def extend(self, leaf_hashes: Iterable[bytes]) -> list[tuple[int, int, bytes]]:
        """Append a batch of leaf hashes; returns the perfect nodes it created."""
        created = append_nodes(self.size, list(leaf_hashes), self.node)
        for level, index, node in created:
            if level == 0:
                self._leaves.append(node)
            else:
                self._nodes[(level, index)] = node
        return created

    def _size_or_current(self, size: int | None) -> int:
        if size is None:
            return self.size
        if _check_size(size, "size") > self.size:
            raise ValueError(f"size {size} is beyond the tree size {self.size}")
        return size

    def root(self, size: int | None = None) -> bytes:
        """The root at ``size`` (default: the current size)."""
        return root_from_nodes(self._size_or_current(size), self.node)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        return inclusion_proof(index, self._size_or_current(size), self.node)

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        return consistency_proof(old_size, self._size_or_current(new_size), self.node)


# --------------------------------------------------------------------------------------------
# Verification (RFC 9162 sections 2.1.3.2 and 2.1.4.2)


def _is_size(value: object) -> bool:
    return type(value) is int and value >= 0


def _is_hash(value: object) -> bool:
    return isinstance(value, bytes) and len(value) == HASH_SIZE


def _inclusion_proof_length(index: int, size: int) -> int:
    # Below the level where index's path leaves the right edge every level has a sibling
    # ("inner"); above it, one sibling per left subtree the path passes ("border").
    inner = (index ^ (size - 1)).bit_length()
    return inner + (index >> inner).bit_count()


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """True only if ``proof`` shows ``leaf_hash`` at ``index`` in the tree ``(size, root)``."""
    if not (_is_size(index) and _is_size(size) and index < size):
        return False
    if not (_is_hash(leaf_hash) and _is_hash(root)):
        return False
    if not isinstance(proof, Sequence) or not all(_is_hash(p) for p in proof):
        return False
    if len(proof) != _inclusion_proof_length(index, size):
        return False
    fn, sn = index, size - 1
    r = leaf_hash
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def _consistency_proof_length(old_size: int, new_size: int) -> int:
    # The inclusion path of leaf old_size - 1, minus the levels inside the old tree's last
    # perfect subtree, plus that subtree's root unless it is the whole old tree.
    shift = (old_size & -old_size).bit_length() - 1
    length = _inclusion_proof_length(old_size - 1, new_size) - shift
    return length if old_size == 1 << shift else length + 1


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """True only if ``proof`` shows tree ``(new_size, new_root)`` extends ``(old_size, old_root)``.

    Sizes RFC 9162 leaves undefined: ``old_size == new_size`` needs an empty proof and equal
    roots; ``old_size == 0`` needs an empty proof and ``old_root == EMPTY_ROOT``.
    """
    if not (_is_size(old_size) and _is_size(new_size) and old_size <= new_size):
        return False
    if not (_is_hash(old_root) and _is_hash(new_root)):
        return False
    if not isinstance(proof, Sequence) or not all(_is_hash(p) for p in proof):
        return False
    if old_size == 0:
        return len(proof) == 0 and old_root == EMPTY_ROOT and (new_size > 0 or new_root == old_root)
    if old_size == new_size:
        return len(proof) == 0 and old_root == new_root
    if len(proof) != _consistency_proof_length(old_size, new_size):
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == old_root and sr == new_root and sn == 0
