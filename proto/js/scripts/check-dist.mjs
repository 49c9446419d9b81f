// Fails (exit 1) when the committed dist/ is not what `npm run build`
// produces from src/. The gateway embeds dist/sluice-client.js in its
// binary, so a stale dist would ship a stale client.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const out = mkdtempSync(join(tmpdir(), "sluice-dist-"));
try {
  const tsc = join(root, "node_modules/typescript/bin/tsc");
  execFileSync(process.execPath, [tsc, "-p", join(root, "tsconfig.json"), "--outDir", out], { stdio: "inherit" });
  const fresh = readdirSync(out).sort();
  const committed = readdirSync(join(root, "dist")).sort();
  const stale = fresh.filter(
    (name) => !committed.includes(name) || readFileSync(join(out, name), "utf8") !== readFileSync(join(root, "dist", name), "utf8"),
  );
  const extra = committed.filter((name) => !fresh.includes(name));
  if (stale.length || extra.length) {
    console.error(`dist/ is out of date (${[...stale, ...extra].join(", ")}): run \`npm run build\` in proto/js`);
    process.exit(1);
  }
  console.log("dist/ matches src/");
} finally {
  rmSync(out, { recursive: true, force: true });
}
