// Builds the browser client into server/web/static/ (or the directory given as the first
// argument, which the bundle check uses): the page, its stylesheet and one ES module bundle.
// The output depends only on the source and the locked dependencies, so CI can rebuild it and
// compare bytes with what is committed.
import { copyFileSync, mkdirSync, readdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import { build } from "esbuild";

const web = dirname(fileURLToPath(import.meta.url));
const out = resolve(process.argv[2] ?? join(web, "..", "..", "server", "web", "static"));
mkdirSync(out, { recursive: true });

await build({
  entryPoints: [join(web, "src", "app", "main.ts")],
  outfile: join(out, "app.js"),
  bundle: true,
  format: "esm",
  platform: "browser",
  target: ["chrome120", "firefox121", "safari17"],
  minify: true,
  legalComments: "linked",
  charset: "utf8",
  logLevel: "warning",
});
for (const name of readdirSync(join(web, "public"))) {
  copyFileSync(join(web, "public", name), join(out, name));
}
