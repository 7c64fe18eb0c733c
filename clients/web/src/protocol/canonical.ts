/**
 * Canonical bytes (RFC 8785) and domain-separated digests, as protocol/canonical.py.
 *
 * Every signature, digest, HPKE `info` and AEAD associated data begins with its own context
 * string, UTF-8 and terminated by one zero byte: `context || 0x00 || payload`.
 */
import canonicalize from "canonicalize";
import { sha256 } from "@noble/hashes/sha2.js";

import { concat, utf8 } from "./bytes.js";

export const CTX_DEVICE_CERTIFICATE = "attache/v1/device-certificate";
export const CTX_DEVICE_REGISTRATION = "attache/v1/device-registration";
export const CTX_LOGIN = "attache/v1/login";
export const CTX_KEY_FINGERPRINT = "attache/v1/key-fingerprint";
export const CTX_AUTHORITY_KEY_ID = "attache/v1/authority-key-id";
export const CTX_SEALED_SECRET = "attache/v1/sealed-secret";
export const CTX_AUDIENCE_DEVICES = "attache/v1/audience-devices";
export const CTX_AUDIENCE_HEADER = "attache/v1/audience-header";
export const CTX_AUDIENCE_SIGNATURE = "attache/v1/audience-signature";
export const CTX_AUDIENCE_ENVELOPE = "attache/v1/audience-envelope";
export const CTX_MESSAGE_HEADER = "attache/v1/message-header";
export const CTX_MESSAGE_KEY = "attache/v1/message-key";
export const CTX_MESSAGE_KEY_COMMITMENT = "attache/v1/message-key-commitment";
export const CTX_MESSAGE_BODY = "attache/v1/message-body";
export const CTX_MESSAGE_BODY_DIGEST = "attache/v1/message-body-digest";
export const CTX_MESSAGE_SIGNATURE = "attache/v1/message-signature";
export const CTX_DOCUMENT_HEADER = "attache/v1/document-header";
export const CTX_DOCUMENT_KEY = "attache/v1/document-key";
export const CTX_DOCUMENT_KEY_COMMITMENT = "attache/v1/document-key-commitment";
export const CTX_DOCUMENT_CHUNK = "attache/v1/document-chunk";
export const CTX_DOCUMENT_CONTENT = "attache/v1/document-content";
export const CTX_DOCUMENT_SIGNATURE = "attache/v1/document-signature";
export const CTX_GRANT_HEADER = "attache/v1/grant-header";
export const CTX_GRANT_SIGNATURE = "attache/v1/grant-signature";
export const CTX_GRANT_ENVELOPE = "attache/v1/grant-envelope";
export const CTX_GRANT_ITEM_KEY_COMMITMENT = "attache/v1/grant-item-key-commitment";
export const CTX_ENROLMENT_CODE = "attache/v1/enrolment-code";
export const CTX_COALITION_POLICY = "attache/v1/coalition-policy";
export const CTX_COALITION_POLICY_SIGNATURE = "attache/v1/coalition-policy-signature";

/** A JSON value as the wire carries it. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };

export class CanonicalizationError extends Error {}

/**
 * RFC 8785 (JCS) bytes of `value`. Refuses what JSON cannot carry exactly, as the Python side
 * does: non-finite numbers, integers beyond 2**53 - 1 and lone surrogates (which UTF-8 cannot
 * encode and TextEncoder would silently replace).
 */
export function canonicalJson(value: Json): Uint8Array {
  check(value);
  const text = canonicalize(value);
  if (text === undefined) throw new CanonicalizationError("value has no JSON form");
  return utf8(text);
}

const LONE_SURROGATE = /\p{Surrogate}/u;

function check(value: unknown): void {
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const item = stack.pop();
    if (item === null || typeof item === "boolean") continue;
    if (typeof item === "string") {
      if (LONE_SURROGATE.test(item)) throw new CanonicalizationError("lone surrogate in string");
    } else if (typeof item === "number") {
      if (!Number.isFinite(item)) throw new CanonicalizationError("non-finite number");
      if (Number.isInteger(item) && !Number.isSafeInteger(item)) {
        throw new CanonicalizationError("integer beyond 2**53 - 1");
      }
    } else if (Array.isArray(item)) {
      stack.push(...item);
    } else if (typeof item === "object" && Object.getPrototypeOf(item) === Object.prototype) {
      for (const [key, child] of Object.entries(item)) {
        if (LONE_SURROGATE.test(key)) throw new CanonicalizationError("lone surrogate in key");
        stack.push(child);
      }
    } else {
      throw new CanonicalizationError(`${typeof item} is not JSON`);
    }
  }
}

/** `context || 0x00 || payload`: the bytes that are signed or hashed. */
export function withContext(context: string, payload: Uint8Array): Uint8Array {
  const encoded = utf8(context);
  if (encoded.length === 0 || encoded.includes(0)) {
    throw new Error("a context string must be non-empty and contain no NUL byte");
  }
  return concat(encoded, new Uint8Array([0]), payload);
}

/** The exact bytes an Ed25519 signature over a JSON structure covers. */
export function signingInput(context: string, value: Json): Uint8Array {
  return withContext(context, canonicalJson(value));
}

/** SHA-256 of `context || 0x00 || payload`. */
export function digest(context: string, payload: Uint8Array): Uint8Array {
  return sha256(withContext(context, payload));
}
