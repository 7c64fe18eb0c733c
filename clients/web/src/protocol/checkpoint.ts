/**
 * C2SP tlog-checkpoint bodies in C2SP signed notes (Ed25519), as protocol/checkpoint.py reads
 * and writes them, with the same refusals: a checkpoint is `<origin>\n<size>\n<base64 root>\n`
 * plus extension lines; a signed note is its text, a blank line, and one line
 * `— <key name> <base64(key id || signature)>` per signature; a verifier key is
 * `<name>+<8 hex digits key id>+<base64(0x01 || public key)>`.
 *
 * One difference, said where it bites: a tree size beyond 2**53 - 1 (valid up to 2**63 - 1)
 * is refused here, since the page counts leaves in JavaScript numbers and could never
 * download that many.
 */
import { sha256 } from "@noble/hashes/sha2.js";

import { concat, equalBytes, toHex, utf8 } from "./bytes.js";
import { HASH_SIZE } from "./merkle.js";
import {
  ED25519_PUBLIC_KEY_SIZE,
  SIGNATURE_SIZE,
  ed25519PublicKey,
  ed25519Sign,
  ed25519Verify,
} from "./primitives.js";

export const SIGNATURE_TYPE_ED25519 = 0x01;
/** More signatures than this make a note malformed (golang.org/x/mod/sumdb/note's limit). */
export const MAX_SIGNATURES = 100;
/** A note larger than this (UTF-8 bytes) is refused before any parsing. */
export const MAX_NOTE_SIZE = 1024 * 1024;
const MAX_TREE_SIZE = 2n ** 63n - 1n;

const KEY_ID_SIZE = 4;
const SIGNATURE_PREFIX = "\u2014 ";
const TREE_SIZE = /^(?:0|[1-9][0-9]*)$/;
export const STD_BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const KEY_ID_HEX = /^[0-9a-f]{8}$/;
const CONTROL = /[\x00-\x09\x0b-\x1f]/;
// Python's str.isspace(), which protocol/checkpoint.py refuses in a key name.
const PY_SPACE = /[\t\n\v\f\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]/;
// With the u flag a surrogate pair is one code point, so this finds lone surrogates only:
// text Python could not encode as UTF-8.
const LONE_SURROGATE = /\p{Cs}/u;

export class CheckpointError extends Error {}

export function b64Encode(data: Uint8Array): string {
  let binary = "";
  for (const byte of data) binary += String.fromCharCode(byte);
  return btoa(binary);
}

/** Strict standard base64: padded, no whitespace, no non-zero trailing bits. */
export function b64Decode(text: string, what: string): Uint8Array {
  if (!STD_BASE64.test(text)) throw new CheckpointError(`${what} is not standard padded base64`);
  const data = Uint8Array.from(atob(text), (char) => char.charCodeAt(0));
  if (b64Encode(data) !== text) {
    throw new CheckpointError(`${what} is not canonical base64: non-zero trailing bits`);
  }
  return data;
}

/** UTF-8 bytes of `text`, which must be encodable and free of controls but newline. */
function checkText(text: unknown, what: string): Uint8Array {
  if (typeof text !== "string") throw new CheckpointError(`${what} must be a string`);
  if (LONE_SURROGATE.test(text)) throw new CheckpointError(`${what} is not valid UTF-8 text`);
  if (CONTROL.test(text)) {
    throw new CheckpointError(`${what} contains an ASCII control character other than newline`);
  }
  return utf8(text);
}

function checkLine(line: string, what: string): void {
  checkText(line, what);
  if (!line) throw new CheckpointError(`${what} is empty`);
  if (line.includes("\n")) throw new CheckpointError(`${what} contains a newline`);
}

export function checkKeyName(name: unknown): asserts name is string {
  if (typeof name !== "string" || !name) {
    throw new CheckpointError("a key name must be a non-empty string");
  }
  checkText(name, `key name '${name}'`);
  if (name.includes("+") || PY_SPACE.test(name)) {
    throw new CheckpointError(`key name '${name}' contains a space or '+'`);
  }
}

// --- Checkpoint bodies ------------------------------------------------------------------------

/** A tree head: the log's origin, its size and its RFC 9162 root, plus extension lines. */
export class Checkpoint {
  constructor(
    readonly origin: string,
    readonly size: number,
    readonly root: Uint8Array,
    readonly extensions: readonly string[] = [],
  ) {
    checkLine(origin, "the origin line");
    if (!Number.isSafeInteger(size) || size < 0) {
      throw new CheckpointError(`tree size must be an integer in 0..2**53-1, got ${size}`);
    }
    if (!(root instanceof Uint8Array) || root.length !== HASH_SIZE) {
      throw new CheckpointError(`root hash must be ${HASH_SIZE} bytes`);
    }
    extensions.forEach((line, i) => checkLine(line, `extension line ${i + 1}`));
  }

  /** The note text: origin, size, base64 root and extension lines, each ending in `\n`. */
  body(): string {
    const lines = [this.origin, String(this.size), b64Encode(this.root), ...this.extensions];
    return lines.map((line) => `${line}\n`).join("");
  }

  /** Strict inverse of `body()`; CheckpointError saying what is wrong otherwise. */
  static parse(body: string): Checkpoint {
    checkText(body, "checkpoint");
    if (!body.endsWith("\n")) throw new CheckpointError("checkpoint does not end with a newline");
    const lines = body.slice(0, -1).split("\n");
    if (lines.length < 3) {
      throw new CheckpointError(
        `checkpoint has ${lines.length} lines; origin, size and root hash are required`,
      );
    }
    lines.forEach((line, i) => {
      if (!line) throw new CheckpointError(`checkpoint line ${i + 1} is empty`);
    });
    const [origin, sizeText, rootText, ...extensions] = lines as [string, string, string];
    if (!TREE_SIZE.test(sizeText)) {
      throw new CheckpointError(
        `tree size '${sizeText}' is not decimal digits without leading zeros`,
      );
    }
    const size = BigInt(sizeText);
    if (size > MAX_TREE_SIZE) {
      throw new CheckpointError(`tree size ${sizeText} is larger than 2**63-1`);
    }
    if (size > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new CheckpointError(`tree size ${sizeText} is larger than this page can verify`);
    }
    const root = b64Decode(rootText, "root hash");
    if (root.length !== HASH_SIZE) {
      throw new CheckpointError(`root hash is ${root.length} bytes, not ${HASH_SIZE}`);
    }
    return new Checkpoint(origin, Number(size), root, extensions);
  }
}

// --- Verifiers and signers --------------------------------------------------------------------

/** `SHA-256(name || 0x0A || 0x01 || public key)[:4]`, the Ed25519 key ID of a note key. */
export function noteKeyId(name: string, publicKey: Uint8Array): Uint8Array {
  checkKeyName(name);
  const material = concat(utf8(name), Uint8Array.of(0x0a, SIGNATURE_TYPE_ED25519), publicKey);
  return sha256(material).slice(0, KEY_ID_SIZE);
}

/** An Ed25519 note verifier key: a key name and a 32-byte raw public key. */
export class NoteVerifier {
  readonly keyId: Uint8Array;

  constructor(
    readonly name: string,
    readonly publicKey: Uint8Array,
  ) {
    checkKeyName(name);
    if (!(publicKey instanceof Uint8Array) || publicKey.length !== ED25519_PUBLIC_KEY_SIZE) {
      throw new CheckpointError(`an Ed25519 public key is ${ED25519_PUBLIC_KEY_SIZE} bytes`);
    }
    this.keyId = noteKeyId(name, publicKey);
  }

  /**
   * Parse `<name>+<8 hex digits key id>+<base64(0x01 || public key)>`; CheckpointError for
   * anything else, including a key id that is not the one the name and key imply.
   */
  static fromVkey(vkey: string): NoteVerifier {
    if (typeof vkey !== "string") throw new CheckpointError("a verifier key must be a string");
    const first = vkey.indexOf("+");
    const second = first < 0 ? -1 : vkey.indexOf("+", first + 1);
    if (second < 0) throw new CheckpointError("a verifier key is <name>+<key id>+<key>");
    const name = vkey.slice(0, first);
    const keyIdHex = vkey.slice(first + 1, second);
    const keyB64 = vkey.slice(second + 1);
    checkKeyName(name);
    if (!KEY_ID_HEX.test(keyIdHex)) {
      throw new CheckpointError("a verifier key id is 8 lower-case hex digits");
    }
    const material = b64Decode(keyB64, "verifier key");
    if (material.length === 0 || material[0] !== SIGNATURE_TYPE_ED25519) {
      throw new CheckpointError("verifier key is not an Ed25519 (type 0x01) key");
    }
    if (material.length !== 1 + ED25519_PUBLIC_KEY_SIZE) {
      throw new CheckpointError("an Ed25519 verifier key holds 32 bytes");
    }
    const verifier = new NoteVerifier(name, material.slice(1));
    if (toHex(verifier.keyId) !== keyIdHex) {
      throw new CheckpointError(`verifier key id ${keyIdHex} does not match its name and key`);
    }
    return verifier;
  }

  vkey(): string {
    const material = concat(Uint8Array.of(SIGNATURE_TYPE_ED25519), this.publicKey);
    return `${this.name}+${toHex(this.keyId)}+${b64Encode(material)}`;
  }

  /** True only if `signature` is this key's Ed25519 signature over `message`. */
  verify(message: Uint8Array, signature: Uint8Array): boolean {
    if (signature.length !== SIGNATURE_SIZE) return false;
    return ed25519Verify(this.publicKey, signature, message);
  }
}

/** Signs notes with an Ed25519 seed under a key name (for tests and tools: the server signs). */
export class NoteSigner {
  readonly verifier: NoteVerifier;

  constructor(
    readonly name: string,
    private readonly seed: Uint8Array,
  ) {
    this.verifier = new NoteVerifier(name, ed25519PublicKey(seed));
  }

  signatureLine(text: string): string {
    return signatureLine(
      this.name,
      concat(this.verifier.keyId, ed25519Sign(this.seed, utf8(text))),
    );
  }
}

// --- Notes ------------------------------------------------------------------------------------

/** The signed note: `body`, a blank line, and one signature line per signer. */
export function signNote(body: string, ...signers: NoteSigner[]): string {
  checkText(body, "note text");
  if (!body.endsWith("\n")) throw new CheckpointError("note text does not end with a newline");
  if (signers.length === 0) throw new CheckpointError("a note needs at least one signer");
  if (signers.length > MAX_SIGNATURES) {
    throw new CheckpointError(`a note carries at most ${MAX_SIGNATURES} signatures`);
  }
  const note = `${body}\n${signers.map((signer) => signer.signatureLine(body)).join("")}`;
  if (utf8(note).length > MAX_NOTE_SIZE) {
    throw new CheckpointError(`the signed note would exceed ${MAX_NOTE_SIZE} bytes`);
  }
  return note;
}

function verifierTable(verifiers: readonly NoteVerifier[]): Map<string, NoteVerifier> {
  const table = new Map<string, NoteVerifier>();
  for (const verifier of verifiers) {
    const key = `${verifier.name} ${toHex(verifier.keyId)}`;
    const known = table.get(key);
    if (known === undefined) {
      table.set(key, verifier);
    } else if (!equalBytes(known.publicKey, verifier.publicKey)) {
      throw new CheckpointError(
        `ambiguous verifier keys: two keys named ${verifier.name} share key id ` +
          toHex(verifier.keyId),
      );
    }
  }
  return table;
}

/** `— <name> <base64(blob)>\n`, a note signature line (blob: key id || signature). */
export function signatureLine(name: string, blob: Uint8Array): string {
  checkKeyName(name);
  return `${SIGNATURE_PREFIX}${name} ${b64Encode(blob)}\n`;
}

/**
 * A note's text and its signature lines, each as (key name, key id || signature bytes),
 * without verifying any, as protocol/checkpoint.py `split_note`: CheckpointError if the note
 * is malformed. For signature types other than `openNote`'s, such as cosignatures.
 */
export function splitNote(text: string): { body: string; signatures: [string, Uint8Array][] } {
  if (typeof text !== "string") throw new CheckpointError("a note must be a string");
  if (text.length > MAX_NOTE_SIZE || checkText(text, "note").length > MAX_NOTE_SIZE) {
    throw new CheckpointError(`note is larger than ${MAX_NOTE_SIZE} bytes`);
  }
  const split = text.lastIndexOf("\n\n");
  if (split < 0) throw new CheckpointError("note has no blank line before its signatures");
  const body = text.slice(0, split + 1);
  const block = text.slice(split + 2);
  if (!block) throw new CheckpointError("note has no signature lines");
  if (!block.endsWith("\n")) {
    throw new CheckpointError("the last signature line does not end with a newline");
  }
  const lines = block.slice(0, -1).split("\n");
  if (lines.length > MAX_SIGNATURES) {
    throw new CheckpointError(`note has ${lines.length} signatures; at most ${MAX_SIGNATURES}`);
  }
  const signatures = lines.map((line, i): [string, Uint8Array] => {
    const number = i + 1;
    if (!line.startsWith(SIGNATURE_PREFIX)) {
      throw new CheckpointError(
        `signature line ${number} does not begin with an em dash (U+2014) and a space`,
      );
    }
    const rest = line.slice(SIGNATURE_PREFIX.length);
    const space = rest.indexOf(" ");
    if (space < 0) {
      throw new CheckpointError(`signature line ${number} has no signature after the name`);
    }
    const name = rest.slice(0, space);
    checkKeyName(name);
    const blob = b64Decode(rest.slice(space + 1), `signature on line ${number}`);
    if (blob.length < KEY_ID_SIZE + 1) {
      throw new CheckpointError(`signature on line ${number} is too short`);
    }
    return [name, blob];
  });
  return { body, signatures };
}

/**
 * Verify a signed note; its text and the names of the known keys that signed it. Signatures
 * from keys not among `verifiers` (matched on name and key id together) are ignored.
 * CheckpointError if the note is malformed, if any signature from a known key fails, or if no
 * known key signed it.
 */
export function openNote(
  text: string,
  verifiers: readonly NoteVerifier[],
): { body: string; signers: string[] } {
  const table = verifierTable(verifiers);
  const { body, signatures } = splitNote(text);
  const message = utf8(body);
  const verified: string[] = [];
  signatures.forEach(([name, blob], i) => {
    const keyId = blob.slice(0, KEY_ID_SIZE);
    const verifier = table.get(`${name} ${toHex(keyId)}`);
    if (verifier === undefined) return;
    if (!verifier.verify(message, blob.slice(KEY_ID_SIZE))) {
      throw new CheckpointError(
        `invalid signature for key ${name}+${toHex(keyId)} on line ${i + 1}`,
      );
    }
    if (!verified.includes(name)) verified.push(name);
  });
  if (verified.length === 0) {
    throw new CheckpointError("note has no valid signature from a known key");
  }
  return { body, signers: verified };
}

/** `signNote(checkpoint.body(), ...signers)`. */
export function signCheckpoint(checkpoint: Checkpoint, ...signers: NoteSigner[]): string {
  return signNote(checkpoint.body(), ...signers);
}

/**
 * Verify a signed checkpoint note and parse it; its origin must be `origin`, so that a
 * checkpoint of one log (signed by a shared key) cannot be passed off as another's.
 */
export function openCheckpoint(
  text: string,
  verifiers: readonly NoteVerifier[],
  origin: string,
): Checkpoint {
  const checkpoint = Checkpoint.parse(openNote(text, verifiers).body);
  if (checkpoint.origin !== origin) {
    throw new CheckpointError(
      `checkpoint is for origin '${checkpoint.origin}', expected '${origin}'`,
    );
  }
  return checkpoint;
}
