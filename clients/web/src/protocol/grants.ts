/**
 * Item grants, as protocol/grants.py composes them (docs/PROTOCOL.md §16, "Item grants and
 * label versions"): one item's own key (a message key or a document-version key, never an
 * audience key) sealed with HPKE to further devices under a header, signed by the granting
 * device, that names the release request, the item, its previous label and the wider one,
 * the devices and the digest of their exact keys, and a commitment to the item key. A history
 * grant has `request_id` null (§16.7).
 *
 * Nothing here trusts its input: headers are checked field by field, sizes are bounded before
 * any work, and signatures are verified before anything is opened. Every failure throws
 * EnvelopeError naming what failed.
 */
import { b64uEncode, equalBytes } from "./bytes.js";
import {
  CTX_GRANT_ENVELOPE,
  CTX_GRANT_HEADER,
  CTX_GRANT_ITEM_KEY_COMMITMENT,
  CTX_GRANT_SIGNATURE,
  canonicalJson,
  digest,
  withContext,
  type Json,
  type JsonObject,
} from "./canonical.js";
import {
  ENVELOPE_SIZE,
  EnvelopeError,
  MAX_AUDIENCE_DEVICES,
  MAX_LABEL_BYTES,
  MESSAGE_KEY_SIZE,
  checkMessageHeader,
  deviceKeysDigest,
  deviceList,
  idField,
  isObject,
  requireFields,
  timeField,
  uuidField,
  verifySignature,
  wireBytes,
  type Recipient,
} from "./envelopes.js";
import type { DeviceKeys } from "./keys.js";
import { LabelError, expandReleasability, labelFromCanonical } from "./labels.js";
import type { Catalog, Label } from "./labels.js";
import { SIGNATURE_SIZE, hpkeOpen, hpkeSeal } from "./primitives.js";
import { DocumentError, checkDocumentHeader } from "./stream.js";

export const GRANT_TYPE = "attache.grant";
export const GRANT_VERSION = 1;
/** A message key or a document-version key: both 32 bytes. */
export const ITEM_KEY_SIZE = MESSAGE_KEY_SIZE;
/** HPKE `enc` of X-Wing, the sealed 32-byte item key and its tag: an audience envelope's size. */
export const GRANT_ENVELOPE_SIZE = ENVELOPE_SIZE;
export const MAX_GRANT_DEVICES = MAX_AUDIENCE_DEVICES;
export const ITEM_TYPES: ReadonlySet<string> = new Set(["message", "document_version"]);
const DIGEST_SIZE = 32;

export const GRANT_FIELDS = new Set([
  "type",
  "version",
  "grant_id",
  "request_id",
  "item_type",
  "item_id",
  "container",
  "grantor_user",
  "grantor_device",
  "previous_label",
  "label",
  "devices",
  "device_keys_digest",
  "item_key_commitment",
  "created_at",
]);

/** The checked content of a grant header (a label version), and its digest `hd`. */
export interface GrantHeader {
  grantId: string;
  /** Null in a history grant. */
  requestId: string | null;
  itemType: string;
  /** The message id of a message, the version id of a document version. */
  itemId: string;
  container: string;
  grantorUser: string;
  grantorDevice: string;
  previousLabel: JsonObject;
  label: JsonObject;
  devices: string[];
  deviceKeysDigest: string;
  itemKeyCommitment: string;
  createdAt: Date;
  headerDigest: Uint8Array;
}

/** A grant as it travels: all envelopes when made; a device receives only its own. */
export interface SealedGrant {
  header: JsonObject;
  signature: string;
  envelopes: Record<string, string>;
}

function labelField(header: JsonObject, name: string): JsonObject {
  const label = header[name];
  if (!isObject(label)) throw new EnvelopeError(`grant header field ${name} must be a JSON object`);
  let encoded: Uint8Array;
  try {
    encoded = canonicalJson(label);
  } catch (error) {
    throw new EnvelopeError(`grant header field ${name} is not canonical JSON: ${String(error)}`);
  }
  if (encoded.length > MAX_LABEL_BYTES) {
    throw new EnvelopeError(`grant header field ${name} is longer than ${MAX_LABEL_BYTES} bytes`);
  }
  return label;
}

/**
 * Check a grant header's structure (not its signature) and type its fields: all of
 * GRANT_FIELDS and no other, UUIDs where protocol/grants.py wants them (request_id may be
 * null), both labels JSON objects of bounded size (not read against a catalog here), devices
 * sorted and unique, both digests 32 bytes, created_at RFC 3339 UTC.
 */
export function checkGrantHeader(header: unknown): GrantHeader {
  const kind = "grant";
  requireFields(header, GRANT_FIELDS, kind, GRANT_TYPE);
  const itemType = header.item_type;
  if (typeof itemType !== "string" || !ITEM_TYPES.has(itemType)) {
    throw new EnvelopeError("grant header field item_type must be 'message' or 'document_version'");
  }
  const ids = deviceList(header, kind, MAX_GRANT_DEVICES);
  wireBytes(header.device_keys_digest, "grant header field device_keys_digest", DIGEST_SIZE);
  wireBytes(header.item_key_commitment, "grant header field item_key_commitment", DIGEST_SIZE);
  return {
    grantId: uuidField(header, "grant_id", kind),
    requestId: header.request_id === null ? null : uuidField(header, "request_id", kind),
    itemType,
    itemId: uuidField(header, "item_id", kind),
    container: idField(header, "container", kind),
    grantorUser: idField(header, "grantor_user", kind),
    grantorDevice: idField(header, "grantor_device", kind),
    previousLabel: labelField(header, "previous_label"),
    label: labelField(header, "label"),
    devices: [...ids],
    deviceKeysDigest: header.device_keys_digest as string,
    itemKeyCommitment: header.item_key_commitment as string,
    createdAt: timeField(header, "created_at", kind),
    headerDigest: digest(CTX_GRANT_HEADER, canonicalJson(header)),
  };
}

/** `hd = digest(CTX_GRANT_HEADER, JCS(header))` of a checked header. */
export function grantHeaderDigest(header: unknown): Uint8Array {
  return checkGrantHeader(header).headerDigest;
}

function itemKeyBytes(key: Uint8Array): Uint8Array {
  if (!(key instanceof Uint8Array) || key.length !== ITEM_KEY_SIZE) {
    throw new EnvelopeError(`an item key must be ${ITEM_KEY_SIZE} bytes`);
  }
  return key;
}

/** b64u of digest(CTX_GRANT_ITEM_KEY_COMMITMENT, item key): the header's item_key_commitment. */
export function itemKeyCommitment(itemKey: Uint8Array): string {
  return b64uEncode(digest(CTX_GRANT_ITEM_KEY_COMMITMENT, itemKeyBytes(itemKey)));
}

function grantSigningInput(headerDigest: Uint8Array): Uint8Array {
  return withContext(CTX_GRANT_SIGNATURE, headerDigest);
}

export function grantEnvelopeInfo(
  grantId: string,
  deviceId: string,
  headerDigest: Uint8Array,
): Uint8Array {
  return withContext(
    CTX_GRANT_ENVELOPE,
    canonicalJson({
      grant_id: grantId,
      device_id: deviceId,
      header_digest: b64uEncode(headerDigest),
    }),
  );
}

// --- labels and items: what a recipient checks besides the cryptography ------------------------

function parseLabel(value: unknown, what: string, catalog: Catalog): Label {
  try {
    return labelFromCanonical(value, catalog);
  } catch (error) {
    if (error instanceof LabelError) {
      throw new EnvelopeError(`grant ${what} is not a valid label: ${error.message}`);
    }
    throw error;
  }
}

const SAME_FIELDS = [
  "policy",
  "level",
  "categories",
  "originator",
  "privacy_mark",
  "review_date",
] as const;

/**
 * Check that `label` is exactly `previousLabel` with its releasability widened (both canonical
 * labels, read against `catalog`): every field but REL TO equal, and the nations `label`
 * releases to (groups expanded) a strict superset of the previous ones. Returns both, parsed.
 */
export function checkLabelWidening(
  previousLabel: unknown,
  label: unknown,
  catalog: Catalog,
): [Label, Label] {
  const previous = parseLabel(previousLabel, "previous_label", catalog);
  const wider = parseLabel(label, "label", catalog);
  for (const name of SAME_FIELDS) {
    // Canonical labels: the same value has the same JCS bytes.
    if (!sameJson(previous[name], wider[name])) {
      throw new EnvelopeError(
        `the grant's label changes ${name}; a release may only widen releasability`,
      );
    }
  }
  let before: Set<string>;
  let after: Set<string>;
  try {
    before = expandReleasability(previous, catalog);
    after = expandReleasability(wider, catalog);
  } catch (error) {
    if (error instanceof LabelError) {
      throw new EnvelopeError(`the grant's releasability cannot be expanded: ${error.message}`);
    }
    throw error;
  }
  const lost = [...before].filter((nation) => !after.has(nation)).sort();
  if (lost.length > 0) {
    throw new EnvelopeError(`the grant's label narrows releasability: it drops ${lost.join(", ")}`);
  }
  if (before.size === after.size) {
    throw new EnvelopeError("the grant's label does not widen releasability");
  }
  return [previous, wider];
}

/**
 * A history grant's labels (§16.7): previous_label exactly the label the sender signed, and
 * label that one or one widening only its releasability. The label to show the item under.
 */
export function checkHistoryLabels(
  grant: GrantHeader,
  signedLabel: unknown,
  catalog: Catalog,
): Label {
  if (grant.requestId !== null) {
    throw new EnvelopeError(`grant ${grant.grantId} is a release grant, not a history grant`);
  }
  if (!sameJson(grant.previousLabel, signedLabel)) {
    throw new EnvelopeError("the history grant names a label other than the one the sender signed");
  }
  if (sameJson(grant.label, grant.previousLabel)) {
    return parseLabel(grant.previousLabel, "previous_label", catalog);
  }
  return checkLabelWidening(grant.previousLabel, grant.label, catalog)[1];
}

/** Whether two JSON values are equal (Python's == on dicts from JSON). */
export function sameJson(a: unknown, b: unknown): boolean {
  try {
    return equalBytes(canonicalJson(a as Json), canonicalJson(b as Json));
  } catch {
    return false;
  }
}

/**
 * Check that a grant names the item whose header is `itemHeader` (a message header for
 * "message", a document version header for "document_version"), in the same container. The
 * grant's key opening the item proves the key is the item's; this proves the label version
 * is about that item.
 */
export function checkGrantItem(grant: GrantHeader, itemHeader: unknown): void {
  let itemId: string;
  let container: string;
  if (grant.itemType === "message") {
    const message = checkMessageHeader(itemHeader);
    [itemId, container] = [message.messageId, message.container];
  } else {
    try {
      const document = checkDocumentHeader(itemHeader);
      [itemId, container] = [document.versionId, document.container];
    } catch (error) {
      if (error instanceof DocumentError) {
        throw new EnvelopeError(`the granted document version header: ${error.message}`);
      }
      throw error;
    }
  }
  if (itemId !== grant.itemId) {
    throw new EnvelopeError(`grant ${grant.grantId} is for item ${grant.itemId}, not ${itemId}`);
  }
  if (container !== grant.container) {
    throw new EnvelopeError(
      `grant ${grant.grantId} names container ${grant.container}, the item is in ${container}`,
    );
  }
}

// --- sealed grants -----------------------------------------------------------------------------

/**
 * Make a grant: `itemKey` (the item's own key, never an audience key) sealed to each
 * recipient, whose certificate and eligibility for `label` the caller has already checked,
 * under a header signed by the grantor device. Labels are canonical label objects; `label`
 * is the approved one. `createdAt` is RFC 3339 UTC with seconds.
 */
export async function createGrant(
  grantor: DeviceKeys,
  itemKey: Uint8Array,
  fields: {
    grantId: string;
    requestId: string | null;
    itemType: string;
    itemId: string;
    container: string;
    grantorUser: string;
    grantorDevice: string;
    previousLabel: JsonObject;
    label: JsonObject;
    recipients: readonly Recipient[];
    createdAt: string;
  },
): Promise<SealedGrant> {
  itemKeyBytes(itemKey);
  if (fields.recipients.length > MAX_GRANT_DEVICES) {
    throw new EnvelopeError(`a grant holds at most ${MAX_GRANT_DEVICES} devices`);
  }
  const header: JsonObject = {
    type: GRANT_TYPE,
    version: GRANT_VERSION,
    grant_id: fields.grantId,
    request_id: fields.requestId,
    item_type: fields.itemType,
    item_id: fields.itemId,
    container: fields.container,
    grantor_user: fields.grantorUser,
    grantor_device: fields.grantorDevice,
    previous_label: structuredClone(fields.previousLabel),
    label: structuredClone(fields.label),
    devices: fields.recipients.map((r) => r.deviceId).sort(),
    device_keys_digest: deviceKeysDigest(fields.recipients),
    item_key_commitment: itemKeyCommitment(itemKey),
    created_at: fields.createdAt,
  };
  const checked = checkGrantHeader(header);
  const signature = grantor.sign(grantSigningInput(checked.headerDigest));
  const envelopes: Record<string, string> = {};
  for (const recipient of [...fields.recipients].sort((a, b) =>
    a.deviceId < b.deviceId ? -1 : 1,
  )) {
    const info = grantEnvelopeInfo(checked.grantId, recipient.deviceId, checked.headerDigest);
    try {
      envelopes[recipient.deviceId] = b64uEncode(
        await hpkeSeal(recipient.keys.encryptionKey, itemKey, info),
      );
    } catch (error) {
      throw new EnvelopeError(
        `the encryption key of device ${recipient.deviceId} is unusable: ${String(error)}`,
      );
    }
  }
  return { header, signature: b64uEncode(signature), envelopes };
}

/** Check a grant header and its grantor device's signature (what the server checks). */
export function verifyGrant(
  header: unknown,
  signature: Uint8Array,
  grantorSigningKey: Uint8Array,
): GrantHeader {
  const checked = checkGrantHeader(header);
  verifySignature(
    grantorSigningKey,
    signature,
    grantSigningInput(checked.headerDigest),
    "grant signature",
  );
  return checked;
}

/**
 * The item key, for the device `deviceId` holding `device`: verifies the grantor's
 * signature, that the device is listed, opens the envelope whose `info` names this grant,
 * this device and this header, and checks the key against the signed commitment. The caller
 * then decrypts the item with it, and checks that the grant names that item
 * (checkGrantItem) and that its label only widens releasability (checkLabelWidening).
 */
export async function openGrant(
  device: DeviceKeys,
  deviceId: string,
  header: unknown,
  signature: string,
  envelope: string,
  grantorSigningKey: Uint8Array,
): Promise<Uint8Array> {
  const checked = verifyGrant(
    header,
    wireBytes(signature, "grant signature", SIGNATURE_SIZE),
    grantorSigningKey,
  );
  if (!checked.devices.includes(deviceId)) {
    throw new EnvelopeError(`device ${deviceId} is not in grant ${checked.grantId}`);
  }
  const sealed = wireBytes(envelope, `grant envelope for ${deviceId}`, GRANT_ENVELOPE_SIZE);
  let itemKey: Uint8Array;
  try {
    itemKey = await hpkeOpen(
      device.xwingSeed,
      sealed,
      grantEnvelopeInfo(checked.grantId, deviceId, checked.headerDigest),
    );
  } catch {
    throw new EnvelopeError(
      `the envelope of grant ${checked.grantId} does not open for device ${deviceId}`,
    );
  }
  if (itemKey.length !== ITEM_KEY_SIZE) {
    throw new EnvelopeError("the grant envelope does not hold a 32-byte item key");
  }
  if (itemKeyCommitment(itemKey) !== checked.itemKeyCommitment) {
    throw new EnvelopeError(
      `the key sealed in grant ${checked.grantId} does not match its item_key_commitment`,
    );
  }
  return itemKey;
}
