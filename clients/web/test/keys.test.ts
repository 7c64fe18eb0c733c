import assert from "node:assert/strict";
import { test } from "node:test";

import { b64uEncode, concat, toHex } from "../src/protocol/bytes.js";
import { CTX_DEVICE_CERTIFICATE, signingInput } from "../src/protocol/canonical.js";
import {
  CertificateError,
  DeviceKeys,
  authorityKeyId,
  fingerprint,
  loginPayload,
  signLogin,
  signRegistration,
  verifyCertificate,
} from "../src/protocol/keys.js";
import {
  ed25519PublicKey,
  ed25519Sign,
  isUsableEncryptionKey,
  xwingPublicKey,
} from "../src/protocol/primitives.js";
import { h, sha256Hex, vector } from "./vectors.js";

const V = vector("keys.json");

async function device(): Promise<DeviceKeys> {
  return DeviceKeys.fromPrivateBytes(concat(h(V.device_signing_seed), h(V.device_xwing_seed)));
}

function certificate(keys: DeviceKeys, authoritySeed: Uint8Array) {
  const inputs = V.certificate_inputs;
  const body = {
    version: 1,
    serial: inputs.serial,
    device_id: inputs.device_id,
    user_id: inputs.user_id,
    username: inputs.username,
    nation: inputs.nationality,
    nationality: inputs.nationality,
    clearance: inputs.clearance,
    ...keys.publicKeys.toJson(),
    issued_at: inputs.issued_at,
    expires_at: inputs.expires_at,
    authority_key_id: authorityKeyId(ed25519PublicKey(authoritySeed)),
  };
  const signed = signingInput(CTX_DEVICE_CERTIFICATE, body);
  return { body, signed, signature: b64uEncode(ed25519Sign(authoritySeed, signed)) };
}

test("X-Wing public key from a seed: draft-connolly-cfrg-xwing-kem-08, Appendix C", async () => {
  const publicKey = await xwingPublicKey(h(V.xwing_draft08.seed));
  assert.equal(toHex(publicKey), V.xwing_draft08.public_key);
});

test("device and authority keys, key id and fingerprints", async () => {
  const keys = await device();
  assert.equal(toHex(keys.publicKeys.signingKey), V.device_signing_public_key);
  assert.equal(sha256Hex(keys.publicKeys.encryptionKey), V.device_encryption_public_key_sha256);
  assert.equal(keys.publicKeys.fingerprint(), V.device_fingerprint);
  const authority = ed25519PublicKey(h(V.authority_seed));
  assert.equal(toHex(authority), V.authority_public_key);
  assert.equal(authorityKeyId(authority), V.authority_key_id);
  assert.equal(fingerprint(authority), V.authority_fingerprint);
  assert.deepEqual(
    (await DeviceKeys.fromPrivateBytes(keys.toPrivateBytes())).publicKeys,
    keys.publicKeys,
  );
});

test("registration and login signatures", async () => {
  const keys = await device();
  const { user, nonce, server, signature } = V.registration;
  assert.equal(toHex(signRegistration(keys, { user, nonce, server })), signature);
  const login = loginPayload(V.login);
  assert.equal(toHex(signLogin(keys, login)), V.login.signature);
});

test("a certificate issued by the vector's authority verifies against the pinned key", async () => {
  const keys = await device();
  const { body, signed, signature } = certificate(keys, h(V.authority_seed));
  assert.equal(sha256Hex(signed), V.certificate_signing_input_sha256);
  assert.equal(signature, b64uEncode(h(V.certificate_signature)));
  const pinned = new Map([["GBR", h(V.authority_public_key)]]);
  const checked = verifyCertificate({ body, signature }, pinned, {
    now: new Date("2026-06-01T12:00:00Z"),
  });
  assert.equal(checked.username, "j.smith");
  assert.equal(checked.nationality, "GBR");
  assert.deepEqual(checked.deviceKeys, keys.publicKeys);
});

test("a certificate that does not verify is refused, saying why", async () => {
  const keys = await device();
  const now = new Date("2026-06-01T12:00:00Z");
  const pinned = new Map([["GBR", h(V.authority_public_key)]]);
  const good = certificate(keys, h(V.authority_seed));
  const cases: [unknown, Map<string, Uint8Array>, Date, RegExp][] = [
    // Another nation's key, or a forger's, is not the pinned one.
    [
      good,
      new Map([["FRA", h(V.authority_public_key)]]),
      now,
      /no enrolment authority key is pinned for nation GBR/,
    ],
    [certificate(keys, new Uint8Array(32).fill(7)), pinned, now, /names authority key/],
    // The body changed after signing.
    [
      { ...good, body: { ...good.body, nationality: "GBR", username: "m.jones" } },
      pinned,
      now,
      /signature is not valid/,
    ],
    [
      { ...good, body: { ...good.body, nation: "FRA", nationality: "FRA" } },
      pinned,
      now,
      /no enrolment authority key is pinned for nation FRA/,
    ],
    [
      { ...good, body: { ...good.body, nationality: "FRA" } },
      pinned,
      now,
      /vouches only for its own people/,
    ],
    [{ ...good, body: { ...good.body, extra: 1 } }, pinned, now, /unknown fields extra/],
    [{ ...good, body: { ...good.body, username: "a\u202eb" } }, pinned, now, /control or format/],
    [good, pinned, new Date("2027-01-01T00:00:00Z"), /expired at 2027-01-01T00:00:00Z/],
    [good, pinned, new Date("2025-12-31T23:59:59Z"), /not valid before/],
  ];
  for (const [value, keysPinned, when, reason] of cases) {
    assert.throws(
      () =>
        verifyCertificate(
          { body: (value as typeof good).body, signature: (value as typeof good).signature },
          keysPinned,
          { now: when },
        ),
      (error: unknown) => error instanceof CertificateError && reason.test(error.message),
      String(reason),
    );
  }
});

test("an encryption key that pyca/cryptography would refuse is refused here too", async () => {
  const good = (await device()).publicKeys.encryptionKey;
  assert.ok(isUsableEncryptionKey(good));
  // An ML-KEM-768 coefficient of 4095, above q = 3329: FIPS 203's encapsulation key check.
  const overModulus = Uint8Array.from(good);
  overModulus[0] = 0xff;
  overModulus[1]! |= 0x0f;
  assert.equal(isUsableEncryptionKey(overModulus), false);
  // An X25519 part of low order (here the point 0): every shared secret would be zero.
  const lowOrder = Uint8Array.from(good);
  lowOrder.fill(0, 1184);
  assert.equal(isUsableEncryptionKey(lowOrder), false);
  assert.equal(isUsableEncryptionKey(good.subarray(1)), false);
});
