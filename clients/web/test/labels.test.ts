/**
 * Labels in the page (src/protocol/labels.ts) against Python's protocol/labels.py: the same
 * catalog TOML, the same canonical forms read, the same banners and colours rendered, and every
 * way a canonical label must be refused. The Python outputs come from test/python_labels.py,
 * run with the project's Python (ATTACHE_PYTHON, set by `make web-check`).
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { test } from "node:test";

import {
  LabelError,
  bannerTextColour,
  catalogFromToml,
  clearanceFromCanonical,
  decide,
  labelColour,
  labelFromCanonical,
  parseLabel,
  renderLabel,
} from "../src/protocol/labels.js";
import { ROOT, repoText } from "./vectors.js";

const PYTHON = process.env.ATTACHE_PYTHON;
const catalog = catalogFromToml(repoText("protocol", "catalogs", "default.toml"));

const BANNERS: [string, string | null][] = [
  ["NATO SECRET//REL TO USA, GBR", "USA"],
  ["NS//ATOMAL/CRYPTO//MISSION KFOR, EFP//EXERCISE TRIDENT JUNCTURE//PRIVACY STAFF ONLY", "GBR"],
  ["NATO CONFIDENTIAL//REVIEW 2030-01-02", "USA"],
  ["SECRET", "FRA"],
  ["COSMIC TOP SECRET", null],
  ["OFFICIAL-SENSITIVE", "GBR"],
  ["NATO UNCLASSIFIED", "USA"],
  ["NATO RESTRICTED//REL TO FVEY, FRA", "DEU"],
  ["GEHEIM", "DEU"],
];

const DECISIONS = [
  ["NATO SECRET", "USA", ["NATO SECRET//REL TO USA, GBR", "USA"], "NATO SECRET", true],
  ["NATO SECRET", "FRA", ["NATO SECRET//REL TO USA, GBR", "USA"], "NATO SECRET", true],
  ["NATO CONFIDENTIAL", "GBR", ["NATO SECRET//REL TO FVEY", "GBR"], "NATO SECRET", true],
  ["NATO SECRET", "GBR", ["NATO SECRET//ATOMAL", "GBR"], "NATO SECRET", false],
  ["NATO SECRET//ATOMAL", "DEU", ["GEHEIM//ATOMAL", "DEU"], "NATO SECRET//ATOMAL", true],
  ["COSMIC TOP SECRET", "USA", ["COSMIC TOP SECRET", "USA"], "NATO SECRET", true],
  ["NATO SECRET", "USA", ["SECRET", "FRA"], "NATO SECRET", true],
  ["NATO SECRET", "FRA", ["SECRET", "FRA"], "NATO SECRET", true],
  ["NATO RESTRICTED", "GBR", ["OFFICIAL-SENSITIVE", "GBR"], "NATO SECRET", true],
  ["GBR OFFICIAL-SENSITIVE", "GBR", ["NATO RESTRICTED", "GBR"], "NATO SECRET", true],
  ["NATO SECRET", "USA", ["NATO SECRET//MISSION KFOR", "USA"], "NATO SECRET", true],
  [
    "NATO SECRET//MISSION EFP",
    "USA",
    ["NATO SECRET//MISSION KFOR, EFP", "USA"],
    "NATO SECRET",
    true,
  ],
  ["NATO SECRET", "UKR", ["NATO UNCLASSIFIED", "USA"], "NATO CONFIDENTIAL", true],
  ["USA UNCLASSIFIED", "USA", ["NATO UNCLASSIFIED", "USA"], "NATO CONFIDENTIAL", true],
] as const;

test(
  "banners parse, canonical labels read and render, and decisions decide, as in Python",
  { skip: PYTHON === undefined ? "ATTACHE_PYTHON is not set (make web-check sets it)" : false },
  () => {
    const run = spawnSync(PYTHON!, [join(ROOT, "clients", "web", "test", "python_labels.py")], {
      cwd: ROOT,
      input: JSON.stringify({
        banners: BANNERS,
        decisions: DECISIONS.map(([clearance, nationality, label, ceiling, member]) => ({
          clearance,
          nationality,
          label,
          ceiling,
          member,
        })),
      }),
      encoding: "utf-8",
    });
    assert.equal(run.status, 0, run.stderr);
    const expected = JSON.parse(run.stdout) as {
      labels: { canonical: unknown; banner: string; colour: string }[];
      decisions: { clearance: unknown; label: unknown; ceiling: unknown; reasons: string[] }[];
    };
    assert.equal(expected.labels.length, BANNERS.length);
    expected.labels.forEach(({ canonical, banner, colour }, i) => {
      const [written, originator] = BANNERS[i]!;
      assert.deepEqual(parseLabel(written, catalog, originator), canonical);
      const label = labelFromCanonical(canonical, catalog);
      assert.equal(renderLabel(label, catalog), banner);
      assert.equal(labelColour(label, catalog), colour);
      assert.deepEqual(parseLabel(banner, catalog, originator), canonical);
    });
    assert.equal(expected.decisions.length, DECISIONS.length);
    let allowed = 0;
    expected.decisions.forEach(({ clearance, label, ceiling, reasons }, i) => {
      const [, nationality, , , member] = DECISIONS[i]!;
      const decision = decide(
        {
          userId: "user",
          nationality,
          clearance: clearanceFromCanonical(clearance, catalog),
        },
        labelFromCanonical(label, catalog),
        {
          ceiling: labelFromCanonical(ceiling, catalog),
          members: new Set(member ? ["user"] : []),
        },
        catalog,
      );
      assert.deepEqual(decision.reasons, reasons, JSON.stringify(DECISIONS[i]));
      assert.equal(decision.allowed, reasons.length === 0);
      if (decision.allowed) allowed += 1;
    });
    // Both answers are exercised.
    assert.ok(allowed > 2 && allowed < DECISIONS.length - 2);
  },
);

test("banners this catalog cannot read are refused", () => {
  for (const [banner, originator] of [
    ["", "USA"],
    ["NATO SECRET//", "USA"],
    ["SECRET", null],
    ["NATO", "USA"],
    ["NATO SUPER SECRET", "USA"],
    ["nato secret", "USA"],
    ["NATO SECRET//REL TO USA, USA", "USA"],
    ["NATO SECRET//REL TO XXX", "USA"],
    ["NATO SECRET//REL USA", "USA"],
    ["NATO SECRET//FOO", "USA"],
    ["NATO SECRET//MISSION FOO", "USA"],
    ["NATO SECRET//ATOMAL/ATOMAL", "USA"],
    ["NATO SECRET//REVIEW 2030-02-30", "USA"],
    ["NATO SECRET", "XXX"],
  ] as const) {
    assert.throws(() => parseLabel(banner, catalog, originator), LabelError, banner);
  }
});

const SECRET = {
  policy: "NATO",
  level: "SECRET",
  categories: {},
  rel_to: ["USA", "GBR"],
  originator: "USA",
  privacy_mark: null,
  review_date: null,
};

test("a canonical label is refused unless it is exactly that form, of this catalog", () => {
  assert.equal(
    renderLabel(labelFromCanonical(SECRET, catalog), catalog),
    "NATO SECRET//REL TO USA, GBR",
  );
  const bad: [string, unknown][] = [
    ["not an object", ["NATO"]],
    ["a key missing", { ...SECRET, review_date: undefined }],
    ["an unknown key", { ...SECRET, colour: "#fff" }],
    ["an unknown policy", { ...SECRET, policy: "XXX" }],
    ["an unknown level", { ...SECRET, level: "SUPER SECRET" }],
    ["an unknown category", { ...SECRET, categories: { FOO: ["X"] } }],
    ["an unknown value", { ...SECRET, categories: { CAVEAT: ["FOO"] } }],
    ["no values", { ...SECRET, categories: { CAVEAT: [] } }],
    ["values unsorted", { ...SECRET, categories: { CAVEAT: ["CRYPTO", "ATOMAL"] } }],
    ["values twice", { ...SECRET, categories: { CAVEAT: ["ATOMAL", "ATOMAL"] } }],
    ["an unknown nation", { ...SECRET, rel_to: ["USA", "XXX"] }],
    ["a nation twice", { ...SECRET, rel_to: ["USA", "USA"] }],
    ["an unknown originator", { ...SECRET, originator: "XXX" }],
    ["a bad privacy mark", { ...SECRET, privacy_mark: "lower case" }],
    ["a bad review date", { ...SECRET, review_date: "2030-02-30" }],
    ["a level that is not a string", { ...SECRET, level: 3 }],
  ];
  for (const [why, data] of bad) {
    const value = JSON.parse(JSON.stringify(data)) as unknown;
    assert.throws(() => labelFromCanonical(value, catalog), LabelError, why);
  }
});

test("the directory's nations and groups extend the catalog", () => {
  const extended = catalogFromToml(repoText("protocol", "catalogs", "default.toml"), {
    nations: ["BRA"],
    groups: { LIAISON: ["USA", "BRA"] },
  });
  const label = labelFromCanonical({ ...SECRET, rel_to: ["LIAISON"], originator: "BRA" }, extended);
  assert.equal(renderLabel(label, extended), "NATO SECRET//REL TO LIAISON");
  assert.throws(() => labelFromCanonical({ ...SECRET, rel_to: ["LIAISON"] }, catalog), LabelError);
});

test("banner text is black or white, whichever reads better on the level's colour", () => {
  assert.equal(bannerTextColour("#c8102e"), "#ffffff");
  assert.equal(bannerTextColour("#0033a0"), "#ffffff");
  assert.equal(bannerTextColour("#ff8c00"), "#000000");
  assert.equal(bannerTextColour("#007a33"), "#ffffff");
});
