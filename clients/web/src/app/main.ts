/**
 * The page's entry point. This first slice is the shell: it checks that the browser has what
 * the protocol needs (WebCrypto's AES-GCM and HKDF) and says so; enrolment, unlock, channels,
 * committees, releases and the audit view come in the next slices (issue 12).
 */
import { hkdfSha256 } from "../protocol/primitives.js";

async function ready(): Promise<boolean> {
  try {
    await hkdfSha256(new Uint8Array(32), new Uint8Array(0));
    return true;
  } catch {
    return false;
  }
}

async function start(): Promise<void> {
  const status = document.getElementById("unlock-status");
  if (status === null) return;
  // textContent, never innerHTML: nothing shown in this page is parsed as markup.
  status.textContent = (await ready())
    ? "This browser has no device enrolled yet. Enrolment arrives in the next version."
    : "This browser lacks the cryptography Attaché needs (WebCrypto). Use a current browser.";
}

void start();
