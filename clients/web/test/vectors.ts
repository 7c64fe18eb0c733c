/** The known-answer vectors the Python tests use: tests/protocol/vectors/*.json. */
import { readFileSync } from "node:fs";
import { join } from "node:path";

import { sha256 } from "@noble/hashes/sha2.js";

import { fromHex, toHex } from "../src/protocol/bytes.js";

// The test runner (scripts/test.mjs) says where the repository is.
export const ROOT = process.env.ATTACHE_ROOT ?? join(process.cwd(), "..", "..");

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Vector = any;

export function vector(name: string): Vector {
  return JSON.parse(readFileSync(join(ROOT, "tests", "protocol", "vectors", name), "utf-8"));
}

export function repoText(...path: string[]): string {
  return readFileSync(join(ROOT, ...path), "utf-8");
}

export const h = fromHex;

export function sha256Hex(data: Uint8Array): string {
  return toHex(sha256(data));
}
