/**
 * One-time enrolment codes, as protocol/enrolment.py: case, spaces, tabs and dashes are
 * ignored, and a device's registration proof names the code's digest (never the code).
 */
import { utf8 } from "./bytes.js";
import { CTX_ENROLMENT_CODE, digest } from "./canonical.js";

export { CTX_ENROLMENT_CODE };

export function normaliseCode(code: string): string {
  return [...code.toUpperCase()].filter((char) => !" -\t".includes(char)).join("");
}

export function codeDigest(code: string): Uint8Array {
  return digest(CTX_ENROLMENT_CODE, utf8(normaliseCode(code)));
}
