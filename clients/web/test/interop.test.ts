/**
 * The other direction from the vectors: what the page seals (fresh HPKE envelopes, a message,
 * a document and a passphrase-sealed secret, under fresh keys, salts and nonces) opens with the
 * Python protocol/ code, and a secret Python sealed opens here.
 * Needs the project's Python: `make web-check` names it in ATTACHE_PYTHON.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { test } from "node:test";

import { sha256 } from "@noble/hashes/sha2.js";

import { b64uEncode, concat, fromUtf8, toHex, utf8 } from "../src/protocol/bytes.js";
import { createAudience, encryptMessage } from "../src/protocol/envelopes.js";
import { DeviceKeys } from "../src/protocol/keys.js";
import { KDF_MINIMUM, openSecret, sealSecret } from "../src/protocol/secrets.js";
import { DocumentEncryptor } from "../src/protocol/stream.js";
import { ROOT, h, vector } from "./vectors.js";

const V = vector("message_v1.json");
const D = vector("document_v1.json");
const PYTHON = process.env.ATTACHE_PYTHON;

test(
  "Python opens an audience, a message, a document and a sealed secret made here, and the page opens a secret Python sealed",
  { skip: PYTHON === undefined ? "ATTACHE_PYTHON is not set (make web-check sets it)" : false },
  async () => {
    const keys = async (name: "sender" | "recipient") =>
      DeviceKeys.fromPrivateBytes(concat(h(V[name].signing_seed), h(V[name].xwing_seed)));
    const sender = await keys("sender");
    const recipient = await keys("recipient");
    const audienceId = "c0ffee00-1234-4abc-8def-0123456789ab";
    const { sealed, audienceKey } = await createAudience(sender, {
      audienceId,
      container: V.audience.inputs.container,
      creatorUser: V.sender.user_id,
      creatorDevice: V.sender.device_id,
      recipients: [
        { deviceId: V.sender.device_id, keys: sender.publicKeys },
        { deviceId: V.recipient.device_id, keys: recipient.publicKeys },
      ],
      createdAt: "2026-11-26T10:00:00Z",
    });
    const text = "Réunion à 10 h — <script>alert(1)</script> \u202e";
    const message = await encryptMessage(
      sender,
      audienceKey,
      { ...V.message.sealed.header, audience_id: audienceId },
      utf8(text),
    );
    const content = Uint8Array.from({ length: 70_000 }, (_, i) => (i * 7) % 256);
    const header = { ...D.header, audience_id: audienceId, size: content.length };
    const encryptor = await DocumentEncryptor.create(sender, audienceKey, header);
    const chunks: Uint8Array[] = [];
    for await (const chunk of encryptor.encryptChunks([content])) chunks.push(chunk);
    const passphrase = "pass phrase, \u00e9tat-major";
    const purpose = "device-keys";
    const secretBlob = await sealSecret(passphrase, recipient.toPrivateBytes(), {
      purpose,
      params: KDF_MINIMUM,
    });
    const input = {
      secret: { passphrase, purpose, blob: fromUtf8(secretBlob) },
      device_id: V.recipient.device_id,
      device_private_hex: toHex(recipient.toPrivateBytes()),
      sender_signing_key_hex: V.sender.signing_public_key,
      audience: {
        ...sealed,
        envelopes: { [V.recipient.device_id]: sealed.envelopes[V.recipient.device_id]! },
      },
      message,
      document: { header, trailer: encryptor.finish(), ciphertext: b64uEncode(concat(...chunks)) },
    };
    const result = spawnSync(PYTHON!, [join(ROOT, "clients", "web", "test", "python_opens.py")], {
      cwd: ROOT,
      env: { ...process.env, PYTHONPATH: ROOT },
      input: JSON.stringify(input),
      encoding: "utf-8",
    });
    assert.equal(result.status, 0, result.stderr);
    const opened = JSON.parse(result.stdout);
    assert.equal(opened.message, text);
    assert.equal(opened.document_sha256, toHex(sha256(content)));
    assert.equal(opened.secret_hex, toHex(recipient.toPrivateBytes()));
    const reversed = await openSecret(passphrase, utf8(opened.sealed_reversed), { purpose });
    assert.deepEqual(reversed, recipient.toPrivateBytes().reverse());
  },
);
