/**
 * Key transparency in the page: what a client checks of a device's bundle before sealing to it
 * (PROTOCOL.md §19.4), as protocol/transparency.py `verify_device`, step for step and with the
 * same refusals. Pure: the bundle (`GET /v1/devices/{id}/transparency?old=S`) is passed in;
 * RFC 9162 proofs are merkle.ts's and the signed note checkpoint.ts's.
 *
 * A refusal is a TransparencyError whose message says what was wrong. Two kinds are told
 * apart, as in Python: CheckpointRefused (the checkpoint is not the pinned audit key's, or is
 * older than or forked from the one held: the whole log is in doubt, not one device) and
 * NotLogged (the directory shows the device pending: certified since the latest checkpoint,
 * it looks like this until the server's integrator logs it, so a client may ask again).
 *
 * One difference, said where it bites: the directory and registration leaves must be in
 * canonical form (RFC 8785), as every audit leaf is written (docs/audit.md), where Python
 * parses them refusing only duplicate keys; JSON.parse would silently keep the last of two.
 */
import { sha256 } from "@noble/hashes/sha2.js";

import { b64uDecode, b64uEncode, fromUtf8, utf8 } from "./bytes.js";
import { canonicalJson, type Json } from "./canonical.js";
import { CheckpointError, openCheckpoint, type NoteVerifier } from "./checkpoint.js";
import { HASH_SIZE, leafHash, verifyConsistency, verifyInclusion } from "./merkle.js";

export const REGISTER = "device.register";
export const CERTIFY = "device.certify";
export const REVOKE = "device.revoke";
/** The action of a directory leaf (§19.2). */
export const DIRECTORY_ACTION = "keys.directory";
export const STATUSES = ["pending", "active", "revoked"] as const;

const ENTRY_FIELDS = [
  "device",
  "encryption_key_sha256",
  "event",
  "registered",
  "signing_key",
  "status",
  "user",
].join();
const MAX_PROOF = 128;

export class TransparencyError extends Error {}

/** The checkpoint itself is refused: the whole log is in doubt, not one device. */
export class CheckpointRefused extends TransparencyError {}

/** The directory does not show the device active *yet*; a client may ask again shortly. */
export class NotLogged extends TransparencyError {}

/** One device's line in the key directory (§19.1). */
export interface DirectoryEntry {
  device: string;
  user: string;
  /** b64u of the Ed25519 public key, as the registration leaf has it. */
  signing_key: string;
  /** b64u of SHA-256 of the X-Wing public key. */
  encryption_key_sha256: string;
  status: (typeof STATUSES)[number];
  /** Log index of its device.register leaf. */
  registered: number;
  /** Log index of its latest key event. */
  event: number;
}

/** The device a verified certificate names: what the directory must show. */
export interface CertifiedDevice {
  deviceId: string;
  userId: string;
  signingKey: Uint8Array;
  encryptionKey: Uint8Array;
}

/** A checkpoint verified before: its size and root. */
export interface HeldCheckpoint {
  size: number;
  root: Uint8Array;
}

/** A device shown registered, active and with its certificate's keys at checkpoint (size, root). */
export interface VerifiedDevice {
  size: number;
  root: Uint8Array;
  note: string;
  entry: DirectoryEntry;
}

export type JsonRecord = Record<string, unknown>;

export function isRecord(value: unknown): value is JsonRecord {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function isIndex(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
}

export function index(value: unknown, what: string): number {
  if (!isIndex(value)) {
    throw new TransparencyError(`${what} is not an index (an integer from 0 to 2^53 - 1)`);
  }
  return value;
}

export function decoded(text: unknown, what: string): Uint8Array {
  if (typeof text !== "string") throw new TransparencyError(`${what} is not a base64url string`);
  try {
    return b64uDecode(text);
  } catch {
    throw new TransparencyError(`${what} is not canonical unpadded base64url`);
  }
}

export function field(value: unknown, ...path: string[]): unknown {
  for (const name of path) value = isRecord(value) ? value[name] : undefined;
  return value;
}

/**
 * A log leaf's JSON object, which must be its canonical form (RFC 8785), as every audit leaf
 * is written: this also refuses duplicate keys.
 */
export function parseLeaf(text: string, what = "the leaf"): JsonRecord {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new TransparencyError(`${what} is not JSON: ${(error as Error).message}`);
  }
  if (!isRecord(value)) throw new TransparencyError(`${what} is not a JSON object`);
  let canonical: string;
  try {
    canonical = fromUtf8(canonicalJson(value as Json));
  } catch (error) {
    throw new TransparencyError(`${what} is not JSON this page can read exactly: ${String(error)}`);
  }
  if (canonical !== text) {
    throw new TransparencyError(`${what} is not in canonical form (RFC 8785)`);
  }
  return value;
}

/** The entry's RFC 8785 bytes: what the directory tree's leaf hashes. */
export function encodeEntry(entry: DirectoryEntry): Uint8Array {
  return canonicalJson({ ...entry });
}

/** Strict: exactly the fields of §19.1, well formed, and `text` its canonical bytes. */
export function parseEntry(text: string): DirectoryEntry {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new TransparencyError(`the directory entry is not JSON: ${(error as Error).message}`);
  }
  if (!isRecord(value)) throw new TransparencyError("the directory entry is not a JSON object");
  if (Object.keys(value).sort().join() !== ENTRY_FIELDS) {
    throw new TransparencyError(
      `the directory entry must have exactly the fields ${ENTRY_FIELDS.split(",").join(", ")}`,
    );
  }
  for (const name of ["device", "user", "signing_key", "encryption_key_sha256", "status"]) {
    if (typeof value[name] !== "string" || !value[name]) {
      throw new TransparencyError(`the directory entry's ${name} is not a non-empty string`);
    }
  }
  if (!(STATUSES as readonly unknown[]).includes(value.status)) {
    throw new TransparencyError(
      `the directory entry's status ${JSON.stringify(value.status)} is unknown`,
    );
  }
  if (decoded(value.signing_key, "the entry's signing_key").length !== 32) {
    throw new TransparencyError("the directory entry's signing_key is not 32 bytes");
  }
  if (decoded(value.encryption_key_sha256, "the entry's encryption_key_sha256").length !== 32) {
    throw new TransparencyError("the directory entry's encryption_key_sha256 is not 32 bytes");
  }
  const entry: DirectoryEntry = {
    device: value.device as string,
    user: value.user as string,
    signing_key: value.signing_key as string,
    encryption_key_sha256: value.encryption_key_sha256 as string,
    status: value.status as DirectoryEntry["status"],
    registered: index(value.registered, "the directory entry's registered"),
    event: index(value.event, "the directory entry's event"),
  };
  if (fromUtf8(encodeEntry(entry)) !== text) {
    throw new TransparencyError("the directory entry is not in canonical form (RFC 8785)");
  }
  return entry;
}

/** (root, size) of a `keys.directory` leaf; TransparencyError if it is not one. */
export function parseDirectoryLeaf(leaf: JsonRecord): { root: Uint8Array; size: number } {
  if (leaf.action !== DIRECTORY_ACTION || leaf.decision !== "allow") {
    throw new TransparencyError(
      `the leaf is a ${JSON.stringify(leaf.action)} event, not a key directory ` +
        `(${DIRECTORY_ACTION})`,
    );
  }
  const directory = field(leaf, "details", "directory");
  if (!isRecord(directory) || Object.keys(directory).sort().join() !== "root,size") {
    throw new TransparencyError("the directory leaf's details.directory is not {root, size}");
  }
  const root = decoded(directory.root, "the directory root");
  if (root.length !== HASH_SIZE) throw new TransparencyError("the directory root is not 32 bytes");
  return { root, size: index(directory.size, "the directory size") };
}

export function hashes(value: unknown, what: string): Uint8Array[] {
  if (!Array.isArray(value) || value.length > MAX_PROOF) {
    throw new TransparencyError(`${what} is not a list of hashes`);
  }
  return value.map((hash) => decoded(hash, `a hash of ${what}`));
}

export function part(bundle: JsonRecord, name: string): JsonRecord {
  const value = bundle[name];
  if (!isRecord(value))
    throw new TransparencyError(`the transparency bundle has no ${name} object`);
  return value;
}

export function text(value: unknown, what: string): string {
  if (typeof value !== "string") {
    throw new TransparencyError(`the bundle's ${what} is missing or not text`);
  }
  return value;
}

function sameJson(a: unknown, b: unknown): boolean {
  try {
    return fromUtf8(canonicalJson(a as Json)) === fromUtf8(canonicalJson(b as Json));
  } catch {
    return false;
  }
}

/**
 * Step 1 of PROTOCOL.md §19.4, for any answer that proves something at the latest checkpoint
 * (a device's bundle, a policy version's publication), as protocol/transparency.py
 * `verify_checkpoint`: `checkpoint` is its `{note, consistency}` part. The size, root and note
 * once the note verifies with the pinned audit key for its origin and extends `held`, if any;
 * CheckpointRefused otherwise, naming what was wrong.
 */
export function verifyCheckpoint(
  checkpoint: JsonRecord,
  { logKey, held = null }: { logKey: NoteVerifier; held?: HeldCheckpoint | null },
): { size: number; root: Uint8Array; note: string } {
  const note = text(checkpoint.note, "checkpoint note");
  let size: number;
  let root: Uint8Array;
  try {
    ({ size, root } = openCheckpoint(note, [logKey], logKey.name));
  } catch (error) {
    if (!(error instanceof CheckpointError)) throw error;
    throw new CheckpointRefused(
      `the checkpoint is not signed by the pinned audit key: ${error.message}`,
    );
  }
  if (held !== null) {
    if (size < held.size) {
      throw new CheckpointRefused(
        `the server shows a checkpoint of size ${size}, older than the one of size ` +
          `${held.size} seen before: an old key directory served as current`,
      );
    }
    if (size === held.size && b64uEncode(root) !== b64uEncode(held.root)) {
      throw new CheckpointRefused(
        `the checkpoint of size ${size} has another root than the one seen before: ` +
          "the log forked",
      );
    }
    if (size > held.size && held.size > 0) {
      const proof = hashes(checkpoint.consistency, "the consistency proof");
      if (!verifyConsistency(held.size, size, held.root, root, proof)) {
        throw new CheckpointRefused(
          `the checkpoint of size ${size} is not consistent with the one of size ` +
            `${held.size} seen before: the log forked or was rewritten`,
        );
      }
    }
  }
  return { size, root, note };
}

/**
 * Check a transparency bundle (PROTOCOL.md §19.4) for the device a verified certificate names,
 * against the pinned audit key `logKey` (whose name is the log's origin) and the checkpoint
 * `held` seen before, if any. The checkpoint and entry, or a TransparencyError naming what was
 * wrong: a checkpoint not signed by the audit key, older than or inconsistent with the one
 * held (CheckpointRefused); a directory leaf that is not the checkpoint's last leaf, or not in
 * the tree; an entry not in the directory, or for another device, user or keys; a device
 * pending (NotLogged) or revoked; a registration leaf not in the tree or not the entry's.
 */
export function verifyDevice(
  bundle: unknown,
  {
    logKey,
    device,
    held = null,
  }: { logKey: NoteVerifier; device: CertifiedDevice; held?: HeldCheckpoint | null },
): VerifiedDevice {
  if (!isRecord(bundle))
    throw new TransparencyError("the transparency bundle is not a JSON object");
  const checkpoint = part(bundle, "checkpoint");
  const directory = part(bundle, "directory");
  const entryPart = part(bundle, "entry");
  const registration = part(bundle, "registration");
  const deviceId = device.deviceId;

  // 1. The checkpoint: signed by the pinned audit key, for its log, not behind the one held.
  const { size, root, note } = verifyCheckpoint(checkpoint, { logKey, held });

  // 2. The directory leaf: the checkpoint's last leaf, so no later key event is hidden.
  const directoryIndex = index(directory.index, "the directory leaf's index");
  if (size === 0 || directoryIndex !== size - 1) {
    throw new TransparencyError(
      `the directory leaf is at index ${directoryIndex}, not the last leaf (${size - 1}) ` +
        `of the checkpoint of size ${size}: a later key event could be hidden`,
    );
  }
  const directoryText = text(directory.leaf, "directory leaf");
  if (
    !verifyInclusion(
      leafHash(utf8(directoryText)),
      directoryIndex,
      size,
      hashes(directory.proof, "the directory leaf's proof"),
      root,
    )
  ) {
    throw new TransparencyError(
      `the directory leaf is not the leaf at index ${directoryIndex} of the signed log`,
    );
  }
  const { root: directoryRoot, size: directorySize } = parseDirectoryLeaf(
    parseLeaf(directoryText, "the directory leaf"),
  );

  // 3. The device's entry, in that directory, for this device, user and keys, active.
  const entryText = text(entryPart.data, "directory entry");
  const entry = parseEntry(entryText);
  if (entry.device !== deviceId) {
    throw new TransparencyError(
      `the directory entry is for device ${entry.device}, not ${deviceId}`,
    );
  }
  const entryIndex = index(entryPart.index, "the entry's index");
  if (
    entryIndex >= directorySize ||
    !verifyInclusion(
      leafHash(utf8(entryText)),
      entryIndex,
      directorySize,
      hashes(entryPart.proof, "the entry's proof"),
      directoryRoot,
    )
  ) {
    throw new TransparencyError(
      `device ${deviceId} is not in the key directory at checkpoint ${size}: its entry's ` +
        "inclusion proof does not verify",
    );
  }
  if (entry.user !== device.userId) {
    throw new TransparencyError(
      `the key directory has device ${deviceId} for user ${entry.user}, not ${device.userId}`,
    );
  }
  if (
    entry.signing_key !== b64uEncode(device.signingKey) ||
    entry.encryption_key_sha256 !== b64uEncode(sha256(device.encryptionKey))
  ) {
    throw new TransparencyError(
      `the key directory has other keys for device ${deviceId} than its certificate`,
    );
  }
  if (entry.status !== "active") {
    const Refusal = entry.status === "pending" ? NotLogged : TransparencyError;
    throw new Refusal(
      `device ${deviceId} is ${entry.status} in the key directory at checkpoint ${size} ` +
        `(key event at leaf ${entry.event})`,
    );
  }
  if (!(entry.registered <= entry.event && entry.event < directoryIndex)) {
    throw new TransparencyError(
      `the entry of device ${deviceId} names key events at leaves ${entry.registered} ` +
        `and ${entry.event}, not before its directory leaf ${directoryIndex}`,
    );
  }

  // 4. Its registration leaf: in the log, where the entry says, with the same keys.
  const registrationIndex = index(registration.index, "the registration leaf's index");
  const registrationText = text(registration.leaf, "registration leaf");
  if (
    registrationIndex !== entry.registered ||
    !verifyInclusion(
      leafHash(utf8(registrationText)),
      registrationIndex,
      size,
      hashes(registration.proof, "the registration leaf's proof"),
      root,
    )
  ) {
    throw new TransparencyError(
      `the registration of device ${deviceId} is not in the signed log at leaf ` +
        `${entry.registered}`,
    );
  }
  const leaf = parseLeaf(registrationText, "the registration leaf");
  const expected: [string, unknown, unknown][] = [
    ["action", leaf.action, REGISTER],
    ["decision", leaf.decision, "allow"],
    ["object", leaf.object, { type: "device", id: deviceId }],
    ["user", field(leaf, "actor", "user"), device.userId],
    ["signing_key", field(leaf, "details", "signing_key"), entry.signing_key],
    [
      "encryption_key_sha256",
      field(leaf, "details", "encryption_key_sha256"),
      entry.encryption_key_sha256,
    ],
  ];
  const wrong = expected.filter(([, got, want]) => !sameJson(got, want)).map(([name]) => name);
  if (wrong.length > 0) {
    throw new TransparencyError(
      `the registration leaf of device ${deviceId} differs from its directory entry in ` +
        wrong.join(", "),
    );
  }
  return { size, root, note, entry };
}
