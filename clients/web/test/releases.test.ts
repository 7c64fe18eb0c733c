/**
 * Release requests in the page (src/app/releases.ts), as clients/sdk/releases.py: against a
 * server the test plays, a USA disclosure officer's page describes bob's request for sam's
 * message (the requester from his verified certificate, both labels, FRA added, the message
 * opened), approves it and seals the message's own key to chloe's FRA device alone (not to the
 * devices that hold it, nor to those the old label already admitted), sealing afresh after a
 * 409; chloe's page then opens the message under the wider label, released by dora, and a
 * grant or banner changed on its way is a warning. A request whose banners or labels do not
 * check says so; one not approved is not carried out. Bob's page asks for a release as
 * `attache release request` does, the nations as typed read in capitals, each once.
 */
import assert from "node:assert/strict";
import { test } from "node:test";

import { Api } from "../src/app/api.js";
import { openItem, type Reader } from "../src/app/messages.js";
import { ReleaseError, Releases, nationsToAdd, type ReleaseRequest } from "../src/app/releases.js";
import { concat, utf8 } from "../src/protocol/bytes.js";
import type { JsonObject } from "../src/protocol/canonical.js";
import { createAudience, encryptMessage } from "../src/protocol/envelopes.js";
import {
  checkGrantHeader,
  checkGrantItem,
  openGrant,
  type SealedGrant,
} from "../src/protocol/grants.js";
import { DocumentDecryptor, DocumentEncryptor } from "../src/protocol/stream.js";
import { DeviceKeys } from "../src/protocol/keys.js";
import { catalogFromToml, parseLabel } from "../src/protocol/labels.js";
import { DeviceTransparency } from "../src/app/transparency.js";
import { b64uEncode } from "../src/protocol/bytes.js";
import { Authorities } from "./authorities.js";
import { Log, V, register } from "./keylog.js";
import { repoText } from "./vectors.js";

const ORIGIN = "http://127.0.0.1:8600";
const CHANNEL = "0b0e7f4e-7f39-4a4b-9d1f-0c2b0a7e6d11";
const REQUEST = "7e9a0b1c-2d3e-4f50-8a6b-7c8d9e0f1a2b";
const VERSION = "7c9e1a3b-5d7f-4b2d-9e4f-6a8c0e2b4d61";
const OTHER = "8d0f2b4c-6e8a-4c3e-8f5a-7b9d1f3c5e72";
const NARROW = "NATO SECRET//REL TO USA, GBR";
const WIDE = "NATO SECRET//REL TO USA, GBR, FRA";
const catalog = catalogFromToml(repoText("protocol", "catalogs", "default.toml"));
const AUTHORITIES = new Authorities(["USA", "GBR", "FRA"]);
const PINS = AUTHORITIES.pins;
const canonical = (banner: string) => parseLabel(banner, catalog, "USA") as unknown as JsonObject;

const certificate = AUTHORITIES.certificate.bind(AUTHORITIES);

async function member(user: string, nation: string) {
  const keys = await DeviceKeys.generate();
  const entry = {
    device_id: `device-${user}`,
    user_id: user,
    username: user,
    nationality: nation,
    ...keys.publicKeys.toJson(),
    certificate: certificate(keys, user, nation) as unknown,
  };
  const reader: Reader = { keys, deviceId: entry.device_id, pins: PINS, catalog };
  return { keys, entry, reader };
}

/** Sam's message for USA and GBR, bob's request for FRA, and a server that plays along. */
/**
 * With `directory`, the page checks the key directory before sealing a grant, against a log
 * where each member's device is registered active; `planted`: the roster lists chloe's
 * device with keys the log never registered (certified by FRA's key); `forked`: the
 * checkpoint the page kept has another root at the log's size.
 */
async function scene(
  options: { conflictOnce?: boolean; directory?: { planted?: boolean; forked?: boolean } } = {},
) {
  const [sam, dora, bob, chloe] = await Promise.all([
    member("sam", "USA"),
    member("dora", "USA"),
    member("bob", "GBR"),
    member("chloe", "FRA"),
  ]);
  const { sealed: audience, audienceKey } = await createAudience(sam.keys, {
    audienceId: "11111111-2222-4333-8444-555555555555",
    container: CHANNEL,
    creatorUser: "sam",
    creatorDevice: "device-sam",
    recipients: [sam, dora, bob].map((m) => ({
      deviceId: m.entry.device_id,
      keys: m.keys.publicKeys,
    })),
    createdAt: "2026-11-26T10:00:00Z",
  });
  const messageId = "22222222-3333-4444-8555-000000000001";
  const message = await encryptMessage(
    sam.keys,
    audienceKey,
    {
      type: "attache.message",
      version: 1,
      message_id: messageId,
      container: CHANNEL,
      sender_user: "sam",
      sender_device: "device-sam",
      audience_id: audience.header.audience_id as string,
      sent_at: "2026-11-26T10:01:00Z",
      label: canonical(NARROW),
      content_type: "text/plain; charset=utf-8",
      reply_to: null,
    },
    utf8("Convoy leaves at 06:00"),
  );
  const content = Uint8Array.from({ length: 70_000 }, (_, i) => (i * 13) % 256);
  const documentHeader: JsonObject = {
    type: "attache.document",
    version: 1,
    document_id: "3f5e7a9c-1b2d-4e6f-8a0b-c2d4e6f8a0b1",
    version_id: VERSION,
    version_number: 1,
    container: CHANNEL,
    sender_user: "sam",
    sender_device: "device-sam",
    audience_id: audience.header.audience_id as string,
    created_at: "2026-11-26T10:01:30Z",
    label: canonical(NARROW),
    filename: "brief <1>.pdf",
    content_type: "application/pdf",
    size: content.length,
    chunk_size: 65536,
  };
  const encryptor = await DocumentEncryptor.create(sam.keys, audienceKey, documentHeader);
  const sealedChunks: Uint8Array[] = [];
  for await (const chunk of encryptor.encryptChunks([content])) sealedChunks.push(chunk);
  const document = {
    header: documentHeader,
    trailer: encryptor.finish(),
    ciphertext: concat(...sealedChunks),
    content,
  };
  const delivery = (to: string) => ({
    seq: 1,
    channel_id: CHANNEL,
    label: NARROW,
    message,
    audience: {
      header: audience.header,
      signature: audience.signature,
      envelope: audience.envelopes[to] ?? null,
    },
    sender_certificate: sam.entry.certificate,
    grant: null as unknown,
  });
  const request: ReleaseRequest = {
    id: REQUEST,
    item_type: "message",
    item_id: messageId,
    channel_id: CHANNEL,
    requested_by: "bob",
    originator: "USA",
    label: NARROW,
    label_canonical: canonical(NARROW),
    requested_label: WIDE,
    requested_label_canonical: canonical(WIDE),
    reason: '<img src=x onerror="alert(1)">',
    status: "pending",
    decided_by: null,
    decision_reason: "",
    decided_at: null,
    created_at: "2026-11-26T10:02:00Z",
  };
  const log = new Log();
  for (const m of [sam, dora, bob, chloe]) {
    const { signingKey, encryptionKey } = m.keys.publicKeys;
    const device = {
      deviceId: m.entry.device_id,
      userId: m.entry.user_id,
      signingKey,
      encryptionKey,
    };
    log.add(register(device, "active"));
  }
  log.checkpoint();
  if (options.directory?.planted) {
    const planted = await DeviceKeys.generate();
    Object.assign(chloe.entry, {
      ...planted.publicKeys.toJson(),
      certificate: certificate(planted, "chloe", "FRA"),
    });
  }
  const granted: SealedGrant[] = [];
  const decisions: { verb: string; reason: string }[] = [];
  let conflict = options.conflictOnce ?? false;
  const calls: string[] = [];
  const api = new Api(ORIGIN, async (input, init) => {
    const route = `${init.method} ${input.slice(ORIGIN.length)}`;
    calls.push(route);
    const body = init.body ? JSON.parse(init.body as string) : undefined;
    const json = (status: number, answer: unknown) =>
      new Response(JSON.stringify(answer), { status });
    if (route === "GET /v1/releases") return json(200, [request]);
    const bundle = /^GET \/v1\/devices\/([^/]+)\/transparency\?old=(\d+)$/.exec(route);
    if (bundle) return json(200, log.bundle(bundle[1]!, log.latest(), Number(bundle[2])));
    if (route === `GET /v1/channels/${CHANNEL}/roster`) {
      return json(
        200,
        [sam, dora, bob, chloe].map((m) => m.entry),
      );
    }
    const paged = /^GET \/v1\/channels\/[^/]+\/messages\?after=(\d+)&limit=100$/.exec(route);
    if (paged) {
      const items = Number(paged[1]) < 1 ? [delivery("device-dora")] : [];
      return json(200, { items, cursor: 1, more: false });
    }
    // OTHER: a version the server answers with VERSION's, whole and genuine.
    if (
      route === `GET /v1/documents/versions/${VERSION}` ||
      route === `GET /v1/documents/versions/${OTHER}`
    ) {
      return json(200, {
        channel_id: CHANNEL,
        label: NARROW,
        version: { header: document.header, trailer: document.trailer },
        audience: {
          header: audience.header,
          signature: audience.signature,
          envelope: audience.envelopes["device-dora"],
        },
        sender_certificate: sam.entry.certificate,
        grant: null,
      });
    }
    if (route === `GET /v1/channels/${CHANNEL}`) {
      return json(200, { id: CHANNEL, ceiling_canonical: canonical("NATO SECRET") });
    }
    const decided = /^POST \/v1\/releases\/[^/]+\/(approve|refuse)$/.exec(route);
    if (decided) {
      decisions.push({ verb: decided[1]!, reason: body.reason });
      return json(200, { ...request, status: decided[1] === "approve" ? "approved" : "refused" });
    }
    if (route === `POST /v1/releases/${REQUEST}/grant`) {
      granted.push(body.grant);
      if (conflict) {
        conflict = false;
        return json(409, { detail: "1 newly eligible device(s) are missing from the grant" });
      }
      return json(201, { ...request, status: "granted" });
    }
    return json(404, { detail: `no route ${route}` });
  });
  api.setToken("token");
  const held = options.directory?.forked
    ? { size: log.latest(), root: b64uEncode(new Uint8Array(32).fill(9)) }
    : null;
  let pin = { vkey: V.vkey as string, checkpoint: held };
  const pins = {
    load: async () => structuredClone(pin),
    change: async (change: (p: typeof pin) => typeof pin | null) => {
      pin = change(structuredClone(pin)) ?? pin;
    },
  };
  const transparency = options.directory
    ? await DeviceTransparency.fromStore(api, pins, { now: () => 0, sleep: async () => {} })
    : null;
  const releases = new Releases(
    api,
    { userId: "dora", deviceId: "device-dora", nationality: "USA", roles: ["disclosure_officer"] },
    dora.reader,
    transparency,
  );
  return {
    sam,
    dora,
    bob,
    chloe,
    request,
    releases,
    granted,
    decisions,
    delivery,
    document,
    calls,
  };
}

test("a request is described with what the page checked, its message opened", async () => {
  const s = await scene();
  const [request] = await s.releases.list();
  assert.ok(s.releases.decides(request!));
  const context = await s.releases.describe(request!);
  assert.deepEqual(context.problems, []);
  assert.equal(context.requester, "bob (GBR)");
  assert.equal(context.banner, NARROW);
  assert.equal(context.requestedBanner, WIDE);
  assert.equal(context.colour, "#c8102e");
  assert.deepEqual(context.added, ["FRA"]);
  assert.equal(context.holds, true);
  assert.equal(context.message?.text, "Convoy leaves at 06:00");
  assert.equal(context.message?.sender, "sam");
  // Bob may not decide his own request, nor anyone but a USA disclosure officer.
  const asBob = new Releases(
    new Api(ORIGIN),
    { userId: "bob", deviceId: "device-bob", nationality: "GBR", roles: ["disclosure_officer"] },
    s.bob.reader,
  );
  assert.equal(asBob.decides(request!), false);
});

test("a release is asked for as attache release request asks, and nothing is sent without a nation", async () => {
  assert.deepEqual(nationsToAdd(" fra, eu  FRA,,deu "), ["FRA", "EU", "DEU"]);
  assert.deepEqual(nationsToAdd(" , "), []);
  const bob = await member("bob", "GBR");
  const sent: { route: string; body: unknown }[] = [];
  const api = new Api(ORIGIN, async (input, init) => {
    const body = init.body ? JSON.parse(init.body as string) : undefined;
    sent.push({ route: `${init.method} ${input.slice(ORIGIN.length)}`, body });
    return new Response(
      JSON.stringify({ id: REQUEST, label: NARROW, requested_label: WIDE, originator: "USA" }),
      { status: 201 },
    );
  });
  api.setToken("token");
  const releases = new Releases(
    api,
    { userId: "bob", deviceId: "device-bob", nationality: "GBR", roles: ["officer"] },
    bob.reader,
  );
  const made = await releases.request("message", OTHER, ["FRA"], "FRA leads the cell");
  assert.equal(made.requested_label, WIDE);
  assert.deepEqual(sent, [
    {
      route: "POST /v1/releases",
      body: { item_type: "message", item_id: OTHER, add: ["FRA"], reason: "FRA leads the cell" },
    },
  ]);
  await assert.rejects(releases.request("message", OTHER, [], ""), ReleaseError);
  await assert.rejects(releases.request("channel", OTHER, ["FRA"], ""), ReleaseError);
  assert.equal(sent.length, 1);
});

test("approved, the message's key is sealed to the newly eligible device alone, and opens there", async () => {
  const s = await scene({ conflictOnce: true });
  await s.releases.approve(REQUEST, "agreed");
  assert.deepEqual(s.decisions, [{ verb: "approve", reason: "agreed" }]);
  const done = await s.releases.grant({ ...s.request, status: "approved" });
  assert.equal(done.request.status, "granted");
  assert.deepEqual(done.people, ["chloe (FRA)"]);
  assert.deepEqual(done.devices, ["device-chloe"]);
  // Sealed afresh after the 409, to the same single device, under the approved labels.
  assert.equal(s.granted.length, 2);
  const grant = s.granted[1]!;
  const header = checkGrantHeader(grant.header);
  assert.deepEqual(header.devices, ["device-chloe"]);
  assert.deepEqual(Object.keys(grant.envelopes), ["device-chloe"]);
  assert.equal(header.requestId, REQUEST);
  assert.equal(header.grantorDevice, "device-dora");
  assert.deepEqual(header.previousLabel, canonical(NARROW));
  assert.deepEqual(header.label, canonical(WIDE));

  // Chloe's page opens it as the server delivers it to her: the grant, no audience envelope.
  const item = {
    ...s.delivery("device-chloe"),
    label: WIDE,
    grant: {
      header: grant.header,
      signature: grant.signature,
      envelope: grant.envelopes["device-chloe"],
      grantor_certificate: s.dora.entry.certificate,
    },
  };
  assert.equal(item.audience.envelope, null);
  const opened = await openItem(item, s.chloe.reader);
  assert.equal(opened.problem, null);
  assert.equal(opened.text, "Convoy leaves at 06:00");
  assert.equal(opened.banner, WIDE);
  assert.equal(opened.releasedBy, "dora");
  assert.equal(opened.originalBanner, NARROW);
  assert.equal(opened.sender, "sam");

  const tampered: [string, Record<string, unknown>, RegExp][] = [
    ["the old banner", { ...item, label: NARROW }, /but dora released it as/],
    [
      "another grantor",
      { ...item, grant: { ...item.grant, grantor_certificate: s.sam.entry.certificate } },
      /the grantor's certificate is for another/,
    ],
    [
      "no grantor certificate",
      { ...item, grant: { ...item.grant, grantor_certificate: null } },
      /the grantor's device cannot be trusted/,
    ],
    [
      "a wider label",
      {
        ...item,
        label: "NATO SECRET//REL TO USA, GBR, FRA, DEU",
        grant: {
          ...item.grant,
          header: { ...grant.header, label: canonical("NATO SECRET//REL TO USA, GBR, FRA, DEU") },
        },
      },
      /does not verify or decrypt/,
    ],
  ];
  for (const [name, changed, problem] of tampered) {
    const warning = await openItem(changed, s.chloe.reader);
    assert.equal(warning.verified, false, name);
    assert.equal(warning.text, null, name);
    assert.match(warning.problem ?? "", problem, name);
  }
});

test("a request whose labels do not check says so; one not approved is not carried out", async () => {
  const s = await scene();
  const shown = await s.releases.describe({ ...s.request, label: "<b>NATO UNCLASSIFIED</b>" });
  assert.match(shown.problems.join(" "), /The server shows the item's label as "<b>NATO/);
  const narrower = await s.releases.describe({
    ...s.request,
    requested_label: "NATO SECRET//REL TO USA",
    requested_label_canonical: canonical("NATO SECRET//REL TO USA"),
  });
  assert.match(narrower.problems.join(" "), /not a release of the item's: .* drops GBR/);
  assert.deepEqual(narrower.added, []);
  await assert.rejects(
    s.releases.grant(s.request),
    (error: unknown) => error instanceof ReleaseError && /is pending/.test(error.message),
  );
  assert.equal(s.granted.length, 0);
  // Released before (the label now wider than the one this device's key came with): fine.
  const DEU = "NATO SECRET//REL TO USA, GBR, FRA, DEU";
  const again = await s.releases.describe({
    ...s.request,
    label: WIDE,
    label_canonical: canonical(WIDE),
    requested_label: DEU,
    requested_label_canonical: canonical(DEU),
  });
  assert.deepEqual(again.problems, []);
  assert.deepEqual(again.added, ["DEU"]);
  // A request about a label the message never had is said so.
  const LOWER = "NATO CONFIDENTIAL//REL TO USA, GBR";
  const unrelated = await s.releases.describe({
    ...s.request,
    label: LOWER,
    label_canonical: canonical(LOWER),
    requested_label: `${LOWER}, FRA`,
    requested_label_canonical: canonical(`${LOWER}, FRA`),
  });
  assert.match(unrelated.problems.join(" "), /is not a release of it: .* changes level/);
  // Not held here: described, not carried out.
  const other = await s.releases.describe({
    ...s.request,
    item_id: "22222222-3333-4444-8555-000000000002",
  });
  assert.equal(other.holds, false);
  assert.match(other.itemNote ?? "", /this device holds no message 2{8}-/);
  // The channel's deliveries were paged through once, from where the last scan stopped, and
  // its roster read once for every description.
  assert.deepEqual(
    s.calls.filter((c) => c.includes("/messages?")),
    [
      `GET /v1/channels/${CHANNEL}/messages?after=0&limit=100`,
      `GET /v1/channels/${CHANNEL}/messages?after=1&limit=100`,
    ],
  );
  assert.equal(s.calls.filter((c) => c.endsWith("/roster")).length, 1);
});

test("a document version's key, proven by its signed trailer, is released the same way", async () => {
  const s = await scene();
  const request = {
    ...s.request,
    item_type: "document_version",
    item_id: VERSION,
    status: "approved",
  };
  const context = await s.releases.describe(request);
  assert.deepEqual(context.problems, []);
  assert.equal(context.holds, true);
  assert.equal(context.message, null);
  assert.deepEqual(context.document, { filename: "brief <1>.pdf", size: 70_000, sender: "sam" });
  const done = await s.releases.grant(request);
  assert.deepEqual(done.devices, ["device-chloe"]);
  const grant = s.granted[0]!;
  const header = checkGrantHeader(grant.header);
  assert.equal(header.itemType, "document_version");
  checkGrantItem(header, s.document.header);
  // Chloe opens the grant and decrypts the version with the key it holds.
  const key = await openGrant(
    s.chloe.keys,
    "device-chloe",
    grant.header,
    grant.signature,
    grant.envelopes["device-chloe"]!,
    s.dora.keys.publicKeys.signingKey,
  );
  const decryptor = await DocumentDecryptor.create(
    s.document.header,
    s.document.trailer,
    key,
    s.sam.keys.publicKeys.signingKey,
  );
  const plain: Uint8Array[] = [];
  for await (const chunk of decryptor.decryptChunks([s.document.ciphertext])) plain.push(chunk);
  assert.deepEqual(concat(...plain), s.document.content);
});

test("a genuine version other than the one asked about is refused, and nothing is sealed", async () => {
  const s = await scene();
  const request = {
    ...s.request,
    item_type: "document_version",
    item_id: OTHER,
    status: "approved",
  };
  const context = await s.releases.describe(request);
  assert.equal(context.holds, false);
  assert.equal(context.document, null);
  assert.ok(
    context.itemNote?.includes(`the server gave version ${VERSION} for ${OTHER}`),
    String(context.itemNote),
  );
  await assert.rejects(s.releases.grant(request), /the server gave version/);
  assert.equal(s.granted.length, 0);
});

test("with the key directory checked, a grant is sealed only to devices it vouches for", async () => {
  // Honest: chloe's device is shown active with its keys, and is granted the message's key.
  const honest = await scene({ directory: {} });
  const done = await honest.releases.grant({ ...honest.request, status: "approved" });
  assert.deepEqual(done.devices, ["device-chloe"]);
  assert.ok(
    honest.calls.some((call) => call.startsWith("GET /v1/devices/device-chloe/transparency?")),
  );
  // Keys the log never registered, under a certificate FRA's key signed: nothing sealed.
  const planted = await scene({ directory: { planted: true } });
  await assert.rejects(
    planted.releases.grant({ ...planted.request, status: "approved" }),
    (error: unknown) =>
      error instanceof ReleaseError &&
      /no device in the channel is newly eligible/.test(error.message),
  );
  assert.deepEqual(planted.granted, []);
  // A checkpoint forked from the one kept: refused outright, nothing sealed.
  const forked = await scene({ directory: { forked: true } });
  await assert.rejects(
    forked.releases.grant({ ...forked.request, status: "approved" }),
    (error: unknown) =>
      error instanceof ReleaseError &&
      error.message.startsWith("the server's key directory is refused: ") &&
      /the log forked/.test(error.message),
  );
  assert.deepEqual(forked.granted, []);
});
