/**
 * The page: enrol this browser as a device, unlock it with the passphrase, sign in, and list
 * the user's channels (issue 12, items 3 and 4's first part). Every text that comes from the
 * server or the user is set as text (textContent, never markup); the policy's Trusted Types
 * would refuse a string written into innerHTML anyway.
 */
import { Api, ApiError, ConnectionFailed } from "./api.js";
import {
  DeviceError,
  enrol,
  openKeys,
  signIn,
  signOut,
  type Session,
  type StoredDevice,
} from "./device.js";
import { browserStore } from "./store.js";
import { CertificateError, SecretError, authorityKeyId, b64uDecode } from "../protocol/index.js";
import { hkdfSha256 } from "../protocol/primitives.js";

interface ChannelRead {
  id: string;
  name: string;
  ceiling: string;
  members: unknown[];
}

const api = new Api(location.origin);
const SECTIONS = ["enrol", "device", "unlock", "home"] as const;
let session: Session | null = null;

function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const element = document.getElementById(id);
  if (element === null) throw new Error(`the page lacks #${id}`);
  return element as T;
}

/** An element holding `text` as text. */
function textElement(tag: string, text: string, className?: string): HTMLElement {
  const element = document.createElement(tag);
  element.textContent = text;
  if (className) element.className = className;
  return element;
}

function say(text: string): void {
  byId("status").textContent = text;
}

function problem(text: string | null): void {
  const element = byId("problem");
  element.textContent = text ?? "";
  element.hidden = text === null;
}

function show(...visible: (typeof SECTIONS)[number][]): void {
  for (const id of SECTIONS) byId(id).hidden = !visible.includes(id);
}

/** One plain sentence saying what went wrong and what to do. */
function explain(error: unknown): string {
  if (error instanceof SecretError) {
    return `Wrong passphrase, or the keys kept in this browser are damaged (${error.message}).`;
  }
  if (error instanceof CertificateError) {
    return (
      `This device's certificate does not verify against the pinned authority keys ` +
      `(${error.message}). The page refuses to continue: tell your security officer.`
    );
  }
  if (error instanceof ApiError) {
    if (error.status === 429) return `${error.message} Wait a moment, then try again.`;
    return error.message;
  }
  if (error instanceof ConnectionFailed || error instanceof DeviceError) return error.message;
  return `Something failed: ${String(error)}`;
}

/** Run `work` with the form's controls disabled; its failure is shown, never thrown. */
async function busy(form: HTMLFormElement, work: () => Promise<void>): Promise<void> {
  const controls = [...form.elements] as (HTMLInputElement | HTMLButtonElement)[];
  for (const control of controls) control.disabled = true;
  form.setAttribute("aria-busy", "true");
  problem(null);
  try {
    await work();
  } catch (error) {
    problem(explain(error));
    say("");
  } finally {
    for (const control of controls) control.disabled = false;
    form.removeAttribute("aria-busy");
  }
}

function field(form: HTMLFormElement, name: string): HTMLInputElement {
  return form.elements.namedItem(name) as HTMLInputElement;
}

function showDevice(record: StoredDevice, status: string | null): void {
  const { profile } = record;
  byId("device-user").textContent = `${profile.username} on ${profile.server}`;
  byId("device-id").textContent = `${profile.device_id} (${profile.device_name})`;
  byId("fingerprint").textContent = record.fingerprint;
  byId("device-advice").textContent =
    status === "pending"
      ? "Read this fingerprint to your security officer. They compare it with the one they " +
        "see before they certify this device; once they have, unlock it below."
      : "Compare this fingerprint with the one your security officer certified.";
  byId("pins").replaceChildren(
    ...Object.entries(record.pins).map(([nation, key]) =>
      textElement("li", `${nation}: ${authorityKeyId(b64uDecode(key))}`),
    ),
  );
  field(byId<HTMLFormElement>("unlock"), "username").value = profile.username;
}

async function showHome(current: Session): Promise<void> {
  const { user } = current;
  byId("whoami").textContent =
    `Signed in as ${user.username} (${user.nationality ?? "no nation"}, cleared ` +
    `${user.clearance ?? "for nothing"}) on device ${current.certificate.deviceId}.`;
  const channels = await api.request<ChannelRead[]>("GET", "/v1/channels");
  const list = byId("channels");
  if (channels.length === 0) {
    list.replaceChildren(textElement("li", "You are in no channel yet."));
  } else {
    list.replaceChildren(
      ...channels.map((channel) => {
        const item = document.createElement("li");
        item.append(
          textElement("span", channel.name, "channel-name"),
          textElement("span", channel.ceiling, "channel-ceiling"),
          textElement(
            "span",
            `${channel.members.length} member${channel.members.length === 1 ? "" : "s"}`,
            "channel-members",
          ),
        );
        return item;
      }),
    );
  }
  show("home");
  byId("home-title").focus();
  say(`Signed in. ${channels.length} channel${channels.length === 1 ? "" : "s"}.`);
}

function wire(): void {
  const enrolForm = byId<HTMLFormElement>("enrol");
  enrolForm.addEventListener("submit", (event) => {
    event.preventDefault();
    void busy(enrolForm, async () => {
      const passphrase = field(enrolForm, "passphrase").value;
      if (passphrase !== field(enrolForm, "confirm").value) {
        throw new DeviceError("The two passphrases differ: type the same one twice.");
      }
      say("Making this device's keys and registering them…");
      const enrolled = await enrol(api, browserStore, {
        username: field(enrolForm, "username").value.trim(),
        code: field(enrolForm, "code").value,
        name: field(enrolForm, "device").value.trim(),
        passphrase,
      });
      enrolForm.reset();
      // Ask the browser not to evict the sealed keys under storage pressure (best effort).
      void navigator.storage?.persist?.().catch(() => false);
      showDevice(enrolled.record, enrolled.device.status);
      show("device", "unlock");
      field(byId<HTMLFormElement>("unlock"), "passphrase").focus();
      say(
        enrolled.device.status === "pending"
          ? "Enrolled: this device awaits certification by your security officer."
          : "Enrolled: this device is active.",
      );
    });
  });

  const unlockForm = byId<HTMLFormElement>("unlock");
  unlockForm.addEventListener("submit", (event) => {
    event.preventDefault();
    void busy(unlockForm, async () => {
      const record = await browserStore.load();
      if (record === null) throw new DeviceError("This browser holds no device: enrol it first.");
      const passphrase = field(unlockForm, "passphrase");
      say("Unlocking…");
      const keys = await openKeys(record, passphrase.value);
      passphrase.value = "";
      say("Signing in…");
      session = await signIn(api, record, keys);
      await showHome(session);
    });
  });

  byId("sign-out").addEventListener("click", () => {
    session = null;
    void signOut(api).then(() => {
      show("device", "unlock");
      field(byId<HTMLFormElement>("unlock"), "passphrase").focus();
      say("Signed out. The keys are locked again.");
    });
  });
}

async function start(): Promise<void> {
  try {
    await hkdfSha256(new Uint8Array(32), new Uint8Array(0));
    if (typeof indexedDB === "undefined") throw new Error("no IndexedDB");
  } catch {
    say("This browser lacks what Attaché needs (WebCrypto, IndexedDB). Use a current browser.");
    return;
  }
  wire();
  let record: StoredDevice | null;
  try {
    record = await browserStore.load();
  } catch (error) {
    say("");
    problem(`This browser's storage cannot be read (${String(error)}).`);
    return;
  }
  if (record === null) {
    show("enrol");
    byId("enrol-username").focus();
    say("This browser has no device yet: enrol it with the code from your security officer.");
  } else {
    showDevice(record, null);
    show("device", "unlock");
    byId("unlock-passphrase").focus();
    say("Unlock this device with its passphrase.");
  }
}

void start();
