import assert from "node:assert/strict";
import { test } from "node:test";

import { fromUtf8 } from "../src/protocol/bytes.js";
import * as canonical from "../src/protocol/canonical.js";
import { b64uDecode, b64uEncode } from "../src/protocol/bytes.js";
import { repoText } from "./vectors.js";

test("the context strings are protocol/canonical.py's, one for one", () => {
  const python = Object.fromEntries(
    [...repoText("protocol", "canonical.py").matchAll(/^(CTX_[A-Z_]+) = "([^"]+)"$/gm)].map(
      (match) => [match[1], match[2]],
    ),
  );
  const ours = Object.fromEntries(
    Object.entries(canonical).filter(([name]) => name.startsWith("CTX_")),
  );
  assert.ok(Object.keys(python).length >= 29);
  assert.deepEqual(ours, python);
});

test("RFC 8785: sorted keys by UTF-16 unit, no whitespace, shortest numbers", () => {
  const encoded = canonical.canonicalJson({
    b: [1, 2.5, "é\u0007"],
    a: null,
    "\u20ac": true,
    "\ud83d\ude00": 1e-7,
  });
  assert.equal(fromUtf8(encoded), '{"a":null,"b":[1,2.5,"é\\u0007"],"€":true,"😀":1e-7}');
});

test("values JSON cannot carry exactly are refused", () => {
  for (const value of [Number.NaN, Infinity, 2 ** 53, "\ud800", { "\udc00": 1 }]) {
    assert.throws(() => canonical.canonicalJson([value]), canonical.CanonicalizationError);
  }
});

test("base64url is strict, as protocol/keys.py b64u_decode", () => {
  for (let n = 0; n < 40; n++) {
    const data = Uint8Array.from({ length: n }, (_, i) => (i * 37 + n) & 0xff);
    assert.deepEqual(b64uDecode(b64uEncode(data)), data);
  }
  assert.equal(b64uEncode(new Uint8Array([0xfb, 0xff])), "-_8");
  for (const bad of ["-_9", "AA==", "A", "AB+/", "AB CD"]) {
    assert.throws(() => b64uDecode(bad), /base64url/);
  }
});
