import assert from "node:assert/strict";
import { test } from "node:test";

import { fromUtf8, utf8 } from "../src/protocol/bytes.js";
import { canonicalJson } from "../src/protocol/canonical.js";
import { KDF_MINIMUM, SecretError, openSecret, sealSecret } from "../src/protocol/secrets.js";

const PASSPHRASE = "correct horse battery staple";
const SECRET = Uint8Array.from({ length: 64 }, (_, i) => i);
const DAMAGED = /^wrong passphrase or damaged key file$/;

const seal = (passphrase = PASSPHRASE, purpose = "device-keys") =>
  sealSecret(passphrase, SECRET, { purpose, params: KDF_MINIMUM });

function edit(blob: Uint8Array, change: (document: Record<string, any>) => void): Uint8Array {
  const document = JSON.parse(fromUtf8(blob));
  change(document);
  return canonicalJson(document);
}

function refused(message: RegExp) {
  return (error: unknown) => error instanceof SecretError && message.test(error.message);
}

test("a sealed secret opens with its passphrase and purpose, and records its format", async () => {
  const blob = await seal();
  assert.deepEqual(await openSecret(PASSPHRASE, blob, { purpose: "device-keys" }), SECRET);
  const document = JSON.parse(fromUtf8(blob));
  assert.deepEqual(Object.keys(document), [
    "ciphertext",
    "kdf",
    "nonce",
    "purpose",
    "type",
    "version",
  ]);
  assert.equal(document.type, "attache-sealed-secret");
  assert.deepEqual(
    { ...document.kdf, salt: undefined },
    { algorithm: "argon2id", iterations: 2, lanes: 1, memory_kib: 19456, salt: undefined },
  );
});

test("a wrong passphrase, another purpose or a change to the blob is refused", async () => {
  const blob = await seal();
  await assert.rejects(openSecret("wrong", blob, { purpose: "device-keys" }), refused(DAMAGED));
  await assert.rejects(
    openSecret(PASSPHRASE, blob, { purpose: "authority-key" }),
    refused(/holds a "device-keys" secret, not "authority-key"/),
  );
  const changes: ((document: Record<string, any>) => void)[] = [
    (d) => (d.nonce = d.kdf.salt.slice(0, 16)),
    (d) => (d.kdf.iterations = 3),
    (d) => (d.ciphertext = d.ciphertext.slice(0, -4)),
    (d) => (d.extra = 1),
    (d) => delete d.nonce,
  ];
  for (const change of changes) {
    await assert.rejects(
      openSecret(PASSPHRASE, edit(blob, change), { purpose: "device-keys" }),
      refused(DAMAGED),
    );
  }
  // Duplicate keys: JSON.parse would keep the last; a sealed secret is canonical JSON.
  const text = fromUtf8(blob).replace('"purpose":', '"purpose":"x","purpose":');
  await assert.rejects(
    openSecret(PASSPHRASE, utf8(text), { purpose: "device-keys" }),
    refused(DAMAGED),
  );
  await assert.rejects(
    openSecret(
      PASSPHRASE,
      edit(blob, (d) => (d.version = 2)),
      { purpose: "device-keys" },
    ),
    refused(/unsupported key file version 2/),
  );
});

test("KDF parameters outside the accepted range are refused before any work", async () => {
  const blob = await seal();
  // What deriving the key costs here, to tell a refusal that derived none from one that did.
  let started = performance.now();
  await openSecret(PASSPHRASE, blob, { purpose: "device-keys" });
  const derivation = performance.now() - started;
  for (const [name, value] of [
    ["memory_kib", 1024],
    ["memory_kib", 4 * 1024 * 1024],
    ["iterations", 1],
    ["lanes", 64],
    ["lanes", true],
  ] as const) {
    started = performance.now();
    await assert.rejects(
      openSecret(
        PASSPHRASE,
        edit(blob, (d) => (d.kdf[name] = value)),
        { purpose: "device-keys" },
      ),
      refused(new RegExp(`^Argon2id ${name}=\\S+ is outside the accepted range`)),
    );
    assert.ok(performance.now() - started < derivation / 2, "refused without deriving a key");
  }
});

test("the passphrase is normalised to NFC", async () => {
  const blob = await seal("caf\u00e9 cr\u00e8me");
  const opened = await openSecret("cafe\u0301 cre\u0300me", blob, { purpose: "device-keys" });
  assert.deepEqual(opened, SECRET);
});
