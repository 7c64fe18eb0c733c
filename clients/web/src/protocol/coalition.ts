/**
 * The coalition policy, as protocol/coalition.py (docs/PROTOCOL.md §18 is the byte-level
 * contract): one versioned document holding the nation registry (each nation with its
 * authority keys), the partner groups, the label catalog's TOML and a threshold.
 *
 * Version 1 (the founding version) is signed by every nation it lists. Version N+1 names the
 * digest of version N and counts only when at least version N's `threshold` distinct nations
 * of version N sign it, each with a key that version N lists for it. Every signature carried
 * must be valid and counted: an unknown key, another nation's key, a forgery or a nation
 * signing twice refuses the whole document. Every failure throws PolicyError, with the same
 * message as Python's.
 */
import { b64uDecode, b64uEncode, equalBytes } from "./bytes.js";
import {
  CTX_COALITION_POLICY,
  CTX_COALITION_POLICY_SIGNATURE,
  CanonicalizationError,
  canonicalJson,
  digest,
  withContext,
  type Json,
  type JsonObject,
} from "./canonical.js";
import { authorityKeyId } from "./keys.js";
import { LabelError, catalogFromToml, type Catalog } from "./labels.js";
import { ED25519_PUBLIC_KEY_SIZE, SIGNATURE_SIZE, ed25519Verify } from "./primitives.js";

export { CTX_COALITION_POLICY, CTX_COALITION_POLICY_SIGNATURE };

export const POLICY_FORMAT_VERSION = 1;
export const POLICY_FIELDS = [
  "version",
  "coalition",
  "policy_version",
  "previous",
  "threshold",
  "nations",
  "groups",
  "catalog",
] as const;
export const MAX_NATIONS = 300;
export const MAX_KEYS_PER_NATION = 8;
export const MAX_GROUPS = 256;
export const MAX_CATALOG_BYTES = 256 * 1024;
export const MAX_POLICY_BYTES = 1024 * 1024;

const DIGEST_SIZE = 32;
const AUTHORITY_KEY_ID_SIZE = 16;
const MAX_NAME = 120;
const MAX_POLICY_VERSION = 2 ** 53 - 1;
const COALITION = /^[a-z0-9][a-z0-9._-]{0,63}$/;
const NATION = /^[A-Z]{3}$/;
// protocol/catalog.py NAME: one capitalised word.
const NAME = /^[A-Z][A-Z0-9-]*$/;
const CATEGORY_C = /[\p{C}]/u;

export class PolicyError extends Error {}

export interface PolicyNation {
  code: string;
  name: string;
  /** Authority public keys (32 bytes) by key id. */
  authorityKeys: ReadonlyMap<string, Uint8Array>;
}

/** One policy version, checked for structure when parsed (not for its signatures). */
export interface CoalitionPolicy {
  coalition: string;
  policyVersion: number;
  previous: Uint8Array | null;
  threshold: number;
  nations: ReadonlyMap<string, PolicyNation>;
  groups: ReadonlyMap<string, readonly string[]>;
  catalogToml: string;
  /** digest(CTX_COALITION_POLICY, canonical JSON of the document): the version's identity. */
  digest: Uint8Array;
  digestB64u: string;
  /** The catalog it describes: its TOML with its nations and groups. */
  catalog: Catalog;
  /** The document as hashed and signed. */
  json: JsonObject;
}

export interface PolicySignature {
  nation: string;
  keyId: string;
  signature: Uint8Array;
}

/** A policy version and the signatures it carries; nothing here is verified yet. */
export interface SignedPolicy {
  policy: CoalitionPolicy;
  signatures: readonly PolicySignature[];
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function isInt(value: unknown): value is number {
  return typeof value === "number" && Number.isInteger(value);
}

/** A value as Python's repr shows it in a message (strings, None, booleans, numbers). */
export function repr(value: unknown): string {
  if (typeof value === "string") return `'${value}'`;
  if (value === null || value === undefined) return "None";
  if (value === true) return "True";
  if (value === false) return "False";
  return typeof value === "number" ? String(value) : JSON.stringify(value);
}

function b64u(value: unknown, size: number, what: string): Uint8Array {
  if (typeof value !== "string" || value.length > Math.floor((size * 4 + 2) / 3)) {
    throw new PolicyError(`${what} must be base64url of ${size} bytes`);
  }
  let data: Uint8Array;
  try {
    data = b64uDecode(value);
  } catch (error) {
    throw new PolicyError(`${what} is malformed: ${(error as Error).message}`);
  }
  if (data.length !== size)
    throw new PolicyError(`${what} must be ${size} bytes, got ${data.length}`);
  return data;
}

function loadObject(value: unknown, kind: string): Record<string, unknown> {
  if (typeof value === "string") {
    if (value.length > 2 * MAX_POLICY_BYTES) {
      throw new PolicyError(`${kind} is larger than ${2 * MAX_POLICY_BYTES} bytes`);
    }
    try {
      value = JSON.parse(value);
    } catch (error) {
      throw new PolicyError(`${kind} is not a JSON object: ${(error as Error).message}`);
    }
    if (!isObject(value))
      throw new PolicyError(`${kind} is not a JSON object: expected a JSON object`);
    return value;
  }
  if (!isObject(value)) throw new PolicyError(`${kind} must be a JSON object`);
  return structuredClone(value);
}

// --- building the document --------------------------------------------------------------------

function policyJson(
  coalition: string,
  policyVersion: number,
  previous: Uint8Array | null,
  threshold: number,
  nations: ReadonlyMap<string, PolicyNation>,
  groups: ReadonlyMap<string, readonly string[]>,
  catalogToml: string,
): JsonObject {
  const nationsJson: JsonObject = {};
  for (const [code, nation] of nations) {
    const keys: JsonObject = {};
    for (const [kid, key] of nation.authorityKeys) keys[kid] = b64uEncode(key);
    nationsJson[code] = { name: nation.name, authority_keys: keys };
  }
  const groupsJson: JsonObject = {};
  for (const [name, members] of groups) groupsJson[name] = [...members];
  return {
    version: POLICY_FORMAT_VERSION,
    coalition,
    policy_version: policyVersion,
    previous: previous === null ? null : b64uEncode(previous),
    threshold,
    nations: nationsJson,
    groups: groupsJson,
    catalog: catalogToml,
  };
}

/** Every structural rule of a policy version (protocol/coalition.py _check_policy). */
function makePolicy(
  coalition: string,
  policyVersion: number,
  previous: Uint8Array | null,
  threshold: number,
  nations: ReadonlyMap<string, PolicyNation>,
  groups: ReadonlyMap<string, readonly string[]>,
  catalogToml: string,
): CoalitionPolicy {
  if (!COALITION.test(coalition)) {
    throw new PolicyError("coalition must match [a-z0-9][a-z0-9._-]{0,63}");
  }
  if (!isInt(policyVersion) || policyVersion < 1 || policyVersion > MAX_POLICY_VERSION) {
    throw new PolicyError("policy_version must be an integer from 1 to 2**53 - 1");
  }
  if ((policyVersion === 1) !== (previous === null)) {
    throw new PolicyError("version 1 and only version 1 has no previous version");
  }
  if (previous !== null && previous.length !== DIGEST_SIZE) {
    throw new PolicyError(`previous must be a ${DIGEST_SIZE}-byte digest`);
  }
  if (nations.size < 1 || nations.size > MAX_NATIONS) {
    throw new PolicyError(`a policy lists 1 to ${MAX_NATIONS} nations`);
  }
  if (!isInt(threshold) || threshold < 1 || threshold > nations.size) {
    throw new PolicyError(
      `threshold ${repr(threshold)} must be from 1 to the number of nations (${nations.size})`,
    );
  }
  const owners = new Map<string, string>();
  for (const [code, nation] of nations) {
    checkNation(code, nation);
    for (const keyId of nation.authorityKeys.keys()) {
      const other = owners.get(keyId) ?? code;
      owners.set(keyId, other);
      if (other !== code) {
        throw new PolicyError(`authority key ${keyId} is listed for both ${other} and ${code}`);
      }
    }
  }
  if (groups.size > MAX_GROUPS)
    throw new PolicyError(`a policy lists at most ${MAX_GROUPS} groups`);
  for (const [name, members] of groups) {
    if (!NAME.test(name)) {
      throw new PolicyError(`group name ${repr(name)} is not one capitalised word`);
    }
    if (members.length < 1 || members.length > MAX_NATIONS) {
      throw new PolicyError(`group ${name} must have 1 to ${MAX_NATIONS} members`);
    }
    const canonical = [...new Set(members)].sort();
    if (canonical.length !== members.length || canonical.some((m, i) => m !== members[i])) {
      throw new PolicyError(`group ${name}: members must be sorted and distinct`);
    }
  }
  if (new TextEncoder().encode(catalogToml).length > MAX_CATALOG_BYTES) {
    throw new PolicyError(`catalog is larger than ${MAX_CATALOG_BYTES} bytes`);
  }
  let catalog: Catalog;
  try {
    catalog = catalogFromToml(catalogToml);
    for (const name of [...groups.keys()].sort()) {
      if (catalog.groups.has(name)) {
        throw new LabelError(`group "${name}" is already defined by the catalog`);
      }
    }
    // Catalog.__post_init__: a group's members are nations of the catalog or the policy.
    for (const [name, members] of groups) {
      for (const member of members) {
        if (!catalog.nations.has(member) && !nations.has(member)) {
          throw new LabelError(`group "${name}": unknown nation "${member}"`);
        }
      }
    }
    catalog = catalogFromToml(catalogToml, {
      nations: [...nations.keys()],
      groups: Object.fromEntries([...groups].map(([name, members]) => [name, [...members]])),
    });
  } catch (error) {
    if (error instanceof LabelError) throw new PolicyError(`catalog: ${error.message}`);
    throw error;
  }
  const json = policyJson(
    coalition,
    policyVersion,
    previous,
    threshold,
    nations,
    groups,
    catalogToml,
  );
  let encoded: Uint8Array;
  try {
    encoded = canonicalJson(json);
  } catch (error) {
    if (error instanceof CanonicalizationError) {
      throw new PolicyError(`policy is not canonical JSON: ${error.message}`);
    }
    throw error;
  }
  if (encoded.length > MAX_POLICY_BYTES) {
    throw new PolicyError(`policy is larger than ${MAX_POLICY_BYTES} bytes`);
  }
  const policyDigest = digest(CTX_COALITION_POLICY, encoded);
  return {
    coalition,
    policyVersion,
    previous,
    threshold,
    nations,
    groups,
    catalogToml,
    digest: policyDigest,
    digestB64u: b64uEncode(policyDigest),
    catalog,
    json,
  };
}

function checkNation(code: string, nation: PolicyNation): void {
  if (!NATION.test(code)) {
    throw new PolicyError(`nation ${repr(code)} is not an ISO 3166-1 alpha-3 code`);
  }
  const name = nation.name;
  if (typeof name !== "string" || [...name].length < 1 || [...name].length > MAX_NAME) {
    throw new PolicyError(`nation ${code}: name must be text of 1 to ${MAX_NAME} characters`);
  }
  if (CATEGORY_C.test(name)) {
    throw new PolicyError(`nation ${code}: name contains control or format characters`);
  }
  const count = nation.authorityKeys.size;
  if (count < 1 || count > MAX_KEYS_PER_NATION) {
    throw new PolicyError(`nation ${code} must have 1 to ${MAX_KEYS_PER_NATION} authority keys`);
  }
  for (const [keyId, key] of nation.authorityKeys) {
    if (key.length !== ED25519_PUBLIC_KEY_SIZE) {
      throw new PolicyError(`nation ${code}: an authority key is ${ED25519_PUBLIC_KEY_SIZE} bytes`);
    }
    if (authorityKeyId(key) !== keyId) {
      throw new PolicyError(`nation ${code}: authority key listed as ${keyId} has another id`);
    }
  }
}

// --- parsing -------------------------------------------------------------------------------------

function parseNations(value: unknown): Map<string, PolicyNation> {
  if (!isObject(value)) throw new PolicyError("nations must be an object");
  if (Object.keys(value).length > MAX_NATIONS) {
    throw new PolicyError(`a policy lists 1 to ${MAX_NATIONS} nations`);
  }
  const nations = new Map<string, PolicyNation>();
  for (const [code, raw] of Object.entries(value)) {
    if (!isObject(raw) || Object.keys(raw).sort().join() !== "authority_keys,name") {
      throw new PolicyError(`nation ${code}: exactly the fields name and authority_keys`);
    }
    const keys = raw.authority_keys;
    if (!isObject(keys) || Object.keys(keys).length > MAX_KEYS_PER_NATION) {
      throw new PolicyError(
        `nation ${code}: authority_keys must be an object of 1 to ${MAX_KEYS_PER_NATION} keys`,
      );
    }
    const decoded = new Map<string, Uint8Array>();
    for (const [kid, key] of Object.entries(keys)) {
      decoded.set(kid, b64u(key, ED25519_PUBLIC_KEY_SIZE, `nation ${code}: authority key ${kid}`));
    }
    nations.set(code, { code, name: raw.name as string, authorityKeys: decoded });
  }
  return nations;
}

function parseGroups(value: unknown): Map<string, string[]> {
  if (!isObject(value)) throw new PolicyError("groups must be an object");
  if (Object.keys(value).length > MAX_GROUPS) {
    throw new PolicyError(`a policy lists at most ${MAX_GROUPS} groups`);
  }
  const groups = new Map<string, string[]>();
  for (const [name, members] of Object.entries(value)) {
    if (!Array.isArray(members) || !members.every((m) => typeof m === "string")) {
      throw new PolicyError(`group ${name}: members must be a list of nation codes`);
    }
    groups.set(name, [...(members as string[])]);
  }
  return groups;
}

/**
 * A policy document as received (object or JSON text), checked for structure: refuses unknown
 * or missing fields, a format version other than 1, and anything not in its one canonical
 * spelling (group members unsorted or repeated, a key under a wrong id).
 */
export function parsePolicy(value: unknown): CoalitionPolicy {
  const document = loadObject(value, "policy");
  const present = Object.keys(document);
  const missing = POLICY_FIELDS.filter((name) => !present.includes(name)).sort();
  if (missing.length > 0) throw new PolicyError(`policy lacks ${missing.join(", ")}`);
  const fields: readonly string[] = POLICY_FIELDS;
  const unknown = present.filter((name) => !fields.includes(name)).sort();
  if (unknown.length > 0) throw new PolicyError(`policy has unknown fields ${unknown.join(", ")}`);
  if (!isInt(document.version) || document.version !== POLICY_FORMAT_VERSION) {
    throw new PolicyError(`unsupported policy format version ${repr(document.version)}`);
  }
  const policyVersion = document.policy_version;
  if (!isInt(policyVersion)) throw new PolicyError("policy_version must be an integer");
  const previous =
    document.previous === null ? null : b64u(document.previous, DIGEST_SIZE, "previous");
  const threshold = document.threshold;
  if (!isInt(threshold)) throw new PolicyError("threshold must be an integer");
  const coalition = document.coalition;
  if (typeof coalition !== "string") throw new PolicyError("coalition must be a string");
  const catalog = document.catalog;
  if (typeof catalog !== "string") throw new PolicyError("catalog must be the catalog's TOML text");
  const policy = makePolicy(
    coalition,
    policyVersion,
    previous,
    threshold,
    parseNations(document.nations),
    parseGroups(document.groups),
    catalog,
  );
  let same: boolean;
  try {
    same = equalBytes(canonicalJson(policy.json), canonicalJson(document as Json));
  } catch {
    same = false;
  }
  if (!same) throw new PolicyError("policy is not in its canonical form");
  return policy;
}

function parseSignature(value: unknown): PolicySignature {
  if (!isObject(value) || Object.keys(value).sort().join() !== "key_id,nation,signature") {
    throw new PolicyError("a signature has exactly the fields nation, key_id and signature");
  }
  const { nation, key_id: keyId } = value;
  if (typeof nation !== "string" || !NATION.test(nation)) {
    throw new PolicyError(`signature nation ${repr(nation)} is not an ISO 3166-1 alpha-3 code`);
  }
  b64u(keyId, AUTHORITY_KEY_ID_SIZE, "signature key_id");
  return {
    nation,
    keyId: keyId as string,
    signature: b64u(value.signature, SIGNATURE_SIZE, `signature of ${nation}`),
  };
}

/**
 * The wire form `{"policy": {...}, "signatures": [{"nation", "key_id", "signature"}, ...]}`
 * (an object, or JSON text); checks structure, not signatures.
 */
export function parseSignedPolicy(value: unknown): SignedPolicy {
  const document = loadObject(value, "signed policy");
  if (Object.keys(document).sort().join() !== "policy,signatures") {
    throw new PolicyError("a signed policy has exactly the fields policy and signatures");
  }
  const raw = document.signatures;
  if (!Array.isArray(raw) || raw.length > MAX_NATIONS) {
    throw new PolicyError(`signatures must be a list of at most ${MAX_NATIONS}`);
  }
  return { policy: parsePolicy(document.policy), signatures: raw.map(parseSignature) };
}

/** The wire form of a signed policy, signatures sorted by nation then key id. */
export function signedPolicyJson(signed: SignedPolicy): JsonObject {
  const ordered = [...signed.signatures].sort((a, b) =>
    a.nation === b.nation ? compare(a.keyId, b.keyId) : compare(a.nation, b.nation),
  );
  return {
    policy: structuredClone(signed.policy.json),
    signatures: ordered.map((s) => ({
      nation: s.nation,
      key_id: s.keyId,
      signature: b64uEncode(s.signature),
    })),
  };
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

// --- verifying -----------------------------------------------------------------------------------

/** The nation that lists authority key `keyId` in `policy`, if any. */
export function nationOfKey(policy: CoalitionPolicy, keyId: string): string | null {
  for (const [code, nation] of policy.nations) if (nation.authorityKeys.has(keyId)) return code;
  return null;
}

/**
 * The nations whose signatures `signed` carries, judged by the keys `signers` lists (the
 * version before, or for a founding version the version itself). Every signature must count.
 */
export function signingNations(signers: CoalitionPolicy, signed: SignedPolicy): Set<string> {
  const message = withContext(CTX_COALITION_POLICY_SIGNATURE, signed.policy.digest);
  const seen = new Set<string>();
  const where = `version ${signers.policyVersion}`;
  for (const entry of signed.signatures) {
    const nation = signers.nations.get(entry.nation);
    if (nation === undefined) {
      throw new PolicyError(
        `signature by ${entry.nation}, which is not a nation of ${where}: ` +
          "only the nations of the version before can sign",
      );
    }
    const publicKey = nation.authorityKeys.get(entry.keyId);
    if (publicKey === undefined) {
      const owner = nationOfKey(signers, entry.keyId);
      if (owner !== null) {
        throw new PolicyError(
          `signature for ${entry.nation} made with key ${entry.keyId}, ` +
            `which ${where} lists for ${owner}`,
        );
      }
      throw new PolicyError(
        `signature for ${entry.nation} made with key ${entry.keyId}, ` +
          `which ${where} does not list for ${entry.nation}`,
      );
    }
    if (seen.has(entry.nation)) {
      throw new PolicyError(`${entry.nation} signed twice: a nation counts once`);
    }
    seen.add(entry.nation);
    if (!ed25519Verify(publicKey, entry.signature, message)) {
      throw new PolicyError(
        `the signature of ${entry.nation} (key ${entry.keyId}) does not verify: ` +
          `forged, or not made over policy version ${signed.policy.policyVersion} as it stands`,
      );
    }
  }
  return seen;
}

/** The founding version, once every nation it lists has signed it with one of its keys. */
export function verifyFounding(signed: SignedPolicy): CoalitionPolicy {
  const policy = signed.policy;
  if (policy.policyVersion !== 1 || policy.previous !== null) {
    throw new PolicyError(
      `a founding policy is version 1 with no previous; this is version ${policy.policyVersion}`,
    );
  }
  const signers = signingNations(policy, signed);
  const missing = [...policy.nations.keys()].filter((code) => !signers.has(code)).sort();
  if (missing.length > 0) {
    throw new PolicyError(
      `a founding policy must be signed by every nation it lists; missing: ${missing.join(", ")}`,
    );
  }
  return policy;
}

/** Whether `policy` may follow `previous`, signatures aside (PolicyError otherwise). */
export function checkSuccessor(previous: CoalitionPolicy, policy: CoalitionPolicy): void {
  if (policy.coalition !== previous.coalition) {
    throw new PolicyError(
      `policy of coalition ${repr(policy.coalition)} cannot follow one of ${repr(previous.coalition)}`,
    );
  }
  if (policy.policyVersion !== previous.policyVersion + 1) {
    throw new PolicyError(
      `policy version ${policy.policyVersion} does not follow version ` +
        `${previous.policyVersion}: versions increase by one`,
    );
  }
  if (policy.previous === null || !equalBytes(policy.previous, previous.digest)) {
    throw new PolicyError(
      `policy version ${policy.policyVersion} names a previous version other than the ` +
        `version ${previous.policyVersion} given (${previous.digestB64u})`,
    );
  }
}

/** `signed`'s policy, once it follows `previous` and enough of its nations signed it. */
export function verifySuccessor(previous: CoalitionPolicy, signed: SignedPolicy): CoalitionPolicy {
  const policy = signed.policy;
  checkSuccessor(previous, policy);
  const signers = signingNations(previous, signed);
  if (signers.size < previous.threshold) {
    const named = [...signers].sort().join(", ") || "none";
    throw new PolicyError(
      `policy version ${policy.policyVersion} is signed by ${signers.size} nation(s) of ` +
        `version ${previous.policyVersion} (${named}); its threshold is ${previous.threshold}`,
    );
  }
  return policy;
}

/**
 * The last version of `chain`, each checked against the one before: from the founding version,
 * or, with `trusted` (a version already held), from the version after it.
 */
export function verifyChain(
  chain: readonly SignedPolicy[],
  trusted: CoalitionPolicy | null = null,
): CoalitionPolicy {
  if (chain.length === 0) {
    if (trusted === null) throw new PolicyError("an empty chain holds no policy");
    return trusted;
  }
  let current = trusted;
  for (const signed of chain) {
    current = current === null ? verifyFounding(signed) : verifySuccessor(current, signed);
  }
  return current!;
}
