/**
 * The page holds the server to the coalition policy (src/app/coalition.ts, device.ts), as
 * tests/clients/test_coalition_pinning.py holds the SDK: a server played by the test pins a
 * founding policy at enrolment, then misbehaves at sign-in (a nation ZZZ added without the
 * threshold, a group widened, an old version replayed, a fork, the policy withdrawn). Each is
 * refused with a message naming what was wrong, the session ends before anything else is asked
 * for, nothing is pinned, and no key is sealed: a server-made nation's device never verifies.
 */
import assert from "node:assert/strict";
import { test } from "node:test";

import { Api } from "../src/app/api.js";
import {
  NO_POLICY,
  PolicyRefused,
  parseFoundingDigest,
  policyAuthorities,
} from "../src/app/coalition.js";
import { enrol, openKeys, signIn, type DeviceStore, type StoredDevice } from "../src/app/device.js";
import { checkRoster } from "../src/app/send.js";
import { WitnessRequirement } from "../src/app/witnesses.js";
import { b64uDecode, b64uEncode } from "../src/protocol/bytes.js";
import { CTX_COALITION_POLICY_SIGNATURE, parsePolicy } from "../src/protocol/coalition.js";
import {
  CTX_DEVICE_REGISTRATION,
  CTX_LOGIN,
  signingInput,
  withContext,
} from "../src/protocol/canonical.js";
import { CosignatureSigner } from "../src/protocol/cosignature.js";
import { codeDigest } from "../src/protocol/enrolment.js";
import {
  CertificateError,
  DeviceKeys,
  DevicePublicKeys,
  authorityKeyId,
} from "../src/protocol/keys.js";
import { ed25519Sign, ed25519Verify, randomBytes } from "../src/protocol/primitives.js";
import { KDF_MINIMUM } from "../src/protocol/secrets.js";
import type { JsonObject } from "../src/protocol/canonical.js";
import { Authorities } from "./authorities.js";
import { PolicyLogServer, publicationLeaf } from "./policylog.js";
import { vector } from "./vectors.js";

const VKEY: string = vector("key_directory_v1.json").vkey;

const ORIGIN = "http://127.0.0.1:8600";
const CODE = "ABCD-EFGH-IJKL-MNOP-QRST-UVWX";
const PASSPHRASE = "correct horse battery staple";
const NAMES: Record<string, string> = {
  USA: "United States",
  GBR: "United Kingdom",
  FRA: "France",
  DEU: "Germany",
  ZZZ: "Server-made",
};
// The vector's catalog: NATO is FRA, GBR, USA; the policy adds the group DUO.
const CATALOG: string = vector("coalition_policy_v1.json").versions[0].signed.policy.catalog;

const authorities = new Authorities(["USA", "GBR", "FRA", "DEU", "ZZZ"]);

interface Signed {
  policy: Record<string, unknown>;
  signatures: { nation: string; key_id: string; signature: string }[];
}

/** A policy version (its nations' keys those of `authorities`), signed by `signers`. */
function version(
  previous: Signed | null,
  {
    nations = ["FRA", "GBR", "USA"],
    groups = { DUO: ["GBR", "USA"] } as Record<string, string[]>,
    threshold = 2,
    signers = nations,
    coalition = "test-coalition",
  }: {
    nations?: string[];
    groups?: Record<string, string[]>;
    threshold?: number;
    signers?: string[];
    coalition?: string;
  } = {},
): Signed {
  const before = previous === null ? null : parsePolicy(previous.policy);
  const document = {
    version: 1,
    coalition,
    policy_version: before === null ? 1 : before.policyVersion + 1,
    previous: before === null ? null : before.digestB64u,
    threshold,
    nations: Object.fromEntries(
      nations.map((code) => {
        const key = authorities.pins.get(code)!;
        return [
          code,
          { name: NAMES[code]!, authority_keys: { [authorityKeyId(key)]: b64uEncode(key) } },
        ];
      }),
    ),
    groups,
    catalog: CATALOG,
  };
  const policy = parsePolicy(document);
  const message = withContext(CTX_COALITION_POLICY_SIGNATURE, policy.digest);
  return {
    policy: document,
    signatures: signers.map((nation) => ({
      nation,
      key_id: authorityKeyId(authorities.pins.get(nation)!),
      signature: b64uEncode(ed25519Sign(authorities.seeds[nation]!, message)),
    })),
  };
}

const V1 = version(null);
const V2 = version(V1, { nations: ["DEU", "FRA", "GBR", "USA"], signers: ["GBR", "USA"] });

function memoryStore(): DeviceStore & { record: StoredDevice | null; updates: number } {
  return {
    record: null,
    updates: 0,
    async load() {
      return this.record;
    },
    async save(record) {
      if (this.record !== null) throw new Error("a device is kept already");
      this.record = record;
    },
    async update(record) {
      this.updates += 1;
      this.record = record;
    },
  };
}

type Answer = [number, unknown];

/**
 * A server: `policies` is what it publishes (the latest is the last; `GET /v1/policy/N` finds
 * version N among them, or `versions[N]` when given), and it enrols and signs in one device.
 */
function server(policies: Signed[], versions: Record<number, Signed> = {}) {
  const calls: string[] = [];
  // The audit log: an honest server logs each version it publishes (PROTOCOL.md §18.6),
  // except those `unlogged` names (a server that shows a version it never logged).
  const log = new PolicyLogServer();
  const unlogged = new Set<number>();
  const logged = new Set<string>();
  const logAll = (list: Signed[]) => {
    for (const signed of list) {
      const policy = parsePolicy(signed.policy);
      if (logged.has(policy.digestB64u) || unlogged.has(policy.policyVersion)) continue;
      logged.add(policy.digestB64u);
      log.append({ v: 1, action: "message.send", decision: "allow", n: log.leaves.length });
      log.publish(signed.policy as JsonObject);
    }
  };
  logAll([...policies, ...Object.values(versions)]);
  let deviceKeys: DevicePublicKeys | null = null;
  const challenge = b64uEncode(randomBytes(32));
  const serve = (route: string, body: any): Answer => {
    if (route === "GET /v1/policy") {
      const latest = policies.at(-1);
      return latest ? [200, latest] : [404, { detail: "no coalition policy is published" }];
    }
    const proof = /^GET \/v1\/policy\/(\d+)\/proof\?old=(\d+)$/.exec(route);
    if (proof) {
      const answer = log.proof(Number(proof[1]), Number(proof[2]));
      return answer ? [200, answer] : [404, { detail: "the log holds no such publication" }];
    }
    const asked = /^GET \/v1\/policy\/(\d+)$/.exec(route);
    if (asked) {
      const n = Number(asked[1]);
      const found = versions[n] ?? policies.find((p) => (p.policy.policy_version as number) === n);
      return found ? [200, found] : [404, { detail: "no such version" }];
    }
    switch (route) {
      case "GET /v1/nations":
        // The server's own directory: a nation ZZZ with its own key, which no policy lists.
        return [
          200,
          [...authorities.pins].map(([code, key]) => ({
            code,
            name: NAMES[code],
            authority_key: b64uEncode(key),
          })),
        ];
      case "POST /v1/devices": {
        deviceKeys = new DevicePublicKeys(
          b64uDecode(body.signing_key),
          b64uDecode(body.encryption_key),
        );
        const valid = ed25519Verify(
          deviceKeys.signingKey,
          b64uDecode(body.proof),
          signingInput(CTX_DEVICE_REGISTRATION, {
            user: body.username,
            nonce: b64uEncode(codeDigest(CODE)),
            server: ORIGIN,
            signing_key: body.signing_key,
            encryption_key: body.encryption_key,
          }),
        );
        if (!valid) return [422, { detail: "the registration proof does not verify" }];
        return [201, deviceRead(body.username, deviceKeys)];
      }
      case "POST /v1/auth/challenges":
        return [201, { challenge_id: "c-1", challenge, server: ORIGIN, expires_at: "x" }];
      case "POST /v1/auth/sessions": {
        const valid = ed25519Verify(
          deviceKeys!.signingKey,
          b64uDecode(body.signature),
          signingInput(CTX_LOGIN, {
            device_id: "device-alice",
            challenge,
            server_origin: ORIGIN,
          }),
        );
        return valid
          ? [201, { token: "t", expires_at: "2030-01-01T00:00:00Z", user: {} }]
          : [401, { detail: "login refused" }];
      }
      case "GET /v1/devices/device-alice":
        return [200, deviceRead("alice", deviceKeys!)];
      case "GET /v1/me":
        return [200, { username: "alice", nationality: "USA", roles: [] }];
      case "DELETE /v1/auth/sessions/current":
        return [204, null];
      case "GET /v1/audit/key":
        return [200, { vkey: VKEY }];
    }
    return [404, { detail: `no route ${route}` }];
  };
  let certificate: unknown = null;
  function deviceRead(username: string, keys: DevicePublicKeys) {
    return {
      id: "device-alice",
      user_id: "alice",
      username,
      nationality: "USA",
      name: "browser",
      status: certificate ? "active" : "pending",
      ...keys.toJson(),
      fingerprint: keys.fingerprint(),
      certificate,
    };
  }
  const api = new Api(ORIGIN, async (input, init) => {
    const route = `${init.method} ${input.slice(ORIGIN.length)}`;
    calls.push(route);
    const [status, answer] = serve(route, init.body ? JSON.parse(init.body as string) : null);
    return new Response(status === 204 ? null : JSON.stringify(answer), { status });
  });
  return {
    api,
    calls,
    log,
    publish(...next: Signed[]) {
      policies = next;
      logAll(next);
    },
    /** Publish `next` without logging the versions `hidden` names. */
    publishUnlogged(hidden: number[], ...next: Signed[]) {
      for (const n of hidden) unlogged.add(n);
      policies = next;
      logAll(next);
    },
    certify(keys: DeviceKeys) {
      certificate = authorities.certificate(keys, "alice", "USA");
    },
    certifyWith(made: unknown) {
      certificate = made;
    },
  };
}

/** A device enrolled against `policies`, certified by USA; its store and its keys. */
async function enrolled(policies: Signed[], played = server(policies)) {
  const store = memoryStore();
  const result = await enrol(played.api, store, {
    username: "alice",
    code: CODE,
    name: "browser",
    passphrase: PASSPHRASE,
    kdf: KDF_MINIMUM,
  });
  const keys = await openKeys(store.record!, PASSPHRASE);
  played.certify(keys);
  return { store, played, result, keys };
}

test("enrolment pins the founding policy, verified, and takes no keys from the server", async () => {
  const { store, played, result } = await enrolled([V1, V2]);
  const record = store.record!;
  assert.equal(record.policy!.founding, parsePolicy(V1.policy).digestB64u);
  assert.equal((record.policy!.latest.policy as any).policy_version, 2);
  assert.deepEqual(record.pins, {});
  assert.ok(!played.calls.includes("GET /v1/nations"));
  assert.deepEqual(Object.keys(result.pinned).sort(), ["DEU", "FRA", "GBR", "USA"]);
  assert.ok(played.calls.includes("GET /v1/policy/1"));
});

test("enrolment keeps the witnesses required, and no checkpoint proven without them", async () => {
  const witness = new CosignatureSigner("witness.usa.example/w1", new Uint8Array(32).fill(21));
  const witnesses = WitnessRequirement.of([witness.vkey()], null, 600);
  const store = memoryStore();
  const played = server([V1, V2]);
  const result = await enrol(played.api, store, {
    username: "alice",
    code: CODE,
    name: "browser",
    passphrase: PASSPHRASE,
    kdf: KDF_MINIMUM,
    witnesses,
  });
  assert.equal(result.witnesses, witnesses);
  // The policy versions were proven (as the SDK, without the witnesses: their requirement is
  // kept only now), but the checkpoint they were proven at is not kept: the next one must be
  // one the witnesses cosigned.
  assert.ok(played.calls.some((call) => /^GET \/v1\/policy\/2\/proof\?old=\d+$/.test(call)));
  assert.deepEqual(store.record!.transparency, {
    vkey: VKEY,
    checkpoint: null,
    witnesses: { keys: [witness.vkey()], min: null, max_age: 600 },
  });
  // Without witnesses the checkpoint is kept, as before.
  const { store: plain } = await enrolled([V1, V2]);
  assert.ok(!("witnesses" in plain.record!.transparency!));
  assert.ok(plain.record!.transparency!.checkpoint !== null);
});

test("enrolment: a founding digest given and not matched, or a forged founding, is refused before any key is made", async () => {
  const wrong = randomBytes(32);
  for (const [policies, expect, reason] of [
    [[V1], wrong, /has digest .* not .* as you were given/],
    [[], wrong, /the server publishes no coalition policy; refusing to enrol/],
    [[version(null, { signers: ["GBR", "USA"] })], null, /missing: FRA/],
    [[version(null), version(V1, { signers: ["USA"] })], null, /its threshold is 2/],
  ] as [Signed[], Uint8Array | null, RegExp][]) {
    const store = memoryStore();
    const played = server(policies);
    await assert.rejects(
      enrol(played.api, store, {
        username: "alice",
        code: CODE,
        name: "browser",
        passphrase: PASSPHRASE,
        kdf: KDF_MINIMUM,
        expectFounding: expect,
      }),
      (error: unknown) => error instanceof PolicyRefused && reason.test(error.message),
    );
    assert.equal(store.record, null);
    assert.ok(!played.calls.includes("POST /v1/devices"));
  }
});

/** Sign in against what the server publishes now; the calls it saw. */
async function signInAgainst(
  store: ReturnType<typeof memoryStore>,
  keys: DeviceKeys,
  played: ReturnType<typeof server>,
) {
  played.calls.length = 0;
  return signIn(played.api, store.record!, keys, store);
}

test("sign-in follows a later version only through successors signed by the threshold", async () => {
  const { store, played, keys } = await enrolled([V1]);
  played.publish(V1, V2);
  const session = await signInAgainst(store, keys, played);
  assert.equal(session.policy!.policy.policyVersion, 2);
  assert.equal(session.policy!.previousVersion, 1);
  assert.match(session.policyNote!, /moved from version 1 to version 2/);
  assert.equal((store.record!.policy!.latest.policy as any).policy_version, 2);
  // Two writes: the checkpoint version 2's proof moved on to, and the policy pin.
  assert.equal(store.updates, 2);
  // The catalog is the policy's: its group DUO, the catalog's NATO, and no ZZZ anywhere.
  const catalog = session.policy!.policy.catalog;
  assert.deepEqual([...catalog.groups.get("DUO")!], ["GBR", "USA"]);
  assert.ok(catalog.nations.has("DEU") && !catalog.nations.has("ZZZ"));
  // Unchanged the next time: nothing new is pinned.
  const again = await signInAgainst(store, keys, played);
  assert.equal(again.policyNote, null);
  assert.equal(store.updates, 2);
});

const ZZZ_ADDED = version(V1, {
  nations: ["FRA", "GBR", "USA", "ZZZ"],
  groups: { DUO: ["GBR", "USA", "ZZZ"] },
  signers: ["USA"],
});

const MALICE: [string, (played: ReturnType<typeof server>) => void, RegExp][] = [
  [
    "a nation ZZZ added and put in a group, signed by USA alone",
    (played) => played.publish(V1, ZZZ_ADDED),
    /version 2 does not follow version 1 held here: .*signed by 1 nation\(s\) of version 1 \(USA\); its threshold is 2/,
  ],
  [
    "a nation ZZZ that signs its own admission",
    (played) =>
      played.publish(
        V1,
        version(V1, { nations: ["FRA", "GBR", "USA", "ZZZ"], signers: ["USA", "ZZZ"] }),
      ),
    /signature by ZZZ, which is not a nation of version 1/,
  ],
  [
    "a group widened without the threshold",
    (played) =>
      played.publish(V1, version(V1, { groups: { DUO: ["FRA", "GBR", "USA"] }, signers: ["GBR"] })),
    /signed by 1 nation\(s\) of version 1 \(GBR\); its threshold is 2/,
  ],
  [
    "a group widened after the nations signed",
    (played) => {
      const widened = structuredClone(V2);
      (widened.policy.groups as any).DUO = ["DEU", "GBR", "USA"];
      played.publish(V1, widened);
    },
    /does not verify: forged/,
  ],
  [
    "the latest version served without the one before it",
    (played) => played.publish(version(V2, { nations: ["DEU", "FRA", "GBR", "USA"] })),
    /serves coalition policy version 3 but not version 2/,
  ],
  ["the policy withdrawn", (played) => played.publish(), /the server publishes none: refusing/],
];

test("sign-in refuses a successor the nations did not sign, and nothing changes", async () => {
  for (const [what, misbehave, reason] of MALICE) {
    const { store, played, keys } = await enrolled([V1]);
    const before = structuredClone(store.record);
    misbehave(played);
    await assert.rejects(
      signInAgainst(store, keys, played),
      (error: unknown) => error instanceof PolicyRefused && reason.test(error.message),
      what,
    );
    assert.deepEqual(store.record, before, what);
    assert.equal(store.updates, 0, what);
    assert.equal(played.api.signedIn, false, what);
    assert.ok(played.calls.includes("DELETE /v1/auth/sessions/current"), what);
    assert.ok(!played.calls.includes("GET /v1/me"), what);
    assert.ok(!played.calls.includes("GET /v1/catalog"), what);
  }
});

test("sign-in refuses an old version replayed and a fork of the version held", async () => {
  const { store, played, keys } = await enrolled([V1, V2]);
  played.publish(V1);
  await assert.rejects(
    signInAgainst(store, keys, played),
    /version 1, older than version 2 held here: a replayed or rolled-back policy is refused/,
  );
  // Another version 2, validly signed by the threshold of version 1: still not the one held.
  const fork = version(V1, {
    nations: ["FRA", "GBR", "USA"],
    threshold: 3,
    signers: ["FRA", "GBR"],
  });
  played.publish(V1, fork);
  await assert.rejects(
    signInAgainst(store, keys, played),
    (error: unknown) => error instanceof PolicyRefused && /a fork is refused/.test(error.message),
  );
  assert.equal((store.record!.policy!.latest.policy as any).threshold, 2);
  assert.equal(store.updates, 0);
});

test("with a policy held, a server-made nation's device is excluded: nothing is sealed to it", async () => {
  const { store, played, keys } = await enrolled([V1]);
  const session = await signInAgainst(store, keys, played);
  const zzz = await DeviceKeys.generate();
  const usa = await DeviceKeys.generate();
  const entry = (user: string, nation: string, device: DeviceKeys) => ({
    device_id: `device-${user}`,
    user_id: user,
    username: user,
    nationality: nation,
    ...device.publicKeys.toJson(),
    certificate: authorities.certificate(device, user, nation),
  });
  const { verified, excluded } = checkRoster(
    [entry("zed", "ZZZ", zzz), entry("bob", "USA", usa)],
    session.authorities,
    new Date(),
  );
  assert.deepEqual(
    verified.map((v) => v.deviceId),
    ["device-bob"],
  );
  assert.equal(excluded.length, 1);
  assert.match(
    excluded[0]!.reason,
    /nation ZZZ, which coalition policy version 1 does not list: the coalition has not admitted it/,
  );
  // A key the policy does not list for a nation it lists is refused too.
  const other = new Authorities(["USA"]);
  const rogue = { ...entry("eve", "USA", usa), certificate: other.certificate(usa, "eve", "USA") };
  const checked = checkRoster([rogue], policyAuthorities(session.policy!.policy), new Date());
  assert.match(
    checked.excluded[0]!.reason,
    /which coalition policy version 1 does not list for USA/,
  );
});

test("without a policy the server's nations are trusted on first use, with a warning; a policy published later is pinned on first use", async () => {
  const { store, played, keys } = await enrolled([]);
  assert.equal(store.record!.policy, null);
  assert.ok(played.calls.includes("GET /v1/nations"));
  const session = await signInAgainst(store, keys, played);
  assert.equal(session.policy, null);
  assert.equal(session.policyNote, NO_POLICY);
  played.publish(V1);
  const pinned = await signInAgainst(store, keys, played);
  assert.equal(pinned.policy!.pinnedNow, true);
  assert.match(pinned.policyNote!, /Pinned coalition policy version 1 .* on first use/);
  assert.equal(store.record!.policy!.founding, parsePolicy(V1.policy).digestB64u);
  // From then on it is held to: withdrawn, it is refused.
  played.publish();
  await assert.rejects(signInAgainst(store, keys, played), PolicyRefused);
});

test("the device's own certificate must be under a key the policy lists for its nation", async () => {
  const { store, played, keys } = await enrolled([V1]);
  // A USA certificate the server made with a key of its own: the policy lists another.
  const rogue = new Authorities(["USA"]);
  played.certifyWith(rogue.certificate(keys, "alice", "USA"));
  await assert.rejects(
    signInAgainst(store, keys, played),
    (error: unknown) =>
      error instanceof CertificateError &&
      /which coalition policy version 1 does not list for USA/.test(error.message),
  );
  assert.equal(played.api.signedIn, false);
  assert.ok(!played.calls.includes("GET /v1/me"));
});

test("a founding digest as typed: spaces ignored, empty for none, anything else refused", () => {
  const digest = parsePolicy(V1.policy).digestB64u;
  assert.equal(
    b64uEncode(parseFoundingDigest(` ${digest.slice(0, 20)} ${digest.slice(20)}\n`)!),
    digest,
  );
  assert.equal(parseFoundingDigest("   "), null);
  for (const text of [digest.slice(1), `${digest}A`, digest.replace(/.$/, "+")]) {
    assert.throws(() => parseFoundingDigest(text), PolicyRefused);
  }
});

// ---------------------------------------------------------------------------------------------
// Policy versions proven in the audit log (PROTOCOL.md §18.5, §18.6)

test("enrolment proves every version from the founding one in the audit log and keeps its checkpoint", async () => {
  const { store, played } = await enrolled([V1, V2]);
  const record = store.record!;
  assert.ok(played.calls.includes("GET /v1/policy/1/proof?old=0"));
  assert.ok(played.calls.some((call) => /^GET \/v1\/policy\/2\/proof\?old=\d+$/.test(call)));
  assert.deepEqual(record.policy!.logged, {
    version: 2,
    digest: parsePolicy(V2.policy).digestB64u,
    index: 3,
    size: 4,
  });
  assert.equal(record.transparency!.checkpoint!.size, played.log.leaves.length);
  // The audit key was asked for before any policy proof, and nothing was registered before.
  const key = played.calls.indexOf("GET /v1/audit/key");
  const first = played.calls.indexOf("GET /v1/policy/1/proof?old=0");
  assert.ok(key >= 0 && key < first && first < played.calls.indexOf("POST /v1/devices"));
});

test("enrolment against a version the log does not hold is refused naming it, nothing registered", async () => {
  const played = server([]);
  played.publishUnlogged([2], V1, V2);
  const store = memoryStore();
  await assert.rejects(
    enrolled([V1, V2], played),
    (error: unknown) =>
      error instanceof PolicyRefused &&
      /^coalition policy version 2 is not in the audit log \(the server says: the log holds no such publication\); refusing it$/.test(
        error.message,
      ),
  );
  assert.equal(store.record, null);
  assert.ok(!played.calls.includes("POST /v1/devices"));
});

test("sign-in follows a version only once the log proves it; the checkpoint kept moves on", async () => {
  const { store, played, keys } = await enrolled([V1]);
  const kept = store.record!.transparency!.checkpoint!;
  played.publish(V1, V2);
  const session = await signInAgainst(store, keys, played);
  assert.equal(session.policy!.policy.policyVersion, 2);
  assert.match(session.policyNote!, /each version's publication proven in the audit log/);
  assert.ok(played.calls.includes(`GET /v1/policy/2/proof?old=${kept.size}`));
  assert.equal(store.record!.policy!.logged!.version, 2);
  assert.equal(store.record!.transparency!.checkpoint!.size, played.log.leaves.length);
  assert.ok(store.record!.transparency!.checkpoint!.size > kept.size);
});

test("sign-in refuses a version the log does not hold, or holds with another digest, and nothing changes", async () => {
  const cases: [string, (played: ReturnType<typeof server>) => void, RegExp][] = [
    [
      "a version never logged",
      (played) => played.publishUnlogged([2], V1, V2),
      /^coalition policy version 2 is not in the audit log \(the server says: .*\); refusing it$/,
    ],
    [
      "a version logged with another digest",
      (played) => {
        played.publishUnlogged([2], V1, V2);
        const other = version(V1, { threshold: 3 });
        played.log.append(publicationLeaf(other.policy as JsonObject));
      },
      /^coalition policy version 2 is refused: the audit log's publication at leaf \d+ is not coalition policy version 2 as served: its digest differ/,
    ],
    [
      "version 1's publication shown as version 2's",
      (played) => {
        played.publishUnlogged([2], V1, V2);
        played.log.at.set(2, played.log.find(1)!);
      },
      /^coalition policy version 2 is refused: .* its policy_version, digest, previous differ/,
    ],
  ];
  for (const [what, misbehave, reason] of cases) {
    const { store, played, keys } = await enrolled([V1]);
    const before = structuredClone(store.record);
    misbehave(played);
    await assert.rejects(
      signInAgainst(store, keys, played),
      (error: unknown) => error instanceof PolicyRefused && reason.test(error.message),
      what,
    );
    assert.deepEqual(store.record, before, what);
    assert.equal(played.api.signedIn, false, what);
    assert.ok(!played.calls.includes("GET /v1/me"), what);
  }
});

test("a device enrolled before the page checked the log keeps its version and is warned until the log proves it", async () => {
  const { store, played, keys } = await enrolled([V1]);
  // As an older page enrolled it: the policy pinned, no version recorded as proven.
  const { founding, latest } = store.record!.policy!;
  store.record = { ...store.record!, policy: { founding, latest } };
  // And a log that does not prove version 1 (the server shows a message leaf as it).
  played.log.at.set(1, 0);
  const session = await signInAgainst(store, keys, played);
  assert.equal(session.policy!.policy.policyVersion, 1);
  assert.match(
    session.policyNote!,
    /^Warning: coalition policy version 1 held here was pinned before this page checked .*\(coalition policy version 1 is refused: the leaf 0 shown as .* is not one: .*\)\. It stays held/,
  );
  assert.equal(store.record!.policy!.logged, undefined);
  // Once the log proves it, it is recorded as proven and nothing is said.
  played.log.at.delete(1);
  const proven = await signInAgainst(store, keys, played);
  assert.equal(proven.policyNote, null);
  assert.equal(store.record!.policy!.logged!.version, 1);
});
