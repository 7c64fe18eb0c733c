/**
 * RFC 9162 section 2.1 Merkle trees, as protocol/merkle.py: leaf and node hashes, the root of
 * a sequence of leaves fed one at a time, and the verification of inclusion and consistency
 * proofs, step for step as the RFC (and the Python) writes them.
 *
 * `leafHash(d) = SHA-256(0x00 || d)`, `nodeHash(l, r) = SHA-256(0x01 || l || r)`, the root of
 * the empty tree is `SHA-256("")` and the root of n > 1 leaves splits them at the largest power
 * of two smaller than n. A root does not commit to the tree size: a proof means something only
 * against a (size, root) pair taken together from a signed checkpoint.
 *
 * Sizes and indices are JavaScript numbers, safe integers only; the proof checks work in
 * BigInt, so no step depends on 32-bit bit operations.
 */
import { sha256 } from "@noble/hashes/sha2.js";

import { equalBytes } from "./bytes.js";

export const HASH_SIZE = 32;
const LEAF_PREFIX = Uint8Array.of(0);
const NODE_PREFIX = Uint8Array.of(1);
/** MTH({}): the root of the empty tree, SHA-256 of the empty string. */
export const EMPTY_ROOT: Uint8Array = sha256(new Uint8Array(0));

/** `SHA-256(0x00 || data)`: the hash of one log entry. */
export function leafHash(data: Uint8Array): Uint8Array {
  return sha256.create().update(LEAF_PREFIX).update(data).digest();
}

/** `SHA-256(0x01 || left || right)`: the hash of an interior node. */
export function nodeHash(left: Uint8Array, right: Uint8Array): Uint8Array {
  return sha256.create().update(NODE_PREFIX).update(left).update(right).digest();
}

function isHash(value: unknown): value is Uint8Array {
  return value instanceof Uint8Array && value.length === HASH_SIZE;
}

function isSize(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
}

/**
 * The root of leaf hashes fed in order, in O(log n) memory: the roots of the perfect subtrees
 * the leaves so far decompose into, largest first (one per set bit of the size). `root()` may
 * be called at any point and gives the root at the current size.
 */
export class RootBuilder {
  #size = 0;
  readonly #stack: Uint8Array[] = [];

  get size(): number {
    return this.#size;
  }

  add(leaf: Uint8Array): void {
    if (!isHash(leaf)) throw new Error(`a leaf hash must be ${HASH_SIZE} bytes`);
    let node = leaf;
    // Each trailing one bit of the old size is a completed subtree to merge with.
    for (let position = this.#size; position % 2 === 1; position = Math.floor(position / 2)) {
      node = nodeHash(this.#stack.pop()!, node);
    }
    this.#stack.push(node);
    this.#size += 1;
  }

  root(): Uint8Array {
    const stack = this.#stack;
    if (stack.length === 0) return EMPTY_ROOT;
    let node = stack[stack.length - 1]!;
    for (let i = stack.length - 2; i >= 0; i--) node = nodeHash(stack[i]!, node);
    return node;
  }
}

/** MTH over leaf hashes (already hashed with `leafHash`); `EMPTY_ROOT` if none. */
export function merkleRoot(leafHashes: readonly Uint8Array[]): Uint8Array {
  const builder = new RootBuilder();
  for (const leaf of leafHashes) builder.add(leaf);
  return builder.root();
}

function largestPowerOfTwoBelow(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

/**
 * RFC 9162 PATH(index, D[0:n]) over leaf hashes held in memory (section 2.1.3.1), leaf end
 * first. For tests and tools: the server answers proofs from its stored nodes.
 */
export function inclusionProof(leafHashes: readonly Uint8Array[], index: number): Uint8Array[] {
  if (!isSize(index) || index >= leafHashes.length) {
    throw new Error(`leaf index ${index} is not below tree size ${leafHashes.length}`);
  }
  const path = (start: number, end: number, at: number): Uint8Array[] => {
    if (end - start <= 1) return [];
    const k = largestPowerOfTwoBelow(end - start);
    return at < k
      ? [...path(start, start + k, at), merkleRoot(leafHashes.slice(start + k, end))]
      : [...path(start + k, end, at - k), merkleRoot(leafHashes.slice(start, start + k))];
  };
  return path(0, leafHashes.length, index);
}

/** RFC 9162 PROOF(m, D[0:n]) over leaf hashes held in memory (section 2.1.4.1). */
export function consistencyProof(leafHashes: readonly Uint8Array[], oldSize: number): Uint8Array[] {
  if (!isSize(oldSize) || oldSize > leafHashes.length) {
    throw new Error(`old size ${oldSize} is larger than the tree size ${leafHashes.length}`);
  }
  if (oldSize === 0 || oldSize === leafHashes.length) return [];
  const subproof = (m: number, leaves: readonly Uint8Array[], complete: boolean): Uint8Array[] => {
    const n = leaves.length;
    if (m === n) return complete ? [] : [merkleRoot(leaves)];
    const k = largestPowerOfTwoBelow(n);
    return m <= k
      ? [...subproof(m, leaves.slice(0, k), complete), merkleRoot(leaves.slice(k))]
      : [...subproof(m - k, leaves.slice(k), false), merkleRoot(leaves.slice(0, k))];
  };
  return subproof(oldSize, leafHashes, true);
}

function bitLength(n: bigint): number {
  return n.toString(2).length - (n === 0n ? 1 : 0);
}

function bitCount(n: bigint): number {
  return [...n.toString(2)].filter((digit) => digit === "1").length;
}

function inclusionProofLength(index: bigint, size: bigint): number {
  // Below the level where index's path leaves the right edge every level has a sibling
  // ("inner"); above it, one sibling per left subtree the path passes ("border").
  const inner = bitLength(index ^ (size - 1n));
  return inner + bitCount(index >> BigInt(inner));
}

function proofIsHashes(proof: unknown): proof is Uint8Array[] {
  return Array.isArray(proof) && proof.every(isHash);
}

/** True only if `proof` shows `leaf` at `index` in the tree (`size`, `root`); never throws. */
export function verifyInclusion(
  leaf: Uint8Array,
  index: number,
  size: number,
  proof: readonly Uint8Array[],
  root: Uint8Array,
): boolean {
  if (!(isSize(index) && isSize(size) && index < size)) return false;
  if (!(isHash(leaf) && isHash(root)) || !proofIsHashes(proof)) return false;
  if (proof.length !== inclusionProofLength(BigInt(index), BigInt(size))) return false;
  let fn = BigInt(index);
  let sn = BigInt(size) - 1n;
  let r = leaf;
  for (const p of proof) {
    if (sn === 0n) return false;
    if (fn & 1n || fn === sn) {
      r = nodeHash(p, r);
      if (!(fn & 1n)) {
        while (!(fn & 1n) && fn !== 0n) {
          fn >>= 1n;
          sn >>= 1n;
        }
      }
    } else {
      r = nodeHash(r, p);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  return sn === 0n && equalBytes(r, root);
}

function consistencyProofLength(oldSize: bigint, newSize: bigint): number {
  // The inclusion path of leaf oldSize - 1, minus the levels inside the old tree's last
  // perfect subtree, plus that subtree's root unless it is the whole old tree.
  const shift = bitLength(oldSize & -oldSize) - 1;
  const length = inclusionProofLength(oldSize - 1n, newSize) - shift;
  return oldSize === 1n << BigInt(shift) ? length : length + 1;
}

/**
 * True only if `proof` shows the tree (`newSize`, `newRoot`) extends (`oldSize`, `oldRoot`);
 * never throws. Equal sizes need an empty proof and equal roots; an old size of 0 an empty
 * proof and the empty root.
 */
export function verifyConsistency(
  oldSize: number,
  newSize: number,
  oldRoot: Uint8Array,
  newRoot: Uint8Array,
  proof: readonly Uint8Array[],
): boolean {
  if (!(isSize(oldSize) && isSize(newSize) && oldSize <= newSize)) return false;
  if (!(isHash(oldRoot) && isHash(newRoot)) || !proofIsHashes(proof)) return false;
  if (oldSize === 0) {
    return (
      proof.length === 0 &&
      equalBytes(oldRoot, EMPTY_ROOT) &&
      (newSize > 0 || equalBytes(newRoot, oldRoot))
    );
  }
  if (oldSize === newSize) return proof.length === 0 && equalBytes(oldRoot, newRoot);
  const m = BigInt(oldSize);
  if (proof.length !== consistencyProofLength(m, BigInt(newSize))) return false;
  const path = [...proof];
  if ((m & (m - 1n)) === 0n) path.unshift(oldRoot);
  let fn = m - 1n;
  let sn = BigInt(newSize) - 1n;
  while (fn & 1n) {
    fn >>= 1n;
    sn >>= 1n;
  }
  let fr = path[0]!;
  let sr = path[0]!;
  for (const c of path.slice(1)) {
    if (sn === 0n) return false;
    if (fn & 1n || fn === sn) {
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
      if (!(fn & 1n)) {
        while (!(fn & 1n) && fn !== 0n) {
          fn >>= 1n;
          sn >>= 1n;
        }
      }
    } else {
      sr = nodeHash(sr, c);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  return equalBytes(fr, oldRoot) && equalBytes(sr, newRoot) && sn === 0n;
}
