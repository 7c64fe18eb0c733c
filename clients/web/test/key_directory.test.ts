/**
 * Key transparency in the page's sending (src/app/transparency.ts, send.ts), as the SDK's
 * Messenger with `transparency` set: against a server the test plays, whose key directory is
 * a `Log` (test/keylog.ts), each roster device whose certificate verifies must also be shown
 * active with its certified keys by the directory before the page seals to it. A device whose
 * keys the log never registered (certified by its nation's key), a revoked device the roster
 * lists as active, and a checkpoint that does not extend the one kept (forked, rolled back)
 * are refused, each saying what was wrong, and nothing is sealed to them; an unchanged roster
 * asks for no bundle; a device not logged yet is waited for.
 */
import assert from "node:assert/strict";
import { test } from "node:test";

import { Api } from "../src/app/api.js";
import { SendError, Sender, vouchedRoster, type ChannelInfo } from "../src/app/send.js";
import {
  CheckpointRefused,
  DeviceTransparency,
  extendPin,
  type Clock,
  type PinStore,
  type TransparencyPin,
} from "../src/app/transparency.js";
import { b64uEncode } from "../src/protocol/bytes.js";
import { DeviceKeys } from "../src/protocol/keys.js";
import { catalogFromToml, parseLabel } from "../src/protocol/labels.js";
import type { CertifiedDevice } from "../src/protocol/transparency.js";
import { Authorities } from "./authorities.js";
import { Log, V, register, revoke } from "./keylog.js";
import { repoText } from "./vectors.js";

const ORIGIN = "http://127.0.0.1:8600";
const catalog = catalogFromToml(repoText("protocol", "catalogs", "default.toml"));
const AUTHORITIES = new Authorities(["USA", "GBR"]);
const REL_USA_GBR = "NATO SECRET//REL TO USA, GBR";
const CHANNEL: ChannelInfo = {
  id: "0b0e7f4e-7f39-4a4b-9d1f-0c2b0a7e6d11",
  name: "liaison",
  ceiling_canonical: parseLabel("NATO SECRET", catalog, null),
  labels: ["NATO SECRET", REL_USA_GBR],
  default_label: REL_USA_GBR,
};

interface Member {
  keys: DeviceKeys;
  device: CertifiedDevice;
  entry: Record<string, unknown>;
}

async function member(user: string, nation: string, keys?: DeviceKeys): Promise<Member> {
  keys ??= await DeviceKeys.generate();
  return {
    keys,
    device: {
      deviceId: `device-${user}`,
      userId: user,
      signingKey: keys.publicKeys.signingKey,
      encryptionKey: keys.publicKeys.encryptionKey,
    },
    entry: {
      device_id: `device-${user}`,
      user_id: user,
      username: user,
      nationality: nation,
      ...keys.publicKeys.toJson(),
      certificate: AUTHORITIES.certificate(keys, user, nation),
    },
  };
}

function memoryPins(pin: TransparencyPin): PinStore & { pin: TransparencyPin } {
  return {
    pin,
    async load() {
      return structuredClone(this.pin);
    },
    async change(change) {
      const next = change(structuredClone(this.pin));
      if (next !== null) this.pin = structuredClone(next);
    },
  };
}

/** A clock whose sleeps pass at once and move it on, recording each. */
function fakeClock(): Clock & { slept: number[] } {
  let now = 1_000_000;
  const slept: number[] = [];
  return {
    slept,
    now: () => now,
    async sleep(ms) {
      slept.push(ms);
      now += ms;
    },
  };
}

/** The server: the channel's roster, audiences and messages, and its key directory `log`. */
function played(log: Log, roster: Record<string, unknown>[]) {
  const state = {
    etag: '"one"',
    bundles: [] as string[],
    audiences: [] as { header: { devices: string[] } }[],
    messages: [] as unknown[],
    /** Device ids the server insists the audience holds (409 when it does not). */
    insist: [] as string[],
    /** Answer 404 for a device's bundle while its id is here. */
    unlogged: new Set<string>(),
  };
  const api = new Api(ORIGIN, async (input, init) => {
    const path = input.slice(ORIGIN.length);
    const route = `${init.method} ${path.split("?")[0]}`;
    const headers = init.headers as Record<string, string>;
    const body = init.body ? JSON.parse(init.body as string) : undefined;
    const json = (status: number, answer: unknown, extra: Record<string, string> = {}) =>
      new Response(JSON.stringify(answer), { status, headers: extra });
    const bundle = /^GET \/v1\/devices\/([^/]+)\/transparency$/.exec(route);
    if (bundle) {
      const id = decodeURIComponent(bundle[1]!);
      state.bundles.push(id);
      const old = Number(new URL(input).searchParams.get("old"));
      if (state.unlogged.has(id)) return json(404, { detail: "no such device in the directory" });
      return json(200, log.bundle(id, log.latest(), old));
    }
    if (route === `GET /v1/channels/${CHANNEL.id}/roster`) {
      if (headers["If-None-Match"] === state.etag) return new Response(null, { status: 304 });
      return json(200, roster, { ETag: state.etag });
    }
    if (route === `POST /v1/channels/${CHANNEL.id}/audiences`) {
      state.audiences.push(body);
      return json(201, { audience_id: body.header.audience_id, devices: body.header.devices });
    }
    if (route === `POST /v1/channels/${CHANNEL.id}/messages`) {
      const devices = state.audiences.at(-1)!.header.devices;
      const missing = state.insist.filter((id) => !devices.includes(id));
      if (missing.length > 0) {
        return json(409, {
          code: "audience-incomplete",
          detail: "the audience lacks eligible devices",
          devices: missing,
        });
      }
      state.messages.push(body);
      return json(201, {
        seq: state.messages.length,
        message_id: body.header.message_id,
        created: true,
        label: REL_USA_GBR,
        released_to: devices,
      });
    }
    return json(404, { detail: `no route ${route}` });
  });
  api.setToken("token");
  return { api, state };
}

/** Alice (USA), bob and carol (GBR), each registered active in a log of its own key. */
async function world() {
  const alice = await member("alice", "USA");
  const bob = await member("bob", "GBR");
  const carol = await member("carol", "GBR");
  const log = new Log();
  for (const m of [alice, bob, carol]) log.add(register(m.device, "active"));
  log.checkpoint();
  const pins = memoryPins({ vkey: V.vkey, checkpoint: null });
  const roster = [alice.entry, bob.entry, carol.entry];
  const server = played(log, roster);
  const clock = fakeClock();
  const transparency = await DeviceTransparency.fromStore(server.api, pins, clock);
  const sender = new Sender(
    server.api,
    { userId: "alice", deviceId: "device-alice", nationality: "USA", keys: alice.keys },
    AUTHORITIES.pins,
    catalog,
    transparency,
  );
  return { alice, bob, carol, log, pins, roster, clock, transparency, sender, ...server };
}

const sealedTo = (state: { audiences: { header: { devices: string[] } }[] }) =>
  new Set(state.audiences.flatMap((a) => a.header.devices));

test("a roster the directory vouches for is sealed to, and the checkpoint kept", async () => {
  const w = await world();
  const sent = await w.sender.send(CHANNEL, REL_USA_GBR, "hello");
  assert.deepEqual([...sent.devices].sort(), ["device-alice", "device-bob", "device-carol"]);
  assert.deepEqual(sent.excluded, []);
  assert.deepEqual(w.state.bundles.sort(), ["device-alice", "device-bob", "device-carol"]);
  const size = w.log.latest();
  assert.deepEqual(w.pins.pin, {
    vkey: V.vkey,
    checkpoint: { size, root: b64uEncode(w.log.root(size)) },
  });
  // An unchanged roster (304) asks for no bundle, and reuses the audience.
  w.state.bundles.length = 0;
  await w.sender.send(CHANNEL, REL_USA_GBR, "again");
  assert.deepEqual(w.state.bundles, []);
  assert.equal(w.state.audiences.length, 1);
});

test("keys the log never registered, certified by the nation's key, are not sealed to", async () => {
  const w = await world();
  // The server swaps bob's keys for its own, with a certificate GBR's key signed for them.
  const planted = await member("bob", "GBR");
  w.roster[1] = planted.entry;
  const reach = await w.sender.preview(CHANNEL, REL_USA_GBR);
  assert.deepEqual(reach.devices.sort(), ["device-alice", "device-carol"]);
  assert.equal(reach.excluded.length, 1);
  assert.equal(reach.excluded[0]!.deviceId, "device-bob");
  assert.match(
    reach.excluded[0]!.reason,
    /^the key directory does not vouch for it: the key directory has other keys for device device-bob than its certificate$/,
  );
  // The server insists on bob's device, twice running: refused, naming it and why.
  w.state.insist.push("device-bob");
  await assert.rejects(
    w.sender.send(CHANNEL, REL_USA_GBR, "secret"),
    (error: unknown) =>
      error instanceof SendError &&
      /^the server requires devices this page does not vouch for \(device device-bob of bob: the key directory does not vouch for it: the key directory has other keys/.test(
        error.message,
      ),
  );
  assert.ok(!sealedTo(w.state).has("device-bob"));
  assert.deepEqual(w.state.messages, []);
});

test("a revoked device the roster lists as active is left out as revoked", async () => {
  const w = await world();
  await w.sender.send(CHANNEL, REL_USA_GBR, "before");
  const at = w.log.add(revoke(w.carol.device));
  w.log.checkpoint();
  w.state.etag = '"two"'; // a roster notice, or a send refused with 412, makes it fetched afresh
  const sent = await w.sender.send(CHANNEL, REL_USA_GBR, "after");
  assert.deepEqual([...sent.devices].sort(), ["device-alice", "device-bob"]);
  assert.equal(sent.excluded.length, 1);
  assert.match(
    sent.excluded[0]!.reason,
    new RegExp(
      `device device-carol is revoked in the key directory at checkpoint .* leaf ${at}\\)`,
    ),
  );
  assert.deepEqual(w.state.audiences.at(-1)!.header.devices.sort(), ["device-alice", "device-bob"]);
  // The later checkpoint was proven consistent with the one kept, and is kept now.
  assert.equal(w.pins.pin.checkpoint!.size, w.log.latest());
});

for (const [how, change, said] of [
  [
    "forked",
    (pin: TransparencyPin, log: Log) => {
      pin.checkpoint = { size: log.latest(), root: b64uEncode(new Uint8Array(32).fill(9)) };
    },
    /another root than the one seen before: the log forked/,
  ],
  [
    "rolled back",
    (pin: TransparencyPin, log: Log) => {
      pin.checkpoint = { size: log.latest() + 5, root: b64uEncode(log.root()) };
    },
    /older than the one of size \d+ seen before/,
  ],
] as const) {
  test(`a checkpoint that does not extend the one kept (${how}) refuses the send, sealing nothing`, async () => {
    const w = await world();
    change(w.pins.pin, w.log);
    const kept = structuredClone(w.pins.pin);
    await assert.rejects(
      w.sender.send(CHANNEL, REL_USA_GBR, "secret"),
      (error: unknown) =>
        error instanceof SendError &&
        error.message.startsWith("the server's key directory is refused: ") &&
        said.test(error.message),
    );
    assert.deepEqual(w.state.audiences, []);
    assert.deepEqual(w.state.messages, []);
    assert.deepEqual(w.pins.pin, kept); // never moved back
    // Nor through the roster check releases and grants use.
    await assert.rejects(
      vouchedRoster(w.roster as never, AUTHORITIES.pins, new Date(), w.transparency),
      (error: unknown) => error instanceof Error && said.test(error.message),
    );
  });
}

test("a device not logged yet is waited for, backing off, then sealed to", async () => {
  const w = await world();
  w.state.unlogged.add("device-carol");
  const real = w.clock.sleep.bind(w.clock);
  w.clock.sleep = async (ms) => {
    await real(ms);
    if (w.clock.slept.length === 3) w.state.unlogged.delete("device-carol"); // logged meanwhile
  };
  const sent = await w.sender.send(CHANNEL, REL_USA_GBR, "welcome");
  assert.ok(sent.devices.includes("device-carol"));
  assert.deepEqual(w.clock.slept, [100, 200, 400]);
});

test("a device never logged is refused once the wait is spent, naming why", async () => {
  const w = await world();
  w.state.unlogged.add("device-carol");
  const sent = await w.sender.send(CHANNEL, REL_USA_GBR, "hello");
  assert.ok(!sent.devices.includes("device-carol"));
  assert.match(
    sent.excluded[0]!.reason,
    /^the key directory does not vouch for it: device device-carol is not in the key directory/,
  );
  // 0.1 s doubling to 1 s, for 10 s in all.
  assert.deepEqual(w.clock.slept.slice(0, 5), [100, 200, 400, 800, 1000]);
  assert.equal(
    w.clock.slept.reduce((a, b) => a + b, 0),
    10_000,
  );
  assert.ok(!sealedTo(w.state).has("device-carol"));
});

test("the checkpoint kept never goes back, even when another tab kept a larger one", () => {
  const root = (byte: number) => new Uint8Array(32).fill(byte);
  const pin = (size: number, byte: number): TransparencyPin => ({
    vkey: V.vkey,
    checkpoint: { size, root: b64uEncode(root(byte)) },
  });
  // Nothing kept yet, or a smaller one: the one verified is kept.
  assert.deepEqual(extendPin({ vkey: V.vkey, checkpoint: null }, V.vkey, 10, root(1)), pin(10, 1));
  assert.deepEqual(extendPin(pin(9, 2), V.vkey, 10, root(1)), pin(10, 1));
  // A larger one kept meanwhile (another tab): left as it is; the same one: left too.
  assert.equal(extendPin(pin(12, 3), V.vkey, 10, root(1)), null);
  assert.equal(extendPin(pin(10, 1), V.vkey, 10, root(1)), null);
  // The same size with another root: a fork, refused.
  assert.throws(
    () => extendPin(pin(10, 4), V.vkey, 10, root(1)),
    (error: unknown) =>
      error instanceof CheckpointRefused && /another root .* the log forked/.test(error.message),
  );
  // A damaged pin is refused, not taken for none.
  assert.throws(
    () => extendPin({ vkey: V.vkey, checkpoint: { size: 10, root: "x" } }, V.vkey, 11, root(1)),
    CheckpointRefused,
  );
});
