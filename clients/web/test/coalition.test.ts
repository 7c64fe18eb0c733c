/**
 * The coalition policy in the page (src/protocol/coalition.ts) against
 * tests/protocol/vectors/coalition_policy_v1.json and against Python's protocol/coalition.py:
 * the same digests, the same chains accepted, and every malformed or badly signed version
 * refused with Python's message (test/python_coalition.py, run with ATTACHE_PYTHON).
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { test } from "node:test";

import { b64uEncode, fromHex, toHex } from "../src/protocol/bytes.js";
import { canonicalJson } from "../src/protocol/canonical.js";
import {
  CTX_COALITION_POLICY,
  CTX_COALITION_POLICY_SIGNATURE,
  PolicyError,
  parseSignedPolicy,
  signedPolicyJson,
  verifyChain,
  verifyFounding,
  verifySuccessor,
} from "../src/protocol/coalition.js";
import { ROOT, repoText, sha256Hex, vector, type Vector } from "./vectors.js";

const PYTHON = process.env.ATTACHE_PYTHON;
const V = vector("coalition_policy_v1.json");
const [V1, V2] = V.versions.map((entry: Vector) => entry.signed) as [Vector, Vector];

// The rule each invalid vector breaks, as the message Python gives says it.
const RULES: Record<string, RegExp> = {
  threshold: /is signed by 1 nation\(s\) of version 1 \(USA\); its threshold is 2/,
  "key-not-in-previous": /which version 1 does not list for USA/,
  "signer-not-in-previous": /which is not a nation of version 1/,
  signature: /does not verify: forged/,
  "duplicate-signer": /USA signed twice/,
  "wrong-signer": /which version 1 lists for FRA/,
  version: /does not follow version 1/,
};

test("the coalition contexts are protocol/canonical.py's", () => {
  const python = repoText("protocol", "canonical.py");
  for (const [name, value] of [
    ["CTX_COALITION_POLICY", CTX_COALITION_POLICY],
    ["CTX_COALITION_POLICY_SIGNATURE", CTX_COALITION_POLICY_SIGNATURE],
  ]) {
    assert.ok(python.includes(`${name} = "${value}"`), name);
  }
});

test("the vector chain: canonical bytes, digests, founding and successor verified", () => {
  let held = null;
  for (const entry of V.versions) {
    const signed = parseSignedPolicy(entry.signed);
    assert.equal(sha256Hex(canonicalJson(signed.policy.json)), entry.canonical_sha256);
    assert.equal(toHex(signed.policy.digest), entry.digest);
    assert.deepEqual(signedPolicyJson(signed), entry.signed);
    held = held === null ? verifyFounding(signed) : verifySuccessor(held, signed);
  }
  assert.equal(held!.policyVersion, 2);
  const chain = V.versions.map((entry: Vector) => parseSignedPolicy(entry.signed));
  assert.equal(toHex(verifyChain(chain).digest), V.versions[1].digest);
  assert.equal(verifyChain([], held).digest, held!.digest);
  // The catalog the policy describes has its nations and groups, and only those.
  const catalog = held!.catalog;
  for (const [name, members] of held!.groups) {
    assert.deepEqual([...catalog.groups.get(name)!].sort(), [...members]);
  }
  for (const nation of held!.nations.keys()) assert.ok(catalog.nations.has(nation));
  assert.equal(catalog.nations.has("ZZZ"), false);
});

test("every invalid successor in the vectors is refused for its rule", () => {
  const founding = verifyFounding(parseSignedPolicy(V1));
  assert.ok(V.invalid.length >= 8);
  for (const entry of V.invalid) {
    const rule = RULES[entry.rule];
    assert.ok(rule, `a rule this test knows: ${entry.rule}`);
    assert.throws(
      () => verifySuccessor(founding, parseSignedPolicy(entry.signed)),
      (error: unknown) => error instanceof PolicyError && rule.test(error.message),
      entry.description,
    );
  }
});

/** A copy of `signed` with `change` applied to its policy document. */
function edited(signed: Vector, change: (policy: Vector) => void): Vector {
  const copy = structuredClone(signed);
  change(copy.policy);
  return copy;
}

const KEY_ID = (name: string): string => V.authority_key_ids[name];

/** Chains each verified from their founding version, in TypeScript and in Python. */
function cases(): [string, Vector[]][] {
  const usa = KEY_ID("USA-1");
  return [
    ["the founding version", [V1]],
    ["the vector chain", [V1, V2]],
    ["no chain", []],
    ...V.invalid.map((entry: Vector): [string, Vector[]] => [entry.rule, [V1, entry.signed]]),
    ["version 2 as the founding version", [V2]],
    ["a founder's signature missing", [{ ...V1, signatures: V1.signatures.slice(1) }]],
    ["version 2 before version 1", [V2, V1]],
    ["a field missing", [edited(V1, (p) => delete p.threshold)]],
    ["an unknown field", [edited(V1, (p) => (p.extra = 1))]],
    ["format version 2", [edited(V1, (p) => (p.version = 2))]],
    ["format version as text", [edited(V1, (p) => (p.version = "1"))]],
    ["policy_version as text", [edited(V1, (p) => (p.policy_version = "1"))]],
    ["policy_version 0", [edited(V1, (p) => (p.policy_version = 0))]],
    ["threshold 0", [edited(V1, (p) => (p.threshold = 0))]],
    ["threshold above the nations", [edited(V1, (p) => (p.threshold = 4))]],
    ["a founding version with a previous", [edited(V1, (p) => (p.previous = V2.policy.previous))]],
    ["a previous that is short", [edited(V2, (p) => (p.previous = "AAAA"))]],
    ["a previous not base64url", [edited(V2, (p) => (p.previous = "+".repeat(43)))]],
    ["coalition in capitals", [edited(V1, (p) => (p.coalition = "Vector"))]],
    ["coalition a number", [edited(V1, (p) => (p.coalition = 7))]],
    ["catalog not text", [edited(V1, (p) => (p.catalog = {}))]],
    ["nations a list", [edited(V1, (p) => (p.nations = []))]],
    ["no nations", [edited(V1, (p) => (p.nations = {}))]],
    ["a nation code in lower case", [edited(V1, (p) => renameNation(p, "USA", "usa"))]],
    ["a nation with an extra field", [edited(V1, (p) => (p.nations.USA.extra = 1))]],
    ["a nation with no name", [edited(V1, (p) => (p.nations.USA.name = ""))]],
    ["a nation named with a control", [edited(V1, (p) => (p.nations.USA.name = "U\u0007S"))]],
    ["a nation with no keys", [edited(V1, (p) => (p.nations.USA.authority_keys = {}))]],
    [
      "a key under another id",
      [edited(V1, (p) => (p.nations.USA.authority_keys = { [KEY_ID("GBR-1")]: usaKey() }))],
    ],
    [
      "a key of 31 bytes",
      [edited(V1, (p) => (p.nations.USA.authority_keys[usa] = b64uEncode(new Uint8Array(31))))],
    ],
    [
      "one key for two nations",
      [edited(V1, (p) => (p.nations.GBR.authority_keys = { [usa]: usaKey() }))],
    ],
    ["groups a list", [edited(V1, (p) => (p.groups = []))]],
    ["a group unsorted", [edited(V1, (p) => (p.groups.TRILAT = ["USA", "GBR", "FRA"]))]],
    ["a group member twice", [edited(V1, (p) => (p.groups.TRILAT = ["FRA", "FRA", "USA"]))]],
    ["a group of none", [edited(V1, (p) => (p.groups.TRILAT = []))]],
    ["a group of numbers", [edited(V1, (p) => (p.groups.TRILAT = [1, 2]))]],
    ["a group in lower case", [edited(V1, (p) => (p.groups = { trilat: ["FRA"] }))]],
    ["a group the catalog defines", [edited(V1, (p) => (p.groups = { NATO: ["FRA"] }))]],
    ["a group of a nation not listed", [edited(V1, (p) => (p.groups.TRILAT = ["FRA", "ZZZ"]))]],
    ["a group changed after signing", [edited(V1, (p) => (p.groups.TRILAT = ["FRA", "USA"]))]],
    ["a signed policy with a third field", [{ ...V1, extra: 1 }]],
    ["signatures not a list", [{ ...V1, signatures: {} }]],
    ["a signature with a fourth field", [{ ...V1, signatures: [{ ...V1.signatures[0], x: 1 }] }]],
    [
      "a signature by a lower-case nation",
      [{ ...V1, signatures: [{ ...V1.signatures[0], nation: "fra" }] }],
    ],
    [
      "a signature key id too long",
      [{ ...V1, signatures: [{ ...V1.signatures[0], key_id: "A".repeat(30) }] }],
    ],
    [
      "a signature of 63 bytes",
      [{ ...V1, signatures: [{ ...V1.signatures[0], signature: b64uEncode(new Uint8Array(63)) }] }],
    ],
  ];

  function usaKey(): string {
    return V1.policy.nations.USA.authority_keys[usa];
  }
}

function renameNation(policy: Vector, from: string, to: string): void {
  policy.nations = Object.fromEntries(
    Object.entries(policy.nations).map(([code, entry]) => [code === from ? to : code, entry]),
  );
}

function typescript(chain: Vector[]): { digest: string } | { error: string } {
  try {
    return { digest: verifyChain(chain.map(parseSignedPolicy)).digestB64u };
  } catch (error) {
    if (error instanceof PolicyError) return { error: error.message };
    throw error;
  }
}

test(
  "chains are accepted and refused, with the same messages, as in Python",
  { skip: PYTHON === undefined ? "ATTACHE_PYTHON is not set (make web-check sets it)" : false },
  () => {
    const all = cases();
    const run = spawnSync(PYTHON!, [join(ROOT, "clients", "web", "test", "python_coalition.py")], {
      cwd: ROOT,
      input: JSON.stringify(all.map(([, chain]) => ({ chain }))),
      encoding: "utf-8",
    });
    assert.equal(run.status, 0, run.stderr);
    const python = JSON.parse(run.stdout) as unknown[];
    assert.equal(python.length, all.length);
    all.forEach(([name, chain], i) => {
      assert.deepEqual(typescript(chain), python[i], name);
    });
    assert.deepEqual(python[1], { digest: b64uEncode(fromHex(V.versions[1].digest)) });
  },
);
