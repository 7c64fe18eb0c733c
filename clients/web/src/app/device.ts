/**
 * This browser as a device, as clients/sdk enrols and signs in a device (clients/sdk/_session.py
 * `enroll` and `connect`, _client.py `enrol` and `login`): keys made here, registered with a
 * one-time code, kept sealed under the user's passphrase in the CLI key store's format
 * (protocol/secrets.ts, purpose "device-keys"), the nations' enrolment authority keys pinned
 * at enrolment, and, once the device is signed in, its own certificate verified against them.
 * The server's audit key is pinned at enrolment too (`GET /v1/audit/key`, as `attache enroll`
 * pins it), with the largest checkpoint of the key directory verified since (app/transparency.ts);
 * a device enrolled before the page checked the key directory pins it at its next sign-in,
 * and the page says so. The witnesses the user requires, if any (app/witnesses.ts), are given at
 * enrolment and kept beside the audit key. Nothing here touches the DOM or IndexedDB (the store is passed in),
 * so Node's tests run it.
 */
import { segment, type Api } from "./api.js";
import {
  DeviceTransparency,
  fetchAuditKey,
  type PinStore,
  type TransparencyPin,
} from "./transparency.js";
import { PolicyLog } from "./policy_log.js";
import { WitnessError, WitnessRequirement } from "./witnesses.js";
import {
  holdPolicy,
  NO_POLICY,
  pinPolicy,
  policyAuthorities,
  type HeldPolicy,
  type PolicyPin,
} from "./coalition.js";
import {
  CertificateError,
  DeviceKeys,
  DevicePublicKeys,
  b64uDecode,
  b64uDecodeSized,
  b64uEncode,
  codeDigest,
  equalBytes,
  authorityKeyId,
  loginPayload,
  openSecret,
  sealSecret,
  signLogin,
  signRegistration,
  verifyCertificate,
  type AuthorityKeys,
  type CertificateBody,
  type CoalitionPolicy,
  type KdfParams,
} from "../protocol/index.js";

/** The sealed secret's purpose: the CLI key store's device.key holds the same. */
export const DEVICE_PURPOSE = "device-keys";

/** What the CLI keeps in profile.json (not secret). */
export interface Profile {
  server: string;
  username: string;
  user_id: string;
  device_id: string;
  device_name: string;
}

/** The one record this browser keeps (IndexedDB): nothing in it is an unsealed secret. */
export interface StoredDevice {
  version: 1;
  profile: Profile;
  /** The device's private keys, sealed under the passphrase (the sealed-secret blob). */
  sealedKeys: Uint8Array;
  /**
   * Nation -> enrolment authority public key (b64u), pinned at enrolment from the server's
   * list of nations (trust on first use); empty when a coalition policy was pinned instead.
   */
  pins: Record<string, string>;
  fingerprint: string;
  /**
   * The coalition policy pinned (app/coalition.ts): its founding digest and the latest version
   * verified here; absent or null while the server publishes none. Once pinned, its nations'
   * keys are the only authority keys trusted.
   */
  policy?: PolicyPin | null;
  /**
   * The server's audit (checkpoint) key, pinned at enrolment, and the largest key directory
   * checkpoint verified here (size, b64u root), which never goes back; absent for a device
   * enrolled before the page checked the key directory (pinned at its next sign-in).
   */
  transparency?: TransparencyPin | null;
}

export interface DeviceStore {
  load(): Promise<StoredDevice | null>;
  /** Keep a new device; refuses when one is kept already. */
  save(record: StoredDevice): Promise<void>;
  /** Replace the kept device's record (the same device: its policy pin moved on). */
  update(record: StoredDevice): Promise<void>;
  /**
   * Change the kept record in one step, read and written in one transaction so that another
   * tab cannot write between the two (`change` returns null to leave it); without it, `load`
   * then `update`.
   */
  change?(change: (record: StoredDevice) => StoredDevice | null): Promise<void>;
}

/** The device as the server shows it (DeviceRead). */
export interface DeviceRead {
  id: string;
  user_id: string;
  username: string;
  nationality: string | null;
  name: string;
  status: string;
  signing_key: string;
  encryption_key: string;
  fingerprint: string;
  certificate: unknown;
}

export interface UserRead {
  id: string;
  username: string;
  display_name: string;
  nationality: string | null;
  clearance: string | null;
  roles: string[];
}

interface NationRead {
  code: string;
  name: string;
  authority_key: string;
}

export class DeviceError extends Error {}

export interface Enrolled {
  record: StoredDevice;
  device: DeviceRead;
  /** Nation -> authority key id(s), as `attache enroll` lists them. */
  pinned: Record<string, string>;
  /** The coalition policy pinned; null when the server publishes none (NO_POLICY). */
  policy: HeldPolicy | null;
  /** The server's audit key pinned (a note verifier key), as `attache enroll` prints it. */
  auditKey: string;
  /** The witnesses required from now on (null: none). */
  witnesses: WitnessRequirement | null;
}

const NATION = /^[A-Z]{3}$/;

/** Each nation's authority key, checked: a nation code and 32 bytes. */
function pinsFrom(nations: unknown): Record<string, string> {
  if (!Array.isArray(nations)) throw new DeviceError("the server's list of nations is malformed");
  const pins: Record<string, string> = {};
  for (const nation of nations as NationRead[]) {
    if (typeof nation?.code !== "string" || !NATION.test(nation.code) || nation.code in pins) {
      throw new DeviceError("the server's list of nations is malformed");
    }
    try {
      b64uDecodeSized(nation.authority_key, 32, "authority key");
    } catch {
      throw new DeviceError(`the server's authority key for ${nation.code} is malformed`);
    }
    pins[nation.code] = nation.authority_key;
  }
  return pins;
}

export function pinnedKeys(record: StoredDevice): Map<string, Uint8Array> {
  return new Map(Object.entries(record.pins).map(([nation, key]) => [nation, b64uDecode(key)]));
}

/** The authority keys trusted: the policy's when one is held, else the pins. */
export function authoritiesOf(record: StoredDevice, policy: HeldPolicy | null): AuthorityKeys {
  return policy !== null ? policyAuthorities(policy.policy) : pinnedKeys(record);
}

/** Nation -> its authority key id(s): the policy's when one is held, else the pins'. */
export function pinnedIds(
  record: StoredDevice,
  policy: CoalitionPolicy | null,
): Record<string, string> {
  if (policy !== null) {
    return Object.fromEntries(
      [...policy.nations].map(([code, nation]) => [
        code,
        [...nation.authorityKeys.keys()].join(", "),
      ]),
    );
  }
  return Object.fromEntries(
    Object.entries(record.pins).map(([nation, key]) => [nation, authorityKeyId(b64uDecode(key))]),
  );
}

/**
 * Create this browser's device keys, register them with a one-time code and pin the coalition
 * policy (verified from its founding version, which must be `expectFounding` when the security
 * officer gave its digest), as `attache enroll` does; when the server publishes none, pin the
 * nations' authority keys it lists instead (trusted on first use). Nothing is made or sent
 * before the policy is checked. The keys are sealed before they are registered, so a
 * registered device always has its keys kept. The device starts pending until its nation's
 * security officer certifies it.
 */
export async function enrol(
  api: Api,
  store: DeviceStore,
  fields: {
    username: string;
    code: string;
    name: string;
    passphrase: string;
    kdf?: KdfParams;
    expectFounding?: Uint8Array | null;
    /** Witnesses whose cosignatures every checkpoint must carry from now on (checked). */
    witnesses?: WitnessRequirement | null;
  },
): Promise<Enrolled> {
  if ((await store.load()) !== null) {
    throw new DeviceError("this browser already holds a device; unlock it instead");
  }
  if (!fields.passphrase)
    throw new DeviceError("choose a passphrase to protect this device's keys");
  const witnesses = fields.witnesses ?? null;
  // The log's key, checked to be one before anything is made or registered; every policy
  // version from the founding one is proven in its log before it is pinned (§18.5, §18.6).
  const auditKey = await fetchAuditKey(api);
  const log = new PolicyLog(api, auditKey);
  const policy = await pinPolicy(api, fields.expectFounding ?? null, log);
  const pins = policy !== null ? {} : pinsFrom(await api.request<unknown>("GET", "/v1/nations"));
  const keys = await DeviceKeys.generate();
  const sealedKeys = await sealSecret(fields.passphrase, keys.toPrivateBytes(), {
    purpose: DEVICE_PURPOSE,
    ...(fields.kdf ? { params: fields.kdf } : {}),
  });
  const proof = signRegistration(keys, {
    user: fields.username,
    nonce: b64uEncode(codeDigest(fields.code)),
    server: api.origin,
  });
  const device = await api.request<DeviceRead>("POST", "/v1/devices", {
    username: fields.username,
    code: fields.code,
    name: fields.name,
    ...keys.publicKeys.toJson(),
    proof: b64uEncode(proof),
  });
  const fingerprint = keys.publicKeys.fingerprint();
  // The server answers with what it registered: it must be these keys, for this user.
  const own = keys.publicKeys.toJson();
  if (
    device.signing_key !== own.signing_key ||
    device.encryption_key !== own.encryption_key ||
    device.fingerprint !== fingerprint ||
    device.username !== fields.username
  ) {
    throw new DeviceError("the server registered other keys than this browser's; do not use it");
  }
  const record: StoredDevice = {
    version: 1,
    profile: {
      server: api.origin,
      username: fields.username,
      user_id: device.user_id,
      device_id: device.id,
      device_name: fields.name,
    },
    sealedKeys,
    pins,
    fingerprint,
    policy: policy?.pin ?? null,
    transparency: {
      vkey: auditKey,
      // The policy proofs above were checked without the witnesses (their requirement is kept
      // only now, as the SDK's): a home that requires them keeps only checkpoints they
      // cosigned, so their checkpoint is kept only when none is required.
      checkpoint:
        log.held === null || witnesses !== null
          ? null
          : { size: log.held.size, root: b64uEncode(log.held.root) },
      ...(witnesses === null ? {} : { witnesses: witnesses.toPin() }),
    },
  };
  await store.save(record);
  return {
    record,
    device,
    pinned: pinnedIds(record, policy?.policy ?? null),
    policy,
    auditKey,
    witnesses,
  };
}

/**
 * The certificate the server holds for this device, verified against the pinned authority
 * keys: it must vouch for exactly this device id, user and these keys. CertificateError
 * otherwise, saying why.
 */
export function checkOwnCertificate(
  certificate: unknown,
  record: StoredDevice,
  publicKeys: DevicePublicKeys,
  now: Date,
  authorities: AuthorityKeys = pinnedKeys(record),
): CertificateBody {
  if (certificate === null || certificate === undefined) {
    throw new CertificateError("this device has no certificate yet");
  }
  const body = verifyCertificate(certificate, authorities, { now });
  const { profile } = record;
  if (
    body.deviceId !== profile.device_id ||
    body.userId !== profile.user_id ||
    body.username !== profile.username ||
    !equalBytes(body.deviceKeys.signingKey, publicKeys.signingKey) ||
    !equalBytes(body.deviceKeys.encryptionKey, publicKeys.encryptionKey)
  ) {
    throw new CertificateError("the certificate is for another device, user or keys");
  }
  return body;
}

export interface Session {
  keys: DeviceKeys;
  user: UserRead;
  certificate: CertificateBody;
  expiresAt: string;
  /** The coalition policy held (null: the server publishes none, NO_POLICY applies). */
  policy: HeldPolicy | null;
  /** The record as kept after sign-in (its policy pin moved on when the policy did). */
  record: StoredDevice;
  /** The authority keys certificates are verified against. */
  authorities: AuthorityKeys;
  /** What the page should say about the policy (a warning, or a version followed). */
  policyNote: string | null;
  /** The key directory as this browser checks it before sealing (PROTOCOL.md §19.4). */
  transparency: DeviceTransparency;
  /** A warning when the audit key was pinned now, on first use; else null. */
  transparencyNote: string | null;
}

/** The pin kept in the device record of `store`. */
export function pinStore(store: DeviceStore): PinStore {
  return {
    async load() {
      return (await store.load())?.transparency ?? null;
    },
    async change(change) {
      const apply = (record: StoredDevice): StoredDevice | null => {
        const pin = change(record.transparency ?? null);
        return pin === null ? null : { ...record, transparency: pin };
      };
      if (store.change) return store.change(apply);
      const record = await store.load();
      if (record === null) throw new DeviceError("this browser holds no device any more");
      const next = apply(record);
      if (next !== null) await store.update(next);
    },
  };
}

/**
 * Keep `pin` as the device record's policy pin, changing only it (in one transaction where the
 * store can: the checkpoint a proof kept meanwhile stays); the record as kept now.
 */
async function keepPolicyPin(store: DeviceStore, pin: PolicyPin): Promise<StoredDevice> {
  return changeRecord(store, (record) => ({ ...record, policy: pin }));
}

/**
 * Change the device record of `store` with `apply` (in one transaction where the store can,
 * so that what others keep in it meanwhile stays); the record as kept now.
 */
async function changeRecord(
  store: DeviceStore,
  apply: (record: StoredDevice) => StoredDevice,
): Promise<StoredDevice> {
  if (store.change) {
    await store.change(apply);
  } else {
    const record = await store.load();
    if (record === null) throw new DeviceError("this browser holds no device any more");
    await store.update(apply(record));
  }
  const record = await store.load();
  if (record === null) throw new DeviceError("this browser holds no device any more");
  return record;
}

/**
 * The key directory checker of the audit key pinned in `record`; a device enrolled before
 * the page checked the key directory has none, and pins the server's now, on first use (as
 * the SDK does, logging a warning): the note says so, for the page to show.
 */
export async function holdAuditKey(
  api: Api,
  record: StoredDevice,
  store: DeviceStore,
): Promise<{ record: StoredDevice; transparency: DeviceTransparency; note: string | null }> {
  let note: string | null = null;
  if (!record.transparency) {
    const vkey = await fetchAuditKey(api);
    record = { ...record, transparency: { vkey, checkpoint: null } };
    await store.update(record);
    note =
      `Pinned the server's audit key ${vkey} on first use: this device was enrolled before ` +
      "the page checked the key directory. Compare it with the operator's (attache-server " +
      "audit key).";
  }
  const transparency = await DeviceTransparency.fromStore(api, pinStore(store));
  return { record, transparency, note };
}

/**
 * Require `required` from now on (null: no witness), in place of what the record requires, as
 * the SDK's `Keystore.require_witnesses`: a change that would accept a checkpoint the current
 * requirement refuses (a witness dropped, a smaller share of them, an older cosignature
 * counting) is refused unless `loosen`, which the user gives on purpose (the page's "Loosen
 * anyway", the CLI's --force). Read, checked and written in one transaction where the store
 * can; the record as kept now. Only the user calls this, never a server's answer.
 */
export async function requireWitnesses(
  store: DeviceStore,
  required: WitnessRequirement | null,
  { loosen = false }: { loosen?: boolean } = {},
): Promise<StoredDevice> {
  const apply = (record: StoredDevice): StoredDevice => {
    const pin = record.transparency;
    if (!pin) {
      throw new WitnessError(
        "this device has no audit key pinned yet: sign in once, then require witnesses",
      );
    }
    const current = WitnessRequirement.fromPin(pin.witnesses);
    if (current !== null && !loosen) {
      const looser = current.loosenedBy(required);
      if (looser.length > 0) {
        throw new WitnessError(
          `that loosens the witnesses required here (${looser.join("; ")}): say so with ` +
            '"Loosen anyway"',
        );
      }
    }
    const { witnesses: _, ...rest } = pin;
    const next = required === null ? rest : { ...rest, witnesses: required.toPin() };
    return { ...record, transparency: next };
  };
  return changeRecord(store, apply);
}

/** Open the sealed keys (SecretError on a wrong passphrase); nothing is sent before this. */
export async function openKeys(record: StoredDevice, passphrase: string): Promise<DeviceKeys> {
  const keys = await DeviceKeys.fromPrivateBytes(
    await openSecret(passphrase, record.sealedKeys, { purpose: DEVICE_PURPOSE }),
  );
  if (keys.publicKeys.fingerprint() !== record.fingerprint) {
    throw new DeviceError("the keys kept in this browser are not the ones it enrolled");
  }
  return keys;
}

/**
 * Sign in with the device key (challenge-response; the proof names the server, so it cannot
 * be relayed elsewhere), hold the server to the coalition policy pinned (following a later
 * version only through valid successors, and keeping it in `store`; PolicyRefused otherwise),
 * then verify the device's own certificate against the policy's keys (or the pinned keys when
 * the server publishes no policy). A policy refused or a certificate that does not verify ends
 * the session at once: the page then refuses to go on.
 */
export async function signIn(
  api: Api,
  record: StoredDevice,
  keys: DeviceKeys,
  store: DeviceStore,
): Promise<Session> {
  const { profile } = record;
  const challenge = await api.request<{ challenge_id: string; challenge: string; server: string }>(
    "POST",
    "/v1/auth/challenges",
    { device_id: profile.device_id },
  );
  if (challenge.server.replace(/\/+$/, "") !== profile.server) {
    throw new DeviceError(
      `the server calls itself ${challenge.server}, not ${profile.server}, where this device ` +
        "enrolled; open the page at the address the device enrolled with",
    );
  }
  const payload = loginPayload({
    device_id: profile.device_id,
    challenge: challenge.challenge,
    server_origin: profile.server,
  });
  const session = await api.request<{ token: string; expires_at: string; user: UserRead }>(
    "POST",
    "/v1/auth/sessions",
    { challenge_id: challenge.challenge_id, signature: b64uEncode(signLogin(keys, payload)) },
  );
  api.setToken(session.token);
  try {
    // The audit key first: each policy version followed is proven in its log (§18.6).
    const held = await holdAuditKey(api, record, store);
    record = held.record;
    const log = await PolicyLog.fromStore(api, pinStore(store));
    const policy = await holdPolicy(api, record.policy ?? null, log);
    let policyNote: string | null = policy === null ? NO_POLICY : (policy.logNote ?? null);
    if (policy !== null && policy.changed) {
      record = await keepPolicyPin(store, policy.pin);
    }
    if (policy !== null && (policy.pinnedNow || policy.previousVersion !== null)) {
      policyNote = policy.pinnedNow
        ? `Pinned coalition policy version ${policy.policy.policyVersion} (founding digest ` +
          `${policy.pin.founding}) on first use, its publication proven in the audit log.`
        : `The coalition policy moved from version ${policy.previousVersion} to version ` +
          `${policy.policy.policyVersion}, signed by enough of the nations of each version ` +
          "before, each version's publication proven in the audit log.";
    }
    const authorities = authoritiesOf(record, policy);
    const device = await api.request<DeviceRead>(
      "GET",
      `/v1/devices/${segment(profile.device_id)}`,
    );
    const certificate = checkOwnCertificate(
      device.certificate,
      record,
      keys.publicKeys,
      new Date(),
      authorities,
    );
    // Who the server says this is, with the clearance as a banner (as `attache whoami`).
    const user = await api.request<UserRead>("GET", "/v1/me");
    return {
      keys,
      user,
      certificate,
      expiresAt: session.expires_at,
      policy,
      record,
      authorities,
      policyNote,
      transparency: held.transparency,
      transparencyNote: held.note,
    };
  } catch (error) {
    await signOut(api);
    throw error;
  }
}

/** End the session on the server (best effort) and forget the token. */
export async function signOut(api: Api): Promise<void> {
  try {
    if (api.signedIn) await api.request("DELETE", "/v1/auth/sessions/current");
  } catch {
    // Best effort: the token is forgotten here whatever the server says, and expires there.
  } finally {
    api.setToken(null);
  }
}
