/**
 * The page's check of a device's key directory bundle (src/protocol/transparency.ts,
 * PROTOCOL.md §19.4) against tests/protocol/vectors/key_directory_v1.json, whose bundle must
 * verify, and against a malicious server: `Log` rebuilds the vector's log (its leaves and its
 * fixed log key), extends it as an honest integrator would (every checkpoint ends in a
 * directory leaf) and serves bundles, which each test then changes as a server that lies
 * would. Each of §19.4's steps broken is refused with a message naming what was wrong.
 */
import assert from "node:assert/strict";
import { test } from "node:test";

import { sha256 } from "@noble/hashes/sha2.js";

import { b64uDecode, b64uEncode, fromUtf8 } from "../src/protocol/bytes.js";
import { NoteSigner } from "../src/protocol/checkpoint.js";
import { inclusionProof, merkleRoot } from "../src/protocol/merkle.js";
import {
  CheckpointRefused,
  NotLogged,
  TransparencyError,
  encodeEntry,
  parseEntry,
  verifyDevice,
  type CertifiedDevice,
  type HeldCheckpoint,
} from "../src/protocol/transparency.js";
import {
  LOG_KEY,
  Log,
  ORIGIN,
  OTHER_HASH,
  SIGNER,
  V,
  b64,
  device,
  directoryOf,
  entryHashes,
  newDevice,
  register,
  revoke,
  vectorLog,
} from "./keylog.js";

const ALICE = device("alice");
const BOB = device("bob");
const CAROL = device("carol");

function refused(
  work: () => unknown,
  message: RegExp,
  kind: typeof TransparencyError = TransparencyError,
): void {
  assert.throws(work, (error: unknown) => {
    assert.ok(error instanceof kind, `${String(error)} is not a ${kind.name}`);
    assert.match((error as Error).message, message);
    return true;
  });
}

const verify = (bundle: unknown, d: CertifiedDevice, held: HeldCheckpoint | null = null) =>
  verifyDevice(bundle, { logKey: LOG_KEY, device: d, held });

test("the vector's bundle verifies for alice's keys, at its checkpoint", () => {
  assert.equal(SIGNER.verifier.vkey(), V.vkey);
  const verified = verify(V.bundle, ALICE);
  assert.equal(verified.size, V.tree_size);
  assert.equal(b64uEncode(verified.root), V.tree_root);
  assert.equal(verified.entry.status, "active");
  assert.equal(fromUtf8(encodeEntry(verified.entry)), V.bundle.entry.data);
  // Held at that very checkpoint, it verifies again; held at another root, it is a fork.
  verify(V.bundle, ALICE, { size: V.tree_size, root: b64uDecode(V.tree_root) });
  refused(
    () => verify(V.bundle, ALICE, { size: V.tree_size, root: b64uDecode(OTHER_HASH) }),
    /another root than the one seen before: the log forked/,
    CheckpointRefused,
  );
});

test("the vector's directory and log, rebuilt here, are the ones it records", () => {
  const entries = directoryOf(V.leaves.slice(0, -1));
  assert.deepEqual(
    entries.map((e) => fromUtf8(encodeEntry(e))),
    V.entries,
  );
  assert.deepEqual(V.entries.map(parseEntry), entries);
  assert.equal(b64uEncode(merkleRoot(entryHashes(entries))), V.directory_root);
  const log = vectorLog();
  assert.equal(b64uEncode(log.root()), V.tree_root);
  // The same signed note, byte for byte (Ed25519 is deterministic), and the same bundle.
  assert.deepEqual(log.bundle("d-alice"), V.bundle);
});

test("step 1: a checkpoint not signed by the pinned audit key is refused", () => {
  const log = vectorLog();
  const forger = new Log(new NoteSigner(ORIGIN, new Uint8Array(32).fill(7)));
  forger.leaves.push(...log.leaves);
  const size = forger.sign(directoryOf(log.leaves));
  const bundle = log.bundle("d-alice");
  bundle.checkpoint.note = forger.checkpoints.get(size)!.note;
  refused(() => verify(bundle, ALICE), /not signed by the pinned audit key/, CheckpointRefused);
  // Nor a note changed on its way.
  const changed = log.bundle("d-alice");
  changed.checkpoint.note = changed.checkpoint.note.replace("\n", "\n ");
  refused(() => verify(changed, ALICE), /not signed by the pinned audit key/, CheckpointRefused);
});

test("step 1: a later checkpoint verifies against the one held, with its consistency proof", () => {
  const log = vectorLog();
  const first = log.latest();
  const dave = newDevice("d-dave");
  log.add(register(dave, "active"));
  const second = log.checkpoint();
  const verified = verify(log.bundle("d-dave", second, first), dave, log.held(first));
  assert.equal(verified.size, second);
  assert.equal(verified.entry.status, "active");
  // Alice's entry, unchanged, is shown at the later checkpoint too.
  assert.equal(verify(log.bundle("d-alice", second, first), ALICE, log.held(first)).size, second);
});

test("step 1: an older checkpoint (a rollback) is refused against the one held", () => {
  const log = vectorLog();
  const before = log.latest();
  log.add(revoke(ALICE));
  const after = log.checkpoint();
  // The server replays the checkpoint before alice's revocation to a page that saw the later.
  refused(
    () => verify(log.bundle("d-alice", before), ALICE, log.held(after)),
    new RegExp(`checkpoint of size ${before}, older than the one of size ${after} seen before`),
    CheckpointRefused,
  );
});

test("step 1: a fork of the checkpoint held, or a bad consistency proof, is refused", () => {
  const log = vectorLog();
  const first = log.latest();
  log.add(register(newDevice("d-dave"), "active"));
  log.checkpoint();
  // Another history under the server's own key: a device of its own in place of alice's.
  const other = new Log();
  other.add(register(newDevice("d-mallory"), "active"));
  other.leaves.push(...log.leaves.slice(1));
  const size = other.sign(directoryOf(log.leaves));
  const bundle = log.bundle("d-alice", log.latest(), first);
  bundle.checkpoint.note = other.checkpoints.get(size)!.note;
  refused(
    () => verify(bundle, ALICE, log.held(first)),
    new RegExp(`size ${size} is not consistent with the one of size ${first} seen before`),
    CheckpointRefused,
  );
  // The honest checkpoint with its consistency proof changed, or missing.
  const tampered = log.bundle("d-alice", log.latest(), first);
  tampered.checkpoint.consistency[0] = OTHER_HASH;
  refused(() => verify(tampered, ALICE, log.held(first)), /not consistent/, CheckpointRefused);
  const missing = log.bundle("d-alice", log.latest(), first);
  missing.checkpoint.consistency = [];
  refused(() => verify(missing, ALICE, log.held(first)), /not consistent/, CheckpointRefused);
});

test("step 2: a directory leaf that is not the checkpoint's last leaf is refused", () => {
  const log = vectorLog();
  const honest = log.bundle("d-alice");
  // A revocation after the last directory leaf, signed without a directory leaf after it.
  log.add(revoke(ALICE));
  const size = log.sign();
  const bundle = structuredClone(honest);
  bundle.checkpoint.note = log.checkpoints.get(size)!.note;
  bundle.directory.proof = b64(inclusionProof(log.hashes(size), bundle.directory.index));
  bundle.registration.proof = b64(inclusionProof(log.hashes(size), 0));
  refused(() => verify(bundle, ALICE), /not the last leaf \(7\) .* could be hidden/);
  // Moving the index to the last leaf does not help: that leaf is the revocation.
  bundle.directory.index = size - 1;
  bundle.directory.proof = b64(inclusionProof(log.hashes(size), size - 1));
  refused(() => verify(bundle, ALICE), /is not the leaf at index 7 of the signed log/);
  // And a key event's leaf proven as the last is no directory leaf.
  bundle.directory.leaf = log.leaves[size - 1]!;
  refused(() => verify(bundle, ALICE), /"device.revoke" event, not a key directory/);
});

test("step 2: a directory leaf changed or unproven is refused", () => {
  const log = vectorLog();
  const popped = log.bundle("d-alice");
  popped.directory.proof.pop();
  refused(() => verify(popped, ALICE), /is not the leaf at index 6/);
  const spaced = log.bundle("d-alice");
  spaced.directory.leaf = spaced.directory.leaf.replace('"size"', '"size" ');
  refused(() => verify(spaced, ALICE), /is not the leaf at index 6/);
});

test("step 3: the entry of another device, or one not in the directory, is refused", () => {
  const log = vectorLog();
  refused(() => verify(log.bundle("d-carol"), ALICE), /is for device d-carol, not d-alice/);
  // A device the server made up has no entry: a forged one is not in the directory.
  const stranger = newDevice("d-stranger");
  const forged = log.bundle("d-alice");
  forged.entry.data = fromUtf8(
    encodeEntry({
      device: stranger.deviceId,
      user: stranger.userId,
      signing_key: b64uEncode(stranger.signingKey),
      encryption_key_sha256: b64uEncode(sha256(stranger.encryptionKey)),
      status: "active",
      registered: 0,
      event: 1,
    }),
  );
  refused(
    () => verify(forged, stranger),
    /device d-stranger is not in the key directory at checkpoint 7/,
  );
  // Alice's own entry made active where it is not, or at another position, or unproven.
  const moved = log.bundle("d-alice");
  moved.entry.index = 1;
  refused(() => verify(moved, ALICE), /d-alice is not in the key directory/);
  const unproven = log.bundle("d-alice");
  unproven.entry.proof[0] = OTHER_HASH;
  refused(() => verify(unproven, ALICE), /d-alice is not in the key directory/);
  const padded = log.bundle("d-alice");
  padded.entry.data += " ";
  refused(() => verify(padded, ALICE), /not in canonical form/);
});

test("step 4: an entry of another user or with other keys than the certificate is refused", () => {
  const log = vectorLog();
  refused(
    () => verify(log.bundle("d-alice"), { ...ALICE, userId: "u-mallory" }),
    /has device d-alice for user u-alice, not u-mallory/,
  );
  const planted = newDevice("d-alice");
  refused(
    () => verify(log.bundle("d-alice"), { ...planted, userId: ALICE.userId }),
    /other keys for device d-alice than its certificate/,
  );
  refused(
    () => verify(log.bundle("d-alice"), { ...ALICE, encryptionKey: planted.encryptionKey }),
    /other keys for device d-alice than its certificate/,
  );
});

test("step 4: a revoked device is refused naming its revocation; a pending one not logged", () => {
  const log = vectorLog();
  refused(
    () => verify(log.bundle("d-bob"), BOB),
    /device d-bob is revoked in the key directory at checkpoint 7 \(key event at leaf 5\)/,
  );
  assert.ok(!(catchError(() => verify(log.bundle("d-bob"), BOB)) instanceof NotLogged));
  // Its older entry (active, before the revocation) under the current directory leaf.
  const dave = newDevice("d-dave");
  log.add(register(dave, "active"));
  const before = log.checkpoint();
  const stale = log.bundle("d-dave", before);
  const at = log.add(revoke(dave));
  log.checkpoint();
  refused(
    () => verify(log.bundle("d-dave"), dave),
    new RegExp(`d-dave is revoked in the key directory .* leaf ${at}\\)`),
  );
  const replayed = log.bundle("d-dave");
  replayed.entry = stale.entry;
  refused(() => verify(replayed, dave), /d-dave is not in the key directory at checkpoint/);
  // A device registered and not certified yet: pending, which the page may wait for.
  const erin = newDevice("d-erin");
  log.add(register(erin));
  log.checkpoint();
  refused(
    () => verify(log.bundle("d-erin"), erin),
    /d-erin is pending in the key directory/,
    NotLogged,
  );
  // Carol, registered active by staff, verifies.
  assert.equal(verify(log.bundle("d-carol"), CAROL).entry.status, "active");
});

function catchError(work: () => unknown): unknown {
  try {
    work();
  } catch (error) {
    return error;
  }
  return null;
}

test("step 5: a registration leaf not in the log, or not the entry's, is refused", () => {
  const log = vectorLog();
  const unproven = log.bundle("d-alice");
  unproven.registration.proof[0] = OTHER_HASH;
  refused(
    () => verify(unproven, ALICE),
    /registration of device d-alice is not in the signed log at leaf 0/,
  );
  const moved = log.bundle("d-alice");
  moved.registration.index = 1;
  refused(() => verify(moved, ALICE), /registration of device d-alice is not in the signed log/);
  // A directory that lies (signed with the log's own key) and points alice's entry at bob's
  // registration: every proof holds, and the leaf there is not alice's.
  const liar = vectorLog();
  const entries = directoryOf(liar.leaves).map((e) =>
    e.device === "d-alice" ? { ...e, registered: 1 } : e,
  );
  liar.checkpoint(entries);
  refused(
    () => verify(liar.bundle("d-alice"), ALICE),
    /registration leaf of device d-alice differs from its directory entry in object, user, signing_key, encryption_key_sha256/,
  );
  // An entry whose key events are not before its directory leaf.
  const late = vectorLog();
  late.checkpoint(
    directoryOf(late.leaves).map((e) => (e.device === "d-alice" ? { ...e, event: 99 } : e)),
  );
  refused(() => verify(late.bundle("d-alice"), ALICE), /names key events at leaves 0 and 99/);
});

test("a malformed bundle is refused saying what is missing", () => {
  const log = vectorLog();
  const bundle: Record<string, unknown> = log.bundle("d-alice");
  delete bundle.registration;
  refused(() => verify(bundle, ALICE), /has no registration object/);
  refused(() => verify([], ALICE), /not a JSON object/);
  const odd = log.bundle("d-alice") as unknown as { directory: { index: unknown } };
  odd.directory.index = "6";
  refused(() => verify(odd, ALICE), /directory leaf's index is not an index/);
  const proof = log.bundle("d-alice") as unknown as { entry: { proof: unknown } };
  proof.entry.proof = ["not+base64url"];
  refused(() => verify(proof, ALICE), /a hash of the entry's proof is not canonical/);
});
