/**
 * The witnesses the page requires (src/app/witnesses.ts), as the SDK's WitnessRequirement and
 * its checks of bundles and policy proofs: a requirement is made and refused as Python's
 * (test/python_witnesses.py, with ATTACHE_PYTHON, in the same words); against a server the
 * test plays, bundles and policy proofs are asked for with `witness=` and `min_witnesses=`, a
 * checkpoint the witness cosigned is believed and kept, and one with its cosignature stripped,
 * forged, too old or only a stranger's is refused (CosignaturesRefused, PolicyRefused) naming
 * the witness, with nothing kept.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { test } from "node:test";

import { Api } from "../src/app/api.js";
import { PolicyRefused } from "../src/app/coalition.js";
import { requireWitnesses, type DeviceStore, type StoredDevice } from "../src/app/device.js";
import { PolicyLog } from "../src/app/policy_log.js";
import {
  CheckpointRefused,
  CosignaturesRefused,
  DeviceTransparency,
  extendPin,
  type PinStore,
  type TransparencyPin,
} from "../src/app/transparency.js";
import { WitnessError, WitnessRequirement, nowSeconds } from "../src/app/witnesses.js";
import { b64uEncode } from "../src/protocol/bytes.js";
import type { JsonObject } from "../src/protocol/canonical.js";
import { splitNote } from "../src/protocol/checkpoint.js";
import { parsePolicy } from "../src/protocol/coalition.js";
import { Cosignature, CosignatureSigner } from "../src/protocol/cosignature.js";
import { Log, V, newDevice, register } from "./keylog.js";
import { PolicyLogServer } from "./policylog.js";
import { ROOT, vector } from "./vectors.js";

const PYTHON = process.env.ATTACHE_PYTHON;
const ORIGIN = "http://127.0.0.1:8600";
const GBR = new CosignatureSigner("witness.gbr.example/w1", new Uint8Array(32).fill(11));
const USA = new CosignatureSigner("witness.usa.example/w1", new Uint8Array(32).fill(12));
const STRANGER = new CosignatureSigner("witness.zzz.example/w1", new Uint8Array(32).fill(13));
const DOC1: JsonObject = vector("coalition_policy_v1.json").versions[0].signed.policy;

type Mode = "cosigned" | "stripped" | "forged" | "old" | "stranger";

/** `note` as the server serves it: cosigned by GBR (or not, or falsely) per `mode`. */
function served(note: string, mode: Mode): string {
  const body = splitNote(note).body;
  const now = BigInt(nowSeconds());
  switch (mode) {
    case "cosigned":
      return note + GBR.cosign(body, now).line();
    case "stripped":
      return note;
    case "forged": {
      const other = STRANGER.cosign(body, now);
      return note + new Cosignature(GBR.name, GBR.verifier.keyId, now, other.signature).line();
    }
    case "old":
      return note + GBR.cosign(body, now - 7200n).line();
    case "stranger":
      return note + STRANGER.cosign(body, now).line();
  }
}

function memoryPins(pin: TransparencyPin): PinStore & { pin: TransparencyPin } {
  return {
    pin,
    async load() {
      return structuredClone(this.pin);
    },
    async change(change) {
      const next = change(structuredClone(this.pin));
      if (next !== null) this.pin = structuredClone(next);
    },
  };
}

const NO_WAIT = { now: () => 0, sleep: async () => {} };

test("a requirement is made and refused as the SDK's, in the same words", () => {
  const cases: { vkeys: unknown; min: number | null; max_age: number | null }[] = [
    { vkeys: [GBR.vkey()], min: null, max_age: null },
    { vkeys: [USA.vkey(), ` ${GBR.vkey()} `], min: 1, max_age: 3600 },
    { vkeys: [], min: null, max_age: null },
    { vkeys: [GBR.vkey(), GBR.vkey()], min: null, max_age: null },
    { vkeys: [GBR.vkey()], min: 2, max_age: null },
    { vkeys: [GBR.vkey()], min: 0, max_age: null },
    { vkeys: [GBR.vkey()], min: null, max_age: 0 },
    { vkeys: ["witness+00000000+BAAA"], min: null, max_age: null },
    { vkeys: [V.vkey], min: null, max_age: null },
    { vkeys: [`${GBR.name}+00000000+${GBR.vkey().split("+")[2]}`], min: null, max_age: null },
  ];
  const mine = cases.map((c) => {
    try {
      return WitnessRequirement.of(c.vkeys, c.min, c.max_age).toPin();
    } catch (error) {
      if (!(error instanceof WitnessError)) throw error;
      return { error: error.message };
    }
  });
  assert.deepEqual(mine[1], {
    keys: [GBR.vkey(), USA.vkey()],
    min: 1,
    max_age: 3600,
  });
  assert.deepEqual(mine[3], { error: "each witness key must name a different witness" });
  assert.deepEqual(mine[4], {
    error: "2 witnesses required but only 1 witness keys given: the minimum is between 1 and 1",
  });
  if (PYTHON !== undefined) {
    const run = spawnSync(PYTHON, [join(ROOT, "clients", "web", "test", "python_witnesses.py")], {
      cwd: ROOT,
      input: JSON.stringify(cases),
      encoding: "utf-8",
    });
    assert.equal(run.status, 0, run.stderr);
    assert.deepEqual(mine, JSON.parse(run.stdout));
  }
  // The enrolment form: one key a line, empty numbers for the defaults, nothing for none.
  assert.equal(WitnessRequirement.fromForm(" \n", "", ""), null);
  const made = WitnessRequirement.fromForm(`${GBR.vkey()}\n\n${USA.vkey()}\n`, "1", "600")!;
  assert.equal(made.minimum, 1);
  assert.equal(made.describe(), `1 of 2 (${GBR.name}, ${USA.name}), cosigned within 600 s`);
  assert.equal(
    made.query(),
    `witness=${encodeURIComponent(GBR.name)}&witness=${encodeURIComponent(USA.name)}` +
      "&min_witnesses=1",
  );
  assert.throws(() => WitnessRequirement.fromForm("", "1", ""), /keys too/);
  assert.throws(() => WitnessRequirement.fromForm(GBR.vkey(), "one", ""), /whole number/);
});

test("keeping a checkpoint keeps the witnesses required", () => {
  const witnesses = WitnessRequirement.of([GBR.vkey()]).toPin();
  const pin = { vkey: V.vkey, checkpoint: null, witnesses };
  const kept = extendPin(pin, V.vkey, 3, new Uint8Array(32).fill(1))!;
  assert.deepEqual(kept.witnesses, witnesses);
  assert.equal(kept.checkpoint!.size, 3);
});

/** A key directory with dave registered active; bundles served cosigned per `mode`. */
function directory(mode: { current: Mode }) {
  const log = new Log();
  const dave = newDevice("d-dave");
  log.add(register(dave, "active"));
  log.checkpoint();
  const asked: string[] = [];
  const api = new Api(ORIGIN, async (input) => {
    asked.push(input.slice(ORIGIN.length));
    const url = new URL(input);
    const bundle = log.bundle("d-dave", log.latest(), Number(url.searchParams.get("old")));
    bundle.checkpoint.note = served(bundle.checkpoint.note, mode.current);
    return new Response(JSON.stringify(bundle), { status: 200 });
  });
  return { log, dave, asked, api };
}

test("the key directory is believed only at a checkpoint the required witness cosigned", async () => {
  const mode: { current: Mode } = { current: "cosigned" };
  const { log, dave, asked, api } = directory(mode);
  const required = WitnessRequirement.of([GBR.vkey()], null, 3600);
  const body = {
    deviceId: dave.deviceId,
    userId: dave.userId,
    deviceKeys: { signingKey: dave.signingKey, encryptionKey: dave.encryptionKey },
  } as never;
  for (const [refusal, message] of [
    ["stripped", `(missing: ${GBR.name})`],
    [
      "forged",
      `the cosignature of witness ${GBR.name} does not verify with its pinned key: forged`,
    ],
    ["old", `(missing: none; too old: ${GBR.name}, cosigned 720`],
    ["stranger", `(missing: ${GBR.name})`],
  ] as [Mode, string][]) {
    mode.current = refusal;
    const pins = memoryPins({ vkey: V.vkey, checkpoint: null, witnesses: required.toPin() });
    const transparency = await DeviceTransparency.fromStore(api, pins, NO_WAIT);
    await assert.rejects(transparency.check(body), (error: unknown) => {
      assert.ok(error instanceof CosignaturesRefused, String(error));
      assert.ok(error instanceof CheckpointRefused);
      assert.match(
        (error as Error).message,
        /^the checkpoint of size \d+ lacks the witnesses' cosignatures this device requires: /,
      );
      assert.ok((error as Error).message.includes(message), (error as Error).message);
      return true;
    });
    assert.equal(pins.pin.checkpoint, null, `${refusal}: nothing kept`);
  }
  mode.current = "cosigned";
  const pins = memoryPins({ vkey: V.vkey, checkpoint: null, witnesses: required.toPin() });
  const transparency = await DeviceTransparency.fromStore(api, pins, NO_WAIT);
  const verified = await transparency.check(body);
  assert.equal(verified.size, log.latest());
  assert.deepEqual(pins.pin.checkpoint, {
    size: log.latest(),
    root: b64uEncode(log.root(log.latest())),
  });
  assert.deepEqual(pins.pin.witnesses, required.toPin());
  assert.match(
    asked.at(-1)!,
    new RegExp(`\\?old=0&witness=${encodeURIComponent(GBR.name)}&min_witnesses=1$`),
  );
  // No requirement: no witness asked for, and a note without cosignatures is believed.
  mode.current = "stripped";
  const plain = memoryPins({ vkey: V.vkey, checkpoint: null });
  await (await DeviceTransparency.fromStore(api, plain, NO_WAIT)).check(body);
  assert.match(asked.at(-1)!, /\?old=0$/);
  // A requirement set since (another tab) is read before the next check.
  const later = await DeviceTransparency.fromStore(api, plain, NO_WAIT);
  plain.pin = { ...plain.pin, witnesses: required.toPin() };
  await assert.rejects(later.check(body), CosignaturesRefused);
});

test("a policy version is proven only at a checkpoint the required witness cosigned", async () => {
  const mode: { current: Mode } = { current: "stripped" };
  const log = new PolicyLogServer();
  log.append({ v: 1, action: "user.create", decision: "allow" });
  log.publish(DOC1);
  const asked: string[] = [];
  const api = new Api(ORIGIN, async (input) => {
    asked.push(input.slice(ORIGIN.length));
    const answer = log.proof(1, Number(new URL(input).searchParams.get("old")))!;
    const checkpoint = answer.checkpoint as { note: string };
    checkpoint.note = served(checkpoint.note, mode.current);
    return new Response(JSON.stringify(answer), { status: 200 });
  });
  const required = WitnessRequirement.of([GBR.vkey(), USA.vkey()], 1);
  const pins = memoryPins({ vkey: V.vkey, checkpoint: null, witnesses: required.toPin() });
  const prover = await PolicyLog.fromStore(api, pins, NO_WAIT);
  await assert.rejects(prover.prove(parsePolicy(DOC1)), (error: unknown) => {
    assert.ok(error instanceof PolicyRefused, String(error));
    assert.equal(
      (error as Error).message,
      "coalition policy version 1 is refused: the checkpoint it is proven at lacks the " +
        "witnesses' cosignatures this device requires: the checkpoint has 0 valid " +
        "cosignatures of the 1 required from the witnesses pinned (missing: " +
        `${GBR.name}, ${USA.name})`,
    );
    return true;
  });
  assert.equal(pins.pin.checkpoint, null);
  assert.match(asked.at(-1)!, /^\/v1\/policy\/1\/proof\?old=0&witness=.*&min_witnesses=1$/);
  mode.current = "cosigned";
  const verified = await prover.prove(parsePolicy(DOC1));
  assert.equal(pins.pin.checkpoint!.size, verified.size);
  assert.deepEqual(pins.pin.witnesses, required.toPin());
});

const FRA = new CosignatureSigner("witness.fra.example/w1", new Uint8Array(32).fill(14));

test("a change that loosens the requirement is named as the SDK names it", () => {
  type Spec = { vkeys: string[]; min: number | null; max_age: number | null };
  const spec = (vkeys: CosignatureSigner[], min: number | null = null, age: number | null = null) =>
    ({ vkeys: vkeys.map((s) => s.vkey()), min, max_age: age }) as Spec;
  const changes: [Spec, Spec | null][] = [
    [spec([GBR]), null],
    [spec([GBR, USA]), spec([GBR])],
    [spec([GBR, USA]), spec([GBR, USA], 1)],
    [spec([GBR, USA]), spec([GBR, USA, FRA], 2)],
    [spec([GBR, USA]), spec([GBR, USA, FRA], 3)],
    [spec([GBR], null, 600), spec([GBR])],
    [spec([GBR], null, 600), spec([GBR], null, 900)],
    [spec([GBR], null, 600), spec([GBR, USA], null, 300)],
    [spec([GBR, USA], 1, 600), spec([FRA], null, 6000)],
  ];
  const make = (s: Spec) => WitnessRequirement.of(s.vkeys, s.min, s.max_age);
  const mine = changes.map(([current, next]) => ({
    loosened: make(current).loosenedBy(next === null ? null : make(next)),
  }));
  assert.deepEqual(mine[0]!.loosened, ["no witness would be required any more"]);
  assert.deepEqual(mine[2]!.loosened, [
    "1 of 2 witnesses would do where 2 of these 2 must cosign now",
  ]);
  assert.deepEqual(mine[4]!.loosened, []);
  assert.deepEqual(mine[7]!.loosened, []);
  if (PYTHON !== undefined) {
    const run = spawnSync(PYTHON, [join(ROOT, "clients", "web", "test", "python_witnesses.py")], {
      cwd: ROOT,
      input: JSON.stringify(changes.map(([current, next]) => ({ current, next }))),
      encoding: "utf-8",
    });
    assert.equal(run.status, 0, run.stderr);
    assert.deepEqual(mine, JSON.parse(run.stdout));
  }
});

test("the user changes the witnesses kept; a loosening only when confirmed", async () => {
  const record = {
    version: 1,
    transparency: {
      vkey: V.vkey,
      checkpoint: { size: 3, root: "x" },
      witnesses: WitnessRequirement.of([GBR.vkey(), USA.vkey()]).toPin(),
    },
  } as unknown as StoredDevice;
  const store: DeviceStore & { record: StoredDevice } = {
    record,
    async load() {
      return structuredClone(this.record);
    },
    async save() {
      throw new Error("not here");
    },
    async update(next) {
      this.record = structuredClone(next);
    },
  };
  // Tighter: a witness added, all three required.
  const tighter = WitnessRequirement.of([GBR.vkey(), USA.vkey(), FRA.vkey()]);
  await requireWitnesses(store, tighter);
  assert.deepEqual(store.record.transparency!.witnesses, tighter.toPin());
  assert.deepEqual(store.record.transparency!.checkpoint, { size: 3, root: "x" });
  // Looser: refused, naming how, and nothing changed; then confirmed.
  const looser = WitnessRequirement.of([GBR.vkey()]);
  await assert.rejects(
    requireWitnesses(store, looser),
    new WitnessError(
      `that loosens the witnesses required here (witness ${FRA.name} would no longer be ` +
        `required; witness ${USA.name} would no longer be required): say so with "Loosen anyway"`,
    ),
  );
  assert.deepEqual(store.record.transparency!.witnesses, tighter.toPin());
  await requireWitnesses(store, looser, { loosen: true });
  assert.deepEqual(store.record.transparency!.witnesses, looser.toPin());
  await assert.rejects(requireWitnesses(store, null), /no witness would be required any more/);
  await requireWitnesses(store, null, { loosen: true });
  assert.ok(!("witnesses" in store.record.transparency!));
  // A device with no audit key pinned yet (enrolled before key transparency) is told to sign in.
  store.record = { version: 1 } as unknown as StoredDevice;
  await assert.rejects(requireWitnesses(store, looser), /sign in once, then require witnesses/);
});
