/**
 * Item grants in the page (src/protocol/grants.ts), as protocol/grants.py: a message's own key
 * granted to a new device opens the message there, the grant checked against the item and
 * its labels; every tampered field, envelope, signature and device caught; labels that do
 * anything but widen releasability refused. No vector holds a grant, so Python's protocol/
 * opens a grant made here and makes one the page opens (test/python_grants.py).
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { test } from "node:test";

import { b64uDecode, b64uEncode, concat, fromUtf8, toHex, utf8 } from "../src/protocol/bytes.js";
import type { JsonObject } from "../src/protocol/canonical.js";
import {
  EnvelopeError,
  createAudience,
  decryptWithItemKey,
  encryptMessage,
  messageKey,
} from "../src/protocol/envelopes.js";
import {
  GRANT_FIELDS,
  checkGrantHeader,
  checkGrantItem,
  checkHistoryLabels,
  checkLabelWidening,
  createGrant,
  itemKeyCommitment,
  openGrant,
  verifyGrant,
  type SealedGrant,
} from "../src/protocol/grants.js";
import { DeviceKeys } from "../src/protocol/keys.js";
import { catalogFromToml, parseLabel } from "../src/protocol/labels.js";
import { ROOT, h, repoText, vector } from "./vectors.js";

const V = vector("message_v1.json");
const PYTHON = process.env.ATTACHE_PYTHON;
const catalog = catalogFromToml(repoText("protocol", "catalogs", "default.toml"));
const label = (banner: string) => parseLabel(banner, catalog, "GBR") as unknown as JsonObject;
const NARROW = label("NATO SECRET//REL TO USA, GBR");
const WIDE = label("NATO SECRET//REL TO USA, GBR, FRA");
const NEW_DEVICE = "device-chloe";
const REQUEST = "7e9a0b1c-2d3e-4f50-8a6b-7c8d9e0f1a2b";

async function scene() {
  const keys = async (name: "sender" | "recipient") =>
    DeviceKeys.fromPrivateBytes(concat(h(V[name].signing_seed), h(V[name].xwing_seed)));
  const sender = await keys("sender");
  const grantor = await keys("recipient");
  const newcomer = await DeviceKeys.generate();
  const audienceId = "c0ffee00-1234-4abc-8def-0123456789ab";
  const { audienceKey } = await createAudience(sender, {
    audienceId,
    container: V.audience.inputs.container,
    creatorUser: V.sender.user_id,
    creatorDevice: V.sender.device_id,
    recipients: [
      { deviceId: V.sender.device_id, keys: sender.publicKeys },
      { deviceId: V.recipient.device_id, keys: grantor.publicKeys },
    ],
    createdAt: "2026-11-26T10:00:00Z",
  });
  const message = await encryptMessage(
    sender,
    audienceKey,
    { ...V.message.sealed.header, audience_id: audienceId, label: NARROW },
    utf8("released to FRA"),
  );
  const itemKey = await messageKey(audienceKey, message.header);
  const grant = await createGrant(grantor, itemKey, {
    grantId: "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d",
    requestId: REQUEST,
    itemType: "message",
    itemId: message.header.message_id as string,
    container: message.header.container as string,
    grantorUser: V.recipient.user_id,
    grantorDevice: V.recipient.device_id,
    previousLabel: NARROW,
    label: WIDE,
    recipients: [{ deviceId: NEW_DEVICE, keys: newcomer.publicKeys }],
    createdAt: "2026-11-26T11:00:00Z",
  });
  return { sender, grantor, newcomer, audienceKey, message, itemKey, grant };
}

type Scene = Awaited<ReturnType<typeof scene>>;

function open(s: Scene, grant: SealedGrant = s.grant, device = NEW_DEVICE) {
  return openGrant(
    s.newcomer,
    device,
    grant.header,
    grant.signature,
    grant.envelopes[device] ?? grant.envelopes[NEW_DEVICE]!,
    s.grantor.publicKeys.signingKey,
  );
}

test("a message's own key, granted, opens it for the new device, never the audience key", async () => {
  const s = await scene();
  const header = checkGrantHeader(s.grant.header);
  assert.deepEqual(Object.keys(s.grant.header).sort(), [...GRANT_FIELDS].sort());
  assert.deepEqual(header.devices, [NEW_DEVICE]);
  assert.equal(header.itemKeyCommitment, itemKeyCommitment(s.itemKey));
  const key = await open(s);
  assert.deepEqual(key, s.itemKey);
  assert.notDeepEqual(key, s.audienceKey);
  const text = await decryptWithItemKey(s.message, key, s.sender.publicKeys.signingKey);
  assert.equal(fromUtf8(text), "released to FRA");
  checkGrantItem(header, s.message.header);
  const [, wider] = checkLabelWidening(header.previousLabel, header.label, catalog);
  assert.deepEqual(wider.rel_to, ["USA", "GBR", "FRA"]);
  // What the server checks, with no key.
  verifyGrant(s.grant.header, b64uDecode(s.grant.signature), s.grantor.publicKeys.signingKey);
});

test("a changed header field, device, signature or envelope is caught", async () => {
  const s = await scene();
  const changed = (edit: (header: JsonObject) => void): SealedGrant => {
    const header = structuredClone(s.grant.header);
    edit(header);
    return { ...s.grant, header };
  };
  const cases: [string, SealedGrant, RegExp][] = [
    ["label", changed((hd) => (hd.label = label("NATO SECRET//REL TO NATO"))), /signature/],
    ["item", changed((hd) => (hd.item_id = REQUEST)), /signature/],
    ["request", changed((hd) => (hd.request_id = null)), /signature/],
    ["unknown field", changed((hd) => (hd.extra = 1)), /unknown fields extra/],
    ["no devices", changed((hd) => (hd.devices = [])), /devices must be a list/],
    ["unsorted", changed((hd) => (hd.devices = ["b", "a"])), /sorted ascending/],
    ["item type", changed((hd) => (hd.item_type = "audience")), /item_type/],
    ["commitment", changed((hd) => (hd.item_key_commitment = "AA")), /item_key_commitment/],
    ["time", changed((hd) => (hd.created_at = "2026-11-26 11:00")), /created_at/],
  ];
  for (const [name, grant, error] of cases) {
    await assert.rejects(open(s, grant), error, name);
  }
  const flipped = b64uDecode(s.grant.envelopes[NEW_DEVICE]!);
  flipped[flipped.length - 1]! ^= 1;
  await assert.rejects(
    open(s, { ...s.grant, envelopes: { [NEW_DEVICE]: b64uEncode(flipped) } }),
    /does not open for device/,
  );
  const signature = b64uDecode(s.grant.signature);
  signature[0]! ^= 1;
  await assert.rejects(open(s, { ...s.grant, signature: b64uEncode(signature) }), /signature/);
  await assert.rejects(open(s, s.grant, "another-device"), /is not in grant/);
  // Another device's signing key: not the grantor's signature.
  await assert.rejects(
    openGrant(
      s.newcomer,
      NEW_DEVICE,
      s.grant.header,
      s.grant.signature,
      s.grant.envelopes[NEW_DEVICE]!,
      s.sender.publicKeys.signingKey,
    ),
    /grant signature is not valid/,
  );
});

test("a key that does not match the commitment, or a grant of another item, is refused", async () => {
  const s = await scene();
  const other = new Uint8Array(32).fill(7);
  const lying = await createGrant(s.grantor, other, {
    grantId: "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6e",
    requestId: REQUEST,
    itemType: "message",
    itemId: s.message.header.message_id as string,
    container: s.message.header.container as string,
    grantorUser: V.recipient.user_id,
    grantorDevice: V.recipient.device_id,
    previousLabel: NARROW,
    label: WIDE,
    recipients: [{ deviceId: NEW_DEVICE, keys: s.newcomer.publicKeys }],
    createdAt: "2026-11-26T11:00:00Z",
  });
  // The key opens and matches its own commitment, but not the message's.
  const key = await open(s, lying);
  await assert.rejects(
    decryptWithItemKey(s.message, key, s.sender.publicKeys.signingKey),
    /was not encrypted under this key/,
  );
  const header = checkGrantHeader(s.grant.header);
  assert.throws(
    () => checkGrantItem(header, { ...s.message.header, message_id: REQUEST }),
    /is for item/,
  );
  assert.throws(
    () => checkGrantItem(header, { ...s.message.header, container: "another" }),
    /names container/,
  );
  await assert.rejects(
    createGrant(s.grantor, s.itemKey.subarray(1), {} as never),
    (error) => error instanceof EnvelopeError && /an item key must be 32 bytes/.test(error.message),
  );
});

test("a release only widens releasability", () => {
  const widen = (a: string, b: string) => checkLabelWidening(label(a), label(b), catalog);
  widen("NATO SECRET//REL TO USA, GBR", "NATO SECRET//REL TO USA, GBR, FRA");
  widen("NATO SECRET//REL TO USA, GBR", "NATO SECRET//REL TO FVEY");
  const refused: [string, string, RegExp][] = [
    ["NATO SECRET//REL TO USA, GBR", "NATO SECRET//REL TO USA, GBR", /does not widen/],
    ["NATO SECRET//REL TO USA, GBR", "NATO SECRET//REL TO USA", /drops GBR/],
    ["NATO SECRET//REL TO USA, GBR", "NATO CONFIDENTIAL//REL TO USA, GBR, FRA", /changes level/],
    ["NATO SECRET//REL TO FVEY", "NATO SECRET//REL TO USA, GBR, CAN, AUS, NZL", /does not widen/],
  ];
  for (const [a, b, error] of refused) assert.throws(() => widen(a, b), error, `${a} -> ${b}`);
  const usa = parseLabel("NATO SECRET//REL TO USA, GBR, FRA", catalog, "USA");
  assert.throws(() => checkLabelWidening(NARROW, usa, catalog), /changes originator/);
  assert.throws(
    () => checkLabelWidening(NARROW, { ...WIDE, level: "TOP SECRET " }, catalog),
    /not a valid label/,
  );
});

test("a history grant's labels: the sender's own, or one a release widened", async () => {
  const s = await scene();
  const history = await createGrant(s.grantor, s.itemKey, {
    grantId: "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6f",
    requestId: null,
    itemType: "message",
    itemId: s.message.header.message_id as string,
    container: s.message.header.container as string,
    grantorUser: V.recipient.user_id,
    grantorDevice: V.recipient.device_id,
    previousLabel: NARROW,
    label: NARROW,
    recipients: [{ deviceId: NEW_DEVICE, keys: s.newcomer.publicKeys }],
    createdAt: "2026-11-26T11:00:00Z",
  });
  const header = checkGrantHeader(history.header);
  assert.deepEqual(checkHistoryLabels(header, NARROW, catalog).rel_to, ["USA", "GBR"]);
  assert.throws(() => checkHistoryLabels(header, WIDE, catalog), /other than the one the sender/);
  const release = checkGrantHeader(s.grant.header);
  assert.throws(() => checkHistoryLabels(release, NARROW, catalog), /not a history grant/);
});

test(
  "Python opens a grant made here, and the page opens a grant Python made",
  { skip: PYTHON === undefined ? "ATTACHE_PYTHON is not set (make web-check sets it)" : false },
  async () => {
    const s = await scene();
    const result = spawnSync(PYTHON!, [join(ROOT, "clients", "web", "test", "python_grants.py")], {
      cwd: ROOT,
      env: { ...process.env, PYTHONPATH: ROOT },
      input: JSON.stringify({
        grant: s.grant,
        item_key: b64uEncode(s.itemKey),
        grantor_private_hex: toHex(s.grantor.toPrivateBytes()),
        recipient_private_hex: toHex(s.newcomer.toPrivateBytes()),
        device_id: NEW_DEVICE,
      }),
      encoding: "utf-8",
    });
    assert.equal(result.status, 0, result.stderr);
    const opened = JSON.parse(result.stdout);
    assert.equal(opened.item_key_hex, toHex(s.itemKey));
    assert.equal(opened.header_digest_hex, toHex(checkGrantHeader(s.grant.header).headerDigest));
    const key = await open(s, opened.grant);
    assert.deepEqual(key, s.itemKey.slice().reverse());
    assert.equal(checkGrantHeader(opened.grant.header).requestId, REQUEST);
  },
);
