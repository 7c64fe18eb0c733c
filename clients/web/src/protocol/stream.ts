/**
 * Documents: chunked, streaming encryption of one document version, as protocol/stream.py
 * (docs/PROTOCOL.md, "Documents"). The plaintext goes in 64 KiB chunks, each AES-256-GCM
 * under the document-version key, with the nonce `index (11 bytes, big-endian) || last-chunk
 * flag` (the STREAM construction of age) and the associated data `CTX || hd`. A trailer holds
 * the key commitment, the hash of the whole ciphertext and the sender device's signature.
 *
 * Both directions hold at most one chunk besides the piece handed in, whatever the size.
 */
import { sha256 } from "@noble/hashes/sha2.js";

import { b64uEncode, concat, equalBytes, utf8 } from "./bytes.js";
import {
  CTX_DOCUMENT_CHUNK,
  CTX_DOCUMENT_CONTENT,
  CTX_DOCUMENT_HEADER,
  CTX_DOCUMENT_KEY,
  CTX_DOCUMENT_KEY_COMMITMENT,
  CTX_DOCUMENT_SIGNATURE,
  canonicalJson,
  digest,
  withContext,
  type JsonObject,
} from "./canonical.js";
import {
  AUDIENCE_KEY_SIZE,
  EnvelopeError,
  contentTypeField,
  idField,
  isObject,
  labelField,
  requireFields,
  timeField,
  uuidField,
  verifySignature,
  wireBytes,
} from "./envelopes.js";
import type { DeviceKeys } from "./keys.js";
import {
  AeadError,
  SIGNATURE_SIZE,
  TAG_SIZE,
  aesGcmDecrypt,
  aesGcmEncrypt,
  aesGcmKey,
  hkdfSha256,
} from "./primitives.js";

export const DOCUMENT_TYPE = "attache.document";
export const CHUNK_SIZE = 64 * 1024;
export const MAX_DOCUMENT_SIZE = 64 * 1024 ** 3;
export const MAX_FILENAME_BYTES = 255;
export const MAX_VERSION_NUMBER = 2 ** 31 - 1;
const KEY_SIZE = 32;

export const DOCUMENT_FIELDS = new Set([
  "type",
  "version",
  "document_id",
  "version_id",
  "version_number",
  "container",
  "sender_user",
  "sender_device",
  "audience_id",
  "created_at",
  "label",
  "filename",
  "content_type",
  "size",
  "chunk_size",
]);

export class DocumentError extends Error {}

/** `max(1, ceil(size / CHUNK_SIZE))`: an empty document is one empty final chunk. */
export function chunkCount(size: number): number {
  return Math.max(1, Math.ceil(size / CHUNK_SIZE));
}

export function ciphertextSize(size: number): number {
  return size + TAG_SIZE * chunkCount(size);
}

/** The 12-byte nonce of chunk `index`: an 11-byte big-endian counter, then the last flag. */
export function chunkNonce(index: number, last: boolean): Uint8Array {
  const nonce = new Uint8Array(12);
  new DataView(nonce.buffer).setBigUint64(3, BigInt(index));
  nonce[11] = last ? 1 : 0;
  return nonce;
}

export interface DocumentHeader {
  documentId: string;
  versionId: string;
  versionNumber: number;
  container: string;
  senderUser: string;
  senderDevice: string;
  audienceId: string;
  createdAt: Date;
  label: JsonObject;
  filename: string;
  contentType: string;
  size: number;
  headerDigest: Uint8Array;
}

function intField(header: JsonObject, name: string, low: number, high: number): number {
  const value = header[name];
  if (typeof value !== "number" || !Number.isInteger(value) || value < low || value > high) {
    throw new DocumentError(
      `document header field ${name} must be an integer from ${low} to ${high}`,
    );
  }
  return value;
}

const CATEGORY_C = /[\p{C}]/u;

function filenameField(header: JsonObject): string {
  const value = header.filename;
  if (typeof value !== "string" || value === "") {
    throw new DocumentError("document header field filename must be a non-empty string");
  }
  if (CATEGORY_C.test(value)) {
    throw new DocumentError("document header field filename contains control or format characters");
  }
  if (utf8(value).length > MAX_FILENAME_BYTES) {
    throw new DocumentError(
      `document header field filename is longer than ${MAX_FILENAME_BYTES} UTF-8 bytes`,
    );
  }
  if (value.includes("/") || value.includes("\\") || value === "." || value === "..") {
    throw new DocumentError("document header field filename must be a plain name, not a path");
  }
  return value;
}

function asDocumentError<T>(work: () => T): T {
  try {
    return work();
  } catch (error) {
    if (error instanceof EnvelopeError) throw new DocumentError(error.message);
    throw error;
  }
}

/** Check a document version header's structure (not its signature) and type its fields. */
export function checkDocumentHeader(header: unknown): DocumentHeader {
  const kind = "document";
  return asDocumentError(() => {
    requireFields(header, DOCUMENT_FIELDS, kind, DOCUMENT_TYPE);
    const documentId = uuidField(header, "document_id", kind);
    const versionId = uuidField(header, "version_id", kind);
    const audienceId = uuidField(header, "audience_id", kind);
    const container = idField(header, "container", kind);
    const senderUser = idField(header, "sender_user", kind);
    const senderDevice = idField(header, "sender_device", kind);
    const createdAt = timeField(header, "created_at", kind);
    const contentType = contentTypeField(header, kind);
    if (header.chunk_size !== CHUNK_SIZE) {
      throw new DocumentError(`document header field chunk_size must be ${CHUNK_SIZE}`);
    }
    const versionNumber = intField(header, "version_number", 1, MAX_VERSION_NUMBER);
    const size = intField(header, "size", 0, MAX_DOCUMENT_SIZE);
    const label = labelField(header, kind);
    const filename = filenameField(header);
    return {
      documentId,
      versionId,
      versionNumber,
      container,
      senderUser,
      senderDevice,
      audienceId,
      createdAt,
      label,
      filename,
      contentType,
      size,
      headerDigest: digest(CTX_DOCUMENT_HEADER, canonicalJson(header)),
    };
  });
}

/** HKDF-SHA256(audience key, no salt, info = CTX_DOCUMENT_KEY || hd): the version's item key. */
export async function documentKey(audienceKey: Uint8Array, header: unknown): Promise<Uint8Array> {
  if (audienceKey.length !== AUDIENCE_KEY_SIZE) {
    throw new DocumentError("an audience key must be 32 bytes");
  }
  const hd = checkDocumentHeader(header).headerDigest;
  return hkdfSha256(audienceKey, withContext(CTX_DOCUMENT_KEY, hd));
}

function keyCommitment(key: Uint8Array): Uint8Array {
  return digest(CTX_DOCUMENT_KEY_COMMITMENT, key);
}

function signingInput(hd: Uint8Array, commitment: Uint8Array, contentHash: Uint8Array) {
  return withContext(CTX_DOCUMENT_SIGNATURE, concat(hd, commitment, contentHash));
}

/** SHA-256(CTX_DOCUMENT_CONTENT || 0x00 || ct_0 || ct_1 || ...), computed incrementally. */
export class ContentHasher {
  private readonly hash = sha256
    .create()
    .update(withContext(CTX_DOCUMENT_CONTENT, new Uint8Array()));
  length = 0;

  update(data: Uint8Array): void {
    this.hash.update(data);
    this.length += data.length;
  }

  digest(): Uint8Array {
    return this.hash.clone().digest();
  }
}

/** `{"commitment": b64u, "content_hash": b64u, "signature": b64u}`. */
export interface SealedDocumentTrailer {
  commitment: string;
  content_hash: string;
  signature: string;
}

interface Trailer {
  commitment: Uint8Array;
  contentHash: Uint8Array;
  signature: Uint8Array;
}

function parseTrailer(trailer: unknown): Trailer {
  return asDocumentError(() => {
    if (
      !isObject(trailer) ||
      Object.keys(trailer).sort().join() !== "commitment,content_hash,signature"
    ) {
      throw new DocumentError(
        "a document trailer has exactly commitment, content_hash and signature",
      );
    }
    return {
      commitment: wireBytes(trailer.commitment, "document key commitment", 32),
      contentHash: wireBytes(trailer.content_hash, "document content hash", 32),
      signature: wireBytes(trailer.signature, "document signature", SIGNATURE_SIZE),
    };
  });
}

function verifyTrailer(checked: DocumentHeader, trailer: Trailer, senderSigningKey: Uint8Array) {
  asDocumentError(() =>
    verifySignature(
      senderSigningKey,
      trailer.signature,
      signingInput(checked.headerDigest, trailer.commitment, trailer.contentHash),
      "document signature",
    ),
  );
}

/**
 * Check a document version as stored, without any key (what the server does): the header,
 * that `contentHash` (of the stored ciphertext) is the trailer's, and the signature.
 */
export function verifyDocument(
  header: unknown,
  trailer: SealedDocumentTrailer,
  contentHash: Uint8Array,
  senderSigningKey: Uint8Array,
): DocumentHeader {
  const checked = checkDocumentHeader(header);
  const parsed = parseTrailer(trailer);
  if (!equalBytes(contentHash, parsed.contentHash)) {
    throw new DocumentError(
      `document version ${checked.versionId}: the ciphertext is not the one signed`,
    );
  }
  verifyTrailer(checked, parsed, senderSigningKey);
  return checked;
}

type Pieces = Iterable<Uint8Array> | AsyncIterable<Uint8Array>;

/**
 * Re-cut pieces of any size into the chunk sizes `sizeOf(index)` asks for, in order (-1: no
 * more chunks). A short final chunk is yielded as it is, for the caller to refuse.
 */
async function* rechunk(
  pieces: Pieces,
  sizeOf: (index: number) => number,
  tooMuch: () => Error,
): AsyncGenerator<Uint8Array> {
  let index = 0;
  let wanted = sizeOf(0);
  let buffer = new Uint8Array(Math.max(wanted, 0));
  let filled = 0;
  const advance = () => {
    index += 1;
    wanted = sizeOf(index);
    buffer = new Uint8Array(Math.max(wanted, 0));
    filled = 0;
  };
  // An empty chunk (the empty document's only one) is complete without any input.
  while (wanted === 0) {
    yield buffer;
    advance();
  }
  for await (const piece of pieces) {
    let position = 0;
    while (position < piece.length) {
      if (wanted < 0) throw tooMuch();
      const take = Math.min(wanted - filled, piece.length - position);
      buffer.set(piece.subarray(position, position + take), filled);
      filled += take;
      position += take;
      if (filled === wanted) {
        yield buffer;
        advance();
        while (wanted === 0) {
          yield buffer;
          advance();
        }
      }
    }
  }
  if (filled > 0) yield buffer.subarray(0, filled);
}

function plaintextChunkSize(size: number, index: number): number {
  const count = chunkCount(size);
  if (index >= count) return -1;
  return index < count - 1 ? CHUNK_SIZE : size - (count - 1) * CHUNK_SIZE;
}

/**
 * Encrypts one document version, streaming. Give the header fields (all of DOCUMENT_FIELDS);
 * `encryptChunks` yields the ciphertext chunk by chunk, then `finish()` signs the trailer.
 */
export class DocumentEncryptor {
  private readonly hasher = new ContentHasher();
  private trailer: SealedDocumentTrailer | undefined;

  private constructor(
    private readonly sender: DeviceKeys,
    readonly header: DocumentHeader,
    readonly itemKey: Uint8Array,
    private readonly key: CryptoKey,
  ) {}

  static async create(
    sender: DeviceKeys,
    audienceKey: Uint8Array,
    header: JsonObject,
  ): Promise<DocumentEncryptor> {
    const checked = checkDocumentHeader(header);
    const itemKey = await documentKey(audienceKey, header);
    return new DocumentEncryptor(sender, checked, itemKey, await aesGcmKey(itemKey));
  }

  async *encryptChunks(plaintext: Pieces): AsyncGenerator<Uint8Array> {
    const { size, headerDigest } = this.header;
    const count = chunkCount(size);
    const aad = withContext(CTX_DOCUMENT_CHUNK, headerDigest);
    let index = 0;
    const pieces = rechunk(
      plaintext,
      (i) => plaintextChunkSize(size, i),
      () => new DocumentError(`more plaintext than the ${size} bytes the header states`),
    );
    for await (const chunk of pieces) {
      if (chunk.length !== plaintextChunkSize(size, index)) {
        throw new DocumentError(`the plaintext ended before the ${size} bytes the header states`);
      }
      const sealed = await aesGcmEncrypt(
        this.key,
        chunkNonce(index, index === count - 1),
        chunk,
        aad,
      );
      this.hasher.update(sealed);
      index += 1;
      yield sealed;
    }
    if (index !== count) {
      throw new DocumentError(`the plaintext ended before the ${size} bytes the header states`);
    }
    const commitment = keyCommitment(this.itemKey);
    const contentHash = this.hasher.digest();
    this.trailer = {
      commitment: b64uEncode(commitment),
      content_hash: b64uEncode(contentHash),
      signature: b64uEncode(this.sender.sign(signingInput(headerDigest, commitment, contentHash))),
    };
  }

  finish(): SealedDocumentTrailer {
    if (this.trailer === undefined) throw new DocumentError("the plaintext was not all encrypted");
    return this.trailer;
  }
}

/**
 * Checks and decrypts one document version, streaming. `create` checks the header, the
 * sender's signature and the key commitment before anything is decrypted; `decryptChunks`
 * yields plaintext chunk by chunk and, before the final chunk, checks the content hash.
 *
 * Danger: plaintext yielded before the generator completes is authenticated only against
 * those who do not hold the key; write it somewhere temporary and offer it only once
 * `decryptChunks` has run to its end without an error.
 */
export class DocumentDecryptor {
  private constructor(
    readonly header: DocumentHeader,
    private readonly trailer: Trailer,
    private readonly key: CryptoKey,
  ) {}

  static async create(
    header: unknown,
    trailer: SealedDocumentTrailer,
    itemKey: Uint8Array,
    senderSigningKey: Uint8Array,
  ): Promise<DocumentDecryptor> {
    if (itemKey.length !== KEY_SIZE) throw new DocumentError("a document key must be 32 bytes");
    const checked = checkDocumentHeader(header);
    const parsed = parseTrailer(trailer);
    verifyTrailer(checked, parsed, senderSigningKey);
    if (!equalBytes(parsed.commitment, keyCommitment(itemKey))) {
      throw new DocumentError(
        `document version ${checked.versionId} was not encrypted under this key`,
      );
    }
    return new DocumentDecryptor(checked, parsed, await aesGcmKey(itemKey));
  }

  static async withAudienceKey(
    header: unknown,
    trailer: SealedDocumentTrailer,
    audienceKey: Uint8Array,
    senderSigningKey: Uint8Array,
  ): Promise<DocumentDecryptor> {
    const key = await documentKey(audienceKey, header);
    return DocumentDecryptor.create(header, trailer, key, senderSigningKey);
  }

  async *decryptChunks(ciphertext: Pieces): AsyncGenerator<Uint8Array> {
    const { size, headerDigest, versionId } = this.header;
    const count = chunkCount(size);
    const total = ciphertextSize(size);
    const aad = withContext(CTX_DOCUMENT_CHUNK, headerDigest);
    const fail = (reason: string) => new DocumentError(`document version ${versionId}: ${reason}`);
    const hasher = new ContentHasher();
    let index = 0;
    const pieces = rechunk(
      ciphertext,
      (i) => {
        const plain = plaintextChunkSize(size, i);
        return plain < 0 ? -1 : plain + TAG_SIZE;
      },
      () => fail(`more ciphertext than the ${total} bytes the header implies`),
    );
    for await (const chunk of pieces) {
      const last = index === count - 1;
      if (chunk.length !== plaintextChunkSize(size, index) + TAG_SIZE) {
        throw fail(`the ciphertext ended after ${hasher.length + chunk.length} of ${total} bytes`);
      }
      hasher.update(chunk);
      let plaintext: Uint8Array;
      try {
        plaintext = await aesGcmDecrypt(this.key, chunkNonce(index, last), chunk, aad);
      } catch (error) {
        if (error instanceof AeadError) throw fail(`chunk ${index} does not open`);
        throw error;
      }
      index += 1;
      if (last && !equalBytes(hasher.digest(), this.trailer.contentHash)) {
        throw fail("the ciphertext is not the one the sender signed");
      }
      yield plaintext;
    }
    if (index !== count) {
      throw fail(`the ciphertext ended after ${hasher.length} of ${total} bytes`);
    }
  }
}
