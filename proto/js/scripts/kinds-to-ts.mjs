// Turns a deployment's `GET /v1/kinds` into TypeScript: one interface
// mapping each kind's name to the type of its args, for
// `new SluiceClient<DeploymentKinds>(...)`, whose `submit` then checks the
// kind's name and its args at compile time.
//
//   node scripts/kinds-to-ts.mjs http://127.0.0.1:8080/v1/kinds --token "$TOKEN" > src/kinds.ts
//   node scripts/kinds-to-ts.mjs kinds.json --name MyKinds > kinds.ts
//
// The source is a URL (fetched with the bearer token) or a file holding
// the endpoint's answer. Written on stdout.
import { readFileSync } from "node:fs";
import { compile } from "json-schema-to-typescript";

const args = process.argv.slice(2);
const option = (flag) => {
  const i = args.indexOf(flag);
  return i >= 0 ? args.splice(i, 2)[1] : undefined;
};
const token = option("--token");
const name = option("--name") ?? "DeploymentKinds";
const source = args[0];
if (!source) {
  console.error("usage: kinds-to-ts.mjs <url or file> [--token JWT] [--name Interface]");
  process.exit(2);
}

let list;
if (/^https?:\/\//.test(source)) {
  const response = await fetch(source, {
    headers: token ? { authorization: `Bearer ${token}` } : {},
  });
  if (!response.ok) {
    console.error(`GET ${source}: ${response.status} ${await response.text()}`);
    process.exit(1);
  }
  list = await response.json();
} else {
  list = JSON.parse(readFileSync(source, "utf8"));
}

// `$schema` is the kind schema's own; inside one root it means nothing.
function strip(node) {
  if (Array.isArray(node)) return node.map(strip);
  if (node === null || typeof node !== "object") return node;
  const out = {};
  for (const [k, v] of Object.entries(node)) if (k !== "$schema") out[k] = strip(v);
  return out;
}

const properties = {};
for (const kind of list.kinds) {
  properties[kind.name] = {
    ...strip(kind.args_schema),
    description: `${kind.description} (time limit ${kind.timeout_ms} ms)`,
  };
}
const root = {
  title: name,
  description: "Args by kind name, from GET /v1/kinds.",
  type: "object",
  properties,
  required: Object.keys(properties),
  additionalProperties: false,
};
const ts = await compile(root, name, {
  bannerComment: `/* Generated from GET /v1/kinds by proto/js/scripts/kinds-to-ts.mjs. Do not edit. */`,
  additionalProperties: false,
  format: true,
  style: { singleQuote: false, printWidth: 100 },
});
process.stdout.write(ts);
