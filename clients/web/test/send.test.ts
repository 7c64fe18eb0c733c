/**
 * Sending from the page (src/app/send.ts), as the SDK's Messenger.send: against a server the
 * test plays, the roster is fetched with If-None-Match and each certificate verified, only the
 * devices the decision admits for the label are sealed to (a FRA member is not, for REL TO
 * USA, GBR; a device whose certificate does not verify is excluded and said to be), the
 * message is submitted with If-Match naming the roster, a changed roster (412) is fetched and
 * sealed afresh, and what was sent opens, verified, for a recipient.
 */
import assert from "node:assert/strict";
import { test } from "node:test";

import { Api } from "../src/app/api.js";
import { openItem } from "../src/app/messages.js";
import { SendError, Sender, type ChannelInfo } from "../src/app/send.js";
import { b64uEncode } from "../src/protocol/bytes.js";
import { CTX_DEVICE_CERTIFICATE, signingInput } from "../src/protocol/canonical.js";
import { DeviceKeys, authorityKeyId, formatUtcTime } from "../src/protocol/keys.js";
import { catalogFromToml, parseLabel } from "../src/protocol/labels.js";
import { ed25519PublicKey, ed25519Sign, randomBytes } from "../src/protocol/primitives.js";
import { repoText } from "./vectors.js";

const ORIGIN = "http://127.0.0.1:8600";
const catalog = catalogFromToml(repoText("protocol", "catalogs", "default.toml"));
const SEEDS: Record<string, Uint8Array> = {
  USA: randomBytes(32),
  GBR: randomBytes(32),
  FRA: randomBytes(32),
};
const PINS = new Map(Object.entries(SEEDS).map(([n, seed]) => [n, ed25519PublicKey(seed)]));
const CHANNEL: ChannelInfo = {
  id: "0b0e7f4e-7f39-4a4b-9d1f-0c2b0a7e6d11",
  name: "liaison",
  ceiling_canonical: parseLabel("NATO SECRET", catalog, null),
  labels: ["NATO SECRET", "NATO SECRET//REL TO USA, GBR"],
  default_label: "NATO SECRET",
};

function certificate(keys: DeviceKeys, who: { device: string; user: string; nation: string }) {
  const now = Date.now();
  const body = {
    version: 1,
    serial: b64uEncode(randomBytes(16)),
    device_id: who.device,
    user_id: who.user,
    username: who.user,
    nation: who.nation,
    nationality: who.nation,
    clearance: { categories: {}, level: "SECRET", policy: "NATO" },
    ...keys.publicKeys.toJson(),
    issued_at: formatUtcTime(new Date(now - 60_000)),
    expires_at: formatUtcTime(new Date(now + 3_600_000)),
    authority_key_id: authorityKeyId(ed25519PublicKey(SEEDS[who.nation]!)),
  };
  const signature = ed25519Sign(SEEDS[who.nation]!, signingInput(CTX_DEVICE_CERTIFICATE, body));
  return { body, signature: b64uEncode(signature) };
}

async function member(user: string, nation: string) {
  const keys = await DeviceKeys.generate();
  const who = { device: `device-${user}`, user, nation };
  return {
    keys,
    entry: {
      device_id: who.device,
      user_id: user,
      username: user,
      nationality: nation,
      ...keys.publicKeys.toJson(),
      certificate: certificate(keys, who) as unknown,
    },
  };
}

test("a message is sealed to the eligible devices only, under the roster it names", async () => {
  const alice = await member("alice", "USA");
  const bob = await member("bob", "GBR");
  const chloe = await member("chloe", "FRA");
  const mallory = await member("mallory", "GBR");
  mallory.entry.certificate = {
    ...(mallory.entry.certificate as object),
    signature: b64uEncode(randomBytes(64)),
  };
  const roster = [alice.entry, bob.entry, chloe.entry, mallory.entry];
  let etag = '"one"';
  const calls: { route: string; headers: Record<string, string> }[] = [];
  const audiences: Record<string, unknown>[] = [];
  const messages: Record<string, unknown>[] = [];
  let refuseOnce = true;
  const api = new Api(ORIGIN, async (input, init) => {
    const route = `${init.method} ${input.slice(ORIGIN.length)}`;
    const headers = init.headers as Record<string, string>;
    calls.push({ route, headers });
    const body = init.body ? JSON.parse(init.body as string) : undefined;
    const json = (status: number, answer: unknown, extra: Record<string, string> = {}) =>
      new Response(JSON.stringify(answer), { status, headers: extra });
    if (route === `GET /v1/channels/${CHANNEL.id}/roster`) {
      if (headers["If-None-Match"] === etag) return new Response(null, { status: 304 });
      return json(200, roster, { ETag: etag });
    }
    if (route === `POST /v1/channels/${CHANNEL.id}/audiences`) {
      audiences.push(body);
      return json(201, { audience_id: body.header.audience_id, devices: body.header.devices });
    }
    if (route === `POST /v1/channels/${CHANNEL.id}/messages`) {
      if (refuseOnce) {
        refuseOnce = false;
        etag = '"two"'; // someone joined meanwhile
        return json(412, { code: "roster-changed", detail: "the roster changed" });
      }
      assert.equal(headers["If-Match"], etag);
      messages.push(body);
      return json(201, {
        seq: 9,
        message_id: body.header.message_id,
        created: true,
        label: "NATO SECRET//REL TO USA, GBR",
        released_to:
          audiences.at(-1)!.header && (audiences.at(-1)!.header as { devices: string[] }).devices,
      });
    }
    return json(404, { detail: `no route ${route}` });
  });
  api.setToken("token");
  const sender = new Sender(
    api,
    { userId: "alice", deviceId: "device-alice", nationality: "USA", keys: alice.keys },
    PINS,
    catalog,
  );

  const before = await sender.preview(CHANNEL, "NATO SECRET//REL TO USA, GBR");
  assert.deepEqual(before.people, ["alice (USA)", "bob (GBR)"]);
  assert.deepEqual(
    before.excluded.map((d) => d.username),
    ["mallory"],
  );
  assert.match(before.excluded[0]!.reason, /signature/);
  // NATO SECRET (REL TO NATO by default) reaches chloe too.
  assert.deepEqual((await sender.preview(CHANNEL, "NATO SECRET")).people, [
    "alice (USA)",
    "bob (GBR)",
    "chloe (FRA)",
  ]);
  const rosterAsks = calls.filter((c) => c.route.endsWith("/roster"));
  assert.equal(rosterAsks[1]!.headers["If-None-Match"], '"one"');

  const sent = await sender.send(CHANNEL, "NATO SECRET//REL TO USA, GBR", "hello <b>bob</b>");
  assert.equal(sent.seq, 9);
  assert.deepEqual(sent.people, ["alice (USA)", "bob (GBR)"]);
  assert.equal(messages.length, 1);
  const header = audiences.at(-1)!.header as { devices: string[] };
  assert.deepEqual([...header.devices].sort(), ["device-alice", "device-bob"]);
  const envelopes = audiences.at(-1)!.envelopes as Record<string, string>;
  assert.equal(envelopes["device-chloe"], undefined);

  // Bob opens it, verified, as the stream would give it to him.
  const item = {
    seq: 9,
    channel_id: CHANNEL.id,
    label: "NATO SECRET//REL TO USA, GBR",
    message: messages[0],
    audience: {
      header: audiences.at(-1)!.header,
      signature: audiences.at(-1)!.signature,
      envelope: envelopes["device-bob"],
    },
    sender_certificate: alice.entry.certificate,
    grant: null,
  };
  const opened = await openItem(item, {
    keys: bob.keys,
    deviceId: "device-bob",
    pins: PINS,
    catalog,
  });
  assert.equal(opened.problem, null);
  assert.equal(opened.text, "hello <b>bob</b>");
  assert.equal(opened.sender, "alice");

  // A label that admits no one here is refused before anything is sent.
  await assert.rejects(
    sender.send(CHANNEL, "NATO SECRET//REL TO JPN", "x"),
    (error: unknown) =>
      error instanceof SendError && /nationality USA not in REL TO JPN/.test(error.message),
  );
  await assert.rejects(sender.send(CHANNEL, "NATO SUPER SECRET", "x"), SendError);
  assert.equal(messages.length, 1);
});
