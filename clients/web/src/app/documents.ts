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
 */
import { ApiError, ConnectionFailed, type Api } from "./api.js";
import {
  Unverifiable,
  checkSenderCertificate,
  openDeliveredGrant,
  type Reader,
} from "./messages.js";
import {
  DocumentDecryptor,
  DocumentError,
  EnvelopeError,
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

function segment(value: string): string {
  return encodeURIComponent(value);
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
