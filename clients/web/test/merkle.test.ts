import assert from "node:assert/strict";
import { test } from "node:test";

import { toHex } from "../src/protocol/bytes.js";
import {
  EMPTY_ROOT,
  RootBuilder,
  consistencyProof,
  inclusionProof,
  leafHash,
  merkleRoot,
  nodeHash,
  verifyConsistency,
  verifyInclusion,
} from "../src/protocol/merkle.js";
import { h, vector } from "./vectors.js";

// The RFC 6962 reference tree (transparency-dev/merkle's test data), as protocol/merkle.py
// is tested against it.
const V = vector("merkle_rfc6962.json");
const LEAVES: Uint8Array[] = V.leaves.map((leaf: string) => leafHash(h(leaf)));
const ROOTS: Uint8Array[] = V.roots.map(h);

function flipped(hash: Uint8Array, byte = 0): Uint8Array {
  const copy = hash.slice();
  copy[byte]! ^= 0x01;
  return copy;
}

test("every root of the reference tree, from the empty tree to eight leaves", () => {
  assert.equal(toHex(EMPTY_ROOT), V.roots[0]);
  const builder = new RootBuilder();
  assert.equal(toHex(builder.root()), V.roots[0]);
  LEAVES.forEach((leaf, i) => {
    builder.add(leaf);
    assert.equal(builder.size, i + 1);
    assert.equal(toHex(builder.root()), V.roots[i + 1], `root of ${i + 1} leaves`);
    assert.equal(toHex(merkleRoot(LEAVES.slice(0, i + 1))), V.roots[i + 1]);
  });
  assert.equal(toHex(nodeHash(LEAVES[0]!, LEAVES[1]!)), V.roots[2]);
  assert.throws(() => builder.add(new Uint8Array(31)), /32 bytes/);
});

test("the vectors' inclusion proofs, made byte for byte and verified", () => {
  for (const c of V.inclusion) {
    const proof = c.proof.map(h);
    const made = inclusionProof(LEAVES.slice(0, c.size), c.index).map(toHex);
    assert.deepEqual(made, c.proof, `PATH(${c.index}, ${c.size})`);
    const root = ROOTS[c.size]!;
    const leaf = LEAVES[c.index]!;
    assert.ok(verifyInclusion(leaf, c.index, c.size, proof, root));
    // Tampering of any kind is refused, never thrown.
    assert.ok(!verifyInclusion(flipped(leaf), c.index, c.size, proof, root));
    assert.ok(!verifyInclusion(leaf, c.index, c.size, proof, flipped(root, 31)));
    assert.ok(!verifyInclusion(leaf, c.index + 1, c.size, proof, root));
    assert.ok(!verifyInclusion(leaf, c.index, c.size, [...proof, root], root));
    if (proof.length > 0) {
      assert.ok(!verifyInclusion(leaf, c.index, c.size, proof.slice(1), root));
      assert.ok(
        !verifyInclusion(leaf, c.index, c.size, [flipped(proof[0]), ...proof.slice(1)], root),
      );
    }
  }
  // Every leaf of every size, against proofs made here.
  for (let size = 1; size <= LEAVES.length; size++) {
    for (let index = 0; index < size; index++) {
      const proof = inclusionProof(LEAVES.slice(0, size), index);
      assert.ok(verifyInclusion(LEAVES[index]!, index, size, proof, ROOTS[size]!));
    }
  }
  assert.ok(!verifyInclusion(LEAVES[0]!, -1, 8, [], ROOTS[8]!));
  assert.ok(!verifyInclusion(LEAVES[0]!, 0, 0, [], EMPTY_ROOT));
  assert.ok(!verifyInclusion(LEAVES[0]!, 0.5, 8, [], ROOTS[8]!));
});

test("the vectors' consistency proofs, made byte for byte and verified", () => {
  for (const c of V.consistency) {
    const proof = c.proof.map(h);
    const made = consistencyProof(LEAVES.slice(0, c.new_size), c.old_size).map(toHex);
    assert.deepEqual(made, c.proof, `PROOF(${c.old_size}, ${c.new_size})`);
    const [oldRoot, newRoot] = [ROOTS[c.old_size]!, ROOTS[c.new_size]!];
    assert.ok(verifyConsistency(c.old_size, c.new_size, oldRoot, newRoot, proof));
    assert.ok(!verifyConsistency(c.old_size, c.new_size, flipped(oldRoot), newRoot, proof));
    assert.ok(!verifyConsistency(c.old_size, c.new_size, oldRoot, flipped(newRoot), proof));
    if (proof.length > 0) {
      assert.ok(!verifyConsistency(c.old_size, c.new_size, oldRoot, newRoot, proof.slice(1)));
      const bad = [...proof.slice(0, -1), flipped(proof[proof.length - 1])];
      assert.ok(!verifyConsistency(c.old_size, c.new_size, oldRoot, newRoot, bad));
    }
  }
  for (let n = 0; n <= LEAVES.length; n++) {
    for (let m = 0; m <= n; m++) {
      const proof = consistencyProof(LEAVES.slice(0, n), m);
      assert.ok(verifyConsistency(m, n, ROOTS[m]!, ROOTS[n]!, proof), `${m} -> ${n}`);
      if (m > 0 && m < n) {
        // Another old tree of the same size (its last leaf changed) is not extended.
        const other = merkleRoot([...LEAVES.slice(0, m - 1), flipped(LEAVES[m - 1]!)]);
        assert.ok(!verifyConsistency(m, n, other, ROOTS[n]!, proof));
      }
    }
  }
  assert.ok(!verifyConsistency(5, 4, ROOTS[5]!, ROOTS[4]!, []));
  assert.ok(!verifyConsistency(0, 3, flipped(EMPTY_ROOT), ROOTS[3]!, []));
  assert.ok(!verifyConsistency(3, 3, ROOTS[3]!, ROOTS[4]!, []));
});
