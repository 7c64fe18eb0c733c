/**
 * The auditor's part of the page, as `attache audit log` and `attache audit verify` do it
 * (clients/cli/audit.py, clients/sdk/audit.py): events queried with the CLI's filters and
 * exported as its CSV and JSON, and the whole log verified in the page without trusting the
 * server: every leaf recomputed from the event (RFC 9162), the checkpoint's signed note
 * checked against the pinned audit key, the log checked against the checkpoint and leaf
 * hashes verified here last time (kept in IndexedDB), every index column checked against its
 * leaf, and the first bad leaf named. Nothing here touches the DOM, so Node's tests run it.
 */
import type { Api } from "./api.js";
import { b64uDecode, equalBytes, utf8 } from "../protocol/bytes.js";
import { Checkpoint, CheckpointError, NoteVerifier, openNote } from "../protocol/checkpoint.js";
import { RootBuilder, leafHash, verifyConsistency } from "../protocol/merkle.js";

// --- Events, as `attache audit log` ------------------------------------------------------------

export interface AuditFilters {
  since?: string;
  until?: string;
  actor?: string;
  nation?: string;
  container?: string;
  action?: string;
  decision?: string;
  label?: string;
}

type Json = Record<string, unknown>;

/** One event as `/v1/audit/events` gives it, with the usernames of its actor and of a user it
 * is about (else null), as the CLI's JSON export gives it. */
export interface AuditEntry {
  id: number;
  leaf_index: number | null;
  event: Json;
  actor_username: string | null;
  object_username: string | null;
}

const FILTERS = [
  "since",
  "until",
  "actor",
  "nation",
  "container",
  "action",
  "decision",
  "label",
] as const;

function part(value: unknown, key: string): unknown {
  return typeof value === "object" && value !== null && !Array.isArray(value)
    ? (value as Json)[key]
    : undefined;
}

/**
 * The events the filters select, oldest first, at most `limit`, paged as the CLI pages them
 * (a short page is the end: asking again would cost one more audited read); then the usernames
 * of the people they name, from one read of the directory.
 */
export async function fetchEvents(
  api: Api,
  filters: AuditFilters,
  limit = 1000,
): Promise<AuditEntry[]> {
  const query = new URLSearchParams();
  for (const name of FILTERS) {
    const value = filters[name]?.trim();
    if (value) query.set(name, name === "nation" ? value.toUpperCase() : value);
  }
  const found: Omit<AuditEntry, "actor_username" | "object_username">[] = [];
  let after = 0;
  while (found.length < limit) {
    const asked = Math.min(1000, limit - found.length);
    const params = new URLSearchParams(query);
    params.set("after", String(after));
    params.set("limit", String(asked));
    const page = await api.request<{ events: AuditEntry[]; cursor: number }>(
      "GET",
      `/v1/audit/events?${params}`,
    );
    found.push(...page.events);
    if (page.events.length < asked) break;
    after = page.cursor;
  }
  const names = new Map<string, string>();
  if (found.length > 0) {
    const users = await api.request<{ id: string; username: string }[]>("GET", "/v1/users");
    for (const user of users) names.set(user.id, user.username);
  }
  const nameOf = (id: unknown) => (typeof id === "string" ? (names.get(id) ?? null) : null);
  return found.map((entry) => {
    const object = entry.event.object;
    return {
      id: entry.id,
      leaf_index: entry.leaf_index,
      event: entry.event,
      actor_username: nameOf(part(entry.event.actor, "user")),
      object_username: part(object, "type") === "user" ? nameOf(part(object, "id")) : null,
    };
  });
}

function show(value: unknown): string {
  if (value === null || value === undefined || value === "") return "-";
  if (Array.isArray(value) && value.length === 0) return "-";
  return String(value);
}

/** The CLI's columns (clients/cli/audit.py FIELDS): heading and how to show an entry. */
export const AUDIT_COLUMNS: readonly (readonly [string, (entry: AuditEntry) => string])[] = [
  ["id", (e) => String(e.id)],
  ["leaf", (e) => show(e.leaf_index)],
  ["time", (e) => String(e.event.time)],
  ["action", (e) => String(e.event.action)],
  ["decision", (e) => String(e.event.decision)],
  ["actor", (e) => show(e.actor_username ?? part(e.event.actor, "user"))],
  ["actor_id", (e) => show(part(e.event.actor, "user"))],
  ["actor_nation", (e) => show(part(e.event.actor, "nation"))],
  [
    "object",
    (e) =>
      `${String(part(e.event.object, "type"))}:${e.object_username ?? String(part(e.event.object, "id"))}`,
  ],
  ["subject_nation", (e) => show(e.event.subject_nation)],
  ["label", (e) => show(part(e.event.label, "banner"))],
  ["reasons", (e) => (Array.isArray(e.event.reasons) ? e.event.reasons.join("; ") : "") || "-"],
];

/** The columns the table on screen shows, as `attache audit log` does. */
export const TABLE_COLUMNS = AUDIT_COLUMNS.filter(([name]) =>
  [
    "id",
    "time",
    "action",
    "decision",
    "actor",
    "actor_nation",
    "object",
    "label",
    "reasons",
  ].includes(name),
);

// The characters the CLI writes as escapes (clients/cli/terminal.py printable), so that a
// cell from others cannot act on whatever shows the file.
const UNSAFE = /[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

function printable(text: string): string {
  return text.replace(UNSAFE, (char) => {
    const code = char.charCodeAt(0);
    if (code === 0x0d) return "\\r";
    return code < 0x100
      ? `\\x${code.toString(16).padStart(2, "0")}`
      : `\\u${code.toString(16).padStart(4, "0")}`;
  });
}

// What a spreadsheet reads as the start of a formula (OWASP, "CSV injection"): such a cell
// gets a leading apostrophe, shown as text and never evaluated, as the CLI's csv_cell does.
const FORMULA_START = /^[=+\-@\t\r]/;

function csvCell(text: string): string {
  const cell = FORMULA_START.test(text) ? `'${text}` : text;
  // Python's csv module (QUOTE_MINIMAL): quoted when it holds a comma, a quote or a line end.
  return /[",\r\n]/.test(cell) ? `"${cell.replaceAll('"', '""')}"` : cell;
}

/** The export `attache audit log --format csv` writes, byte for byte. */
export function eventsCsv(entries: readonly AuditEntry[]): string {
  const rows = [
    AUDIT_COLUMNS.map(([name]) => name),
    ...entries.map((entry) => AUDIT_COLUMNS.map(([, cell]) => printable(cell(entry)))),
  ];
  return rows.map((row) => `${row.map(csvCell).join(",")}\n`).join("");
}

/** The export `attache audit log --format json` writes, byte for byte: ASCII only, every
 * character outside space to tilde escaped, as Python's json.dumps with ensure_ascii writes it. */
export function eventsJson(entries: readonly AuditEntry[]): string {
  const text = JSON.stringify(entries, null, 2).replace(
    /[\u007f-\uffff]/g,
    (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
  return `${text}\n`;
}

// --- Verification, as `attache audit verify` -----------------------------------------------------

export const LEAF_PAGE = 10_000;
const IN_FLIGHT = 3;

/** What this browser verified before on this server: the pinned audit key, and the last
 * checkpoint verified with the leaf hashes it covered (32 bytes each). */
export interface AuditRecord {
  vkey: string;
  size: number | null;
  root: Uint8Array | null;
  hashes: Uint8Array;
}

export interface AuditStateStore {
  load(): Promise<AuditRecord | null>;
  save(record: AuditRecord): Promise<void>;
}

export class AuditStateError extends Error {}

export class VerifyReport {
  size = 0;
  root: Uint8Array = new Uint8Array(0);
  keyPinnedNow = false;
  vkey = "";
  problems: string[] = [];
  firstBadIndex: number | null = null;
  previousSize: number | null = null;

  get ok(): boolean {
    return this.problems.length === 0;
  }

  problem(text: string, index: number | null = null): void {
    this.problems.push(text);
    if (index !== null && (this.firstBadIndex === null || index < this.firstBadIndex)) {
      this.firstBadIndex = index;
    }
  }
}

interface Leaf {
  index: number;
  hash: string;
  status: string;
  event: number | null;
  data: string | null;
  columns: Json | null;
}

/** A value as Python's repr writes it in the CLI's messages: 'text', None. */
function pyRepr(value: unknown): string {
  if (value === null || value === undefined) return "None";
  return typeof value === "string" ? `'${value}'` : JSON.stringify(value);
}

// The index columns, in the order a verification compares them (protocol/audit_index.py).
function leafIndex(leaf: Json): [string, unknown][] {
  const value = (v: unknown) => (v === undefined ? null : v);
  return [
    ["uid", value(leaf.uid)],
    ["time", value(leaf.time)],
    ["action", value(leaf.action)],
    ["decision", value(leaf.decision)],
    ["actor_user_id", value(part(leaf.actor, "user"))],
    ["actor_nation", value(part(leaf.actor, "nation"))],
    ["object_id", value(part(leaf.object, "id"))],
    ["subject_nation", value(leaf.subject_nation)],
    ["label_banner", value(part(leaf.label, "banner"))],
    ["channel_id", value(part(leaf.details, "channel_id"))],
  ];
}

function sameValue(a: unknown, b: unknown): boolean {
  return a === b || JSON.stringify(a) === JSON.stringify(b);
}

/** The first index column that disagrees with the leaf (audit_index.first_difference). */
export function firstColumnDifference(
  leaf: Json,
  columns: Json,
): [string, unknown, unknown] | null {
  for (const [name, expected] of leafIndex(leaf)) {
    if (!Object.hasOwn(columns, name) || !sameValue(columns[name], expected)) {
      return [name, columns[name], expected];
    }
  }
  return null;
}

function checkColumns(leaf: Leaf, data: string, index: number, report: VerifyReport): void {
  let event: unknown;
  try {
    event = JSON.parse(data);
  } catch {
    report.problem(`leaf ${index}: the logged event is not JSON`, index);
    return;
  }
  if (typeof event !== "object" || event === null || Array.isArray(event)) {
    report.problem(`leaf ${index}: the logged event is not a JSON object`, index);
    return;
  }
  const name = `event ${leaf.event ?? "?"} (${String((event as Json).uid)})`;
  const columns = leaf.columns;
  if (typeof columns !== "object" || columns === null || Array.isArray(columns)) {
    report.problem(`leaf ${index}, ${name}: the server sent no index columns`, index);
    return;
  }
  const differs = firstColumnDifference(event as Json, columns);
  if (differs !== null) {
    const [column, says, logged] = differs;
    report.problem(
      `leaf ${index}, ${name}: column ${column} says ${pyRepr(says)} but the logged event ` +
        `says ${pyRepr(logged)}: queries on it were steered`,
      index,
    );
  }
}

/** The leaf hash to build the tree with: recomputed from the leaf bytes wherever they are
 * shown; the server's stored hash only for leaves outside a nation-scoped auditor's view. */
function checkLeaf(
  leaf: Leaf,
  index: number,
  cached: Uint8Array,
  report: VerifyReport,
): Uint8Array {
  let stored: Uint8Array;
  try {
    stored = b64uDecode(leaf.hash);
    if (stored.length !== 32) throw new Error("not 32 bytes");
  } catch {
    report.problem(`leaf ${index}: the server sent a malformed leaf`, index);
    return new Uint8Array(32);
  }
  let digest = stored;
  if (leaf.status === "shown" && typeof leaf.data === "string") {
    digest = leafHash(utf8(leaf.data));
    if (!equalBytes(digest, stored)) {
      report.problem(`leaf ${index}: the event differs from what was logged`, index);
    } else {
      checkColumns(leaf, leaf.data, index, report);
    }
  } else if (leaf.status === "missing") {
    report.problem(`leaf ${index}: its event was deleted from the database`, index);
  } else if (leaf.status !== "out-of-scope") {
    report.problem(`leaf ${index}: the server sent a malformed leaf`, index);
  }
  const start = index * 32;
  if (start + 32 <= cached.length && !equalBytes(cached.subarray(start, start + 32), digest)) {
    report.problem(`leaf ${index} changed since it was last verified here`, index);
  }
  return digest;
}

function firstDifference(before: Uint8Array, now: Uint8Array): number | null {
  for (let i = 0; i + 32 <= Math.min(before.length, now.length); i += 32) {
    if (!equalBytes(before.subarray(i, i + 32), now.subarray(i, i + 32))) return i / 32;
  }
  return null;
}

async function pinnedVerifier(
  api: Api,
  store: AuditStateStore,
  vkey: string | null,
  report: VerifyReport,
): Promise<{ verifier: NoteVerifier; record: AuditRecord }> {
  const record = await store.load();
  const pinned = record?.vkey ?? null;
  if (vkey !== null && pinned !== null && vkey !== pinned) {
    throw new AuditStateError(
      "the audit key given differs from the one pinned earlier in this browser; if the " +
        "operator rotated it, check the new key out of band, then clear this site's data",
    );
  }
  let chosen = vkey ?? pinned;
  if (chosen === null) {
    // Trust on first use, said aloud: the page tells the auditor to compare the key.
    chosen = (await api.request<{ vkey: string }>("GET", "/v1/audit/key")).vkey;
    report.keyPinnedNow = true;
  }
  const verifier = NoteVerifier.fromVkey(chosen);
  report.vkey = chosen;
  if (record === null) {
    const fresh = { vkey: chosen, size: null, root: null, hashes: new Uint8Array(0) };
    await store.save(fresh);
    return { verifier, record: fresh };
  }
  return { verifier, record };
}

/**
 * Download every leaf, recompute each leaf hash from the event itself and the RFC 9162 root,
 * check the checkpoint's signature against the pinned audit key, and check that the log is
 * consistent with the checkpoint verified here last time (by recomputation and by the
 * server's consistency proof). Saves the checkpoint and leaf hashes only when all is well.
 */
export async function verifyLog(
  api: Api,
  store: AuditStateStore,
  {
    vkey = null,
    progress,
  }: { vkey?: string | null; progress?: (done: number, total: number) => void } = {},
): Promise<VerifyReport> {
  const report = new VerifyReport();
  const { verifier, record } = await pinnedVerifier(api, store, vkey, report);
  const latest = await api.request<{ note: string }>("GET", "/v1/audit/checkpoint");
  let signed: Checkpoint;
  try {
    signed = Checkpoint.parse(openNote(latest.note, [verifier]).body);
  } catch (error) {
    if (!(error instanceof CheckpointError)) throw error;
    report.problem(
      `the checkpoint's signature does not verify with the pinned key: ${error.message}`,
    );
    return report;
  }
  report.size = signed.size;
  report.root = signed.root;
  const previous =
    record.size !== null && record.root !== null ? { size: record.size, root: record.root } : null;
  const cached = previous !== null ? record.hashes : new Uint8Array(0);
  if (previous !== null) {
    report.previousSize = previous.size;
    if (signed.size < previous.size) {
      report.problem(
        `the log was rolled back: the signed checkpoint has ${signed.size} leaves, but ` +
          `${previous.size} were verified here before`,
        signed.size,
      );
      return report;
    }
  }

  const builder = new RootBuilder();
  const hashes = new Uint8Array(signed.size * 32);
  const fetchPage = (start: number) =>
    api.request<{ leaves: Leaf[] }>(
      "GET",
      `/v1/audit/leaves?start=${start}&end=${Math.min(start + LEAF_PAGE, signed.size)}`,
    );
  // Pages are fetched ahead (IN_FLIGHT at a time) while this one is hashed.
  const starts: number[] = [];
  for (let start = 0; start < signed.size; start += LEAF_PAGE) starts.push(start);
  const pending = starts.slice(0, IN_FLIGHT).map(fetchPage);
  pending.forEach((p) => p.catch(() => undefined));
  for (const [n, start] of starts.entries()) {
    const page = await pending[n]!;
    const following = starts[n + IN_FLIGHT];
    if (following !== undefined) {
      const next = fetchPage(following);
      next.catch(() => undefined);
      pending.push(next);
    }
    const shown = new Map(page.leaves.map((leaf) => [Number(leaf.index), leaf]));
    for (let index = start; index < Math.min(start + LEAF_PAGE, signed.size); index++) {
      const leaf = shown.get(index);
      let digest: Uint8Array;
      if (leaf === undefined) {
        report.problem(`leaf ${index} is missing from the log`, index);
        digest = new Uint8Array(32);
      } else {
        digest = checkLeaf(leaf, index, cached, report);
      }
      builder.add(digest);
      hashes.set(digest, index * 32);
      if (
        previous !== null &&
        builder.size === previous.size &&
        !equalBytes(builder.root(), previous.root)
      ) {
        report.problem(
          `the first ${previous.size} leaves no longer hash to the root verified before: ` +
            "history was rewritten",
          firstDifference(cached, hashes.subarray(0, builder.size * 32)),
        );
      }
    }
    progress?.(builder.size, signed.size);
  }

  if (!equalBytes(builder.root(), signed.root)) {
    report.problem("the leaves do not hash to the signed checkpoint's root", report.firstBadIndex);
  }
  if (previous !== null && previous.size > 0 && signed.size >= previous.size) {
    const proof = await api.request<{ proof: string[] }>(
      "GET",
      `/v1/audit/proofs/consistency?old=${previous.size}&new=${signed.size}`,
    );
    let path: Uint8Array[] | null;
    try {
      path = proof.proof.map((p) => b64uDecode(p));
    } catch {
      path = null;
    }
    if (
      path === null ||
      !verifyConsistency(previous.size, signed.size, previous.root, signed.root, path)
    ) {
      report.problem(
        `the signed checkpoint is not consistent with the one of size ${previous.size} ` +
          "verified before: the log forked or was rewritten",
      );
    }
  }
  if (report.ok) {
    await store.save({ vkey: record.vkey, size: signed.size, root: signed.root, hashes });
  }
  return report;
}
