/**
 * protocol/policy_log.ts against protocol/policy_log.py (PROTOCOL.md §18.6): a publication
 * proof played by the test (test/policylog.ts) verifies for the version it publishes, and each
 * tampering is refused naming the version: a leaf of another digest or another version, a
 * made-up leaf, a bad inclusion proof, an index beyond the checkpoint, a checkpoint not the
 * pinned key's, one that does not extend the checkpoint held (older, forked, rewritten). Each
 * answer is also given to Python's verify_publication (test/python_policy_log.py, with
 * ATTACHE_PYTHON), which must accept exactly what the page accepts, with the same message.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { test } from "node:test";

import { b64uEncode } from "../src/protocol/bytes.js";
import type { JsonObject } from "../src/protocol/canonical.js";
import { Checkpoint, NoteSigner, signCheckpoint } from "../src/protocol/checkpoint.js";
import { parsePolicy } from "../src/protocol/coalition.js";
import { merkleRoot } from "../src/protocol/merkle.js";
import { verifyPublication } from "../src/protocol/policy_log.js";
import {
  CheckpointRefused,
  TransparencyError,
  type HeldCheckpoint,
} from "../src/protocol/transparency.js";
import { LOG_KEY, ORIGIN, V as KEYS } from "./keylog.js";
import { PolicyLogServer, publicationLeaf } from "./policylog.js";
import { ROOT, vector } from "./vectors.js";

const PYTHON = process.env.ATTACHE_PYTHON;
const VERSIONS = vector("coalition_policy_v1.json").versions;
const DOC1: JsonObject = VERSIONS[0].signed.policy;
const DOC2: JsonObject = VERSIONS[1].signed.policy;
const P1 = parsePolicy(DOC1);
const P2 = parsePolicy(DOC2);

interface Case {
  name: string;
  answer: unknown;
  document: JsonObject;
  held: HeldCheckpoint | null;
  /** What the page must say: null to accept, else a pattern of the refusal. */
  refused: RegExp | null;
  checkpoint?: boolean;
}

type Result =
  | { size: number; root: string; index: number; digest: string }
  | { refused: string; error: string };

function typescript(c: Case): Result {
  try {
    const found = verifyPublication(c.answer, {
      logKey: LOG_KEY,
      policy: parsePolicy(c.document),
      held: c.held,
    });
    const { size, root, index, publication } = found;
    return { size, root: b64uEncode(root), index, digest: publication.digest };
  } catch (error) {
    if (!(error instanceof TransparencyError)) throw error;
    const kind = error instanceof CheckpointRefused ? "CheckpointRefused" : "TransparencyError";
    return { refused: kind, error: error.message };
  }
}

/** A log with filler leaves, versions 1 and 2 published, and more leaves after. */
function honest(): { log: PolicyLogServer; heldAfter1: HeldCheckpoint } {
  const log = new PolicyLogServer();
  log.append({ v: 1, action: "user.create", decision: "allow" });
  log.publish(DOC1);
  const heldAfter1 = { size: log.leaves.length, root: merkleRoot(log.hashes()) };
  for (let i = 0; i < 3; i++) log.append({ v: 1, action: "message.send", decision: "allow", n: i });
  log.publish(DOC2);
  log.append({ v: 1, action: "keys.directory", decision: "allow" });
  return { log, heldAfter1 };
}

function cases(): Case[] {
  const { log, heldAfter1 } = honest();
  const all: Case[] = [
    { name: "version 1", answer: log.proof(1, 0), document: DOC1, held: null, refused: null },
    {
      name: "version 2 from the checkpoint held after version 1",
      answer: log.proof(2, heldAfter1.size),
      document: DOC2,
      held: heldAfter1,
      refused: null,
    },
  ];
  // A leaf of another digest: the log publishes version 2 with version 1's digest.
  const digest = new PolicyLogServer();
  digest.publish(DOC1);
  digest.append(
    publicationLeaf(DOC2, {
      details: { ...(publicationLeaf(DOC2).details as JsonObject), digest: P1.digestB64u },
    }),
  );
  all.push({
    name: "a publication of another digest",
    answer: digest.proof(2, 0),
    document: DOC2,
    held: null,
    refused:
      /publication at leaf 1 is not coalition policy version 2 as served: its digest differ \(the log has digest/,
  });
  // Another version's leaf shown as version 2's publication.
  const other = honest().log;
  other.at.set(2, 1);
  all.push({
    name: "another version's publication",
    answer: other.proof(2, 0),
    document: DOC2,
    held: null,
    refused:
      /at leaf 1 is not coalition policy version 2 as served: its policy_version, digest, previous differ/,
  });
  // A made-up leaf: a message event shown as the publication.
  const madeUp = honest().log;
  madeUp.at.set(2, 2);
  all.push({
    name: "a leaf that is no publication",
    answer: madeUp.proof(2, 0),
    document: DOC2,
    held: null,
    refused: /the leaf 2 shown as coalition policy version 2's publication is not one/,
  });
  // A publication never logged, its leaf and proof made up by the server.
  const fresh = honest().log;
  const forged = fresh.proof(1, 0) as any;
  forged.publication.leaf = JSON.stringify(publicationLeaf(DOC2));
  all.push({
    name: "a made-up publication leaf",
    answer: forged,
    document: DOC2,
    held: null,
    refused:
      /version 2 is not in the audit log: the inclusion proof of its publication \(leaf 1\) does not verify/,
  });
  // A bad inclusion proof: one hash changed.
  const bad = honest().log.proof(2, 0) as any;
  bad.publication.proof[0] = b64uEncode(new Uint8Array(32).fill(7));
  all.push({
    name: "a bad inclusion proof",
    answer: bad,
    document: DOC2,
    held: null,
    refused: /version 2 is not in the audit log: the inclusion proof/,
  });
  const beyond = honest().log.proof(2, 0) as any;
  beyond.publication.index = 99;
  all.push({
    name: "an index beyond the checkpoint",
    answer: beyond,
    document: DOC2,
    held: null,
    refused: /leaf 99\) does not verify at the checkpoint of size 7/,
  });
  // A checkpoint signed by another key of the same name.
  const signed = honest().log;
  const stranger = signed.proof(2, 0) as any;
  const otherKey = new NoteSigner(ORIGIN, new Uint8Array(32).fill(9));
  stranger.checkpoint.note = signCheckpoint(
    new Checkpoint(ORIGIN, signed.leaves.length, merkleRoot(signed.hashes())),
    otherKey,
  );
  all.push({
    name: "a checkpoint not the pinned key's",
    answer: stranger,
    document: DOC2,
    held: null,
    refused: /the checkpoint is not signed by the pinned audit key/,
    checkpoint: true,
  });
  // Not extending the checkpoint held: older, forked at the same size, rewritten.
  const { log: later, heldAfter1: h1 } = honest();
  all.push({
    name: "a checkpoint older than the one held",
    answer: later.proof(2, 0),
    document: DOC2,
    held: { size: 50, root: new Uint8Array(32) },
    refused: /checkpoint of size 7, older than the one of size 50/,
    checkpoint: true,
  });
  all.push({
    name: "a checkpoint forked at the size held",
    answer: later.proof(2, 7),
    document: DOC2,
    held: { size: 7, root: new Uint8Array(32).fill(3) },
    refused: /has another root than the one seen before: the log forked/,
    checkpoint: true,
  });
  all.push({
    name: "a checkpoint that does not extend the one held",
    answer: later.proof(2, h1.size),
    document: DOC2,
    held: { size: h1.size, root: new Uint8Array(32).fill(4) },
    refused: /not consistent with the one of size 2 seen before: the log forked or was rewritten/,
    checkpoint: true,
  });
  return all;
}

test("a publication proof verifies for its version, and each tampering is refused naming it", () => {
  for (const c of cases()) {
    const result = typescript(c);
    if (c.refused === null) {
      assert.ok(!("refused" in result), `${c.name}: ${JSON.stringify(result)}`);
      continue;
    }
    assert.ok("refused" in result, `${c.name} was accepted`);
    assert.match(result.error, c.refused, c.name);
    assert.equal(result.refused, c.checkpoint ? "CheckpointRefused" : "TransparencyError", c.name);
  }
  // A valid proof, checked against the wrong version, is refused too.
  const { log } = honest();
  assert.throws(
    () => verifyPublication(log.proof(1, 0), { logKey: LOG_KEY, policy: P2 }),
    /at leaf 1 is not coalition policy version 2 as served/,
  );
});

test(
  "Python's verify_publication accepts and refuses exactly what the page does",
  { skip: PYTHON === undefined ? "ATTACHE_PYTHON is not set (make web-check sets it)" : false },
  () => {
    const all = cases();
    const input = all.map((c) => ({
      answer: c.answer,
      vkey: KEYS.vkey,
      policy: c.document,
      held: c.held === null ? null : { size: c.held.size, root: b64uEncode(c.held.root) },
    }));
    const run = spawnSync(PYTHON!, [join(ROOT, "clients", "web", "test", "python_policy_log.py")], {
      cwd: ROOT,
      input: JSON.stringify(input),
      encoding: "utf-8",
    });
    assert.equal(run.status, 0, run.stderr);
    const python = JSON.parse(run.stdout) as Result[];
    assert.equal(python.length, all.length);
    all.forEach((c, i) => {
      const mine = typescript(c);
      const theirs = python[i]!;
      if (
        c.name === "a checkpoint not the pinned key's" &&
        "refused" in mine &&
        "refused" in theirs
      ) {
        // The note library's own words after the prefix may differ between the languages.
        assert.equal(theirs.refused, mine.refused, c.name);
        const prefix = "the checkpoint is not signed by the pinned audit key";
        assert.ok(theirs.error.startsWith(prefix) && mine.error.startsWith(prefix), c.name);
        return;
      }
      assert.deepEqual(mine, theirs, c.name);
    });
  },
);
