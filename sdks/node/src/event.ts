// CloudEvents on NATS as docs/protocol.md defines them: binary and
// structured mode, percent-encoding, Nats-Msg-Id, validation.
import { createHash, randomUUID } from "node:crypto";
import { headers as newHeaders, type MsgHdrs } from "nats";
import { ValidationError } from "./errors.js";
import { validateCatalogData } from "./catalog.js";

/**
 * CloudEvent is an event shaped like the CloudEvents JSON format:
 * attributes and extensions at the top level, `data` any JSON value, or a
 * Uint8Array for raw bytes. `time` may be a Date.
 */
export interface CloudEvent {
  specversion?: "1.0" | string;
  id: string;
  source: string;
  type: string;
  subject?: string;
  time?: string | Date;
  datacontenttype?: string;
  dataschema?: string;
  /** a JSON value, or a Uint8Array (bytes, sent as they are in binary mode) */
  data?: unknown;
  /** extensions: string, number or boolean values (sent as strings) */
  [extension: string]: unknown;
}

/** Encoded is a NATS message of an event: its headers and body. */
export interface Encoded {
  headers: MsgHdrs;
  data: Uint8Array;
  /** the size of the message on the wire (header block and body) */
  size: number;
}

/** DefaultMaxSize is the default limit on an encoded event (1 MiB). */
export const DefaultMaxSize = 1 << 20;
/** ContentTypeStructured marks a structured-mode message. */
export const ContentTypeStructured = "application/cloudevents+json";
/** HeaderMsgID is JetStream's deduplication header. */
export const HeaderMsgID = "Nats-Msg-Id";

const encoder = new TextEncoder();
const strictDecoder = new TextDecoder("utf-8", { fatal: true });
const attributeNames = new Set(["specversion", "id", "source", "type", "subject", "time", "datacontenttype", "dataschema", "data", "data_base64"]);
const maxTypeLen = 200;
const headerFrame = "NATS/1.0\r\n".length + "\r\n".length;
const lineExtra = ": \r\n".length;

/**
 * msgId is the JetStream deduplication id of the event (source, id):
 * lowercase hex SHA-256 of "<byte length of source>:<source><id>".
 */
export function msgId(source: string, id: string): string {
  return createHash("sha256").update(`${Buffer.byteLength(source)}:${source}${id}`).digest("hex");
}

/** newId returns a fresh event id (a random UUID). */
export function newId(): string {
  return randomUUID();
}

/** validateType checks an event type: tokens of [A-Za-z0-9_-] joined by single dots, at most 200 bytes. */
export function validateType(s: unknown): asserts s is string {
  if (typeof s !== "string" || s === "") throw new ValidationError("type", "required");
  if (Buffer.byteLength(s) > maxTypeLen) throw new ValidationError("type", `${Buffer.byteLength(s)} bytes long, the limit is ${maxTypeLen}`);
  const tokens = s.split(".");
  for (let i = 0; i < tokens.length; i++) {
    const tok = tokens[i];
    if (tok === "") throw new ValidationError("type", `${JSON.stringify(s)} has an empty token (at token ${i + 1}): tokens are joined by single dots`);
    const bad = /[^A-Za-z0-9_-]/u.exec(tok);
    if (bad) throw new ValidationError("type", `${JSON.stringify(s)} contains '${bad[0]}': only letters, digits, '_' and '-' are allowed in a token`);
  }
}

/** validateName checks a plugin, hook or subscriber name: [A-Za-z0-9_-]{1,64}. */
export function validateName(field: string, s: unknown): asserts s is string {
  if (typeof s !== "string" || s === "") throw new ValidationError(field, "required", "name");
  if (Buffer.byteLength(s) > 64) throw new ValidationError(field, `${Buffer.byteLength(s)} bytes long, the limit is 64`, "name");
  const bad = /[^A-Za-z0-9_-]/u.exec(s);
  if (bad) throw new ValidationError(field, `${JSON.stringify(s)} contains ${JSON.stringify(bad[0])}: only letters, digits, '_' and '-' are allowed`, "name");
}

// checkText refuses text that is not well-formed (it would not be UTF-8
// on the wire) or holds control characters.
function checkText(field: string, s: string): void {
  if (!s.isWellFormed()) throw new ValidationError(field, "is not valid UTF-8");
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) {
      throw new ValidationError(field, `contains the control character U+${c.toString(16).toUpperCase().padStart(4, "0")}`);
    }
  }
}

function checkTrimmed(field: string, s: string): void {
  checkText(field, s);
  if (s.trim() !== s) throw new ValidationError(field, `${JSON.stringify(s)} has white space at its start or end`);
}

function requireString(field: string, v: unknown): string {
  if (typeof v !== "string") throw new ValidationError(field, v === undefined || v === null || v === "" ? "required" : `must be a string, got ${typeof v}`);
  if (v === "") throw new ValidationError(field, "required");
  return v;
}

// Characters a canonical URI reference holds as they are: unreserved,
// reserved, and '%' starting an escape.
const uriChar = /^[A-Za-z0-9\-._~:/?#[\]@!$&'()*+,;=%]*$/;

/**
 * validateSource checks a source as a producer sends it: a URI reference
 * in canonical form (non-ASCII and spaces percent-encoded, lower-case
 * scheme), as the Go side (net/url) reads it; the error names the form to send.
 */
export function validateSource(raw: unknown): asserts raw is string {
  const s = requireString("source", raw);
  if (/^[a-z0-9/._~-]+$/.test(s)) return;
  checkText("source", s);
  const canon = canonicalURI(s);
  if (canon !== s) throw new ValidationError("source", `${JSON.stringify(s)} is not in canonical URI form: send ${JSON.stringify(canon)}`);
}

// canonicalURI escapes what a URI reference cannot hold as it is and
// lowers the scheme.
function canonicalURI(s: string): string {
  let out = "";
  for (const ch of s) {
    if (uriChar.test(ch) && ch !== "%") {
      out += ch;
    } else if (ch === "%") {
      out += "%";
    } else {
      for (const b of encoder.encode(ch)) out += "%" + b.toString(16).toUpperCase().padStart(2, "0");
    }
  }
  // A '%' that starts no escape is written %25.
  out = out.replace(/%(?![0-9A-Fa-f]{2})/g, "%25");
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):/.exec(out);
  if (scheme) out = scheme[1].toLowerCase() + out.slice(scheme[1].length);
  return out;
}

const mediaType = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+\/[!#$%&'*+.^_`|~0-9A-Za-z-]+(\s*;.*)?$/;
const rfc3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;

/** timeString returns the event's time as sent on the wire (RFC 3339), or "" when it has none. */
function timeString(t: unknown): string {
  if (t === undefined || t === null || t === "") return "";
  if (t instanceof Date) {
    if (Number.isNaN(t.getTime())) throw new ValidationError("time", "is an invalid Date");
    const y = t.getUTCFullYear();
    if (y < 0 || y > 9999) throw new ValidationError("time", `year ${y} is outside the years 0 to 9999 that RFC 3339 can write`);
    return t.toISOString();
  }
  if (typeof t !== "string") throw new ValidationError("time", `must be an RFC 3339 string or a Date, got ${typeof t}`);
  const m = rfc3339.exec(t);
  if (!m || Number.isNaN(Date.parse(t))) throw new ValidationError("time", `${JSON.stringify(t)} is not an RFC 3339 time`);
  return t;
}

function extensionValue(name: string, v: unknown): string {
  switch (typeof v) {
    case "string":
      checkText(name, v);
      return v;
    case "number":
      if (!Number.isInteger(v)) throw new ValidationError(name, `extension values are strings, integers or booleans, got ${v}`);
      return String(v);
    case "boolean":
      return String(v);
    default:
      throw new ValidationError(name, `extension values are strings, integers or booleans, got ${v === null ? "null" : typeof v}`);
  }
}

function checkExtensionName(name: string): void {
  if (name === "" || name.length > 64) throw new ValidationError(`extension ${JSON.stringify(name)}`, "name must be 1 to 64 characters");
  if (!/^[a-z0-9]+$/.test(name)) throw new ValidationError(name, "extension names are lowercase letters and digits only (CloudEvents 1.0)");
  if (name === "data") throw new ValidationError("extension data", "the name is reserved by the JSON event format");
}

/** isJSONType reports whether a datacontenttype announces JSON (absent counts as JSON). */
export function isJSONType(ct: string | undefined): boolean {
  if (!ct) return true;
  const mt = ct.split(";", 1)[0].trim().toLowerCase();
  return mt === "application/json" || mt.endsWith("+json") || mt === "text/json";
}

// body is the event's data as bytes, and the content type to announce.
function body(ev: CloudEvent): { bytes: Uint8Array; contentType: string | undefined } {
  const d = ev.data;
  const ct = ev.datacontenttype || undefined;
  if (d === undefined) return { bytes: new Uint8Array(0), contentType: ct };
  if (d instanceof Uint8Array) return { bytes: d, contentType: ct ?? "application/octet-stream" };
  if (typeof d === "string" && ct !== undefined && !isJSONType(ct)) return { bytes: encoder.encode(d), contentType: ct };
  const text = JSON.stringify(d);
  if (text === undefined) throw new ValidationError("data", `${typeof d} is not JSON`);
  return { bytes: encoder.encode(text), contentType: ct ?? "application/json" };
}

// Attributes is an event's attributes checked and ready for the wire.
interface Attributes {
  id: string;
  source: string;
  type: string;
  subject: string;
  time: string;
  dataschema: string;
  extensions: [string, string][];
}

// check validates every attribute of ev, in a fixed order so an event with
// several faults always gets the same error.
function check(ev: CloudEvent): Attributes {
  if (ev === null || typeof ev !== "object") throw new ValidationError("event", "must be an object");
  if (ev.specversion !== undefined && ev.specversion !== "1.0") {
    throw new ValidationError("specversion", `${JSON.stringify(ev.specversion)} is not supported, want "1.0"`);
  }
  const id = requireString("id", ev.id);
  checkTrimmed("id", id);
  validateSource(ev.source);
  validateType(ev.type);
  let subject = "";
  if (ev.subject !== undefined && ev.subject !== null && ev.subject !== "") {
    subject = requireString("subject", ev.subject);
    checkTrimmed("subject", subject);
  }
  const ct = ev.datacontenttype;
  if (ct !== undefined && ct !== null && ct !== "") {
    if (typeof ct !== "string") throw new ValidationError("datacontenttype", `must be a string, got ${typeof ct}`);
    checkTrimmed("datacontenttype", ct);
    if (!mediaType.test(ct)) throw new ValidationError("datacontenttype", `${JSON.stringify(ct)} is not a media type (type/subtype, e.g. application/json)`);
  }
  let dataschema = "";
  if (ev.dataschema !== undefined && ev.dataschema !== null && ev.dataschema !== "") {
    dataschema = requireString("dataschema", ev.dataschema);
    checkText("dataschema", dataschema);
    if (!uriChar.test(dataschema)) throw new ValidationError("dataschema", `${JSON.stringify(dataschema)} is not a URI reference`);
  }
  const time = timeString(ev.time);
  const extensions: [string, string][] = [];
  for (const name of Object.keys(ev)) {
    if (attributeNames.has(name)) continue;
    const v = ev[name];
    if (v === undefined) continue;
    checkExtensionName(name);
    extensions.push([name, extensionValue(name, v)]);
  }
  return { id, source: ev.source, type: ev.type, subject, time, dataschema, extensions };
}

function checkSize(size: number, maxSize: number): void {
  if (size > maxSize) throw new ValidationError("size", `event is ${size} bytes encoded, the limit is ${maxSize}`);
}

/**
 * validate checks what Hookbus relies on (docs/protocol.md "Validation"):
 * the attributes, the size in binary mode, and for catalog types the data
 * against the type's JSON Schema. It throws a ValidationError naming the
 * part at fault.
 */
export function validate(ev: CloudEvent, maxSize = DefaultMaxSize): void {
  encodeBinary(ev, maxSize);
}

/** percentEncode applies the HTTP binding's rule to a header value: bytes outside printable ASCII, space, '"' and '%' become %XX. */
export function percentEncode(s: string): string {
  let clean = true;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c <= 0x20 || c >= 0x7f || c === 0x22 || c === 0x25) {
      clean = false;
      break;
    }
  }
  if (clean) return s;
  let out = "";
  for (const b of encoder.encode(s)) {
    out += b <= 0x20 || b >= 0x7f || b === 0x22 || b === 0x25 ? "%" + (b < 16 ? "0" : "") + b.toString(16).toUpperCase() : String.fromCharCode(b);
  }
  return out;
}

/**
 * percentDecode reverses percentEncode. A value that is not validly
 * percent-encoded (a producer that sent a literal '%') is kept as sent;
 * one that decodes to bytes that are not UTF-8 is refused.
 */
export function percentDecode(field: string, s: string): string {
  if (!s.includes("%")) return s;
  const bytes: number[] = [];
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x25) {
      const hex = s.slice(i + 1, i + 3);
      if (!/^[0-9A-Fa-f]{2}$/.test(hex)) return s;
      bytes.push(parseInt(hex, 16));
      i += 2;
    } else if (c < 0x80) {
      bytes.push(c);
    } else {
      for (const b of encoder.encode(s[i])) bytes.push(b);
    }
  }
  try {
    return strictDecoder.decode(new Uint8Array(bytes));
  } catch {
    throw new ValidationError(field, "is not valid UTF-8");
  }
}

function line(name: string, value: string): number {
  return name.length + Buffer.byteLength(value) + lineExtra;
}

/**
 * encodeBinary validates ev and returns it as a binary-mode message: one
 * lowercase ce- header per attribute (id, type, subject, time and extensions
 * percent-encoded; source and dataschema verbatim), datacontenttype in
 * content-type, the data as the body, and Nats-Msg-Id.
 */
export function encodeBinary(ev: CloudEvent, maxSize = DefaultMaxSize): Encoded {
  const a = check(ev);
  const b = body(ev);
  const h = newHeaders();
  let size = headerFrame + b.bytes.length;
  const set = (name: string, value: string) => {
    h.set(name, value);
    size += line(name, value);
  };
  set("ce-specversion", "1.0");
  set("ce-id", percentEncode(a.id));
  set("ce-source", a.source);
  set("ce-type", a.type);
  if (a.subject) set("ce-subject", percentEncode(a.subject));
  if (a.time) set("ce-time", percentEncode(a.time));
  if (a.dataschema) set("ce-dataschema", a.dataschema);
  if (b.contentType) set("content-type", b.contentType);
  for (const [name, v] of a.extensions) set("ce-" + name, percentEncode(v));
  set(HeaderMsgID, msgId(a.source, a.id));
  checkSize(size, maxSize);
  validateCatalogData(a.type, b.contentType, ev.data, b.bytes);
  return { headers: h, data: b.bytes, size };
}

/**
 * encodeStructured validates ev and returns it as a structured-mode
 * message (content-type application/cloudevents+json, the JSON event
 * format as the body) with Nats-Msg-Id.
 */
export function encodeStructured(ev: CloudEvent, maxSize = DefaultMaxSize): Encoded {
  const a = check(ev);
  const b = body(ev);
  const doc: Record<string, unknown> = { specversion: "1.0", id: a.id, source: a.source, type: a.type };
  if (a.subject) doc.subject = a.subject;
  if (a.time) doc.time = a.time;
  if (b.contentType) doc.datacontenttype = b.contentType;
  if (a.dataschema) doc.dataschema = a.dataschema;
  for (const [name, v] of a.extensions) doc[name] = v;
  if (ev.data instanceof Uint8Array) doc.data_base64 = Buffer.from(ev.data).toString("base64");
  else if (ev.data !== undefined) doc.data = ev.data;
  const bytes = encoder.encode(JSON.stringify(doc));
  const h = newHeaders();
  h.set("content-type", ContentTypeStructured);
  const id = msgId(a.source, a.id);
  h.set(HeaderMsgID, id);
  const size = headerFrame + line("content-type", ContentTypeStructured) + line(HeaderMsgID, id) + bytes.length;
  checkSize(size, maxSize);
  validateCatalogData(a.type, b.contentType, ev.data, b.bytes);
  return { headers: h, data: bytes, size };
}

/**
 * decode reads a CloudEvent from a NATS message in either mode (header
 * names compared without regard to case; values percent-decoded) and
 * validates it. `data` is the parsed JSON when the content type announces
 * JSON (or is absent) and the body parses, else the body's bytes.
 */
export function decode(h: MsgHdrs | undefined, data: Uint8Array, maxSize = DefaultMaxSize): CloudEvent {
  const fields = new Map<string, string>();
  let size = 0;
  if (h) {
    const keys = h.keys();
    if (keys.length > 0) size = headerFrame;
    for (const k of keys) {
      const vs = h.values(k);
      for (const v of vs) size += line(k, v);
      const name = k.toLowerCase();
      if (!(name.startsWith("ce-") && name.length > 3) && name !== "content-type") continue;
      if (vs.length > 1 || fields.has(name)) {
        throw new ValidationError(`header ${name}`, "given more than once (header names are compared without regard to case)");
      }
      fields.set(name, vs[0] ?? "");
    }
  }
  checkSize(size + data.length, maxSize);
  if (fields.has("content-type") && fields.has("ce-datacontenttype")) {
    throw new ValidationError("datacontenttype", "given twice, as content-type and as ce-datacontenttype: send only content-type");
  }
  const ct = fields.get("content-type") ?? "";
  let ev: CloudEvent;
  const mt = ct.split(";", 1)[0].trim().toLowerCase();
  if (mt.startsWith("application/cloudevents")) {
    if (mt !== ContentTypeStructured) {
      throw new ValidationError("content-type", `${JSON.stringify(ct)} is not supported on NATS: send one event per message as ${ContentTypeStructured}`);
    }
    ev = decodeStructured(data);
  } else if (fields.has("ce-specversion")) {
    const sv = percentDecode("specversion", fields.get("ce-specversion") ?? "");
    if (sv !== "1.0") throw new ValidationError("specversion", `${JSON.stringify(sv)} is not supported, want "1.0"`);
    ev = decodeBinary(fields, data);
  } else if (fields.size === 0 && firstNonSpace(data) === 0x7b) {
    ev = decodeStructured(data);
  } else if (ct === "") {
    throw new ValidationError("specversion", `not a CloudEvent: no ce-specversion header (binary mode) and no content-type header (structured mode needs ${ContentTypeStructured})`);
  } else {
    throw new ValidationError("specversion", `not a CloudEvent: no ce-specversion header (binary mode) and content-type is ${JSON.stringify(ct)}, not ${ContentTypeStructured} (structured mode)`);
  }
  check(ev);
  validateCatalogData(ev.type, ev.datacontenttype, ev.data, ev.data instanceof Uint8Array ? ev.data : undefined);
  return ev;
}

function firstNonSpace(b: Uint8Array): number {
  for (const c of b) {
    if (c !== 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) return c;
  }
  return -1;
}

function decodeBinary(fields: Map<string, string>, data: Uint8Array): CloudEvent {
  const ev: CloudEvent = { specversion: "1.0", id: "", source: "", type: "" };
  for (const [name, value] of fields) {
    const attr = name === "content-type" ? "datacontenttype" : name.slice(3);
    switch (attr) {
      case "specversion":
        break;
      case "datacontenttype":
        if (value.trim() !== "") ev.datacontenttype = value.trim();
        break;
      case "source":
        validateSource(value);
        ev.source = value;
        break;
      case "dataschema":
        ev.dataschema = value;
        break;
      case "id":
      case "type":
        ev[attr] = percentDecode(attr, value);
        break;
      case "subject": {
        const s = percentDecode(attr, value).trim();
        if (s !== "") ev.subject = s;
        break;
      }
      case "time":
        ev.time = percentDecode(attr, value);
        break;
      default:
        checkExtensionName(attr);
        ev[attr] = percentDecode(attr, value);
    }
  }
  if (data.length > 0) ev.data = readData(ev.datacontenttype, data);
  return ev;
}

// readData is the data of a binary-mode event: parsed JSON when its
// content type announces JSON and it parses, else the bytes.
function readData(ct: string | undefined, data: Uint8Array): unknown {
  if (isJSONType(ct)) {
    try {
      return JSON.parse(strictDecoder.decode(data));
    } catch {
      return data;
    }
  }
  return data;
}

function decodeStructured(data: Uint8Array): CloudEvent {
  let doc: unknown;
  try {
    doc = JSON.parse(strictDecoder.decode(data));
  } catch (err) {
    throw new ValidationError("body", `structured event is not a JSON object: ${(err as Error).message}`);
  }
  if (doc === null || typeof doc !== "object" || Array.isArray(doc)) {
    throw new ValidationError("body", "structured event is not a JSON object");
  }
  const o = doc as Record<string, unknown>;
  for (const name of ["specversion", "id", "source", "type"]) {
    if (!(name in o)) throw new ValidationError(name, "required");
    if (typeof o[name] !== "string") throw new ValidationError(name, `must be a JSON string, got ${JSON.stringify(o[name])}`);
  }
  if (o.specversion !== "1.0") throw new ValidationError("specversion", `${JSON.stringify(o.specversion)} is not supported, want "1.0"`);
  const ev: CloudEvent = { specversion: "1.0", id: o.id as string, source: o.source as string, type: o.type as string };
  for (const [k, v] of Object.entries(o)) {
    switch (k) {
      case "specversion":
      case "id":
      case "source":
      case "type":
        break;
      case "data":
        ev.data = v;
        break;
      case "data_base64":
        if (typeof v !== "string") throw new ValidationError("data_base64", "must be a base64 string");
        ev.data = new Uint8Array(Buffer.from(v, "base64"));
        break;
      case "subject":
      case "time":
      case "datacontenttype":
      case "dataschema":
        if (v === null) break;
        if (typeof v !== "string") throw new ValidationError(k, `must be a JSON string, got ${JSON.stringify(v)}`);
        ev[k] = v;
        break;
      default:
        checkExtensionName(k);
        if (v !== null) ev[k] = typeof v === "string" ? v : extensionValue(k, v);
    }
  }
  if ("data" in o && "data_base64" in o) throw new ValidationError("data", "given twice, as data and as data_base64");
  return ev;
}
