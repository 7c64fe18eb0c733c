/**
 * The witnesses whose cosignatures a checkpoint must carry before this browser believes it
 * (PROTOCOL.md §19.4 "Required witnesses", §18.7), as clients/sdk/keystore.py
 * `WitnessRequirement`: their vkeys (C2SP tlog-cosignature), how many of them must have
 * cosigned (all by default) and, optionally, the largest age in seconds of a cosignature that
 * counts. Given by the user at enrolment and kept in the device record beside the pinned audit
 * key (`TransparencyPin.witnesses`, the same object as the CLI's transparency.json); nothing a
 * server answers writes it. Each check says, as the SDK does, which witness is missing, forged
 * or too old. Nothing here touches the DOM, so Node's tests run it.
 */
import { Checkpoint, CheckpointError, splitNote } from "../protocol/checkpoint.js";
import { CosignatureVerifier, checkWitnesses } from "../protocol/cosignature.js";
import { repr } from "../protocol/coalition.js";

/** At most this many witnesses may be required (the server keeps 64 cosignatures a checkpoint). */
export const MAX_WITNESSES = 64;

/** What the device record keeps (as transparency.json's "witnesses"). */
export interface WitnessPin {
  keys: string[];
  min: number | null;
  max_age: number | null;
}

export class WitnessError extends Error {}

/** Python's sorted() on strings: by code point, not by UTF-16 code unit. */
function byCodePoint(a: string, b: string): number {
  const x = [...a];
  const y = [...b];
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    const d = x[i]!.codePointAt(0)! - y[i]!.codePointAt(0)!;
    if (d !== 0) return d;
  }
  return x.length - y.length;
}

export class WitnessRequirement {
  private constructor(
    readonly vkeys: readonly string[],
    readonly min: number | null,
    readonly maxAge: number | null,
  ) {}

  /**
   * Checked as the SDK checks it: well-formed vkeys of distinct witnesses (at least one),
   * `minimum` between 1 and their number, `maxAge` at least 1; WitnessError saying what is
   * wrong otherwise.
   */
  static of(
    vkeys: unknown,
    minimum: number | null = null,
    maxAge: number | null = null,
  ): WitnessRequirement {
    if (!Array.isArray(vkeys) || vkeys.length === 0) {
      throw new WitnessError("give at least one witness key (name+key id+base64)");
    }
    if (vkeys.length > MAX_WITNESSES) {
      throw new WitnessError(`at most ${MAX_WITNESSES} witnesses can be required`);
    }
    const parsed = vkeys.map((vkey: unknown) => {
      const text = typeof vkey === "string" ? vkey.trim() : vkey;
      try {
        return CosignatureVerifier.fromVkey(text as string);
      } catch (error) {
        if (!(error instanceof CheckpointError)) throw error;
        throw new WitnessError(`witness key ${repr(String(vkey).slice(0, 120))}: ${error.message}`);
      }
    });
    const names = parsed.map((w) => w.name);
    if (new Set(names).size !== names.length) {
      throw new WitnessError("each witness key must name a different witness");
    }
    if (
      minimum !== null &&
      (!Number.isSafeInteger(minimum) || minimum < 1 || minimum > parsed.length)
    ) {
      throw new WitnessError(
        `${minimum} witnesses required but only ${parsed.length} witness keys given: ` +
          `the minimum is between 1 and ${parsed.length}`,
      );
    }
    if (maxAge !== null && (!Number.isSafeInteger(maxAge) || maxAge < 1)) {
      throw new WitnessError(`a maximum age is a number of seconds, at least 1: ${maxAge}`);
    }
    const sorted = parsed.map((w) => w.vkey()).sort(byCodePoint);
    return new WitnessRequirement(sorted, minimum, maxAge);
  }

  /**
   * What the user typed on the enrolment form: one vkey a line (blank lines ignored), the
   * minimum and the maximum age as decimal text, empty for the default; null when no key is
   * given and neither number either. WitnessError saying what is wrong otherwise.
   */
  static fromForm(keys: string, minimum: string, maxAge: string): WitnessRequirement | null {
    const vkeys = keys
      .split("\n")
      .map((line) => line.trim())
      .filter((line) => line !== "");
    const number = (text: string, what: string): number | null => {
      const trimmed = text.trim();
      if (trimmed === "") return null;
      if (!/^[0-9]+$/.test(trimmed)) throw new WitnessError(`${what} is a whole number`);
      return Number(trimmed);
    };
    const min = number(minimum, "the number of witnesses required");
    const age = number(maxAge, "a maximum age (seconds)");
    if (vkeys.length === 0) {
      if (min !== null || age !== null) {
        throw new WitnessError("give the witnesses' keys too, or neither number");
      }
      return null;
    }
    return WitnessRequirement.of(vkeys, min, age);
  }

  /** The requirement a device record keeps; WitnessError when it is damaged. */
  static fromPin(pin: WitnessPin | null | undefined): WitnessRequirement | null {
    if (pin == null) return null;
    try {
      return WitnessRequirement.of(pin.keys, pin.min ?? null, pin.max_age ?? null);
    } catch (error) {
      if (!(error instanceof WitnessError)) throw error;
      throw new WitnessError(`the witnesses kept in this browser are damaged: ${error.message}`);
    }
  }

  toPin(): WitnessPin {
    return { keys: [...this.vkeys], min: this.min, max_age: this.maxAge };
  }

  /** How many of the witnesses must have cosigned. */
  get minimum(): number {
    return this.min ?? this.vkeys.length;
  }

  verifiers(): CosignatureVerifier[] {
    return this.vkeys.map((v) => CosignatureVerifier.fromVkey(v));
  }

  names(): string[] {
    return this.verifiers().map((w) => w.name);
  }

  equals(other: WitnessRequirement | null): boolean {
    return (
      other !== null &&
      other.vkeys.join("\n") === this.vkeys.join("\n") &&
      other.min === this.min &&
      other.maxAge === this.maxAge
    );
  }

  /**
   * How `next` would accept a checkpoint that this requirement refuses, in sentences (empty
   * when it accepts nothing this one refuses), as the SDK's `loosened_by`; `next` null
   * requires no witness.
   */
  loosenedBy(next: WitnessRequirement | null): string[] {
    if (next === null) return ["no witness would be required any more"];
    const said = this.vkeys
      .filter((v) => !next.vkeys.includes(v))
      .map((v) => `witness ${CosignatureVerifier.fromVkey(v).name} would no longer be required`);
    // Any `next.minimum` of next's witnesses must include `this.minimum` of ours, even when
    // it takes every witness that is new.
    const added = next.vkeys.filter((v) => !this.vkeys.includes(v)).length;
    if (said.length === 0 && next.minimum - added < this.minimum) {
      said.push(
        `${next.minimum} of ${next.vkeys.length} witnesses would do where ${this.minimum} of ` +
          `these ${this.vkeys.length} must cosign now`,
      );
    }
    if (this.maxAge !== null && (next.maxAge === null || next.maxAge > this.maxAge)) {
      const after = next.maxAge === null ? "no limit" : `${next.maxAge} s`;
      said.push(`cosignatures up to ${after} old would count, not ${this.maxAge} s`);
    }
    return said;
  }

  /** `witness=<name>&...&min_witnesses=N`: the latest checkpoint they cosigned, please. */
  query(): string {
    const names = this.names().map((name) => `witness=${encodeURIComponent(name)}`);
    return `${names.join("&")}&min_witnesses=${this.minimum}`;
  }

  /** A sentence for the page: who, how many, how recent. */
  describe(): string {
    const names = this.names().join(", ");
    const age = this.maxAge === null ? "" : `, cosigned within ${this.maxAge} s`;
    return `${this.minimum} of ${this.vkeys.length} (${names})${age}`;
  }

  /**
   * The problems of a signed checkpoint `note` under this requirement at `now` (POSIX
   * seconds): empty when enough witnesses cosigned it validly (and recently enough) and none
   * has a forged line; the checkpoint's size with it. CheckpointError when the note is
   * malformed.
   */
  check(note: string, now: number): { size: number; problems: string[] } {
    const found = checkWitnesses(
      note,
      this.verifiers(),
      this.maxAge === null ? {} : { now: BigInt(now), maxAge: BigInt(this.maxAge) },
    );
    const size = Checkpoint.parse(splitNote(note).body).size;
    return { size, problems: found.problems(this.minimum) };
  }
}

/** The wall clock in POSIX seconds, as the SDK's `int(time.time())`. */
export function nowSeconds(): number {
  return Math.floor(Date.now() / 1000);
}

/** The note of an answer's `checkpoint` part, or null. */
export function noteOf(answer: unknown): string | null {
  const part =
    typeof answer === "object" && answer !== null
      ? (answer as { checkpoint?: unknown }).checkpoint
      : undefined;
  const note =
    typeof part === "object" && part !== null ? (part as { note?: unknown }).note : undefined;
  return typeof note === "string" ? note : null;
}
