/**
 * Document versions in the page, downloaded as clients/sdk/documents.py's `Documents.get`
 * downloads them: the version opened and checked before anything is fetched (the sender's
 * certificate against the pins and naming the device and user the header names, the audience
 * its sender made for it, the label read from its canonical form against the catalog with the
 * sender's nation as originator and equal to the server's banner, this device's envelope or a
 * checked grant, the trailer's signature and the key commitment), then the ciphertext streamed
 * (`GET /v1/documents/versions/{id}/content`) and decrypted chunk by chunk into a sink, which
 * is committed only once every chunk, the whole length and the signed content hash have
 * checked out, and aborted otherwise. At most one chunk and the piece in flight are held, so a
 * 1 GiB file is never in memory. Nothing here touches the DOM, so Node's tests run it; the
 * page's sink is a file in the origin-private file system (main.ts).
 *
 * Uploads go as clients/sdk/documents.py's `Documents.put` sends them (`upload` below).
 */
import { ApiError, ConnectionFailed, segment, type Api } from "./api.js";
import { insisted, type ChannelInfo, type Me, type Sender } from "./send.js";
import {
  Unverifiable,
  checkSenderCertificate,
  openDeliveredGrant,
  type Reader,
} from "./messages.js";
import {
  CHUNK_SIZE,
  DocumentDecryptor,
  DocumentEncryptor,
  DocumentError,
  EnvelopeError,
  MAX_DOCUMENT_SIZE,
  TAG_SIZE,
  ciphertextSize,
  formatUtcTime,
  checkAudienceHeader,
  checkDocumentHeader,
  openAudienceEnvelope,
  type JsonObject,
  type SealedDocumentTrailer,
} from "../protocol/index.js";
import { LabelError, labelColour, labelFromCanonical, renderLabel } from "../protocol/labels.js";

/** A version that cannot be trusted, or whose download failed verification; the message is
 * the plain sentence shown for it. */
export class DocumentRefused extends Error {}

/** A version opened and checked (not yet downloaded): what its sender signed, and the
 * decryptor that will check its content. */
export interface OpenedVersion {
  versionId: string;
  documentId: string;
  number: number;
  filename: string;
  contentType: string;
  size: number;
  banner: string;
  colour: string;
  sender: string;
  senderNation: string;
  /** Who released it to this device by a grant, and the label it was sent under. */
  releasedBy: string | null;
  originalBanner: string | null;
  sharedBy: string | null;
  decryptor: DocumentDecryptor;
}

/** Where the plaintext goes: `close` commits it, `abort` discards it. */
export interface Sink {
  write(chunk: Uint8Array): Promise<void>;
  close(): Promise<void>;
  abort(): Promise<void>;
}

interface VersionAccess {
  channel_id: string;
  label: string;
  version: { label: string; header: JsonObject; trailer: SealedDocumentTrailer | null };
  audience: { header: JsonObject; signature: string; envelope: string | null };
  sender_certificate: unknown;
  grant: unknown;
}

/** `GET /v1/documents/versions/{id}`, checked as `Documents.get` checks it. */
export async function openVersion(
  api: Api,
  reader: Reader,
  versionId: string,
): Promise<OpenedVersion> {
  const access = await api.request<VersionAccess>(
    "GET",
    `/v1/documents/versions/${segment(versionId)}`,
  );
  try {
    const { version } = access;
    const header = checkDocumentHeader(version.header);
    if (header.versionId !== versionId) {
      throw new Unverifiable(`the server gave version ${header.versionId} for ${versionId}`);
    }
    if (version.trailer === null) throw new Unverifiable("the version is not complete");
    const body = checkSenderCertificate(access.sender_certificate, reader.pins, new Date());
    if (body.deviceId !== header.senderDevice || body.userId !== header.senderUser) {
      throw new Unverifiable("the sender's certificate is for another device or user");
    }
    const audienceHeader = checkAudienceHeader(access.audience.header);
    if (
      audienceHeader.audienceId !== header.audienceId ||
      audienceHeader.creatorDevice !== header.senderDevice ||
      audienceHeader.container !== header.container
    ) {
      throw new Unverifiable("the version came with an audience its sender did not make");
    }
    const label = labelFromCanonical(header.label, reader.catalog);
    const signedBanner = renderLabel(label, reader.catalog);
    if (label.originator !== body.nationality || version.label !== signedBanner) {
      throw new Unverifiable("the label shown is not the one the sender's nation signed");
    }
    const signingKey = body.deviceKeys.signingKey;
    let banner = signedBanner;
    let colour = labelColour(label, reader.catalog);
    let releasedBy: string | null = null;
    let sharedBy: string | null = null;
    let decryptor: DocumentDecryptor;
    if (access.grant !== null && access.grant !== undefined) {
      const released = await openDeliveredGrant(access.grant, version.header, header.label, reader);
      banner = released.banner;
      colour = labelColour(released.label, reader.catalog);
      if (released.history) sharedBy = released.grantor;
      else releasedBy = released.grantor;
      if (access.label !== banner) {
        throw new Unverifiable(`the label shown is not the one ${released.grantor} released it as`);
      }
      decryptor = await DocumentDecryptor.create(
        version.header,
        version.trailer,
        released.itemKey,
        signingKey,
      );
    } else {
      if (access.audience.envelope === null) {
        throw new Unverifiable("this device holds no key for the version");
      }
      const audienceKey = await openAudienceEnvelope(
        reader.keys,
        reader.deviceId,
        {
          header: access.audience.header,
          signature: access.audience.signature,
          envelopes: { [reader.deviceId]: access.audience.envelope },
        },
        signingKey,
      );
      decryptor = await DocumentDecryptor.withAudienceKey(
        version.header,
        version.trailer,
        audienceKey,
        signingKey,
      );
    }
    return {
      versionId: header.versionId,
      documentId: header.documentId,
      number: header.versionNumber,
      filename: header.filename,
      contentType: header.contentType,
      size: header.size,
      banner,
      colour,
      sender: body.username,
      senderNation: body.nationality,
      releasedBy,
      originalBanner: banner !== signedBanner ? signedBanner : null,
      sharedBy,
      decryptor,
    };
  } catch (error) {
    if (
      error instanceof Unverifiable ||
      error instanceof EnvelopeError ||
      error instanceof DocumentError ||
      error instanceof LabelError ||
      error instanceof TypeError
    ) {
      throw new DocumentRefused(`version ${versionId} cannot be trusted: ${error.message}`);
    }
    throw error;
  }
}

async function* pieces(stream: ReadableStream<Uint8Array>): AsyncGenerator<Uint8Array> {
  const reading = stream.getReader();
  try {
    for (;;) {
      const { done, value } = await reading.read();
      if (done) return;
      yield value;
    }
  } finally {
    reading.releaseLock();
  }
}

/**
 * Download `opened` into `sink`, decrypting chunk by chunk: `sink.close()` only after the
 * whole length and the signed content hash have checked out, `sink.abort()` on any failure
 * (the download's stream is cancelled too). `progress(done, size)` after each chunk.
 */
export async function download(
  api: Api,
  opened: OpenedVersion,
  sink: Sink,
  progress?: (done: number, size: number) => void,
): Promise<void> {
  let stream: ReadableStream<Uint8Array> | null = null;
  try {
    stream = await api.stream(`/v1/documents/versions/${segment(opened.versionId)}/content`);
    let done = 0;
    for await (const plaintext of opened.decryptor.decryptChunks(pieces(stream))) {
      await sink.write(plaintext);
      done += plaintext.length;
      progress?.(done, opened.size);
    }
  } catch (error) {
    await sink.abort();
    await stream?.cancel().catch(() => undefined);
    if (error instanceof DocumentError) {
      throw new DocumentRefused(
        `${opened.filename} failed verification and was discarded: ${error.message}`,
      );
    }
    if (error instanceof ApiError || error instanceof ConnectionFailed) throw error;
    throw new ConnectionFailed(
      `the download of ${opened.filename} failed and was discarded: ${String(error)}`,
    );
  }
  await sink.close();
}

// --- Uploads ------------------------------------------------------------------------------------

/** The size of one encrypted chunk: what the server keeps whole, and resumes on. */
export const ENCRYPTED_CHUNK_SIZE = CHUNK_SIZE + TAG_SIZE;
/** Whole encrypted chunks per `PUT` (4 MiB and 1 KiB): the most of the ciphertext held at once,
 * besides the next piece being made while this one is sent. */
export const UPLOAD_PIECE = 64 * ENCRYPTED_CHUNK_SIZE;
/** As the SDK: tries of one upload before it is given up, and the longest wait asked for. */
const ATTEMPTS = 5;
const MAX_WAIT_SECONDS = 60;

/** What an upload reads: a `File` (or any `Blob` with a name), read a slice at a time. */
export interface UploadSource {
  readonly name: string;
  readonly size: number;
  readonly type: string;
  slice(start: number, end: number): { arrayBuffer(): Promise<ArrayBuffer> };
}

/** An upload refused before it began, or given up (and discarded); the message is the plain
 * sentence shown for it. */
export class UploadFailed extends Error {}

/** A version as the server shows it (VersionRead). */
interface VersionRead {
  id: string;
  document_id: string;
  number: number;
  label: string;
  status: string;
  size: number;
  ciphertext_size: number;
  received: number;
}

export interface Uploaded {
  versionId: string;
  documentId: string;
  number: number;
  filename: string;
  size: number;
  /** The banner the server accepted the version under. */
  banner: string;
}

export interface UploadOptions {
  /** The version's label (a banner from the channel's picker); the channel's default if none. */
  label?: string;
  /** `progress(done, size)`: plaintext bytes whose ciphertext the server has stored. */
  progress?: (done: number, size: number) => void;
  /** Whole encrypted chunks per `PUT`, in bytes (tests use smaller ones). */
  pieceSize?: number;
  /** How to wait before trying again (tests pass one that does not). */
  sleep?: (seconds: number) => Promise<void>;
}

/** As the SDK's `_retry_after`: how long to wait before trying an upload again after this
 * refusal, or null if trying again cannot help. */
function retryAfter(error: ApiError): number | null {
  if (error.status === 408) return 0;
  if (error.status === 409 && "received" in error.problem) return 0;
  if ((error.status === 409 || error.status === 429) && "retry_after" in error.problem) {
    const wait = Number(error.problem.retry_after);
    return Number.isFinite(wait) ? Math.min(Math.max(wait, 0), MAX_WAIT_SECONDS) : MAX_WAIT_SECONDS;
  }
  return null;
}

/** The plaintext bytes whose ciphertext is in the first `received` bytes (whole chunks). */
function plaintextDone(received: number, size: number): number {
  if (received >= ciphertextSize(size)) return size;
  return Math.min(size, Math.floor(received / ENCRYPTED_CHUNK_SIZE) * CHUNK_SIZE);
}

/** The file read lazily, one 64 KiB slice at a time: never more of it in memory. */
async function* slices(source: UploadSource): AsyncGenerator<Uint8Array> {
  for (let at = 0; at < source.size; at += CHUNK_SIZE) {
    const end = Math.min(at + CHUNK_SIZE, source.size);
    let read: ArrayBuffer;
    try {
      read = await source.slice(at, end).arrayBuffer();
    } catch (error) {
      throw new UploadFailed(
        `${source.name} could not be read (it may have changed or moved since you chose it): ` +
          String(error),
      );
    }
    if (read.byteLength !== end - at) {
      throw new UploadFailed(`${source.name} changed while it was read`);
    }
    yield new Uint8Array(read);
  }
}

/**
 * The whole ciphertext made again from the file, in pieces of whole chunks from `offset` on,
 * each with where it starts (the bytes before `offset` only feed the content hash the
 * signature covers, as the SDK's `_ciphertext`).
 */
async function* ciphertextPieces(
  encryptor: DocumentEncryptor,
  source: UploadSource,
  offset: number,
  pieceSize: number,
): AsyncGenerator<{ start: number; bytes: Uint8Array }> {
  const total = ciphertextSize(source.size);
  let position = 0;
  let start = offset;
  // Two buffers in turn: a piece is filled while the one before it is sent, and a buffer is
  // filled again only once the piece it held was sent and answered (so no garbage per piece).
  const size = Math.min(pieceSize, Math.max(total - start, 0));
  const buffers = [new Uint8Array(size), new Uint8Array(size)];
  let turn = 0;
  let piece = buffers[0]!;
  let filled = 0;
  for await (const chunk of encryptor.encryptChunks(slices(source))) {
    const end = position + chunk.length;
    if (end > offset) {
      const part = chunk.subarray(Math.max(0, offset - position));
      if (filled + part.length > pieceSize) {
        yield { start, bytes: piece.subarray(0, filled) };
        start += filled;
        turn = 1 - turn;
        piece = buffers[turn]!;
        filled = 0;
      }
      piece.set(part, filled);
      filled += part.length;
    }
    position = end;
  }
  if (filled > 0) yield { start, bytes: piece.subarray(0, filled) };
}

/**
 * Upload `source` to `channel` as a new document (version 1), labelled `options.label`, as
 * `Documents.put` does, and answer the version as the server completed it.
 *
 * 1. The label parsed with this user's nation as originator; the audience of the devices
 *    eligible for it, made or reused by `sender` (its roster verified as for a message).
 * 2. The signed header announced (`POST /v1/channels/{c}/documents`); an audience the server
 *    finds incomplete (409) is made afresh once.
 * 3. The ciphertext sent with `PUT /v1/uploads/{v}/content?offset=N`, each body a piece of
 *    whole encrypted chunks (`pieceSize`, 4 MiB), made from the file read in 64 KiB slices
 *    while the piece before it is sent: the page holds two pieces and a chunk at most,
 *    whatever the size. After a dropped line, a stalled body (408) or a piece the server
 *    stands elsewhere for (409), `GET /v1/uploads/{v}` says where to resume, and the
 *    ciphertext is made again from the file from there (the same header, key and nonces give
 *    the same bytes); the server's Retry-After (429, 409) is waited for. After `ATTEMPTS`
 *    tries, or anything else, the unfinished version is discarded (`DELETE`), since the page
 *    keeps no note to resume it after a reload.
 * 4. Completed with the signed trailer (`POST /v1/uploads/{v}/complete`).
 */
export async function upload(
  api: Api,
  sender: Sender,
  me: Me,
  channel: ChannelInfo,
  source: UploadSource,
  options: UploadOptions = {},
): Promise<Uploaded> {
  const banner = options.label ?? channel.default_label;
  const pieceSize = options.pieceSize ?? UPLOAD_PIECE;
  if (pieceSize < ENCRYPTED_CHUNK_SIZE || pieceSize % ENCRYPTED_CHUNK_SIZE !== 0) {
    throw new UploadFailed("a piece must be a whole number of encrypted chunks");
  }
  const sleep =
    options.sleep ?? ((seconds: number) => new Promise((done) => setTimeout(done, seconds * 1000)));
  const size = source.size;
  if (!Number.isSafeInteger(size) || size < 0 || size > MAX_DOCUMENT_SIZE) {
    throw new UploadFailed(
      `${source.name} is larger than the ${MAX_DOCUMENT_SIZE} bytes a document may be`,
    );
  }
  const fields: JsonObject = {
    type: "attache.document",
    version: 1,
    document_id: crypto.randomUUID(),
    version_id: crypto.randomUUID(),
    version_number: 1,
    container: channel.id,
    sender_user: me.userId,
    sender_device: me.deviceId,
    audience_id: "",
    created_at: formatUtcTime(new Date()),
    label: {},
    filename: source.name,
    content_type: "application/octet-stream",
    size,
    chunk_size: CHUNK_SIZE,
  };
  const checked = <T>(work: () => T): T => {
    try {
      return work();
    } catch (error) {
      if (error instanceof DocumentError) {
        throw new UploadFailed(`${source.name} cannot be uploaded: ${error.message}`);
      }
      throw error;
    }
  };
  // The header checked (file name, type, size) before anything is sent or sealed.
  fields.label = sender.parse(banner) as unknown as JsonObject;
  fields.audience_id = crypto.randomUUID();
  checked(() => checkDocumentHeader(fields));
  const seal = (audienceKey: Uint8Array) =>
    checked(() => DocumentEncryptor.create(me.keys, audienceKey, fields));
  let version: VersionRead | undefined;
  let audienceKey: Uint8Array = new Uint8Array();
  const channelPath = `/v1/channels/${segment(channel.id)}/documents`;
  for (let attempt = 1; version === undefined; attempt += 1) {
    const audience = await sender.audienceFor(channel, banner, attempt > 1);
    fields.audience_id = audience.audienceId;
    fields.label = audience.label as unknown as JsonObject;
    audienceKey = audience.key;
    checked(() => checkDocumentHeader(fields));
    try {
      version = await api.request<VersionRead>("POST", channelPath, { header: fields });
    } catch (error) {
      if (!(error instanceof ApiError) || error.code !== "audience-incomplete") throw error;
      if (attempt === 1) continue;
      // The server wants devices twice running: if this page would not vouch for them, say so.
      const said = insisted(error.problem.devices, audience.excluded);
      if (said !== null) throw new UploadFailed(said);
      throw error;
    }
  }
  const versionPath = `/v1/uploads/${segment(version.id)}`;
  const total = ciphertextSize(size);
  let failures = 0;
  try {
    for (;;) {
      const encryptor = await seal(audienceKey);
      const offset = Number(version.received);
      let wait = 0;
      let sent = false;
      const pieces = ciphertextPieces(encryptor, source, offset, pieceSize);
      let next = pieces.next();
      try {
        for (;;) {
          const item = await next;
          if (item.done) break;
          next = pieces.next(); // the next piece is made while this one is sent
          const { start, bytes } = item.value;
          version = await api.putBytes<VersionRead>(
            `${versionPath}/content?offset=${start}`,
            bytes,
          );
          options.progress?.(plaintextDone(Number(version.received), size), size);
        }
        sent = true;
      } catch (error) {
        next.catch(() => undefined); // the piece made meanwhile is not wanted
        const retry = error instanceof ApiError ? retryAfter(error) : null;
        if (!(error instanceof ConnectionFailed) && retry === null) throw error;
        failures += 1;
        wait = retry ?? 0;
      }
      if (sent && Number(version.received) === total) {
        const done = await api.request<VersionRead>("POST", `${versionPath}/complete`, {
          trailer: encryptor.finish(),
        });
        options.progress?.(size, size);
        return {
          versionId: done.id,
          documentId: done.document_id,
          number: Number(done.number),
          filename: source.name,
          size,
          banner: done.label,
        };
      }
      if (sent) failures += 1; // all sent, yet the server stands short of the end: ask again
      if (failures >= ATTEMPTS) {
        throw new UploadFailed(
          `the upload of ${source.name} kept failing and was discarded; try again later`,
        );
      }
      if (wait > 0) await sleep(wait);
      version = await api.request<VersionRead>("GET", versionPath);
    }
  } catch (error) {
    // The page keeps no note to resume from after a reload: nothing is left half written.
    await api.request("DELETE", versionPath).catch(() => undefined);
    if (error instanceof UploadFailed || error instanceof ApiError) throw error;
    if (error instanceof ConnectionFailed) {
      throw new UploadFailed(
        `the upload of ${source.name} was interrupted and discarded: ${error.message}`,
      );
    }
    if (error instanceof DocumentError) {
      throw new UploadFailed(`${source.name} was not uploaded: ${error.message}`);
    }
    throw error;
  }
}
