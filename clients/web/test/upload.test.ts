/**
 * Document uploads from the page (src/app/documents.ts `upload`), as clients/sdk/documents.py's
 * `Documents.put`: against a server the test plays (which keeps what it is sent, on whole
 * encrypted chunks as server/documents keeps it), alice (USA) uploads a file under REL TO USA,
 * GBR; the audience holds alice's and bob's devices and not chloe's (FRA); the file is read in
 * 64 KiB slices and sent in PUTs of whole chunks at the offsets the server stands at; and what
 * the server holds opens and verifies, byte for byte, with Python's protocol/ as the SDK opens
 * a version (test/python_uploads.py), which refuses it with one byte changed. A dropped line
 * and a busy server (429) are resumed from where the server stands. A file name that is a path,
 * a label the catalog does not know, a file that cannot be read and a server's refusal each
 * fail with a plain sentence, and an upload begun is discarded.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { test } from "node:test";

import { sha256 } from "@noble/hashes/sha2.js";

import { Api, ApiError } from "../src/app/api.js";
import {
  ENCRYPTED_CHUNK_SIZE,
  UploadFailed,
  upload,
  type UploadSource,
} from "../src/app/documents.js";
import { SendError, Sender, type ChannelInfo } from "../src/app/send.js";
import { b64uEncode, concat, toHex } from "../src/protocol/bytes.js";
import { DeviceKeys } from "../src/protocol/keys.js";
import { catalogFromToml, parseLabel } from "../src/protocol/labels.js";
import { ciphertextSize } from "../src/protocol/stream.js";
import { Authorities } from "./authorities.js";
import { ROOT, repoText } from "./vectors.js";

const ORIGIN = "http://127.0.0.1:8600";
const PYTHON = process.env.ATTACHE_PYTHON;
const catalog = catalogFromToml(repoText("protocol", "catalogs", "default.toml"));
const AUTHORITIES = new Authorities(["USA", "GBR", "FRA"]);
const LABEL = "NATO SECRET//REL TO USA, GBR";
const CHANNEL: ChannelInfo = {
  id: "0b0e7f4e-7f39-4a4b-9d1f-0c2b0a7e6d11",
  name: "nato-liaison",
  ceiling_canonical: parseLabel("NATO SECRET", catalog, null),
  labels: ["NATO SECRET", LABEL],
  default_label: "NATO SECRET",
};

type Json = Record<string, any>;

interface Played {
  /** Called before a PUT is stored: may throw (a dropped line) or answer instead. */
  put?: (offset: number, body: Uint8Array, stored: Uint8Array) => Response | "drop" | undefined;
  begin?: () => Response | undefined;
}

async function scene(played: Played = {}) {
  const people = await Promise.all(
    (
      [
        ["alice", "USA"],
        ["bob", "GBR"],
        ["chloe", "FRA"],
      ] as const
    ).map(async ([user, nation]) => {
      const keys = await DeviceKeys.generate();
      return { user, nation, keys };
    }),
  );
  const [alice, bob] = people;
  const roster = people.map(({ user, nation, keys }) => ({
    device_id: `device-${user}`,
    user_id: user,
    username: user,
    nationality: nation,
    ...keys.publicKeys.toJson(),
    certificate: AUTHORITIES.certificate(keys, user, nation) as unknown,
  }));
  const server = {
    calls: [] as string[],
    audiences: [] as Json[],
    header: null as Json | null,
    stored: new Uint8Array() as Uint8Array,
    puts: [] as { offset: number; length: number }[],
    trailer: null as Json | null,
    discarded: false,
  };
  const json = (status: number, answer: unknown) =>
    new Response(JSON.stringify(answer), { status });
  const versionRead = () => ({
    id: server.header!.version_id,
    document_id: server.header!.document_id,
    number: 1,
    label: LABEL,
    status: server.trailer ? "complete" : "uploading",
    size: server.header!.size,
    ciphertext_size: ciphertextSize(server.header!.size),
    received: server.stored.length,
  });
  const api = new Api(ORIGIN, async (input, init) => {
    const path = input.slice(ORIGIN.length);
    const route = `${init.method} ${path.split("?")[0]}`;
    server.calls.push(route);
    const version = server.header?.version_id;
    if (route === `GET /v1/channels/${CHANNEL.id}/roster`) {
      return new Response(JSON.stringify(roster), { status: 200, headers: { ETag: '"r1"' } });
    }
    if (route === `POST /v1/channels/${CHANNEL.id}/audiences`) {
      const body = JSON.parse(init.body as string);
      server.audiences.push(body);
      return json(201, { audience_id: body.header.audience_id, devices: body.header.devices });
    }
    if (route === `POST /v1/channels/${CHANNEL.id}/documents`) {
      const refused = played.begin?.();
      if (refused) return refused;
      server.header = JSON.parse(init.body as string).header;
      assert.equal(server.header!.audience_id, server.audiences.at(-1)!.header.audience_id);
      return json(201, versionRead());
    }
    if (route === `PUT /v1/uploads/${version}/content`) {
      const offset = Number(new URL(input).searchParams.get("offset"));
      const body = init.body as Uint8Array;
      const answer = played.put?.(offset, body, server.stored);
      if (answer === "drop") {
        // The line drops after part of the body: the server keeps its whole chunks only.
        const kept = ENCRYPTED_CHUNK_SIZE;
        server.stored = concat(server.stored, body.slice(0, kept));
        throw new TypeError("fetch failed");
      }
      if (answer) return answer;
      if (offset !== server.stored.length) {
        return json(409, {
          detail: `the upload stands at byte ${server.stored.length}; resume from there`,
          received: server.stored.length,
        });
      }
      server.puts.push({ offset, length: body.length });
      server.stored = concat(server.stored, body.slice());
      return json(200, versionRead());
    }
    if (route === `GET /v1/uploads/${version}`) return json(200, versionRead());
    if (route === `POST /v1/uploads/${version}/complete`) {
      server.trailer = JSON.parse(init.body as string).trailer;
      return json(200, versionRead());
    }
    if (route === `DELETE /v1/uploads/${version}`) {
      server.discarded = true;
      return new Response(null, { status: 204 });
    }
    return json(404, { detail: `no route ${route}` });
  });
  const me = { userId: "alice", deviceId: "device-alice", nationality: "USA", keys: alice!.keys };
  const sender = new Sender(api, me, AUTHORITIES.pins, catalog);
  /** What bob's device (a recipient) makes of what the server holds, in Python. */
  const python = (tamper: number | null = null) => {
    const audience = server.audiences.at(-1)!;
    const result = spawnSync(PYTHON!, [join(ROOT, "clients", "web", "test", "python_uploads.py")], {
      cwd: ROOT,
      env: { ...process.env, PYTHONPATH: ROOT },
      input: JSON.stringify({
        device_id: "device-bob",
        device_private_hex: toHex(bob!.keys.toPrivateBytes()),
        sender_signing_key_hex: toHex(alice!.keys.publicKeys.signingKey),
        audience: {
          header: audience.header,
          signature: audience.signature,
          envelope: audience.envelopes["device-bob"],
        },
        header: server.header,
        trailer: server.trailer,
        ciphertext: b64uEncode(server.stored),
        tamper,
      }),
      encoding: "utf-8",
    });
    assert.equal(result.status, 0, result.stderr);
    return JSON.parse(result.stdout);
  };
  return { api, sender, me, server, python };
}

/** A file of `size` bytes, recording every slice read. */
function file(size: number, name = "agenda <b>.pdf", fail?: (start: number) => boolean) {
  const content = Uint8Array.from({ length: size }, (_, i) => (i * 31 + (i >> 11)) % 256);
  const blob = new Blob([content]);
  const reads: number[] = [];
  const source: UploadSource = {
    name,
    size,
    type: "application/pdf",
    slice(start, end) {
      reads.push(end - start);
      if (fail?.(start))
        return { arrayBuffer: () => Promise.reject(new Error("NotReadableError")) };
      return blob.slice(start, end);
    },
  };
  return { content, source, reads };
}

const python = {
  skip: PYTHON === undefined ? "ATTACHE_PYTHON is not set (make web-check sets it)" : false,
};

test("an upload from the page opens and verifies, byte for byte, with Python", python, async () => {
  const { api, sender, me, server, python: open } = await scene();
  const { content, source, reads } = file(300_000);
  const seen: number[] = [];
  const piece = 2 * ENCRYPTED_CHUNK_SIZE;
  const uploaded = await upload(api, sender, me, CHANNEL, source, {
    label: LABEL,
    pieceSize: piece,
    progress: (done) => seen.push(done),
  });
  assert.deepEqual(
    [uploaded.filename, uploaded.size, uploaded.banner, uploaded.number],
    ["agenda <b>.pdf", 300_000, LABEL, 1],
  );
  assert.equal(uploaded.versionId, server.header!.version_id);
  // Sealed to alice's and bob's devices, never chloe's (FRA is not in REL TO USA, GBR).
  assert.deepEqual(server.audiences.at(-1)!.header.devices, ["device-alice", "device-bob"]);
  // Read a 64 KiB slice at a time; sent in pieces of whole chunks, each where the server stood.
  assert.ok(reads.every((n) => n <= 65536));
  assert.equal(reads.length, 5);
  assert.deepEqual(
    server.puts.map((p) => p.offset),
    [0, piece, 2 * piece],
  );
  assert.ok(server.puts.every((p) => p.length <= piece));
  assert.equal(server.stored.length, ciphertextSize(300_000));
  assert.deepEqual(seen, [131072, 262144, 300000, 300000]);
  assert.equal(server.discarded, false);
  const opened = open();
  assert.deepEqual(opened, {
    sha256: toHex(sha256(content)),
    filename: "agenda <b>.pdf",
    size: 300_000,
    content_type: "application/octet-stream",
    recipients: ["device-alice", "device-bob"],
  });
  // One byte of the stored ciphertext changed: Python refuses it, saying which chunk.
  assert.match(open(70_000).refused, /chunk 1/);
});

test(
  "a dropped line and a busy server are resumed from where the server stands",
  python,
  async () => {
    let drops = 1;
    let busy = 1;
    const {
      api,
      sender,
      me,
      server,
      python: open,
    } = await scene({
      put: (offset) => {
        if (offset > 0 && drops > 0) {
          drops -= 1;
          return "drop";
        }
        if (offset > 2 * ENCRYPTED_CHUNK_SIZE && busy > 0) {
          busy -= 1;
          return new Response(JSON.stringify({ detail: "busy", retry_after: 5 }), { status: 429 });
        }
        return undefined;
      },
    });
    const { content, source } = file(400_000);
    const waits: number[] = [];
    await upload(api, sender, me, CHANNEL, source, {
      label: LABEL,
      pieceSize: 2 * ENCRYPTED_CHUNK_SIZE,
      sleep: async (seconds) => void waits.push(seconds),
    });
    assert.deepEqual(waits, [5]);
    assert.ok(server.calls.filter((c) => c.startsWith("GET /v1/uploads/")).length >= 2);
    assert.equal(open().sha256, toHex(sha256(content)));
  },
);

test("bad input is refused with a plain sentence, and an upload begun is discarded", async () => {
  {
    const { api, sender, me, server } = await scene();
    await assert.rejects(
      upload(api, sender, me, CHANNEL, file(10, "../minutes.pdf").source, { label: LABEL }),
      (error: Error) => {
        assert.ok(error instanceof UploadFailed);
        assert.equal(
          error.message,
          "../minutes.pdf cannot be uploaded: document header field filename must be a plain " +
            "name, not a path",
        );
        return true;
      },
    );
    await assert.rejects(
      upload(api, sender, me, CHANNEL, file(10).source, { label: "NATO SECRET//REL TO ZZZ" }),
      (error: Error) =>
        error instanceof SendError && /label NATO SECRET\/\/REL TO ZZZ/.test(error.message),
    );
    assert.deepEqual(server.calls, []); // nothing was sent or sealed
  }
  {
    const { api, sender, me, server } = await scene();
    const unreadable = file(200_000, "brief.pdf", (start) => start >= 65536).source;
    await assert.rejects(upload(api, sender, me, CHANNEL, unreadable), (error: Error) => {
      assert.ok(error instanceof UploadFailed);
      assert.match(error.message, /^brief\.pdf could not be read \(it may have changed/);
      return true;
    });
    assert.equal(server.discarded, true);
    assert.equal(server.trailer, null);
  }
  {
    const { api, sender, me, server } = await scene({
      begin: () =>
        new Response(JSON.stringify({ title: "Forbidden", detail: "you may not upload <here>" }), {
          status: 403,
        }),
    });
    await assert.rejects(upload(api, sender, me, CHANNEL, file(10).source), (error: Error) => {
      assert.ok(error instanceof ApiError);
      assert.equal(error.message, "you may not upload <here>");
      return true;
    });
    assert.ok(!server.calls.some((c) => c.startsWith("PUT")));
  }
});
