// Validates Kubernetes objects against the upstream OpenAPI schemas, as
// two npm packages ship them (installed by tests/deploy/k8s_schema.py
// into build/k8s-schema; nothing here touches the network):
//
//  - kubernetes-models: the JSON schemas of every built-in kind, compiled
//    to ajv validators (types, formats, enums, required fields);
//  - @kubernetes/client-node: the models generated from the API server's
//    OpenAPI spec (v1.34.0), whose attributeTypeMap lists each type's
//    fields: anything else is an unknown field, refused as the API
//    server's strict field validation (kubectl's default) refuses it.
//
// usage: node validate.mjs MODULES_DIR < objects.json
//   objects.json: [{"source": "...", "object": {...}}, ...]
// Prints one line per object; exits 1 if any is invalid.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const mods = process.argv[2];
const items = JSON.parse(readFileSync(0, "utf8"));
const load = (p) => import(pathToFileURL(join(mods, "node_modules", p)).href);
const cnModels = "@kubernetes/client-node/dist/gen/models/";
const classes = new Map();
const META_KINDS = new Set(["DeleteOptions"]);

async function cnClass(name) {
  if (!classes.has(name)) {
    let cls = null;
    try {
      cls = (await load(cnModels + name + ".js"))[name] ?? null;
    } catch {
      cls = null;
    }
    classes.set(name, cls);
  }
  return classes.get(name);
}

// Unknown fields, walking the object along client-node's type map.
async function unknownFields(value, type, path, out) {
  if (value === null || value === undefined) return;
  let m;
  if ((m = /^Array<(.+)>$/.exec(type))) {
    if (Array.isArray(value))
      for (let i = 0; i < value.length; i++)
        await unknownFields(value[i], m[1], `${path}[${i}]`, out);
    return;
  }
  if ((m = /^\{ \[key: string\]: (.+); \}$/.exec(type))) {
    if (typeof value === "object")
      for (const [k, v] of Object.entries(value))
        await unknownFields(v, m[1], `${path}.${k}`, out);
    return;
  }
  const cls = await cnClass(type);
  if (cls === null || !cls.attributeTypeMap || typeof value !== "object" ||
      Array.isArray(value))
    return; // string, number, boolean, Date, IntOrString, any
  const fields = new Map(cls.attributeTypeMap.map((a) => [a.baseName, a.type]));
  for (const [k, v] of Object.entries(value)) {
    if (!fields.has(k)) out.push(`${path ? path + "." : ""}${k}: unknown field (${type})`);
    else await unknownFields(v, fields.get(k), path ? `${path}.${k}` : k, out);
  }
}

async function check(obj) {
  const errs = [];
  if (!obj || typeof obj.apiVersion !== "string" || typeof obj.kind !== "string")
    return ["no apiVersion/kind"];
  const gv = obj.apiVersion.split("/");
  const version = gv[gv.length - 1];
  // meta/v1 kinds a client sends in bodies (DeleteOptions) live in the
  // apimachinery package
  const file = META_KINDS.has(obj.kind)
    ? `@kubernetes-models/apimachinery/apis/meta/v1/${obj.kind}.js`
    : `kubernetes-models/${obj.apiVersion}/${obj.kind}.js`;
  let Model;
  try {
    Model = (await load(file))[obj.kind];
  } catch {
    Model = undefined;
  }
  if (!Model) return [`${obj.apiVersion} ${obj.kind}: not a kind the upstream schemas know`];
  try {
    new Model(obj).validate();
  } catch (e) {
    errs.push(e.message);
  }
  const clsName = "V" + version.slice(1) + obj.kind;
  if ((await cnClass(clsName)) === null)
    errs.push(`${clsName}: no upstream field list for ${obj.apiVersion} ${obj.kind}`);
  else await unknownFields(obj, clsName, "", errs);
  return errs;
}

let bad = 0;
for (const { source, object } of items) {
  const errs = await check(object);
  const what = `${source}: ${object?.kind ?? "?"} ${object?.metadata?.name ?? ""}`;
  if (errs.length) {
    bad++;
    console.log(`INVALID ${what}\n  ${errs.join("\n  ")}`);
  } else console.log(`ok ${what}`);
}
process.exit(bad ? 1 : 0);
