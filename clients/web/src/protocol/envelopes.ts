/**
 * Audiences and messages, as protocol/envelopes.py composes them (docs/PROTOCOL.md is the
 * byte-level contract). Nothing here trusts its input: headers are checked field by field,
 * sizes are bounded before any work, and signatures are verified before anything is
 * decrypted. Every failure throws EnvelopeError naming what failed.
 */
import { b64uDecode, b64uDecodeSized, b64uEncode, concat, equalBytes } from "./bytes.js";
import {
  CTX_AUDIENCE_DEVICES,
  CTX_AUDIENCE_ENVELOPE,
  CTX_AUDIENCE_HEADER,
  CTX_AUDIENCE_SIGNATURE,
  CTX_MESSAGE_BODY,
  CTX_MESSAGE_BODY_DIGEST,
  CTX_MESSAGE_HEADER,
  CTX_MESSAGE_KEY,
  CTX_MESSAGE_KEY_COMMITMENT,
  CTX_MESSAGE_SIGNATURE,
  canonicalJson,
  digest,
  withContext,
  type Json,
  type JsonObject,
} from "./canonical.js";
import { type DeviceKeys, type DevicePublicKeys, parseUtcTime } from "./keys.js";
import {
  AeadError,
  HPKE_ENC_SIZE,
  NONCE_SIZE,
  SIGNATURE_SIZE,
  TAG_SIZE,
  aesGcmDecrypt,
  aesGcmEncrypt,
  aesGcmKey,
  ed25519Verify,
  hkdfSha256,
  hpkeOpen,
  hpkeSeal,
  randomBytes,
} from "./primitives.js";

export const AUDIENCE_TYPE = "attache.audience";
export const MESSAGE_TYPE = "attache.message";
export const AUDIENCE_KEY_SIZE = 32;
export const MESSAGE_KEY_SIZE = 32;
const DIGEST_SIZE = 32;
const KEY_COMMITMENT_SIZE = 32;
export const MESSAGE_BODY_OVERHEAD = NONCE_SIZE + KEY_COMMITMENT_SIZE + TAG_SIZE;
export const ENVELOPE_SIZE = HPKE_ENC_SIZE + AUDIENCE_KEY_SIZE + TAG_SIZE;
export const MAX_MESSAGE_PLAINTEXT = 256 * 1024;
export const MAX_MESSAGE_BODY = MAX_MESSAGE_PLAINTEXT + MESSAGE_BODY_OVERHEAD;
export const MAX_AUDIENCE_DEVICES = 1000;
export const MAX_ID_LENGTH = 64;
export const MAX_CONTENT_TYPE_LENGTH = 100;
export const MAX_LABEL_BYTES = 8 * 1024;

export const AUDIENCE_FIELDS = new Set([
  "type",
  "version",
  "audience_id",
  "container",
  "creator_user",
  "creator_device",
  "devices",
  "device_keys_digest",
  "created_at",
]);
export const MESSAGE_FIELDS = new Set([
  "type",
  "version",
  "message_id",
  "container",
  "sender_user",
  "sender_device",
  "audience_id",
  "sent_at",
  "label",
  "content_type",
  "reply_to",
]);

export const ID = /^[A-Za-z0-9._:-]{1,64}$/;
export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
export const CONTENT_TYPE = /^[\x20-\x7e]{1,100}$/;

export class EnvelopeError extends Error {}

// --- shared checks (documents use them too) ----------------------------------------------------

export function isObject(value: unknown): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

export function requireFields(
  header: unknown,
  fields: ReadonlySet<string>,
  kind: string,
  type: string,
): asserts header is JsonObject {
  if (!isObject(header)) throw new EnvelopeError(`${kind} header must be a JSON object`);
  if (header.type !== type) throw new EnvelopeError(`${kind} header field type must be '${type}'`);
  if (header.version !== 1) {
    throw new EnvelopeError(
      `${kind} header field version: unsupported version ${JSON.stringify(header.version)}`,
    );
  }
  const present = Object.keys(header);
  const missing = [...fields].filter((name) => !(name in header)).sort();
  if (missing.length > 0) throw new EnvelopeError(`${kind} header lacks ${missing.join(", ")}`);
  const unknown = present.filter((name) => !fields.has(name)).sort();
  if (unknown.length > 0) {
    throw new EnvelopeError(`${kind} header has unknown fields ${unknown.join(", ")}`);
  }
}

export function idField(header: JsonObject, name: string, kind: string): string {
  const value = header[name];
  if (typeof value !== "string" || !ID.test(value)) {
    throw new EnvelopeError(
      `${kind} header field ${name} must be 1 to ${MAX_ID_LENGTH} characters of ` +
        "A-Z a-z 0-9 . _ : -",
    );
  }
  return value;
}

export function uuidField(header: JsonObject, name: string, kind: string): string {
  const value = header[name];
  if (typeof value !== "string" || !UUID.test(value)) {
    throw new EnvelopeError(`${kind} header field ${name} must be a lower-case hyphenated UUID`);
  }
  return value;
}

export function timeField(header: JsonObject, name: string, kind: string): Date {
  try {
    return parseUtcTime(header[name]);
  } catch (error) {
    throw new EnvelopeError(`${kind} header field ${name} is malformed: ${String(error)}`);
  }
}

export function labelField(header: JsonObject, kind: string): JsonObject {
  const label = header.label;
  if (!isObject(label)) throw new EnvelopeError(`${kind} header field label must be a JSON object`);
  let encoded: Uint8Array;
  try {
    encoded = canonicalJson(label);
  } catch (error) {
    throw new EnvelopeError(`${kind} header field label is not canonical JSON: ${String(error)}`);
  }
  if (encoded.length > MAX_LABEL_BYTES) {
    throw new EnvelopeError(`${kind} header field label is longer than ${MAX_LABEL_BYTES} bytes`);
  }
  return label;
}

export function contentTypeField(header: JsonObject, kind: string): string {
  const value = header.content_type;
  if (typeof value !== "string" || !CONTENT_TYPE.test(value)) {
    throw new EnvelopeError(
      `${kind} header field content_type must be 1 to ${MAX_CONTENT_TYPE_LENGTH} ` +
        "printable ASCII characters",
    );
  }
  return value;
}

export function wireBytes(value: unknown, what: string, size: number): Uint8Array {
  if (typeof value !== "string") throw new EnvelopeError(`${what} must be a base64url string`);
  try {
    return b64uDecodeSized(value, size, what);
  } catch (error) {
    throw new EnvelopeError(`${what} is malformed: ${String(error)}`);
  }
}

export function verifySignature(
  publicKey: Uint8Array,
  signature: Uint8Array,
  message: Uint8Array,
  what: string,
): void {
  if (publicKey.length !== 32) throw new EnvelopeError(`${what}: the signing key is malformed`);
  if (signature.length !== SIGNATURE_SIZE) {
    throw new EnvelopeError(`${what}: a signature is ${SIGNATURE_SIZE} bytes`);
  }
  if (!ed25519Verify(publicKey, signature, message)) {
    throw new EnvelopeError(`${what} is not valid for this signing key`);
  }
}

function keyBytes(key: Uint8Array, size: number, what: string): Uint8Array {
  if (!(key instanceof Uint8Array) || key.length !== size) {
    throw new EnvelopeError(`${what} must be ${size} bytes`);
  }
  return key;
}

// --- audiences ---------------------------------------------------------------------------------

export interface AudienceHeader {
  audienceId: string;
  container: string;
  creatorUser: string;
  creatorDevice: string;
  devices: string[];
  deviceKeysDigest: string;
  createdAt: Date;
  headerDigest: Uint8Array;
}

/** A header's `devices`: a list of 1 to `maximum` ids in strictly ascending order. */
export function deviceList(header: JsonObject, kind: string, maximum: number): string[] {
  const devices = header.devices;
  if (!Array.isArray(devices) || devices.length < 1 || devices.length > maximum) {
    throw new EnvelopeError(`${kind} header field devices must be a list of 1 to ${maximum} ids`);
  }
  for (const device of devices) {
    if (typeof device !== "string" || !ID.test(device)) {
      throw new EnvelopeError(
        `${kind} header field devices holds a malformed id ${JSON.stringify(device)}`,
      );
    }
  }
  const ids = devices as string[];
  // Ids are ASCII, so JavaScript's < (UTF-16 units) orders them as Python does.
  if (ids.some((id, i) => i > 0 && ids[i - 1]! >= id)) {
    throw new EnvelopeError(`${kind} header field devices must be sorted ascending and unique`);
  }
  return ids;
}

/** Check an audience header's structure (not its signature) and type its fields. */
export function checkAudienceHeader(header: unknown): AudienceHeader {
  const kind = "audience";
  requireFields(header, AUDIENCE_FIELDS, kind, AUDIENCE_TYPE);
  const ids = deviceList(header, kind, MAX_AUDIENCE_DEVICES);
  wireBytes(header.device_keys_digest, "audience header field device_keys_digest", DIGEST_SIZE);
  return {
    audienceId: uuidField(header, "audience_id", kind),
    container: idField(header, "container", kind),
    creatorUser: idField(header, "creator_user", kind),
    creatorDevice: idField(header, "creator_device", kind),
    devices: [...ids],
    deviceKeysDigest: header.device_keys_digest as string,
    createdAt: timeField(header, "created_at", kind),
    headerDigest: digest(CTX_AUDIENCE_HEADER, canonicalJson(header)),
  };
}

export interface Recipient {
  deviceId: string;
  keys: DevicePublicKeys;
}

/**
 * b64u of digest(CTX_AUDIENCE_DEVICES, JCS([[device_id, b64u(signing), b64u(encryption)], ...]))
 * with the entries sorted by device id: the exact keys an audience was sealed to.
 */
export function deviceKeysDigest(recipients: readonly Recipient[]): string {
  const entries = recipients
    .map((r) => [r.deviceId, b64uEncode(r.keys.signingKey), b64uEncode(r.keys.encryptionKey)])
    .sort((a, b) => (a[0]! < b[0]! ? -1 : a[0]! > b[0]! ? 1 : 0));
  if (entries.some((entry, i) => i > 0 && entries[i - 1]![0] === entry[0])) {
    throw new EnvelopeError("a device appears twice among the recipients");
  }
  return b64uEncode(digest(CTX_AUDIENCE_DEVICES, canonicalJson(entries)));
}

function audienceSigningInput(headerDigest: Uint8Array): Uint8Array {
  return withContext(CTX_AUDIENCE_SIGNATURE, headerDigest);
}

export function envelopeInfo(
  audienceId: string,
  deviceId: string,
  headerDigest: Uint8Array,
): Uint8Array {
  return withContext(
    CTX_AUDIENCE_ENVELOPE,
    canonicalJson({
      audience_id: audienceId,
      device_id: deviceId,
      header_digest: b64uEncode(headerDigest),
    }),
  );
}

/** An audience as it travels; a device receives only its own envelope. */
export interface SealedAudience {
  header: JsonObject;
  signature: string;
  envelopes: Record<string, string>;
}

/**
 * Make an audience: the audience key sealed to each recipient, whose certificates and
 * eligibility the caller has already checked. Returns the sealed audience and the key.
 */
export async function createAudience(
  creator: DeviceKeys,
  fields: {
    audienceId: string;
    container: string;
    creatorUser: string;
    creatorDevice: string;
    recipients: readonly Recipient[];
    createdAt: string;
  },
  audienceKey: Uint8Array = randomBytes(AUDIENCE_KEY_SIZE),
): Promise<{ sealed: SealedAudience; audienceKey: Uint8Array }> {
  keyBytes(audienceKey, AUDIENCE_KEY_SIZE, "an audience key");
  if (fields.recipients.length > MAX_AUDIENCE_DEVICES) {
    throw new EnvelopeError(`an audience holds at most ${MAX_AUDIENCE_DEVICES} devices`);
  }
  const header: JsonObject = {
    type: AUDIENCE_TYPE,
    version: 1,
    audience_id: fields.audienceId,
    container: fields.container,
    creator_user: fields.creatorUser,
    creator_device: fields.creatorDevice,
    devices: fields.recipients.map((r) => r.deviceId).sort(),
    device_keys_digest: deviceKeysDigest(fields.recipients),
    created_at: fields.createdAt,
  };
  const checked = checkAudienceHeader(header);
  const signature = creator.sign(audienceSigningInput(checked.headerDigest));
  const envelopes: Record<string, string> = {};
  for (const recipient of [...fields.recipients].sort((a, b) =>
    a.deviceId < b.deviceId ? -1 : 1,
  )) {
    const info = envelopeInfo(checked.audienceId, recipient.deviceId, checked.headerDigest);
    try {
      envelopes[recipient.deviceId] = b64uEncode(
        await hpkeSeal(recipient.keys.encryptionKey, audienceKey, info),
      );
    } catch (error) {
      throw new EnvelopeError(
        `the encryption key of device ${recipient.deviceId} is unusable: ${String(error)}`,
      );
    }
  }
  return { sealed: { header, signature: b64uEncode(signature), envelopes }, audienceKey };
}

/** Check an audience header and its creator device's signature. */
export function verifyAudience(
  header: unknown,
  signature: Uint8Array,
  creatorSigningKey: Uint8Array,
): AudienceHeader {
  const checked = checkAudienceHeader(header);
  verifySignature(
    creatorSigningKey,
    signature,
    audienceSigningInput(checked.headerDigest),
    "audience signature",
  );
  return checked;
}

/**
 * The audience key, for the device `deviceId` holding `device`: verifies the creator's
 * signature, that the device is listed, and opens the envelope whose `info` names this
 * audience, this device and this header.
 */
export async function openAudienceEnvelope(
  device: DeviceKeys,
  deviceId: string,
  sealed: SealedAudience,
  creatorSigningKey: Uint8Array,
): Promise<Uint8Array> {
  const signature = wireBytes(sealed.signature, "audience signature", SIGNATURE_SIZE);
  const checked = verifyAudience(sealed.header, signature, creatorSigningKey);
  if (!checked.devices.includes(deviceId)) {
    throw new EnvelopeError(`device ${deviceId} is not in audience ${checked.audienceId}`);
  }
  const text = isObject(sealed.envelopes) ? sealed.envelopes[deviceId] : undefined;
  const envelope = wireBytes(text, `audience envelope for ${deviceId}`, ENVELOPE_SIZE);
  let audienceKey: Uint8Array;
  try {
    audienceKey = await hpkeOpen(
      device.xwingSeed,
      envelope,
      envelopeInfo(checked.audienceId, deviceId, checked.headerDigest),
    );
  } catch {
    throw new EnvelopeError(
      `the envelope of audience ${checked.audienceId} does not open for device ${deviceId}`,
    );
  }
  if (audienceKey.length !== AUDIENCE_KEY_SIZE) {
    throw new EnvelopeError("the envelope does not hold a 32-byte audience key");
  }
  return audienceKey;
}

// --- messages ----------------------------------------------------------------------------------

export interface MessageHeader {
  messageId: string;
  container: string;
  senderUser: string;
  senderDevice: string;
  audienceId: string;
  sentAt: Date;
  label: JsonObject;
  contentType: string;
  replyTo: string | null;
  headerDigest: Uint8Array;
}

/** Check a message header's structure (not its signature) and type its fields. */
export function checkMessageHeader(header: unknown): MessageHeader {
  const kind = "message";
  requireFields(header, MESSAGE_FIELDS, kind, MESSAGE_TYPE);
  const label = labelField(header, kind);
  const contentType = contentTypeField(header, kind);
  const replyTo = header.reply_to === null ? null : uuidField(header, "reply_to", kind);
  return {
    messageId: uuidField(header, "message_id", kind),
    container: idField(header, "container", kind),
    senderUser: idField(header, "sender_user", kind),
    senderDevice: idField(header, "sender_device", kind),
    audienceId: uuidField(header, "audience_id", kind),
    sentAt: timeField(header, "sent_at", kind),
    label,
    contentType,
    replyTo,
    headerDigest: digest(CTX_MESSAGE_HEADER, canonicalJson(header)),
  };
}

/** HKDF-SHA256(audience key, no salt, info = CTX_MESSAGE_KEY || hd): the message (item) key. */
export async function messageKey(audienceKey: Uint8Array, header: unknown): Promise<Uint8Array> {
  keyBytes(audienceKey, AUDIENCE_KEY_SIZE, "an audience key");
  return deriveMessageKey(audienceKey, checkMessageHeader(header).headerDigest);
}

function deriveMessageKey(audienceKey: Uint8Array, headerDigest: Uint8Array): Promise<Uint8Array> {
  return hkdfSha256(audienceKey, withContext(CTX_MESSAGE_KEY, headerDigest));
}

function keyCommitment(itemKey: Uint8Array): Uint8Array {
  return digest(CTX_MESSAGE_KEY_COMMITMENT, itemKey);
}

function messageSigningInput(headerDigest: Uint8Array, body: Uint8Array): Uint8Array {
  return withContext(
    CTX_MESSAGE_SIGNATURE,
    concat(headerDigest, digest(CTX_MESSAGE_BODY_DIGEST, body)),
  );
}

/** A message as it travels: `{"header": {...}, "body": b64u, "signature": b64u}`. */
export interface SealedMessage {
  header: JsonObject;
  body: string;
  signature: string;
}

function checkBodySize(length: number): void {
  if (length < MESSAGE_BODY_OVERHEAD) {
    throw new EnvelopeError(`a message body is at least ${MESSAGE_BODY_OVERHEAD} bytes`);
  }
  if (length > MAX_MESSAGE_BODY) {
    throw new EnvelopeError(`a message body is at most ${MAX_MESSAGE_BODY} bytes`);
  }
}

/**
 * Encrypt and sign a message. `header` holds every field of MESSAGE_FIELDS. The nonce is
 * fresh on each call; it is a parameter only so that the known-answer vector can be checked.
 */
export async function encryptMessage(
  sender: DeviceKeys,
  audienceKey: Uint8Array,
  header: JsonObject,
  plaintext: Uint8Array,
  nonce: Uint8Array = randomBytes(NONCE_SIZE),
): Promise<SealedMessage> {
  if (plaintext.length > MAX_MESSAGE_PLAINTEXT) {
    throw new EnvelopeError(`a message plaintext is at most ${MAX_MESSAGE_PLAINTEXT} bytes`);
  }
  keyBytes(audienceKey, AUDIENCE_KEY_SIZE, "an audience key");
  const hd = checkMessageHeader(header).headerDigest;
  const key = await deriveMessageKey(audienceKey, hd);
  const ciphertext = await aesGcmEncrypt(
    await aesGcmKey(key),
    nonce,
    plaintext,
    withContext(CTX_MESSAGE_BODY, hd),
  );
  const body = concat(nonce, keyCommitment(key), ciphertext);
  const signature = sender.sign(messageSigningInput(hd, body));
  return {
    header: structuredClone(header),
    body: b64uEncode(body),
    signature: b64uEncode(signature),
  };
}

/**
 * Check a message's header and size, and the sender device's signature over the header
 * digest and body digest. No key is needed. Returns the checked header and the body bytes.
 */
export function verifyMessage(
  sealed: SealedMessage,
  senderSigningKey: Uint8Array,
): { header: MessageHeader; body: Uint8Array } {
  if (!isObject(sealed) || Object.keys(sealed).sort().join() !== "body,header,signature") {
    throw new EnvelopeError("a sealed message has exactly header, body and signature");
  }
  const header = checkMessageHeader(sealed.header);
  if (typeof sealed.body !== "string") throw new EnvelopeError("message body must be base64url");
  if (sealed.body.length > Math.floor((MAX_MESSAGE_BODY * 4 + 2) / 3)) {
    throw new EnvelopeError(`message body is longer than ${MAX_MESSAGE_BODY} bytes`);
  }
  let body: Uint8Array;
  try {
    body = b64uDecode(sealed.body);
  } catch (error) {
    throw new EnvelopeError(`message body is malformed: ${String(error)}`);
  }
  checkBodySize(body.length);
  const signature = wireBytes(sealed.signature, "message signature", SIGNATURE_SIZE);
  verifySignature(
    senderSigningKey,
    signature,
    messageSigningInput(header.headerDigest, body),
    "message signature",
  );
  return { header, body };
}

async function openBody(
  header: MessageHeader,
  body: Uint8Array,
  itemKey: Uint8Array,
): Promise<Uint8Array> {
  const nonce = body.subarray(0, NONCE_SIZE);
  const commitment = body.subarray(NONCE_SIZE, NONCE_SIZE + KEY_COMMITMENT_SIZE);
  if (!equalBytes(commitment, keyCommitment(itemKey))) {
    throw new EnvelopeError(`message ${header.messageId} was not encrypted under this key`);
  }
  try {
    return await aesGcmDecrypt(
      await aesGcmKey(itemKey),
      nonce,
      body.subarray(NONCE_SIZE + KEY_COMMITMENT_SIZE),
      withContext(CTX_MESSAGE_BODY, header.headerDigest),
    );
  } catch (error) {
    if (error instanceof AeadError) {
      throw new EnvelopeError(`message ${header.messageId} does not decrypt`);
    }
    throw error;
  }
}

/** The plaintext, given the item (message) key, e.g. from a grant. Signature first. */
export async function decryptWithItemKey(
  sealed: SealedMessage,
  itemKey: Uint8Array,
  senderSigningKey: Uint8Array,
): Promise<Uint8Array> {
  keyBytes(itemKey, MESSAGE_KEY_SIZE, "an item key");
  const { header, body } = verifyMessage(sealed, senderSigningKey);
  return openBody(header, body, itemKey);
}

/**
 * The plaintext, given the audience key: verifies the sender's signature, derives the message
 * key, checks the key commitment and decrypts. The caller still checks the label against its
 * catalog, that the sender device belongs to the sender user, and that the container and
 * audience are the ones it expects.
 */
export async function decryptMessage(
  sealed: SealedMessage,
  audienceKey: Uint8Array,
  senderSigningKey: Uint8Array,
): Promise<Uint8Array> {
  keyBytes(audienceKey, AUDIENCE_KEY_SIZE, "an audience key");
  const { header, body } = verifyMessage(sealed, senderSigningKey);
  return openBody(header, body, await deriveMessageKey(audienceKey, header.headerDigest));
}

export type { Json };
