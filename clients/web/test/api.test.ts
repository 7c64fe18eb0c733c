/**
 * The page's API helper (src/app/api.ts): `segment`, as clients/sdk/_client.py's `_segment`,
 * makes one URL path segment of a name or id, refusing "", "." and "..", which would name the
 * collection or be resolved away as dot segments (RFC 3986 §5.2.4) and so reach another route,
 * before anything is sent; the modules that build paths use it.
 */
import assert from "node:assert/strict";
import { test } from "node:test";

import { Api, segment } from "../src/app/api.js";
import { openVersion } from "../src/app/documents.js";
import type { Reader } from "../src/app/messages.js";
import { Sender, type ChannelInfo, type Me } from "../src/app/send.js";
import { catalogFromToml } from "../src/protocol/labels.js";
import { repoText } from "./vectors.js";

const ORIGIN = "http://127.0.0.1:8600";

test("a segment is its value percent-encoded, dots and all, so it stays one segment", () => {
  assert.equal(segment("7c9e1a3b-5d7f-4b2d"), "7c9e1a3b-5d7f-4b2d");
  assert.equal(segment("a/b?c#d e"), "a%2Fb%3Fc%23d%20e");
  assert.equal(segment("%2e%2e"), "%252e%252e");
  for (const dotted of ["...", ".a", "a.", "..a", "a..b", ". ."]) {
    assert.equal(segment(dotted), encodeURIComponent(dotted));
  }
  // What the URL keeps: the path asked is the path the server sees.
  assert.equal(
    new URL(`${ORIGIN}/v1/channels/${segment("...")}/roster`).pathname,
    "/v1/channels/.../roster",
  );
});

test("an empty segment, '.' and '..' are refused, saying why", () => {
  assert.throws(() => segment(""), { name: "Error", message: /empty name or id names nothing/ });
  for (const dots of [".", ".."]) {
    assert.throws(() => segment(dots), {
      name: "Error",
      message: `"${dots}" is not a name or id: a URL would resolve it away`,
    });
  }
  // Why: unencoded as it is, ".." would take the request to another route.
  assert.equal(
    new URL(`${ORIGIN}/v1/channels/${encodeURIComponent("..")}/roster`).pathname,
    "/v1/roster",
  );
});

/** An Api whose every request is a failure of the test: nothing may be sent. */
function silent(): { api: Api; calls: string[] } {
  const calls: string[] = [];
  const api = new Api(ORIGIN, async (input) => {
    calls.push(input);
    return new Response(JSON.stringify({ detail: "nothing should be asked" }), { status: 500 });
  });
  return { api, calls };
}

test("a document version or a channel of '..' is refused before anything is sent", async () => {
  const { api, calls } = silent();
  await assert.rejects(openVersion(api, {} as Reader, ".."), {
    message: '".." is not a name or id: a URL would resolve it away',
  });
  const catalog = catalogFromToml(repoText("protocol", "catalogs", "default.toml"));
  const me = { userId: "user-bob", deviceId: "device-bob", nationality: "GBR" } as Me;
  const sender = new Sender(api, me, {} as never, catalog);
  const channel = { id: "..", name: "liaison" } as ChannelInfo;
  await assert.rejects(sender.preview(channel, "NATO SECRET//REL TO GBR"), {
    message: '".." is not a name or id: a URL would resolve it away',
  });
  assert.deepEqual(calls, []);
});
