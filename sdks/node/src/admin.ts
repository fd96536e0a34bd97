// Plugin administration (docs/protocol.md "Plugin registry"): commands
// through HOOKBUS_COMMANDS answered on Hookbus-Reply-To, and queries.
import { randomBytes } from "node:crypto";
import { Codes, HookbusError, ValidationError, errorMessage } from "./errors.js";
import { encodeBinary, validateName, validateType } from "./event.js";
import type { Client, RequestOptions } from "./client.js";
import { isNoResponders, jsonBody, serviceError } from "./wire.js";

/** Status is a plugin's status. */
export type Status = "registered" | "started" | "restarted" | "stopped" | "held";
/** Mode is how a plugin takes its events. */
export type Mode = "chain" | "notify";
/** Op is a lifecycle command. */
export type Op = "register" | "start" | "restart" | "stop" | "enable" | "delete" | "unregister";

/** Settings are a plugin's runtime settings (docs/protocol.md "Plugin state"). */
export interface Settings {
  step_timeout_ms?: number;
  on_error?: "skip" | "halt" | "fail";
  max_deliver?: number;
  backoff_ms?: number[];
}

/** PluginSpec is a plugin's declaration. */
export interface PluginSpec {
  name: string;
  event: string;
  mode?: Mode;
  priority?: number;
  depends?: { name: string; soft?: boolean }[];
  extra?: Record<string, unknown>;
  owner?: string;
  version?: string;
  settings?: Settings;
}

/** Plugin is a plugin's stored state. */
export interface Plugin extends PluginSpec {
  mode: Mode;
  status: Status;
  settings: Settings;
  created_at: string;
  updated_at: string;
  command_seq: number;
  revision?: number;
}

/** PluginFilter selects plugins to list. */
export interface PluginFilter {
  event?: string;
  status?: Status;
  mode?: Mode;
}

const streamCommands = "HOOKBUS_COMMANDS";
const commandSource = "/hookbus/client";
const reservedPrefixes = ["hookbus-", "hook-"];

/** validatePluginName checks a new plugin's name: a name not starting with hookbus- or hook-. */
export function validatePluginName(name: unknown): asserts name is string {
  validateName("plugin", name);
  for (const p of reservedPrefixes) {
    if (name.startsWith(p)) {
      throw new ValidationError("plugin", `${JSON.stringify(name)}: names starting with ${JSON.stringify(p)} are reserved (the dispatcher's and the hooks' dead-letter subscribers)`, "name");
    }
  }
}

function newToken(): string {
  return randomBytes(16).toString("hex");
}

/**
 * command stores a plugin command in HOOKBUS_COMMANDS (retrying like
 * publish) and waits for the registry's answer; a command stored but not
 * answered in time throws "not_applied" (a registry applies it later).
 */
export async function command(c: Client, op: Op, data: { plugin?: PluginSpec; name?: string; event?: string }, opts: RequestOptions = {}): Promise<Plugin[]> {
  let subject: string;
  let target = "";
  if (op === "register") {
    const spec = data.plugin;
    if (!spec || typeof spec !== "object") throw new ValidationError("plugin", "required", "command");
    validatePluginName(spec.name);
    validateType(spec.event);
    target = spec.name;
    subject = `hookbus.cmd.plugin.register.${spec.name}.${spec.event}`;
  } else if (data.name !== undefined) {
    validateName("plugin", data.name);
    target = data.name;
    subject = `hookbus.cmd.plugin.${op}.${data.name}`;
  } else {
    validateType(data.event);
    subject = `hookbus.cmd.plugin.${op}`;
  }
  const answerTo = target ? `hookbus.answer.plugin.${target}.${newToken()}` : `hookbus.answer.plugin.${newToken()}`;
  const msg = encodeBinary({ id: newToken(), source: commandSource, type: `hookbus.cmd.plugin.${op}`, time: new Date(), data });
  msg.headers.set("Hookbus-Reply-To", answerTo);
  const timeoutMs = opts.timeoutMs ?? c.timeoutMs;
  const end = Date.now() + timeoutMs;
  const sub = c.nc.subscribe(answerTo, { max: 1 });
  try {
    const answer = (async () => {
      for await (const m of sub) return m;
      return undefined;
    })();
    const ack = await c.send(subject, msg, streamCommands, { signal: opts.signal, timeoutMs });
    const left = end - Date.now();
    const m = await raceTimeout(answer, Math.max(left, 0), opts.signal);
    if (!m) {
      throw new HookbusError(Codes.NotApplied, `${op}: command stored, not yet applied (command seq ${ack.seq}; a registry applies it when one runs)`);
    }
    return pluginsOf(m, op);
  } finally {
    sub.unsubscribe();
  }
}

// raceTimeout resolves p's value, or undefined after ms or on abort.
async function raceTimeout<T>(p: Promise<T>, ms: number, signal?: AbortSignal): Promise<T | undefined> {
  let t: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  const stop = new Promise<undefined>((resolve) => {
    t = setTimeout(() => resolve(undefined), ms);
    onAbort = () => resolve(undefined);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
  try {
    return await Promise.race([p, stop]);
  } finally {
    clearTimeout(t);
    if (onAbort) signal?.removeEventListener("abort", onAbort);
  }
}

function pluginsOf(m: import("nats").Msg, what: string): Plugin[] {
  const body = jsonBody(m, what) as { plugins?: Plugin[] | null } | undefined;
  const err = serviceError(m, body);
  if (err) throw err;
  return body?.plugins ?? [];
}

function one(ps: Plugin[]): Plugin {
  if (ps.length !== 1) throw new HookbusError(Codes.Internal, `registry answered ${ps.length} plugins, want 1`);
  return ps[0];
}

/** query asks the registry (hookbus.registry.plugin.get / .list). */
export async function query(c: Client, subject: string, req: unknown, opts: RequestOptions = {}): Promise<Plugin[]> {
  let m;
  try {
    m = await c.request(subject, JSON.stringify(req), opts);
  } catch (err) {
    if (isNoResponders(err)) throw new HookbusError(Codes.Unavailable, `query ${subject}: no registry is running`, { cause: err });
    if (err instanceof HookbusError) throw err;
    throw new HookbusError(Codes.Timeout, `query ${subject}: ${errorMessage(err)}`, { cause: err });
  }
  return pluginsOf(m, `query ${subject}`);
}

/** Admin is the plugin administration a Client offers. */
export const admin = {
  register: async (c: Client, spec: PluginSpec, o?: RequestOptions) => one(await command(c, "register", { plugin: spec }, o)),
  byName: async (c: Client, op: Op, name: string, o?: RequestOptions) => one(await command(c, op, { name }, o)),
  apply: async (c: Client, op: Op, event: string, o?: RequestOptions) => {
    if (op === "register") throw new ValidationError("op", "register is not a bulk operation", "command");
    return command(c, op, { event }, o);
  },
  get: async (c: Client, name: string, o?: RequestOptions) => {
    validateName("plugin", name);
    return one(await query(c, "hookbus.registry.plugin.get", { name }, o));
  },
  list: (c: Client, f: PluginFilter = {}, o?: RequestOptions) => query(c, "hookbus.registry.plugin.list", f, o),
};
