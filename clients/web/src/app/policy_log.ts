/**
 * Coalition policy versions proven in the audit log before the page accepts them (PROTOCOL.md
 * §18.6), as clients/sdk/coalition.py `PolicyLog`: for each version it pins at enrolment (from
 * the founding one) or follows at sign-in, `GET /v1/policy/{version}/proof?old=S` is checked
 * by protocol/policy_log.ts under the audit key pinned at enrolment, against the largest
 * checkpoint this browser verified (the key directory's, app/transparency.ts: the same pin in
 * the device record), and the proof's checkpoint is kept in turn, never going back. A version
 * the log does not hold, holds with another digest, or a made-up publication, is refused with
 * PolicyRefused naming the version; a version published moments ago (503: its leaf waits for
 * the integrator's next batch) is asked for again, backing off from 0.1 s to 1 s, for up to
 * 10 s.
 *
 * When the user required witnesses (kept in the same pin, app/witnesses.ts), the proof is
 * asked for at the latest checkpoint they cosigned (`witness=...&min_witnesses=N`) and its
 * note must carry their valid cosignatures before anything in it is believed, as the SDK's
 * `PolicyLog._check_cosignatures`; PolicyRefused names the witness missing, forged or too old.
 * At enrolment there is no store, so no requirement: the versions pinned then are proven
 * without it, and `enrol` keeps their checkpoint only when no witness is required (as the
 * SDK, PROTOCOL.md §18.7). Nothing here touches the DOM, so Node's tests run it.
 */
import { ApiError, type Api } from "./api.js";
import { noteOf, nowSeconds, type WitnessRequirement } from "./witnesses.js";
import { NotLoggedYet, PolicyRefused, type PolicyProver } from "./coalition.js";
import { CheckpointError, NoteVerifier, type CoalitionPolicy } from "../protocol/index.js";
import { verifyPublication, type VerifiedPublication } from "../protocol/policy_log.js";
import { TransparencyError, type HeldCheckpoint } from "../protocol/transparency.js";
import {
  NOT_LOGGED_WAIT,
  adoptKept,
  extendPin,
  heldOf,
  witnessesOf,
  type Clock,
  type PinStore,
} from "./transparency.js";

const FIRST_DELAY = 100;
const MAX_DELAY = 1_000;

const REAL_CLOCK: Clock = {
  now: () => Date.now(),
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
};

export class PolicyLog implements PolicyProver {
  readonly logKey: NoteVerifier;
  held: HeldCheckpoint | null;
  /** Milliseconds to keep asking for a version whose leaf is not in a checkpoint yet. */
  wait = NOT_LOGGED_WAIT;

  /**
   * For the audit key `vkey` and the checkpoint `held`; `store`, when given, is read before
   * each proof (another tab may have gone further) and keeps each proof's checkpoint. At
   * enrolment there is none yet: the caller keeps `held` with the device.
   */
  constructor(
    private readonly api: Api,
    readonly vkey: string,
    held: HeldCheckpoint | null = null,
    private readonly store: PinStore | null = null,
    private readonly clock: Clock = REAL_CLOCK,
  ) {
    try {
      this.logKey = NoteVerifier.fromVkey(vkey);
    } catch (error) {
      throw new PolicyRefused(`the server's audit key ${vkey} is not a log's key: ${error}`);
    }
    this.held = held;
  }

  /** The audit key and checkpoint kept in `store` (the device record's). */
  static async fromStore(api: Api, store: PinStore, clock?: Clock): Promise<PolicyLog> {
    const pin = await store.load();
    if (pin === null) throw new PolicyRefused("no audit key is pinned in this browser");
    return new PolicyLog(api, pin.vkey, heldOf(pin), store, clock);
  }

  async prove(policy: CoalitionPolicy, wait = this.wait): Promise<VerifiedPublication> {
    const version = policy.policyVersion;
    let required: WitnessRequirement | null = null;
    if (this.store !== null) {
      try {
        required = witnessesOf(await this.store.load());
      } catch (error) {
        if (!(error instanceof TransparencyError)) throw error;
        throw new PolicyRefused(`cannot check the audit log: ${error.message}`);
      }
      this.held = await adoptKept(this.store, this.held);
    }
    // At the latest checkpoint the witnesses required here cosigned, as bundles.
    const witnesses = required === null ? "" : `&${required.query()}`;
    const deadline = this.clock.now() + wait;
    let delay = FIRST_DELAY;
    let answer: unknown;
    for (;;) {
      try {
        answer = await this.api.request<unknown>(
          "GET",
          `/v1/policy/${version}/proof?old=${this.held?.size ?? 0}${witnesses}`,
        );
        break;
      } catch (error) {
        if (!(error instanceof ApiError)) throw error;
        const now = this.clock.now();
        if (error.status === 503 && now < deadline) {
          await this.clock.sleep(Math.min(delay, deadline - now));
          delay = Math.min(delay * 2, MAX_DELAY);
          continue;
        }
        if (error.status === 404 || error.status === 503) {
          const Refusal = error.status === 503 ? NotLoggedYet : PolicyRefused;
          throw new Refusal(
            `coalition policy version ${version} is not in the audit log (the server says: ` +
              `${error.message}); refusing it`,
          );
        }
        throw new PolicyRefused(
          `cannot check that coalition policy version ${version} is in the audit log: ` +
            error.message,
        );
      }
    }
    if (required !== null) checkCosignatures(answer, required, version);
    let verified: VerifiedPublication;
    try {
      verified = verifyPublication(answer, { logKey: this.logKey, policy, held: this.held });
    } catch (error) {
      if (!(error instanceof TransparencyError)) throw error;
      throw new PolicyRefused(`coalition policy version ${version} is refused: ${error.message}`);
    }
    this.held = { size: verified.size, root: verified.root };
    await this.store?.change((pin) => extendPin(pin, this.vkey, verified.size, verified.root));
    return verified;
  }
}

/**
 * The proof's checkpoint carries the cosignatures required here (as a bundle's must,
 * app/transparency.ts), before anything in it is believed; PolicyRefused naming the witnesses
 * otherwise, in the SDK's words.
 */
function checkCosignatures(answer: unknown, required: WitnessRequirement, version: number): void {
  const note = noteOf(answer);
  if (note === null) {
    throw new PolicyRefused(`the proof of coalition policy version ${version} has no note`);
  }
  let problems: string[];
  try {
    ({ problems } = required.check(note, nowSeconds()));
  } catch (error) {
    if (!(error instanceof CheckpointError)) throw error;
    throw new PolicyRefused(
      `coalition policy version ${version} is refused: its checkpoint note is malformed: ` +
        error.message,
    );
  }
  if (problems.length > 0) {
    throw new PolicyRefused(
      `coalition policy version ${version} is refused: the checkpoint it is proven at lacks ` +
        `the witnesses' cosignatures this device requires: ${problems.join("; ")}`,
    );
  }
}
