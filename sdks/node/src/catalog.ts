// Catalog types (docs/protocol.md "The built-in catalog"): their data must
// be JSON matching the type's JSON Schema, the files of pkg/events/schemas.
// The schemas use a few keywords (type, properties, required,
// additionalProperties, enum, minLength, maxLength, pattern): this checks
// those, and refuses a schema that uses another, so a new keyword cannot
// pass unchecked.
import { ValidationError } from "./errors.js";
import { schemas } from "./catalog-schemas.js";

type Schema = {
  type?: string | string[];
  properties?: Record<string, Schema>;
  required?: string[];
  additionalProperties?: boolean;
  enum?: unknown[];
  minLength?: number;
  maxLength?: number;
  pattern?: string;
};

const known = new Set(["type", "properties", "required", "additionalProperties", "enum", "minLength", "maxLength", "pattern"]);
const patterns = new Map<string, RegExp>();
const decoder = new TextDecoder("utf-8", { fatal: true });

/** isCatalogType reports whether typ is a built-in catalog type. */
export function isCatalogType(typ: string): boolean {
  return Object.hasOwn(schemas, typ);
}

/**
 * validateCatalogData checks the data of an event of a catalog type (any
 * other type passes): JSON, present, and matching the type's schema. value
 * is the data as a JS value when it is one; bytes its encoding.
 */
export function validateCatalogData(typ: string, contentType: string | undefined, value: unknown, bytes?: Uint8Array): void {
  if (!isCatalogType(typ)) return;
  const ct = contentType ?? "";
  const mt = ct.split(";", 1)[0].trim().toLowerCase();
  if (mt !== "" && mt !== "application/json" && !mt.endsWith("+json")) {
    throw new ValidationError("datacontenttype", `${JSON.stringify(ct)} is not JSON: catalog type ${typ} needs application/json data`);
  }
  let v = value;
  if (v instanceof Uint8Array || v === undefined) {
    const b = v instanceof Uint8Array ? v : bytes;
    if (!b || b.length === 0 || decoder.decode(b).trim() === "") throw new ValidationError("data", `required for catalog type ${typ}`);
    try {
      v = JSON.parse(decoder.decode(b));
    } catch (err) {
      throw new ValidationError("data", `invalid JSON: ${(err as Error).message}`);
    }
  }
  check(schemas[typ] as Schema, v, []);
}

function typeOf(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "array";
  if (typeof v === "number") return Number.isInteger(v) ? "integer" : "number";
  return typeof v;
}

function fail(path: string[], reason: string): never {
  throw new ValidationError(["data", ...path].join("."), reason);
}

function check(s: Schema, v: unknown, path: string[]): void {
  for (const k of Object.keys(s)) {
    if (!known.has(k)) throw new Error(`catalog schema keyword ${k} is not supported by the Node SDK`);
  }
  if (s.type !== undefined) {
    const want = Array.isArray(s.type) ? s.type : [s.type];
    const got = typeOf(v);
    if (!want.includes(got) && !(got === "integer" && want.includes("number"))) {
      fail(path, `must be ${want.join(" or ")}, got ${got === "integer" ? "number" : got}`);
    }
  }
  if (s.enum !== undefined && !s.enum.some((e) => e === v)) {
    fail(path, `value ${JSON.stringify(v)} not one of ${s.enum.join(", ")}`);
  }
  if (typeof v === "string") {
    const n = [...v].length;
    if (s.minLength !== undefined && n < s.minLength) fail(path, n === 0 ? "must not be empty" : `must be at least ${s.minLength} characters long, got ${n}`);
    if (s.maxLength !== undefined && n > s.maxLength) fail(path, `must be at most ${s.maxLength} characters long, got ${n}`);
    if (s.pattern !== undefined) {
      let re = patterns.get(s.pattern);
      if (!re) patterns.set(s.pattern, (re = new RegExp(s.pattern, "u")));
      if (!re.test(v)) fail(path, `value ${JSON.stringify(v)} must match ${s.pattern}`);
    }
  }
  if (typeOf(v) === "object") {
    const o = v as Record<string, unknown>;
    for (const name of s.required ?? []) {
      if (!Object.hasOwn(o, name)) fail([...path, name], "required");
    }
    for (const [name, sub] of Object.entries(s.properties ?? {})) {
      if (Object.hasOwn(o, name)) check(sub, o[name], [...path, name]);
    }
    if (s.additionalProperties === false) {
      for (const name of Object.keys(o).sort()) {
        if (!Object.hasOwn(s.properties ?? {}, name)) fail([...path, name], "unknown field");
      }
    }
  }
}
