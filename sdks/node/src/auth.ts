// The auth store (docs/protocol.md "Persistence"): BaileysEx's credentials
// and keys of one context, through the persistence service.
import { Codes, HookbusError, ValidationError } from "./errors.js";
import type { Client, RequestOptions } from "./client.js";
import { isNoResponders, jsonBody, serviceError } from "./wire.js";

/** Credentials are a context's stored credentials and their revision. */
export interface Credentials {
  value: Uint8Array;
  /** identifies the stored version (increasing, not consecutive): pass it to saveCredentialsIf */
  revision: number;
}

/** AuthRotation reports a key rotation. */
export interface AuthRotation {
  key_id: string;
  rotated: number;
  unchanged: number;
  retired_key_ids: string[];
}

const maxContextLen = 256;
const maxIds = 10_000;

function b64(v: Uint8Array): string {
  return Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString("base64");
}

function bytes(s: unknown): Uint8Array {
  return new Uint8Array(Buffer.from(typeof s === "string" ? s : "", "base64"));
}

function checkType(type: unknown): asserts type is string {
  if (typeof type !== "string" || !/^[A-Za-z0-9_-]{1,64}$/.test(type)) {
    throw new ValidationError("key type", `${JSON.stringify(type)}: want [A-Za-z0-9_-]{1,64}`, "auth request");
  }
}

function checkIds(ids: unknown): asserts ids is string[] {
  if (!Array.isArray(ids)) throw new ValidationError("ids", "must be an array of strings", "auth request");
  if (ids.length > maxIds) throw new ValidationError("ids", `${ids.length} ids: at most ${maxIds} per request`, "auth request");
  for (const id of ids) {
    if (typeof id !== "string" || id === "" || Buffer.byteLength(id) > 1024 || !id.isWellFormed()) {
      throw new ValidationError("id", `${JSON.stringify(id)}: ids are UTF-8 strings of 1 to 1024 bytes`, "auth request");
    }
  }
}

/** authRequest sends one request to the persistence service and returns its answer. */
export async function authRequest(c: Client, op: string, req: Record<string, unknown>, opts: RequestOptions = {}): Promise<Record<string, unknown>> {
  const subject = `hookbus.auth.${op}`;
  let m;
  try {
    m = await c.request(subject, JSON.stringify(req), opts);
  } catch (err) {
    if (isNoResponders(err)) throw new HookbusError(Codes.Unavailable, `${subject}: no persistence service is running (hookbus serve runs one)`, { cause: err });
    if (err instanceof HookbusError) throw err;
    throw new HookbusError(Codes.Timeout, `${subject}: no answer in time`, { cause: err });
  }
  const body = jsonBody(m, subject) as Record<string, unknown>;
  const failed = serviceError(m, body);
  if (failed) throw failed;
  return body ?? {};
}

/**
 * AuthStore reads and writes the auth credentials and keys of one context
 * with BaileysEx's semantics: credentials loaded and saved whole; keys
 * addressed by type and id, read and written in batches; a key that is not
 * stored is simply absent. Values are opaque bytes, encrypted at rest by
 * the service.
 */
export class AuthStore {
  readonly context: string;

  constructor(
    private readonly c: Client,
    context = "",
  ) {
    if (typeof context !== "string" || Buffer.byteLength(context) > maxContextLen || !context.isWellFormed()) {
      throw new ValidationError("context", `at most ${maxContextLen} bytes of UTF-8`, "auth request");
    }
    this.context = context;
  }

  private req(op: string, fields: Record<string, unknown>, o?: RequestOptions) {
    return authRequest(this.c, op, { context: this.context, ...fields }, o);
  }

  /** loadCredentials returns the context's credentials; none stored: code "not_found"; undecryptable: "decrypt". */
  async loadCredentials(o?: RequestOptions): Promise<Credentials> {
    const r = await this.req("creds.get", {}, o);
    return { value: bytes(r.value), revision: Number(r.revision) };
  }

  /** saveCredentials replaces the credentials, whatever is stored, and returns the new revision. */
  async saveCredentials(value: Uint8Array, o?: RequestOptions): Promise<number> {
    const r = await this.req("creds.save", { value: b64(value ?? new Uint8Array(0)) }, o);
    return Number(r.revision);
  }

  /**
   * saveCredentialsIf replaces the credentials only if the stored revision
   * is revision (0: only if none are stored) and returns the new one;
   * otherwise code "conflict" and nothing is written.
   */
  async saveCredentialsIf(value: Uint8Array, revision: number, o?: RequestOptions): Promise<number> {
    if (!Number.isInteger(revision) || revision < 0) throw new ValidationError("expect_revision", `${revision} is not a revision`, "auth request");
    const r = await this.req("creds.save", { value: b64(value ?? new Uint8Array(0)), expect_revision: revision }, o);
    return Number(r.revision);
  }

  /** loadKeys returns the stored keys of type among ids, by id; ids not stored are absent. */
  async loadKeys(type: string, ids: string[], o?: RequestOptions): Promise<Map<string, Uint8Array>> {
    checkType(type);
    checkIds(ids);
    const r = await this.req("keys.get", { type, ids }, o);
    const out = new Map<string, Uint8Array>();
    for (const [id, v] of Object.entries((r.keys as Record<string, string>) ?? {})) out.set(id, bytes(v));
    return out;
  }

  /**
   * saveKeys writes a batch of keys, type -> id -> value: null deletes the
   * key, an empty Uint8Array stores an empty value. Not atomic: after an
   * error some keys may be written; saving the same batch again is harmless.
   */
  async saveKeys(keys: Record<string, Record<string, Uint8Array | null>>, o?: RequestOptions): Promise<void> {
    const wire: Record<string, Record<string, string | null>> = {};
    let n = 0;
    for (const [type, byId] of Object.entries(keys ?? {})) {
      checkType(type);
      const ids = Object.keys(byId);
      checkIds(ids);
      wire[type] = {};
      for (const id of ids) {
        const v = byId[id];
        if (v !== null && !(v instanceof Uint8Array)) throw new ValidationError("value", `key ${type}/${id}: want a Uint8Array or null`, "auth request");
        wire[type][id] = v === null ? null : b64(v);
        n++;
      }
    }
    if (n > maxIds) throw new ValidationError("keys", `${n} keys: at most ${maxIds} per request`, "auth request");
    await this.req("keys.set", { keys: wire }, o);
  }

  /** deleteKeys deletes the keys of type with the given ids; ids not stored are ignored. */
  async deleteKeys(type: string, ids: string[], o?: RequestOptions): Promise<void> {
    checkType(type);
    checkIds(ids);
    await this.req("keys.delete", { type, ids }, o);
  }

  /** listKeys returns the ids stored under type, sorted bytewise. */
  async listKeys(type: string, o?: RequestOptions): Promise<string[]> {
    checkType(type);
    const r = await this.req("keys.list", { type }, o);
    return (r.ids as string[]) ?? [];
  }

  /** clear deletes the context's credentials and every key, and returns how many entries it removed. */
  async clear(o?: RequestOptions): Promise<number> {
    const r = await this.req("context.clear", {}, o);
    return Number(r.deleted);
  }
}
