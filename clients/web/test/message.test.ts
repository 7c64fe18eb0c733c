import assert from "node:assert/strict";
import { test } from "node:test";

import { b64uDecode, b64uEncode, concat, fromUtf8, toHex, utf8 } from "../src/protocol/bytes.js";
import { canonicalJson } from "../src/protocol/canonical.js";
import {
  EnvelopeError,
  type Recipient,
  checkAudienceHeader,
  checkMessageHeader,
  createAudience,
  decryptMessage,
  decryptWithItemKey,
  deviceKeysDigest,
  encryptMessage,
  envelopeInfo,
  messageKey,
  openAudienceEnvelope,
  verifyAudience,
} from "../src/protocol/envelopes.js";
import { DeviceKeys } from "../src/protocol/keys.js";
import { h, sha256Hex, vector } from "./vectors.js";

const V = vector("message_v1.json");
const AUDIENCE = V.audience;
const MESSAGE = V.message;

async function device(name: "sender" | "recipient"): Promise<DeviceKeys> {
  return DeviceKeys.fromPrivateBytes(concat(h(V[name].signing_seed), h(V[name].xwing_seed)));
}

async function recipients(): Promise<Recipient[]> {
  return [
    { deviceId: V.sender.device_id, keys: (await device("sender")).publicKeys },
    { deviceId: V.recipient.device_id, keys: (await device("recipient")).publicKeys },
  ];
}

const senderKey = () => h(V.sender.signing_public_key);

test("device keys from the recorded seeds", async () => {
  for (const name of ["sender", "recipient"] as const) {
    const keys = await device(name);
    assert.equal(toHex(keys.publicKeys.signingKey), V[name].signing_public_key);
    assert.equal(sha256Hex(keys.publicKeys.encryptionKey), V[name].encryption_public_key_sha256);
  }
});

test("the audience: device keys digest, header digest, signature", async () => {
  assert.equal(deviceKeysDigest(await recipients()), AUDIENCE.device_keys_digest);
  const header = AUDIENCE.sealed.header;
  assert.equal(fromUtf8(canonicalJson(header)), AUDIENCE.header_canonical);
  const checked = checkAudienceHeader(header);
  assert.equal(toHex(checked.headerDigest), AUDIENCE.header_digest_hex);
  verifyAudience(header, h(AUDIENCE.signature_hex), senderKey());
  // Ed25519 is deterministic: the same inputs give the recorded signature.
  const { sealed } = await createAudience(
    await device("sender"),
    {
      audienceId: AUDIENCE.inputs.audience_id,
      container: AUDIENCE.inputs.container,
      creatorUser: AUDIENCE.inputs.creator_user,
      creatorDevice: AUDIENCE.inputs.creator_device,
      recipients: await recipients(),
      createdAt: AUDIENCE.inputs.created_at,
    },
    h(AUDIENCE.audience_key_hex),
  );
  assert.deepEqual(sealed.header, header);
  assert.equal(sealed.signature, AUDIENCE.sealed.signature);
});

test("both recorded envelopes open to the audience key", async () => {
  for (const name of ["recipient", "sender"] as const) {
    const deviceId = V[name].device_id;
    const info = envelopeInfo(AUDIENCE.inputs.audience_id, deviceId, h(AUDIENCE.header_digest_hex));
    assert.equal(toHex(info), AUDIENCE.envelope_info_hex[deviceId]);
    const key = await openAudienceEnvelope(
      await device(name),
      deviceId,
      AUDIENCE.sealed,
      senderKey(),
    );
    assert.equal(toHex(key), AUDIENCE.audience_key_hex);
  }
});

test("an envelope opens for its own device only, under its own header", async () => {
  const recipient = await device("recipient");
  const sealed = AUDIENCE.sealed;
  // Another device's envelope, handed over under this device's id.
  const swapped = {
    ...sealed,
    envelopes: { [V.recipient.device_id]: sealed.envelopes[V.sender.device_id] },
  };
  await assert.rejects(
    openAudienceEnvelope(recipient, V.recipient.device_id, swapped, senderKey()),
    /does not open for device/,
  );
  // A header changed after signing.
  const moved = { ...sealed, header: { ...sealed.header, container: "another" } };
  await assert.rejects(
    openAudienceEnvelope(recipient, V.recipient.device_id, moved, senderKey()),
    /audience signature is not valid/,
  );
  await assert.rejects(
    openAudienceEnvelope(recipient, "someone-else", sealed, senderKey()),
    /is not in audience/,
  );
});

test("the message: header digest, key, body and signature, byte for byte", async () => {
  const header = MESSAGE.sealed.header;
  assert.equal(fromUtf8(canonicalJson(header)), MESSAGE.header_canonical);
  assert.equal(toHex(checkMessageHeader(header).headerDigest), MESSAGE.header_digest_hex);
  const audienceKey = h(AUDIENCE.audience_key_hex);
  assert.equal(toHex(await messageKey(audienceKey, header)), MESSAGE.message_key_hex);
  const sealed = await encryptMessage(
    await device("sender"),
    audienceKey,
    header,
    utf8(MESSAGE.plaintext_utf8),
    h(MESSAGE.nonce_hex),
  );
  assert.deepEqual(sealed, MESSAGE.sealed);
  assert.equal(toHex(b64uDecode(sealed.body)), MESSAGE.body_hex);
  assert.equal(toHex(b64uDecode(sealed.signature)), MESSAGE.signature_hex);
});

test("the recorded message opens with the audience key and with its item key", async () => {
  const recipient = await device("recipient");
  const audienceKey = await openAudienceEnvelope(
    recipient,
    V.recipient.device_id,
    AUDIENCE.sealed,
    senderKey(),
  );
  const plaintext = await decryptMessage(MESSAGE.sealed, audienceKey, senderKey());
  assert.equal(fromUtf8(plaintext), MESSAGE.plaintext_utf8);
  const itemKey = h(MESSAGE.message_key_hex);
  assert.equal(
    fromUtf8(await decryptWithItemKey(MESSAGE.sealed, itemKey, senderKey())),
    MESSAGE.plaintext_utf8,
  );
});

test("a changed label, header, body or key breaks the signature or decryption", async () => {
  const audienceKey = h(AUDIENCE.audience_key_hex);
  const sealed = MESSAGE.sealed;
  const header = sealed.header;
  const relabelled = {
    ...sealed,
    header: { ...header, label: { ...header.label, rel_to: ["USA", "GBR", "FRA"] } },
  };
  await assert.rejects(
    decryptMessage(relabelled, audienceKey, senderKey()),
    /message signature is not valid/,
  );
  const body = b64uDecode(sealed.body);
  body[body.length - 1]! ^= 1;
  await assert.rejects(
    decryptMessage({ ...sealed, body: b64uEncode(body) }, audienceKey, senderKey()),
    /message signature is not valid/,
  );
  await assert.rejects(
    decryptMessage(sealed, audienceKey, h(V.recipient.signing_public_key)),
    /not valid/,
  );
  await assert.rejects(
    decryptMessage(sealed, new Uint8Array(32), senderKey()),
    /not encrypted under this key/,
  );
  await assert.rejects(
    decryptMessage({ ...sealed, extra: 1 } as never, audienceKey, senderKey()),
    EnvelopeError,
  );
  await assert.rejects(
    decryptMessage(
      { ...sealed, header: { ...header, reply_to: "not-a-uuid" } },
      audienceKey,
      senderKey(),
    ),
    /reply_to must be a lower-case hyphenated UUID/,
  );
});

test("an audience made here opens here, and a message sealed here opens", async () => {
  const sender = await device("sender");
  const recipient = await device("recipient");
  const { sealed, audienceKey } = await createAudience(sender, {
    audienceId: "11111111-2222-4333-8444-555555555555",
    container: "liaison",
    creatorUser: "alice",
    creatorDevice: V.sender.device_id,
    recipients: await recipients(),
    createdAt: "2026-11-26T10:00:00Z",
  });
  const opened = await openAudienceEnvelope(recipient, V.recipient.device_id, sealed, senderKey());
  assert.deepEqual(opened, audienceKey);
  const header = {
    ...MESSAGE.sealed.header,
    audience_id: "11111111-2222-4333-8444-555555555555",
    message_id: "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee",
  };
  const message = await encryptMessage(sender, audienceKey, header, utf8("Bonjour, <b>world</b>"));
  assert.equal(
    fromUtf8(await decryptMessage(message, opened, senderKey())),
    "Bonjour, <b>world</b>",
  );
});
