/**
 * Sending from the page, as clients/sdk/messaging.py `Messenger.send` does: the label parsed
 * with this user's nation as originator; the channel's roster fetched (If-None-Match, so an
 * unchanged roster costs no body) and each device's certificate verified against the pinned
 * authority keys and the keys the server lists; the devices whose certified person the access
 * decision admits for the label, sealed to in an audience (kept while they stay the same);
 * the message encrypted and signed, and submitted with If-Match naming the roster it was
 * sealed for. A changed roster (412) or an audience the server finds incomplete (409) is
 * fetched and sealed afresh, once. With key transparency (app/transparency.ts), a roster
 * fetched afresh also has each verified device checked in the key directory: a device it does
 * not vouch for is excluded with its reason, and a checkpoint it refuses refuses the send,
 * sealing nothing. Nothing here touches the DOM, so Node's tests run it.
 */
import { ApiError, segment, type Api } from "./api.js";
import { checkSenderCertificate, TEXT_TYPE } from "./messages.js";
import { CheckpointRefused, TransparencyError, type DeviceTransparency } from "./transparency.js";
import {
  CertificateError,
  EnvelopeError,
  MAX_MESSAGE_PLAINTEXT,
  MESSAGE_TYPE,
  createAudience,
  encryptMessage,
  equalBytes,
  b64uDecode,
  b64uEncode,
  formatUtcTime,
  utf8,
  type AuthorityKeys,
  type CertificateBody,
  type DeviceKeys,
  type JsonObject,
} from "../protocol/index.js";
import {
  LabelError,
  clearanceFromCanonical,
  decide,
  labelFromCanonical,
  parseLabel,
  renderLabel,
  type Catalog,
  type Clearance,
  type Container,
  type Label,
} from "../protocol/labels.js";

export class SendError extends Error {}

/** The channel as the server shows it (Channel, §17.5): what sending needs of it. */
export interface ChannelInfo {
  id: string;
  name: string;
  ceiling_canonical: unknown;
  labels: string[];
  default_label: string;
}

export interface RosterDevice {
  device_id: string;
  user_id: string;
  username: string;
  nationality: string | null;
  signing_key: string;
  encryption_key: string;
  certificate: unknown;
}

/** A roster device whose certificate verified: who it is, as its nation vouches. */
export interface Verified {
  deviceId: string;
  body: CertificateBody;
}

export interface Excluded {
  deviceId: string;
  username: string;
  reason: string;
}

interface Roster {
  etag: string | null;
  verified: Verified[];
  excluded: Excluded[];
  members: Set<string>;
}

interface HeldAudience {
  audienceId: string;
  key: Uint8Array;
  devices: string;
}

/** Who a message under a label would reach (before sending) or reached (after). */
export interface Reach {
  banner: string;
  /** "username (NATION)" of each eligible device's person, sorted, once each. */
  people: string[];
  devices: string[];
  excluded: Excluded[];
}

export interface Sent extends Reach {
  seq: number;
  messageId: string;
  created: boolean;
}

export interface Me {
  userId: string;
  deviceId: string;
  nationality: string;
  keys: DeviceKeys;
}

export function people(devices: Verified[]): string[] {
  return [...new Set(devices.map((d) => `${d.body.username} (${d.body.nationality})`))].sort();
}

/**
 * Each roster device's certificate, verified against the pins and against the device id and
 * keys the server lists (as the SDK's `_check_roster`); the rest excluded with the reason.
 */
export function checkRoster(
  entries: readonly RosterDevice[],
  pins: AuthorityKeys,
  now: Date,
): { verified: Verified[]; excluded: Excluded[] } {
  const verified: Verified[] = [];
  const excluded: Excluded[] = [];
  for (const entry of entries) {
    try {
      const body = checkSenderCertificate(entry.certificate, pins, now);
      if (body.deviceId !== entry.device_id || body.userId !== entry.user_id) {
        throw new CertificateError("its certificate is for another device or user");
      }
      if (
        !equalBytes(b64uDecode(entry.signing_key), body.deviceKeys.signingKey) ||
        !equalBytes(b64uDecode(entry.encryption_key), body.deviceKeys.encryptionKey)
      ) {
        throw new CertificateError("the server lists keys other than the certified ones");
      }
      verified.push({ deviceId: entry.device_id, body });
    } catch (error) {
      excluded.push({
        deviceId: String(entry.device_id),
        username: String(entry.username),
        reason: error instanceof Error ? error.message : String(error),
      });
    }
  }
  return { verified, excluded };
}

/**
 * `checkRoster`, then each verified device checked in the key directory (as the SDK's
 * `_check_roster` with `Messenger.transparency` set): one the directory does not vouch for is
 * excluded with its reason. A checkpoint the directory is refused at (not the pinned key's,
 * older than or forked from the one kept) is thrown (CheckpointRefused): the whole log is in
 * doubt, so the caller seals to no one. `transparency` null checks certificates only.
 */
export async function vouchedRoster(
  entries: readonly RosterDevice[],
  pins: AuthorityKeys,
  now: Date,
  transparency: DeviceTransparency | null,
): Promise<{ verified: Verified[]; excluded: Excluded[] }> {
  const { verified, excluded } = checkRoster(entries, pins, now);
  if (transparency === null) return { verified, excluded };
  transparency.forget(); // a roster checked afresh: its devices' status too
  const vouched: Verified[] = [];
  for (const device of verified) {
    try {
      await transparency.check(device.body);
      vouched.push(device);
    } catch (error) {
      if (error instanceof CheckpointRefused) throw error;
      if (!(error instanceof TransparencyError || error instanceof ApiError)) throw error;
      excluded.push({
        deviceId: device.deviceId,
        username: device.body.username,
        reason: `the key directory does not vouch for it: ${error.message}`,
      });
    }
  }
  return { verified: vouched, excluded };
}

/** The sentence for a send the key directory's checkpoint refuses. */
export function directoryRefused(error: CheckpointRefused): string {
  return `the server's key directory is refused: ${error.message} (PROTOCOL.md §19.4)`;
}

/**
 * The server wants `wanted` devices in the audience twice running: those this page excluded,
 * named with why, or null when it excluded none of them (the server's refusal then stands).
 */
export function insisted(wanted: unknown, excluded: readonly Excluded[]): string | null {
  const ids = new Set(Array.isArray(wanted) ? wanted.map(String) : []);
  const refused = excluded.filter((d) => ids.has(d.deviceId));
  if (refused.length === 0) return null;
  return (
    "the server requires devices this page does not vouch for (" +
    refused.map((d) => `device ${d.deviceId} of ${d.username}: ${d.reason}`).join("; ") +
    ")"
  );
}

/**
 * The verified devices whose certified person the access decision admits for `label` in
 * `container`, and the reasons each other one is not.
 */
export function admitted(
  verified: readonly Verified[],
  label: Label,
  container: Container,
  catalog: Catalog,
): { eligible: Verified[]; refused: Map<string, string[]> } {
  const eligible: Verified[] = [];
  const refused = new Map<string, string[]>();
  for (const device of verified) {
    let clearance: Clearance | null;
    try {
      clearance = clearanceFromCanonical(device.body.clearance, catalog);
    } catch {
      clearance = null; // a clearance this catalog cannot read: denied
    }
    const subject = { userId: device.body.userId, nationality: device.body.nationality, clearance };
    const decision = decide(subject, label, container, catalog);
    if (decision.allowed) eligible.push(device);
    else refused.set(device.deviceId, decision.reasons);
  }
  return { eligible, refused };
}

export class Sender {
  readonly #rosters = new Map<string, Roster>();
  readonly #audiences = new Map<string, HeldAudience>();

  constructor(
    private readonly api: Api,
    private readonly me: Me,
    private readonly pins: AuthorityKeys,
    private readonly catalog: Catalog,
    private readonly transparency: DeviceTransparency | null = null,
  ) {}

  /** Forget what is kept of a channel's roster (a roster-changed frame; null: every one). */
  rosterChanged(channelId: string | null): void {
    if (channelId === null) this.#rosters.clear();
    else this.#rosters.delete(channelId);
  }

  #label(banner: string): Label {
    try {
      return parseLabel(banner, this.catalog, this.me.nationality);
    } catch (error) {
      if (error instanceof LabelError) throw new SendError(`label ${banner}: ${error.message}`);
      throw error;
    }
  }

  /** `banner` parsed with this user's nation as originator; SendError if it is not one. */
  parse(banner: string): Label {
    return this.#label(banner);
  }

  /** The channel's roster, verified; asked again with If-None-Match when one is held. */
  async #roster(channelId: string): Promise<Roster> {
    const held = this.#rosters.get(channelId);
    const path = `/v1/channels/${segment(channelId)}/roster`;
    const answer = await this.api.exchange<RosterDevice[]>("GET", path, {
      headers: held?.etag ? { "If-None-Match": held.etag } : {},
    });
    const now = new Date();
    if (answer.status === 304 && held !== undefined) {
      if (held.verified.every((d) => d.body.expiresAt > now)) return held;
      // A certificate has expired since: verified again below, from a fresh answer.
      this.#rosters.delete(channelId);
      return this.#roster(channelId);
    }
    const entries = answer.body ?? [];
    let checked;
    try {
      checked = await vouchedRoster(entries, this.pins, now, this.transparency);
    } catch (error) {
      if (error instanceof CheckpointRefused) throw new SendError(directoryRefused(error));
      throw error;
    }
    const roster: Roster = {
      etag: answer.headers.get("ETag"),
      ...checked,
      members: new Set(entries.map((entry) => String(entry.user_id))),
    };
    this.#rosters.set(channelId, roster);
    return roster;
  }

  /** The verified devices whose person may receive `label` here; SendError if none may. */
  #eligible(roster: Roster, label: Label, channel: ChannelInfo): Verified[] {
    let ceiling: Label;
    try {
      ceiling = labelFromCanonical(channel.ceiling_canonical, this.catalog);
    } catch (error) {
      throw new SendError(`the channel's ceiling is not one this page knows: ${String(error)}`);
    }
    const container = { ceiling, members: roster.members };
    const { eligible, refused } = admitted(roster.verified, label, container, this.catalog);
    const mine = refused.get(this.me.deviceId) ?? ["this device's certificate does not verify"];
    if (eligible.length === 0) {
      throw new SendError(
        `you may not send ${renderLabel(label, this.catalog)} here: ${mine.join("; ")}`,
      );
    }
    return eligible;
  }

  /** Who a message under `banner` would be released to, as the page would seal it now. */
  async preview(channel: ChannelInfo, banner: string): Promise<Reach> {
    const label = this.#label(banner);
    const roster = await this.#roster(channel.id);
    const eligible = this.#eligible(roster, label, channel);
    return {
      banner: renderLabel(label, this.catalog),
      people: people(eligible),
      devices: eligible.map((d) => d.deviceId),
      excluded: roster.excluded,
    };
  }

  async #audience(channelId: string, eligible: Verified[]): Promise<HeldAudience> {
    // The same devices with the same keys: the held audience still fits.
    const devices = eligible
      .map((d) => {
        const { signingKey, encryptionKey } = d.body.deviceKeys;
        return `${d.deviceId}:${b64uEncode(signingKey)}:${b64uEncode(encryptionKey)}`;
      })
      .sort()
      .join();
    const held = this.#audiences.get(channelId);
    if (held !== undefined && held.devices === devices) return held;
    const { sealed, audienceKey } = await createAudience(this.me.keys, {
      audienceId: crypto.randomUUID(),
      container: channelId,
      creatorUser: this.me.userId,
      creatorDevice: this.me.deviceId,
      recipients: eligible.map((d) => ({ deviceId: d.deviceId, keys: d.body.deviceKeys })),
      createdAt: formatUtcTime(new Date()),
    });
    const created = await this.api.request<{ audience_id: string }>(
      "POST",
      `/v1/channels/${segment(channelId)}/audiences`,
      sealed,
    );
    const audience = { audienceId: created.audience_id, key: audienceKey, devices };
    this.#audiences.set(channelId, audience);
    return audience;
  }

  /**
   * The audience a document version under `banner` in `channel` is sealed to, as the SDK's
   * `Documents._begin` makes it: the roster verified, the devices `decide` admits, the held
   * audience reused while they stay the same, else a new one sealed and created. `fresh`
   * forgets the held roster and audience first (after the server found one incomplete).
   */
  async audienceFor(
    channel: ChannelInfo,
    banner: string,
    fresh = false,
  ): Promise<{ label: Label; audienceId: string; key: Uint8Array; excluded: Excluded[] }> {
    const label = this.#label(banner);
    if (fresh) {
      this.#audiences.delete(channel.id);
      this.#rosters.delete(channel.id);
    }
    const roster = await this.#roster(channel.id);
    const eligible = this.#eligible(roster, label, channel);
    const audience = await this.#audience(channel.id, eligible);
    return { label, audienceId: audience.audienceId, key: audience.key, excluded: roster.excluded };
  }

  /**
   * Encrypt `text` for the devices eligible for `banner` in `channel`, and submit it: plain
   * text by default, or (as the SDK's `Messenger.send` with `content_type` and `reply_to`) a
   * committee body of its content type, replying to a message.
   */
  async send(
    channel: ChannelInfo,
    banner: string,
    text: string,
    options: { contentType?: string; replyTo?: string | null } = {},
  ): Promise<Sent> {
    const label = this.#label(banner);
    const plaintext = utf8(text);
    if (plaintext.length > MAX_MESSAGE_PLAINTEXT) {
      throw new SendError(`the message is longer than ${MAX_MESSAGE_PLAINTEXT / 1024} KiB`);
    }
    const messageId = crypto.randomUUID();
    let retried = false;
    for (;;) {
      const roster = await this.#roster(channel.id);
      const eligible = this.#eligible(roster, label, channel);
      const audience = await this.#audience(channel.id, eligible);
      let sealed;
      try {
        sealed = await encryptMessage(
          this.me.keys,
          audience.key,
          {
            type: MESSAGE_TYPE,
            version: 1,
            message_id: messageId,
            container: channel.id,
            sender_user: this.me.userId,
            sender_device: this.me.deviceId,
            audience_id: audience.audienceId,
            sent_at: formatUtcTime(new Date()),
            label: label as unknown as JsonObject,
            content_type: options.contentType ?? `${TEXT_TYPE}; charset=utf-8`,
            reply_to: options.replyTo ?? null,
          },
          plaintext,
        );
      } catch (error) {
        if (error instanceof EnvelopeError) {
          throw new SendError(`cannot seal the message: ${error.message}`);
        }
        throw error;
      }
      try {
        const { body } = await this.api.exchange<{
          seq: number;
          message_id: string;
          created: boolean;
          label: string;
          released_to: string[];
        }>("POST", `/v1/channels/${segment(channel.id)}/messages`, {
          body: sealed,
          headers: roster.etag ? { "If-Match": roster.etag } : {},
        });
        const accepted = body!;
        const released = new Set(accepted.released_to);
        return {
          seq: accepted.seq,
          messageId: accepted.message_id,
          created: accepted.created,
          banner: accepted.label,
          people: people(roster.verified.filter((d) => released.has(d.deviceId))),
          devices: accepted.released_to,
          excluded: roster.excluded,
        };
      } catch (error) {
        if (!(error instanceof ApiError)) throw error;
        if (retried) {
          const said =
            error.code === "audience-incomplete"
              ? insisted(error.problem.devices, roster.excluded)
              : null;
          if (said !== null) throw new SendError(said);
          throw error;
        }
        if (error.code === "roster-changed") {
          this.#rosters.delete(channel.id); // someone joined, left or was re-certified
        } else if (error.code === "audience-incomplete") {
          this.#audiences.delete(channel.id);
          this.#rosters.delete(channel.id);
        } else {
          throw error;
        }
        retried = true;
      }
    }
  }
}
