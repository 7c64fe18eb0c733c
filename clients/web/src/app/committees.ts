/**
 * Committees in the page, as clients/sdk/committees.py reads them (`Committees.agenda`): the
 * meeting's structure from the server (ids, order, times), then this device's deliveries in
 * the committee's channel, each referenced message verified and decrypted exactly as any
 * message (messages.ts, `openHeld`), then checked for its place: of the content type the
 * place needs, an update replying to its action item, a body of the shape its type promises
 * (protocol/committees.py). A referenced message this device was not given, or one that fails
 * any check, comes back unverified with the reason, never with its fields. Nothing here
 * touches the DOM, so Node's tests run it.
 */
import type { Api } from "./api.js";
import { openItem, type Reader, type ReceivedMessage, type SyncPage } from "./messages.js";
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

function segment(value: string): string {
  return encodeURIComponent(value);
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
