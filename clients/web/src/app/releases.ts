/**
 * Foreign disclosure in the page, as clients/sdk/releases.py: the release requests this user
 * may see (their own, and for a disclosure officer those about their nation's items), each
 * described with what the page can check of it (both labels read against the catalog, the
 * wider one only widening releasability, the requester as their certificate names them, the
 * item itself opened when this device holds it); approving or refusing with a reason; and
 * carrying out an approved release (`Releases.grant`, the SDK's): the item's own key (never
 * an audience key), proven the item's by its sender's signature and key commitment, sealed in
 * the page to exactly the devices the approved label newly admits, found from their
 * certificates verified against the pins and, with key transparency, each shown active with
 * its certified keys by the key directory (app/transparency.ts), under a label version this
 * device signs. Nothing here touches the DOM, so Node's tests run it.
 */
import { ApiError, segment, type Api } from "./api.js";
import {
  Unverifiable,
  checkSenderCertificate,
  openDeliveredGrant,
  openHeld,
  type Reader,
  type ReceivedMessage,
  type SyncPage,
} from "./messages.js";
import {
  admitted,
  checkRoster,
  directoryRefused,
  insisted,
  people,
  vouchedRoster,
  type Excluded,
  type RosterDevice,
  type Verified,
} from "./send.js";
import { CheckpointRefused, type DeviceTransparency } from "./transparency.js";
import {
  DocumentDecryptor,
  DocumentError,
  EnvelopeError,
  checkAudienceHeader,
  checkDocumentHeader,
  checkLabelWidening,
  createGrant,
  documentKey,
  formatUtcTime,
  isObject,
  openAudienceEnvelope,
  type JsonObject,
  type SealedDocumentTrailer,
} from "../protocol/index.js";
import {
  LabelError,
  expandReleasability,
  labelColour,
  labelFromCanonical,
  parseLabel,
  renderLabel,
  type Label,
} from "../protocol/labels.js";

export const MESSAGE = "message";
export const DOCUMENT_VERSION = "document_version";

/** A release request as the server shows it (ReleaseRead, PROTOCOL.md §17). */
export interface ReleaseRequest {
  id: string;
  item_type: string;
  item_id: string;
  channel_id: string;
  requested_by: string;
  originator: string;
  label: string;
  label_canonical: unknown;
  requested_label: string;
  requested_label_canonical: unknown;
  reason: string;
  status: string;
  decided_by: string | null;
  decision_reason: string;
  decided_at: string | null;
  created_at: string;
}

export class ReleaseError extends Error {}

/**
 * The nations and groups a release is asked to add, as typed ("fra, EU" or "FRA DEU"): split
 * at commas and spaces, in capitals, each once, in the order given. The server decides
 * whether each exists (the request names a nation or group of its catalog, as `attache
 * release request --add` does).
 */
export function nationsToAdd(text: string): string[] {
  const found: string[] = [];
  for (const part of text.split(/[\s,]+/)) {
    const code = part.trim().toUpperCase();
    if (code !== "" && !found.includes(code)) found.push(code);
  }
  return found;
}

/** Who is asking, as the page knows them from their certificate. */
export interface Me {
  userId: string;
  deviceId: string;
  nationality: string;
  roles: readonly string[];
}

/** A request, with what the page checked of it and found about its item. */
export interface ReleaseContext {
  request: ReleaseRequest;
  /** Both labels as the page reads their canonical forms, with their level's colour. */
  banner: string | null;
  colour: string | null;
  requestedBanner: string | null;
  requestedColour: string | null;
  /** The nations the release would add (groups expanded), sorted. */
  added: string[];
  /** What does not check; each a plain sentence. */
  problems: string[];
  /** "username (NATION)" from a verified certificate in the channel's roster, else null. */
  requester: string | null;
  /** The message itself, opened and verified, when this device holds it. */
  message: ReceivedMessage | null;
  /** The document version's file name and size, from its sender's signed header. */
  document: { filename: string; size: number; sender: string } | null;
  /** Whether this device holds the item's key, so can carry out the release. */
  holds: boolean;
  /** Why the item is not shown, when it is not. */
  itemNote: string | null;
}

/** What carrying out a release did. */
export interface Granted {
  request: ReleaseRequest;
  /** "username (NATION)" of each device's person the key was sealed to. */
  people: string[];
  devices: string[];
}

/** An item this device holds: its own key, and the devices its audience gave it to. */
interface Held {
  itemKey: Uint8Array;
  holders: ReadonlySet<string>;
  message: ReceivedMessage | null;
  document: { filename: string; size: number; sender: string } | null;
}

interface ChannelRead {
  id: string;
  ceiling_canonical: unknown;
}

interface DocumentAccess {
  channel_id: string;
  label: string;
  version: { header: JsonObject; trailer: SealedDocumentTrailer };
  audience: { header: JsonObject; signature: string; envelope: string | null };
  sender_certificate: unknown;
  grant: unknown;
}

export class Releases {
  readonly #held = new Map<string, Promise<Held>>();
  /** Per channel, where each message seen so far was (the `after` of its page) and how far
   * the scan got: a channel's deliveries are paged through once, not once per request. */
  readonly #seen = new Map<string, { pageOf: Map<string, number>; cursor: number }>();
  /** The rosters `describe` read since the last `list` (carrying out fetches afresh). */
  #rosters = new Map<string, Promise<{ verified: Verified[]; members: Set<string> }>>();

  constructor(
    private readonly api: Api,
    private readonly me: Me,
    private readonly reader: Reader,
    private readonly transparency: DeviceTransparency | null = null,
  ) {}

  get isDisclosureOfficer(): boolean {
    return this.me.roles.includes("disclosure_officer");
  }

  /** Whether this user may decide `request`: a disclosure officer of its originator nation,
   * and not its requester (the server decides the same). */
  decides(request: ReleaseRequest): boolean {
    return (
      this.isDisclosureOfficer &&
      request.originator === this.me.nationality &&
      request.requested_by !== this.me.userId
    );
  }

  /** Your requests and, for a disclosure officer, those about your nation's items. */
  list(status?: string): Promise<ReleaseRequest[]> {
    this.#rosters = new Map();
    const query = status ? `?status=${encodeURIComponent(status)}` : "";
    return this.api.request<ReleaseRequest[]>("GET", `/v1/releases${query}`);
  }

  /**
   * Ask the item's originator nation to release it to `add` too (`Releases.request` in the
   * SDK, `attache release request`): its disclosure officers decide, and see `reason`.
   */
  request(
    itemType: string,
    itemId: string,
    add: readonly string[],
    reason: string,
  ): Promise<ReleaseRequest> {
    if (itemType !== MESSAGE && itemType !== DOCUMENT_VERSION) {
      return Promise.reject(
        new ReleaseError(`an item is a message or a document_version, not ${itemType}`),
      );
    }
    if (add.length === 0) {
      return Promise.reject(new ReleaseError("name at least one nation to release to"));
    }
    return this.api.request<ReleaseRequest>("POST", "/v1/releases", {
      item_type: itemType,
      item_id: itemId,
      add: [...add],
      reason,
    });
  }

  approve(requestId: string, reason: string): Promise<ReleaseRequest> {
    return this.#decide(requestId, "approve", reason);
  }

  refuse(requestId: string, reason: string): Promise<ReleaseRequest> {
    return this.#decide(requestId, "refuse", reason);
  }

  #decide(requestId: string, verb: string, reason: string): Promise<ReleaseRequest> {
    return this.api.request<ReleaseRequest>("POST", `/v1/releases/${segment(requestId)}/${verb}`, {
      reason,
    });
  }

  async #roster(channelId: string): Promise<{ verified: Verified[]; members: Set<string> }> {
    const entries = await this.#entries(channelId);
    const { verified } = checkRoster(entries, this.reader.pins, new Date());
    return { verified, members: new Set(entries.map((entry) => String(entry.user_id))) };
  }

  #entries(channelId: string): Promise<RosterDevice[]> {
    return this.api.request<RosterDevice[]>("GET", `/v1/channels/${segment(channelId)}/roster`);
  }

  /** The roster to seal to: certificates verified, and each device vouched for by the key
   * directory when key transparency is on; ReleaseError when its checkpoint is refused. */
  async #vouched(
    channelId: string,
  ): Promise<{ verified: Verified[]; excluded: Excluded[]; members: Set<string> }> {
    const entries = await this.#entries(channelId);
    try {
      const checked = await vouchedRoster(entries, this.reader.pins, new Date(), this.transparency);
      return { ...checked, members: new Set(entries.map((entry) => String(entry.user_id))) };
    } catch (error) {
      if (error instanceof CheckpointRefused) throw new ReleaseError(directoryRefused(error));
      throw error;
    }
  }

  #read(canonical: unknown, shown: string, what: string, problems: string[]): Label | null {
    try {
      const label = labelFromCanonical(canonical, this.reader.catalog);
      const banner = renderLabel(label, this.reader.catalog);
      if (banner !== shown) {
        problems.push(
          `The server shows the ${what} as ${JSON.stringify(shown)}, but its canonical form ` +
            `reads ${banner}.`,
        );
      }
      return label;
    } catch (error) {
      if (!(error instanceof LabelError)) throw error;
      problems.push(`The ${what} is not one this page knows: ${error.message}.`);
      return null;
    }
  }

  /** `request` with what the page can check of it, and its item when this device holds it. */
  async describe(request: ReleaseRequest): Promise<ReleaseContext> {
    const problems: string[] = [];
    const { catalog } = this.reader;
    const label = this.#read(request.label_canonical, request.label, "item's label", problems);
    const wider = this.#read(
      request.requested_label_canonical,
      request.requested_label,
      "requested label",
      problems,
    );
    let added: string[] = [];
    if (label !== null && wider !== null) {
      try {
        checkLabelWidening(request.label_canonical, request.requested_label_canonical, catalog);
        const before = expandReleasability(label, catalog);
        added = [...expandReleasability(wider, catalog)].filter((n) => !before.has(n)).sort();
      } catch (error) {
        if (!(error instanceof EnvelopeError)) throw error;
        problems.push(`The requested label is not a release of the item's: ${error.message}.`);
      }
      if (label.originator !== request.originator) {
        problems.push(
          `The request names originator ${request.originator}, but the label's is ` +
            `${String(label.originator)}.`,
        );
      }
    }
    let requester: string | null = null;
    try {
      let roster = this.#rosters.get(request.channel_id);
      if (roster === undefined) {
        roster = this.#roster(request.channel_id);
        this.#rosters.set(request.channel_id, roster);
        roster.catch(() => this.#rosters.delete(request.channel_id));
      }
      const { verified } = await roster;
      const found = verified.find((d) => d.body.userId === request.requested_by);
      if (found !== undefined) requester = `${found.body.username} (${found.body.nationality})`;
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
    }
    const context: ReleaseContext = {
      request,
      banner: label && renderLabel(label, catalog),
      colour: label && labelColour(label, catalog),
      requestedBanner: wider && renderLabel(wider, catalog),
      requestedColour: wider && labelColour(wider, catalog),
      added,
      problems,
      requester,
      message: null,
      document: null,
      holds: false,
      itemNote: null,
    };
    try {
      const held = await this.#hold(request);
      context.holds = true;
      context.message = held.message;
      context.document = held.document;
      if (held.message !== null && held.message.banner !== request.label) {
        // The label this device verified is the one its key came with: the sender's, or the
        // one a release granted it under. A later release may have widened it since.
        let why: string | null = null;
        try {
          const mine = parseLabel(held.message.banner, catalog, held.message.senderNation);
          checkLabelWidening(mine, request.label_canonical, catalog);
        } catch (error) {
          if (!(error instanceof EnvelopeError || error instanceof LabelError)) throw error;
          why = error.message;
        }
        if (why !== null) {
          problems.push(
            `The message's label here is ${held.message.banner}, and the request's ` +
              `${request.label} is not a release of it: ${why}.`,
          );
        }
      }
    } catch (error) {
      if (!(error instanceof ReleaseError)) throw error;
      context.itemNote = error.message;
    }
    return context;
  }

  /** The item's key, proven, from the server's copy of the item; cached per item. */
  #hold(request: ReleaseRequest): Promise<Held> {
    const key = `${request.item_type}:${request.item_id}`;
    let held = this.#held.get(key);
    if (held === undefined) {
      held = this.#fetchHeld(request);
      this.#held.set(key, held);
      held.catch(() => this.#held.delete(key));
    }
    return held;
  }

  async #fetchHeld(request: ReleaseRequest): Promise<Held> {
    try {
      if (request.item_type === MESSAGE) {
        return await this.#message(request.channel_id, request.item_id);
      }
      if (request.item_type === DOCUMENT_VERSION) return await this.#document(request.item_id);
      throw new ReleaseError(
        `an item is a message or a document version, not ${request.item_type}`,
      );
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) {
        throw new ReleaseError(`this device holds no ${request.item_type.replace("_", " ")} here`);
      }
      if (error instanceof Unverifiable || error instanceof EnvelopeError) {
        throw new ReleaseError(`the item does not verify here: ${error.message}`);
      }
      if (error instanceof DocumentError) {
        throw new ReleaseError(`the document version does not verify here: ${error.message}`);
      }
      throw error;
    }
  }

  /** The message, found in this device's deliveries in its channel, opened and verified. */
  async #message(channelId: string, messageId: string): Promise<Held> {
    const item = await this.#delivery(channelId, messageId);
    if (item === null) throw new ReleaseError(`this device holds no message ${messageId}`);
    const opened = await openHeld(item, this.reader);
    if (opened.itemKey === null) throw new Unverifiable(opened.message.problem ?? "");
    return {
      itemKey: opened.itemKey,
      holders: new Set(opened.holders),
      message: opened.message,
      document: null,
    };
  }

  /** This device's delivery of `messageId` in the channel (GET .../messages, paged), or null. */
  async #delivery(channelId: string, messageId: string): Promise<unknown> {
    let seen = this.#seen.get(channelId);
    if (seen === undefined) {
      seen = { pageOf: new Map(), cursor: 0 };
      this.#seen.set(channelId, seen);
    }
    const known = seen.pageOf.get(messageId);
    let after = known ?? seen.cursor;
    for (;;) {
      const page = await this.api.request<SyncPage>(
        "GET",
        `/v1/channels/${segment(channelId)}/messages?after=${after}&limit=100`,
      );
      let found: unknown = null;
      for (const item of page.items) {
        const sealed = isObject(item) && isObject(item.message) ? item.message : null;
        const id = sealed !== null && isObject(sealed.header) ? sealed.header.message_id : null;
        if (typeof id !== "string") continue;
        if (!seen.pageOf.has(id)) seen.pageOf.set(id, after);
        if (id === messageId) found = item;
      }
      if (known === undefined) seen.cursor = Math.max(seen.cursor, page.cursor);
      if (found !== null) return found;
      if (known !== undefined || !page.more || page.cursor <= after) return null;
      after = page.cursor;
    }
  }

  /** A document version's key, from its header and this device's envelope or grant, proven
   * by its sender's signed trailer and key commitment (the content is not fetched). */
  async #document(versionId: string): Promise<Held> {
    const access = await this.api.request<DocumentAccess>(
      "GET",
      `/v1/documents/versions/${segment(versionId)}`,
    );
    const header = checkDocumentHeader(access.version.header);
    // As openVersion checks a download: the version asked for, under an audience its sender
    // made, with a label its sender's nation signed.
    if (header.versionId !== versionId) {
      throw new Unverifiable(`the server gave version ${header.versionId} for ${versionId}`);
    }
    let sender;
    try {
      sender = checkSenderCertificate(access.sender_certificate, this.reader.pins, new Date());
    } catch (error) {
      if (!(error instanceof Unverifiable)) throw error;
      throw new Unverifiable(`the sender's device cannot be trusted: ${error.message}`);
    }
    if (sender.deviceId !== header.senderDevice || sender.userId !== header.senderUser) {
      throw new Unverifiable("the sender's certificate is for another device or user");
    }
    const audienceHeader = checkAudienceHeader(access.audience.header);
    if (
      audienceHeader.audienceId !== header.audienceId ||
      audienceHeader.creatorDevice !== header.senderDevice ||
      audienceHeader.container !== header.container
    ) {
      throw new Unverifiable("the version came with an audience its sender did not make");
    }
    let originator: string | null;
    try {
      originator = labelFromCanonical(header.label, this.reader.catalog).originator;
    } catch (error) {
      if (!(error instanceof LabelError)) throw error;
      throw new Unverifiable(`the version's label: ${error.message}`);
    }
    if (originator !== sender.nationality) {
      throw new Unverifiable("the version's label is not one its sender's nation signed");
    }
    const signingKey = sender.deviceKeys.signingKey;
    let itemKey: Uint8Array;
    if (access.grant !== null && access.grant !== undefined) {
      const released = await openDeliveredGrant(
        access.grant,
        access.version.header,
        access.version.header.label,
        this.reader,
      );
      itemKey = released.itemKey;
    } else {
      if (access.audience.envelope === null) {
        throw new Unverifiable("this device holds no key for the item");
      }
      const audienceKey = await openAudienceEnvelope(
        this.reader.keys,
        this.reader.deviceId,
        {
          header: access.audience.header,
          signature: access.audience.signature,
          envelopes: { [this.reader.deviceId]: access.audience.envelope },
        },
        signingKey,
      );
      itemKey = await documentKey(audienceKey, access.version.header);
    }
    // The sender's signed trailer and key commitment prove the key is the version's.
    await DocumentDecryptor.create(
      access.version.header,
      access.version.trailer,
      itemKey,
      signingKey,
    );
    return {
      itemKey,
      holders: new Set(audienceHeader.devices),
      message: null,
      document: { filename: header.filename, size: header.size, sender: sender.username },
    };
  }

  /**
   * Carry out an approved request: seal the item's key to the devices its approved label
   * newly admits, under a label version signed by this device. A device that became eligible
   * meanwhile (409) is sealed to afresh, once.
   */
  async grant(request: ReleaseRequest): Promise<Granted> {
    if (request.status !== "approved") {
      throw new ReleaseError(`release request ${request.id} is ${request.status}`);
    }
    const { catalog } = this.reader;
    let held: Held;
    let previous: Label;
    let wider: Label;
    try {
      held = await this.#hold(request);
      [previous, wider] = checkLabelWidening(
        request.label_canonical,
        request.requested_label_canonical,
        catalog,
      );
    } catch (error) {
      if (error instanceof ReleaseError || error instanceof EnvelopeError) {
        throw new ReleaseError(`cannot release ${request.item_id}: ${error.message}`);
      }
      throw error;
    }
    const channel = await this.api.request<ChannelRead>(
      "GET",
      `/v1/channels/${segment(request.channel_id)}`,
    );
    let ceiling: Label;
    try {
      ceiling = labelFromCanonical(channel.ceiling_canonical, catalog);
    } catch (error) {
      throw new ReleaseError(`the channel's ceiling is not one this page knows: ${String(error)}`);
    }
    for (let attempt = 1; ; attempt++) {
      const roster = await this.#vouched(request.channel_id);
      const container = { ceiling, members: roster.members };
      const before = new Set(
        admitted(roster.verified, previous, container, catalog).eligible.map((d) => d.deviceId),
      );
      const due = admitted(roster.verified, wider, container, catalog).eligible.filter(
        (d) => !before.has(d.deviceId) && !held.holders.has(d.deviceId),
      );
      if (due.length === 0) {
        throw new ReleaseError(
          `no device in the channel is newly eligible for ${request.requested_label}`,
        );
      }
      let sealed;
      try {
        sealed = await createGrant(this.reader.keys, held.itemKey, {
          grantId: crypto.randomUUID(),
          requestId: request.id,
          itemType: request.item_type,
          itemId: request.item_id,
          container: request.channel_id,
          grantorUser: this.me.userId,
          grantorDevice: this.me.deviceId,
          previousLabel: request.label_canonical as JsonObject,
          label: request.requested_label_canonical as JsonObject,
          recipients: due.map((d) => ({ deviceId: d.deviceId, keys: d.body.deviceKeys })),
          createdAt: formatUtcTime(new Date()),
        });
      } catch (error) {
        if (error instanceof EnvelopeError) {
          throw new ReleaseError(`cannot seal the grant: ${error.message}`);
        }
        throw error;
      }
      try {
        const answer = await this.api.request<ReleaseRequest>(
          "POST",
          `/v1/releases/${segment(request.id)}/grant`,
          { grant: sealed },
        );
        return { request: answer, people: people(due), devices: due.map((d) => d.deviceId) };
      } catch (error) {
        // A device became eligible since the roster was fetched: seal afresh, once.
        if (error instanceof ApiError && error.status === 409 && attempt === 1) continue;
        if (error instanceof ApiError && error.status === 409) {
          const said = insisted(error.problem.devices, roster.excluded);
          if (said !== null) throw new ReleaseError(said);
        }
        throw error;
      }
    }
  }
}
