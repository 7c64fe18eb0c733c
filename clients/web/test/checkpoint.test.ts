import assert from "node:assert/strict";
import { test } from "node:test";

import { toHex, utf8 } from "../src/protocol/bytes.js";
import {
  Checkpoint,
  CheckpointError,
  NoteSigner,
  NoteVerifier,
  noteKeyId,
  openCheckpoint,
  openNote,
  signCheckpoint,
  signNote,
} from "../src/protocol/checkpoint.js";
import { h, vector } from "./vectors.js";

// Checkpoints signed by protocol/checkpoint.py from a fixed seed (Ed25519 is deterministic).
const V = vector("merkle_checkpoint.json");
const SIGNER = new NoteSigner(V.key_name, h(V.ed25519_seed));
const VERIFIER = NoteVerifier.fromVkey(V.vkey);

test("the key, its id and its verifier key, byte for byte", () => {
  assert.equal(toHex(SIGNER.verifier.publicKey), V.public_key);
  assert.equal(toHex(noteKeyId(V.key_name, h(V.public_key))), V.key_id);
  assert.equal(SIGNER.verifier.vkey(), V.vkey);
  assert.equal(toHex(VERIFIER.publicKey), V.public_key);
  assert.equal(VERIFIER.vkey(), V.vkey);
});

test("every checkpoint: its body and its signed note made byte for byte, and opened", () => {
  for (const c of V.checkpoints) {
    const checkpoint = new Checkpoint(c.origin, c.size, h(c.root), c.extensions);
    assert.equal(checkpoint.body(), c.body);
    assert.equal(signCheckpoint(checkpoint, SIGNER), c.note);
    const parsed = Checkpoint.parse(c.body);
    assert.equal(parsed.origin, c.origin);
    assert.equal(parsed.size, c.size);
    assert.equal(toHex(parsed.root), c.root);
    assert.deepEqual(parsed.extensions, c.extensions);
    assert.deepEqual(openNote(c.note, [VERIFIER]), { body: c.body, signers: [V.key_name] });
    const opened = openCheckpoint(c.note, [VERIFIER], c.origin);
    assert.equal(opened.size, c.size);
    assert.equal(toHex(opened.root), c.root);
  }
});

const NOTE: string = V.checkpoints[0].note;
const BODY: string = V.checkpoints[0].body;

test("a tampered note is refused, saying why", () => {
  const other = new NoteSigner(V.key_name, new Uint8Array(32).fill(7));
  const cases: [string, string, RegExp][] = [
    ["a changed size", NOTE.replace("\n8\n", "\n9\n"), /invalid signature/],
    ["a changed root", NOTE.replace("Xcna", "Ycna"), /invalid signature/],
    ["a changed signature", NOTE.replace("fSKbtCzB", "fSKbtCzC"), /invalid signature/],
    ["another key's signature", signNote(BODY, other), /no valid signature from a known key/],
    ["no signature", BODY, /no blank line|no signature/],
    ["no blank line", NOTE.replace("\n\n", "\n"), /no blank line/],
    ["no final newline", NOTE.slice(0, -1), /does not end with a newline/],
    ["a hyphen for the em dash", NOTE.replace("\u2014", "-"), /em dash/],
    ["a control character", NOTE.replace("attache", "at\x07tache"), /control character/],
    ["unpadded base64", NOTE.replace(/=\n$/, "\n"), /base64/],
  ];
  for (const [what, text, reason] of cases) {
    assert.throws(() => openCheckpoint(text, [VERIFIER], V.key_name), reason, what);
    assert.throws(() => openCheckpoint(text, [VERIFIER], V.key_name), CheckpointError, what);
  }
  // A note signed by the right key for another origin is refused by origin.
  const elsewhere = signCheckpoint(
    new Checkpoint("elsewhere/log", 8, h(V.checkpoints[0].root)),
    SIGNER,
  );
  assert.throws(() => openCheckpoint(elsewhere, [VERIFIER], V.key_name), /origin 'elsewhere\/log'/);
  // Two signatures, one from an unknown key: the known one is enough, and named.
  const both = signNote(BODY, other, SIGNER).replace(`\u2014 ${V.key_name} `, "\u2014 stranger ");
  assert.deepEqual(openNote(both, [VERIFIER]).signers, [V.key_name]);
});

test("malformed checkpoints and verifier keys are refused as Python refuses them", () => {
  const root = V.checkpoints[0].body.split("\n")[2];
  const bodies: [string, RegExp][] = [
    [`o\n08\n${root}\n`, /leading zeros/],
    [`o\n-1\n${root}\n`, /decimal digits/],
    [`o\n9223372036854775808\n${root}\n`, /larger than 2\*\*63-1/],
    [`o\n9007199254740992\n${root}\n`, /larger than this page can verify/],
    [`o\n8\nAAAA\n`, /root hash is 3 bytes/],
    [`o\n8\n`, /has 2 lines/],
    [`o\n8\n${root}`, /does not end with a newline/],
    [`o\n8\n${root}\n\n`, /line 4 is empty/],
  ];
  for (const [body, reason] of bodies) assert.throws(() => Checkpoint.parse(body), reason, body);
  const [name, id, key] = V.vkey.split("+");
  const vkeys: [string, RegExp][] = [
    [`${name}+${id}`, /<name>\+<key id>\+<key>/],
    [`${name}+00000000+${key}`, /does not match/],
    [`${name}+${id.toUpperCase()}+${key}`, /lower-case hex/],
    [`${name}+${id}+${key.replace("AR", "Ah")}`, /not an Ed25519/],
    [`other name+${id}+${key}`, /space or '\+'/],
    [`${name}+${id}+${key.slice(0, -4)}`, /base64|32 bytes/],
  ];
  for (const [vkey, reason] of vkeys)
    assert.throws(() => NoteVerifier.fromVkey(vkey), reason, vkey);
  assert.throws(() => new Checkpoint("o", 1, new Uint8Array(31)), /32 bytes/);
  assert.throws(() => new Checkpoint("a\nb", 1, new Uint8Array(32)), /newline/);
  assert.ok(!VERIFIER.verify(utf8(BODY), new Uint8Array(63)));
});
