/**
 * Key transparency in the page, as clients/sdk/transparency.py `DeviceTransparency`: before
 * the page seals to a device whose certificate verified, the key directory must show it
 * registered, active and with the certified keys (`GET /v1/devices/{id}/transparency?old=S`,
 * checked by protocol/transparency.ts, PROTOCOL.md §19.4), at a checkpoint of the audit key
 * pinned at enrolment that extends the largest one this browser verified.
 *
 * The audit key and that checkpoint (size, root) are kept in the device record (IndexedDB,
 * `StoredDevice.transparency`), the checkpoint read again before each bundle, so that each
 * tab, and each sign-in, is held to the largest any of them verified, and never goes back.
 *
 * A result is kept per device and checkpoint: a device checked at the checkpoint held is not
 * fetched again until `forget` (called when a roster is fetched afresh: a revocation changes
 * it), so sending under a roster that did not change costs no request. A device the directory
 * does not show active *yet* (404, 503, or pending: certified after the latest checkpoint) is
 * asked for again, backing off from 0.1 s to 1 s, for up to `wait` milliseconds per roster
 * check (10 s, the SDK's), then refused.
 *
 * When the user required witnesses (app/witnesses.ts, kept in the same pin), each bundle is
 * asked for at the latest checkpoint they cosigned (`witness=...&min_witnesses=N`) and its
 * checkpoint must carry their valid cosignatures before anything in it is believed, as the
 * SDK's `DeviceTransparency._check_cosignatures`: CosignaturesRefused (a CheckpointRefused, so
 * nothing is sealed to anyone) names the witness missing, forged or too old. The requirement
 * is read again with the checkpoint before each roster check. Nothing here touches the DOM,
 * so Node's tests run it.
 */
import { sha256 } from "@noble/hashes/sha2.js";

import { ApiError, segment, type Api } from "./api.js";
import {
  WitnessError,
  WitnessRequirement,
  noteOf,
  nowSeconds,
  type WitnessPin,
} from "./witnesses.js";
import {
  CheckpointError,
  NoteVerifier,
  b64uDecode,
  b64uEncode,
  equalBytes,
  type CertificateBody,
} from "../protocol/index.js";
import {
  CheckpointRefused,
  NotLogged,
  TransparencyError,
  verifyDevice,
  type HeldCheckpoint,
  type VerifiedDevice,
} from "../protocol/transparency.js";

export { CheckpointRefused, NotLogged, TransparencyError };

/** Milliseconds to keep asking, per roster check, for devices the directory does not show yet. */
export const NOT_LOGGED_WAIT = 10_000;
const FIRST_DELAY = 100;
const MAX_DELAY = 1_000;

/**
 * What the device record keeps: the audit key pinned, the largest checkpoint verified and the
 * witnesses required (absent or null: none).
 */
export interface TransparencyPin {
  vkey: string;
  checkpoint: { size: number; root: string } | null;
  witnesses?: WitnessPin | null;
}

/**
 * The checkpoint lacks the witnesses' cosignatures this device requires: one missing, forged
 * or too old, named in the message. As for a fork, nothing is sealed to anyone.
 */
export class CosignaturesRefused extends CheckpointRefused {}

/** The witnesses a pin requires (CheckpointRefused when they are damaged). */
export function witnessesOf(pin: TransparencyPin | null): WitnessRequirement | null {
  try {
    return WitnessRequirement.fromPin(pin?.witnesses);
  } catch (error) {
    if (error instanceof WitnessError) throw new CheckpointRefused(error.message);
    throw error;
  }
}

/** Where the pin is kept (the device record in IndexedDB; memory in Node's tests). */
export interface PinStore {
  /** The pin as kept now (read again each time: another tab may have moved it on). */
  load(): Promise<TransparencyPin | null>;
  /**
   * Keep `change(pin)` in place of the pin kept, read and written in one step (so that another
   * tab cannot write between the two); `change` returns null to leave it as it is.
   */
  change(change: (pin: TransparencyPin | null) => TransparencyPin | null): Promise<void>;
}

/**
 * The pin with checkpoint (`size`, `root`), which the caller verified extends the one held,
 * in place of `pin`: null (leave it) when the one kept is larger (another tab went further;
 * the next check adopts it), CheckpointRefused when it has the same size and another root.
 */
export function extendPin(
  pin: TransparencyPin | null,
  vkey: string,
  size: number,
  root: Uint8Array,
): TransparencyPin | null {
  const kept = heldOf(pin);
  if (kept !== null && kept.size > size) return null;
  if (kept !== null && kept.size === size) {
    if (!equalBytes(kept.root, root)) {
      throw new CheckpointRefused(
        `the checkpoint of size ${size} kept in this browser has another root than the one ` +
          "verified here: the log forked",
      );
    }
    return null;
  }
  // The witnesses kept stay as they are: only the user changes them.
  return { ...pin, vkey: pin?.vkey ?? vkey, checkpoint: { size, root: b64uEncode(root) } };
}

/** The server's audit key (`GET /v1/audit/key`, public), checked to be a note verifier key. */
export async function fetchAuditKey(api: Api): Promise<string> {
  const answer = await api.request<unknown>("GET", "/v1/audit/key");
  const vkey =
    typeof answer === "object" && answer !== null ? (answer as { vkey?: unknown }).vkey : null;
  if (typeof vkey !== "string") {
    throw new TransparencyError("the server's audit key answer holds no key");
  }
  try {
    NoteVerifier.fromVkey(vkey);
  } catch (error) {
    if (error instanceof CheckpointError) {
      throw new TransparencyError(`the server's audit key is not a log's key: ${error.message}`);
    }
    throw error;
  }
  return vkey;
}

/** The checkpoint a pin keeps (CheckpointRefused when it is damaged). */
export function heldOf(pin: TransparencyPin | null): HeldCheckpoint | null {
  if (pin?.checkpoint == null) return null;
  const { size, root } = pin.checkpoint;
  let bytes: Uint8Array;
  try {
    bytes = b64uDecode(root);
  } catch {
    bytes = new Uint8Array(0);
  }
  if (!Number.isSafeInteger(size) || size < 0 || bytes.length !== 32) {
    throw new CheckpointRefused("the checkpoint kept in this browser is damaged");
  }
  return { size, root: bytes };
}

/** Time as the waiting for devices not logged yet reads it (a fake one in Node's tests). */
export interface Clock {
  now(): number;
  sleep(milliseconds: number): Promise<void>;
}

const REAL_CLOCK: Clock = {
  now: () => Date.now(),
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
};

export class DeviceTransparency {
  readonly logKey: NoteVerifier;
  held: HeldCheckpoint | null;
  /** The witnesses whose cosignatures a checkpoint must carry (null: none required). */
  witnesses: WitnessRequirement | null;
  /** Milliseconds to keep asking for devices not logged yet, per roster check. */
  wait = NOT_LOGGED_WAIT;
  #deadline: number | null = null;
  readonly #verified = new Map<string, VerifiedDevice>();

  constructor(
    private readonly api: Api,
    readonly vkey: string,
    held: HeldCheckpoint | null,
    private readonly store: PinStore | null = null,
    private readonly clock: Clock = REAL_CLOCK,
    witnesses: WitnessRequirement | null = null,
  ) {
    try {
      this.logKey = NoteVerifier.fromVkey(vkey);
    } catch (error) {
      throw new TransparencyError(`the audit key ${vkey} is not a log's key: ${String(error)}`);
    }
    this.held = held;
    this.witnesses = witnesses;
  }

  /** The audit key and checkpoint kept in `store`. */
  static async fromStore(api: Api, store: PinStore, clock?: Clock): Promise<DeviceTransparency> {
    const pin = await store.load();
    if (pin === null) throw new TransparencyError("no audit key is pinned in this browser");
    return new DeviceTransparency(api, pin.vkey, heldOf(pin), store, clock, witnessesOf(pin));
  }

  /**
   * The device a verified certificate names, shown registered, active and with the
   * certificate's keys at a checkpoint that extends the one held; TransparencyError otherwise,
   * naming what was wrong (CheckpointRefused when the checkpoint itself is). A device not
   * logged yet (NotLogged) is asked for again until this roster check's `wait` is spent.
   */
  async check(body: CertificateBody): Promise<VerifiedDevice> {
    await this.#adoptKept();
    const kept = this.#verified.get(body.deviceId);
    if (kept !== undefined && this.held !== null && kept.size === this.held.size) {
      if (matches(kept, body)) return kept;
    }
    let delay = FIRST_DELAY;
    for (;;) {
      try {
        return await this.#checkOnce(body);
      } catch (error) {
        if (!(error instanceof NotLogged)) throw error;
        const now = this.clock.now();
        this.#deadline ??= now + this.wait;
        if (now >= this.#deadline) throw error;
        await this.clock.sleep(Math.min(delay, this.#deadline - now));
        delay = Math.min(delay * 2, MAX_DELAY);
      }
    }
  }

  /** Check every device again, at the latest checkpoint, from the next `check` on. */
  forget(): void {
    this.#verified.clear();
    this.#deadline = null;
  }

  async #checkOnce(body: CertificateBody): Promise<VerifiedDevice> {
    const old = this.held?.size ?? 0;
    // The latest checkpoint is seldom cosigned yet (witnesses run on their own schedule): ask
    // for the latest that the witnesses required here did cosign.
    const witnesses = this.witnesses === null ? "" : `&${this.witnesses.query()}`;
    let bundle: unknown;
    try {
      bundle = await this.api.request<unknown>(
        "GET",
        `/v1/devices/${segment(body.deviceId)}/transparency?old=${old}${witnesses}`,
      );
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) {
        throw new NotLogged(
          `device ${body.deviceId} is not in the key directory (the server says: ` +
            `${error.message})`,
        );
      }
      if (error instanceof ApiError && error.status === 503) {
        throw new NotLogged(`the key directory is unavailable: ${error.message}`);
      }
      throw error;
    }
    this.#checkCosignatures(bundle);
    const verified = verifyDevice(bundle, {
      logKey: this.logKey,
      device: {
        deviceId: body.deviceId,
        userId: body.userId,
        signingKey: body.deviceKeys.signingKey,
        encryptionKey: body.deviceKeys.encryptionKey,
      },
      held: this.held,
    });
    await this.#hold(verified);
    this.#verified.set(body.deviceId, verified);
    return verified;
  }

  /**
   * The bundle's checkpoint carries the cosignatures required here, and is not older than the
   * one held; CosignaturesRefused naming the witnesses otherwise. Run before anything in the
   * bundle is believed, so that no device is accepted, and no checkpoint kept, on a checkpoint
   * the witnesses did not vouch for.
   */
  #checkCosignatures(bundle: unknown): void {
    const required = this.witnesses;
    if (required === null) return;
    const note = noteOf(bundle);
    if (note === null) {
      throw new CosignaturesRefused("the key directory's answer holds no checkpoint note");
    }
    let found: { size: number; problems: string[] };
    try {
      found = required.check(note, nowSeconds());
    } catch (error) {
      if (!(error instanceof CheckpointError)) throw error;
      throw new CosignaturesRefused(`the checkpoint note is malformed: ${error.message}`);
    }
    if (found.problems.length > 0) {
      throw new CosignaturesRefused(
        `the checkpoint of size ${found.size} lacks the witnesses' cosignatures this ` +
          `device requires: ${found.problems.join("; ")}`,
      );
    }
    if (this.held !== null && found.size < this.held.size) {
      throw new CosignaturesRefused(
        `the latest checkpoint the witnesses required here cosigned, of size ${found.size}, ` +
          `is older than the one of size ${this.held.size} seen before: an old key directory ` +
          "served as current, or the witnesses have not cosigned that far yet (ask again " +
          "once they have run)",
      );
    }
  }

  /**
   * Another tab (or an earlier sign-in) may have verified a later checkpoint: be held to it;
   * and the witnesses required may have changed: be held to those too.
   */
  async #adoptKept(): Promise<void> {
    if (this.store === null) return;
    const required = witnessesOf(await this.store.load());
    if (!(required === null ? this.witnesses === null : required.equals(this.witnesses))) {
      this.witnesses = required;
      this.#verified.clear(); // checked under another requirement
    }
    this.held = await adoptKept(this.store, this.held);
  }

  async #hold(verified: VerifiedDevice): Promise<void> {
    const held = this.held;
    if (held !== null && held.size === verified.size && equalBytes(held.root, verified.root)) {
      return;
    }
    this.held = { size: verified.size, root: verified.root };
    await this.store?.change((pin) => extendPin(pin, this.vkey, verified.size, verified.root));
  }
}

/**
 * The checkpoint to be held to: the one kept in `store` when another tab (or an earlier
 * sign-in, or another check) verified a larger one than `held`, else `held`;
 * CheckpointRefused when the one kept has `held`'s size and another root.
 */
export async function adoptKept(
  store: PinStore,
  held: HeldCheckpoint | null,
): Promise<HeldCheckpoint | null> {
  const kept = heldOf(await store.load());
  if (kept === null || (held !== null && kept.size < held.size)) return held;
  if (held !== null && kept.size === held.size && !equalBytes(kept.root, held.root)) {
    throw new CheckpointRefused(
      `the checkpoint of size ${kept.size} kept in this browser has another root than the ` +
        "one verified here: the log forked",
    );
  }
  return kept;
}

function matches(kept: VerifiedDevice, body: CertificateBody): boolean {
  return (
    kept.entry.user === body.userId &&
    kept.entry.signing_key === b64uEncode(body.deviceKeys.signingKey) &&
    kept.entry.encryption_key_sha256 === b64uEncode(sha256(body.deviceKeys.encryptionKey))
  );
}
