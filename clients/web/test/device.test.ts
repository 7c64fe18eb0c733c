/**
 * The page's device logic (src/app/device.ts) against a server played by the test: enrolment
 * (the registration proof the server checks, keys sealed and kept, authority keys pinned),
 * sign-in (the login proof, the token in memory) and the device's own certificate, refused
 * unless it verifies against the pinned key for exactly this device.
 */
import assert from "node:assert/strict";
import { test } from "node:test";

import { Api, ApiError } from "../src/app/api.js";
import {
  DeviceError,
  enrol,
  openKeys,
  signIn,
  type DeviceStore,
  type StoredDevice,
} from "../src/app/device.js";
import { b64uDecode, b64uEncode } from "../src/protocol/bytes.js";
import {
  CTX_DEVICE_CERTIFICATE,
  CTX_DEVICE_REGISTRATION,
  CTX_LOGIN,
  signingInput,
} from "../src/protocol/canonical.js";
import { CTX_ENROLMENT_CODE, codeDigest, normaliseCode } from "../src/protocol/enrolment.js";
import {
  CertificateError,
  DeviceKeys,
  DevicePublicKeys,
  authorityKeyId,
  formatUtcTime,
} from "../src/protocol/keys.js";
import {
  ed25519PublicKey,
  ed25519Sign,
  ed25519Verify,
  randomBytes,
} from "../src/protocol/primitives.js";
import { KDF_MINIMUM, SecretError } from "../src/protocol/secrets.js";
import { repoText, vector } from "./vectors.js";

const ORIGIN = "http://127.0.0.1:8600";
const CODE = "ABCD-EFGH-IJKL-MNOP-QRST-UVWX";
const PASSPHRASE = "correct horse battery staple";

test("enrolment codes: protocol/canonical.py's context, protocol/enrolment.py's normal form and digest", () => {
  const python = /^CTX_ENROLMENT_CODE = "([^"]+)"$/m.exec(repoText("protocol", "canonical.py"));
  assert.equal(python?.[1], CTX_ENROLMENT_CODE);
  assert.equal(normaliseCode("abcd-efgh ijkl\tmnop"), "ABCDEFGHIJKLMNOP");
  // protocol.enrolment.code_digest("abcd-efgh ijkl-mnop-qrst-uvwx"), computed in Python.
  assert.equal(
    b64uEncode(codeDigest("abcd-efgh ijkl-mnop-qrst-uvwx")),
    "vzV_8C7EvGls4ABIZo79Z73HTblYt_miRHn_WQu2b8s",
  );
});

function memoryStore(): DeviceStore & { record: StoredDevice | null } {
  return {
    record: null,
    async load() {
      return this.record;
    },
    async save(record) {
      if (this.record !== null) throw new Error("a device is kept already");
      this.record = record;
    },
    async update(record) {
      if (this.record === null) throw new Error("no device is kept");
      this.record = record;
    },
  };
}

type Handler = (body: any, headers: Record<string, string>) => [number, unknown];

/** A fake server: `routes` maps "METHOD /path" to a handler; every call is recorded. */
function fakeApi(routes: Record<string, Handler>) {
  const calls: { route: string; body: any; headers: Record<string, string> }[] = [];
  const api = new Api(ORIGIN, async (input, init) => {
    const route = `${init.method} ${input.slice(ORIGIN.length)}`;
    const body = init.body ? JSON.parse(init.body as string) : undefined;
    const headers = init.headers as Record<string, string>;
    calls.push({ route, body, headers });
    const handler = routes[route];
    const [status, answer] = handler
      ? handler(body, headers)
      : [404, { detail: `no route ${route}` }];
    return new Response(status === 204 ? null : JSON.stringify(answer), { status });
  });
  return { api, calls };
}

const authoritySeed = randomBytes(32);
const authorityKey = ed25519PublicKey(authoritySeed);

// The log's audit key the server serves (GET /v1/audit/key): the key directory vector's.
const VKEY: string = vector("key_directory_v1.json").vkey;

function enrolmentRoutes(answer?: (device: Record<string, string>) => Record<string, unknown>) {
  return {
    "GET /v1/audit/key": () => [200, { vkey: VKEY }],
    "GET /v1/nations": () => [
      200,
      [{ code: "USA", name: "United States", authority_key: b64uEncode(authorityKey) }],
    ],
    "POST /v1/devices": (body: any) => {
      // What server/devices/service.py checks: the proof over the keys, user, code digest
      // and this server's origin.
      const payload = {
        user: body.username,
        nonce: b64uEncode(codeDigest(CODE)),
        server: ORIGIN,
        signing_key: body.signing_key,
        encryption_key: body.encryption_key,
      };
      const valid = ed25519Verify(
        b64uDecode(body.signing_key),
        b64uDecode(body.proof),
        signingInput(CTX_DEVICE_REGISTRATION, payload),
      );
      if (!valid) return [422, { detail: "the registration proof does not verify" }];
      return [201, answer ? answer(body) : deviceRead(body)];
    },
  } as Record<string, Handler>;
}

function deviceRead(body: Record<string, string>, certificate: unknown = null) {
  return {
    id: "device-1",
    user_id: "user-1",
    username: body.username,
    nationality: "USA",
    name: body.name,
    status: certificate ? "active" : "pending",
    signing_key: body.signing_key,
    encryption_key: body.encryption_key,
    fingerprint: body.fingerprint,
    certificate,
  };
}

async function enrolled() {
  const store = memoryStore();
  const { api } = fakeApi(
    enrolmentRoutes((body) => {
      const keys = { signing_key: body.signing_key!, encryption_key: body.encryption_key! };
      return deviceRead({ ...body, fingerprint: fingerprintOf(keys) });
    }),
  );
  const result = await enrol(api, store, {
    username: "alice",
    code: CODE.toLowerCase(),
    name: "browser",
    passphrase: PASSPHRASE,
    kdf: KDF_MINIMUM,
  });
  return { store, result };
}

/** The fingerprint the server computes from the keys it registered. */
function fingerprintOf(keys: { signing_key: string; encryption_key: string }): string {
  return new DevicePublicKeys(
    b64uDecode(keys.signing_key),
    b64uDecode(keys.encryption_key),
  ).fingerprint();
}

test("enrolment: a registration the server accepts, keys sealed and kept, authorities pinned", async () => {
  const { store, result } = await enrolled();
  const record = store.record!;
  assert.equal(record.profile.device_id, "device-1");
  assert.equal(record.profile.server, ORIGIN);
  assert.deepEqual(record.pins, { USA: b64uEncode(authorityKey) });
  assert.deepEqual(result.pinned, { USA: authorityKeyId(authorityKey) });
  assert.equal(result.device.status, "pending");
  // The kept record holds no unsealed secret: only the sealed blob, which opens with the
  // passphrase to the keys whose fingerprint the page shows.
  const keys = await openKeys(record, PASSPHRASE);
  assert.equal(keys.publicKeys.fingerprint(), record.fingerprint);
  const text = JSON.stringify({
    ...record,
    sealedKeys: new TextDecoder().decode(record.sealedKeys),
  });
  assert.ok(!text.includes(b64uEncode(keys.toPrivateBytes())));
  await assert.rejects(openKeys(record, "wrong"), SecretError);
  // One device per browser: a second enrolment is refused before anything is sent.
  const { api, calls } = fakeApi(enrolmentRoutes());
  await assert.rejects(
    enrol(api, store, { username: "alice", code: CODE, name: "b", passphrase: PASSPHRASE }),
    DeviceError,
  );
  assert.equal(calls.length, 0);
});

test("enrolment: a server that registers other keys is refused, and nothing is kept", async () => {
  const store = memoryStore();
  const other = await DeviceKeys.generate();
  const { api } = fakeApi(
    enrolmentRoutes((body) => deviceRead({ ...body, ...other.publicKeys.toJson() })),
  );
  await assert.rejects(
    enrol(api, store, {
      username: "alice",
      code: CODE,
      name: "browser",
      passphrase: PASSPHRASE,
      kdf: KDF_MINIMUM,
    }),
    /other keys/,
  );
  assert.equal(store.record, null);
});

test("enrolment: the server's refusal arrives as its problem detail", async () => {
  const store = memoryStore();
  const { api } = fakeApi({
    ...enrolmentRoutes(),
    "POST /v1/devices": () => [410, { detail: "the enrolment code is unknown, used or expired" }],
  });
  await assert.rejects(
    enrol(api, store, {
      username: "alice",
      code: CODE,
      name: "browser",
      passphrase: PASSPHRASE,
      kdf: KDF_MINIMUM,
    }),
    (error: unknown) =>
      error instanceof ApiError && error.status === 410 && /expired/.test(error.message),
  );
  assert.equal(store.record, null);
});

function certificateFor(
  record: StoredDevice,
  keys: DeviceKeys,
  { seed = authoritySeed, deviceId = record.profile.device_id } = {},
) {
  const now = Date.now();
  const body = {
    version: 1,
    serial: b64uEncode(randomBytes(16)),
    device_id: deviceId,
    user_id: record.profile.user_id,
    username: record.profile.username,
    nation: "USA",
    nationality: "USA",
    clearance: { level: "SECRET", policy: "NATO" },
    ...keys.publicKeys.toJson(),
    issued_at: formatUtcTime(new Date(now - 60_000)),
    expires_at: formatUtcTime(new Date(now + 3_600_000)),
    authority_key_id: authorityKeyId(ed25519PublicKey(seed)),
  };
  const signature = ed25519Sign(seed, signingInput(CTX_DEVICE_CERTIFICATE, body));
  return { body, signature: b64uEncode(signature) };
}

function signInRoutes(record: StoredDevice, certificate: unknown, server = ORIGIN) {
  const challenge = b64uEncode(randomBytes(32));
  return {
    "POST /v1/auth/challenges": () => [
      201,
      { challenge_id: "c-1", challenge, server, expires_at: "2030-01-01T00:00:00Z" },
    ],
    "POST /v1/auth/sessions": (body: any) => {
      const payload = { device_id: record.profile.device_id, challenge, server_origin: ORIGIN };
      const keys = openedKeys.get(record)!;
      const valid = ed25519Verify(
        keys.publicKeys.signingKey,
        b64uDecode(body.signature),
        signingInput(CTX_LOGIN, payload),
      );
      return valid
        ? [201, { token: "the-token", expires_at: "2030-01-01T00:00:00Z", user: {} }]
        : [401, { detail: "login refused: signature does not verify" }];
    },
    [`GET /v1/devices/${record.profile.device_id}`]: () => [200, { certificate }],
    "GET /v1/me": () => [200, { username: "alice", nationality: "USA", clearance: "NATO SECRET" }],
    "DELETE /v1/auth/sessions/current": () => [204, null],
  } as Record<string, Handler>;
}

const openedKeys = new Map<StoredDevice, DeviceKeys>();

test("sign-in: the login proof, the token in memory, the own certificate verified", async () => {
  const { store } = await enrolled();
  const record = store.record!;
  const keys = await openKeys(record, PASSPHRASE);
  openedKeys.set(record, keys);
  const { api, calls } = fakeApi(signInRoutes(record, certificateFor(record, keys)));
  const session = await signIn(api, record, keys, store);
  assert.equal(session.user.clearance, "NATO SECRET");
  assert.equal(session.certificate.deviceId, record.profile.device_id);
  assert.ok(api.signedIn);
  const me = calls.find((call) => call.route === "GET /v1/me")!;
  assert.equal(me.headers.Authorization, "Bearer the-token");
});

test("sign-in: a certificate that does not verify ends the session and is refused", async () => {
  const { store } = await enrolled();
  const record = store.record!;
  const keys = await openKeys(record, PASSPHRASE);
  openedKeys.set(record, keys);
  const other = await DeviceKeys.generate();
  const forged = [
    null, // not certified
    certificateFor(record, keys, { seed: randomBytes(32) }), // another authority's key
    certificateFor(record, keys, { deviceId: "device-2" }), // another device
    certificateFor(record, other), // other keys
    { ...certificateFor(record, keys), signature: b64uEncode(randomBytes(64)) },
  ];
  for (const certificate of forged) {
    const { api, calls } = fakeApi(signInRoutes(record, certificate));
    await assert.rejects(signIn(api, record, keys, store), CertificateError);
    assert.equal(api.signedIn, false);
    assert.ok(calls.some((call) => call.route === "DELETE /v1/auth/sessions/current"));
    assert.ok(!calls.some((call) => call.route === "GET /v1/me"));
  }
});

test("sign-in: a server calling itself by another name gets no proof", async () => {
  const { store } = await enrolled();
  const record = store.record!;
  const keys = await openKeys(record, PASSPHRASE);
  openedKeys.set(record, keys);
  const routes = signInRoutes(record, certificateFor(record, keys), "https://elsewhere.example");
  const { api, calls } = fakeApi(routes);
  await assert.rejects(
    signIn(api, record, keys, store),
    /calls itself https:\/\/elsewhere.example/,
  );
  assert.deepEqual(
    calls.map((call) => call.route),
    ["POST /v1/auth/challenges"],
  );
});

test("enrolment pins the server's audit key; one that is no log's key enrols nothing", async () => {
  const { store, result } = await enrolled();
  assert.equal(result.auditKey, VKEY);
  assert.deepEqual(store.record!.transparency, { vkey: VKEY, checkpoint: null });
  for (const answer of [{ vkey: "example.org+00000000+AAAA" }, {}, "a key"]) {
    const fresh = memoryStore();
    const { api, calls } = fakeApi({
      ...enrolmentRoutes(),
      "GET /v1/audit/key": () => [200, answer],
    });
    await assert.rejects(
      enrol(api, fresh, {
        username: "alice",
        code: CODE,
        name: "browser",
        passphrase: PASSPHRASE,
        kdf: KDF_MINIMUM,
      }),
      /the server's audit key (answer holds no key|is not a log's key)/,
    );
    assert.equal(fresh.record, null);
    assert.ok(!calls.some((call) => call.route === "POST /v1/devices"));
  }
});

test("sign-in: a device enrolled before key transparency pins the audit key on first use, said", async () => {
  const { store } = await enrolled();
  const keys = await openKeys(store.record!, PASSPHRASE);
  // Held already: nothing asked, nothing said.
  openedKeys.set(store.record!, keys);
  let { api, calls } = fakeApi(signInRoutes(store.record!, certificateFor(store.record!, keys)));
  let session = await signIn(api, store.record!, keys, store);
  assert.equal(session.transparencyNote, null);
  assert.equal(session.transparency.vkey, VKEY);
  assert.ok(!calls.some((call) => call.route === "GET /v1/audit/key"));
  // A record from before: no transparency member.
  const { transparency: _, ...before } = store.record!;
  store.record = before as StoredDevice;
  openedKeys.set(store.record, keys);
  ({ api, calls } = fakeApi({
    ...signInRoutes(store.record, certificateFor(store.record, keys)),
    "GET /v1/audit/key": () => [200, { vkey: VKEY }],
  }));
  session = await signIn(api, store.record, keys, store);
  assert.match(session.transparencyNote!, /^Pinned the server's audit key .* on first use/);
  assert.ok(session.transparencyNote!.includes(VKEY));
  assert.deepEqual(store.record!.transparency, { vkey: VKEY, checkpoint: null });
  assert.deepEqual(session.record.transparency, { vkey: VKEY, checkpoint: null });
});
