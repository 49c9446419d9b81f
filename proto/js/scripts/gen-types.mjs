// Generates src/generated.ts from schema/protocol.schema.json, which the
// Rust `proto` crate's test `schema_is_up_to_date` writes from the wire
// types. With --check, fails (exit 1) when src/generated.ts is not what
// the schema generates, so the TypeScript types cannot drift from Rust.
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { compile } from "json-schema-to-typescript";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const schemaPath = join(root, "schema/protocol.schema.json");
const outPath = join(root, "src/generated.ts");
const check = process.argv.includes("--check");

// JSON Schema 2020-12 lets `$ref` sit beside other keywords (schemars does
// that for a tagged newtype variant); json-schema-to-typescript reads such a
// `$ref` as the whole schema. `allOf: [{$ref}, {rest}]` means the same.
function normalize(node) {
  if (Array.isArray(node)) return node.map(normalize);
  if (node === null || typeof node !== "object") return node;
  const out = {};
  for (const [k, v] of Object.entries(node)) out[k] = normalize(v);
  if (typeof out.$ref === "string" && Object.keys(out).some((k) => k !== "$ref" && k !== "description")) {
    const { $ref, description, ...rest } = out;
    return { ...(description ? { description } : {}), allOf: [{ $ref }, rest] };
  }
  return out;
}

const schema = normalize(JSON.parse(readFileSync(schemaPath, "utf8")));
const ts = await compile(schema, "SluiceProtocol", {
  bannerComment:
    "/* Generated from schema/protocol.schema.json (the Rust `proto` crate) by\n" +
    " * scripts/gen-types.mjs. Do not edit: run `npm run gen`. */",
  additionalProperties: false,
  unreachableDefinitions: true,
  format: true,
  style: { singleQuote: false, printWidth: 100 },
});

if (check) {
  let current = "";
  try {
    current = readFileSync(outPath, "utf8");
  } catch {
    // missing counts as drift
  }
  if (current !== ts) {
    console.error("src/generated.ts is out of date with schema/protocol.schema.json: run `npm run gen`");
    process.exit(1);
  }
  console.log("src/generated.ts matches the schema");
} else {
  writeFileSync(outPath, ts);
  console.log(`wrote ${outPath}`);
}
