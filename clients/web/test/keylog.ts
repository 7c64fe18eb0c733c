/**
 * A key directory's audit log for tests that play the server (PROTOCOL.md §19): the vector
 * tests/protocol/vectors/key_directory_v1.json rebuilt (its leaves and its fixed log key), and
 * `Log`, which extends it as an honest integrator would (every checkpoint ends in a directory
 * leaf) and serves bundles as `GET /v1/devices/{id}/transparency?old=S` does, for tests to
 * change as a server that lies would.
 */
import assert from "node:assert/strict";

import { sha256 } from "@noble/hashes/sha2.js";

import { b64uDecode, b64uEncode, fromUtf8 } from "../src/protocol/bytes.js";
import { canonicalJson, type Json, type JsonObject } from "../src/protocol/canonical.js";
import {
  Checkpoint,
  NoteSigner,
  NoteVerifier,
  signCheckpoint,
} from "../src/protocol/checkpoint.js";
import { consistencyProof, inclusionProof, leafHash, merkleRoot } from "../src/protocol/merkle.js";
import {
  encodeEntry,
  type CertifiedDevice,
  type DirectoryEntry,
  type HeldCheckpoint,
} from "../src/protocol/transparency.js";
import { h, vector } from "./vectors.js";

export const V = vector("key_directory_v1.json");
export const ORIGIN = "attache.example/audit";
export const SIGNER = new NoteSigner(ORIGIN, h(V.log_seed));
export const LOG_KEY = NoteVerifier.fromVkey(V.vkey);
export const OTHER_HASH = b64uEncode(new Uint8Array(32).fill(1)); // in no proof here

export function device(name: string): CertifiedDevice {
  const d = V.devices.find((x: { name: string }) => x.name === name);
  return {
    deviceId: d.device_id,
    userId: d.user_id,
    signingKey: b64uDecode(d.signing_key),
    encryptionKey: b64uDecode(d.encryption_key),
  };
}

export function newDevice(id: string): CertifiedDevice {
  const random = (n: number) => crypto.getRandomValues(new Uint8Array(n));
  return { deviceId: id, userId: `u-${id}`, signingKey: random(32), encryptionKey: random(1216) };
}

let uid = 100;
function event(action: string, d: CertifiedDevice, details: JsonObject, user: string | null) {
  return {
    v: 1,
    uid: `00000000-0000-4000-8000-${String(uid++).padStart(12, "0")}`,
    time: "2026-11-26T19:01:00Z",
    action,
    decision: "allow",
    actor: { user, device: d.deviceId, nation: "GBR" },
    object: { type: "device", id: d.deviceId },
    subject_nation: "GBR",
    label: null,
    reasons: [],
    details: { via: "api", ...details },
  };
}

export const register = (d: CertifiedDevice, status = "pending") =>
  event(
    "device.register",
    d,
    {
      status,
      signing_key: b64uEncode(d.signingKey),
      encryption_key_sha256: b64uEncode(sha256(d.encryptionKey)),
    },
    d.userId,
  );
export const revoke = (d: CertifiedDevice) =>
  event("device.revoke", d, { status: ["active", "revoked"] }, d.userId);

/** The directory of the key events among `leaves`, by §19.1, sorted by device id. */
export function directoryOf(leaves: readonly string[]): DirectoryEntry[] {
  const entries = new Map<string, DirectoryEntry>();
  leaves.forEach((text, i) => {
    const leaf = JSON.parse(text);
    if (leaf.decision !== "allow" || leaf.object?.type !== "device") return;
    const id: string = leaf.object.id;
    const known = entries.get(id);
    if (leaf.action === "device.register") {
      entries.set(id, {
        device: id,
        user: leaf.actor.user,
        signing_key: leaf.details.signing_key,
        encryption_key_sha256: leaf.details.encryption_key_sha256,
        status: leaf.details.status,
        registered: i,
        event: i,
      });
    } else if (leaf.action === "device.certify" && known) {
      entries.set(id, { ...known, status: "active", event: i });
    } else if (leaf.action === "device.revoke" && known) {
      entries.set(id, { ...known, status: "revoked", event: i });
    }
  });
  return [...entries.values()].sort((a, b) => (a.device < b.device ? -1 : 1));
}

export const entryHashes = (entries: readonly DirectoryEntry[]) =>
  entries.map((e) => leafHash(encodeEntry(e)));
export const b64 = (hashes: Uint8Array[]) => hashes.map(b64uEncode);

/** An audit log with a key directory, as an honest integrator keeps them. */
export class Log {
  readonly leaves: string[] = [];
  readonly checkpoints = new Map<number, { note: string; entries: DirectoryEntry[] }>();

  constructor(readonly signer: NoteSigner = SIGNER) {}

  add(leaf: unknown): number {
    this.leaves.push(fromUtf8(canonicalJson(leaf as Json)));
    return this.leaves.length - 1;
  }

  hashes(size = this.leaves.length): Uint8Array[] {
    return this.leaves.slice(0, size).map((leaf) => leafHash(new TextEncoder().encode(leaf)));
  }

  root(size = this.leaves.length): Uint8Array {
    return merkleRoot(this.hashes(size));
  }

  /** End the batch with a directory leaf (of `entries`, to lie) and sign. */
  checkpoint(entries: DirectoryEntry[] = directoryOf(this.leaves)): number {
    const directory = JSON.parse(V.leaves[V.leaves.length - 1]);
    directory.uid = `00000000-0000-4000-8000-${String(uid++).padStart(12, "0")}`;
    directory.details.directory = {
      root: b64uEncode(merkleRoot(entryHashes(entries))),
      size: entries.length,
    };
    this.add(directory);
    return this.sign(entries);
  }

  sign(entries: DirectoryEntry[] = directoryOf(this.leaves)): number {
    const size = this.leaves.length;
    const note = signCheckpoint(new Checkpoint(ORIGIN, size, this.root(size)), this.signer);
    this.checkpoints.set(size, { note, entries });
    return size;
  }

  latest(): number {
    return Math.max(...this.checkpoints.keys());
  }

  held(size: number): HeldCheckpoint {
    return { size, root: this.root(size) };
  }

  /** What an honest server serves for `deviceId` at checkpoint `size`. */
  bundle(deviceId: string, size = this.latest(), old = 0) {
    const { note, entries } = this.checkpoints.get(size)!;
    const position = entries.findIndex((e) => e.device === deviceId);
    assert.ok(position >= 0, `no entry for ${deviceId}`);
    const entry = entries[position]!;
    const hashes = this.hashes(size);
    return {
      device_id: deviceId,
      checkpoint: {
        size,
        root: b64uEncode(this.root(size)),
        note,
        old,
        consistency: 0 < old && old < size ? b64(consistencyProof(hashes, old)) : [],
      },
      directory: {
        index: size - 1,
        leaf: this.leaves[size - 1]!,
        proof: b64(inclusionProof(hashes, size - 1)),
      },
      entry: {
        index: position,
        size: entries.length,
        data: fromUtf8(encodeEntry(entry)),
        proof: b64(inclusionProof(entryHashes(entries), position)),
      },
      registration: {
        index: entry.registered,
        leaf: this.leaves[entry.registered]!,
        proof: b64(inclusionProof(hashes, entry.registered)),
      },
    };
  }
}

/** The vector's log: its seven leaves, signed at size 7 by its fixed key. */
export function vectorLog(): Log {
  const log = new Log();
  for (const leaf of V.leaves) log.leaves.push(leaf);
  log.sign(directoryOf(V.leaves.slice(0, -1)));
  return log;
}
