/**
 * Device keys, authority key ids, fingerprints, certificates and proofs of possession, as
 * protocol/keys.py defines them (docs/PROTOCOL.md is the byte-level contract).
 */
import { b64uDecodeSized, b64uEncode, concat, toHex } from "./bytes.js";
import {
  CTX_AUTHORITY_KEY_ID,
  CTX_DEVICE_CERTIFICATE,
  CTX_DEVICE_REGISTRATION,
  CTX_KEY_FINGERPRINT,
  CTX_LOGIN,
  CanonicalizationError,
  canonicalJson,
  digest,
  signingInput,
  type Json,
  type JsonObject,
} from "./canonical.js";
import {
  ED25519_PUBLIC_KEY_SIZE,
  ED25519_SEED_SIZE,
  ENCRYPTION_PUBLIC_KEY_SIZE,
  SIGNATURE_SIZE,
  XWING_SEED_SIZE,
  ed25519PublicKey,
  ed25519Sign,
  ed25519Verify,
  isUsableEncryptionKey,
  randomBytes,
  xwingPublicKey,
} from "./primitives.js";

const FINGERPRINT_SIZE = 20;
const AUTHORITY_KEY_ID_SIZE = 16;
const CERTIFICATE_SERIAL_SIZE = 16;
const LOGIN_CHALLENGE_SIZE = 32;
const MAX_TEXT = 256;

// --- times ------------------------------------------------------------------------------------

const UTC_TIME = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})Z$/;

/** Strict RFC 3339 UTC with seconds and `Z` (no offsets, no fractions), as the wire carries. */
export function parseUtcTime(text: unknown): Date {
  const match = typeof text === "string" ? UTC_TIME.exec(text) : null;
  if (match === null) {
    throw new Error(`not an RFC 3339 UTC time of the form YYYY-MM-DDTHH:MM:SSZ: ${String(text)}`);
  }
  const [year, month, day, hour, minute, second] = match.slice(1).map(Number) as [
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  const moment = new Date(Date.UTC(year, month - 1, day, hour, minute, second));
  // Date.UTC rolls 2026-02-30 over into March; the wire form must name a real moment.
  if (formatUtcTime(moment) !== text) throw new Error(`not a valid date and time: ${text}`);
  return moment;
}

export function formatUtcTime(moment: Date): string {
  return moment.toISOString().replace(/\.\d{3}Z$/, "Z");
}

// --- fingerprints and key ids ------------------------------------------------------------------

/** Ten groups of four hex digits: the first 20 bytes of digest(CTX_KEY_FINGERPRINT, key). */
export function fingerprint(publicKey: Uint8Array): string {
  const hexed = toHex(digest(CTX_KEY_FINGERPRINT, publicKey).subarray(0, FINGERPRINT_SIZE));
  return hexed.match(/.{4}/g)!.join(" ");
}

/** b64u of the first 16 bytes of digest(CTX_AUTHORITY_KEY_ID, public key). */
export function authorityKeyId(publicKey: Uint8Array): string {
  if (publicKey.length !== ED25519_PUBLIC_KEY_SIZE) {
    throw new Error("an authority public key is 32 bytes");
  }
  return b64uEncode(digest(CTX_AUTHORITY_KEY_ID, publicKey).subarray(0, AUTHORITY_KEY_ID_SIZE));
}

// --- device keys ---------------------------------------------------------------------------------

/** A device's public keys: Ed25519 (32 bytes) and X-Wing (1,216 bytes). */
export class DevicePublicKeys {
  constructor(
    readonly signingKey: Uint8Array,
    readonly encryptionKey: Uint8Array,
  ) {
    if (signingKey.length !== ED25519_PUBLIC_KEY_SIZE) {
      throw new Error("a signing public key is 32 bytes");
    }
    if (encryptionKey.length !== ENCRYPTION_PUBLIC_KEY_SIZE) {
      throw new Error("an encryption public key is 1216 bytes");
    }
  }

  /** Over both keys: `signing_key || encryption_key`. */
  fingerprint(): string {
    return fingerprint(concat(this.signingKey, this.encryptionKey));
  }

  toJson(): { signing_key: string; encryption_key: string } {
    return {
      signing_key: b64uEncode(this.signingKey),
      encryption_key: b64uEncode(this.encryptionKey),
    };
  }
}

/**
 * A device's private keys: the Ed25519 seed and the 32-byte X-Wing seed (64 bytes in all,
 * `signing seed || X-Wing seed`, the form the sealed key store holds).
 */
export class DeviceKeys {
  private constructor(
    private readonly signingSeed: Uint8Array,
    readonly xwingSeed: Uint8Array,
    readonly publicKeys: DevicePublicKeys,
  ) {}

  static async fromPrivateBytes(data: Uint8Array): Promise<DeviceKeys> {
    if (data.length !== ED25519_SEED_SIZE + XWING_SEED_SIZE) {
      throw new Error("device private keys are 64 bytes");
    }
    const signingSeed = data.slice(0, ED25519_SEED_SIZE);
    const xwingSeed = data.slice(ED25519_SEED_SIZE);
    const publicKeys = new DevicePublicKeys(
      ed25519PublicKey(signingSeed),
      await xwingPublicKey(xwingSeed),
    );
    return new DeviceKeys(signingSeed, xwingSeed, publicKeys);
  }

  static generate(): Promise<DeviceKeys> {
    return DeviceKeys.fromPrivateBytes(randomBytes(ED25519_SEED_SIZE + XWING_SEED_SIZE));
  }

  /** All the device's private material: store it only sealed. */
  toPrivateBytes(): Uint8Array {
    return concat(this.signingSeed, this.xwingSeed);
  }

  sign(message: Uint8Array): Uint8Array {
    return ed25519Sign(this.signingSeed, message);
  }
}

// --- proofs of possession ------------------------------------------------------------------------

export function registrationPayload(
  publicKeys: DevicePublicKeys,
  { user, nonce, server }: { user: string; nonce: string; server: string },
): Record<string, string> {
  return { user, nonce, server, ...publicKeys.toJson() };
}

/** Ed25519 over signingInput(CTX_DEVICE_REGISTRATION, registrationPayload(...)). */
export function signRegistration(
  keys: DeviceKeys,
  fields: { user: string; nonce: string; server: string },
): Uint8Array {
  return keys.sign(
    signingInput(CTX_DEVICE_REGISTRATION, registrationPayload(keys.publicKeys, fields)),
  );
}

/** What a device signs to log in; the server builds the same from the challenge it issued. */
export interface LoginPayload {
  device_id: string;
  challenge: string;
  server_origin: string;
}

/** The login statement, checked: the challenge is b64u of 32 bytes, the rest non-empty. */
export function loginPayload(fields: LoginPayload): LoginPayload {
  b64uDecodeSized(fields.challenge, LOGIN_CHALLENGE_SIZE, "challenge");
  if (!fields.device_id || !fields.server_origin) {
    throw new Error("device_id and server_origin must be non-empty");
  }
  return {
    device_id: fields.device_id,
    challenge: fields.challenge,
    server_origin: fields.server_origin,
  };
}

/** Ed25519 over signingInput(CTX_LOGIN, payload). */
export function signLogin(keys: DeviceKeys, payload: LoginPayload): Uint8Array {
  return keys.sign(signingInput(CTX_LOGIN, { ...loginPayload(payload) }));
}

// --- device certificates -------------------------------------------------------------------------

export class CertificateError extends Error {}

export const CERTIFICATE_FIELDS = new Set([
  "version",
  "serial",
  "device_id",
  "user_id",
  "username",
  "nation",
  "nationality",
  "clearance",
  "signing_key",
  "encryption_key",
  "issued_at",
  "expires_at",
  "authority_key_id",
]);

export interface CertificateBody {
  serial: string;
  deviceId: string;
  userId: string;
  username: string;
  nation: string;
  nationality: string;
  clearance: JsonObject;
  deviceKeys: DevicePublicKeys;
  issuedAt: Date;
  expiresAt: Date;
  authorityKeyId: string;
}

/** The wire form `{"body": {...}, "signature": b64u}`; nothing in it is trusted until verified. */
export interface DeviceCertificate {
  body: JsonObject;
  signature: string;
}

const NATION = /^[A-Z]{3}$/;
// Unicode category C (control, format, surrogate, private use, unassigned), as Python's
// unicodedata.category(char).startswith("C").
const CATEGORY_C = /[\p{C}]/u;

function isObject(value: unknown): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function textField(body: JsonObject, name: string): string {
  const value = body[name];
  if (typeof value !== "string" || value.length < 1 || [...value].length > MAX_TEXT) {
    throw new CertificateError(`certificate field ${name} must be text of 1 to ${MAX_TEXT} chars`);
  }
  if (CATEGORY_C.test(value)) {
    throw new CertificateError(`certificate field ${name} contains control or format characters`);
  }
  return value;
}

function nationField(body: JsonObject, name: string): string {
  const value = body[name];
  if (typeof value !== "string" || !NATION.test(value)) {
    throw new CertificateError(`certificate field ${name} must be an ISO 3166-1 alpha-3 code`);
  }
  return value;
}

function b64uField(body: JsonObject, name: string, size: number): Uint8Array {
  try {
    return b64uDecodeSized(body[name] as string, size, name);
  } catch (error) {
    throw new CertificateError(`certificate field ${name} is malformed: ${String(error)}`);
  }
}

function timeField(body: JsonObject, name: string): Date {
  try {
    return parseUtcTime(body[name]);
  } catch (error) {
    throw new CertificateError(`certificate field ${name} is malformed: ${String(error)}`);
  }
}

function parseCertificateBody(body: unknown): CertificateBody {
  if (!isObject(body)) throw new CertificateError("certificate body must be a JSON object");
  if (body.version !== 1) {
    throw new CertificateError(`unsupported certificate version ${JSON.stringify(body.version)}`);
  }
  const present = new Set(Object.keys(body));
  const missing = [...CERTIFICATE_FIELDS].filter((name) => !present.has(name)).sort();
  if (missing.length > 0)
    throw new CertificateError(`certificate body lacks ${missing.join(", ")}`);
  const unknown = [...present].filter((name) => !CERTIFICATE_FIELDS.has(name)).sort();
  if (unknown.length > 0) {
    throw new CertificateError(`certificate body has unknown fields ${unknown.join(", ")}`);
  }
  const nation = nationField(body, "nation");
  const nationality = nationField(body, "nationality");
  if (nation !== nationality) {
    throw new CertificateError(
      `certificate issued by ${nation} for a user of nationality ${nationality}: ` +
        "a nation vouches only for its own people",
    );
  }
  const clearance = body.clearance;
  if (!isObject(clearance)) {
    throw new CertificateError("certificate field clearance must be a JSON object");
  }
  try {
    canonicalJson(clearance);
  } catch (error) {
    if (error instanceof CanonicalizationError) {
      throw new CertificateError(`certificate field clearance is not canonical JSON: ${error}`);
    }
    throw error;
  }
  const serial = b64uField(body, "serial", CERTIFICATE_SERIAL_SIZE);
  b64uField(body, "authority_key_id", AUTHORITY_KEY_ID_SIZE);
  const signingKey = b64uField(body, "signing_key", ED25519_PUBLIC_KEY_SIZE);
  const encryptionKey = b64uField(body, "encryption_key", ENCRYPTION_PUBLIC_KEY_SIZE);
  if (!isUsableEncryptionKey(encryptionKey)) {
    throw new CertificateError("certificate field encryption_key is unusable");
  }
  const issuedAt = timeField(body, "issued_at");
  const expiresAt = timeField(body, "expires_at");
  if (expiresAt <= issuedAt) {
    throw new CertificateError("certificate expires_at must be later than issued_at");
  }
  return {
    serial: b64uEncode(serial),
    deviceId: textField(body, "device_id"),
    userId: textField(body, "user_id"),
    username: textField(body, "username"),
    nation,
    nationality,
    clearance: structuredClone(clearance),
    deviceKeys: new DevicePublicKeys(signingKey, encryptionKey),
    issuedAt,
    expiresAt,
    authorityKeyId: body.authority_key_id as string,
  };
}

/**
 * Where a certificate's authority key comes from: the pinned keys (nation -> 32 raw bytes), or
 * a source that gives the key listed for a nation under the key id a certificate names (the
 * coalition policy held), throwing CertificateError when it lists none.
 */
export type AuthorityKeys =
  ReadonlyMap<string, Uint8Array> | { keyFor(nation: string, keyId: string): Uint8Array };

/**
 * Check a device certificate against the enrolment authority keys (`AuthorityKeys`) and
 * return its typed body. The same checks, in the same order, as
 * protocol/keys.py verify_certificate; throws CertificateError saying which failed.
 */
export function verifyCertificate(
  certificate: unknown,
  authorityKeys: AuthorityKeys,
  { now, leewaySeconds = 0 }: { now: Date; leewaySeconds?: number },
): CertificateBody {
  if (!isObject(certificate) || Object.keys(certificate).sort().join() !== "body,signature") {
    throw new CertificateError("certificate must have exactly the fields body and signature");
  }
  let signature: Uint8Array;
  try {
    signature = b64uDecodeSized(certificate.signature as string, SIGNATURE_SIZE, "signature");
  } catch (error) {
    throw new CertificateError(`certificate signature is malformed: ${String(error)}`);
  }
  const parsed = parseCertificateBody(certificate.body);
  const pinned =
    "keyFor" in authorityKeys
      ? authorityKeys.keyFor(parsed.nation, parsed.authorityKeyId)
      : authorityKeys.get(parsed.nation);
  if (pinned === undefined) {
    throw new CertificateError(`no enrolment authority key is pinned for nation ${parsed.nation}`);
  }
  if (pinned.length !== ED25519_PUBLIC_KEY_SIZE) {
    throw new CertificateError(`the pinned authority key for ${parsed.nation} is malformed`);
  }
  const pinnedId = authorityKeyId(pinned);
  if (parsed.authorityKeyId !== pinnedId) {
    throw new CertificateError(
      `certificate names authority key ${parsed.authorityKeyId}, ` +
        `but the pinned key for ${parsed.nation} is ${pinnedId}`,
    );
  }
  const signed = signingInput(CTX_DEVICE_CERTIFICATE, certificate.body as Json);
  if (!ed25519Verify(pinned, signature, signed)) {
    throw new CertificateError(
      `certificate signature is not valid for the ${parsed.nation} authority key`,
    );
  }
  const leeway = leewaySeconds * 1000;
  if (now.getTime() + leeway < parsed.issuedAt.getTime()) {
    throw new CertificateError(`certificate is not valid before ${formatUtcTime(parsed.issuedAt)}`);
  }
  if (now.getTime() - leeway >= parsed.expiresAt.getTime()) {
    throw new CertificateError(`certificate expired at ${formatUtcTime(parsed.expiresAt)}`);
  }
  return parsed;
}
