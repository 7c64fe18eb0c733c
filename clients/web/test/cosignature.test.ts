/**
 * protocol/cosignature.ts against protocol/cosignature.py (C2SP tlog-cosignature v1): the
 * known-answer vector tests/protocol/vectors/cosignature_v1.json, and `checkWitnesses` on a
 * checkpoint note cosigned validly, with a forged line, without the required witness, too
 * long ago for a maximum age, with lines of witnesses not pinned (ignored), and malformed.
 * Each check and a set of witness keys (good and bad) are also given to Python
 * (test/python_cosignature.py, with ATTACHE_PYTHON), which must find the same, in the same
 * words.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { test } from "node:test";

import { fromUtf8, toHex } from "../src/protocol/bytes.js";
import { Checkpoint, CheckpointError, signCheckpoint } from "../src/protocol/checkpoint.js";
import {
  COSIGNATURE_SIZE,
  Cosignature,
  CosignatureSigner,
  CosignatureVerifier,
  checkWitnesses,
  cosignedMessage,
  noteCosignatures,
} from "../src/protocol/cosignature.js";
import { ORIGIN, SIGNER } from "./keylog.js";
import { ROOT, h, vector } from "./vectors.js";

const PYTHON = process.env.ATTACHE_PYTHON;
const V = vector("cosignature_v1.json");
const GBR = new CosignatureSigner("witness.gbr.example/w1", new Uint8Array(32).fill(1));
const USA = new CosignatureSigner("witness.usa.example/w1", new Uint8Array(32).fill(2));
const STRANGER = new CosignatureSigner("witness.zzz.example/w1", new Uint8Array(32).fill(3));
const T = 1_790_000_000n;

const BODY = new Checkpoint(ORIGIN, 12, new Uint8Array(32).fill(5)).body();
const NOTE = signCheckpoint(Checkpoint.parse(BODY), SIGNER);

function cosigned(...lines: string[]): string {
  return NOTE + lines.join("");
}

/** A line that claims `signer`'s name and key id with another key's signature. */
function forgedLine(signer: CosignatureSigner, timestamp: bigint): string {
  const real = STRANGER.cosign(BODY, timestamp);
  return new Cosignature(signer.name, signer.verifier.keyId, timestamp, real.signature).line();
}

interface Check {
  name: string;
  note: string;
  signers: CosignatureSigner[];
  minimum: number;
  now: bigint | null;
  maxAge: bigint | null;
}

const CHECKS: Check[] = [
  {
    name: "valid",
    note: cosigned(GBR.cosign(BODY, T).line()),
    signers: [GBR],
    minimum: 1,
    now: null,
    maxAge: null,
  },
  {
    name: "forged",
    note: cosigned(forgedLine(GBR, T)),
    signers: [GBR],
    minimum: 1,
    now: null,
    maxAge: null,
  },
  {
    name: "forged beside a valid line of the same witness",
    note: cosigned(GBR.cosign(BODY, T).line(), forgedLine(GBR, T + 5n)),
    signers: [GBR],
    minimum: 1,
    now: null,
    maxAge: null,
  },
  {
    name: "missing",
    note: NOTE,
    signers: [GBR],
    minimum: 1,
    now: null,
    maxAge: null,
  },
  {
    name: "one of two missing, two required",
    note: cosigned(USA.cosign(BODY, T).line()),
    signers: [GBR, USA],
    minimum: 2,
    now: null,
    maxAge: null,
  },
  {
    name: "one of two, one required",
    note: cosigned(USA.cosign(BODY, T).line()),
    signers: [GBR, USA],
    minimum: 1,
    now: null,
    maxAge: null,
  },
  {
    name: "too old",
    note: cosigned(GBR.cosign(BODY, T).line()),
    signers: [GBR],
    minimum: 1,
    now: T + 4000n,
    maxAge: 3600n,
  },
  {
    name: "recent enough, the newest of two lines counting",
    note: cosigned(GBR.cosign(BODY, T).line(), GBR.cosign(BODY, T + 3000n).line()),
    signers: [GBR],
    minimum: 1,
    now: T + 4000n,
    maxAge: 3600n,
  },
  {
    name: "a witness not pinned is ignored, even forged",
    note: cosigned(STRANGER.cosign(BODY, T).line(), forgedLine(USA, T), GBR.cosign(BODY, T).line()),
    signers: [GBR],
    minimum: 1,
    now: null,
    maxAge: null,
  },
  {
    name: "only a witness not pinned",
    note: cosigned(STRANGER.cosign(BODY, T).line()),
    signers: [GBR],
    minimum: 1,
    now: null,
    maxAge: null,
  },
  {
    name: "a cosignature of another checkpoint",
    note: cosigned(
      GBR.cosign(new Checkpoint(ORIGIN, 13, new Uint8Array(32).fill(5)).body(), T).line(),
    ),
    signers: [GBR],
    minimum: 1,
    now: null,
    maxAge: null,
  },
  {
    name: "a malformed note",
    note: NOTE.replace("\n\n", "\n"),
    signers: [GBR],
    minimum: 1,
    now: null,
    maxAge: null,
  },
];

type Found =
  | {
      valid: Record<string, number>;
      forged: string[];
      missing: string[];
      stale: Record<string, number>;
      problems: string[];
    }
  | { error: string };

const numbers = (map: Map<string, bigint>) =>
  Object.fromEntries([...map].map(([name, value]) => [name, Number(value)]));

function typescript(c: Check): Found {
  try {
    const found = checkWitnesses(
      c.note,
      c.signers.map((s) => CosignatureVerifier.fromVkey(s.vkey())),
      { now: c.now, maxAge: c.maxAge },
    );
    return {
      valid: numbers(found.valid),
      forged: [...found.forged],
      missing: [...found.missing],
      stale: numbers(found.stale),
      problems: found.problems(c.minimum),
    };
  } catch (error) {
    if (!(error instanceof CheckpointError)) throw error;
    return { error: error.message };
  }
}

const GOOD = GBR.vkey();
const [gName, gId, gKey] = GOOD.split("+") as [string, string, string];
const VKEYS = [
  GOOD,
  V.vkey,
  "no-plus-signs",
  `${gName}+${gId}`,
  `${gName}+${gId}+${gKey.slice(0, -1)}`,
  `${gName}+${gId}+${gKey.replace(/.$/, "=")}`.replace(/=+$/, "") + "=",
  `${gName}+${gId}+AQ==`,
  `${gName}+${gId}+${SIGNER.verifier.vkey().split("+")[2]}`,
  `${gName}+${gId}+BAAA`,
  `${gName}+00000000+${gKey}`,
  `bad name+${gId}+${gKey}`,
  `+${gId}+${gKey}`,
];

test("the known-answer vector: key id, vkey, message, signature and line", () => {
  const signer = new CosignatureSigner(V.name, h(V.seed));
  assert.equal(toHex(signer.verifier.publicKey), V.public_key);
  assert.equal(toHex(signer.verifier.keyId), V.key_id);
  assert.equal(signer.vkey(), V.vkey);
  assert.equal(fromUtf8(cosignedMessage(V.checkpoint, BigInt(V.timestamp))), V.message);
  const cosignature = signer.cosign(V.checkpoint, BigInt(V.timestamp));
  assert.equal(toHex(cosignature.signature), V.signature);
  assert.equal(cosignature.line(), V.line);
  const verifier = CosignatureVerifier.fromVkey(V.vkey);
  assert.ok(verifier.verify(V.checkpoint, cosignature));
  assert.ok(!verifier.verify(V.checkpoint.replace("20852163", "20852164"), cosignature));
  const { found } = noteCosignatures(`${V.checkpoint}\n${V.line}`);
  assert.equal(found.length, 1);
  assert.equal(found[0]!.timestamp, BigInt(V.timestamp));
  assert.throws(() => Cosignature.fromBlob("w", new Uint8Array(COSIGNATURE_SIZE - 1)), /75 bytes/);
});

test("checkWitnesses: valid, forged, missing, too old, not pinned", () => {
  const byName = new Map(CHECKS.map((c) => [c.name, typescript(c)]));
  assert.deepEqual(byName.get("valid"), {
    valid: { [GBR.name]: Number(T) },
    forged: [],
    missing: [],
    stale: {},
    problems: [],
  });
  const forged = byName.get("forged") as { problems: string[] };
  assert.deepEqual(forged.problems, [
    `the cosignature of witness ${GBR.name} does not verify with its pinned key: forged`,
    `the checkpoint has 0 valid cosignatures of the 1 required from the witnesses pinned ` +
      "(missing: none)",
  ]);
  assert.deepEqual(
    (byName.get("forged beside a valid line of the same witness") as { forged: string[] }).forged,
    [GBR.name],
  );
  assert.deepEqual((byName.get("missing") as { problems: string[] }).problems, [
    `the checkpoint has 0 valid cosignatures of the 1 required from the witnesses pinned ` +
      `(missing: ${GBR.name})`,
  ]);
  assert.deepEqual((byName.get("one of two, one required") as { problems: string[] }).problems, []);
  assert.deepEqual((byName.get("too old") as { problems: string[] }).problems, [
    `the checkpoint has 0 valid cosignatures of the 1 required from the witnesses pinned ` +
      `(missing: none; too old: ${GBR.name}, cosigned 4000 s ago)`,
  ]);
  assert.deepEqual(
    (byName.get("recent enough, the newest of two lines counting") as { valid: object }).valid,
    { [GBR.name]: Number(T + 3000n) },
  );
  const ignored = byName.get("a witness not pinned is ignored, even forged") as {
    problems: string[];
  };
  assert.deepEqual(ignored.problems, []);
  assert.deepEqual(
    (byName.get("a cosignature of another checkpoint") as { forged: string[] }).forged,
    [GBR.name],
  );
  assert.ok("error" in byName.get("a malformed note")!);
  assert.throws(() => checkWitnesses(NOTE, [], { now: 1n }), /together/);
});

test(
  "Python's check_witnesses and from_vkey find exactly what the page does",
  { skip: PYTHON === undefined ? "ATTACHE_PYTHON is not set (make web-check sets it)" : false },
  () => {
    const input = {
      checks: CHECKS.map((c) => ({
        note: c.note,
        vkeys: c.signers.map((s) => s.vkey()),
        now: c.now === null ? null : Number(c.now),
        max_age: c.maxAge === null ? null : Number(c.maxAge),
        minimum: c.minimum,
      })),
      vkeys: VKEYS,
    };
    const run = spawnSync(
      PYTHON!,
      [join(ROOT, "clients", "web", "test", "python_cosignature.py")],
      {
        cwd: ROOT,
        input: JSON.stringify(input),
        encoding: "utf-8",
      },
    );
    assert.equal(run.status, 0, run.stderr);
    const python = JSON.parse(run.stdout) as {
      checks: Found[];
      vkeys: ({ name: string } | { error: string })[];
    };
    CHECKS.forEach((c, i) => assert.deepEqual(typescript(c), python.checks[i], c.name));
    VKEYS.forEach((vkey, i) => {
      let mine: { name: string } | { error: string };
      try {
        mine = { name: CosignatureVerifier.fromVkey(vkey).name };
      } catch (error) {
        if (!(error instanceof CheckpointError)) throw error;
        mine = { error: error.message };
      }
      assert.deepEqual(mine, python.vkeys[i], vkey);
    });
  },
);
