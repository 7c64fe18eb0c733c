/**
 * The coalition policy as this browser holds it, as clients/sdk/coalition.py (docs/coalition.md,
 * PROTOCOL.md §18). At enrolment the page pins the policy: the digest of its founding version
 * (checked against the one the security officer gave, when given) and the latest version,
 * verified from the founding one. On each sign-in it fetches `GET /v1/policy` and accepts a
 * later version only through a chain of valid successors of the one it holds (each step
 * fetched with `GET /v1/policy/{version}`); an older version, another version of the same
 * number (a fork), a successor short of its signatures, or no policy at all once one is
 * pinned, is refused with PolicyRefused naming what was wrong.
 *
 * With a policy held, a certificate verifies only under an authority key the policy lists for
 * the certificate's nation, and the catalog (its nations and groups) is the policy's, never
 * `GET /v1/catalog`'s or `GET /v1/nations`'s. A server that publishes no policy is used as
 * before (its nations and catalog trusted on first use) and NO_POLICY is said; the first policy
 * such a server publishes is pinned on first use, as at enrolment.
 * Nothing here touches the DOM or IndexedDB, so Node's tests run it.
 */
import { ApiError, type Api } from "./api.js";
import {
  CertificateError,
  PolicyError,
  b64uDecode,
  b64uEncode,
  equalBytes,
  parseSignedPolicy,
  signedPolicyJson,
  verifyFounding,
  verifySuccessor,
  type AuthorityKeys,
  type CoalitionPolicy,
  type JsonObject,
  type SignedPolicy,
} from "../protocol/index.js";
import type { VerifiedPublication } from "../protocol/policy_log.js";

export const NO_POLICY =
  "Warning: the server publishes no coalition policy, so this page takes the nations' " +
  "authority keys, the partner groups and the label catalog from the server on first use; " +
  "a compromised server could add a nation or widen a group.";

/** The server's coalition policy cannot be held to: the message says what was wrong. */
export class PolicyRefused extends Error {}

/** The server says a version's publication is not in a checkpoint yet, after the wait. */
export class NotLoggedYet extends PolicyRefused {}

/** What proves policy versions in the audit log (app/policy_log.ts's PolicyLog; fakes in tests). */
export interface PolicyProver {
  /** `policy`'s publication proven (PROTOCOL.md §18.6), or PolicyRefused naming the version;
   * `wait`: milliseconds to keep asking while the server answers 503. */
  prove(policy: CoalitionPolicy, wait?: number): Promise<VerifiedPublication>;
}

/** What the device record keeps of the policy (all public). */
export interface PolicyPin {
  /** b64u of the founding version's digest. */
  founding: string;
  /** The latest version verified here, in its wire form (`{policy, signatures}`). */
  latest: JsonObject;
  /**
   * The latest version this browser saw proven in the audit log (as the SDK's
   * policy-log.json); absent for a device enrolled before the page checked the log.
   */
  logged?: { version: number; digest: string; index: number; size: number } | null;
}

/** The policy this browser holds to, and what the last check changed. */
export interface HeldPolicy {
  pin: PolicyPin;
  policy: CoalitionPolicy;
  /** Pinned by this check (at enrolment, or on first use). */
  pinnedNow: boolean;
  /** The version held before this check, when it moved on. */
  previousVersion: number | null;
  /** Whether `pin` changed (moved on, or its version now seen proven): the caller keeps it. */
  changed?: boolean;
  /** A warning for the page: the version held was pinned before the page checked the log,
   * and the log does not prove it (it stays held, as it was accepted before). */
  logNote?: string | null;
}

/** The signed policy the server serves (the latest, or `version`), parsed for structure only;
 * null when it serves none (404). */
export async function fetchPolicy(api: Api, version?: number): Promise<SignedPolicy | null> {
  let raw: unknown;
  try {
    raw = await api.request<unknown>(
      "GET",
      version === undefined ? "/v1/policy" : `/v1/policy/${version}`,
    );
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) return null;
    throw error;
  }
  try {
    return parseSignedPolicy(raw);
  } catch (error) {
    if (!(error instanceof PolicyError)) throw error;
    const which = version === undefined ? "latest" : `version ${version} of the`;
    throw new PolicyRefused(
      `the server's ${which} coalition policy is malformed: ${error.message}`,
    );
  }
}

async function step(
  api: Api,
  version: number,
  last: number,
  served: SignedPolicy,
): Promise<SignedPolicy> {
  if (version === last) return served;
  const signed = await fetchPolicy(api, version);
  if (signed === null) {
    throw new PolicyRefused(
      `the server serves coalition policy version ${last} but not version ${version}, ` +
        "without which it cannot be verified; refusing it",
    );
  }
  return signed;
}

/** The versions after `held` up to `served`'s, once each is a valid successor of the one
 * before (none when `served` is `held`). */
async function follow(
  api: Api,
  held: CoalitionPolicy,
  served: SignedPolicy,
): Promise<CoalitionPolicy[]> {
  const start = held.policyVersion;
  const last = served.policy.policyVersion;
  if (last < start) {
    throw new PolicyRefused(
      `the server serves coalition policy version ${last}, older than version ${start} held ` +
        "here: a replayed or rolled-back policy is refused",
    );
  }
  if (last === start) {
    if (!equalBytes(served.policy.digest, held.digest)) {
      throw new PolicyRefused(
        `the server serves a coalition policy version ${last} other than the one held here ` +
          `(${served.policy.digestB64u}, not ${held.digestB64u}): a fork is refused`,
      );
    }
    return [];
  }
  let current = held;
  const followed: CoalitionPolicy[] = [];
  for (let version = start + 1; version <= last; version++) {
    const signed = await step(api, version, last, served);
    try {
      current = verifySuccessor(current, signed);
    } catch (error) {
      if (!(error instanceof PolicyError)) throw error;
      throw new PolicyRefused(
        `the server's coalition policy version ${signed.policy.policyVersion} does not follow ` +
          `version ${current.policyVersion} held here: ${error.message}`,
      );
    }
    followed.push(current);
  }
  return followed;
}

/** Every version from the founding one to `served`'s, once the chain is valid (and the
 * founding version is `expect`, when given). */
async function fromFounding(
  api: Api,
  served: SignedPolicy,
  expect: Uint8Array | null,
): Promise<CoalitionPolicy[]> {
  const founding = await step(api, 1, served.policy.policyVersion, served);
  let policy: CoalitionPolicy;
  try {
    policy = verifyFounding(founding);
  } catch (error) {
    if (!(error instanceof PolicyError)) throw error;
    throw new PolicyRefused(`the server's founding coalition policy is refused: ${error.message}`);
  }
  if (expect !== null && !equalBytes(policy.digest, expect)) {
    throw new PolicyRefused(
      `the server's founding coalition policy has digest ${policy.digestB64u}, not ` +
        `${b64uEncode(expect)} as you were given; refusing it`,
    );
  }
  return [policy, ...(await follow(api, policy, served))];
}

/** Prove each of `versions` in the log, in order: the last one's proof (null for none). */
async function proveAll(
  log: PolicyProver,
  versions: CoalitionPolicy[],
): Promise<VerifiedPublication | null> {
  let proven: VerifiedPublication | null = null;
  for (const policy of versions) proven = await log.prove(policy);
  return proven;
}

function loggedOf(proven: VerifiedPublication | null): PolicyPin["logged"] {
  if (proven === null) return undefined;
  const { publication, index, size } = proven;
  return { version: publication.policyVersion, digest: publication.digest, index, size };
}

function pinOf(
  founding: Uint8Array,
  signed: SignedPolicy,
  proven: VerifiedPublication | null,
): PolicyPin {
  const pin: PolicyPin = { founding: b64uEncode(founding), latest: signedPolicyJson(signed) };
  const logged = loggedOf(proven);
  return logged === undefined ? pin : { ...pin, logged };
}

/** A founding digest as a user types it: b64u of 32 bytes, spaces ignored. */
export function parseFoundingDigest(text: string): Uint8Array | null {
  const trimmed = text.replace(/\s+/g, "");
  if (trimmed === "") return null;
  try {
    const digest = b64uDecode(trimmed);
    if (digest.length === 32) return digest;
  } catch {
    // said below
  }
  throw new PolicyRefused(
    "the coalition policy digest you were given must be 43 characters of base64url; " +
      "check it with your security officer",
  );
}

/**
 * At enrolment: the server's latest policy, verified from its founding version (which must be
 * `expectFounding`, when the security officer gave its digest) and, with `log` (for the audit
 * key about to be pinned), every version from the founding one proven in the audit log;
 * null when the server publishes none. The caller pins it with the device.
 */
export async function pinPolicy(
  api: Api,
  expectFounding: Uint8Array | null = null,
  log: PolicyProver | null = null,
): Promise<HeldPolicy | null> {
  const served = await fetchPolicy(api);
  if (served === null) {
    if (expectFounding !== null) {
      throw new PolicyRefused(
        "you were given a coalition policy digest, but the server publishes no coalition " +
          "policy; refusing to enrol without it",
      );
    }
    return null;
  }
  const chain = await fromFounding(api, served, expectFounding);
  const proven = log === null ? null : await proveAll(log, chain);
  return {
    pin: pinOf(chain[0]!.digest, served, proven),
    policy: served.policy,
    pinnedNow: true,
    previousVersion: null,
    changed: true,
  };
}

/**
 * The policy in force, following the server from `pin` (the one held; null for none): a later
 * version only through valid successors of the one held, each proven in the audit log by `log`
 * (when given); with none held, a served policy is verified from its founding version, proven
 * and pinned (first use); with none held and none served, null (NO_POLICY). A version held
 * from before the page checked the log is kept, and said (`logNote`), until the log proves it.
 * The caller keeps `pin` when it changed.
 */
export async function holdPolicy(
  api: Api,
  pin: PolicyPin | null,
  log: PolicyProver | null = null,
): Promise<HeldPolicy | null> {
  const served = await fetchPolicy(api);
  if (pin === null) {
    if (served === null) return null;
    const chain = await fromFounding(api, served, null);
    const proven = log === null ? null : await proveAll(log, chain);
    return {
      pin: pinOf(chain[0]!.digest, served, proven),
      policy: served.policy,
      pinnedNow: true,
      previousVersion: null,
      changed: true,
    };
  }
  let latest: SignedPolicy;
  try {
    latest = parseSignedPolicy(pin.latest);
  } catch (error) {
    throw new PolicyRefused(`the coalition policy kept in this browser is unreadable: ${error}`);
  }
  if (served === null) {
    throw new PolicyRefused(
      `this device holds coalition policy version ${latest.policy.policyVersion}, but the ` +
        "server publishes none: refusing to fall back to trusting the server's directory",
    );
  }
  const followed = await follow(api, latest.policy, served);
  if (followed.length > 0) {
    const proven = log === null ? null : await proveAll(log, followed);
    const moved: PolicyPin = { founding: pin.founding, latest: signedPolicyJson(served) };
    const logged = log === null ? pin.logged : loggedOf(proven);
    return {
      pin: logged === undefined ? moved : { ...moved, logged },
      policy: followed[followed.length - 1]!,
      pinnedNow: false,
      previousVersion: latest.policy.policyVersion,
      changed: true,
    };
  }
  if (log !== null) return checkHeld(log, pin, latest.policy);
  return { pin, policy: latest.policy, pinnedNow: false, previousVersion: null };
}

/**
 * The version held, when this browser has not seen it proven in the log (it was pinned before
 * the page checked: a device enrolled earlier): proven now and recorded if the log shows it;
 * otherwise kept, since it was accepted before, and said. Nothing accepted before is refused
 * for this; every later version must be in the log.
 */
async function checkHeld(
  log: PolicyProver,
  pin: PolicyPin,
  held: CoalitionPolicy,
): Promise<HeldPolicy> {
  const result: HeldPolicy = { pin, policy: held, pinnedNow: false, previousVersion: null };
  const logged = pin.logged;
  if (logged && logged.version === held.policyVersion && logged.digest === held.digestB64u) {
    return result;
  }
  let proven: VerifiedPublication;
  try {
    proven = await log.prove(held, 0);
  } catch (error) {
    if (error instanceof NotLoggedYet) return result; // published moments ago: asked next time
    if (!(error instanceof PolicyRefused)) throw error;
    return {
      ...result,
      logNote:
        `Warning: coalition policy version ${held.policyVersion} held here was pinned before ` +
        `this page checked policy versions in the audit log, and the log does not prove it ` +
        `(${error.message}). It stays held, as it was accepted before; every later version ` +
        "must be in the log.",
    };
  }
  return { ...result, pin: { ...pin, logged: loggedOf(proven) }, changed: true };
}

/**
 * The authority keys a held policy vouches for: a certificate verifies only under a key the
 * policy lists for its nation under the key id it names (the SDK's `_policy_key`).
 */
export function policyAuthorities(policy: CoalitionPolicy): AuthorityKeys {
  return {
    keyFor(nation: string, keyId: string): Uint8Array {
      const entry = policy.nations.get(nation);
      if (entry === undefined) {
        throw new CertificateError(
          `certificate is of nation ${nation}, which coalition policy version ` +
            `${policy.policyVersion} does not list: the coalition has not admitted it`,
        );
      }
      const listed = entry.authorityKeys.get(keyId);
      if (listed === undefined) {
        throw new CertificateError(
          `certificate names authority key ${keyId}, which coalition policy version ` +
            `${policy.policyVersion} does not list for ${nation}`,
        );
      }
      return listed;
    },
  };
}
