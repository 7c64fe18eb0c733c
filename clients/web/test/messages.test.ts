/**
 * The page's reading of delivered items (src/app/messages.ts), as clients/sdk/messaging.py's
 * `open_item`: a delivery made here as the server gives one (bob's message, his certificate
 * from the GBR authority, his audience with alice's envelope) opens; every change a server
 * could make comes back as a warning with the reason, never with content; the inbox keeps an
 * item seen twice once and counts what is unread; a stream's `messages` frame is read as its
 * `message` frames one by one, and a frame that is not a JSON object is ignored.
 */
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  Inbox,
  openItem,
  parseFrame,
  pushedMessages,
  streamUrl,
  type Reader,
} from "../src/app/messages.js";
import { b64uDecode, b64uEncode, utf8 } from "../src/protocol/bytes.js";
import { CTX_DEVICE_CERTIFICATE, signingInput } from "../src/protocol/canonical.js";
import { createAudience, encryptMessage } from "../src/protocol/envelopes.js";
import { DeviceKeys, authorityKeyId, formatUtcTime } from "../src/protocol/keys.js";
import { catalogFromToml } from "../src/protocol/labels.js";
import { ed25519PublicKey, ed25519Sign, randomBytes } from "../src/protocol/primitives.js";
import { repoText } from "./vectors.js";

const CHANNEL = "0b0e7f4e-7f39-4a4b-9d1f-0c2b0a7e6d11";
const GBR = randomBytes(32);
const catalog = catalogFromToml(repoText("protocol", "catalogs", "default.toml"));
const LABEL = {
  categories: {},
  level: "SECRET",
  originator: "GBR",
  policy: "NATO",
  privacy_mark: null,
  rel_to: ["USA", "GBR"],
  review_date: null,
};
const BANNER = "NATO SECRET//REL TO USA, GBR";

function certificate(keys: DeviceKeys, deviceId: string, seed = GBR) {
  const now = Date.now();
  const body = {
    version: 1,
    serial: b64uEncode(randomBytes(16)),
    device_id: deviceId,
    user_id: "user-bob",
    username: "bob",
    nation: "GBR",
    nationality: "GBR",
    clearance: { level: "SECRET", policy: "NATO" },
    ...keys.publicKeys.toJson(),
    issued_at: formatUtcTime(new Date(now - 60_000)),
    expires_at: formatUtcTime(new Date(now + 3_600_000)),
    authority_key_id: authorityKeyId(ed25519PublicKey(seed)),
  };
  return {
    body,
    signature: b64uEncode(ed25519Sign(seed, signingInput(CTX_DEVICE_CERTIFICATE, body))),
  };
}

async function setting() {
  const bob = await DeviceKeys.generate();
  const alice = await DeviceKeys.generate();
  const reader: Reader = {
    keys: alice,
    deviceId: "device-alice",
    pins: new Map([["GBR", ed25519PublicKey(GBR)]]),
    catalog,
  };
  const { sealed: audience, audienceKey } = await createAudience(bob, {
    audienceId: "11111111-2222-4333-8444-555555555555",
    container: CHANNEL,
    creatorUser: "user-bob",
    creatorDevice: "device-bob",
    recipients: [
      { deviceId: "device-alice", keys: alice.publicKeys },
      { deviceId: "device-bob", keys: bob.publicKeys },
    ],
    createdAt: "2026-11-26T10:00:00Z",
  });
  async function delivery(seq: number, text: string, label: object = LABEL) {
    const message = await encryptMessage(
      bob,
      audienceKey,
      {
        type: "attache.message",
        version: 1,
        message_id: `22222222-3333-4444-8555-${String(seq).padStart(12, "0")}`,
        container: CHANNEL,
        sender_user: "user-bob",
        sender_device: "device-bob",
        audience_id: audience.header.audience_id as string,
        sent_at: "2026-11-26T10:01:00Z",
        label: label as never,
        content_type: "text/plain; charset=utf-8",
        reply_to: null,
      },
      utf8(text),
    );
    return {
      seq,
      channel_id: CHANNEL,
      label: BANNER,
      message,
      audience: {
        header: audience.header,
        signature: audience.signature,
        envelope: audience.envelopes["device-alice"],
      },
      sender_certificate: certificate(bob, "device-bob"),
      grant: null,
    };
  }
  return { bob, reader, delivery };
}

test("a delivered message opens, verified, with the banner and colour it was signed with", async () => {
  const { reader, delivery } = await setting();
  const opened = await openItem(await delivery(7, "<b>hello</b>"), reader);
  assert.equal(opened.problem, null);
  assert.equal(opened.verified, true);
  assert.equal(opened.text, "<b>hello</b>");
  assert.equal(opened.sender, "bob");
  assert.equal(opened.senderNation, "GBR");
  assert.equal(opened.banner, BANNER);
  assert.equal(opened.colour, "#c8102e");
  assert.equal(opened.seq, 7);
});

test("an item that does not verify is a warning with the reason, never content", async () => {
  const { bob, reader, delivery } = await setting();
  type Item = Awaited<ReturnType<typeof delivery>>;
  const cases: [string, (item: Item) => unknown, RegExp][] = [
    [
      "a byte of the body changed",
      (item) => {
        const body = b64uDecode(item.message.body);
        body[body.length - 1]! ^= 1;
        return { ...item, message: { ...item.message, body: b64uEncode(body) } };
      },
      /does not verify or decrypt/,
    ],
    ["another channel", (item) => ({ ...item, channel_id: "another-channel" }), /another channel/],
    [
      "the server's banner differs",
      (item) => ({ ...item, label: "NATO UNCLASSIFIED" }),
      /the server shows the label/,
    ],
    [
      "a certificate of another authority",
      (item) => ({ ...item, sender_certificate: certificate(bob, "device-bob", randomBytes(32)) }),
      /cannot be trusted/,
    ],
    [
      "a certificate of another device",
      (item) => ({ ...item, sender_certificate: certificate(bob, "device-other") }),
      /another device or user/,
    ],
    ["no certificate", (item) => ({ ...item, sender_certificate: null }), /no certificate/],
    [
      "not this device's envelope",
      (item) => ({
        ...item,
        audience: { ...item.audience, envelope: b64uEncode(randomBytes(1184)) },
      }),
      /does not verify or decrypt|envelope/,
    ],
    ["a grant", (item) => ({ ...item, grant: {} }), /grant/],
    ["not an item at all", () => "nonsense", /malformed/],
  ];
  for (const [why, change, reason] of cases) {
    const opened = await openItem(change(await delivery(8, "secret text")), reader);
    assert.equal(opened.verified, false, why);
    assert.equal(opened.text, null, why);
    assert.match(opened.problem ?? "", reason, why);
  }
  // A label whose originator is not the sender's nation, though signed by the sender.
  const usa = await openItem(await delivery(9, "x", { ...LABEL, originator: "USA" }), reader);
  assert.equal(usa.verified, false);
  assert.match(usa.problem ?? "", /originator USA, but the sender is of GBR/);
});

test("the inbox keeps an item seen twice once, counts unread and syncs from its cursor", async () => {
  const { reader, delivery } = await setting();
  const first = await delivery(3, "one");
  const second = await delivery(5, "two");
  const inbox = new Inbox(reader);
  const asked: string[] = [];
  const api = {
    async request<T>(_method: string, path: string): Promise<T> {
      asked.push(path);
      return { items: [first, second], cursor: 6, more: false } as T;
    },
  };
  assert.equal((await inbox.sync(api as never)).length, 2);
  assert.equal(inbox.cursor, 6);
  assert.equal(inbox.unread.get(CHANNEL), 2);
  assert.equal(await inbox.accept(second), null); // the stream pushes it again
  const third = await delivery(6, "three");
  const both = await Promise.all([inbox.accept(third), inbox.accept(third)]); // together
  assert.equal(both.filter((m) => m !== null).length, 1);
  assert.equal(inbox.cursor, 6);
  assert.equal(inbox.messages.get(CHANNEL)?.length, 3);
  assert.equal((await inbox.sync(api as never)).length, 0);
  assert.deepEqual(asked, ["/v1/sync?after=0&limit=100", "/v1/sync?after=6&limit=100"]);
  inbox.markRead(CHANNEL);
  assert.equal(inbox.unread.get(CHANNEL), 0);
  assert.equal(streamUrl("https://attache.example:8443"), "wss://attache.example:8443/v1/stream");
  assert.equal(streamUrl("http://127.0.0.1:8600"), "ws://127.0.0.1:8600/v1/stream");
});

test("a messages frame's items are each handled as their message frame alone, in order", async () => {
  const { reader, delivery } = await setting();
  const frames = [];
  for (const [seq, text] of [
    [3, "three"],
    [5, "five"],
    [7, "seven"],
  ] as const) {
    frames.push({ type: "message", ...(await delivery(seq, text)) });
  }
  const [three, five, seven] = frames;
  // Items that are not message frames are left out; the rest keep their order.
  const items = [three, 42, { type: "ping" }, five, null, [seven], { ...seven, type: "other" }];
  const frame = { type: "messages", items: [...items, seven] };
  assert.deepEqual(pushedMessages(frame), [three, five, seven]);
  assert.equal(pushedMessages(frame)[0], three); // the item itself, as it came
  assert.deepEqual(pushedMessages(three), [three]);
  for (const other of [
    { type: "messages", items: "not a list" },
    { type: "messages" },
    { type: "ready", device_id: "device-alice" },
    { type: "resync" },
    [three],
    "message",
    null,
  ]) {
    assert.deepEqual(pushedMessages(other), []);
  }

  // Handled as the page's stream handles them: each accepted in turn, as if alone.
  const batched = new Inbox(reader);
  const fromBatch = [];
  for (const pushed of pushedMessages(JSON.parse(JSON.stringify(frame)))) {
    fromBatch.push(await batched.accept(pushed));
  }
  const single = new Inbox(reader);
  const fromSingles = [];
  for (const alone of frames) fromSingles.push(await single.accept(alone));
  assert.deepEqual(
    fromBatch.map((m) => [m?.seq, m?.text, m?.verified]),
    [
      [3, "three", true],
      [5, "five", true],
      [7, "seven", true],
    ],
  );
  assert.deepEqual(fromBatch, fromSingles);
  assert.equal(batched.cursor, 7);
  assert.equal(batched.unread.get(CHANNEL), 3);
  assert.deepEqual(batched.messages, single.messages);
  // One pushed again, alone, is seen twice and kept once.
  assert.equal(await batched.accept(five), null);
});

test("a stream frame is read only when it is a JSON object; anything else is ignored", () => {
  assert.deepEqual(parseFrame('{"type": "ready", "device_id": "device-alice"}'), {
    type: "ready",
    device_id: "device-alice",
  });
  assert.deepEqual(parseFrame("{}"), {});
  // Valid JSON that is no object, and text that is no JSON, are ignored alike.
  for (const text of ["null", "42", '"message"', "[]", '[{"type": "ping"}]', "true", "", "{"]) {
    assert.equal(parseFrame(text), null, text);
  }
  // What a websocket hands over that is not text is read as its String(), as before.
  assert.equal(parseFrame(null), null);
  assert.equal(parseFrame(undefined), null);
});
