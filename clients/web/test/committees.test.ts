/**
 * Committees in the page (src/app/committees.ts), as clients/sdk/committees.py reads them:
 * against a server the test plays, a meeting's info, agenda items, minutes and action items
 * open verified with their banners and fields; an item this device was not given says so and
 * shows nothing; a message of another type in an item's place, an update that replies to
 * another message and a malformed body are each a warning without fields; bodies are checked
 * as protocol/committees.py checks them.
 */
import assert from "node:assert/strict";
import { test } from "node:test";

import { Api } from "../src/app/api.js";
import {
  ACTION_ITEM,
  ACTION_ITEM_UPDATE,
  AGENDA_ITEM,
  Committees,
  ContentError,
  MEETING,
  MINUTES,
  NOT_CLEARED,
  decodeContent,
} from "../src/app/committees.js";
import type { Reader } from "../src/app/messages.js";
import { utf8 } from "../src/protocol/bytes.js";
import type { JsonObject } from "../src/protocol/canonical.js";
import { createAudience, encryptMessage } from "../src/protocol/envelopes.js";
import { DeviceKeys } from "../src/protocol/keys.js";
import { catalogFromToml, parseLabel } from "../src/protocol/labels.js";
import { Authorities } from "./authorities.js";
import { repoText } from "./vectors.js";

const ORIGIN = "http://127.0.0.1:8600";
const CHANNEL = "0b0e7f4e-7f39-4a4b-9d1f-0c2b0a7e6d11";
const MEETING_ID = "5a5a5a5a-0000-4000-8000-000000000001";
const catalog = catalogFromToml(repoText("protocol", "catalogs", "default.toml"));
const AUTHORITIES = new Authorities(["GBR", "FRA"]);
const PINS = AUTHORITIES.pins;

const certificate = AUTHORITIES.certificate.bind(AUTHORITIES);

/** Bob (GBR) writes the meeting; chloe (FRA) reads it. */
async function scene(options: { withheld?: boolean; wrong?: "type" | "reply" | "body" } = {}) {
  const bob = await DeviceKeys.generate();
  const chloe = await DeviceKeys.generate();
  const { sealed: audience, audienceKey } = await createAudience(bob, {
    audienceId: "11111111-2222-4333-8444-555555555555",
    container: CHANNEL,
    creatorUser: "bob",
    creatorDevice: "device-bob",
    recipients: [
      { deviceId: "device-bob", keys: bob.publicKeys },
      { deviceId: "device-chloe", keys: chloe.publicKeys },
    ],
    createdAt: "2026-11-26T10:00:00Z",
  });
  let n = 0;
  const deliveries: unknown[] = [];
  const send = async (
    contentType: string,
    body: unknown,
    replyTo: string | null = null,
  ): Promise<string> => {
    n += 1;
    const messageId = `22222222-3333-4444-8555-${String(n).padStart(12, "0")}`;
    const message = await encryptMessage(
      bob,
      audienceKey,
      {
        type: "attache.message",
        version: 1,
        message_id: messageId,
        container: CHANNEL,
        sender_user: "bob",
        sender_device: "device-bob",
        audience_id: audience.header.audience_id as string,
        sent_at: "2026-11-26T10:01:00Z",
        label: parseLabel("NATO SECRET", catalog, "GBR") as unknown as JsonObject,
        content_type: contentType,
        reply_to: replyTo,
      },
      utf8(typeof body === "string" ? body : JSON.stringify(body)),
    );
    deliveries.push({
      seq: n,
      channel_id: CHANNEL,
      label: "NATO SECRET",
      message,
      audience: {
        header: audience.header,
        signature: audience.signature,
        envelope: audience.envelopes["device-chloe"],
      },
      sender_certificate: certificate(bob, "bob", "GBR"),
      grant: null,
    });
    return messageId;
  };
  const info = await send(MEETING, { title: "Quarterly review", place: "Room 4" });
  const logistics = await send(
    options.wrong === "type" ? MINUTES : AGENDA_ITEM,
    options.wrong === "body" ? { presenter: "bob" } : { title: "Logistics", presenter: "bob" },
  );
  const hostile = await send(AGENDA_ITEM, { title: "<img src=x>", notes: "<b>bold</b>" });
  const minutes = await send(MINUTES, { text: "Agreed.", extra: "ignored" });
  const action = await send(ACTION_ITEM, {
    description: "Circulate the plan",
    owner: "chloe",
    due: "2026-12-15",
    status: "open",
  });
  const update = await send(
    ACTION_ITEM_UPDATE,
    { status: "done", note: "circulated" },
    options.wrong === "reply" ? info : action,
  );
  const withheld = "22222222-3333-4444-8555-999999999999";
  const structure = {
    id: MEETING_ID,
    committee_id: "c",
    channel_id: CHANNEL,
    starts_at: "2026-12-01T10:00:00Z",
    info_message_id: info,
    minutes_message_id: minutes,
    cancelled_at: null,
    agenda: [
      { id: "a1", position: 0, message_id: logistics, documents: ["v1"] },
      { id: "a2", position: 1, message_id: hostile, documents: [] },
      ...(options.withheld ? [{ id: "a3", position: 2, message_id: withheld }] : []),
    ],
    action_items: [{ id: "x1", message_id: action, updates: [{ message_id: update }] }],
  };
  const calls: string[] = [];
  const api = new Api(ORIGIN, async (input, init) => {
    const route = `${init.method} ${input.slice(ORIGIN.length)}`;
    calls.push(route);
    const json = (answer: unknown) => new Response(JSON.stringify(answer), { status: 200 });
    if (route === `GET /v1/meetings/${MEETING_ID}`) return json(structure);
    const paged = /^GET \/v1\/channels\/[^/]+\/messages\?after=(\d+)&limit=100$/.exec(route);
    if (paged) {
      // Two pages, to show that the reader follows the cursor.
      const after = Number(paged[1]);
      const items = after === 0 ? deliveries.slice(0, 3) : deliveries.slice(3);
      return json({ items, cursor: after === 0 ? 3 : deliveries.length, more: after === 0 });
    }
    return new Response(JSON.stringify({ detail: `no route ${route}` }), { status: 404 });
  });
  const reader: Reader = { keys: chloe, deviceId: "device-chloe", pins: PINS, catalog };
  return { committees: new Committees(api, reader), calls, withheld };
}

test("a meeting opens verified: info, agenda, minutes and action items", async () => {
  const { committees, calls } = await scene();
  const agenda = await committees.agenda(MEETING_ID);
  assert.equal(agenda.info.verified, true);
  assert.deepEqual(agenda.info.fields, { title: "Quarterly review", place: "Room 4" });
  assert.equal(agenda.startsAt.toISOString(), "2026-12-01T10:00:00.000Z");
  assert.deepEqual(
    agenda.items.map((i) => [i.entry.fields.title, i.entry.banner, i.entry.sender]),
    [
      ["Logistics", "NATO SECRET", "bob"],
      ["<img src=x>", "NATO SECRET", "bob"],
    ],
  );
  assert.equal(agenda.items[0]!.entry.colour, "#c8102e");
  assert.deepEqual(agenda.items[0]!.documents, ["v1"]);
  assert.deepEqual(agenda.minutes?.fields, { text: "Agreed." });
  const [action] = agenda.actionItems;
  assert.equal(action!.entry.fields.owner, "chloe");
  assert.equal(action!.status, "done");
  assert.equal(action!.updates[0]!.fields.note, "circulated");
  assert.deepEqual(
    calls.filter((c) => c.includes("/messages")),
    [
      `GET /v1/channels/${CHANNEL}/messages?after=0&limit=100`,
      `GET /v1/channels/${CHANNEL}/messages?after=3&limit=100`,
    ],
  );
});

test("an item this device was not given shows nothing", async () => {
  const { committees, withheld } = await scene({ withheld: true });
  const agenda = await committees.agenda(MEETING_ID);
  const item = agenda.items[2]!.entry;
  assert.equal(item.messageId, withheld);
  assert.equal(item.verified, false);
  assert.equal(item.problem, NOT_CLEARED);
  assert.deepEqual(item.fields, {});
  assert.equal(item.colour, null);
});

test("a message out of place is a warning without fields", async () => {
  const cases = [
    ["type", /is of type application\/vnd\.attache\.minutes\+json, not .*agenda-item/],
    ["body", /content is malformed: .*needs a non-empty string 'title'/],
  ] as const;
  for (const [wrong, problem] of cases) {
    const agenda = await (await scene({ wrong })).committees.agenda(MEETING_ID);
    const entry = agenda.items[0]!.entry;
    assert.equal(entry.verified, false);
    assert.match(entry.problem ?? "", problem);
    assert.deepEqual(entry.fields, {});
  }
  const agenda = await (await scene({ wrong: "reply" })).committees.agenda(MEETING_ID);
  const [action] = agenda.actionItems;
  assert.equal(action!.updates[0]!.verified, false);
  assert.equal(action!.updates[0]!.problem, "the update does not reply to its action item");
  assert.equal(action!.status, "open");
});

test("bodies are checked as protocol/committees.py checks them", () => {
  assert.deepEqual(decodeContent(AGENDA_ITEM, '{"title": "T", "notes": "n", "x": 1}'), {
    title: "T",
    notes: "n",
  });
  for (const [type, text] of [
    [AGENDA_ITEM, "[]"],
    [AGENDA_ITEM, "not json"],
    [AGENDA_ITEM, '{"title": "  "}'],
    [AGENDA_ITEM, '{"title": "T", "notes": 3}'],
    [ACTION_ITEM, '{"description": "d", "owner": "o", "status": "late"}'],
    [ACTION_ITEM_UPDATE, "{}"],
    ["text/plain", '{"title": "T"}'],
  ] as const) {
    assert.throws(() => decodeContent(type, text), ContentError, `${type} ${text}`);
  }
  assert.deepEqual(decodeContent(`${ACTION_ITEM_UPDATE}; charset=utf-8`, '{"status": "done"}'), {
    status: "done",
  });
});
