/**
 * A channel's messages in the page, verified as clients/sdk/messaging.py verifies them
 * (`Messenger.open_item`): the sender's certificate against the pinned authority keys, the
 * audience its sender made for the message, this device's envelope, the sender's signature,
 * the key commitment and the decryption, the channel, the label against the catalog and its
 * originator against the sender's nation, and the server's banner against the verified one.
 * An item released by a grant opens with the grant's key, the grant checked as the SDK's
 * `_open_grant` checks it, and is shown under the label the grant widened it to.
 * An item that fails any of these comes back unverified with the reason, never with content.
 * Nothing here touches the DOM, so Node's tests run it.
 */
import type { Api } from "./api.js";
import {
  CertificateError,
  EnvelopeError,
  checkAudienceHeader,
  checkGrantHeader,
  checkGrantItem,
  checkHistoryLabels,
  checkLabelWidening,
  checkMessageHeader,
  decryptWithItemKey,
  messageKey,
  openAudienceEnvelope,
  openGrant,
  sameJson,
  verifyCertificate,
  type AuthorityKeys,
  type CertificateBody,
  type DeviceKeys,
  type JsonObject,
  type SealedMessage,
} from "../protocol/index.js";
import {
  LabelError,
  labelColour,
  labelFromCanonical,
  renderLabel,
  type Catalog,
  type Label,
} from "../protocol/labels.js";

export const TEXT_TYPE = "text/plain";

/** A delivered message. Only when `verified` are `text`, `sender`, `banner` and `sentAt`
 * vouched for by the sender's device and its nation; otherwise `text` is null and `problem`
 * says why, and the rest is what the server claims. */
export interface ReceivedMessage {
  seq: number;
  channelId: string;
  messageId: string | null;
  sender: string | null;
  senderNation: string | null;
  banner: string;
  /** The level's colour when verified, else null. */
  colour: string | null;
  text: string | null;
  sentAt: Date | null;
  contentType: string | null;
  /** The message it replies to, as signed; null until verified or when none. */
  replyTo: string | null;
  verified: boolean;
  problem: string | null;
  /** Who released it to this device by a grant (a disclosure officer's approval). */
  releasedBy: string | null;
  /** The label its sender signed, when a release widened it since. */
  originalBanner: string | null;
  /** Who shared it with this device by a history grant (a member who joined later). */
  sharedBy: string | null;
}

/** What the page needs to open what is delivered to it. */
export interface Reader {
  keys: DeviceKeys;
  deviceId: string;
  pins: AuthorityKeys;
  catalog: Catalog;
}

/** A delivered item failed a check; the message is the plain sentence shown for it. */
export class Unverifiable extends Error {}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

export function checkSenderCertificate(
  value: unknown,
  pins: AuthorityKeys,
  now: Date,
): CertificateBody {
  if (value === null || value === undefined)
    throw new Unverifiable("the device has no certificate");
  try {
    return verifyCertificate(value, pins, { now });
  } catch (error) {
    if (error instanceof CertificateError) {
      throw new Unverifiable(`its certificate does not verify: ${error.message}`);
    }
    throw error;
  }
}

/** An item key opened from a checked grant, with the granted label and the grantor. */
export interface Released {
  itemKey: Uint8Array;
  label: Label;
  banner: string;
  grantor: string;
  history: boolean;
}

/**
 * The item key from a grant delivered with an item, checked (PROTOCOL.md §16.6) as the SDK's
 * `Messenger._open_grant`: the grantor's certificate against the pins and for the device and
 * user the grant names, its signature and envelope, that it names this item, and that its
 * label is the item's own label (as the sender signed it) with releasability widened. Throws
 * Unverifiable or EnvelopeError.
 */
export async function openDeliveredGrant(
  grant: unknown,
  itemHeader: unknown,
  itemLabel: unknown,
  reader: Reader,
): Promise<Released> {
  if (!isRecord(grant)) throw new Unverifiable("the grant is malformed: not an object");
  let header;
  try {
    header = checkGrantHeader(grant.header);
  } catch (error) {
    if (!(error instanceof EnvelopeError)) throw error;
    throw new Unverifiable(`the grant is malformed: ${error.message}`);
  }
  let grantor: CertificateBody;
  try {
    grantor = checkSenderCertificate(grant.grantor_certificate, reader.pins, new Date());
  } catch (error) {
    if (!(error instanceof Unverifiable)) throw error;
    throw new Unverifiable(`the grantor's device cannot be trusted: ${error.message}`);
  }
  if (grantor.deviceId !== header.grantorDevice || grantor.userId !== header.grantorUser) {
    throw new Unverifiable(
      "the grantor's certificate is for another device or user than the grant names",
    );
  }
  const itemKey = await openGrant(
    reader.keys,
    reader.deviceId,
    grant.header,
    grant.signature as string,
    grant.envelope as string,
    grantor.deviceKeys.signingKey,
  );
  checkGrantItem(header, itemHeader);
  const wrap = (work: () => Label): Label => {
    try {
      return work();
    } catch (error) {
      if (error instanceof LabelError) throw new EnvelopeError(error.message);
      throw error;
    }
  };
  if (header.requestId === null) {
    const label = wrap(() => checkHistoryLabels(header, itemLabel, reader.catalog));
    const banner = renderLabel(label, reader.catalog);
    return { itemKey, label, banner, grantor: grantor.username, history: true };
  }
  if (!sameJson(header.previousLabel, itemLabel)) {
    throw new Unverifiable("the grant widens a label other than the one the sender signed");
  }
  const wider = wrap(
    () => checkLabelWidening(header.previousLabel, header.label, reader.catalog)[1],
  );
  const banner = renderLabel(wider, reader.catalog);
  return { itemKey, label: wider, banner, grantor: grantor.username, history: false };
}

interface Opened {
  fields: Partial<ReceivedMessage>;
  /** The message's own key, proven by its sender's signature and key commitment. */
  itemKey: Uint8Array;
  /** The devices its audience gave it to. */
  holders: string[];
}

async function open(
  item: Record<string, unknown>,
  reader: Reader,
  contentTypes: readonly string[],
): Promise<Opened> {
  const channelId = item.channel_id;
  const sealed = item.message as SealedMessage;
  let header;
  try {
    if (!isRecord(sealed)) throw new EnvelopeError("a sealed message must be an object");
    header = checkMessageHeader(sealed.header);
  } catch (error) {
    throw new Unverifiable(`the message is malformed: ${(error as Error).message}`);
  }
  let body: CertificateBody;
  try {
    body = checkSenderCertificate(item.sender_certificate, reader.pins, new Date());
  } catch (error) {
    if (!(error instanceof Unverifiable)) throw error;
    throw new Unverifiable(`the sender's device cannot be trusted: ${error.message}`);
  }
  if (body.deviceId !== header.senderDevice || body.userId !== header.senderUser) {
    throw new Unverifiable(
      "the sender's certificate is for another device or user than the message names",
    );
  }
  const audience = item.audience;
  if (!isRecord(audience)) throw new Unverifiable("the message came without its audience");
  let audienceHeader;
  try {
    audienceHeader = checkAudienceHeader(audience.header);
  } catch (error) {
    throw new Unverifiable(`the message's audience is malformed: ${(error as Error).message}`);
  }
  if (
    audienceHeader.audienceId !== header.audienceId ||
    audienceHeader.creatorDevice !== header.senderDevice ||
    audienceHeader.creatorUser !== header.senderUser ||
    audienceHeader.container !== header.container
  ) {
    throw new Unverifiable("the message came with an audience its sender did not make for it");
  }
  const signingKey = body.deviceKeys.signingKey;
  let plaintext: Uint8Array;
  let itemKey: Uint8Array;
  let released: Released | null = null;
  try {
    if (item.grant !== null && item.grant !== undefined) {
      released = await openDeliveredGrant(item.grant, sealed.header, header.label, reader);
      itemKey = released.itemKey;
    } else {
      const audienceKey = await openAudienceEnvelope(
        reader.keys,
        reader.deviceId,
        {
          header: audience.header as JsonObject,
          signature: audience.signature as string,
          envelopes: { [reader.deviceId]: audience.envelope as string },
        },
        signingKey,
      );
      itemKey = await messageKey(audienceKey, sealed.header);
    }
    plaintext = await decryptWithItemKey(sealed, itemKey, signingKey);
  } catch (error) {
    if (!(error instanceof EnvelopeError)) throw error;
    throw new Unverifiable(`the message does not verify or decrypt: ${error.message}`);
  }
  if (header.container !== channelId) {
    throw new Unverifiable("the message was sent to another channel than it was delivered in");
  }
  let banner: string;
  let colour: string;
  let label: Label;
  try {
    label = labelFromCanonical(header.label, reader.catalog);
    banner = renderLabel(label, reader.catalog);
    colour = labelColour(label, reader.catalog);
    if (label.originator !== body.nationality) {
      throw new Unverifiable(
        `the label names originator ${label.originator}, but the sender is of ${body.nationality}`,
      );
    }
  } catch (error) {
    if (!(error instanceof LabelError)) throw error;
    throw new Unverifiable(`the message's label is not one this page knows: ${error.message}`);
  }
  const signedBanner = banner;
  if (released !== null) {
    banner = released.banner;
    colour = labelColour(released.label, reader.catalog);
  }
  if (item.label !== banner) {
    const signer = released ? `${released.grantor} released it as` : "the sender signed";
    throw new Unverifiable(
      `the server shows the label ${JSON.stringify(item.label)}, but ${signer} ${banner}`,
    );
  }
  const mediaType = header.contentType.split(";", 1)[0]!.trim().toLowerCase();
  let text: string | null = null;
  if (contentTypes.includes(mediaType)) {
    try {
      text = new TextDecoder("utf-8", { fatal: true }).decode(plaintext);
    } catch {
      throw new Unverifiable("the message text is not valid UTF-8");
    }
  }
  return {
    fields: {
      messageId: header.messageId,
      sender: body.username,
      senderNation: body.nationality,
      banner,
      colour,
      text,
      sentAt: header.sentAt,
      contentType: header.contentType,
      replyTo: header.replyTo,
      releasedBy: released && !released.history ? released.grantor : null,
      originalBanner: released && banner !== signedBanner ? signedBanner : null,
      sharedBy: released && released.history ? released.grantor : null,
    },
    itemKey,
    holders: audienceHeader.devices,
  };
}

/**
 * Verify and decrypt one delivered item (as `/v1/sync` and the stream give it). Never throws
 * for a bad item: it comes back with `verified: false` and the reason. Only items of
 * `contentTypes` (media types, without parameters) have their `text` decoded, as the SDK's
 * `open_item(content_types=...)`; one of another type comes back verified with `text` null.
 */
export async function openItem(
  item: unknown,
  reader: Reader,
  contentTypes: readonly string[] = [TEXT_TYPE],
): Promise<ReceivedMessage> {
  return (await openHeld(item, reader, contentTypes)).message;
}

/**
 * `openItem`, with the message's own key and the devices its audience gave it to when it
 * verified (what carrying out a release needs), else null for both.
 */
export async function openHeld(
  item: unknown,
  reader: Reader,
  contentTypes: readonly string[] = [TEXT_TYPE],
): Promise<{ message: ReceivedMessage; itemKey: Uint8Array | null; holders: string[] }> {
  const record = isRecord(item) ? item : {};
  const message = record.message;
  const header = isRecord(message) && isRecord(message.header) ? message.header : {};
  const base: ReceivedMessage = {
    seq: typeof record.seq === "number" ? record.seq : -1,
    channelId: String(record.channel_id),
    // Claims until verified: kept so that a warning can say which message it is.
    messageId: typeof header.message_id === "string" ? header.message_id : null,
    sender: null,
    senderNation: null,
    banner: typeof record.label === "string" ? record.label : "(no label)",
    colour: null,
    text: null,
    sentAt: null,
    contentType: null,
    replyTo: null,
    verified: false,
    problem: null,
    releasedBy: null,
    originalBanner: null,
    sharedBy: null,
  };
  try {
    const opened = await open(record, reader, contentTypes);
    return {
      message: { ...base, ...opened.fields, verified: true },
      itemKey: opened.itemKey,
      holders: opened.holders,
    };
  } catch (error) {
    const problem =
      error instanceof Unverifiable
        ? error.message
        : `the delivered item is malformed: ${String(error)}`;
    return { message: { ...base, problem }, itemKey: null, holders: [] };
  }
}

/** One page of `/v1/sync` or a channel's messages. */
export interface SyncPage {
  items: unknown[];
  cursor: number;
  more: boolean;
}

/**
 * This device's messages, by channel, with the sync cursor and each channel's unread count.
 * Items arrive from `/v1/sync` (from the cursor) and from the stream; one seen twice (by
 * `seq`) is kept once.
 */
export class Inbox {
  cursor = 0;
  readonly messages = new Map<string, ReceivedMessage[]>();
  readonly unread = new Map<string, number>();
  readonly #seen = new Set<number>();

  constructor(private readonly reader: Reader) {}

  /** Open and keep `item`; null when it was seen before. */
  async accept(item: unknown): Promise<ReceivedMessage | null> {
    const seq = isRecord(item) && typeof item.seq === "number" ? item.seq : null;
    if (seq !== null && this.#seen.has(seq)) return null;
    // Marked before the work of opening it: the same item from sync and from the stream,
    // arriving together, is kept once.
    if (seq !== null) this.#seen.add(seq);
    const message = await openItem(item, this.reader);
    const list = this.messages.get(message.channelId) ?? [];
    list.push(message);
    list.sort((a, b) => a.seq - b.seq);
    this.messages.set(message.channelId, list);
    this.unread.set(message.channelId, (this.unread.get(message.channelId) ?? 0) + 1);
    if (seq !== null) this.cursor = Math.max(this.cursor, seq);
    return message;
  }

  /** Everything after the cursor, page by page (`GET /v1/sync`). */
  async sync(api: Api): Promise<ReceivedMessage[]> {
    const found: ReceivedMessage[] = [];
    for (;;) {
      const page = await api.request<SyncPage>("GET", `/v1/sync?after=${this.cursor}&limit=100`);
      for (const item of page.items) {
        const message = await this.accept(item);
        if (message !== null) found.push(message);
      }
      this.cursor = Math.max(this.cursor, page.cursor);
      if (!page.more) return found;
    }
  }

  markRead(channelId: string): void {
    this.unread.set(channelId, 0);
  }
}

/**
 * The `message` frames a stream frame carries (§17.7), in order: a `message` frame itself;
 * the items of a `messages` frame (pushes queued together, sent to a client whose `auth`
 * accepted them) that are `message` frames, any other item left out; nothing for any other
 * frame. Each is then handled as the same `message` frame arriving alone would be.
 */
export function pushedMessages(frame: unknown): Record<string, unknown>[] {
  if (!isRecord(frame)) return [];
  if (frame.type === "message") return [frame];
  if (frame.type !== "messages" || !Array.isArray(frame.items)) return [];
  return frame.items.filter(
    (item): item is Record<string, unknown> => isRecord(item) && item.type === "message",
  );
}

/**
 * A stream frame as the websocket hands it over (§17.7), read as JSON: the object it is, or
 * null for anything else (text that is not JSON, or JSON that is not an object: `null`, a
 * number, a string, an array), which the page ignores as it ignores a frame of a type it does
 * not know. The server sends only objects; a frame is still text from the network.
 */
export function parseFrame(data: unknown): Record<string, unknown> | null {
  let frame: unknown;
  try {
    frame = JSON.parse(String(data));
  } catch {
    return null;
  }
  return isRecord(frame) ? frame : null;
}

/** The websocket address of the stream for the server at `origin` (§17.7). */
export function streamUrl(origin: string): string {
  const url = new URL("/v1/stream", origin);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url.toString();
}
