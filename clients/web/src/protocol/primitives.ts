/**
 * The primitives of protocol v1, each from a well-kept library: HPKE base mode with X-Wing
 * (@hpke/core, @hpke/hybridkem-x-wing), Ed25519 (@noble/curves), AES-256-GCM and HKDF-SHA256
 * (WebCrypto). Only the modules of protocol/ compose them.
 */
import { Aes256Gcm, CipherSuite, HkdfSha256 } from "@hpke/core";
import { XWing } from "@hpke/hybridkem-x-wing";
import { ed25519, x25519 } from "@noble/curves/ed25519.js";

import { equalBytes } from "./bytes.js";

export const ED25519_SEED_SIZE = 32;
export const ED25519_PUBLIC_KEY_SIZE = 32;
export const SIGNATURE_SIZE = 64;
export const XWING_SEED_SIZE = 32;
export const MLKEM768_PUBLIC_KEY_SIZE = 1184;
export const X25519_PUBLIC_KEY_SIZE = 32;
export const ENCRYPTION_PUBLIC_KEY_SIZE = MLKEM768_PUBLIC_KEY_SIZE + X25519_PUBLIC_KEY_SIZE;
export const HPKE_ENC_SIZE = 1120;
export const AES_KEY_SIZE = 32;
export const NONCE_SIZE = 12;
export const TAG_SIZE = 16;

const subtle = globalThis.crypto.subtle;

/** Fresh random bytes from the platform's CSPRNG. */
export function randomBytes(size: number): Uint8Array {
  return globalThis.crypto.getRandomValues(new Uint8Array(size));
}

// WebCrypto's types want an ArrayBuffer-backed view; copying also detaches us from the caller.
function own(data: Uint8Array): Uint8Array<ArrayBuffer> {
  return new Uint8Array(data);
}

// --- Ed25519 ----------------------------------------------------------------------------------

export function ed25519PublicKey(seed: Uint8Array): Uint8Array {
  if (seed.length !== ED25519_SEED_SIZE) throw new Error("an Ed25519 seed is 32 bytes");
  return ed25519.getPublicKey(seed);
}

export function ed25519Sign(seed: Uint8Array, message: Uint8Array): Uint8Array {
  return ed25519.sign(message, seed);
}

/**
 * RFC 8032 verification as OpenSSL (and so pyca/cryptography) does it: non-canonical
 * encodings are refused (`zip215: false`), so a signature valid here is valid there.
 */
export function ed25519Verify(
  publicKey: Uint8Array,
  signature: Uint8Array,
  message: Uint8Array,
): boolean {
  if (publicKey.length !== ED25519_PUBLIC_KEY_SIZE || signature.length !== SIGNATURE_SIZE) {
    return false;
  }
  try {
    return ed25519.verify(signature, message, publicKey, { zip215: false });
  } catch {
    return false;
  }
}

// --- HKDF and AES-256-GCM (WebCrypto) ------------------------------------------------------------

/**
 * HKDF-SHA256 with no salt (RFC 5869: the same as HashLen zero bytes, which WebCrypto needs
 * spelled out), 32 bytes of output.
 */
export async function hkdfSha256(ikm: Uint8Array, info: Uint8Array): Promise<Uint8Array> {
  const key = await subtle.importKey("raw", own(ikm), "HKDF", false, ["deriveBits"]);
  const bits = await subtle.deriveBits(
    { name: "HKDF", hash: "SHA-256", salt: new Uint8Array(32), info: own(info) },
    key,
    256,
  );
  return new Uint8Array(bits);
}

/** An AES-256-GCM key, imported once and used for many chunks. */
export async function aesGcmKey(key: Uint8Array): Promise<CryptoKey> {
  if (key.length !== AES_KEY_SIZE) throw new Error("an AES-256-GCM key is 32 bytes");
  return subtle.importKey("raw", own(key), "AES-GCM", false, ["encrypt", "decrypt"]);
}

/** `ciphertext || tag` (16 bytes), as pyca/cryptography's AESGCM.encrypt. */
export async function aesGcmEncrypt(
  key: CryptoKey,
  nonce: Uint8Array,
  plaintext: Uint8Array,
  associatedData: Uint8Array,
): Promise<Uint8Array> {
  const sealed = await subtle.encrypt(
    { name: "AES-GCM", iv: own(nonce), additionalData: own(associatedData), tagLength: 128 },
    key,
    own(plaintext),
  );
  return new Uint8Array(sealed);
}

/** Throws AeadError when the tag does not verify. */
export async function aesGcmDecrypt(
  key: CryptoKey,
  nonce: Uint8Array,
  sealed: Uint8Array,
  associatedData: Uint8Array,
): Promise<Uint8Array> {
  try {
    const plaintext = await subtle.decrypt(
      { name: "AES-GCM", iv: own(nonce), additionalData: own(associatedData), tagLength: 128 },
      key,
      own(sealed),
    );
    return new Uint8Array(plaintext);
  } catch {
    throw new AeadError("the ciphertext does not open under this key");
  }
}

export class AeadError extends Error {}

// --- HPKE: RFC 9180 base mode, single shot, X-Wing (0x647a), HKDF-SHA256, AES-256-GCM -------------

const xwing = new XWing();
const suite = new CipherSuite({ kem: xwing, kdf: new HkdfSha256(), aead: new Aes256Gcm() });

/**
 * The 1,216-byte public key of a 32-byte X-Wing seed: SHAKE256(seed, 96) gives the ML-KEM-768
 * seed and the X25519 private key; the public key is ML-KEM-768's followed by X25519's.
 */
export async function xwingPublicKey(seed: Uint8Array): Promise<Uint8Array> {
  if (seed.length !== XWING_SEED_SIZE) throw new Error("an X-Wing seed is 32 bytes");
  const pair = await xwing.generateKeyPairDerand(own(seed));
  return new Uint8Array(await xwing.serializePublicKey(pair.publicKey));
}

/**
 * Whether 1,216 bytes are a usable X-Wing public key: the ML-KEM-768 part passes FIPS 203's
 * encapsulation key check (every coefficient below q) and the X25519 part is not a low-order
 * point, as protocol/keys.py load_encryption_public_key demands.
 */
export function isUsableEncryptionKey(data: Uint8Array): boolean {
  if (data.length !== ENCRYPTION_PUBLIC_KEY_SIZE) return false;
  // The 3 x 256 coefficients of t-hat, 12 bits each, packed two per three bytes; rho follows.
  for (let i = 0; i < 3 * 384; i += 3) {
    const b0 = data[i]!;
    const b1 = data[i + 1]!;
    const b2 = data[i + 2]!;
    if ((b0 | ((b1 & 0x0f) << 8)) >= 3329 || ((b1 >> 4) | (b2 << 4)) >= 3329) return false;
  }
  try {
    const shared = x25519.getSharedSecret(
      x25519.utils.randomSecretKey(),
      data.subarray(MLKEM768_PUBLIC_KEY_SIZE),
    );
    return !equalBytes(shared, new Uint8Array(32));
  } catch {
    return false;
  }
}

/** `enc || ciphertext`, as pyca/cryptography's Suite.encrypt. */
export async function hpkeSeal(
  publicKey: Uint8Array,
  plaintext: Uint8Array,
  info: Uint8Array,
): Promise<Uint8Array> {
  if (!isUsableEncryptionKey(publicKey)) throw new Error("the encryption key is unusable");
  const recipientPublicKey = await xwing.deserializePublicKey(own(publicKey));
  const { ct, enc } = await suite.seal({ recipientPublicKey, info: own(info) }, own(plaintext));
  const out = new Uint8Array(enc.byteLength + ct.byteLength);
  out.set(new Uint8Array(enc), 0);
  out.set(new Uint8Array(ct), enc.byteLength);
  return out;
}

/** Opens `enc || ciphertext` with a device's X-Wing seed; throws HpkeOpenError otherwise. */
export async function hpkeOpen(
  seed: Uint8Array,
  sealed: Uint8Array,
  info: Uint8Array,
): Promise<Uint8Array> {
  if (sealed.length < HPKE_ENC_SIZE + TAG_SIZE) throw new HpkeOpenError("too short");
  try {
    const recipientKey = await xwing.importKey("raw", own(seed).buffer, false);
    const plaintext = await suite.open(
      { recipientKey, enc: own(sealed.subarray(0, HPKE_ENC_SIZE)), info: own(info) },
      own(sealed.subarray(HPKE_ENC_SIZE)),
    );
    return new Uint8Array(plaintext);
  } catch (error) {
    throw new HpkeOpenError(String(error));
  }
}

export class HpkeOpenError extends Error {}
