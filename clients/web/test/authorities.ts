/**
 * Nations' enrolment authorities for tests that play the server: a fresh Ed25519 key per
 * nation each run, the pins a page holds for them, and device certificates they sign as a
 * nation's security officer would (`attache device certify`), cleared NATO SECRET and valid for
 * the hour around now.
 */

import { b64uEncode } from "../src/protocol/bytes.js";
import { CTX_DEVICE_CERTIFICATE, signingInput } from "../src/protocol/canonical.js";
import { DeviceKeys, authorityKeyId, formatUtcTime } from "../src/protocol/keys.js";
import { ed25519PublicKey, ed25519Sign, randomBytes } from "../src/protocol/primitives.js";

export class Authorities {
  readonly seeds: Record<string, Uint8Array>;
  /** Each nation's authority public key, as a page pins them at enrolment. */
  readonly pins: Map<string, Uint8Array>;

  constructor(nations: readonly string[]) {
    this.seeds = Object.fromEntries(nations.map((nation) => [nation, randomBytes(32)]));
    this.pins = new Map(
      Object.entries(this.seeds).map(([nation, seed]) => [nation, ed25519PublicKey(seed)]),
    );
  }

  /** The certificate of `user`'s device `device-<user>` (of `nation`) with `keys`. */
  certificate(keys: DeviceKeys, user: string, nation: string) {
    const seed = this.seeds[nation];
    if (seed === undefined) throw new Error(`no authority for ${nation} in this test`);
    const now = Date.now();
    const body = {
      version: 1,
      serial: b64uEncode(randomBytes(16)),
      device_id: `device-${user}`,
      user_id: user,
      username: user,
      nation,
      nationality: nation,
      clearance: { categories: {}, level: "SECRET", policy: "NATO" },
      ...keys.publicKeys.toJson(),
      issued_at: formatUtcTime(new Date(now - 60_000)),
      expires_at: formatUtcTime(new Date(now + 3_600_000)),
      authority_key_id: authorityKeyId(ed25519PublicKey(seed)),
    };
    const signature = ed25519Sign(seed, signingInput(CTX_DEVICE_CERTIFICATE, body));
    return { body, signature: b64uEncode(signature) };
  }
}
