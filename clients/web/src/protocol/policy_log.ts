/**
 * Coalition policy versions bound through the audit log (PROTOCOL.md §18.6), as
 * protocol/policy_log.py `verify_publication`, step for step and with the same refusals: what
 * a client checks of `GET /v1/policy/{version}/proof?old=S` before it accepts a version whose
 * signatures it verified. Pure: the answer is passed in; the checkpoint is checked by
 * transparency.ts `verifyCheckpoint` (§19.4 step 1), RFC 9162 proofs by merkle.ts.
 *
 * A refusal is a TransparencyError naming the version (CheckpointRefused for the checkpoint).
 * As transparency.ts, the leaf must be in canonical form (RFC 8785), as every audit leaf is
 * written, where Python parses it refusing only duplicate keys.
 */
import { b64uEncode, utf8 } from "./bytes.js";
import type { NoteVerifier } from "./checkpoint.js";
import { repr, type CoalitionPolicy } from "./coalition.js";
import { HASH_SIZE, leafHash, verifyInclusion } from "./merkle.js";
import {
  TransparencyError,
  decoded,
  field,
  hashes,
  index,
  isRecord,
  parseLeaf,
  part,
  text,
  verifyCheckpoint,
  type HeldCheckpoint,
  type JsonRecord,
} from "./transparency.js";

/** The action of a policy version's publication leaf (allow decisions only). */
export const PUBLISH_ACTION = "policy.publish";
const MAX_VERSION = 2 ** 53 - 1;

/** What a `policy.publish` leaf says (digests b64u; previous null for the founding version). */
export interface Publication {
  policyVersion: number;
  digest: string;
  previous: string | null;
  coalition: string;
}

/** A policy version shown published in the log at checkpoint (size, root), by the leaf at `index`. */
export interface VerifiedPublication {
  size: number;
  root: Uint8Array;
  note: string;
  index: number;
  publication: Publication;
}

/** Whether an audit leaf publishes a coalition policy version (refusals do not). */
export function isPublication(leaf: JsonRecord): boolean {
  return leaf.action === PUBLISH_ACTION && leaf.decision === "allow";
}

function digestOf(value: unknown, what: string): string {
  if (decoded(value, what).length !== HASH_SIZE) {
    throw new TransparencyError(`${what} is not 32 bytes`);
  }
  return value as string;
}

/** The publication a `policy.publish` (allow) leaf records; TransparencyError otherwise. */
export function parsePublication(leaf: JsonRecord): Publication {
  if (!isPublication(leaf)) {
    throw new TransparencyError(
      `the leaf is a ${repr(leaf.action)} (${repr(leaf.decision)}) event, not a ` +
        `policy publication (${PUBLISH_ACTION}, allow)`,
    );
  }
  const kind = field(leaf, "object", "type");
  const ident = field(leaf, "object", "id");
  if (kind !== "policy" || typeof ident !== "string" || !/^[\x00-\x7f]*$/.test(ident)) {
    throw new TransparencyError("the publication leaf's object is not a policy version");
  }
  const number = /^[0-9]+$/.test(ident) ? Number(ident) : NaN;
  if (!(String(number) === ident && number >= 1 && number <= MAX_VERSION)) {
    throw new TransparencyError(`the publication leaf names no policy version (${repr(ident)})`);
  }
  const version = number;
  const details = leaf.details;
  if (!isRecord(details)) {
    throw new TransparencyError(`the publication of version ${version} has no details`);
  }
  const coalition = details.coalition;
  if (typeof coalition !== "string" || !coalition) {
    throw new TransparencyError(`the publication of version ${version} names no coalition`);
  }
  const digest = digestOf(details.digest, `the digest of version ${version}'s publication`);
  if (!("previous" in details)) {
    throw new TransparencyError(`the publication of version ${version} has no previous digest`);
  }
  let previous: string | null = null;
  if (details.previous !== null) {
    previous = digestOf(
      details.previous,
      `the previous digest of version ${version}'s publication`,
    );
  }
  if ((version === 1) !== (previous === null)) {
    throw new TransparencyError(
      `the publication of version ${version} has ` +
        (version === 1 ? "a previous digest" : "no previous digest"),
    );
  }
  return { policyVersion: version, digest, previous, coalition };
}

/**
 * Check `GET /v1/policy/{version}/proof` (PROTOCOL.md §18.6) for `policy`, a version whose
 * signatures the client verified: the checkpoint verifies with the pinned audit key and
 * extends `held` (§19.4 step 1), and the publication leaf is in its tree and records exactly
 * this version (number, coalition, digest, and its predecessor's digest). CheckpointRefused
 * for the checkpoint, a TransparencyError naming the version otherwise.
 */
export function verifyPublication(
  answer: unknown,
  {
    logKey,
    policy,
    held = null,
  }: { logKey: NoteVerifier; policy: CoalitionPolicy; held?: HeldCheckpoint | null },
): VerifiedPublication {
  const version = policy.policyVersion;
  if (!isRecord(answer)) {
    throw new TransparencyError(`the proof of coalition policy version ${version} is not JSON`);
  }
  const { size, root, note } = verifyCheckpoint(part(answer, "checkpoint"), { logKey, held });
  const publication = part(answer, "publication");
  const at = index(publication.index, "the publication leaf's index");
  const leafText = text(publication.leaf, "publication leaf");
  if (
    at >= size ||
    !verifyInclusion(
      leafHash(utf8(leafText)),
      at,
      size,
      hashes(publication.proof, "the proof"),
      root,
    )
  ) {
    throw new TransparencyError(
      `coalition policy version ${version} is not in the audit log: the inclusion proof ` +
        `of its publication (leaf ${at}) does not verify at the checkpoint of size ${size}`,
    );
  }
  let found: Publication;
  try {
    found = parsePublication(parseLeaf(leafText, "the publication leaf"));
  } catch (error) {
    if (!(error instanceof TransparencyError)) throw error;
    throw new TransparencyError(
      `the leaf ${at} shown as coalition policy version ${version}'s publication is ` +
        `not one: ${error.message}`,
    );
  }
  const expected: Publication = {
    policyVersion: version,
    digest: policy.digestB64u,
    previous: policy.previous === null ? null : b64uEncode(policy.previous),
    coalition: policy.coalition,
  };
  const names: [keyof Publication, string][] = [
    ["policyVersion", "policy_version"],
    ["digest", "digest"],
    ["previous", "previous"],
    ["coalition", "coalition"],
  ];
  const wrong = names.filter(([key]) => found[key] !== expected[key]).map(([, name]) => name);
  if (wrong.length > 0) {
    throw new TransparencyError(
      `the audit log's publication at leaf ${at} is not coalition policy version ` +
        `${version} as served: its ${wrong.join(", ")} differ` +
        (wrong.includes("digest")
          ? ` (the log has digest ${found.digest}, the server serves ${expected.digest})`
          : ""),
    );
  }
  return { size, root, note, index: at, publication: found };
}
