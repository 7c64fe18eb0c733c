// Runs the web client's tests under Node's own test runner: each test/*.test.ts is bundled
// by esbuild (which strips the types; `npm run typecheck` checks them) into a temporary
// directory, then `node --test` runs them against tests/protocol/vectors/*.json.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import { build } from "esbuild";

const web = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const tests = readdirSync(join(web, "test")).filter((name) => name.endsWith(".test.ts"));
const out = mkdtempSync(join(tmpdir(), "attache-web-test-"));
try {
  await build({
    entryPoints: tests.map((name) => join(web, "test", name)),
    outdir: out,
    outExtension: { ".js": ".mjs" },
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    logLevel: "warning",
  });
  const files = readdirSync(out)
    .filter((name) => name.endsWith(".test.mjs"))
    .map((name) => join(out, name));
  const result = spawnSync(process.execPath, ["--test", "--test-reporter=spec", ...files], {
    stdio: "inherit",
    env: { ...process.env, ATTACHE_ROOT: resolve(web, "..", "..") },
  });
  process.exitCode = result.status ?? 1;
} finally {
  rmSync(out, { recursive: true, force: true });
}
