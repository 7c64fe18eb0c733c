/**
 * Committees in the page, as clients/sdk/committees.py reads them (`Committees.agenda`): the
 * meeting's structure from the server (ids, order, times), then this device's deliveries in
 * the committee's channel, each referenced message verified and decrypted exactly as any
 * message (messages.ts, `openHeld`), then checked for its place: of the content type the
 * place needs, an update replying to its action item, a body of the shape its type promises
 * (protocol/committees.py). A referenced message this device was not given, or one that fails
 * any check, comes back unverified with the reason, never with its fields.
 *
 * Writing is the SDK's too (`Committees.schedule_meeting`, `add_agenda_item`, `record_minutes`,
 * `add_action_item`, `update_action_item`, `reorder_agenda`): each entry's body made as
 * protocol/committees.py's `encode` makes it (`encodeContent`), sent through send.ts's
 * `Sender` with its content type (and, for an update, replying to the action item's message),
 * so it is sealed only to the devices its label releases it to after the same roster and key
 * directory checks as any message, then linked into the meeting by id. Nothing here touches
 * the DOM, so Node's tests run it.
 */
import { segment, type Api } from "./api.js";
import { openItem, type Reader, type ReceivedMessage, type SyncPage } from "./messages.js";
import { SendError, type ChannelInfo, type Sender, type Sent } from "./send.js";
import { isObject } from "../protocol/index.js";

export const MEETING = "application/vnd.attache.meeting+json";
export const AGENDA_ITEM = "application/vnd.attache.agenda-item+json";
export const MINUTES = "application/vnd.attache.minutes+json";
export const ACTION_ITEM = "application/vnd.attache.action-item+json";
export const ACTION_ITEM_UPDATE = "application/vnd.attache.action-item-update+json";
export const CONTENT_TYPES: readonly string[] = [
  MEETING,
  AGENDA_ITEM,
  MINUTES,
  ACTION_ITEM,
  ACTION_ITEM_UPDATE,
];
/** What an action item's status may be; the latest verified update's status wins. */
export const STATUSES: readonly string[] = ["open", "in-progress", "done", "cancelled"];
export const NOT_CLEARED = "an item you are not cleared to read";

const REQUIRED: Record<string, readonly string[]> = {
  [MEETING]: ["title"],
  [AGENDA_ITEM]: ["title"],
  [MINUTES]: ["text"],
  [ACTION_ITEM]: ["description", "owner", "status"],
  [ACTION_ITEM_UPDATE]: ["status"],
};
const OPTIONAL: Record<string, readonly string[]> = {
  [MEETING]: ["place"],
  [AGENDA_ITEM]: ["presenter", "notes"],
  [MINUTES]: [],
  [ACTION_ITEM]: ["due"],
  [ACTION_ITEM_UPDATE]: ["note"],
};

/** A committee body that does not have the shape its content type promises. */
export class ContentError extends Error {}

/** `contentType` without parameters, lower case: what the server and clients compare. */
export function mediaType(contentType: string): string {
  return contentType.split(";", 1)[0]!.trim().toLowerCase();
}

/** Python's `str.strip()` emptiness, near enough: whitespace only. */
function blank(text: string): boolean {
  return text.trim() === "";
}

/** protocol/committees.py's `check`. */
export function checkContent(contentType: string, body: Record<string, unknown>): void {
  const kind = mediaType(contentType);
  if (!CONTENT_TYPES.includes(kind)) {
    throw new ContentError(`${contentType} is not a committee content type`);
  }
  for (const name of REQUIRED[kind]!) {
    const value = body[name];
    if (typeof value !== "string" || blank(value)) {
      throw new ContentError(`${kind} needs a non-empty string '${name}'`);
    }
  }
  for (const name of OPTIONAL[kind]!) {
    if (name in body && typeof body[name] !== "string") {
      throw new ContentError(`${kind} field '${name}' must be a string`);
    }
  }
  const status = body.status;
  if ((kind === ACTION_ITEM || kind === ACTION_ITEM_UPDATE) && !STATUSES.includes(String(status))) {
    throw new ContentError(
      `status must be one of ${STATUSES.join(", ")}, not ${JSON.stringify(status ?? null)}`,
    );
  }
}

/** A string holding half of a surrogate pair alone: not text UTF-8 can carry. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/**
 * The body of a committee message of `contentType` (protocol/committees.py's `encode`): null
 * and undefined fields left out, the rest checked, then written as Python's `json.dumps(body,
 * ensure_ascii=False, sort_keys=True)` writes it (keys sorted, ", " and ": " between, strings
 * escaped as JSON.stringify escapes them, which for well-formed text is Python's escaping).
 */
export function encodeContent(
  contentType: string,
  fields: Readonly<Record<string, string | null | undefined>>,
): string {
  const body: Record<string, string> = {};
  for (const [name, value] of Object.entries(fields)) {
    if (value === null || value === undefined) continue;
    if (typeof value !== "string" || LONE_SURROGATE.test(value)) {
      throw new ContentError(`field '${name}' is not text`);
    }
    body[name] = value;
  }
  checkContent(contentType, body);
  const names = Object.keys(body).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${names.map((n) => `${JSON.stringify(n)}: ${JSON.stringify(body[n])}`).join(", ")}}`;
}

/** The fields of a committee body (protocol/committees.py's `decode`); unknown ones ignored. */
export function decodeContent(contentType: string, text: string): Record<string, string> {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch (error) {
    throw new ContentError(`the body is not UTF-8 JSON: ${(error as Error).message}`);
  }
  if (!isObject(body)) throw new ContentError("the body is not a JSON object");
  checkContent(contentType, body);
  const kind = mediaType(contentType);
  const fields: Record<string, string> = {};
  for (const name of [...REQUIRED[kind]!, ...OPTIONAL[kind]!]) {
    if (typeof body[name] === "string") fields[name] = body[name];
  }
  return fields;
}

/** One committee message, verified and decoded. Only when `verified` are `fields`, `sender`
 * and `banner` vouched for by the sender's device; otherwise `fields` is empty and `problem`
 * says why (and `banner` is the server's claim, or "(no label)"). */
export interface CommitteeEntry {
  messageId: string;
  banner: string;
  /** The level's colour when verified, else null. */
  colour: string | null;
  sender: string | null;
  senderNation: string | null;
  sentAt: Date | null;
  fields: Readonly<Record<string, string>>;
  verified: boolean;
  problem: string | null;
  /** Who released it to this device by a grant, and the label it was sent under. */
  releasedBy: string | null;
  originalBanner: string | null;
}

export interface AgendaEntry {
  itemId: string;
  position: number;
  entry: CommitteeEntry;
  /** Attached document versions this device can open (as the server lists them). */
  documents: string[];
}

export interface ActionItemEntry {
  itemId: string;
  entry: CommitteeEntry;
  updates: CommitteeEntry[];
  /** The latest verified update's status, else the item's own (null when unverified). */
  status: string | null;
}

export interface MeetingAgenda {
  meetingId: string;
  committeeId: string;
  channelId: string;
  startsAt: Date;
  cancelledAt: Date | null;
  info: CommitteeEntry;
  items: AgendaEntry[];
  minutes: CommitteeEntry | null;
  actionItems: ActionItemEntry[];
}

export interface MemberRead {
  user_id: string;
  username: string;
  nationality: string | null;
}

/** A committee as `GET /v1/committees` shows it. */
export interface CommitteeRead {
  id: string;
  name: string;
  channel_id: string;
  ceiling: string;
  labels: string[];
  default_label: string;
  chair: MemberRead;
  secretary: MemberRead;
  members: MemberRead[];
}

/** A meeting as `GET /v1/committees/{c}/meetings` shows it. */
export interface MeetingRead {
  id: string;
  committee_id: string;
  channel_id: string;
  starts_at: string;
  info_message_id: string;
  minutes_message_id: string | null;
  cancelled_at: string | null;
}

interface MeetingDetail extends MeetingRead {
  agenda: { id: string; position: number; message_id: string; documents?: string[] }[];
  action_items: { id: string; message_id: string; updates: { message_id: string }[] }[];
}

/** A meeting in a list, with its title when its info message verified here. */
export interface MeetingSummary {
  meeting: MeetingRead;
  info: CommitteeEntry;
}

/**
 * A referenced message checked for its place (the SDK's `_entry`): delivered, verified, of the
 * content type `kind`, replying to `replyTo` when given, with a body of the right shape.
 */
export function entryOf(
  message: ReceivedMessage | undefined,
  messageId: string,
  kind: string,
  replyTo: string | null,
): CommitteeEntry {
  if (message === undefined) {
    return {
      messageId,
      banner: "(no label)",
      colour: null,
      sender: null,
      senderNation: null,
      sentAt: null,
      fields: {},
      verified: false,
      problem: NOT_CLEARED,
      releasedBy: null,
      originalBanner: null,
    };
  }
  let problem = message.problem;
  let fields: Record<string, string> = {};
  if (message.verified) {
    if (mediaType(message.contentType ?? "") !== kind) {
      problem = `the message is of type ${message.contentType}, not ${kind}`;
    } else if (replyTo !== null && message.replyTo !== replyTo) {
      problem = "the update does not reply to its action item";
    } else {
      try {
        fields = decodeContent(kind, message.text ?? "");
      } catch (error) {
        if (!(error instanceof ContentError)) throw error;
        problem = `the message's content is malformed: ${error.message}`;
      }
    }
  }
  const verified = problem === null;
  return {
    messageId,
    banner: message.banner,
    colour: verified ? message.colour : null,
    sender: message.sender,
    senderNation: message.senderNation,
    sentAt: message.sentAt,
    fields: verified ? fields : {},
    verified,
    problem: verified ? null : (problem ?? "the message does not verify"),
    releasedBy: message.releasedBy,
    originalBanner: message.originalBanner,
  };
}

function latestStatus(entry: CommitteeEntry, updates: CommitteeEntry[]): string | null {
  for (const update of [...updates].reverse()) {
    if (update.verified && update.fields.status) return update.fields.status;
  }
  return entry.fields.status ?? null;
}

function time(text: string | null): Date | null {
  if (text === null) return null;
  const moment = new Date(text);
  return Number.isNaN(moment.getTime()) ? null : moment;
}

export class Committees {
  constructor(
    private readonly api: Api,
    private readonly reader: Reader,
  ) {}

  /** The committees this user is a member of. */
  list(): Promise<CommitteeRead[]> {
    return this.api.request<CommitteeRead[]>("GET", "/v1/committees");
  }

  /** A committee's meetings (the first 100 by start, as `attache meeting list`), each with
   * its title and place opened and verified here. */
  async meetings(committee: CommitteeRead): Promise<MeetingSummary[]> {
    const meetings = await this.api.request<MeetingRead[]>(
      "GET",
      `/v1/committees/${segment(committee.id)}/meetings?limit=100`,
    );
    const opened = await this.#open(
      committee.channel_id,
      new Set(meetings.map((m) => m.info_message_id)),
    );
    return meetings.map((meeting) => ({
      meeting,
      info: entryOf(opened.get(meeting.info_message_id), meeting.info_message_id, MEETING, null),
    }));
  }

  /** The meeting with its title and place, agenda items, minutes and action items with their
   * latest status: each decrypted and verified, with its banner. */
  async agenda(meetingId: string): Promise<MeetingAgenda> {
    const structure = await this.api.request<MeetingDetail>(
      "GET",
      `/v1/meetings/${segment(meetingId)}`,
    );
    const channelId = String(structure.channel_id);
    const wanted = new Set<string>([String(structure.info_message_id)]);
    for (const item of structure.agenda) wanted.add(String(item.message_id));
    for (const action of structure.action_items) {
      wanted.add(String(action.message_id));
      for (const update of action.updates) wanted.add(String(update.message_id));
    }
    if (structure.minutes_message_id) wanted.add(String(structure.minutes_message_id));
    const opened = await this.#open(channelId, wanted);
    const entry = (messageId: string, kind: string, replyTo: string | null = null) =>
      entryOf(opened.get(String(messageId)), String(messageId), kind, replyTo);
    return {
      meetingId: String(structure.id),
      committeeId: String(structure.committee_id),
      channelId,
      startsAt: time(structure.starts_at) ?? new Date(NaN),
      cancelledAt: time(structure.cancelled_at),
      info: entry(structure.info_message_id, MEETING),
      items: structure.agenda.map((item) => ({
        itemId: String(item.id),
        position: Number(item.position),
        entry: entry(item.message_id, AGENDA_ITEM),
        documents: (item.documents ?? []).map(String),
      })),
      minutes: structure.minutes_message_id ? entry(structure.minutes_message_id, MINUTES) : null,
      actionItems: structure.action_items.map((action) => {
        const main = entry(action.message_id, ACTION_ITEM);
        const updates = action.updates.map((u) =>
          entry(u.message_id, ACTION_ITEM_UPDATE, String(action.message_id)),
        );
        return {
          itemId: String(action.id),
          entry: main,
          updates,
          status: latestStatus(main, updates),
        };
      }),
    };
  }

  /** Attach a document version of this committee to an agenda item, as `attache meeting
   * attach` (`Committees.attach_document`): the chair's or the secretary's, in a meeting not
   * cancelled; the version's own label still decides who may open it. */
  attach(meetingId: string, itemId: string, versionId: string): Promise<unknown> {
    return this.api.request(
      "POST",
      `/v1/meetings/${segment(meetingId)}/agenda/${segment(itemId)}/documents`,
      { version_id: versionId },
    );
  }

  // --- writing (the chair's and the secretary's; updates any member's who can read the item) ---

  /** Send one committee entry in `channel` under `banner`, as the SDK's `Committees._send`. */
  async #send(
    sender: Sender,
    channel: ChannelInfo,
    contentType: string,
    fields: Readonly<Record<string, string | null | undefined>>,
    banner: string,
    replyTo: string | null = null,
  ): Promise<Sent> {
    let body: string;
    try {
      body = encodeContent(contentType, fields);
    } catch (error) {
      if (error instanceof ContentError) throw new SendError(error.message);
      throw error;
    }
    return sender.send(channel, banner, body, { contentType, replyTo });
  }

  /** The committee channel a meeting or action item is in, which `channel` must be. */
  static #same(channel: ChannelInfo, channelId: unknown): void {
    if (String(channelId) !== channel.id) {
      throw new SendError("the meeting is not in the channel given (reload the meeting)");
    }
  }

  /** Send the meeting's title and place under `banner`, then schedule it at `startsAt`
   * referring to that message (`Committees.schedule_meeting`). */
  async scheduleMeeting(
    sender: Sender,
    committee: CommitteeRead,
    channel: ChannelInfo,
    startsAt: Date,
    title: string,
    place: string | null,
    banner: string,
  ): Promise<{ meeting: MeetingRead; sent: Sent }> {
    if (Number.isNaN(startsAt.getTime())) throw new SendError("give the meeting's start");
    Committees.#same(channel, committee.channel_id);
    const sent = await this.#send(sender, channel, MEETING, { title, place }, banner);
    const meeting = await this.api.request<MeetingRead>(
      "POST",
      `/v1/committees/${segment(committee.id)}/meetings`,
      { starts_at: startsAt.toISOString(), info_message_id: sent.messageId },
    );
    return { meeting, sent };
  }

  /** An agenda item sent under `banner` and appended to the meeting's agenda: only the
   * members its label releases it to see it, or that it exists (`add_agenda_item`). */
  async addAgendaItem(
    sender: Sender,
    meeting: { meetingId: string; channelId: string },
    channel: ChannelInfo,
    item: { title: string; presenter?: string | null; notes?: string | null },
    banner: string,
  ): Promise<{ item: { id: string; position: number }; sent: Sent }> {
    Committees.#same(channel, meeting.channelId);
    const fields = { title: item.title, presenter: item.presenter, notes: item.notes };
    const sent = await this.#send(sender, channel, AGENDA_ITEM, fields, banner);
    const linked = await this.api.request<{ id: string; position: number }>(
      "POST",
      `/v1/meetings/${segment(meeting.meetingId)}/agenda`,
      { message_id: sent.messageId },
    );
    return { item: linked, sent };
  }

  /** Every agenda item this user can see, once each, in the new order (`reorder_agenda`). */
  reorderAgenda(meetingId: string, itemIds: readonly string[]): Promise<unknown> {
    return this.api.request("PUT", `/v1/meetings/${segment(meetingId)}/agenda/order`, {
      item_ids: [...itemIds],
    });
  }

  /** The meeting's minutes, sent under `banner` and recorded (`record_minutes`). */
  async recordMinutes(
    sender: Sender,
    meeting: { meetingId: string; channelId: string },
    channel: ChannelInfo,
    text: string,
    banner: string,
  ): Promise<Sent> {
    Committees.#same(channel, meeting.channelId);
    const sent = await this.#send(sender, channel, MINUTES, { text }, banner);
    await this.api.request("PUT", `/v1/meetings/${segment(meeting.meetingId)}/minutes`, {
      message_id: sent.messageId,
    });
    return sent;
  }

  /** An action item (status `open`) for `owner` (a username), due on `due` (YYYY-MM-DD or
   * null), sent under `banner` and added to the meeting (`add_action_item`). */
  async addActionItem(
    sender: Sender,
    meeting: { meetingId: string; channelId: string },
    channel: ChannelInfo,
    item: { description: string; owner: string; due?: string | null },
    banner: string,
  ): Promise<{ item: { id: string }; sent: Sent }> {
    Committees.#same(channel, meeting.channelId);
    if (item.due && !/^\d{4}-\d{2}-\d{2}$/.test(item.due)) {
      throw new SendError("give the due date as YYYY-MM-DD");
    }
    const fields = {
      description: item.description,
      owner: item.owner,
      due: item.due || null,
      status: "open",
    };
    const sent = await this.#send(sender, channel, ACTION_ITEM, fields, banner);
    const linked = await this.api.request<{ id: string }>(
      "POST",
      `/v1/meetings/${segment(meeting.meetingId)}/action-items`,
      { message_id: sent.messageId },
    );
    return { item: linked, sent };
  }

  /**
   * A status update replying to the action item's message (`update_action_item`). Its label
   * (`banner` null) is the action item's own, read and verified here first, so a note reaches
   * no one the item did not; an item that does not verify here is refused, nothing sent.
   */
  async updateActionItem(
    sender: Sender,
    itemId: string,
    channel: ChannelInfo,
    status: string,
    note: string | null,
    banner: string | null = null,
  ): Promise<{ banner: string; sent: Sent }> {
    const found = await this.api.request<{ channel_id: string; message_id: string }>(
      "GET",
      `/v1/action-items/${segment(itemId)}`,
    );
    Committees.#same(channel, found.channel_id);
    const messageId = String(found.message_id);
    let label = banner;
    if (label === null) {
      const opened = await this.#open(channel.id, new Set([messageId]));
      const entry = entryOf(opened.get(messageId), messageId, ACTION_ITEM, null);
      if (!entry.verified) {
        throw new SendError(`the action item cannot be read here: ${entry.problem}`);
      }
      label = entry.banner;
    }
    const fields = { status, note: note || null };
    const sent = await this.#send(sender, channel, ACTION_ITEM_UPDATE, fields, label, messageId);
    await this.api.request("POST", `/v1/action-items/${segment(itemId)}/updates`, {
      message_id: sent.messageId,
    });
    return { banner: label, sent };
  }

  /** This device's deliveries in the channel among `wanted`, verified and decrypted. */
  async #open(channelId: string, wanted: Set<string>): Promise<Map<string, ReceivedMessage>> {
    const found = new Map<string, ReceivedMessage>();
    let after = 0;
    while ([...wanted].some((id) => !found.has(id))) {
      const page = await this.api.request<SyncPage>(
        "GET",
        `/v1/channels/${segment(channelId)}/messages?after=${after}&limit=100`,
      );
      for (const item of page.items) {
        const sealed = isObject(item) && isObject(item.message) ? item.message : null;
        const claimed =
          sealed !== null && isObject(sealed.header) ? sealed.header.message_id : null;
        if (typeof claimed === "string" && wanted.has(claimed) && !found.has(claimed)) {
          found.set(claimed, await openItem(item, this.reader, CONTENT_TYPES));
        }
      }
      if (!page.more || page.cursor <= after) break;
      after = page.cursor;
    }
    return found;
  }
}
