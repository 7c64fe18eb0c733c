/**
 * Writing committee entries from the page (src/app/committees.ts), as clients/sdk/committees.py
 * writes them: each body is what protocol/committees.py's `encode` makes of the same fields
 * (through test/python_committees.py, with the project's Python), and, against a server the
 * test plays, a chair's meeting, agenda item, minutes, action item and status update are each
 * sent through send.ts's Sender with their content type (an update replying to its action
 * item, under the item's own label), sealed only to the devices the label admits, opened
 * verified by a recipient and linked by id; a label that admits no one, a malformed entry and
 * the server's refusal each send or link nothing more.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { test } from "node:test";

import { Api, ApiError } from "../src/app/api.js";
import {
  ACTION_ITEM,
  ACTION_ITEM_UPDATE,
  AGENDA_ITEM,
  CONTENT_TYPES,
  Committees,
  ContentError,
  MEETING,
  MINUTES,
  decodeContent,
  encodeContent,
  entryOf,
  type CommitteeRead,
} from "../src/app/committees.js";
import { openItem, type Reader } from "../src/app/messages.js";
import { SendError, Sender, type ChannelInfo } from "../src/app/send.js";
import { DeviceKeys } from "../src/protocol/keys.js";
import {
  catalogFromToml,
  labelFromCanonical,
  parseLabel,
  renderLabel,
} from "../src/protocol/labels.js";
import { Authorities } from "./authorities.js";
import { ROOT, repoText } from "./vectors.js";

const PYTHON = process.env.ATTACHE_PYTHON;
const ORIGIN = "http://127.0.0.1:8600";
const catalog = catalogFromToml(repoText("protocol", "catalogs", "default.toml"));
const AUTHORITIES = new Authorities(["USA", "GBR", "FRA"]);
const PINS = AUTHORITIES.pins;
const REL = "NATO SECRET//REL TO USA, GBR";
const CHANNEL: ChannelInfo = {
  id: "0b0e7f4e-7f39-4a4b-9d1f-0c2b0a7e6d11",
  name: "committee:nato-liaison",
  ceiling_canonical: parseLabel("NATO SECRET", catalog, null),
  labels: ["NATO SECRET", REL],
  default_label: "NATO SECRET",
};

type Fields = Record<string, string | null>;
const CASES: { content_type: string; fields: Fields }[] = [
  { content_type: MEETING, fields: { title: "Quarterly review", place: null } },
  { content_type: MEETING, fields: { title: "Réunion – 会议 😀", place: "Room\t4\n(annex)" } },
  {
    content_type: AGENDA_ITEM,
    fields: { title: '<img src=x onerror="alert(1)">', presenter: "bob", notes: 'a\\b"c\u0001' },
  },
  {
    content_type: AGENDA_ITEM,
    fields: { title: "Logistics", presenter: null, notes: "line\u2028sep\u007f\u001f\b\f\r" },
  },
  { content_type: MINUTES, fields: { text: "Agreed: <b>all</b>.\nNext: 2026-12-15." } },
  {
    content_type: ACTION_ITEM,
    fields: {
      description: "Circulate the plan",
      owner: "chloe",
      due: "2026-12-15",
      status: "open",
    },
  },
  {
    content_type: ACTION_ITEM,
    fields: { description: "No date", owner: "bob", due: null, status: "open" },
  },
  { content_type: ACTION_ITEM_UPDATE, fields: { status: "done", note: "circulated" } },
  { content_type: ACTION_ITEM_UPDATE, fields: { status: "in-progress", note: null } },
  // Refused on both sides.
  { content_type: AGENDA_ITEM, fields: { title: "   " } },
  { content_type: AGENDA_ITEM, fields: { presenter: "no title" } },
  { content_type: ACTION_ITEM, fields: { description: "d", owner: "o", status: "late" } },
  { content_type: ACTION_ITEM_UPDATE, fields: { note: "no status" } },
  { content_type: MINUTES, fields: { text: "half a pair \ud800" } },
  { content_type: "text/plain", fields: { title: "T" } },
];

test(
  "each entry's body is what protocol/committees.py encodes, byte for byte",
  { skip: PYTHON === undefined ? "ATTACHE_PYTHON is not set (make web-check sets it)" : false },
  () => {
    const run = spawnSync(PYTHON!, [join(ROOT, "clients", "web", "test", "python_committees.py")], {
      cwd: ROOT,
      input: JSON.stringify(CASES),
      encoding: "utf-8",
    });
    assert.equal(run.status, 0, run.stderr);
    const expected = JSON.parse(run.stdout) as ({ body: string } | { error: string })[];
    assert.equal(expected.length, CASES.length);
    let refused = 0;
    CASES.forEach((c, i) => {
      const want = expected[i]!;
      if ("error" in want) {
        refused += 1;
        assert.throws(() => encodeContent(c.content_type, c.fields), ContentError, want.error);
      } else {
        const body = encodeContent(c.content_type, c.fields);
        assert.equal(body, want.body, `case ${i}`);
        assert.equal(Buffer.from(body, "utf-8").equals(Buffer.from(want.body, "utf-8")), true);
        // And it reads back as what was written, less the fields left out.
        const written = Object.fromEntries(Object.entries(c.fields).filter(([, v]) => v !== null));
        assert.deepEqual(decodeContent(c.content_type, body), written);
      }
    });
    assert.equal(refused, 6);
  },
);

async function member(user: string, nation: string) {
  const keys = await DeviceKeys.generate();
  const entry = {
    device_id: `device-${user}`,
    user_id: user,
    username: user,
    nationality: nation,
    ...keys.publicKeys.toJson(),
    certificate: AUTHORITIES.certificate(keys, user, nation) as unknown,
  };
  return { keys, entry, reader: { keys, deviceId: `device-${user}`, pins: PINS, catalog } };
}

/** Alice (USA) chairs; bob (GBR) and chloe (FRA) are members. The server keeps what it is
 * sent and links it; `refuse` answers a link with a problem, as a server refusing would. */
async function scene(refuse: string | null = null) {
  const alice = await member("alice", "USA");
  const bob = await member("bob", "GBR");
  const chloe = await member("chloe", "FRA");
  const audiences = new Map<string, Record<string, any>>();
  const messages: Record<string, any>[] = [];
  const links: { route: string; body: any }[] = [];
  const actionItems = new Map<string, string>();
  const api = new Api(ORIGIN, async (input, init) => {
    const route = `${init.method} ${input.slice(ORIGIN.length)}`;
    const body = init.body ? JSON.parse(init.body as string) : undefined;
    const json = (status: number, answer: unknown) =>
      new Response(JSON.stringify(answer), { status });
    if (route === `GET /v1/channels/${CHANNEL.id}/roster`) {
      return json(200, [alice.entry, bob.entry, chloe.entry]);
    }
    if (route === `POST /v1/channels/${CHANNEL.id}/audiences`) {
      audiences.set(body.header.audience_id, body);
      return json(201, { audience_id: body.header.audience_id, devices: body.header.devices });
    }
    if (route === `POST /v1/channels/${CHANNEL.id}/messages`) {
      messages.push(body);
      const audience = audiences.get(body.header.audience_id)!;
      return json(201, {
        seq: messages.length,
        message_id: body.header.message_id,
        created: true,
        label: renderLabel(labelFromCanonical(body.header.label, catalog), catalog),
        released_to: audience.header.devices,
      });
    }
    const paged = /^GET \/v1\/channels\/[^/]+\/messages\?after=(\d+)&limit=100$/.exec(route);
    if (paged) return json(200, { items: deliveries("device-alice"), cursor: 99, more: false });
    const action = /^GET \/v1\/action-items\/([^/]+)$/.exec(route);
    if (action) {
      return json(200, {
        id: action[1],
        channel_id: CHANNEL.id,
        message_id: actionItems.get(action[1]!),
      });
    }
    if (refuse !== null && init.method !== "GET") {
      return json(403, { status: 403, code: "forbidden", detail: refuse });
    }
    links.push({ route, body });
    if (route === "POST /v1/committees/c1/meetings") {
      return json(201, { id: "m1", channel_id: CHANNEL.id, info_message_id: body.info_message_id });
    }
    if (route === "POST /v1/meetings/m1/agenda") return json(201, { id: "a1", position: 0 });
    if (route === "PUT /v1/meetings/m1/minutes") return json(200, { id: "m1" });
    if (route === "POST /v1/meetings/m1/action-items") {
      actionItems.set("x1", body.message_id);
      return json(201, { id: "x1" });
    }
    if (route === "POST /v1/action-items/x1/updates") return json(201, { id: "u1" });
    if (route === "PUT /v1/meetings/m1/agenda/order") return json(200, { id: "m1" });
    return json(404, { detail: `no route ${route}` });
  });
  api.setToken("token");

  /** What the server delivers to `deviceId`: only messages whose audience seals to it. */
  function deliveries(deviceId: string) {
    return messages.flatMap((message, i) => {
      const audience = audiences.get(message.header.audience_id)!;
      const envelope = audience.envelopes[deviceId];
      if (envelope === undefined) return [];
      return [
        {
          seq: i + 1,
          channel_id: CHANNEL.id,
          label: renderLabel(labelFromCanonical(message.header.label, catalog), catalog),
          message,
          audience: { header: audience.header, signature: audience.signature, envelope },
          sender_certificate: alice.entry.certificate,
          grant: null,
        },
      ];
    });
  }
  const me = { userId: "alice", deviceId: "device-alice", nationality: "USA", keys: alice.keys };
  const sender = new Sender(api, me, PINS, catalog);
  const reader: Reader = alice.reader;
  return {
    committees: new Committees(api, reader),
    sender,
    messages,
    links,
    deliveries,
    bob,
    chloe,
  };
}

const COMMITTEE = { id: "c1", channel_id: CHANNEL.id } as CommitteeRead;
const MEETING_REF = { meetingId: "m1", channelId: CHANNEL.id };

test("a chair's entries are sealed as the SDK seals them, and linked by id", async () => {
  const { committees, sender, messages, links, deliveries, bob, chloe } = await scene();
  const starts = new Date("2026-12-01T10:00:00Z");
  const scheduled = await committees.scheduleMeeting(
    sender,
    COMMITTEE,
    CHANNEL,
    starts,
    "Quarterly review",
    "Room 4",
    "NATO SECRET",
  );
  assert.equal(scheduled.meeting.id, "m1");
  await committees.addAgendaItem(
    sender,
    MEETING_REF,
    CHANNEL,
    { title: "Logistics", presenter: "bob", notes: null },
    REL,
  );
  await committees.recordMinutes(sender, MEETING_REF, CHANNEL, "Agreed.", "NATO SECRET");
  const added = await committees.addActionItem(
    sender,
    MEETING_REF,
    CHANNEL,
    { description: "Circulate", owner: "bob", due: "2026-12-15" },
    REL,
  );
  const update = await committees.updateActionItem(sender, added.item.id, CHANNEL, "done", "sent");
  assert.equal(update.banner, REL); // the action item's own label, read and verified here
  await committees.reorderAgenda("m1", ["a1"]);

  const kinds = messages.map((m) => m.header.content_type);
  assert.deepEqual(kinds, [MEETING, AGENDA_ITEM, MINUTES, ACTION_ITEM, ACTION_ITEM_UPDATE]);
  assert.deepEqual(
    messages.map((m) => m.header.reply_to),
    [null, null, null, null, messages[3]!.header.message_id],
  );
  // Each link names the message just sent, with the SDK client's body.
  assert.deepEqual(links, [
    {
      route: "POST /v1/committees/c1/meetings",
      body: {
        starts_at: "2026-12-01T10:00:00.000Z",
        info_message_id: messages[0]!.header.message_id,
      },
    },
    { route: "POST /v1/meetings/m1/agenda", body: { message_id: messages[1]!.header.message_id } },
    { route: "PUT /v1/meetings/m1/minutes", body: { message_id: messages[2]!.header.message_id } },
    {
      route: "POST /v1/meetings/m1/action-items",
      body: { message_id: messages[3]!.header.message_id },
    },
    {
      route: "POST /v1/action-items/x1/updates",
      body: { message_id: messages[4]!.header.message_id },
    },
    { route: "PUT /v1/meetings/m1/agenda/order", body: { item_ids: ["a1"] } },
  ]);

  // Bob (GBR) opens all five verified, each in its place; chloe (FRA) is given the meeting
  // and the minutes, and nothing of the REL TO USA, GBR item, action item or update.
  const expected: [string, Record<string, string>][] = [
    [MEETING, { title: "Quarterly review", place: "Room 4" }],
    [AGENDA_ITEM, { title: "Logistics", presenter: "bob" }],
    [MINUTES, { text: "Agreed." }],
    [ACTION_ITEM, { description: "Circulate", owner: "bob", due: "2026-12-15", status: "open" }],
    [ACTION_ITEM_UPDATE, { status: "done", note: "sent" }],
  ];
  const forBob = deliveries("device-bob");
  assert.equal(forBob.length, 5);
  for (const [i, item] of forBob.entries()) {
    const opened = await openItem(item, bob.reader, CONTENT_TYPES);
    const [kind, fields] = expected[i]!;
    const replyTo = kind === ACTION_ITEM_UPDATE ? messages[3]!.header.message_id : null;
    const entry = entryOf(opened, item.message.header.message_id, kind, replyTo);
    assert.equal(entry.problem, null);
    assert.deepEqual(entry.fields, fields);
    assert.equal(entry.sender, "alice");
    assert.equal(opened.text, encodeContent(kind, fields));
  }
  const forChloe = deliveries("device-chloe");
  assert.deepEqual(
    forChloe.map((d) => d.message.header.content_type),
    [MEETING, MINUTES],
  );
  for (const id of [1, 3, 4]) {
    const audience = messages[id]!.header.audience_id;
    assert.equal(
      forChloe.some((d) => d.message.header.audience_id === audience),
      false,
    );
  }
});

test("a label that admits no one, a malformed entry and a refusal stop the write", async () => {
  const { committees, sender, messages, links } = await scene();
  await assert.rejects(
    committees.addAgendaItem(
      sender,
      MEETING_REF,
      CHANNEL,
      { title: "x" },
      "NATO SECRET//REL TO JPN",
    ),
    (error: unknown) => error instanceof SendError && /not in REL TO JPN/.test(error.message),
  );
  await assert.rejects(
    committees.addAgendaItem(sender, MEETING_REF, CHANNEL, { title: "  " }, "NATO SECRET"),
    (error: unknown) =>
      error instanceof SendError && /non-empty string 'title'/.test(error.message),
  );
  await assert.rejects(
    committees.addActionItem(
      sender,
      MEETING_REF,
      CHANNEL,
      { description: "d", owner: "o", due: "15/12" },
      REL,
    ),
    SendError,
  );
  await assert.rejects(
    committees.recordMinutes(
      sender,
      { meetingId: "m1", channelId: "elsewhere" },
      CHANNEL,
      "t",
      REL,
    ),
    SendError,
  );
  assert.equal(messages.length, 0);
  assert.equal(links.length, 0);

  const refusing = await scene("only the committee's chair or secretary may do this (agenda.add)");
  await assert.rejects(
    refusing.committees.addAgendaItem(refusing.sender, MEETING_REF, CHANNEL, { title: "T" }, REL),
    (error: unknown) =>
      error instanceof ApiError && error.status === 403 && /chair or secretary/.test(error.message),
  );
  assert.equal(refusing.links.length, 0);
});
