/**
 * Document downloads in the page (src/app/documents.ts), as clients/sdk/documents.py's
 * `Documents.get`: against a server the test plays, a version bob sealed opens for chloe with
 * what its sender signed, and streams, in pieces of odd sizes, chunk by chunk into a sink that
 * is closed only once everything verified; a changed byte, a cut or lengthened stream abort
 * the sink and never close it; a banner, certificate, audience or envelope that does not
 * check refuses the version before anything is fetched. A version released to chloe by a grant
 * opens under the wider label, with who released it, and only when the server shows that label.
 */
import assert from "node:assert/strict";
import { test } from "node:test";

import { Api } from "../src/app/api.js";
import { DocumentRefused, download, openVersion, type Sink } from "../src/app/documents.js";
import type { Reader } from "../src/app/messages.js";
import { concat } from "../src/protocol/bytes.js";
import type { JsonObject } from "../src/protocol/canonical.js";
import { createAudience } from "../src/protocol/envelopes.js";
import { createGrant } from "../src/protocol/grants.js";
import { DocumentEncryptor } from "../src/protocol/stream.js";
import { DeviceKeys } from "../src/protocol/keys.js";
import { catalogFromToml, parseLabel } from "../src/protocol/labels.js";
import { Authorities } from "./authorities.js";
import { repoText } from "./vectors.js";

const ORIGIN = "http://127.0.0.1:8600";
const CHANNEL = "0b0e7f4e-7f39-4a4b-9d1f-0c2b0a7e6d11";
const VERSION = "7c9e1a3b-5d7f-4b2d-9e4f-6a8c0e2b4d61";
const NARROW = "NATO SECRET//REL TO GBR";
const WIDE = "NATO SECRET//REL TO GBR, FRA";
const catalog = catalogFromToml(repoText("protocol", "catalogs", "default.toml"));
const AUTHORITIES = new Authorities(["GBR", "FRA"]);
const PINS = AUTHORITIES.pins;

const certificate = AUTHORITIES.certificate.bind(AUTHORITIES);

type Change = (access: Record<string, any>, ciphertext: Uint8Array) => Uint8Array;

/** Bob (GBR) seals a 200,000-byte version for himself and chloe (FRA); `change` plays a
 * server that alters what it serves. */
async function scene(change: Change = (_, c) => c, granted = false) {
  const bob = await DeviceKeys.generate();
  const chloe = await DeviceKeys.generate();
  const { sealed: audience, audienceKey } = await createAudience(bob, {
    audienceId: "11111111-2222-4333-8444-555555555555",
    container: CHANNEL,
    creatorUser: "bob",
    creatorDevice: "device-bob",
    recipients: [
      { deviceId: "device-bob", keys: bob.publicKeys },
      ...(granted ? [] : [{ deviceId: "device-chloe", keys: chloe.publicKeys }]),
    ],
    createdAt: "2026-11-26T10:00:00Z",
  });
  const content = Uint8Array.from({ length: 200_000 }, (_, i) => (i * 31 + (i >> 9)) % 256);
  const header: JsonObject = {
    type: "attache.document",
    version: 1,
    document_id: "3f5e7a9c-1b2d-4e6f-8a0b-c2d4e6f8a0b1",
    version_id: VERSION,
    version_number: 1,
    container: CHANNEL,
    sender_user: "bob",
    sender_device: "device-bob",
    audience_id: audience.header.audience_id as string,
    created_at: "2026-11-26T10:01:30Z",
    label: parseLabel(granted ? NARROW : "NATO SECRET", catalog, "GBR") as unknown as JsonObject,
    filename: "plan <1>.pdf",
    content_type: "application/pdf",
    size: content.length,
    chunk_size: 65536,
  };
  const encryptor = await DocumentEncryptor.create(bob, audienceKey, header);
  const chunks: Uint8Array[] = [];
  for await (const chunk of encryptor.encryptChunks([content])) chunks.push(chunk);
  const access: Record<string, any> = {
    channel_id: CHANNEL,
    label: "NATO SECRET",
    version: { label: "NATO SECRET", header, trailer: encryptor.finish() },
    audience: {
      header: audience.header,
      signature: audience.signature,
      envelope: audience.envelopes["device-chloe"],
    },
    sender_certificate: certificate(bob, "bob", "GBR"),
    grant: null,
  };
  if (granted) {
    // Bob releases the version to FRA: its own key sealed to chloe's device.
    const sealed = await createGrant(bob, encryptor.itemKey, {
      grantId: "9a9a9a9a-0000-4000-8000-000000000001",
      requestId: "9a9a9a9a-0000-4000-8000-000000000002",
      itemType: "document_version",
      itemId: VERSION,
      container: CHANNEL,
      grantorUser: "bob",
      grantorDevice: "device-bob",
      previousLabel: header.label as JsonObject,
      label: parseLabel(WIDE, catalog, "GBR") as unknown as JsonObject,
      recipients: [{ deviceId: "device-chloe", keys: chloe.publicKeys }],
      createdAt: "2026-11-26T10:05:00Z",
    });
    access.label = WIDE;
    access.version.label = NARROW;
    access.audience.envelope = null;
    access.grant = {
      header: sealed.header,
      signature: sealed.signature,
      envelope: sealed.envelopes["device-chloe"],
      grantor_certificate: certificate(bob, "bob", "GBR"),
    };
  }
  const ciphertext = change(access, concat(...chunks));
  const calls: string[] = [];
  const api = new Api(ORIGIN, async (input, init) => {
    const route = `${init.method} ${input.slice(ORIGIN.length)}`;
    calls.push(route);
    if (route === `GET /v1/documents/versions/${VERSION}`) {
      return new Response(JSON.stringify(access), { status: 200 });
    }
    if (route === `GET /v1/documents/versions/${VERSION}/content`) {
      // Pieces of an odd size, as the network cuts them.
      let at = 0;
      const body = new ReadableStream<Uint8Array>({
        pull(controller) {
          if (at >= ciphertext.length) return controller.close();
          controller.enqueue(ciphertext.slice(at, at + 10_007));
          at += 10_007;
        },
      });
      return new Response(body, { status: 200 });
    }
    return new Response(JSON.stringify({ detail: `no route ${route}` }), { status: 404 });
  });
  const reader: Reader = { keys: chloe, deviceId: "device-chloe", pins: PINS, catalog };
  return { api, reader, content, calls };
}

function memorySink() {
  const written: Uint8Array[] = [];
  const state = { closed: false, aborted: false, largest: 0 };
  const sink: Sink = {
    write: async (chunk) => {
      state.largest = Math.max(state.largest, chunk.length);
      written.push(chunk.slice());
    },
    close: async () => {
      state.closed = true;
    },
    abort: async () => {
      state.aborted = true;
    },
  };
  return { sink, written, state };
}

test("a version opens with what its sender signed and downloads chunk by chunk", async () => {
  const { api, reader, content } = await scene();
  const opened = await openVersion(api, reader, VERSION);
  assert.deepEqual(
    [opened.filename, opened.size, opened.banner, opened.colour, opened.sender, opened.number],
    ["plan <1>.pdf", 200_000, "NATO SECRET", "#c8102e", "bob", 1],
  );
  const { sink, written, state } = memorySink();
  const seen: number[] = [];
  await download(api, opened, sink, (done) => seen.push(done));
  assert.deepEqual(state, { closed: true, aborted: false, largest: 65536 });
  assert.deepEqual(concat(...written), content);
  assert.deepEqual(seen, [65536, 131072, 196608, 200000]);
});

test("a changed, cut or lengthened download is aborted, never closed", async () => {
  const cases: [Change, RegExp][] = [
    [(_, c) => c.map((b, i) => (i === 70_000 ? b ^ 1 : b)), /chunk 1 does not open/],
    [(_, c) => c.slice(0, c.length - 1), /the ciphertext ended after/],
    [(_, c) => concat(c, new Uint8Array([0])), /more ciphertext than/],
  ];
  for (const [change, reason] of cases) {
    const { api, reader } = await scene(change);
    const opened = await openVersion(api, reader, VERSION);
    const { sink, state } = memorySink();
    await assert.rejects(download(api, opened, sink), (error: Error) => {
      assert.ok(error instanceof DocumentRefused);
      assert.match(error.message, /^plan <1>\.pdf failed verification and was discarded: /);
      assert.match(error.message, reason);
      return true;
    });
    assert.equal(state.closed, false);
    assert.equal(state.aborted, true);
  }
});

test("a version that does not check is refused before its content is fetched", async () => {
  const cases: [Change, RegExp][] = [
    [
      (a, c) => ((a.version.label = "NATO SECRET//REL TO GBR"), c),
      /label shown is not the one the sender's nation signed/,
    ],
    [(a, c) => ((a.sender_certificate = null), c), /the device has no certificate/],
    [
      (a, c) => ((a.audience.header = { ...a.audience.header, audience_id: VERSION }), c),
      /an audience its sender did not make/,
    ],
    [(a, c) => ((a.audience.envelope = null), c), /holds no key for the version/],
    [
      (a, c) => (
        (a.version.trailer = {
          ...a.version.trailer,
          signature: a.version.trailer.commitment + a.version.trailer.commitment,
        }),
        c
      ),
      /cannot be trusted/,
    ],
  ];
  for (const [change, reason] of cases) {
    const { api, reader, calls } = await scene(change);
    await assert.rejects(openVersion(api, reader, VERSION), (error: Error) => {
      assert.ok(error instanceof DocumentRefused, String(error));
      assert.match(error.message, reason);
      return true;
    });
    assert.ok(!calls.some((c) => c.endsWith("/content")));
  }
});

test("a version released by a grant opens under the wider label, and only as shown", async () => {
  const { api, reader, content } = await scene(undefined, true);
  const opened = await openVersion(api, reader, VERSION);
  assert.deepEqual(
    [opened.banner, opened.releasedBy, opened.originalBanner, opened.sharedBy],
    [WIDE, "bob", NARROW, null],
  );
  const { sink, written, state } = memorySink();
  await download(api, opened, sink);
  assert.equal(state.closed, true);
  assert.deepEqual(concat(...written), content);
  const shown = await scene((a, c) => ((a.label = NARROW), c), true);
  await assert.rejects(
    openVersion(shown.api, shown.reader, VERSION),
    /the label shown is not the one bob released it as/,
  );
});
