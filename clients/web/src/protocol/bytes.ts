/**
 * Byte helpers: hex, strict unpadded base64url (RFC 4648 section 5) as protocol/keys.py
 * decodes it, UTF-8, concatenation and a comparison whose time does not depend on where two
 * byte strings first differ.
 */

const B64U_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const B64U_TEXT = /^[A-Za-z0-9_-]*$/;
const B64U_VALUES = new Map([...B64U_ALPHABET].map((char, index) => [char, index]));

export function b64uEncode(data: Uint8Array): string {
  let text = "";
  for (let i = 0; i < data.length; i += 3) {
    const a = data[i]!;
    const b = data[i + 1];
    const c = data[i + 2];
    text += B64U_ALPHABET[a >> 2]!;
    text += B64U_ALPHABET[((a & 3) << 4) | ((b ?? 0) >> 4)]!;
    if (b !== undefined) text += B64U_ALPHABET[((b & 15) << 2) | ((c ?? 0) >> 6)]!;
    if (c !== undefined) text += B64U_ALPHABET[c & 63]!;
  }
  return text;
}

/**
 * Strict inverse of `b64uEncode`: refuses other alphabets, padding, whitespace, impossible
 * lengths and non-zero unused bits, so that no two strings decode to the same bytes.
 */
export function b64uDecode(text: string): Uint8Array {
  if (typeof text !== "string") throw new Error("base64url data must be a string");
  if (!B64U_TEXT.test(text)) throw new Error("not unpadded base64url: unexpected character");
  if (text.length % 4 === 1) throw new Error("not unpadded base64url: impossible length");
  const out = new Uint8Array(Math.floor((text.length * 3) / 4));
  let bits = 0;
  let value = 0;
  let position = 0;
  for (const char of text) {
    value = (value << 6) | B64U_VALUES.get(char)!;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[position++] = (value >> bits) & 0xff;
    }
  }
  if ((value & ((1 << bits) - 1)) !== 0) {
    throw new Error("not canonical base64url: non-zero trailing bits");
  }
  return out;
}

export function b64uDecodeSized(text: string, size: number, what: string): Uint8Array {
  const data = b64uDecode(text);
  if (data.length !== size) throw new Error(`${what} must be ${size} bytes, got ${data.length}`);
  return data;
}

export function toHex(data: Uint8Array): string {
  return Array.from(data, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

export function fromHex(text: string): Uint8Array {
  if (!/^(?:[0-9a-f]{2})*$/.test(text)) throw new Error("not lower-case hex");
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(text.slice(2 * i, 2 * i + 2), 16);
  return out;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

export function utf8(text: string): Uint8Array {
  return encoder.encode(text);
}

/** UTF-8 bytes to text; throws on invalid UTF-8 rather than inventing U+FFFD. */
export function fromUtf8(data: Uint8Array): string {
  return decoder.decode(data);
}

export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((total, part) => total + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/** Equality of two byte strings without an early exit on the first difference. */
export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let difference = 0;
  for (let i = 0; i < a.length; i++) difference |= a[i]! ^ b[i]!;
  return difference === 0;
}
