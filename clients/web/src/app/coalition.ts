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

export const NO_POLICY =
  "Warning: the server publishes no coalition policy, so this page takes the nations' " +
  "authority keys, the partner groups and the label catalog from the server on first use; " +
  "a compromised server could add a nation or widen a group.";

/** The server's coalition policy cannot be held to: the message says what was wrong. */
export class PolicyRefused extends Error {}

/** What the device record keeps of the policy (all public). */
export interface PolicyPin {
  /** b64u of the founding version's digest. */
  founding: string;
  /** The latest version verified here, in its wire form (`{policy, signatures}`). */
  latest: JsonObject;
}

/** The policy this browser holds to, and what the last check changed. */
export interface HeldPolicy {
  pin: PolicyPin;
  policy: CoalitionPolicy;
  /** Pinned by this check (at enrolment, or on first use). */
  pinnedNow: boolean;
  /** The version held before this check, when it moved on. */
  previousVersion: number | null;
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

/** `served`'s policy, once every version from `held` to it is a valid successor. */
async function follow(
  api: Api,
  held: CoalitionPolicy,
  served: SignedPolicy,
): Promise<CoalitionPolicy> {
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
    return held;
  }
  let current = held;
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
  }
  return current;
}

/** The founding digest of `served`, once the chain from the founding version to it is valid
 * (and the founding version is `expect`, when given). */
async function fromFounding(
  api: Api,
  served: SignedPolicy,
  expect: Uint8Array | null,
): Promise<Uint8Array> {
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
  await follow(api, policy, served);
  return policy.digest;
}

function pinOf(founding: Uint8Array, signed: SignedPolicy): PolicyPin {
  return { founding: b64uEncode(founding), latest: signedPolicyJson(signed) };
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
 * `expectFounding`, when the security officer gave its digest); null when the server publishes
 * none. The caller pins it with the device.
 */
export async function pinPolicy(
  api: Api,
  expectFounding: Uint8Array | null = null,
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
  const founding = await fromFounding(api, served, expectFounding);
  return {
    pin: pinOf(founding, served),
    policy: served.policy,
    pinnedNow: true,
    previousVersion: null,
  };
}

/**
 * The policy in force, following the server from `pin` (the one held; null for none): a later
 * version only through valid successors of the one held; with none held, a served policy is
 * verified from its founding version and pinned (first use); with none held and none served,
 * null (NO_POLICY). The caller keeps `pin` when it changed.
 */
export async function holdPolicy(api: Api, pin: PolicyPin | null): Promise<HeldPolicy | null> {
  const served = await fetchPolicy(api);
  if (pin === null) {
    if (served === null) return null;
    const founding = await fromFounding(api, served, null);
    return {
      pin: pinOf(founding, served),
      policy: served.policy,
      pinnedNow: true,
      previousVersion: null,
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
  const policy = await follow(api, latest.policy, served);
  if (policy.policyVersion !== latest.policy.policyVersion) {
    return {
      pin: { founding: pin.founding, latest: signedPolicyJson(served) },
      policy,
      pinnedNow: false,
      previousVersion: latest.policy.policyVersion,
    };
  }
  return { pin, policy: latest.policy, pinnedNow: false, previousVersion: null };
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
