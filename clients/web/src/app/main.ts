/**
 * The page: enrol this browser as a device, unlock it with the passphrase, sign in, list the
 * user's channels and their messages, release requests (decided by disclosure officers, the
 * grant sealed here), committees (meetings, agendas with their banners, minutes and action
 * items, verified here), and for an auditor the audit log (issue 12, items 3 to 7). Every
 * text that comes from the
 * server or the user is set as text (textContent, never markup); the policy's Trusted Types
 * would refuse a string written into innerHTML anyway.
 */
import { Api, ApiError, ConnectionFailed, segment } from "./api.js";
import {
  DeviceError,
  enrol,
  openKeys,
  requireWitnesses,
  pinnedIds,
  signIn,
  signOut,
  type Session,
  type StoredDevice,
} from "./device.js";
import { browserAuditStore, browserStore } from "./store.js";
import { PolicyRefused, parseFoundingDigest } from "./coalition.js";
import { parseSignedPolicy } from "../protocol/coalition.js";
import {
  AuditStateError,
  TABLE_COLUMNS,
  eventsCsv,
  eventsJson,
  fetchEvents,
  verifyLog,
  type AuditEntry,
  type AuditFilters,
  type VerifyReport,
} from "./audit.js";
import { Inbox, parseFrame, pushedMessages, streamUrl, type ReceivedMessage } from "./messages.js";
import { SendError, Sender, type Reach } from "./send.js";
import { CosignaturesRefused, TransparencyError, witnessesOf } from "./transparency.js";
import { WitnessError, WitnessRequirement } from "./witnesses.js";
import {
  DOCUMENT_VERSION,
  ReleaseError,
  MESSAGE,
  Releases,
  nationsToAdd,
  type ReleaseContext,
  type ReleaseRequest,
} from "./releases.js";
import {
  NOT_CLEARED,
  STATUSES,
  Committees,
  type CommitteeEntry,
  type CommitteeRead,
  type MeetingAgenda,
  type MeetingSummary,
} from "./committees.js";
import {
  DocumentRefused,
  UploadFailed,
  download as downloadVersion,
  openVersion,
  upload as uploadVersion,
  type OpenedVersion,
  type Sink,
} from "./documents.js";
import type { Reader } from "./messages.js";
import {
  CertificateError,
  CheckpointError,
  SecretError,
  authorityKeyId,
  b64uDecode,
  toHex,
} from "../protocol/index.js";
import { bannerTextColour, catalogFromRead, type CatalogRead } from "../protocol/labels.js";
import { hkdfSha256 } from "../protocol/primitives.js";

interface ChannelRead {
  id: string;
  name: string;
  ceiling: string;
  ceiling_canonical: unknown;
  labels: string[];
  default_label: string;
  members: unknown[];
}

const api = new Api(location.origin);
const SECTIONS = [
  "enrol",
  "device",
  "unlock",
  "home",
  "channel",
  "audit",
  "releases",
  "committees",
  "meeting",
] as const;
let session: Session | null = null;
let inbox: Inbox | null = null;
let sender: Sender | null = null;
let live: Live | null = null;
let channels: ChannelRead[] = [];
let openChannel: ChannelRead | null = null;
let releases: Releases | null = null;
let committees: Committees | null = null;
let reader: Reader | null = null;
/** The object URLs of verified downloads offered for saving, revoked at sign-out. */
let offered: string[] = [];
let auditEntries: AuditEntry[] = [];
let auditQueried = false;

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
  if (error instanceof SendError) return `Not sent: ${error.message}.`;
  if (error instanceof ReleaseError) return `Not released: ${error.message}.`;
  if (error instanceof DocumentRefused) return `Not offered: ${error.message}.`;
  if (error instanceof UploadFailed) return `Not uploaded: ${error.message}.`;
  if (error instanceof AuditStateError) return `Not verified: ${error.message}.`;
  if (error instanceof CheckpointError) return `Not verified: the audit key ${error.message}.`;
  if (error instanceof PolicyRefused) {
    return (
      `The server's coalition policy is refused: ${error.message}. The page goes no further ` +
      "and seals nothing: tell your security officer."
    );
  }
  if (error instanceof WitnessError) return `Not enrolled: ${error.message}.`;
  if (error instanceof CosignaturesRefused) {
    return (
      `The server's audit log is refused: ${error.message}. The page seals nothing: tell ` +
      "your security officer."
    );
  }
  if (error instanceof TransparencyError) {
    return (
      `The server's key directory is refused: ${error.message}. The page seals nothing: tell ` +
      "your security officer."
    );
  }
  if (error instanceof ConnectionFailed || error instanceof DeviceError) return error.message;
  if (error instanceof Mistake) return error.message;
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
  // The coalition policy pinned (its nations' keys), else the keys pinned on first use.
  const policy = record.policy ? parseSignedPolicy(record.policy.latest).policy : null;
  byId("policy-pin").textContent =
    policy !== null && record.policy
      ? `Coalition policy version ${policy.policyVersion} of ${policy.coalition}, founding ` +
        `digest ${record.policy.founding}.`
      : "No coalition policy: the server publishes none, so these keys were taken from the " +
        "server on first use.";
  byId("pins").replaceChildren(
    ...Object.entries(pinnedIds(record, policy)).map(([nation, ids]) =>
      textElement("li", `${nation}: ${ids}`),
    ),
  );
  // The log's key, as `attache enroll` prints it: held to before sealing to any device.
  byId("audit-key").textContent =
    record.transparency?.vkey ?? "none yet: pinned from the server at the next sign-in";
  const checkpoint = record.transparency?.checkpoint;
  byId("audit-key-advice").textContent =
    "Compare this audit key with the operator's (attache-server audit key). The page seals " +
    "only to devices that the key directory, under this key, shows active with their keys" +
    (checkpoint ? `; the largest checkpoint verified here has ${checkpoint.size} leaves.` : ".");
  showWitnesses(record);
  field(byId<HTMLFormElement>("unlock"), "username").value = profile.username;
}

/** The witnesses the record requires, said with the device and filled into the change form. */
function showWitnesses(record: StoredDevice): void {
  const form = byId<HTMLFormElement>("witnesses-form");
  let witnesses: string;
  let required: WitnessRequirement | null = null;
  try {
    required = witnessesOf(record.transparency ?? null);
    witnesses =
      required === null
        ? "None: the page believes the audit log's checkpoints without witnesses."
        : `${required.describe()}: every checkpoint believed must carry their cosignatures.`;
  } catch (error) {
    witnesses = String((error as Error).message);
  }
  byId("witnesses-required").textContent = witnesses;
  (form.elements.namedItem("witnesses") as HTMLTextAreaElement).value =
    required?.vkeys.join("\n") ?? "";
  field(form, "min-witnesses").value = required?.min == null ? "" : String(required.min);
  field(form, "witness-max-age").value = required?.maxAge == null ? "" : String(required.maxAge);
  field(form, "loosen").checked = false;
}

/** The channel list, each with its unread count. */
function renderChannels(): void {
  const list = byId("channels");
  if (channels.length === 0) {
    list.replaceChildren(textElement("li", "You are in no channel yet."));
    return;
  }
  list.replaceChildren(
    ...channels.map((channel) => {
      const item = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.className = "channel-open";
      button.append(textElement("span", channel.name, "channel-name"));
      const unread = inbox?.unread.get(channel.id) ?? 0;
      const count = textElement("span", unread > 0 ? `${unread} unread` : "", "unread");
      count.dataset.unread = String(unread);
      button.append(count);
      button.addEventListener("click", () => showChannel(channel));
      item.append(
        button,
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

/** A classification banner in its level's colour (set through the CSSOM, which the policy
 * allows: no style attribute or sheet is written from text). */
function banner(text: string, colour: string | null, where: "top" | "bottom"): HTMLElement {
  const element = textElement("div", text, `banner banner-${where}`);
  if (colour !== null) {
    element.style.backgroundColor = colour;
    element.style.color = bannerTextColour(colour);
  }
  return element;
}

/** A message of the open channel, offered for a release request (the form below the
 * messages, which an arrival does not redraw). */
let asking: ReceivedMessage | null = null;

function askRelease(message: ReceivedMessage): void {
  asking = message;
  byId("ask-release-item").textContent =
    `The message from ${message.sender} (${message.senderNation}) under ${message.banner}: ` +
    (message.text ?? message.messageId ?? "");
  byId("ask-release-outcome").textContent = "";
  byId("ask-release").hidden = false;
  byId("ask-release-add").focus();
}

function closeAskRelease(): void {
  asking = null;
  byId("ask-release").hidden = true;
  byId<HTMLFormElement>("ask-release").reset();
}

function messageElement(message: ReceivedMessage, askable = false): HTMLElement {
  const item = document.createElement("li");
  item.className = "item";
  item.dataset.seq = String(message.seq);
  if (!message.verified) {
    item.classList.add("item-warning");
    item.append(
      textElement("strong", "This message failed verification and is not shown."),
      textElement("p", message.problem ?? "", "item-problem"),
      textElement(
        "p",
        `The server calls it ${message.banner}` +
          (message.sender ? `, from ${message.sender}` : "") +
          (message.messageId ? ` (message ${message.messageId}).` : "."),
        "item-claim",
      ),
    );
    return item;
  }
  const sentAt = message.sentAt?.toISOString().replace("T", " ").slice(0, 16) ?? "";
  item.setAttribute("aria-label", `${message.banner}, from ${message.sender}`);
  const released = message.releasedBy
    ? `; released by ${message.releasedBy}` +
      (message.originalBanner ? ` (sent as ${message.originalBanner})` : "")
    : message.sharedBy
      ? `; shared by ${message.sharedBy}`
      : "";
  item.append(
    banner(message.banner, message.colour, "top"),
    textElement(
      "p",
      `${message.sender} (${message.senderNation}) at ${sentAt} UTC${released}`,
      "item-meta",
    ),
    textElement(
      "p",
      message.text ?? `(a ${message.contentType ?? "message"} this page does not show)`,
      "item-body",
    ),
    banner(message.banner, message.colour, "bottom"),
  );
  if (askable && message.messageId !== null) {
    const ask = textElement("button", "Ask for a release", "item-ask");
    (ask as HTMLButtonElement).type = "button";
    ask.setAttribute(
      "aria-label",
      `Ask for a release of the message from ${message.sender} at ${sentAt} UTC`,
    );
    ask.addEventListener("click", () => askRelease(message));
    item.lastElementChild!.before(ask); // within the banners, under the text
  }
  return item;
}

function renderMessages(): void {
  if (openChannel === null || inbox === null) return;
  const messages = inbox.messages.get(openChannel.id) ?? [];
  const list = byId("messages");
  list.replaceChildren(
    ...(messages.length === 0
      ? [textElement("li", "No messages yet.", "item-none")]
      : messages.map((message) => messageElement(message, true))),
  );
  inbox.markRead(openChannel.id);
}

function reachText(reach: Reach): string {
  const excluded = reach.excluded.length
    ? ` Not sealed to ${reach.excluded.length} device(s) this page does not vouch for: ` +
      reach.excluded.map((d) => `${d.username} (${d.reason})`).join("; ") +
      "."
    : "";
  return `${reach.people.join(", ")} (${reach.devices.length} device${
    reach.devices.length === 1 ? "" : "s"
  }).${excluded}`;
}

/** Who the picked label would release the message to, before it is sent. */
async function showReach(): Promise<void> {
  const channel = openChannel;
  if (channel === null || sender === null) return;
  const banner = byId<HTMLSelectElement>("compose-label").value;
  const output = byId("compose-reach");
  try {
    const reach = await sender.preview(channel, banner);
    if (openChannel === channel) output.textContent = `Will be released to: ${reachText(reach)}`;
  } catch (error) {
    if (openChannel === channel) output.textContent = explain(error);
  }
}

function showChannel(channel: ChannelRead): void {
  openChannel = channel;
  byId("channel-title").textContent = channel.name;
  byId("channel-ceiling").textContent = `Ceiling: ${channel.ceiling}`;
  const picker = byId<HTMLSelectElement>("compose-label");
  picker.replaceChildren(
    ...channel.labels.map((banner) => {
      const option = document.createElement("option");
      option.value = banner;
      option.textContent = banner === channel.default_label ? `${banner} (default)` : banner;
      option.selected = banner === channel.default_label;
      return option;
    }),
  );
  byId("compose-reach").textContent = "";
  byId("compose-sent").textContent = "";
  closeAskRelease();
  byId("ask-release-outcome").textContent = "";
  void showReach();
  renderMessages();
  show("channel");
  byId("channel-title").focus();
  say(`Channel ${channel.name}.`);
}

/** Something arrived (sync or stream): show it where it belongs. */
function arrived(messages: ReceivedMessage[]): void {
  if (messages.length === 0) return;
  if (openChannel !== null && messages.some((m) => m.channelId === openChannel!.id)) {
    renderMessages();
  }
  renderChannels();
}

/**
 * The websocket stream (docs/PROTOCOL.md §17.7): authenticate (accepting `messages` frames),
 * then sync from the cursor after `ready` (so nothing committed in between is missed), take
 * each pushed message (a `message` frame, or each of a `messages` frame's in order), answer
 * pings and ping every 20 s; on a drop, reconnect with backoff and resume from the cursor.
 * After 4401 (the session ended) it stops.
 */
class Live {
  #socket: WebSocket | null = null;
  #pinger: ReturnType<typeof setInterval> | null = null;
  #attempt = 0;
  #stopped = false;

  constructor(
    private readonly token: () => string | null,
    private readonly box: Inbox,
  ) {}

  start(): void {
    const token = this.token();
    if (this.#stopped || token === null) return;
    const socket = new WebSocket(streamUrl(location.origin));
    this.#socket = socket;
    // "messages": pushes queued together may come as one frame (PROTOCOL.md §17.7).
    const auth = JSON.stringify({ type: "auth", token, accept: ["messages"] });
    socket.addEventListener("open", () => socket.send(auth));
    socket.addEventListener("message", (event) => void this.#frame(socket, event.data));
    socket.addEventListener("close", (event) => this.#closed(event.code));
  }

  stop(): void {
    this.#stopped = true;
    if (this.#pinger !== null) clearInterval(this.#pinger);
    this.#socket?.close(1000);
  }

  async #frame(socket: WebSocket, data: unknown): Promise<void> {
    const frame = parseFrame(data);
    if (frame === null) return;
    if (frame.type === "ready") {
      this.#attempt = 0;
      this.#pinger = setInterval(() => socket.send(JSON.stringify({ type: "ping" })), 20_000);
      byId("live").textContent = "Live.";
      await this.#sync();
    } else if (frame.type === "message" || frame.type === "messages") {
      // One by one, in order, as each would be alone; shown together once opened.
      const found: ReceivedMessage[] = [];
      for (const pushed of pushedMessages(frame)) {
        const message = await this.box.accept(pushed);
        if (message !== null) found.push(message);
      }
      arrived(found);
    } else if (frame.type === "resync") {
      sender?.rosterChanged(null);
      await this.#sync();
    } else if (frame.type === "ping") {
      socket.send(JSON.stringify({ type: "pong" }));
    } else if (frame.type === "roster-changed") {
      // Fetched afresh at the next send instead of being refused with 412 first.
      sender?.rosterChanged(typeof frame.channel_id === "string" ? frame.channel_id : null);
    }
    // Other frame types are ignored, as the protocol asks.
  }

  async #sync(): Promise<void> {
    try {
      arrived(await this.box.sync(api));
    } catch (error) {
      problem(explain(error));
    }
  }

  #closed(code: number): void {
    if (this.#pinger !== null) clearInterval(this.#pinger);
    this.#pinger = null;
    if (this.#stopped) return;
    if (code === 4401) {
      byId("live").textContent = "Not live: the session ended. Sign in again.";
      return;
    }
    const delay = Math.min(30_000, 1000 * 2 ** this.#attempt++) * (0.5 + Math.random() / 2);
    byId("live").textContent = "Not live: reconnecting…";
    setTimeout(() => this.start(), delay);
  }
}

// --- Release requests (disclosure officers, and each requester) ---------------------------------

/** Something the user must put right before the page can go on; the text says what. */
class Mistake extends Error {}

/** " 2026-11-26 10:02 UTC" (with its leading space), or nothing for no time. */
function when(text: string | null): string {
  const moment = text === null ? null : new Date(text);
  if (moment === null || Number.isNaN(moment.getTime())) return "";
  return ` ${moment.toISOString().replace("T", " ").slice(0, 16)} UTC`;
}

function itemWhat(request: ReleaseRequest): string {
  const channel = channels.find((c) => c.id === request.channel_id)?.name ?? request.channel_id;
  const kind = request.item_type === DOCUMENT_VERSION ? "Document version" : "Message";
  return `${kind} in ${channel}`;
}

/** The labels now and asked for, as banners in their colours, and what the release adds. */
function releaseLabels(context: ReleaseContext): HTMLElement {
  const { request } = context;
  const labels = document.createElement("div");
  labels.className = "release-labels";
  labels.append(
    textElement("p", "Its label now:"),
    banner(context.banner ?? request.label, context.colour, "top"),
    textElement("p", "Asked for:"),
    banner(context.requestedBanner ?? request.requested_label, context.requestedColour, "top"),
  );
  if (context.added.length > 0) {
    labels.append(textElement("p", `It would also reach: ${context.added.join(", ")}.`));
  }
  return labels;
}

function releaseItem(context: ReleaseContext): HTMLElement {
  if (context.message !== null) {
    const wrap = document.createElement("div");
    const list = document.createElement("ol");
    list.className = "messages";
    list.setAttribute("aria-label", "The message asked about");
    list.append(messageElement(context.message));
    wrap.append(textElement("p", "The message, as this page opens and verifies it:"), list);
    return wrap;
  }
  if (context.document !== null) {
    const { filename, size, sender } = context.document;
    return textElement("p", `The document: ${filename} (${size} bytes), from ${sender}.`);
  }
  return textElement("p", `The item is not shown: ${context.itemNote ?? "not held here"}.`);
}

function releaseCard(context: ReleaseContext, mode: "decide" | "carry" | "mine"): HTMLElement {
  const { request } = context;
  const card = document.createElement("li");
  card.className = "release";
  card.dataset.request = request.id;
  const titleId = `release-${request.id}-title`;
  card.setAttribute("aria-labelledby", titleId);
  const by = context.requester ?? "a member whose certificate this page cannot verify";
  const title = textElement("h4", `${itemWhat(request)}, asked by ${by}`);
  title.id = titleId;
  card.append(
    title,
    textElement("p", `Asked${when(request.created_at)}; request ${request.id}.`, "item-meta"),
    releaseLabels(context),
    textElement(
      "p",
      request.reason ? `Reason given: ${request.reason}` : "No reason given.",
      "release-reason",
    ),
  );
  if (context.problems.length > 0) {
    const problems = document.createElement("ul");
    problems.className = "release-problems";
    problems.setAttribute("aria-label", "What does not check");
    problems.append(...context.problems.map((text) => textElement("li", text)));
    card.append(problems);
  }
  if (mode === "mine") {
    const decided =
      request.status === "pending"
        ? "Pending a decision by a disclosure officer of " + request.originator + "."
        : `${request.status[0]!.toUpperCase()}${request.status.slice(1)}${when(request.decided_at)}` +
          (request.decision_reason ? `, with the reason: ${request.decision_reason}` : ".");
    card.append(textElement("p", decided, "release-status"));
    return card;
  }
  card.append(releaseItem(context));
  if (mode === "carry") {
    if (!context.holds) {
      card.append(
        textElement(
          "p",
          `Approved. This device does not hold the item, so a member whose device does carries ` +
            `out the release (attache release grant ${request.id}).`,
          "release-status",
        ),
      );
      return card;
    }
    const form = document.createElement("form");
    form.className = "release-carry";
    const button = textElement("button", "Carry out the release");
    (button as HTMLButtonElement).type = "submit";
    button.setAttribute("aria-describedby", titleId);
    form.append(
      textElement(
        "p",
        `Approved${when(request.decided_at)}` +
          (request.decision_reason ? `, with the reason: ${request.decision_reason}` : ".") +
          " Carrying it out seals the item's key, here, to the devices the wider label admits.",
      ),
      button,
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      void busy(form, () => carryOut(request));
    });
    card.append(form);
    return card;
  }
  const form = document.createElement("form");
  form.className = "release-decide";
  const reasonId = `release-${request.id}-reason`;
  const label = textElement("label", "Your reason (the requester sees it)");
  label.setAttribute("for", reasonId);
  const reason = document.createElement("textarea");
  reason.id = reasonId;
  reason.name = "reason";
  reason.rows = 2;
  reason.maxLength = 2000;
  const actions = document.createElement("div");
  actions.className = "release-actions";
  for (const [verb, text] of [
    ["approve", context.holds ? "Approve and release" : "Approve"],
    ["refuse", "Refuse"],
  ] as const) {
    const button = document.createElement("button");
    button.type = "submit";
    button.value = verb;
    button.textContent = text;
    button.setAttribute("aria-describedby", titleId);
    actions.append(button);
  }
  form.append(label, reason, actions);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const verb = (event.submitter as HTMLButtonElement | null)?.value ?? "approve";
    void busy(form, () => decide(context, verb === "refuse", reason.value.trim()));
  });
  card.append(form);
  return card;
}

function outcome(text: string): void {
  const element = byId("releases-outcome");
  element.textContent = text;
  element.focus();
  say(text);
}

async function carryOut(request: ReleaseRequest): Promise<void> {
  if (releases === null) return;
  say("Sealing the item's key to the devices the wider label admits…");
  const granted = await releases.grant(request);
  await renderReleases();
  outcome(
    `Released: ${itemWhat(request)} is now ${granted.request.requested_label}, its key sealed ` +
      `here to ${granted.people.join(", ")} (${granted.devices.length} device` +
      `${granted.devices.length === 1 ? "" : "s"}).`,
  );
}

async function decide(context: ReleaseContext, refuse: boolean, reason: string): Promise<void> {
  if (releases === null) return;
  const { request } = context;
  if (refuse) {
    if (reason === "") {
      throw new Mistake("Not refused: say why in the reason first (the requester sees it).");
    }
    say("Refusing…");
    await releases.refuse(request.id, reason);
    await renderReleases();
    outcome(
      `Refused: ${itemWhat(request)} stays ${request.label}. The requester sees your reason.`,
    );
    return;
  }
  say("Approving…");
  const approved = await releases.approve(request.id, reason);
  if (!context.holds) {
    await renderReleases();
    outcome(
      `Approved. This device does not hold the item, so a member whose device does carries ` +
        `out the release (attache release grant ${request.id}).`,
    );
    return;
  }
  try {
    await carryOut(approved);
  } catch (error) {
    await renderReleases();
    outcome(`Approved, but not yet released: ${explain(error)} Carry it out again below.`);
  }
}

/** Every request this user may see, described, in its list. */
async function renderReleases(): Promise<void> {
  if (releases === null || session === null) return;
  const active = releases;
  const all = await active.list();
  const contexts = await Promise.all(
    all.map(async (request) =>
      request.status === "pending" || request.status === "approved"
        ? active.describe(request)
        : ({
            request,
            banner: null,
            colour: null,
            requestedBanner: null,
            requestedColour: null,
            added: [],
            problems: [],
            requester: null,
            message: null,
            document: null,
            holds: false,
            itemNote: null,
          } satisfies ReleaseContext),
    ),
  );
  if (active !== releases) return;
  const me = session.certificate.userId;
  const fill = (id: string, cards: HTMLElement[], none: string) =>
    byId(id).replaceChildren(...(cards.length ? cards : [textElement("li", none, "item-none")]));
  fill(
    "releases-pending",
    contexts
      .filter((c) => c.request.status === "pending" && active.decides(c.request))
      .map((c) => releaseCard(c, "decide")),
    active.isDisclosureOfficer ? "Nothing waits for you to decide." : "You decide no releases.",
  );
  fill(
    "releases-approved",
    contexts.filter((c) => c.request.status === "approved").map((c) => releaseCard(c, "carry")),
    "No approved release waits to be carried out.",
  );
  fill(
    "releases-mine",
    contexts.filter((c) => c.request.requested_by === me).map((c) => releaseCard(c, "mine")),
    "You have asked for no release.",
  );
}

async function showReleases(): Promise<void> {
  show("releases");
  byId("releases-outcome").textContent = "";
  byId("releases-intro").textContent = releases?.isDisclosureOfficer
    ? `As a disclosure officer of ${session?.certificate.nationality}, you approve or refuse ` +
      "requests to release your nation's items to further nations. Approving seals the item's " +
      "key in this page to the devices the wider label admits."
    : "The release requests you made, and how they were decided.";
  byId("releases-title").focus();
  say("Reading the release requests…");
  try {
    await renderReleases();
    const waiting = byId("releases-pending").querySelectorAll(".release").length;
    say(`Release requests: ${waiting} waiting for you to decide.`);
  } catch (error) {
    problem(explain(error));
    say("");
  }
}

// --- Committees (members) ----------------------------------------------------------------------

/** "2026-12-01 10:00 UTC", or "(no time)" for none. */
function utc(moment: Date | null): string {
  if (moment === null || Number.isNaN(moment.getTime())) return "(no time)";
  return `${moment.toISOString().replace("T", " ").slice(0, 16)} UTC`;
}

function meetingStatus(startsAt: Date, cancelledAt: Date | null): string {
  if (cancelledAt !== null) return "cancelled";
  return startsAt.getTime() <= Date.now() ? "held" : "scheduled";
}

/**
 * One committee message between its two banners (rendered here from the label its sender
 * signed, in the level's colour), with its heading and lines as text; or, when it did not
 * verify or was not given to this device, a warning and none of its content.
 */
function entryElement(entry: CommitteeEntry, what: string, heading: string, lines: string[]) {
  const item = document.createElement("li");
  item.className = "item";
  item.dataset.message = entry.messageId;
  if (!entry.verified) {
    item.classList.add("item-warning");
    if (entry.problem === NOT_CLEARED) {
      item.append(
        textElement("strong", `This ${what} was not released to you and is not shown.`),
        textElement("p", `The server lists message ${entry.messageId} here.`, "item-claim"),
      );
      return item;
    }
    item.append(
      textElement("strong", `This ${what} failed verification and is not shown.`),
      textElement("p", entry.problem ?? "", "item-problem"),
      textElement(
        "p",
        `The server calls it ${entry.banner}` +
          (entry.sender ? `, from ${entry.sender}` : "") +
          ` (message ${entry.messageId}).`,
        "item-claim",
      ),
    );
    return item;
  }
  item.setAttribute("aria-label", `${entry.banner}: ${heading}`);
  const released = entry.releasedBy
    ? `; released by ${entry.releasedBy}` +
      (entry.originalBanner ? ` (sent as ${entry.originalBanner})` : "")
    : "";
  const list = document.createElement("ul");
  list.className = "item-lines";
  list.append(...lines.map((line) => textElement("li", line)));
  item.append(
    banner(entry.banner, entry.colour, "top"),
    textElement("h4", heading, "item-title"),
    ...(lines.length > 0 ? [list] : []),
    textElement(
      "p",
      `${entry.sender} (${entry.senderNation}) at ${utc(entry.sentAt)}${released}`,
      "item-meta",
    ),
    banner(entry.banner, entry.colour, "bottom"),
  );
  return item;
}

function none(text: string): HTMLElement {
  return textElement("li", text, "item-none");
}

// The origin-private file system holds a download while it is decrypted (never the page's
// memory), under downloads/ in a folder of this page's own (other tabs keep theirs); it is
// offered for saving only once verified. The page's folder is emptied at sign-out, and
// downloads/ as a whole when the page starts with no other tab of the origin open (a shared
// Web Lock, held for the page's life, says which tabs are open).
const DOWNLOADS = "downloads";
const DOWNLOADS_LOCK = "attache-downloads";
const TAB = crypto.randomUUID();

async function clearDownloads(): Promise<void> {
  for (const url of offered) URL.revokeObjectURL(url);
  offered = [];
  try {
    const root = await navigator.storage.getDirectory();
    const folder = await root.getDirectoryHandle(DOWNLOADS);
    await folder.removeEntry(TAB, { recursive: true });
  } catch {
    // Nothing there, or no origin-private file system: nothing to clear.
  }
}

/** At start: what earlier pages left (a tab closed mid-download, or without signing out),
 * unless another tab of the origin is open and may be using its own. */
async function clearStaleDownloads(): Promise<void> {
  if (!navigator.locks) return;
  await navigator.locks.request(
    DOWNLOADS_LOCK,
    { mode: "exclusive", ifAvailable: true },
    async (lock) => {
      if (lock === null) return;
      try {
        const root = await navigator.storage.getDirectory();
        await root.removeEntry(DOWNLOADS, { recursive: true });
      } catch {
        // Nothing there, or no origin-private file system: nothing to clear.
      }
    },
  );
  // Held until the page goes: the next page to start knows this one is open.
  void navigator.locks.request(DOWNLOADS_LOCK, { mode: "shared" }, () => new Promise(() => {}));
}

/** A file in the origin-private file system, written through a swap file that becomes the
 * file only when closed; aborted, it is removed. */
async function fileSink(versionId: string): Promise<{ sink: Sink; file: () => Promise<File> }> {
  const root = await navigator.storage.getDirectory();
  const downloads = await root.getDirectoryHandle(DOWNLOADS, { create: true });
  const folder = await downloads.getDirectoryHandle(TAB, { create: true });
  const name = versionId.replace(/[^A-Za-z0-9-]/g, "_");
  const handle = await folder.getFileHandle(name, { create: true });
  const writable = await handle.createWritable({ keepExistingData: false });
  return {
    sink: {
      write: (chunk) => writable.write(chunk as Uint8Array<ArrayBuffer>),
      close: () => writable.close(),
      abort: async () => {
        await writable.abort().catch(() => undefined);
        await folder.removeEntry(name).catch(() => undefined);
      },
    },
    file: () => handle.getFile(),
  };
}

function bytes(size: number): string {
  return `${size.toLocaleString("en")} byte${size === 1 ? "" : "s"}`;
}

/** An attached document version: its own banner, what its sender signed, and a download. */
function documentElement(versionId: string, opened: OpenedVersion | Error | undefined) {
  const box = document.createElement("div");
  box.className = "document";
  box.dataset.version = versionId;
  if (opened === undefined || opened instanceof Error) {
    box.classList.add("item-warning");
    box.append(
      textElement("strong", "A document that is not offered:"),
      textElement("p", opened ? explain(opened) : `version ${versionId}`, "item-problem"),
    );
    return box;
  }
  const released = opened.releasedBy
    ? `; released by ${opened.releasedBy}` +
      (opened.originalBanner ? ` (sent as ${opened.originalBanner})` : "")
    : opened.sharedBy
      ? `; shared by ${opened.sharedBy}`
      : "";
  const nameId = `document-${versionId}`;
  const name = textElement("p", opened.filename, "document-name");
  name.id = nameId;
  const button = textElement("button", "Download and verify") as HTMLButtonElement;
  button.type = "button";
  button.setAttribute("aria-describedby", nameId);
  const progress = document.createElement("progress");
  progress.max = Math.max(opened.size, 1);
  progress.value = 0;
  progress.hidden = true;
  progress.setAttribute("aria-label", `Downloading ${opened.filename}`);
  const state = textElement("p", "", "document-state");
  state.setAttribute("aria-live", "polite");
  const save = document.createElement("a");
  save.className = "document-save";
  save.hidden = true;
  button.addEventListener("click", () => {
    void fetchDocument(opened, { button, progress, state, save });
  });
  box.append(
    banner(opened.banner, opened.colour, "top"),
    name,
    textElement(
      "p",
      `Version ${opened.number}, ${bytes(opened.size)}, from ${opened.sender} ` +
        `(${opened.senderNation})${released}.`,
      "document-meta",
    ),
    button,
    progress,
    state,
    save,
  );
  return box;
}

/** Download, decrypt chunk by chunk into the origin-private file system, and offer the file
 * for saving once its signature and content hash have verified. */
async function fetchDocument(
  opened: OpenedVersion,
  view: {
    button: HTMLButtonElement;
    progress: HTMLProgressElement;
    state: HTMLElement;
    save: HTMLAnchorElement;
  },
): Promise<void> {
  const { button, progress, state, save } = view;
  button.disabled = true;
  save.hidden = true;
  progress.hidden = false;
  progress.value = 0;
  state.className = "document-state";
  state.textContent = `Downloading and verifying ${opened.filename}…`;
  say(state.textContent);
  let shown = 0;
  try {
    const target = await fileSink(opened.versionId);
    await downloadVersion(api, opened, target.sink, (done, size) => {
      progress.value = done;
      // The text (read out by screen readers) every 4 MiB and at the end, not every chunk.
      if (done - shown >= 4 * 1024 * 1024 || done === size) {
        shown = done;
        state.textContent = `Downloaded and decrypted ${bytes(done)} of ${bytes(size)}…`;
      }
    });
    const url = URL.createObjectURL(await target.file());
    offered.push(url);
    save.href = url;
    save.download = opened.filename;
    save.textContent = `Save ${opened.filename}`;
    save.hidden = false;
    progress.value = progress.max;
    state.textContent =
      `Verified: every chunk, the length and the sender's signature over the content hash ` +
      `check out. Save it below.`;
    say(`${opened.filename} verified.`);
    save.focus();
  } catch (error) {
    progress.hidden = true;
    state.className = "document-state item-problem";
    state.textContent = explain(error);
    say("");
  } finally {
    button.disabled = false;
  }
}

function renderAgenda(
  agenda: MeetingAgenda,
  versions: ReadonlyMap<string, OpenedVersion | Error>,
  move: ((index: number, by: -1 | 1) => void) | null = null,
): void {
  const title = agenda.info.verified ? agenda.info.fields.title! : "A meeting";
  byId("meeting-title").textContent = title;
  const status = meetingStatus(agenda.startsAt, agenda.cancelledAt);
  byId("meeting-when").textContent =
    `${utc(agenda.startsAt)}, ${status}` +
    (agenda.cancelledAt ? ` (cancelled ${utc(agenda.cancelledAt)})` : "") +
    `; meeting ${agenda.meetingId}.`;
  const place = agenda.info.fields.place;
  byId("meeting-info").replaceChildren(
    entryElement(agenda.info, "meeting", title, [`Place: ${place ?? "-"}`]),
  );
  byId("agenda").replaceChildren(
    ...(agenda.items.length === 0
      ? [none("No agenda items for you.")]
      : agenda.items.map((item, index) => {
          const { fields } = item.entry;
          const lines: string[] = [];
          if (fields.presenter) lines.push(`Presenter: ${fields.presenter}`);
          if (fields.notes) lines.push(fields.notes);
          const element = entryElement(
            item.entry,
            "agenda item",
            `${index + 1}. ${fields.title ?? ""}`,
            lines,
          );
          element.dataset.item = item.itemId;
          if (move !== null && agenda.items.length > 1) {
            // The chair's and the secretary's: the agenda in a new order, by button.
            const name = `item ${index + 1}${fields.title ? `, ${fields.title}` : ""}`;
            const buttons = document.createElement("div");
            for (const [by, word] of [
              [-1, "up"],
              [1, "down"],
            ] as const) {
              if ((by === -1 && index === 0) || (by === 1 && index === agenda.items.length - 1)) {
                continue;
              }
              const button = textElement("button", `Move ${word}`, "agenda-move");
              (button as HTMLButtonElement).type = "button";
              button.dataset.move = word;
              button.setAttribute("aria-label", `Move ${name} ${word}`);
              button.addEventListener("click", () => move(index, by));
              buttons.append(button);
            }
            element.append(buttons);
          }
          if (item.entry.verified && item.documents.length > 0) {
            const list = document.createElement("div");
            list.className = "documents";
            list.setAttribute("aria-label", "Documents");
            list.append(...item.documents.map((v) => documentElement(v, versions.get(v))));
            element.querySelector(".item-meta")!.before(list);
          }
          return element;
        })),
  );
  byId("minutes").replaceChildren(
    agenda.minutes === null
      ? none("No minutes recorded yet.")
      : entryElement(agenda.minutes, "record of minutes", "Minutes", [
          agenda.minutes.fields.text ?? "",
        ]),
  );
  byId("actions").replaceChildren(
    ...(agenda.actionItems.length === 0
      ? [none("No action items for you.")]
      : agenda.actionItems.map((action) => {
          const { fields } = action.entry;
          const lines = [
            `Owner: ${fields.owner ?? "-"}; due: ${fields.due ?? "-"}; status: ${action.status ?? "-"}`,
            ...action.updates.map((update) =>
              update.verified
                ? `Update by ${update.sender} (${update.senderNation}) at ${utc(update.sentAt)}: ` +
                  `${update.fields.status}` +
                  (update.fields.note ? `, ${update.fields.note}` : "")
                : `An update that is not shown: ${update.problem}`,
            ),
          ];
          const element = entryElement(
            action.entry,
            "action item",
            fields.description ?? "",
            lines,
          );
          element.dataset.item = action.itemId;
          return element;
        })),
  );
}

/** The meeting on screen: what the upload form needs of it. */
let shownMeeting: {
  committee: CommitteeRead;
  summary: MeetingSummary;
  agenda: MeetingAgenda;
  channel: ChannelRead;
} | null = null;

async function showMeeting(
  committee: CommitteeRead,
  summary: MeetingSummary,
  focus = true,
): Promise<void> {
  if (committees === null) return;
  const active = committees;
  say("Opening the meeting…");
  const [agenda, channel] = await Promise.all([
    active.agenda(summary.meeting.id),
    api.request<ChannelRead>("GET", `/v1/channels/${segment(committee.channel_id)}`),
  ]);
  // Each attached version opened and checked (not downloaded) to show what its sender signed.
  const versions = new Map<string, OpenedVersion | Error>();
  await Promise.all(
    agenda.items
      .filter((item) => item.entry.verified)
      .flatMap((item) => item.documents)
      .map(async (id) => {
        try {
          versions.set(id, await openVersion(api, reader!, id));
        } catch (error) {
          versions.set(id, error instanceof Error ? error : new Error(String(error)));
        }
      }),
  );
  if (active !== committees) return;
  const movable = manages(committee) && agenda.cancelledAt === null;
  renderAgenda(agenda, versions, movable ? (index, by) => void moveItem(index, by) : null);
  const again = shownMeeting?.agenda.meetingId === agenda.meetingId;
  shownMeeting = { committee, summary, agenda, channel };
  renderUploadForm(again);
  renderWriteForms(again);
  show("meeting");
  if (focus) byId("meeting-title").focus();
  const shown = agenda.items.length;
  say(`${byId("meeting-title").textContent}: ${shown} agenda item${shown === 1 ? "" : "s"}.`);
}

/** Whether this user runs the committee (chair or secretary): only they attach documents. */
function manages(committee: CommitteeRead): boolean {
  const me = session?.certificate.userId;
  return me === committee.chair.user_id || me === committee.secretary.user_id;
}

/**
 * The upload form under the meeting: the committee channel's labels (its default chosen) and
 * who a version under the one picked would reach; for the chair and the secretary of a meeting
 * not cancelled, the agenda items it may be attached to. `again`: the same meeting, redrawn
 * after an upload, whose choices and last outcome stay.
 */
function renderUploadForm(again: boolean): void {
  if (shownMeeting === null) return;
  const { committee, agenda, channel } = shownMeeting;
  const picker = byId<HTMLSelectElement>("upload-label");
  const chosen = again ? picker.value : channel.default_label;
  picker.replaceChildren(
    ...channel.labels.map((banner) => {
      const option = document.createElement("option");
      option.value = banner;
      option.textContent = banner === channel.default_label ? `${banner} (default)` : banner;
      option.selected = banner === chosen;
      return option;
    }),
  );
  const attaching = manages(committee) && agenda.cancelledAt === null;
  const items = byId<HTMLSelectElement>("upload-item");
  const item = again ? items.value : "";
  const none = document.createElement("option");
  none.value = "";
  none.textContent = "None: upload to the committee only";
  items.replaceChildren(
    none,
    ...agenda.items
      .filter((entry) => entry.entry.verified)
      .map((entry) => {
        const option = document.createElement("option");
        option.value = entry.itemId;
        const number = agenda.items.indexOf(entry) + 1;
        option.textContent = `${number}. ${entry.entry.fields.title ?? ""} (${entry.entry.banner})`;
        option.selected = entry.itemId === item;
        return option;
      }),
  );
  byId("upload-attach").hidden = !attaching;
  byId("upload-intro").textContent =
    "The file is encrypted in this page, a piece at a time, for the committee members its " +
    "label admits, and uploaded to the committee's channel" +
    (attaching
      ? "; choose an agenda item to attach it to."
      : ". The chair or the secretary attaches documents to agenda items.");
  if (!again) {
    byId("upload-state").textContent = "";
    byId("upload-progress").hidden = true;
  }
  void showUploadReach();
}

/** Who a version under the label picked would be released to, as the page would seal it. */
async function showUploadReach(): Promise<void> {
  if (sender === null || shownMeeting === null) return;
  const meeting = shownMeeting;
  const output = byId("upload-reach");
  const banner = byId<HTMLSelectElement>("upload-label").value;
  output.textContent = "";
  try {
    const reach = await sender.preview(meeting.channel, banner);
    if (shownMeeting === meeting) output.textContent = `Will be released to: ${reachText(reach)}`;
  } catch (error) {
    if (shownMeeting === meeting) output.textContent = explain(error);
  }
}

/** Upload the file chosen, with a progress bar; then attach it to the item chosen, if any. */
async function uploadDocument(form: HTMLFormElement): Promise<void> {
  const meeting = shownMeeting;
  const input = byId<HTMLInputElement>("upload-file");
  const file = input.files?.[0];
  const state = byId("upload-state");
  const progress = byId<HTMLProgressElement>("upload-progress");
  if (meeting === null || sender === null || session === null || committees === null) return;
  state.className = "document-state";
  if (file === undefined) {
    state.className = "document-state item-problem";
    state.textContent = "Choose a file to upload first.";
    input.focus();
    return;
  }
  const banner = byId<HTMLSelectElement>("upload-label").value;
  const itemId = byId("upload-attach").hidden ? "" : byId<HTMLSelectElement>("upload-item").value;
  const controls = [...form.elements] as (HTMLInputElement | HTMLButtonElement)[];
  for (const control of controls) control.disabled = true;
  form.setAttribute("aria-busy", "true");
  progress.hidden = false;
  progress.max = Math.max(file.size, 1);
  progress.value = 0;
  progress.setAttribute("aria-label", `Uploading ${file.name}`);
  state.textContent = `Encrypting and uploading ${file.name}…`;
  say(state.textContent);
  let shown = 0;
  try {
    const me = session.certificate;
    const uploaded = await uploadVersion(
      api,
      sender,
      { userId: me.userId, deviceId: me.deviceId, nationality: me.nationality, keys: session.keys },
      meeting.channel,
      file,
      {
        label: banner,
        progress: (done, size) => {
          progress.value = done;
          // The text (read out by screen readers) every 4 MiB and at the end, not every piece.
          if (done - shown >= 4 * 1024 * 1024 || done === size) {
            shown = done;
            state.textContent = `Uploaded ${bytes(done)} of ${bytes(size)}…`;
          }
        },
      },
    );
    progress.value = progress.max;
    const what =
      `Uploaded ${uploaded.filename} (${bytes(uploaded.size)}) under ${uploaded.banner} to ` +
      `the committee's channel: version ${uploaded.versionId}.`;
    if (itemId === "") {
      state.textContent = what;
    } else {
      try {
        await committees.attach(meeting.agenda.meetingId, itemId, uploaded.versionId);
        const number = meeting.agenda.items.findIndex((i) => i.itemId === itemId) + 1;
        state.textContent = `${what} Attached to agenda item ${number}.`;
        await showMeeting(meeting.committee, meeting.summary, false);
      } catch (error) {
        state.className = "document-state item-problem";
        state.textContent = `${what} Not attached: ${explain(error)}`;
      }
    }
    input.value = "";
    say(state.textContent);
  } catch (error) {
    progress.hidden = true;
    state.className = "document-state item-problem";
    state.textContent = explain(error);
    say("");
  } finally {
    for (const control of controls) control.disabled = false;
    form.removeAttribute("aria-busy");
  }
}

// --- Committees (chairs and secretaries write) ---------------------------------------------------

/** The committees on screen that this user runs, and their channels once fetched. */
let managed: CommitteeRead[] = [];
const committeeChannels = new Map<string, ChannelRead>();

async function committeeChannel(committee: CommitteeRead): Promise<ChannelRead> {
  let channel = committeeChannels.get(committee.channel_id);
  if (channel === undefined) {
    channel = await api.request<ChannelRead>(
      "GET",
      `/v1/channels/${segment(committee.channel_id)}`,
    );
    committeeChannels.set(committee.channel_id, channel);
  }
  return channel;
}

/** A label picker offering the channel's labels, `chosen` selected (else the default). */
function fillPicker(picker: HTMLSelectElement, channel: ChannelRead, chosen: string | null): void {
  const keep = chosen !== null && channel.labels.includes(chosen) ? chosen : channel.default_label;
  picker.replaceChildren(
    ...channel.labels.map((label) => {
      const option = document.createElement("option");
      option.value = label;
      option.textContent = label === channel.default_label ? `${label} (default)` : label;
      option.selected = label === keep;
      return option;
    }),
  );
}

/** Options of `select` as text, `keep` chosen when still offered. */
function fillOptions(select: HTMLSelectElement, options: [string, string][], keep: string): void {
  select.replaceChildren(
    ...options.map(([value, text]) => {
      const option = document.createElement("option");
      option.value = value;
      option.textContent = text;
      option.selected = value === keep;
      return option;
    }),
  );
}

/** Who an entry under `banner` would be released to, as the page would seal it now. */
async function writeReach(
  output: HTMLElement,
  channel: ChannelRead,
  banner: string,
  prefix = "",
): Promise<void> {
  if (sender === null) return;
  output.textContent = "";
  try {
    const reach = await sender.preview(channel, banner);
    output.textContent = `${prefix}Will be released to: ${reachText(reach)}`;
  } catch (error) {
    output.textContent = `${prefix}${explain(error)}`;
  }
}

/** A refusal as one sentence saying what went wrong and what to do. */
function refusal(error: unknown): string {
  const said = explain(error);
  if (!(error instanceof ApiError)) return said;
  const end = /[.!?]$/.test(said) ? "" : ".";
  if (error.status === 403) {
    return `${said}${end} Ask the committee's chair or secretary to do it.`;
  }
  if (error.status === 404) return `${said}${end} Go back to the committees and open it again.`;
  if (error.status === 409) return `${said}${end} Open the meeting again to see where it stands.`;
  if (error.status === 422) return `${said}${end} Correct it and try again.`;
  return said;
}

/** Run a form's write with its controls disabled; the outcome (or refusal) in `state`. */
async function writing(
  form: HTMLFormElement,
  state: HTMLElement,
  work: () => Promise<string>,
): Promise<void> {
  const controls = [...form.elements] as (HTMLInputElement | HTMLButtonElement)[];
  for (const control of controls) control.disabled = true;
  form.setAttribute("aria-busy", "true");
  state.className = "document-state";
  state.textContent = "Encrypting and sending…";
  problem(null);
  try {
    const done = await work();
    state.textContent = done;
    say(done);
  } catch (error) {
    state.className = "document-state item-problem";
    state.textContent = refusal(error);
    say("");
  } finally {
    for (const control of controls) control.disabled = false;
    form.removeAttribute("aria-busy");
    state.focus(); // the outcome, where a keyboard user goes on from (and a reader reads)
  }
}

function released(sent: { banner: string; people: string[] }): string {
  return `under ${sent.banner}, released to ${sent.people.join(", ")}`;
}

/** The input's value trimmed, or null when empty (a field the SDK leaves out). */
function optional(id: string): string | null {
  const value = byId<HTMLInputElement | HTMLTextAreaElement>(id).value.trim();
  return value === "" ? null : value;
}

/** A `datetime-local` value read as UTC, or null. */
function utcStart(value: string): Date | null {
  const match = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2})(:\d{2}(\.\d+)?)?$/.exec(value);
  if (match === null) return null;
  const moment = new Date(`${match[1]}${match[2] ?? ":00"}Z`);
  return Number.isNaN(moment.getTime()) ? null : moment;
}

/** The schedule form under the committees: for the committees this user chairs or is
 * secretary of (the server lets only them schedule), each with its channel's labels. */
function renderScheduleForm(found: CommitteeRead[]): void {
  managed = found.filter(manages);
  const form = byId("schedule");
  form.hidden = managed.length === 0;
  byId("schedule-who").textContent =
    managed.length === 0
      ? "Only a committee's chair or secretary schedules its meetings; in your committees you " +
        "are neither."
      : `As chair or secretary, you schedule the meetings of ${managed
          .map((c) => c.name)
          .join(", ")}. The meeting's title and place are encrypted in this page for the ` +
        "members its label admits.";
  const select = byId<HTMLSelectElement>("schedule-committee");
  fillOptions(
    select,
    managed.map((c) => [c.id, c.name]),
    select.value,
  );
  void scheduleCommitteeChanged();
}

async function scheduleCommitteeChanged(): Promise<void> {
  const committee = managed.find(
    (c) => c.id === byId<HTMLSelectElement>("schedule-committee").value,
  );
  if (committee === undefined) return;
  const picker = byId<HTMLSelectElement>("schedule-label");
  try {
    const channel = await committeeChannel(committee);
    fillPicker(picker, channel, picker.value || null);
    await writeReach(byId("schedule-reach"), channel, picker.value);
  } catch (error) {
    byId("schedule-reach").textContent = explain(error);
  }
}

async function scheduleMeeting(form: HTMLFormElement): Promise<void> {
  const committee = managed.find(
    (c) => c.id === byId<HTMLSelectElement>("schedule-committee").value,
  );
  const state = byId("schedule-state");
  if (committee === undefined || committees === null || sender === null) return;
  const active = committees;
  const writer = sender;
  const starts = utcStart(byId<HTMLInputElement>("schedule-start").value);
  if (starts === null) {
    state.className = "document-state item-problem";
    state.textContent = "Give the meeting's start as a date and a time (UTC).";
    byId("schedule-start").focus();
    return;
  }
  const title = byId<HTMLInputElement>("schedule-name").value;
  const banner = byId<HTMLSelectElement>("schedule-label").value;
  await writing(form, state, async () => {
    const channel = await committeeChannel(committee);
    const { meeting, sent } = await active.scheduleMeeting(
      writer,
      committee,
      channel,
      starts,
      title,
      optional("schedule-place"),
      banner,
    );
    byId<HTMLInputElement>("schedule-name").value = "";
    byId<HTMLInputElement>("schedule-place").value = "";
    await listCommittees();
    return `Scheduled ${title} for ${utc(starts)} in ${committee.name}, ${released(sent)}: meeting ${meeting.id}.`;
  });
}

/** The write forms under a meeting, as the server decides who may use them: the chair and
 * the secretary add agenda items, minutes and action items to a meeting not cancelled; any
 * member who can read an action item posts updates to it. */
function renderWriteForms(again: boolean): void {
  if (shownMeeting === null) return;
  const { committee, agenda, channel } = shownMeeting;
  const running = manages(committee) && agenda.cancelledAt === null;
  const actions = agenda.actionItems.filter((a) => a.entry.verified);
  for (const id of ["agenda-add", "minutes-add", "action-add"]) byId(id).hidden = !running;
  byId("action-update").hidden = actions.length === 0 || agenda.cancelledAt !== null;
  byId("write-who").textContent =
    agenda.cancelledAt !== null
      ? "The meeting is cancelled: nothing more is added to it."
      : running
        ? "As the committee's chair or secretary, you add agenda items, record the minutes and " +
          "add action items; any member who can read an action item posts updates to it. Each " +
          "is encrypted in this page for the members its label admits."
        : `Only the committee's chair (${committee.chair.username}) or secretary ` +
          `(${committee.secretary.username}) adds agenda items, minutes and action items; ` +
          "you may post updates to the action items you can read.";
  for (const id of ["agenda-add", "minutes-add", "action-add"]) {
    const picker = byId<HTMLSelectElement>(`${id}-label`);
    fillPicker(picker, channel, again ? picker.value : null);
    if (!again) byId(`${id}-state`).textContent = "";
    if (running) void writeReach(byId(`${id}-reach`), channel, picker.value);
  }
  const owner = byId<HTMLSelectElement>("action-add-owner");
  fillOptions(
    owner,
    committee.members.map((m) => [m.username, `${m.username} (${m.nationality ?? "no nation"})`]),
    again ? owner.value : "",
  );
  const item = byId<HTMLSelectElement>("action-update-item");
  fillOptions(
    item,
    actions.map((a) => [
      a.itemId,
      `${a.entry.fields.description ?? ""} (${a.entry.fields.owner ?? "-"}, ${a.status ?? "-"})`,
    ]),
    again ? item.value : "",
  );
  const status = byId<HTMLSelectElement>("action-update-status");
  fillOptions(
    status,
    STATUSES.map((s) => [s, s]),
    again ? status.value : "in-progress",
  );
  if (!again) byId("action-update-state").textContent = "";
  void updateReach();
}

/** An update goes under its action item's own label: who that reaches, said before sending. */
async function updateReach(): Promise<void> {
  const meeting = shownMeeting;
  if (meeting === null) return;
  const itemId = byId<HTMLSelectElement>("action-update-item").value;
  const action = meeting.agenda.actionItems.find((a) => a.itemId === itemId);
  if (action === undefined) return;
  await writeReach(
    byId("action-update-reach"),
    meeting.channel,
    action.entry.banner,
    `Sent under the action item's own label, ${action.entry.banner}. `,
  );
}

/** Read the meeting again after a write, keeping the forms' choices and outcomes. */
async function meetingAgain(): Promise<void> {
  const meeting = shownMeeting;
  if (meeting !== null) await showMeeting(meeting.committee, meeting.summary, false);
}

function meetingRef(): { meetingId: string; channelId: string } {
  const { agenda } = shownMeeting!;
  return { meetingId: agenda.meetingId, channelId: agenda.channelId };
}

async function addAgendaItem(form: HTMLFormElement): Promise<void> {
  const meeting = shownMeeting;
  if (meeting === null || committees === null || sender === null) return;
  const [active, writer] = [committees, sender];
  const title = byId<HTMLInputElement>("agenda-add-name").value;
  const banner = byId<HTMLSelectElement>("agenda-add-label").value;
  const item = {
    title,
    presenter: optional("agenda-add-presenter"),
    notes: optional("agenda-add-notes"),
  };
  await writing(form, byId("agenda-add-state"), async () => {
    const { sent } = await active.addAgendaItem(
      writer,
      meetingRef(),
      meeting.channel,
      item,
      banner,
    );
    for (const id of ["agenda-add-name", "agenda-add-presenter", "agenda-add-notes"]) {
      byId<HTMLInputElement>(id).value = "";
    }
    await meetingAgain();
    const count = shownMeeting?.agenda.items.length ?? 0;
    return `Added agenda item ${count}, ${title}, ${released(sent)}.`;
  });
}

async function recordMinutes(form: HTMLFormElement): Promise<void> {
  const meeting = shownMeeting;
  if (meeting === null || committees === null || sender === null) return;
  const [active, writer] = [committees, sender];
  const text = byId<HTMLTextAreaElement>("minutes-add-text").value;
  const banner = byId<HTMLSelectElement>("minutes-add-label").value;
  await writing(form, byId("minutes-add-state"), async () => {
    const sent = await active.recordMinutes(writer, meetingRef(), meeting.channel, text, banner);
    byId<HTMLTextAreaElement>("minutes-add-text").value = "";
    await meetingAgain();
    return `Recorded the minutes, ${released(sent)}.`;
  });
}

async function addActionItem(form: HTMLFormElement): Promise<void> {
  const meeting = shownMeeting;
  if (meeting === null || committees === null || sender === null) return;
  const [active, writer] = [committees, sender];
  const description = byId<HTMLTextAreaElement>("action-add-text").value;
  const owner = byId<HTMLSelectElement>("action-add-owner").value;
  const due = optional("action-add-due");
  const banner = byId<HTMLSelectElement>("action-add-label").value;
  await writing(form, byId("action-add-state"), async () => {
    const { sent } = await active.addActionItem(
      writer,
      meetingRef(),
      meeting.channel,
      { description, owner, due },
      banner,
    );
    byId<HTMLTextAreaElement>("action-add-text").value = "";
    byId<HTMLInputElement>("action-add-due").value = "";
    await meetingAgain();
    return `Added the action item for ${owner}${due ? `, due ${due}` : ""}, ${released(sent)}.`;
  });
}

async function updateActionItem(form: HTMLFormElement): Promise<void> {
  const meeting = shownMeeting;
  if (meeting === null || committees === null || sender === null) return;
  const [active, writer] = [committees, sender];
  const itemId = byId<HTMLSelectElement>("action-update-item").value;
  const status = byId<HTMLSelectElement>("action-update-status").value;
  const note = optional("action-update-note");
  await writing(form, byId("action-update-state"), async () => {
    const { sent } = await active.updateActionItem(writer, itemId, meeting.channel, status, note);
    byId<HTMLTextAreaElement>("action-update-note").value = "";
    await meetingAgain();
    return `Posted the update (${status}), ${released(sent)}.`;
  });
}

/** Move agenda item `index` up or down: every item this user sees, in the new order. */
async function moveItem(index: number, by: -1 | 1): Promise<void> {
  const meeting = shownMeeting;
  if (meeting === null || committees === null) return;
  const ids = meeting.agenda.items.map((i) => i.itemId);
  const [moved] = ids.splice(index, 1);
  ids.splice(index + by, 0, moved!);
  problem(null);
  try {
    await committees.reorderAgenda(meeting.agenda.meetingId, ids);
    await meetingAgain();
    const place = index + by;
    const word = by === -1 ? "up" : "down";
    say(`Moved agenda item ${index + 1} ${word}: it is item ${place + 1} now.`);
    const element = byId("agenda").children[place];
    const button = element?.querySelector<HTMLButtonElement>(`button[data-move="${word}"]`);
    (button ?? element?.querySelector<HTMLButtonElement>("button.agenda-move"))?.focus();
  } catch (error) {
    problem(refusal(error));
    say("");
  }
}

function meetingButton(committee: CommitteeRead, summary: MeetingSummary): HTMLElement {
  const { meeting, info } = summary;
  const starts = new Date(meeting.starts_at);
  const cancelled = meeting.cancelled_at === null ? null : new Date(meeting.cancelled_at);
  const title = info.verified
    ? info.fields.title!
    : info.problem === NOT_CLEARED
      ? "(a meeting whose title was not released to you)"
      : "(a meeting whose title failed verification)";
  const item = document.createElement("li");
  const button = textElement(
    "button",
    `${utc(starts)}, ${meetingStatus(starts, cancelled)}: ${title}`,
    "meeting-open",
  ) as HTMLButtonElement;
  button.type = "button";
  button.dataset.meeting = meeting.id;
  button.addEventListener("click", () => {
    problem(null);
    void showMeeting(committee, summary).catch((error: unknown) => {
      problem(explain(error));
      say("");
    });
  });
  item.append(button);
  return item;
}

async function committeeElement(committee: CommitteeRead): Promise<HTMLElement> {
  const item = document.createElement("li");
  const headingId = `committee-${committee.id}`;
  const heading = textElement("h3", committee.name);
  heading.id = headingId;
  const members = committee.members
    .map((m) => `${m.username} (${m.nationality ?? "no nation"})`)
    .join(", ");
  const list = document.createElement("ul");
  list.className = "meetings";
  list.setAttribute("aria-labelledby", headingId);
  const summaries = committees === null ? [] : await committees.meetings(committee);
  list.append(
    ...(summaries.length === 0
      ? [none("No meetings for you yet.")]
      : summaries.map((summary) => meetingButton(committee, summary))),
  );
  item.append(
    heading,
    textElement(
      "p",
      `Ceiling ${committee.ceiling}; chair ${committee.chair.username}, secretary ` +
        `${committee.secretary.username}; members: ${members}.`,
      "item-meta",
    ),
    list,
  );
  return item;
}

/** The committees and their meetings, read afresh; and the schedule form for those run here. */
async function listCommittees(): Promise<CommitteeRead[]> {
  if (committees === null) return [];
  const found = await committees.list();
  const items = await Promise.all(found.map(committeeElement));
  byId("committee-list").replaceChildren(
    ...(items.length === 0 ? [none("You are in no committee.")] : items),
  );
  renderScheduleForm(found);
  return found;
}

async function showCommittees(): Promise<void> {
  if (committees === null) return;
  show("committees");
  byId("committees-title").focus();
  say("Reading your committees…");
  try {
    const found = await listCommittees();
    say(`${found.length} committee${found.length === 1 ? "" : "s"}.`);
  } catch (error) {
    problem(explain(error));
    say("");
  }
}

// --- The audit log (auditors) -------------------------------------------------------------------

function renderAudit(): void {
  byId("audit-head").replaceChildren(
    ...TABLE_COLUMNS.map(([name]) => {
      const heading = textElement("th", name);
      heading.setAttribute("scope", "col");
      return heading;
    }),
  );
  byId("audit-rows").replaceChildren(
    ...auditEntries.map((entry) => {
      const row = document.createElement("tr");
      if (entry.event.decision === "deny") row.className = "deny";
      row.append(...TABLE_COLUMNS.map(([, cell]) => textElement("td", cell(entry))));
      return row;
    }),
  );
  const count = auditEntries.length;
  byId("audit-count").textContent = auditQueried
    ? `${count} event${count === 1 ? "" : "s"}.`
    : "Choose the filters (all optional), then show the events.";
  byId<HTMLButtonElement>("audit-csv").disabled = count === 0;
  byId<HTMLButtonElement>("audit-json").disabled = count === 0;
}

/** A file made in the page, offered for saving: nothing leaves the page to make it. */
function download(text: string, name: string, type: string): void {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const link = document.createElement("a");
  link.href = url;
  link.download = name;
  link.hidden = true;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

function exportName(extension: string): string {
  return `attache-audit-${new Date().toISOString().slice(0, 19).replaceAll(":", "")}Z.${extension}`;
}

function showVerdict(report: VerifyReport): void {
  const verdict = byId("audit-verdict");
  const problems = byId("audit-problems");
  const pinned = report.keyPinnedNow
    ? ` Pinned the server's audit key on first use: compare it with the operator's ` +
      `(attache-server audit key): ${report.vkey}`
    : "";
  if (report.ok) {
    const before = report.previousSize
      ? `, consistent with the ${report.previousSize} verified before`
      : "";
    verdict.className = "verdict-ok";
    verdict.textContent =
      `Audit log verified: ${report.size} leaves, root ${toHex(report.root)}${before}.` + pinned;
    problems.replaceChildren();
    return;
  }
  const where = report.firstBadIndex !== null ? ` (first bad leaf: ${report.firstBadIndex})` : "";
  verdict.className = "verdict-bad";
  verdict.textContent =
    `VERIFICATION FAILED${where}: the audit log does not match what was signed or seen.` + pinned;
  problems.replaceChildren(...report.problems.map((text) => textElement("li", text)));
}

function showAudit(): void {
  show("audit");
  renderAudit();
  byId("audit-title").focus();
  say("The audit log: filter the events, export them, or verify the whole log.");
}

async function showHome(current: Session, record: StoredDevice): Promise<void> {
  const { user } = current;
  byId("whoami").textContent =
    `Signed in as ${user.username} (${user.nationality ?? "no nation"}, cleared ` +
    `${user.clearance ?? "for nothing"}) on device ${current.certificate.deviceId}.`;
  // The coalition policy's catalog when one is held; the server's only when it publishes none.
  const catalog =
    current.policy !== null
      ? current.policy.policy.catalog
      : catalogFromRead(await api.request<CatalogRead>("GET", "/v1/catalog"));
  byId("policy-note").textContent =
    current.policyNote ??
    `Coalition policy version ${current.policy!.policy.policyVersion} holds: nations, groups ` +
      "and labels as the nations signed them.";
  const transparencyNote = byId("transparency-note");
  transparencyNote.textContent = current.transparencyNote ?? "";
  transparencyNote.hidden = current.transparencyNote === null;
  inbox = new Inbox({
    keys: current.keys,
    deviceId: current.certificate.deviceId,
    pins: current.authorities,
    catalog,
  });
  sender = new Sender(
    api,
    {
      userId: current.certificate.userId,
      deviceId: current.certificate.deviceId,
      nationality: current.certificate.nationality,
      keys: current.keys,
    },
    current.authorities,
    catalog,
    current.transparency,
  );
  releases = new Releases(
    api,
    {
      userId: current.certificate.userId,
      deviceId: current.certificate.deviceId,
      nationality: current.certificate.nationality,
      roles: user.roles,
    },
    {
      keys: current.keys,
      deviceId: current.certificate.deviceId,
      pins: current.authorities,
      catalog,
    },
    current.transparency,
  );
  reader = {
    keys: current.keys,
    deviceId: current.certificate.deviceId,
    pins: current.authorities,
    catalog,
  };
  committees = new Committees(api, reader);
  byId("open-audit").hidden = !user.roles.includes("auditor");
  channels = await api.request<ChannelRead[]>("GET", "/v1/channels");
  renderChannels();
  show("home");
  byId("home-title").focus();
  say(`Signed in. ${channels.length} channel${channels.length === 1 ? "" : "s"}.`);
  live = new Live(() => api.token, inbox);
  live.start();
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
      // Checked before anything is made or registered.
      const witnesses = WitnessRequirement.fromForm(
        (enrolForm.elements.namedItem("witnesses") as HTMLTextAreaElement).value,
        field(enrolForm, "min-witnesses").value,
        field(enrolForm, "witness-max-age").value,
      );
      say("Making this device's keys and registering them…");
      const enrolled = await enrol(api, browserStore, {
        username: field(enrolForm, "username").value.trim(),
        code: field(enrolForm, "code").value,
        name: field(enrolForm, "device").value.trim(),
        passphrase,
        expectFounding: parseFoundingDigest(field(enrolForm, "policy").value),
        witnesses,
      });
      enrolForm.reset();
      // Ask the browser not to evict the sealed keys under storage pressure (best effort).
      void navigator.storage?.persist?.().catch(() => false);
      showDevice(enrolled.record, enrolled.device.status);
      show("device", "unlock");
      field(byId<HTMLFormElement>("unlock"), "passphrase").focus();
      say(
        (enrolled.device.status === "pending"
          ? "Enrolled: this device awaits certification by your security officer."
          : "Enrolled: this device is active.") +
          ` Pinned the server's audit key ${enrolled.auditKey}.` +
          (enrolled.witnesses === null
            ? ""
            : ` Witnesses required: ${enrolled.witnesses.describe()}.`),
      );
    });
  });

  const witnessesForm = byId<HTMLFormElement>("witnesses-form");
  witnessesForm.addEventListener("submit", (event) => {
    event.preventDefault();
    void busy(witnessesForm, async () => {
      let record: StoredDevice;
      try {
        const required = WitnessRequirement.fromForm(
          (witnessesForm.elements.namedItem("witnesses") as HTMLTextAreaElement).value,
          field(witnessesForm, "min-witnesses").value,
          field(witnessesForm, "witness-max-age").value,
        );
        record = await requireWitnesses(browserStore, required, {
          loosen: field(witnessesForm, "loosen").checked,
        });
      } catch (error) {
        if (error instanceof WitnessError) throw new Mistake(`Not changed: ${error.message}.`);
        throw error;
      }
      showWitnesses(record);
      const now = witnessesOf(record.transparency ?? null);
      say(
        now === null
          ? "No witness is required any more."
          : `Witnesses required now: ${now.describe()}. Each roster checked from now on is ` +
              "held to them.",
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
      session = await signIn(api, record, keys, browserStore);
      await showHome(session, session.record);
    });
  });

  byId("compose-label").addEventListener("change", () => void showReach());
  const composeForm = byId<HTMLFormElement>("compose");
  composeForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const channel = openChannel;
    if (channel === null || sender === null) return;
    const active = sender;
    void busy(composeForm, async () => {
      const text = byId<HTMLTextAreaElement>("compose-text");
      const banner = byId<HTMLSelectElement>("compose-label").value;
      byId("compose-sent").textContent = "";
      say("Sealing and sending…");
      const sent = await active.send(channel, banner, text.value);
      text.value = "";
      byId("compose-sent").textContent = `Sent as ${sent.banner}, released to: ${reachText(sent)}`;
      say("Sent.");
    }).then(() => byId("compose-text").focus());
  });

  const askForm = byId<HTMLFormElement>("ask-release");
  askForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const message = asking;
    const active = releases;
    if (message === null || message.messageId === null || active === null) return;
    const add = nationsToAdd(byId<HTMLInputElement>("ask-release-add").value);
    const reason = byId<HTMLTextAreaElement>("ask-release-reason").value.trim();
    void busy(askForm, async () => {
      if (add.length === 0) {
        throw new Mistake("Not asked: name at least one nation or group to release to.");
      }
      say("Asking for the release…");
      const made = await active.request(MESSAGE, message.messageId!, add, reason);
      closeAskRelease();
      const outcome = byId("ask-release-outcome");
      outcome.textContent =
        `Asked: the message from ${message.sender} to go from ${made.label} to ` +
        `${made.requested_label}, pending a decision by ${made.originator}'s disclosure ` +
        `officers (request ${made.id}; see Release requests).`;
      outcome.focus();
      say("Asked.");
    });
  });
  byId("ask-release-cancel").addEventListener("click", () => {
    const message = asking;
    closeAskRelease();
    const button = [...document.querySelectorAll<HTMLElement>("#messages .item")]
      .find((item) => message !== null && item.dataset.seq === String(message.seq))
      ?.querySelector<HTMLButtonElement>(".item-ask");
    button?.focus();
  });

  byId("back").addEventListener("click", () => {
    openChannel = null;
    renderChannels();
    show("home");
    byId("home-title").focus();
  });

  byId("open-committees").addEventListener("click", () => void showCommittees());
  byId("committees-back").addEventListener("click", () => {
    renderChannels();
    show("home");
    byId("home-title").focus();
  });
  byId("meeting-back").addEventListener("click", () => void showCommittees());
  byId("upload-label").addEventListener("change", () => void showUploadReach());
  const writes: [string, (form: HTMLFormElement) => Promise<void>][] = [
    ["schedule", scheduleMeeting],
    ["agenda-add", addAgendaItem],
    ["minutes-add", recordMinutes],
    ["action-add", addActionItem],
    ["action-update", updateActionItem],
  ];
  for (const [id, write] of writes) {
    const form = byId<HTMLFormElement>(id);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      void write(form);
    });
  }
  byId("schedule-committee").addEventListener("change", () => void scheduleCommitteeChanged());
  byId("schedule-label").addEventListener("change", () => {
    const committee = managed.find(
      (c) => c.id === byId<HTMLSelectElement>("schedule-committee").value,
    );
    const channel = committee && committeeChannels.get(committee.channel_id);
    if (channel) {
      void writeReach(
        byId("schedule-reach"),
        channel,
        byId<HTMLSelectElement>("schedule-label").value,
      );
    }
  });
  for (const id of ["agenda-add", "minutes-add", "action-add"]) {
    byId(`${id}-label`).addEventListener("change", () => {
      if (shownMeeting === null) return;
      void writeReach(
        byId(`${id}-reach`),
        shownMeeting.channel,
        byId<HTMLSelectElement>(`${id}-label`).value,
      );
    });
  }
  byId("action-update-item").addEventListener("change", () => void updateReach());
  const uploadForm = byId<HTMLFormElement>("upload");
  uploadForm.addEventListener("submit", (event) => {
    event.preventDefault();
    void uploadDocument(uploadForm);
  });
  byId("open-releases").addEventListener("click", () => void showReleases());
  byId("releases-back").addEventListener("click", () => {
    renderChannels();
    show("home");
    byId("home-title").focus();
  });
  byId("releases-refresh").addEventListener("click", () => void showReleases());
  byId("open-audit").addEventListener("click", showAudit);
  byId("audit-back").addEventListener("click", () => {
    renderChannels();
    show("home");
    byId("home-title").focus();
  });
  const filtersForm = byId<HTMLFormElement>("audit-filters");
  filtersForm.addEventListener("submit", (event) => {
    event.preventDefault();
    void busy(filtersForm, async () => {
      const filters: AuditFilters = {};
      for (const name of [
        "since",
        "until",
        "actor",
        "nation",
        "container",
        "action",
        "label",
      ] as const) {
        filters[name] = field(filtersForm, name).value;
      }
      filters.decision = (filtersForm.elements.namedItem("decision") as HTMLSelectElement).value;
      const limit = Math.max(1, Math.floor(Number(field(filtersForm, "limit").value) || 1000));
      say("Reading the audit log…");
      auditEntries = await fetchEvents(api, filters, limit);
      auditQueried = true;
      renderAudit();
      say(`${auditEntries.length} audit events.`);
    });
  });
  byId("audit-csv").addEventListener("click", () =>
    download(eventsCsv(auditEntries), exportName("csv"), "text/csv"),
  );
  byId("audit-json").addEventListener("click", () =>
    download(eventsJson(auditEntries), exportName("json"), "application/json"),
  );
  const verifyForm = byId<HTMLFormElement>("audit-verify");
  verifyForm.addEventListener("submit", (event) => {
    event.preventDefault();
    void busy(verifyForm, async () => {
      byId("audit-verdict").textContent = "";
      byId("audit-problems").replaceChildren();
      const vkey = field(verifyForm, "vkey").value.trim() || null;
      say("Verifying the audit log…");
      const report = await verifyLog(api, browserAuditStore, {
        vkey,
        progress: (done, total) => say(`Verifying the audit log: ${done} of ${total} leaves…`),
      });
      showVerdict(report);
      say(report.ok ? "The audit log verified." : "The audit log did NOT verify.");
    });
  });

  byId("sign-out").addEventListener("click", () => {
    session = null;
    live?.stop();
    live = null;
    inbox = null;
    sender = null;
    releases = null;
    committees = null;
    shownMeeting = null;
    managed = [];
    committeeChannels.clear();
    reader = null;
    openChannel = null;
    auditEntries = [];
    auditQueried = false;
    byId("audit-verdict").textContent = "";
    byId("audit-problems").replaceChildren();
    void Promise.all([signOut(api), clearDownloads()]).then(() => {
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
  void clearStaleDownloads().catch(() => undefined);
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
