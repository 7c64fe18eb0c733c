/**
 * The auditor's part of the page against a log the test plays the server of: a log of
 * events with a Merkle tree and checkpoints signed as the server signs them. Verification
 * pins the key on first use, verifies, then verifies again after the log grew (consistency
 * with what it verified, by recomputation and by the server's proof); an edited event, a
 * steered index column, a deleted event, a checkpoint signed by another key, a rollback and a
 * rewritten history are each caught and the first bad leaf named; nothing bad is saved. The
 * exports are the CLI's, byte for byte (through test/python_audit.py when ATTACHE_PYTHON is
 * set).
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { test } from "node:test";

import { Api } from "../src/app/api.js";
import {
  eventsCsv,
  eventsJson,
  fetchEvents,
  verifyLog,
  type AuditEntry,
  type AuditRecord,
  type AuditStateStore,
} from "../src/app/audit.js";
import { b64uEncode, fromUtf8, utf8 } from "../src/protocol/bytes.js";
import { canonicalJson, type JsonObject } from "../src/protocol/canonical.js";
import { Checkpoint, NoteSigner, signCheckpoint } from "../src/protocol/checkpoint.js";
import { consistencyProof, leafHash, merkleRoot } from "../src/protocol/merkle.js";
import { ROOT } from "./vectors.js";

const ORIGIN = "https://attache.example";
const LOG = "attache.example/audit";
const PYTHON = process.env.ATTACHE_PYTHON;

function event(n: number, extra: Partial<JsonObject> = {}): JsonObject {
  return {
    v: 1,
    uid: `uid-${n}`,
    time: `2026-11-26T10:00:${String(n % 60).padStart(2, "0")}.000000Z`,
    action: n % 3 === 0 ? "message.submit" : "channel.create",
    decision: n % 4 === 0 ? "deny" : "allow",
    actor: { user: `user-${n % 2}`, device: null, nation: n % 2 ? "GBR" : "USA" },
    object: { type: n % 5 === 0 ? "user" : "channel", id: n % 5 === 0 ? "user-1" : `c-${n}` },
    subject_nation: null,
    label: { banner: "NATO SECRET", canonical: null },
    reasons: n % 4 === 0 ? ["not cleared", "not a member"] : [],
    details: { channel_id: `c-${n}` },
    ...extra,
  };
}

/** A log as the server keeps it: each event's body, the leaf hashes integrated, checkpoints
 * signed at the sizes its batches ended; and the answers it gives, which a test may spoil. */
class FakeLog {
  bodies: string[] = [];
  hashes: Uint8Array[] = [];
  signer = new NoteSigner(LOG, new Uint8Array(32).fill(9));
  note = "";
  spoil: (leaves: Record<string, unknown>[]) => void = () => undefined;
  calls: string[] = [];

  append(count: number): void {
    for (let i = 0; i < count; i++) {
      const body = fromUtf8(canonicalJson(event(this.bodies.length + 1)));
      this.bodies.push(body);
      this.hashes.push(leafHash(utf8(body)));
    }
    this.note = signCheckpoint(
      new Checkpoint(LOG, this.hashes.length, merkleRoot(this.hashes)),
      this.signer,
    );
  }

  leaf(index: number): Record<string, unknown> {
    const data = this.bodies[index]!;
    const leaf = JSON.parse(data) as JsonObject;
    const columns: Record<string, unknown> = {
      uid: leaf.uid,
      time: leaf.time,
      action: leaf.action,
      decision: leaf.decision,
      actor_user_id: (leaf.actor as JsonObject).user,
      actor_nation: (leaf.actor as JsonObject).nation,
      object_id: (leaf.object as JsonObject).id,
      subject_nation: leaf.subject_nation,
      label_banner: (leaf.label as JsonObject).banner,
      channel_id: (leaf.details as JsonObject).channel_id,
    };
    return {
      index,
      hash: b64uEncode(this.hashes[index]!),
      status: "shown",
      event: index + 1,
      data,
      columns,
    };
  }

  api(): Api {
    return new Api(ORIGIN, async (input, init) => {
      const url = new URL(input);
      this.calls.push(`${init.method} ${url.pathname}${url.search}`);
      const json = (status: number, answer: unknown) =>
        new Response(JSON.stringify(answer), { status });
      const q = (name: string) => Number(url.searchParams.get(name));
      switch (url.pathname) {
        case "/v1/audit/key":
          return json(200, { origin: LOG, vkey: this.signer.verifier.vkey() });
        case "/v1/audit/checkpoint":
          return json(200, { size: this.hashes.length, note: this.note });
        case "/v1/audit/leaves": {
          const leaves = [];
          for (let i = q("start"); i < Math.min(q("end"), this.hashes.length); i++) {
            leaves.push(this.leaf(i));
          }
          this.spoil(leaves);
          return json(200, { checkpoint_size: this.hashes.length, leaves });
        }
        case "/v1/audit/proofs/consistency": {
          const proof = consistencyProof(this.hashes.slice(0, q("new")), q("old"));
          return json(200, { old: q("old"), new: q("new"), proof: proof.map(b64uEncode) });
        }
        default:
          return json(404, { detail: "no such route" });
      }
    });
  }
}

function memoryStore(): AuditStateStore & { record: AuditRecord | null } {
  return {
    record: null,
    async load() {
      return this.record;
    },
    async save(record) {
      this.record = record;
    },
  };
}

test("the log verifies, pins the key on first use, then verifies as it grows", async () => {
  const log = new FakeLog();
  log.append(25);
  const store = memoryStore();
  const progress: number[] = [];
  const first = await verifyLog(log.api(), store, { progress: (done) => progress.push(done) });
  assert.deepEqual(first.problems, []);
  assert.ok(first.ok && first.keyPinnedNow);
  assert.equal(first.size, 25);
  assert.equal(first.previousSize, null);
  assert.deepEqual(progress, [25]);
  assert.equal(store.record!.vkey, log.signer.verifier.vkey());
  assert.equal(store.record!.size, 25);
  assert.equal(store.record!.hashes.length, 25 * 32);

  log.append(7);
  log.calls.length = 0;
  const second = await verifyLog(log.api(), store);
  assert.deepEqual(second.problems, []);
  assert.ok(!second.keyPinnedNow);
  assert.equal(second.previousSize, 25);
  assert.equal(store.record!.size, 32);
  assert.ok(log.calls.includes("GET /v1/audit/proofs/consistency?old=25&new=32"));
  assert.ok(!log.calls.includes("GET /v1/audit/key"), "the pinned key is used");

  // A key given that differs from the pinned one is refused before anything is fetched.
  const stranger = new NoteSigner(LOG, new Uint8Array(32).fill(3)).verifier.vkey();
  await assert.rejects(
    verifyLog(log.api(), store, { vkey: stranger }),
    /differs from the one pinned/,
  );
});

async function verifiedLog(): Promise<{ log: FakeLog; store: ReturnType<typeof memoryStore> }> {
  const log = new FakeLog();
  log.append(12);
  const store = memoryStore();
  assert.ok((await verifyLog(log.api(), store)).ok);
  log.append(3);
  return { log, store };
}

test("an edited event is named as the first bad leaf, and nothing is saved", async () => {
  const { log, store } = await verifiedLog();
  const before = store.record;
  log.spoil = (leaves) => {
    for (const leaf of leaves) {
      if (leaf.index === 4 || leaf.index === 9) {
        leaf.data = String(leaf.data).replace('"decision":"allow"', '"decision":"deny"');
      }
    }
  };
  const report = await verifyLog(log.api(), store);
  assert.ok(!report.ok);
  assert.equal(report.firstBadIndex, 4);
  assert.ok(report.problems.includes("leaf 4: the event differs from what was logged"));
  assert.ok(report.problems.includes("leaf 9: the event differs from what was logged"));
  assert.equal(store.record, before);
});

test("a steered column, a deleted event and a changed hash are each named", async () => {
  const cases: [string, (leaf: Record<string, unknown>) => void, number, RegExp][] = [
    [
      "a steered column",
      (leaf) => ((leaf.columns as Record<string, unknown>).decision = "deny"),
      6,
      /^leaf 6, event 7 \(uid-7\): column decision says 'deny' but the logged event says 'allow': queries on it were steered$/,
    ],
    [
      "a deleted event",
      (leaf) => Object.assign(leaf, { status: "missing", data: null, columns: null, event: null }),
      2,
      /^leaf 2: its event was deleted from the database$/,
    ],
    [
      "an edited event rehashed",
      (leaf) => {
        leaf.data = String(leaf.data).replace("uid-4", "uid-X");
        leaf.hash = b64uEncode(leafHash(utf8(String(leaf.data))));
      },
      3,
      /^leaf 3 changed since it was last verified here$/,
    ],
  ];
  for (const [what, spoil, index, problem] of cases) {
    const { log, store } = await verifiedLog();
    log.spoil = (leaves) => leaves.filter((leaf) => leaf.index === index).forEach(spoil);
    const report = await verifyLog(log.api(), store);
    assert.equal(report.firstBadIndex, index, what);
    assert.ok(
      report.problems.some((p) => problem.test(p)),
      `${what}: ${report.problems}`,
    );
  }
});

test("another key's checkpoint, a rollback and a rewritten history are refused", async () => {
  {
    const { log, store } = await verifiedLog();
    log.signer = new NoteSigner(LOG, new Uint8Array(32).fill(4));
    log.append(0);
    const report = await verifyLog(log.api(), store);
    assert.match(report.problems[0]!, /does not verify with the pinned key: .*no valid signature/);
  }
  {
    const { log, store } = await verifiedLog();
    log.hashes.splice(10);
    log.bodies.splice(10);
    log.append(0);
    const report = await verifyLog(log.api(), store);
    assert.match(report.problems[0]!, /rolled back: the signed checkpoint has 10 leaves, but 12/);
    assert.equal(report.firstBadIndex, 10);
  }
  {
    // History rewritten and re-signed with the real key: the leaves hash to the new root, but
    // not to the root verified before, and the first leaf that changed is named.
    const { log, store } = await verifiedLog();
    const body = fromUtf8(canonicalJson(event(99)));
    log.bodies[5] = body;
    log.hashes[5] = leafHash(utf8(body));
    log.append(0);
    const report = await verifyLog(log.api(), store);
    assert.equal(report.firstBadIndex, 5);
    assert.ok(report.problems.some((p) => p.includes("history was rewritten")));
    assert.ok(report.problems.some((p) => p.includes("not consistent with the one of size 12")));
  }
});

test("events are fetched with the filters, paged, named, and exported as the CLI does", async () => {
  const asked: string[] = [];
  const all = Array.from({ length: 5 }, (_, i) => ({
    id: i + 1,
    leaf_index: i < 4 ? i : null,
    event: event(
      i + 1,
      i === 0
        ? { reasons: ['a "quoted", reason', "é\u202e\x07"] }
        : i === 1
          ? { reasons: ['=HYPERLINK("http://evil.example","open me")'] }
          : {},
    ),
  }));
  const api = new Api(ORIGIN, async (input) => {
    const url = new URL(input);
    asked.push(`${url.pathname}${url.search}`);
    if (url.pathname === "/v1/users") {
      return new Response(JSON.stringify([{ id: "user-1", username: "bob" }]));
    }
    const after = Number(url.searchParams.get("after"));
    const limit = Number(url.searchParams.get("limit"));
    const events = all.filter((e) => e.id > after).slice(0, limit);
    return new Response(JSON.stringify({ events, cursor: events.at(-1)?.id ?? after }));
  });
  const entries: AuditEntry[] = await fetchEvents(
    api,
    { nation: "gbr", decision: "allow", actor: "", since: "2026-11-26T00:00:00Z" },
    3,
  );
  assert.deepEqual(asked, [
    "/v1/audit/events?since=2026-11-26T00%3A00%3A00Z&nation=GBR&decision=allow&after=0&limit=3",
    "/v1/users",
  ]);
  assert.deepEqual(
    entries.map((e) => [e.id, e.actor_username, e.object_username]),
    [
      [1, "bob", null],
      [2, null, null],
      [3, "bob", null],
    ],
  );
  asked.length = 0;
  const every = await fetchEvents(api, {}, 2500);
  assert.equal(every.length, 5);
  assert.deepEqual(asked, ["/v1/audit/events?after=0&limit=1000", "/v1/users"]);
  assert.equal(every[4]!.object_username, "bob");

  const csv = eventsCsv(every);
  assert.equal(
    csv.split("\n")[0],
    "id,leaf,time,action,decision,actor,actor_id,actor_nation,object,subject_nation,label,reasons",
  );
  assert.ok(csv.includes('"a ""quoted"", reason; é\\u202e\\x07"'));
  // A reason a spreadsheet would run as a formula is written as text (a leading apostrophe).
  assert.ok(csv.includes(`"'=HYPERLINK(""http://evil.example"",""open me"")"`));
  assert.ok(!/(^|,)=HYPERLINK/m.test(csv));
  assert.ok(/^[\x20-\x7e\n]*$/.test(eventsJson(every)));
  if (PYTHON !== undefined) {
    const run = spawnSync(PYTHON, [join(ROOT, "clients", "web", "test", "python_audit.py")], {
      cwd: ROOT,
      input: JSON.stringify(every),
      encoding: "utf-8",
    });
    assert.equal(run.status, 0, run.stderr);
    const cli = JSON.parse(run.stdout) as { csv: string; json: string };
    assert.equal(eventsCsv(every), cli.csv);
    assert.equal(eventsJson(every), cli.json);
  }
});
