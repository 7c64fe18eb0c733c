/**
 * C2SP tlog-cosignature v1 (Ed25519), witnesses' timestamped cosignatures of checkpoints, as
 * protocol/cosignature.py reads and checks them, with the same refusals and sentences.
 *
 * A cosignature is a note signature line `— <witness name> <base64(key id || timestamp ||
 * signature)>` appended to a checkpoint's signed note: the key id is
 * `SHA-256(<name> || 0x0A || 0x04 || public key)[:4]`, the timestamp a big-endian u64 (POSIX
 * seconds, at most 2**63 - 1) and the signature Ed25519 over `"cosignature/v1\ntime " ||
 * decimal(timestamp) || "\n" || <checkpoint note text>`. A witness's vkey is
 * `<name>+<hex key id>+<base64(0x04 || public key)>`.
 *
 * `checkWitnesses` is protocol/cosignature.py `check_witnesses`: lines of witnesses not pinned
 * are ignored, a line that claims a pinned witness's name and key id but does not verify is
 * forged, and with a maximum age a valid cosignature older than it does not count. Timestamps
 * are bigints, so that any u64 the wire may carry is read exactly.
 */
import { sha256 } from "@noble/hashes/sha2.js";

import { concat, equalBytes, toHex, utf8 } from "./bytes.js";
import {
  Checkpoint,
  CheckpointError,
  NoteVerifier,
  STD_BASE64,
  b64Encode,
  signatureLine,
  splitNote,
} from "./checkpoint.js";
import { ed25519Sign, ed25519PublicKey, ed25519Verify } from "./primitives.js";

export const SIGNATURE_TYPE_COSIGNATURE_V1 = 0x04;
const KEY_ID_SIZE = 4;
const TIMESTAMP_SIZE = 8;
const SIGNATURE_SIZE = 64;
const PUBLIC_KEY_SIZE = 32;
/** Key id, timestamp and Ed25519 signature: the bytes of one cosignature line. */
export const COSIGNATURE_SIZE = KEY_ID_SIZE + TIMESTAMP_SIZE + SIGNATURE_SIZE;
export const MAX_TIMESTAMP = 2n ** 63n - 1n;

/** `SHA-256(name || 0x0A || 0x04 || publicKey)[:4]`. */
export function cosignatureKeyId(name: string, publicKey: Uint8Array): Uint8Array {
  new NoteVerifier(name, publicKey); // checks the name and the key's size
  const material = concat(Uint8Array.of(SIGNATURE_TYPE_COSIGNATURE_V1), publicKey);
  return sha256(concat(utf8(name), Uint8Array.of(0x0a), material)).slice(0, KEY_ID_SIZE);
}

function checkTimestamp(timestamp: bigint): void {
  if (typeof timestamp !== "bigint" || timestamp < 0n || timestamp > MAX_TIMESTAMP) {
    throw new CheckpointError(
      `a cosignature's time is an int in 0..2**63-1, got ${String(timestamp)}`,
    );
  }
}

/** `cosignature/v1\ntime <timestamp>\n` followed by the checkpoint's note text. */
export function cosignedMessage(body: string, timestamp: bigint): Uint8Array {
  checkTimestamp(timestamp);
  Checkpoint.parse(body); // a checkpoint, and nothing else, is cosigned
  return utf8(`cosignature/v1\ntime ${timestamp}\n${body}`);
}

/** One witness's cosignature as it travels: name, key id, time and signature. */
export class Cosignature {
  constructor(
    readonly name: string,
    readonly keyId: Uint8Array,
    readonly timestamp: bigint,
    readonly signature: Uint8Array,
  ) {}

  /** The note signature line, with its final newline. */
  line(): string {
    const time = new Uint8Array(TIMESTAMP_SIZE);
    new DataView(time.buffer).setBigUint64(0, this.timestamp);
    return signatureLine(this.name, concat(this.keyId, time, this.signature));
  }

  static fromBlob(name: string, blob: Uint8Array): Cosignature {
    if (blob.length !== COSIGNATURE_SIZE) {
      throw new CheckpointError(
        `a cosignature of ${name} is ${blob.length} bytes, not ${COSIGNATURE_SIZE}`,
      );
    }
    const view = new DataView(blob.buffer, blob.byteOffset, blob.byteLength);
    const timestamp = view.getBigUint64(KEY_ID_SIZE);
    if (timestamp > MAX_TIMESTAMP) {
      throw new CheckpointError(`the cosignature of ${name} has a time beyond 2**63-1`);
    }
    return new Cosignature(
      name,
      blob.slice(0, KEY_ID_SIZE),
      timestamp,
      blob.slice(KEY_ID_SIZE + TIMESTAMP_SIZE),
    );
  }
}

/** A witness as a verifier knows it: its name and its pinned 32-byte Ed25519 key. */
export class CosignatureVerifier {
  readonly keyId: Uint8Array;

  constructor(
    readonly name: string,
    readonly publicKey: Uint8Array,
  ) {
    this.keyId = cosignatureKeyId(name, publicKey);
  }

  /**
   * Parse `<name>+<8 hex digits>+<base64(0x04 || key)>`; CheckpointError otherwise, including
   * for a key id that the name and key do not give (protocol/cosignature.py's order of checks).
   */
  static fromVkey(vkey: string): CosignatureVerifier {
    if (typeof vkey !== "string") throw new CheckpointError("a witness key must be a string");
    const first = vkey.indexOf("+");
    const second = first < 0 ? -1 : vkey.indexOf("+", first + 1);
    if (second < 0) throw new CheckpointError("a witness key is <name>+<key id>+<key>");
    const name = vkey.slice(0, first);
    const keyIdHex = vkey.slice(first + 1, second);
    const keyB64 = vkey.slice(second + 1);
    if (!STD_BASE64.test(keyB64)) {
      throw new CheckpointError("a witness key's key is not standard base64");
    }
    const material = Uint8Array.from(atob(keyB64), (char) => char.charCodeAt(0));
    if (b64Encode(material) !== keyB64) {
      throw new CheckpointError("a witness key's key is not canonical base64");
    }
    if (material.length === 0 || material[0] !== SIGNATURE_TYPE_COSIGNATURE_V1) {
      throw new CheckpointError(
        "not a witness key: its type is not 0x04 (C2SP tlog-cosignature v1, Ed25519)",
      );
    }
    if (material.length !== 1 + PUBLIC_KEY_SIZE) {
      throw new CheckpointError("a witness's Ed25519 key holds 32 bytes");
    }
    const verifier = new CosignatureVerifier(name, material.slice(1));
    if (toHex(verifier.keyId) !== keyIdHex) {
      throw new CheckpointError(`witness key id ${keyIdHex} does not match its name and key`);
    }
    return verifier;
  }

  vkey(): string {
    const material = concat(Uint8Array.of(SIGNATURE_TYPE_COSIGNATURE_V1), this.publicKey);
    return `${this.name}+${toHex(this.keyId)}+${b64Encode(material)}`;
  }

  /** Whether `cosignature` claims to be this witness's (name and key id). */
  matches(cosignature: Cosignature): boolean {
    return cosignature.name === this.name && equalBytes(cosignature.keyId, this.keyId);
  }

  /** True only if `cosignature` is this witness's, over the checkpoint text `body`. */
  verify(body: string, cosignature: Cosignature): boolean {
    if (!this.matches(cosignature) || cosignature.signature.length !== SIGNATURE_SIZE) {
      return false;
    }
    let message: Uint8Array;
    try {
      message = cosignedMessage(body, cosignature.timestamp);
    } catch (error) {
      if (error instanceof CheckpointError) return false;
      throw error;
    }
    return ed25519Verify(this.publicKey, cosignature.signature, message);
  }
}

/** A witness's signing key under its name (for tests and tools: witnesses run elsewhere). */
export class CosignatureSigner {
  readonly verifier: CosignatureVerifier;

  constructor(
    readonly name: string,
    private readonly seed: Uint8Array,
  ) {
    this.verifier = new CosignatureVerifier(name, ed25519PublicKey(seed));
  }

  vkey(): string {
    return this.verifier.vkey();
  }

  /** The cosignature of the checkpoint text `body` at `timestamp` (POSIX seconds). */
  cosign(body: string, timestamp: bigint): Cosignature {
    const signature = ed25519Sign(this.seed, cosignedMessage(body, timestamp));
    return new Cosignature(this.name, this.verifier.keyId, timestamp, signature);
  }
}

/**
 * A signed checkpoint's text and the signature lines that have a cosignature's shape (76
 * bytes); others (the log's own, other types) are left out. Nothing is verified.
 */
export function noteCosignatures(text: string): { body: string; found: Cosignature[] } {
  const { body, signatures } = splitNote(text);
  const found = signatures
    .filter(([, blob]) => blob.length === COSIGNATURE_SIZE)
    .map(([name, blob]) => Cosignature.fromBlob(name, blob));
  return { body, found };
}

/** What a note's cosignatures say for the witnesses a verifier requires. */
export class WitnessCheck {
  constructor(
    /** Witness name -> timestamp of its valid (and fresh) cosignature. */
    readonly valid: Map<string, bigint>,
    /** Witnesses whose line claims their key but does not verify. */
    readonly forged: readonly string[],
    /** Required witnesses with no cosignature line at all. */
    readonly missing: readonly string[],
    /**
     * Witnesses whose valid cosignature is older than the verifier's limit: name -> its age in
     * seconds. They do not count: an old cosignature vouches for an old view.
     */
    readonly stale: Map<string, bigint> = new Map(),
  ) {}

  /**
   * Plain sentences, empty when at least `minimum` witnesses cosigned validly (and recently
   * enough) and none of the required ones has a forged line.
   */
  problems(minimum: number): string[] {
    const said = this.forged.map(
      (name) => `the cosignature of witness ${name} does not verify with its pinned key: forged`,
    );
    if (this.valid.size < minimum) {
      const absent = this.missing.length > 0 ? this.missing.join(", ") : "none";
      const old = [...this.stale]
        .map(([name, age]) => `; too old: ${name}, cosigned ${age} s ago`)
        .join("");
      said.push(
        `the checkpoint has ${this.valid.size} valid cosignatures of the ${minimum} ` +
          `required from the witnesses pinned (missing: ${absent}${old})`,
      );
    }
    return said;
  }
}

/**
 * Check a signed checkpoint's cosignatures against the pinned `witnesses`, as
 * protocol/cosignature.py `check_witnesses`. Lines of unknown witnesses are ignored; a line
 * that names a pinned witness and its key id but does not verify is forged. With `maxAge` and
 * `now` (POSIX seconds, given together), a valid cosignature made more than `maxAge` before
 * `now` is stale and does not count. CheckpointError if the note or its text is malformed.
 */
export function checkWitnesses(
  text: string,
  witnesses: readonly CosignatureVerifier[],
  { now = null, maxAge = null }: { now?: bigint | null; maxAge?: bigint | null } = {},
): WitnessCheck {
  if ((now === null) !== (maxAge === null)) throw new Error("give now and maxAge together");
  const { body, found } = noteCosignatures(text);
  Checkpoint.parse(body);
  const valid = new Map<string, bigint>();
  const forged: string[] = [];
  const missing: string[] = [];
  const stale = new Map<string, bigint>();
  for (const witness of witnesses) {
    const claimed = found.filter((c) => witness.matches(c));
    if (claimed.length === 0) {
      missing.push(witness.name);
    } else if (!claimed.every((c) => witness.verify(body, c))) {
      forged.push(witness.name);
    } else {
      const newest = claimed.reduce((a, c) => (c.timestamp > a ? c.timestamp : a), 0n);
      if (now !== null && maxAge !== null && now - newest > maxAge) {
        stale.set(witness.name, now - newest);
      } else {
        valid.set(witness.name, newest);
      }
    }
  }
  return new WitnessCheck(valid, forged, missing, stale);
}
