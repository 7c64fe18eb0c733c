import assert from "node:assert/strict";
import { test } from "node:test";

import { b64uEncode, concat, fromUtf8, toHex } from "../src/protocol/bytes.js";
import { canonicalJson } from "../src/protocol/canonical.js";
import { DeviceKeys } from "../src/protocol/keys.js";
import {
  ContentHasher,
  DocumentDecryptor,
  DocumentEncryptor,
  checkDocumentHeader,
  chunkNonce,
  documentKey,
  verifyDocument,
} from "../src/protocol/stream.js";
import { h, sha256Hex, vector } from "./vectors.js";

const V = vector("document_v1.json");
const senderKey = () => h(V.sender.signing_public_key);

function plaintext(): Uint8Array {
  return Uint8Array.from({ length: V.plaintext.size }, (_, i) => i % 251);
}

/** `data` in pieces of `size` bytes (the last shorter), as a network stream delivers it. */
function* pieces(data: Uint8Array, size: number): Generator<Uint8Array> {
  for (let i = 0; i < data.length; i += size) yield data.subarray(i, i + size);
}

async function collect(chunks: AsyncIterable<Uint8Array>): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  for await (const chunk of chunks) out.push(chunk);
  return out;
}

async function encryptVector(): Promise<{
  chunks: Uint8Array[];
  trailer: unknown;
  itemKey: Uint8Array;
}> {
  const keys = await DeviceKeys.fromPrivateBytes(
    concat(h(V.sender.signing_seed), h(V.sender.xwing_seed)),
  );
  const encryptor = await DocumentEncryptor.create(keys, h(V.audience_key_hex), V.header);
  const chunks = await collect(encryptor.encryptChunks(pieces(plaintext(), 4096)));
  return { chunks, trailer: encryptor.finish(), itemKey: encryptor.itemKey };
}

test("the header, its digest and the document-version key", async () => {
  assert.equal(sha256Hex(plaintext()), V.plaintext.sha256);
  assert.equal(fromUtf8(canonicalJson(V.header)), V.header_canonical);
  const checked = checkDocumentHeader(V.header);
  assert.equal(toHex(checked.headerDigest), V.header_digest_hex);
  assert.equal(checked.filename, "Compte rendu – réunion 2.pdf");
  assert.equal(toHex(await documentKey(h(V.audience_key_hex), V.header)), V.document_key_hex);
});

test("every chunk, the content hash and the trailer, byte for byte", async () => {
  const { chunks, trailer, itemKey } = await encryptVector();
  assert.equal(toHex(itemKey), V.document_key_hex);
  assert.equal(chunks.length, V.chunks.length);
  for (const [index, record] of V.chunks.entries()) {
    assert.equal(toHex(chunkNonce(index, index === V.chunks.length - 1)), record.nonce_hex);
    assert.equal(chunks[index]!.length, record.ciphertext_size);
    assert.equal(sha256Hex(chunks[index]!), record.ciphertext_sha256);
    assert.equal(toHex(chunks[index]!.subarray(-16)), record.tag_hex);
  }
  assert.equal(toHex(chunks[0]!), V.first_chunk_ciphertext_hex);
  assert.equal(toHex(chunks.at(-1)!), V.last_chunk_ciphertext_hex);
  assert.deepEqual(trailer, V.trailer);
  const hasher = new ContentHasher();
  chunks.forEach((chunk) => hasher.update(chunk));
  assert.equal(hasher.length, V.ciphertext_size);
  assert.equal(toHex(hasher.digest()), V.content_hash_hex);
  assert.equal(verifyDocument(V.header, V.trailer, hasher.digest(), senderKey()).versionNumber, 2);
});

test("the ciphertext decrypts from pieces of any size, with the item or the audience key", async () => {
  const { chunks } = await encryptVector();
  const ciphertext = concat(...chunks);
  for (const size of [1000, 65552, 7, ciphertext.length]) {
    const decryptor = await DocumentDecryptor.create(
      V.header,
      V.trailer,
      h(V.document_key_hex),
      senderKey(),
    );
    const out = await collect(decryptor.decryptChunks(pieces(ciphertext, size)));
    assert.equal(sha256Hex(concat(...out)), V.plaintext.sha256, `pieces of ${size}`);
  }
  const decryptor = await DocumentDecryptor.withAudienceKey(
    V.header,
    V.trailer,
    h(V.audience_key_hex),
    senderKey(),
  );
  assert.equal(
    sha256Hex(concat(...(await collect(decryptor.decryptChunks(chunks))))),
    V.plaintext.sha256,
  );
});

test("truncation, reordering, duplication, extra bytes and a wrong key are caught", async () => {
  const { chunks } = await encryptVector();
  const [a, b, c] = chunks as [Uint8Array, Uint8Array, Uint8Array];
  const open = async (parts: Uint8Array[]) => {
    const decryptor = await DocumentDecryptor.create(
      V.header,
      V.trailer,
      h(V.document_key_hex),
      senderKey(),
    );
    return collect(decryptor.decryptChunks(parts));
  };
  await assert.rejects(open([a, b]), /ended after 131104 of 150048 bytes/);
  await assert.rejects(open([b, a, c]), /chunk 0 does not open/);
  await assert.rejects(open([a, a, c]), /chunk 1 does not open/);
  await assert.rejects(open([a, b, c, new Uint8Array(1)]), /more ciphertext than the 150048 bytes/);
  const flipped = Uint8Array.from(c);
  flipped[0]! ^= 1;
  await assert.rejects(open([a, b, flipped]), /chunk 2 does not open/);
  await assert.rejects(
    DocumentDecryptor.create(V.header, V.trailer, new Uint8Array(32), senderKey()),
    /not encrypted under this key/,
  );
  await assert.rejects(
    DocumentDecryptor.create(
      { ...V.header, filename: "other.pdf" },
      V.trailer,
      h(V.document_key_hex),
      senderKey(),
    ),
    /document signature is not valid/,
  );
  await assert.rejects(
    DocumentDecryptor.create(
      { ...V.header, filename: "../etc/passwd" },
      V.trailer,
      h(V.document_key_hex),
      senderKey(),
    ),
    /plain name, not a path/,
  );
  const otherHash = { ...V.trailer, content_hash: b64uEncode(new Uint8Array(32)) };
  await assert.rejects(
    DocumentDecryptor.create(V.header, otherHash, h(V.document_key_hex), senderKey()),
    /document signature is not valid/,
  );
});

test("an empty document is one empty final chunk, and round-trips", async () => {
  const keys = await DeviceKeys.fromPrivateBytes(
    concat(h(V.sender.signing_seed), h(V.sender.xwing_seed)),
  );
  const header = { ...V.header, size: 0 };
  const encryptor = await DocumentEncryptor.create(keys, h(V.audience_key_hex), header);
  const chunks = await collect(encryptor.encryptChunks([]));
  assert.deepEqual(
    chunks.map((chunk) => chunk.length),
    [16],
  );
  const decryptor = await DocumentDecryptor.create(
    header,
    encryptor.finish(),
    encryptor.itemKey,
    senderKey(),
  );
  assert.deepEqual(await collect(decryptor.decryptChunks(chunks)), [new Uint8Array(0)]);
});
