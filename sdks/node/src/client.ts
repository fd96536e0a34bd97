// Client: publish, call, and the request plumbing every part shares.
import { headers as newHeaders, type Msg, type MsgHdrs, type NatsConnection } from "nats";
import { Codes, HookbusError, ValidationError, aborted, errorMessage } from "./errors.js";
import { type CloudEvent, DefaultMaxSize, encodeBinary, encodeStructured, type Encoded, validateType } from "./event.js";
import { Publisher, type PublisherOptions } from "./publisher.js";
import { admin, type Op, type Plugin, type PluginFilter, type PluginSpec } from "./admin.js";
import { type DeadLetter, deadLetters, replay } from "./dlq.js";
import { AuthStore, type AuthRotation, authRequest } from "./auth.js";
import { serve, type PluginDef, type ServeOptions } from "./worker.js";
import {
  AttemptTimeout,
  Backoff,
  isNoResponders,
  jsonBody,
  natsCode,
  parsePubAck,
  type PublishAck,
  retryable,
  serviceError,
  sleep,
  StreamRefusal,
} from "./wire.js";

export type { PublishAck } from "./wire.js";

/** StreamEvents is the stream of published events. */
export const StreamEvents = "HOOKBUS_EVENTS";
/** MaxBatch is the most events one publishBatch stores (JetStream's atomic batch limit). */
export const MaxBatch = 1000;

const expectedStreamHeader = "Nats-Expected-Stream";
/** attemptTimeoutMs bounds one attempt of a publish: the wait for one acknowledgement. */
export const attemptTimeoutMs = 5000;
const decoder = new TextDecoder();
const encoder = new TextEncoder();

/** ClientOptions configure a Client. */
export interface ClientOptions {
  /** bound of a request or publish without its own timeout (default 30 000 ms) */
  timeoutMs?: number;
  /** the longest pause between two attempts of a publish (default 2 000 ms) */
  retryWaitMs?: number;
  /** the largest encoded event (data plus headers) published or handled (default 1 MiB) */
  maxEventSize?: number;
}

/** RequestOptions bound one operation. */
export interface RequestOptions {
  signal?: AbortSignal;
  /** default: the client's timeoutMs */
  timeoutMs?: number;
}

/** PublishOptions are a publish's. */
export interface PublishOptions extends RequestOptions {
  /** structured mode (one JSON document) instead of binary mode */
  structured?: boolean;
}

/** BatchAck acknowledges an atomic batch: its events are stored at seq last-count+1 to last. */
export interface BatchAck {
  stream: string;
  last: number;
  count: number;
}

/** TraceEntry is one step of a chain run. */
export interface TraceEntry {
  plugin: string;
  outcome: "continued" | "halted" | "skipped" | "halted_on_error" | "failed" | string;
  duration_ms: number;
  error?: string;
}

/** ChainResult is a chain run's answer (docs/protocol.md "Calls"). */
export interface ChainResult {
  event_id: string;
  event_source: string;
  event_type: string;
  state: unknown;
  halted: boolean;
  halted_by?: string;
  trace: TraceEntry[];
  error?: { code: string; message: string };
}

/** CallOptions are a call's. */
export interface CallOptions extends RequestOptions {
  /** top-level fields of the data plugins may not change */
  private?: string[];
}

/**
 * Client is a connection to Hookbus over a NATS connection the caller
 * owns and closes (with its inboxPrefix, under users).
 */
export class Client {
  readonly nc: NatsConnection;
  readonly timeoutMs: number;
  readonly retryWaitMs: number;
  readonly maxEventSize: number;
  private readonly subjects = new Map<string, string>();

  constructor(nc: NatsConnection, opts: ClientOptions = {}) {
    if (!nc) throw new ValidationError("nc", "a NATS connection is required", "client");
    for (const k of ["timeoutMs", "retryWaitMs", "maxEventSize"] as const) {
      const v = opts[k];
      if (v !== undefined && !(Number.isFinite(v) && v > 0)) throw new ValidationError(k, `${v} must be a positive number`, "client option");
    }
    this.nc = nc;
    this.timeoutMs = opts.timeoutMs ?? 30_000;
    this.retryWaitMs = opts.retryWaitMs ?? 2_000;
    this.maxEventSize = opts.maxEventSize ?? DefaultMaxSize;
  }

  /** eventSubject is hookbus.event.<type>, kept for the types seen. */
  eventSubject(type: string): string {
    let s = this.subjects.get(type);
    if (s === undefined) {
      validateType(type);
      s = `hookbus.event.${type}`;
      if (this.subjects.size < 256) this.subjects.set(type, s);
    }
    return s;
  }

  /** encode validates ev and returns its message in the mode asked for. */
  encode(ev: CloudEvent, structured?: boolean): Encoded {
    return structured ? encodeStructured(ev, this.maxEventSize) : encodeBinary(ev, this.maxEventSize);
  }

  /**
   * request sends a core request and waits for its answer, bounded by
   * timeoutMs and signal (aborted: code "aborted"; no answer: "timeout").
   */
  async request(subject: string, data: Uint8Array | string, opts: RequestOptions & { headers?: MsgHdrs } = {}): Promise<Msg> {
    const signal = opts.signal;
    if (signal?.aborted) throw aborted(signal, subject);
    const payload = typeof data === "string" ? encoder.encode(data) : data;
    const p = this.nc.request(subject, payload, { timeout: opts.timeoutMs ?? this.timeoutMs, headers: opts.headers });
    if (!signal) return p;
    let onAbort: (() => void) | undefined;
    const stop = new Promise<never>((_, reject) => {
      onAbort = () => reject(aborted(signal, subject));
      signal.addEventListener("abort", onAbort, { once: true });
    });
    try {
      return await Promise.race([p, stop]);
    } finally {
      signal.removeEventListener("abort", onAbort!);
      p.catch(() => {}); // settled later, after an abort: nobody waits for it
    }
  }

  /**
   * send publishes a message until a stream (expected: stream)
   * acknowledges it, retrying passing failures with the same headers
   * (Nats-Msg-Id) until timeoutMs or signal; it is the one place that
   * decides what is retried.
   */
  async send(subject: string, msg: { headers: MsgHdrs; data: Uint8Array }, stream: string, opts: RequestOptions = {}): Promise<PublishAck> {
    msg.headers.set(expectedStreamHeader, stream);
    const end = Date.now() + (opts.timeoutMs ?? this.timeoutMs);
    const b = new Backoff(50, this.retryWaitMs);
    for (let attempt = 1; ; attempt++) {
      let err: unknown;
      try {
        const left = end - Date.now();
        if (left <= 0) throw new AttemptTimeout("timed out");
        const m = await this.request(subject, msg.data, { headers: msg.headers, timeoutMs: Math.min(attemptTimeoutMs, left), signal: opts.signal });
        return parsePubAck(m);
      } catch (e) {
        err = e;
      }
      if (err instanceof HookbusError && err.code === Codes.Aborted) throw err;
      if (!retryable(err)) {
        throw new HookbusError(Codes.NotStored, `${subject}: not stored: ${errorMessage(err)}`, { cause: err });
      }
      const pause = Math.min(b.next(), end - Date.now());
      if (pause <= 0 || !(await sleep(pause, opts.signal))) {
        if (opts.signal?.aborted) throw aborted(opts.signal, subject);
        throw new HookbusError(
          Codes.NotStored,
          `${subject}: not stored after ${attempt} attempt(s): ${errorMessage(err)} (is Hookbus running and the topology in place?)`,
          { cause: err },
        );
      }
    }
  }

  /**
   * publish stores ev in HOOKBUS_EVENTS (binary mode unless structured)
   * and returns JetStream's acknowledgement. An invalid event throws a
   * ValidationError and is not sent; passing failures are retried with the
   * same Nats-Msg-Id (stored once) until timeoutMs or signal; the others,
   * and running out of time, throw code "not_stored".
   */
  async publish(ev: CloudEvent, opts: PublishOptions = {}): Promise<PublishAck> {
    const subject = this.eventSubject(ev?.type);
    const msg = this.encode(ev, opts.structured);
    return this.send(subject, msg, StreamEvents, opts);
  }

  /**
   * publishBatch stores 1 to MaxBatch events all or nothing, in order
   * (JetStream's atomic batch). An invalid event throws a ValidationError
   * and nothing is sent; an event already stored refuses the whole batch
   * (code "batch_duplicate"); unanswered batches are sent again under a new
   * batch id until timeoutMs or signal; other failures: "not_stored".
   */
  async publishBatch(evs: CloudEvent[], opts: PublishOptions = {}): Promise<BatchAck> {
    if (!Array.isArray(evs) || evs.length === 0 || evs.length > MaxBatch) {
      throw new ValidationError("batch", `${Array.isArray(evs) ? evs.length : 0} events: a batch holds 1 to ${MaxBatch}`);
    }
    const msgs = evs.map((ev, i) => {
      try {
        const subject = this.eventSubject(ev?.type);
        const m = this.encode(ev, opts.structured);
        m.headers.set(expectedStreamHeader, StreamEvents);
        return { subject, ...m };
      } catch (err) {
        if (err instanceof ValidationError) {
          throw new ValidationError(err.field, `${err.reason} (batch event ${i}, id ${JSON.stringify(ev?.id)})`, err.of);
        }
        throw err;
      }
    });
    const end = Date.now() + (opts.timeoutMs ?? this.timeoutMs);
    const b = new Backoff(50, this.retryWaitMs);
    let unanswered = false;
    for (let attempt = 1; ; attempt++) {
      let err: unknown;
      try {
        return await this.batchOnce(msgs, Math.min(attemptTimeoutMs, Math.max(1, end - Date.now())), opts.signal);
      } catch (e) {
        err = e;
      }
      if (err instanceof HookbusError && err.code === Codes.Aborted) throw err;
      if (err instanceof StreamRefusal && err.errCode === 10201) {
        throw new HookbusError(
          Codes.BatchDuplicate,
          unanswered
            ? `an event of the batch is already stored: an earlier attempt got no answer and may have stored the whole batch (${err.message})`
            : `an event of the batch is already stored: nothing of the batch was stored (${err.message})`,
          { cause: err },
        );
      }
      if (!retryable(err)) throw new HookbusError(Codes.NotStored, `batch of ${msgs.length}: not stored: ${errorMessage(err)}`, { cause: err });
      unanswered ||= !isNoResponders(err);
      const pause = Math.min(b.next(), end - Date.now());
      if (pause <= 0 || !(await sleep(pause, opts.signal))) {
        if (opts.signal?.aborted) throw aborted(opts.signal, "batch");
        throw new HookbusError(Codes.NotStored, `batch of ${msgs.length}: not stored after ${attempt} attempt(s): ${errorMessage(err)}`, { cause: err });
      }
    }
  }

  // batchOnce sends the messages as one atomic batch under a new id: all
  // but the last without a reply (the server answers only the commit),
  // the last as the request that commits it.
  private async batchOnce(msgs: { subject: string; headers: MsgHdrs; data: Uint8Array }[], timeoutMs: number, signal?: AbortSignal): Promise<BatchAck> {
    const id = crypto.randomUUID().replaceAll("-", "");
    msgs.forEach((m, i) => {
      m.headers.set("Nats-Batch-Id", id);
      m.headers.set("Nats-Batch-Sequence", String(i + 1));
      m.headers.delete("Nats-Batch-Commit");
    });
    const last = msgs[msgs.length - 1];
    last.headers.set("Nats-Batch-Commit", "1");
    for (const m of msgs.slice(0, -1)) this.nc.publish(m.subject, m.data, { headers: m.headers });
    const reply = await this.request(last.subject, last.data, { headers: last.headers, timeoutMs, signal });
    let r: { stream?: string; seq?: number; count?: number; error?: { code: number; err_code: number; description: string } };
    try {
      r = JSON.parse(decoder.decode(reply.data));
    } catch {
      throw new HookbusError(Codes.NotStored, `batch acknowledgement ${JSON.stringify(decoder.decode(reply.data))} is not JSON`);
    }
    if (r.error) throw new StreamRefusal(r.error.code, r.error.err_code, r.error.description);
    if (r.count !== msgs.length) throw new HookbusError(Codes.NotStored, `batch acknowledged with ${r.count} events, sent ${msgs.length}`);
    return { stream: r.stream ?? "", last: r.seq ?? 0, count: r.count };
  }

  /** publisher returns a Publisher on this client's connection, size limit and retry wait. */
  publisher(opts?: PublisherOptions): Publisher {
    return new Publisher(this, opts);
  }

  /**
   * call runs the chain of ev's type now, with ev's data as the initial
   * state, and returns the result. An invalid event throws a
   * ValidationError, no dispatcher code "no_dispatcher"; a chain that
   * failed throws a HookbusError with the service's code and the result so
   * far in its `result`.
   */
  async call(ev: CloudEvent, opts: CallOptions = {}): Promise<ChainResult> {
    let e = ev;
    if (opts.private && opts.private.length > 0) {
      for (const f of opts.private) {
        if (typeof f !== "string" || f === "" || f.includes(",")) throw new ValidationError("privatefields", `${JSON.stringify(f)} is not a field name`);
      }
      e = { ...ev, privatefields: opts.private.join(",") };
    }
    validateType(e?.type);
    const subject = `hookbus.call.${e.type}`;
    const msg = encodeBinary(e, this.maxEventSize);
    let answer: Msg;
    try {
      answer = await this.request(subject, msg.data, { headers: msg.headers, timeoutMs: opts.timeoutMs, signal: opts.signal });
    } catch (err) {
      if (isNoResponders(err)) {
        throw new HookbusError(Codes.NoDispatcher, `call ${e.type}: no dispatcher is running (hookbus serve runs one)`, { cause: err });
      }
      if (natsCode(err) === "TIMEOUT") throw new HookbusError(Codes.Timeout, `call ${e.type} ${e.id}: no answer in time`, { cause: err });
      throw err;
    }
    const res = jsonBody(answer, `call ${e.type}`) as ChainResult;
    const failed = serviceError(answer, res);
    if (failed) {
      failed.result = res;
      throw failed;
    }
    return res;
  }
  /** register stores spec as a plugin (an upsert by name, status kept) and returns its state. */
  register(spec: PluginSpec, opts?: RequestOptions): Promise<Plugin> {
    return admin.register(this, spec, opts);
  }
  /** start runs a registered or held plugin (codes not_found, stopped, dependency_not_running, not_applied, not_stored). */
  start(name: string, opts?: RequestOptions): Promise<Plugin> {
    return admin.byName(this, "start", name, opts);
  }
  /** restart is start, leaving the plugin in status restarted. */
  restart(name: string, opts?: RequestOptions): Promise<Plugin> {
    return admin.byName(this, "restart", name, opts);
  }
  /** stop switches a plugin off until enable, from any status; its hard dependents are held. */
  stop(name: string, opts?: RequestOptions): Promise<Plugin> {
    return admin.byName(this, "stop", name, opts);
  }
  /** enable takes a stopped plugin out of stopped (started, or held); on another it changes nothing. */
  enable(name: string, opts?: RequestOptions): Promise<Plugin> {
    return admin.byName(this, "enable", name, opts);
  }
  /** delete takes the plugin out of running, back to registered; it stays registered. */
  delete(name: string, opts?: RequestOptions): Promise<Plugin> {
    return admin.byName(this, "delete", name, opts);
  }
  /** unregister removes a plugin and holds its hard dependents; it returns the plugin's last state. */
  unregister(name: string, opts?: RequestOptions): Promise<Plugin> {
    return admin.byName(this, "unregister", name, opts);
  }
  /** apply performs op on every plugin of event, all or nothing, in dependency order. */
  apply(op: Exclude<Op, "register">, event: string, opts?: RequestOptions): Promise<Plugin[]> {
    return admin.apply(this, op, event, opts);
  }
  /** get returns one plugin's stored state (code not_found). */
  get(name: string, opts?: RequestOptions): Promise<Plugin> {
    return admin.get(this, name, opts);
  }
  /** list returns the plugins matching filter, sorted by event, priority and name. */
  list(filter?: PluginFilter, opts?: RequestOptions): Promise<Plugin[]> {
    return admin.list(this, filter, opts);
  }

  /** deadLetters yields the dead letters of subscriber (all when absent), oldest first. */
  deadLetters(subscriber?: string, opts?: RequestOptions): AsyncGenerator<DeadLetter> {
    return deadLetters(this, subscriber, opts);
  }
  /** replay stores dead letter seq's event again for its subscriber alone, then deletes the dead letter. */
  replay(seq: number, opts?: RequestOptions): Promise<void> {
    return replay(this, seq, opts);
  }

  /**
   * serve runs a plugin worker until opts.signal aborts (see worker.ts):
   * registers and starts the plugin, answers its chain steps or takes its
   * notify deliveries, then drains and applies the exit action.
   */
  serve(plugin: PluginDef, opts?: ServeOptions): Promise<void> {
    return serve(this, plugin, opts);
  }

  /** authStore returns the auth store of the named context ("" or absent: the default context). */
  authStore(context = ""): AuthStore {
    return new AuthStore(this, context);
  }
  /** rotateAuthKeys re-encrypts every stored value with the service's newest key (give a long timeoutMs). */
  async rotateAuthKeys(opts?: RequestOptions): Promise<AuthRotation> {
    return (await authRequest(this, "rotate", {}, opts)) as unknown as AuthRotation;
  }

  /**
   * pushDevice stores data as a push to device id (stream
   * HOOKBUS_DEVICE_PUSHES): JSON values reach the device as push text
   * frames, a Uint8Array as a binary frame; it waits at most a day for a
   * connection.
   */
  async pushDevice(id: string, data: unknown, opts?: RequestOptions): Promise<PublishAck> {
    checkDeviceId(id);
    const body = data instanceof Uint8Array ? data : encoder.encode(JSON.stringify(data));
    const h = newHeaders();
    h.set("Nats-Msg-Id", crypto.randomUUID());
    return this.send(`hookbus.device.${id}.out`, { headers: h, data: body }, "HOOKBUS_DEVICE_PUSHES", opts);
  }
  /** stopDevice closes device id's socket wherever a gateway holds it (close 4003 with reason, cut to 120 bytes by the gateway); a device not connected is not affected. */
  async stopDevice(id: string, reason: string): Promise<void> {
    checkDeviceId(id);
    this.nc.publish(`hookbus.device.${id}.ctl.stop`, encoder.encode(String(reason ?? "")));
    await this.nc.flush();
  }
}

function checkDeviceId(id: unknown): asserts id is string {
  if (typeof id !== "string" || !/^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/.test(id)) {
    throw new ValidationError("device", `${JSON.stringify(id)}: device ids are [A-Za-z0-9][A-Za-z0-9_-]{0,63}`, "name");
  }
}
