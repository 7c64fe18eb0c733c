/**
 * This browser as a device, as clients/sdk enrols and signs in a device (clients/sdk/_session.py
 * `enroll` and `connect`, _client.py `enrol` and `login`): keys made here, registered with a
 * one-time code, kept sealed under the user's passphrase in the CLI key store's format
 * (protocol/secrets.ts, purpose "device-keys"), the nations' enrolment authority keys pinned
 * at enrolment, and, once the device is signed in, its own certificate verified against them.
 * Nothing here touches the DOM or IndexedDB (the store is passed in), so Node's tests run it.
 */
import type { Api } from "./api.js";
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
  type CertificateBody,
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
  /** Nation -> enrolment authority public key (b64u), pinned at enrolment. */
  pins: Record<string, string>;
  fingerprint: string;
}

export interface DeviceStore {
  load(): Promise<StoredDevice | null>;
  save(record: StoredDevice): Promise<void>;
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
  /** Nation -> authority key id, as `attache enroll` lists them. */
  pinned: Record<string, string>;
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

/**
 * Create this browser's device keys, register them with a one-time code and pin the nations'
 * authority keys (all those the server lists, trusted on first use, as `attache enroll`
 * does). The keys are sealed before they are registered, so a registered device always has
 * its keys kept. The device starts pending until its nation's security officer certifies it.
 */
export async function enrol(
  api: Api,
  store: DeviceStore,
  fields: { username: string; code: string; name: string; passphrase: string; kdf?: KdfParams },
): Promise<Enrolled> {
  if ((await store.load()) !== null) {
    throw new DeviceError("this browser already holds a device; unlock it instead");
  }
  if (!fields.passphrase)
    throw new DeviceError("choose a passphrase to protect this device's keys");
  const pins = pinsFrom(await api.request<unknown>("GET", "/v1/nations"));
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
  };
  await store.save(record);
  const pinned = Object.fromEntries(
    Object.entries(pins).map(([nation, key]) => [nation, authorityKeyId(b64uDecode(key))]),
  );
  return { record, device, pinned };
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
): CertificateBody {
  if (certificate === null || certificate === undefined) {
    throw new CertificateError("this device has no certificate yet");
  }
  const body = verifyCertificate(certificate, pinnedKeys(record), { now });
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
 * be relayed elsewhere), then verify the device's own certificate against the pinned keys.
 * A certificate that does not verify ends the session at once: the page then refuses to go on.
 */
export async function signIn(api: Api, record: StoredDevice, keys: DeviceKeys): Promise<Session> {
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
    const device = await api.request<DeviceRead>(
      "GET",
      `/v1/devices/${encodeURIComponent(profile.device_id)}`,
    );
    const certificate = checkOwnCertificate(
      device.certificate,
      record,
      keys.publicKeys,
      new Date(),
    );
    // Who the server says this is, with the clearance as a banner (as `attache whoami`).
    const user = await api.request<UserRead>("GET", "/v1/me");
    return { keys, user, certificate, expiresAt: session.expires_at };
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
