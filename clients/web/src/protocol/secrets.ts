/**
 * Secrets at rest: the sealed-secret format of protocol/keys.py (seal_secret, open_secret),
 * which the CLI's key store writes and the page's will. Argon2id (hash-wasm) derives a key from
 * the passphrase; AES-256-GCM (WebCrypto) seals the secret; the associated data binds the
 * format, version, purpose, KDF parameters, salt and nonce. The blob is RFC 8785 JSON:
 *
 *   {"ciphertext": b64u, "kdf": {"algorithm": "argon2id", "iterations": int, "lanes": int,
 *    "memory_kib": int, "salt": b64u}, "nonce": b64u, "purpose": str,
 *    "type": "attache-sealed-secret", "version": 1}
 *
 * hash-wasm runs Argon2id as WebAssembly, so a page that uses this module needs
 * `'wasm-unsafe-eval'` in its script-src (WebAssembly compilation, not JavaScript eval).
 */
import { argon2id } from "hash-wasm";

import { b64uDecodeSized, b64uDecode, b64uEncode, fromUtf8, utf8 } from "./bytes.js";
import { CTX_SEALED_SECRET, canonicalJson, withContext, type JsonObject } from "./canonical.js";
import { AeadError, aesGcmDecrypt, aesGcmEncrypt, aesGcmKey, randomBytes } from "./primitives.js";

export class SecretError extends Error {}

/** Argon2id parameters (RFC 9106); `memory_kib` in KiB. The defaults are the ones to use. */
export interface KdfParams {
  memory_kib: number;
  iterations: number;
  lanes: number;
}

export const KDF_DEFAULT: KdfParams = { memory_kib: 64 * 1024, iterations: 3, lanes: 1 };
/** OWASP's minimum: below it a stolen blob is too cheap to attack. Tests seal with this. */
export const KDF_MINIMUM: KdfParams = { memory_kib: 19 * 1024, iterations: 2, lanes: 1 };
/** Above this a tampered blob could pin the CPU or exhaust memory when opened. */
export const KDF_MAXIMUM: KdfParams = { memory_kib: 1024 * 1024, iterations: 10, lanes: 16 };

const TYPE = "attache-sealed-secret";
const FIELDS = "ciphertext,kdf,nonce,purpose,type,version";
const KDF_FIELDS = "algorithm,iterations,lanes,memory_kib,salt";
const SALT_SIZE = 16;
const NONCE_SIZE = 12;
const PURPOSE = /^[a-z0-9][a-z0-9._-]{0,63}$/;
const DAMAGED = "wrong passphrase or damaged key file";

function checkPurpose(purpose: string): void {
  if (!PURPOSE.test(purpose)) throw new Error("purpose must match [a-z0-9][a-z0-9._-]{0,63}");
}

/** SecretError unless every parameter is an integer within the accepted range. */
export function checkKdfParams(params: Record<string, unknown>): KdfParams {
  for (const name of ["memory_kib", "iterations", "lanes"] as const) {
    const value = params[name];
    const low = KDF_MINIMUM[name];
    const high = KDF_MAXIMUM[name];
    if (typeof value !== "number" || !Number.isInteger(value) || value < low || value > high) {
      throw new SecretError(
        `Argon2id ${name}=${JSON.stringify(value)} is outside the accepted range ${low}..${high}`,
      );
    }
  }
  return params as unknown as KdfParams;
}

async function sealedKey(passphrase: string, salt: Uint8Array, params: KdfParams) {
  const key = await argon2id({
    // NFC, so that the same passphrase typed where characters compose differently still opens.
    password: utf8(passphrase.normalize("NFC")),
    salt,
    iterations: params.iterations,
    parallelism: params.lanes,
    memorySize: params.memory_kib,
    hashLength: 32,
    outputType: "binary",
  });
  return aesGcmKey(key);
}

function associatedData(header: JsonObject): Uint8Array {
  return withContext(CTX_SEALED_SECRET, canonicalJson(header));
}

/** Encrypt `plaintext` under a passphrase; returns the blob's bytes. */
export async function sealSecret(
  passphrase: string,
  plaintext: Uint8Array,
  { purpose, params = KDF_DEFAULT }: { purpose: string; params?: KdfParams },
): Promise<Uint8Array> {
  checkPurpose(purpose);
  if (!passphrase) throw new Error("an empty passphrase protects nothing");
  checkKdfParams({ ...params });
  const salt = randomBytes(SALT_SIZE);
  const nonce = randomBytes(NONCE_SIZE);
  const header: JsonObject = {
    type: TYPE,
    version: 1,
    purpose,
    kdf: {
      algorithm: "argon2id",
      memory_kib: params.memory_kib,
      iterations: params.iterations,
      lanes: params.lanes,
      salt: b64uEncode(salt),
    },
    nonce: b64uEncode(nonce),
  };
  const key = await sealedKey(passphrase, salt, params);
  const ciphertext = await aesGcmEncrypt(key, nonce, plaintext, associatedData(header));
  return canonicalJson({ ...header, ciphertext: b64uEncode(ciphertext) });
}

function isObject(value: unknown): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * Inverse of `sealSecret`, and of protocol/keys.py seal_secret. Throws SecretError: "wrong
 * passphrase or damaged key file" for a wrong passphrase or any change to the blob, and a more
 * specific message for another purpose or version, or KDF parameters outside the accepted
 * range (checked before any work). The blob must be canonical JSON, as every sealer writes it,
 * which also refuses duplicate keys (JSON.parse would silently keep the last).
 */
export async function openSecret(
  passphrase: string,
  blob: Uint8Array,
  { purpose }: { purpose: string },
): Promise<Uint8Array> {
  checkPurpose(purpose);
  let document: unknown;
  try {
    document = JSON.parse(fromUtf8(blob));
    if (!isObject(document) || fromUtf8(canonicalJson(document)) !== fromUtf8(blob)) {
      throw new SecretError(DAMAGED);
    }
  } catch {
    throw new SecretError(DAMAGED);
  }
  if (Object.keys(document).sort().join() !== FIELDS || document.type !== TYPE) {
    throw new SecretError(DAMAGED);
  }
  if (document.version !== 1) {
    throw new SecretError(`unsupported key file version ${JSON.stringify(document.version)}`);
  }
  if (document.purpose !== purpose) {
    throw new SecretError(
      `this file holds a ${JSON.stringify(document.purpose)} secret, not ${JSON.stringify(purpose)}`,
    );
  }
  const kdf = document.kdf;
  if (!isObject(kdf) || Object.keys(kdf).sort().join() !== KDF_FIELDS) {
    throw new SecretError(DAMAGED);
  }
  if (kdf.algorithm !== "argon2id") throw new SecretError(DAMAGED);
  const params = checkKdfParams(kdf);
  let salt: Uint8Array;
  let nonce: Uint8Array;
  let ciphertext: Uint8Array;
  try {
    salt = b64uDecodeSized(kdf.salt as string, SALT_SIZE, "salt");
    nonce = b64uDecodeSized(document.nonce as string, NONCE_SIZE, "nonce");
    ciphertext = b64uDecode(document.ciphertext as string);
  } catch {
    throw new SecretError(DAMAGED);
  }
  const { ciphertext: _, ...header } = document;
  const key = await sealedKey(passphrase, salt, params);
  try {
    return await aesGcmDecrypt(key, nonce, ciphertext, associatedData(header));
  } catch (error) {
    if (error instanceof AeadError) throw new SecretError(DAMAGED);
    throw error;
  }
}
