/**
 * An audit log holding coalition policy publications, for tests that play the server
 * (PROTOCOL.md §18.6): `publish` appends a `policy.publish` leaf as the server writes it (or
 * another leaf, for a server that lies), and `proof` answers `GET /v1/policy/{N}/proof?old=S`
 * as the server does, at a checkpoint signed with the key directory vector's log key.
 */
import { b64uEncode, fromUtf8, utf8 } from "../src/protocol/bytes.js";
import { canonicalJson, type JsonObject } from "../src/protocol/canonical.js";
import { Checkpoint, signCheckpoint } from "../src/protocol/checkpoint.js";
import { parsePolicy } from "../src/protocol/coalition.js";
import { consistencyProof, inclusionProof, leafHash, merkleRoot } from "../src/protocol/merkle.js";
import { ORIGIN, SIGNER } from "./keylog.js";

let uid = 500;

/** The publication leaf the server writes for the policy document `document`. */
export function publicationLeaf(
  document: JsonObject,
  change: Partial<JsonObject> = {},
): JsonObject {
  const policy = parsePolicy(document);
  return {
    v: 1,
    uid: `00000000-0000-4000-8000-${String(uid++).padStart(12, "0")}`,
    time: "2026-11-26T23:00:00Z",
    action: "policy.publish",
    decision: "allow",
    actor: { user: "operator", device: null, nation: "USA" },
    object: { type: "policy", id: String(policy.policyVersion) },
    subject_nation: null,
    details: {
      coalition: policy.coalition,
      digest: policy.digestB64u,
      previous: policy.previous === null ? null : b64uEncode(policy.previous),
      signers: [],
      threshold: policy.threshold,
      nations: [...policy.nations.keys()],
      catalog_version: 1,
    },
    ...change,
  };
}

export class PolicyLogServer {
  readonly leaves: string[] = [];
  /** Versions whose publication `proof` finds at another leaf than the first (a lie). */
  readonly at = new Map<number, number>();

  /** Append `leaf` (canonical JSON, as the server writes every leaf); its index. */
  append(leaf: JsonObject): number {
    this.leaves.push(fromUtf8(canonicalJson(leaf)));
    return this.leaves.length - 1;
  }

  /** Log the publication of the policy document `document`, honestly. */
  publish(document: JsonObject): number {
    return this.append(publicationLeaf(document));
  }

  hashes(size = this.leaves.length): Uint8Array[] {
    return this.leaves.slice(0, size).map((leaf) => leafHash(utf8(leaf)));
  }

  /** The signed note of the checkpoint of `size` leaves. */
  note(size = this.leaves.length): string {
    return signCheckpoint(new Checkpoint(ORIGIN, size, merkleRoot(this.hashes(size))), SIGNER);
  }

  /** The index of the first publication of `version`, or null: the server would answer 404. */
  find(version: number): number | null {
    const lie = this.at.get(version);
    if (lie !== undefined) return lie;
    const found = this.leaves.findIndex((text) => {
      const leaf = JSON.parse(text);
      return leaf.action === "policy.publish" && leaf.object?.id === String(version);
    });
    return found < 0 ? null : found;
  }

  /** `GET /v1/policy/{version}/proof?old=S` at the latest checkpoint; null for a 404. */
  proof(version: number, old: number): JsonObject | null {
    const index = this.find(version);
    if (index === null) return null;
    const size = this.leaves.length;
    const hashes = this.hashes(size);
    const b64 = (list: Uint8Array[]) => list.map(b64uEncode);
    return {
      checkpoint: {
        note: this.note(size),
        consistency: 0 < old && old < size ? b64(consistencyProof(hashes, old)) : [],
      },
      publication: { index, leaf: this.leaves[index]!, proof: b64(inclusionProof(hashes, index)) },
    };
  }
}
