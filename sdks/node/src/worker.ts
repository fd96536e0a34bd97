// Plugin workers (docs/protocol.md "Plugin workers"): serve runs a chain
// or notify plugin until its signal aborts, then drains.
import type { Consumer, ConsumerInfo, JsMsg, Msg, NatsConnection, Subscription } from "nats";
import { Codes, HookbusError, ValidationError, errorMessage, isPermanent } from "./errors.js";
import { type CloudEvent, decode, validateType } from "./event.js";
import type { Client } from "./client.js";
import { admin, type Plugin, type PluginSpec, type Settings, type Status, validatePluginName } from "./admin.js";
import { newDeadLetter, publishDeadLetter, storeOnce } from "./dlq.js";
import { Backoff, headerValue, sleep, within } from "./wire.js";

/** Step is one chain step sent to a plugin worker. */
export interface Step {
  /** the event the chain runs for; its data is the current state, as the previous plugins left it */
  event: CloudEvent;
  /** the 1-based position of the step in the chain */
  number: number;
  /** how often the dispatcher has run this event's chain (more than 1 after a dispatcher crash: be idempotent) */
  attempt: number;
  /** aborted at the plugin's step timeout: the dispatcher no longer waits after it */
  signal: AbortSignal;
}

/** StepResult is a chain handler's answer. */
export interface StepResult {
  action: "continue" | "halt";
  /** the new state; absent keeps the state unchanged */
  state?: unknown;
}

/** continueWith passes state (absent: unchanged) to the next plugin. */
export function continueWith(state?: unknown): StepResult {
  return state === undefined ? { action: "continue" } : { action: "continue", state };
}

/** halt ends the chain: state (absent: the current one) becomes the result. */
export function halt(state?: unknown): StepResult {
  return state === undefined ? { action: "halt" } : { action: "halt", state };
}

/** Delivery is one delivery of an event to a notify plugin. */
export interface Delivery {
  /** the published event, decoded and validated */
  event: CloudEvent;
  /** 1 on the first delivery of the event to this plugin */
  attempt: number;
  /** the plugin's max_deliver: a failure on this attempt dead-letters the event */
  maxDeliver: number;
  /** hookbus.event.<type>, or hookbus.replay.<plugin> for an event resent from the dead letters */
  subject: string;
  /** the event's sequence in HOOKBUS_EVENTS */
  streamSeq: number;
  /** aborted when serve's drain timeout has passed */
  signal: AbortSignal;
  /** tells JetStream the handler is still working (serve already does so while it runs) */
  inProgress(): void;
}

/** PluginDef is what serve runs: a declaration, one handler, and lifecycle callbacks. */
export interface PluginDef {
  /** registered (an upsert by name) when serve starts; mode follows from the handler */
  spec: PluginSpec;
  /** answers chain steps: return continueWith(state) or halt(state); throwing answers {"error": message} */
  chain?: (step: Step) => StepResult | Promise<StepResult>;
  /** takes notify deliveries: resolving acks; throwing retries after the backoff, dead-letters at max_deliver, or at once if permanent(err) */
  notify?: (d: Delivery) => void | Promise<void>;
  /** called with the plugin's new state for each lifecycle change while serve runs, one at a time */
  onRegister?: (p: Plugin) => void;
  onStart?: (p: Plugin) => void;
  onRestart?: (p: Plugin) => void;
  onStop?: (p: Plugin) => void;
  onHeld?: (p: Plugin) => void;
  onUnregister?: (p: Plugin) => void;
}

/** Logger takes serve's log lines (any of console's methods). */
export interface Logger {
  debug?: (msg: string, fields?: Record<string, unknown>) => void;
  info?: (msg: string, fields?: Record<string, unknown>) => void;
  warn?: (msg: string, fields?: Record<string, unknown>) => void;
  error?: (msg: string, fields?: Record<string, unknown>) => void;
}

/** ExitAction is what serve does to the plugin's status when it returns. */
export type ExitAction = "leave" | "deactivate" | "stop" | "unregister";

/** ServeOptions configure serve. */
export interface ServeOptions {
  /** aborting it drains the worker and resolves serve */
  signal?: AbortSignal;
  /** handlers at once (default 8) */
  concurrency?: number;
  /** how long serve waits for handlers once signal aborts before aborting theirs (default 30 000 ms) */
  drainTimeoutMs?: number;
  /** default "leave" */
  exitAction?: ExitAction;
  logger?: Logger;
  /** called once the plugin is registered (and started unless stopped or held), with its state */
  onReady?: (p: Plugin) => void;
  /**
   * false leaves registering and starting to an operator (hookbus plugin
   * register/start): serve waits for the plugin to exist and serves it as
   * it is. Default true: serve registers the declaration and starts it.
   */
  register?: boolean;
}

const defaults: Required<Settings> = { step_timeout_ms: 2000, on_error: "skip", max_deliver: 5, backoff_ms: [1000, 5000, 30000] };
const cancelGraceMs = 2000;
const exitTimeoutMs = 10_000;
const dlqTimeoutMs = 30_000;
const running = (s?: Status) => s === "started" || s === "restarted";
const encoder = new TextEncoder();

/**
 * serve runs a plugin worker until opts.signal aborts: it subscribes to
 * its chain steps first (chain), registers the declaration, starts the
 * plugin unless it is stopped or held, answers its steps or takes its
 * notify deliveries with at most `concurrency` handlers, follows its
 * lifecycle, and at the end drains and applies the exit action. It
 * resolves after the drain; it rejects on an invalid plugin, a refused
 * registration or start, handlers that ignored their aborted signal
 * (code "handlers_abandoned"), or a failed exit action. NATS or the
 * registry not answering is waited out.
 */
export async function serve(c: Client, plugin: PluginDef, opts: ServeOptions = {}): Promise<void> {
  const w = new Worker(c, plugin, opts);
  return w.run();
}

class Worker {
  private readonly spec: PluginSpec;
  private readonly name: string;
  private readonly concurrency: number;
  private readonly drainTimeoutMs: number;
  private readonly exitAction: ExitAction;
  private readonly log: Required<Logger>;
  private readonly signal: AbortSignal;
  private readonly opts: ServeOptions;
  /** aborted once the drain timeout has passed: the handlers' signal */
  private readonly handlerAbort = new AbortController();
  private readonly stopWatch = new AbortController();
  private busy = 0;
  private readonly handlers = new Set<Promise<void>>();
  private readonly slotWaiters: (() => void)[] = [];
  private state?: Plugin;
  private seq = 0;
  private removed = false;
  private wantStart = false;
  private changed: () => void = () => {};
  private changedP: Promise<void>;
  private starting?: Promise<void>;
  private stepsClosed = false;
  private readonly waitingSteps: Msg[] = [];

  constructor(
    private readonly c: Client,
    private readonly p: PluginDef,
    opts: ServeOptions,
  ) {
    if (!p || typeof p !== "object" || !p.spec) throw new ValidationError("spec", "required", "plugin");
    if (!p.chain === !p.notify) throw new ValidationError("handler", "set exactly one of chain and notify", "plugin");
    const mode = p.spec.mode ?? (p.notify ? "notify" : "chain");
    if (mode === "chain" && !p.chain) throw new ValidationError("mode", `${p.spec.name}: mode chain needs a chain handler`, "plugin");
    if (mode === "notify" && !p.notify) throw new ValidationError("mode", `${p.spec.name}: mode notify needs a notify handler`, "plugin");
    validatePluginName(p.spec.name);
    validateType(p.spec.event);
    this.spec = { ...p.spec, mode };
    this.name = p.spec.name;
    const n = opts.concurrency ?? 8;
    if (!Number.isInteger(n) || n < 1) throw new ValidationError("concurrency", `${n} must be a positive integer`, "serve option");
    this.concurrency = n;
    const d = opts.drainTimeoutMs ?? 30_000;
    if (!(Number.isFinite(d) && d >= 0)) throw new ValidationError("drainTimeoutMs", `${d} must be a number of ms`, "serve option");
    this.drainTimeoutMs = d;
    this.exitAction = opts.exitAction ?? "leave";
    if (!["leave", "deactivate", "stop", "unregister"].includes(this.exitAction)) {
      throw new ValidationError("exitAction", `${JSON.stringify(this.exitAction)}: want leave, deactivate, stop or unregister`, "serve option");
    }
    const l = opts.logger ?? {};
    const none = () => {};
    const bind = (f?: (m: string, x?: Record<string, unknown>) => void) => (f ? (m: string, x?: Record<string, unknown>) => f.call(l, `${this.name}: ${m}`, x) : none);
    this.log = { debug: bind(l.debug), info: bind(l.info), warn: bind(l.warn), error: bind(l.error) };
    this.signal = opts.signal ?? new AbortController().signal;
    this.opts = opts;
    this.changedP = new Promise((r) => (this.changed = r));
  }

  private get nc(): NatsConnection {
    return this.c.nc;
  }

  private settings(): Required<Settings> {
    const s = this.state?.settings ?? this.spec.settings ?? {};
    return {
      step_timeout_ms: s.step_timeout_ms || defaults.step_timeout_ms,
      on_error: s.on_error || defaults.on_error,
      max_deliver: s.max_deliver || defaults.max_deliver,
      backoff_ms: s.backoff_ms && s.backoff_ms.length > 0 ? s.backoff_ms : defaults.backoff_ms,
    };
  }

  private event(): string {
    return this.state?.event ?? this.spec.event;
  }

  private isRunning(): boolean {
    return !this.removed && running(this.state?.status);
  }

  // setState records a state; every waiter on a change wakes.
  private setState(p: Plugin, seq: number, removed: boolean): void {
    this.state = p;
    this.seq = seq;
    this.removed = removed;
    if (removed || p.status !== "registered") this.wantStart = false;
    const wake = this.changed;
    this.changedP = new Promise((r) => (this.changed = r));
    wake();
  }

  private update(p: Plugin): void {
    if (p.command_seq < this.seq) return;
    this.setState(p, p.command_seq, false);
  }

  /** untilChange resolves at the next state change or when signal aborts. */
  private untilChange(signal: AbortSignal): Promise<void> {
    if (signal.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        signal.removeEventListener("abort", done);
        resolve();
      };
      signal.addEventListener("abort", done, { once: true });
      void this.changedP.then(done);
    });
  }

  async run(): Promise<void> {
    await this.watchLifecycle();
    let sub: Subscription | undefined;
    try {
      if (this.spec.mode === "chain") sub = await this.subscribeSteps();
      try {
        await this.retryStart("register and start", () => (this.opts.register === false ? this.lookUp() : this.registerAndStart()));
      } catch (err) {
        if (!this.signal.aborted) {
          sub?.unsubscribe();
          this.stepsClosed = true;
          await this.waitHandlers();
          throw err;
        }
      }
      this.log.info("serving", { mode: this.spec.mode, event: this.spec.event, status: this.state?.status });
      if (this.state && !this.signal.aborted) this.opts.onReady?.(this.state);
      if (sub) {
        await this.untilAborted();
        // Leave the chain first (the dispatcher stops sending steps), then
        // answer what is still on its way.
        let exitErr: unknown;
        try {
          await this.exit();
        } catch (err) {
          exitErr = err;
        }
        await this.drainSteps(sub);
        await this.waitHandlers();
        if (exitErr) throw exitErr;
        return;
      }
      await Promise.all([this.pull(`notify-${this.name}`, this.concurrency, 1000), this.pull(`replay-${this.name}`, 1, 5000)]);
      await this.waitHandlers();
      await this.exit();
    } finally {
      this.stopWatch.abort();
      await this.watching;
      await this.nc.flush().catch(() => {});
    }
  }

  private untilAborted(): Promise<void> {
    if (this.signal.aborted) return Promise.resolve();
    return new Promise((r) => this.signal.addEventListener("abort", () => r(), { once: true }));
  }

  // retryStart runs a start-up step until it succeeds, fails for good, or
  // the signal aborts; what passes on its own (NATS or the registry not
  // answering) is waited out, 100 ms doubling to 5 s apart.
  private async retryStart(what: string, f: () => Promise<void>): Promise<void> {
    const b = new Backoff(100, 5000);
    for (;;) {
      try {
        return await f();
      } catch (err) {
        if (this.signal.aborted || !transient(err)) throw err;
        this.log.warn(`${what}: not possible yet, will retry`, { err: errorMessage(err) });
      }
      if (!(await sleep(b.next(), this.signal))) return;
    }
  }

  private async registerAndStart(): Promise<void> {
    const p = await admin.register(this.c, this.spec, { signal: this.signal });
    this.update(p);
    switch (p.status) {
      case "started":
      case "restarted":
        return;
      case "stopped":
        this.log.info("plugin is stopped: waiting for an operator to enable it");
        return;
      case "held":
        this.log.info("plugin is held: waiting for its hard dependencies");
        return;
    }
    this.wantStart = true;
    await this.start();
  }

  // lookUp reads the state of a plugin an operator registers, waiting
  // (as a passing failure) until it exists.
  private async lookUp(): Promise<void> {
    try {
      this.update(await admin.get(this.c, this.name, { signal: this.signal }));
    } catch (err) {
      if (err instanceof HookbusError && err.code === Codes.NotFound) {
        throw new HookbusError(Codes.Unavailable, `plugin ${this.name} is not registered yet (register: false)`, { cause: err });
      }
      throw err;
    }
  }

  // start starts the plugin if a start is wanted, one at a time. A start
  // refused because a hard dependency is not running stays wanted.
  private start(): Promise<void> {
    const run = async () => {
      if (!this.wantStart) return;
      try {
        this.update(await admin.byName(this.c, "start", this.name, { signal: this.signal }));
      } catch (err) {
        const code = err instanceof HookbusError ? err.code : "";
        if (code === Codes.DependencyNotRunning) {
          this.log.info("waiting for hard dependencies to start", { err: errorMessage(err) });
          return;
        }
        if (code === Codes.Stopped) {
          this.wantStart = false;
          this.log.info("plugin is stopped: waiting for an operator to enable it");
          return;
        }
        throw err;
      }
    };
    const next = (this.starting ?? Promise.resolve()).then(run, run);
    this.starting = next.catch(() => {});
    return next;
  }

  private async exit(): Promise<void> {
    if (this.exitAction === "leave") return;
    const op = ({ deactivate: "delete", stop: "stop", unregister: "unregister" } as const)[this.exitAction];
    try {
      await admin.byName(this.c, op, this.name, { timeoutMs: exitTimeoutMs });
    } catch (err) {
      if (err instanceof HookbusError && err.code === Codes.NotFound) return; // its register was never stored
      throw new HookbusError(err instanceof HookbusError ? err.code : Codes.Internal, `serve ${this.name}: exit action ${this.exitAction}: ${errorMessage(err)}`, { cause: err });
    }
    this.log.info("plugin left", { action: this.exitAction });
  }

  // --- lifecycle -----------------------------------------------------------

  private watching: Promise<void> = Promise.resolve();

  // watchLifecycle follows the lifecycle notices of the plugin and of its
  // hard dependencies (core subscriptions: hookbus.notice.lifecycle.<name>),
  // and reads the state back after a reconnect.
  private async watchLifecycle(): Promise<void> {
    const own = `hookbus.notice.lifecycle.${this.name}`;
    const deps = (this.spec.depends ?? []).filter((d) => !d.soft).map((d) => `hookbus.notice.lifecycle.${d.name}`);
    const subs = [own, ...deps].map((subject) =>
      this.nc.subscribe(subject, {
        callback: (err, m) => {
          if (err || this.stopWatch.signal.aborted) return;
          if (m.subject === own) this.ownLifecycle(m);
          else if (this.dependencyStarted(m)) void this.start().catch((e) => this.log.warn("start after a dependency started", { err: errorMessage(e) }));
        },
      }),
    );
    await this.retryStart("watch lifecycle", () => this.nc.flush());
    const statusLoop = (async () => {
      const it = this.nc.status() as AsyncIterable<{ type: string }> & { stop(): void };
      const stop = () => it.stop();
      this.stopWatch.signal.addEventListener("abort", stop, { once: true });
      for await (const s of it) {
        if (s.type !== "reconnect") continue;
        try {
          this.update(await admin.get(this.c, this.name, { timeoutMs: 10_000 }));
        } catch (err) {
          if (!(err instanceof HookbusError && err.code === Codes.NotFound)) this.log.warn("read the plugin's state after a reconnect", { err: errorMessage(err) });
        }
        void this.start().catch((e) => this.log.warn("start after a reconnect", { err: errorMessage(e) }));
      }
    })();
    this.watching = (async () => {
      await new Promise<void>((r) => this.stopWatch.signal.addEventListener("abort", () => r(), { once: true }));
      for (const s of subs) s.unsubscribe();
      await statusLoop;
      await this.starting;
    })();
  }

  private readLifecycle(m: Msg): { kind: string; p: Plugin; seq: number } | undefined {
    try {
      const e = decode(m.headers, m.data);
      if (!e.type.startsWith("hookbus.plugin.") || !e.data || typeof e.data !== "object") throw new Error(`event type ${e.type}`);
      const p = e.data as Plugin;
      const seq = Number(/^(\d+)-/.exec(e.id)?.[1] ?? p.command_seq);
      return { kind: e.type.slice("hookbus.plugin.".length), p, seq };
    } catch (err) {
      this.log.warn("unreadable lifecycle event", { subject: m.subject, err: errorMessage(err) });
      return undefined;
    }
  }

  private ownLifecycle(m: Msg): void {
    const l = this.readLifecycle(m);
    if (!l) return;
    if (l.seq >= this.seq) this.setState(l.p, l.seq, l.kind === "unregistered");
    this.log.info("lifecycle", { change: l.kind, status: l.p.status });
    const f = (
      {
        registered: this.p.onRegister,
        started: this.p.onStart,
        restarted: this.p.onRestart,
        stopped: this.p.onStop,
        held: this.p.onHeld,
        unregistered: this.p.onUnregister,
      } as Record<string, ((p: Plugin) => void) | undefined>
    )[l.kind];
    try {
      f?.(l.p);
    } catch (err) {
      this.log.error("lifecycle callback threw", { change: l.kind, err: errorMessage(err) });
    }
  }

  private dependencyStarted(m: Msg): boolean {
    const l = this.readLifecycle(m);
    return !!l && l.kind !== "unregistered" && running(l.p.status) && this.wantStart;
  }

  // --- handlers -------------------------------------------------------------

  // track runs a handler's work, counted against the concurrency.
  private track(work: () => Promise<void>): void {
    this.busy++;
    const p = work()
      .catch((err) => this.log.error("handler work failed", { err: errorMessage(err) }))
      .finally(() => {
        this.busy--;
        this.handlers.delete(p);
        for (const wake of this.slotWaiters.splice(0)) wake();
        this.nextStep();
      });
    this.handlers.add(p);
  }

  // freeSlot resolves once consumer has fewer than limit handlers running
  // (or signal aborts).
  private async freeSlot(consumer: string, limit: number, signal: AbortSignal): Promise<void> {
    while (this.busyOf(consumer) >= limit && !signal.aborted) {
      await new Promise<void>((resolve) => {
        const wake = () => {
          signal.removeEventListener("abort", wake);
          resolve();
        };
        this.slotWaiters.push(wake);
        signal.addEventListener("abort", wake, { once: true });
      });
    }
  }

  // waitHandlers waits for every handler; once the drain timeout has passed
  // it aborts their signal, and 2 s later gives up on them.
  private async waitHandlers(): Promise<void> {
    const all = () => Promise.all([...this.handlers]);
    if (this.handlers.size === 0 || (await within(all(), this.drainTimeoutMs))) return;
    this.log.warn("handlers still running after the drain timeout: aborting them", { handlers: this.busy });
    this.handlerAbort.abort(new Error("drain timeout"));
    if (await within(all(), cancelGraceMs)) return;
    throw new HookbusError(
      "handlers_abandoned",
      `serve ${this.name}: handlers ignored their aborted signal: ${this.busy} still running ${cancelGraceMs} ms after the drain timeout (their events come again, their steps time out)`,
    );
  }

  // --- chain steps ------------------------------------------------------------

  private async subscribeSteps(): Promise<Subscription> {
    const subject = `hookbus.plugin.${this.name}.call`;
    const sub = this.nc.subscribe(subject, {
      queue: this.name,
      callback: (err, m) => {
        if (err) return;
        if (!m.reply || !m.reply.startsWith("_INBOX.")) {
          // Only the dispatcher sends steps, from its inbox; a JetStream
          // push consumer's delivery ($JS.ACK. reply) is not one.
          this.log.warn("chain step refused: its reply subject is not an inbox", { reply: m.reply });
          return;
        }
        this.waitingSteps.push(m);
        this.nextStep();
      },
    });
    await this.nc.flush();
    return sub;
  }

  // nextStep starts the steps waiting for a free handler.
  private nextStep(): void {
    while (this.waitingSteps.length > 0 && (this.busy < this.concurrency || this.stepsClosed)) {
      const m = this.waitingSteps.shift()!;
      if (this.stepsClosed || this.handlerAbort.signal.aborted) {
        respond(m, { error: "plugin worker shutting down" });
        continue;
      }
      this.track(async () => respond(m, await this.step(m)));
    }
  }

  private async step(m: Msg): Promise<Record<string, unknown>> {
    let e: CloudEvent;
    try {
      e = decode(m.headers, m.data, this.c.maxEventSize);
    } catch (err) {
      this.log.warn("invalid chain step request", { err: errorMessage(err) });
      return { error: `invalid step request: ${errorMessage(err)}` };
    }
    const timeout = AbortSignal.timeout(this.settings().step_timeout_ms);
    const signal = AbortSignal.any([timeout, this.handlerAbort.signal]);
    try {
      const r = await this.p.chain!({ event: e, number: headerInt(m, "Hookbus-Chain-Step"), attempt: headerInt(m, "Hookbus-Chain-Attempt"), signal });
      if (r === undefined || r === null) return { action: "continue" };
      if (r.action !== "continue" && r.action !== "halt") return { error: `handler answered action ${JSON.stringify(r.action)}: want continueWith() or halt()` };
      const out: Record<string, unknown> = { action: r.action };
      if (r.state !== undefined && r.state !== null) out.state = r.state;
      return out;
    } catch (err) {
      return { error: errorMessage(err) || "handler failed" };
    }
  }

  // drainSteps stops taking steps and answers those already received,
  // until the drain timeout.
  private async drainSteps(sub: Subscription): Promise<void> {
    try {
      await within(sub.drain(), this.drainTimeoutMs);
    } catch (err) {
      this.log.warn("drain chain subscription", { err: errorMessage(err) });
    }
    if (!sub.isClosed()) sub.unsubscribe();
  }

  // --- notify deliveries ------------------------------------------------------

  // pull takes the deliveries of consumer while the plugin runs, fetching
  // only as many as there are free handlers, until the signal aborts.
  private async pull(consumerName: string, limit: number, expiresMs: number): Promise<void> {
    const js = this.nc.jetstream();
    const retry = new Backoff(50, 2000);
    let waiting = false;
    while (!this.signal.aborted) {
      if (!this.isRunning()) {
        await this.untilChange(this.signal);
        continue;
      }
      let consumer: Consumer;
      let info: ConsumerInfo;
      try {
        consumer = await js.consumers.get("HOOKBUS_EVENTS", consumerName);
        info = await consumer.info(true);
      } catch (err) {
        if (/consumer not found/i.test(errorMessage(err))) {
          if (!waiting) this.log.info("waiting for the dispatcher to create the notify consumer", { consumer: consumerName });
          waiting = true;
        } else {
          this.log.warn("look up notify consumer", { consumer: consumerName, err: errorMessage(err) });
        }
        await sleep(retry.next(), this.signal);
        continue;
      }
      waiting = false;
      try {
        while (!this.signal.aborted && this.isRunning()) {
          await this.freeSlot(consumerName, limit, this.signal);
          if (this.signal.aborted) break;
          const free = limit - this.busyOf(consumerName);
          if (free <= 0) continue;
          const batch = await consumer.fetch({ max_messages: free, expires: expiresMs });
          for await (const m of batch as AsyncIterable<JsMsg>) {
            if (this.signal.aborted || !this.isRunning()) {
              m.nak(); // not handled here: to another worker at once
              continue;
            }
            this.startDelivery(consumerName, m, info);
          }
        }
        retry.reset();
      } catch (err) {
        if (this.signal.aborted) break;
        this.log.warn("pull notify events", { consumer: consumerName, err: errorMessage(err) });
        await sleep(retry.next(), this.signal);
      }
    }
  }

  private readonly busyBy = new Map<string, number>();

  private busyOf(consumer: string): number {
    return this.busyBy.get(consumer) ?? 0;
  }

  private startDelivery(consumer: string, m: JsMsg, info: ConsumerInfo): void {
    this.busyBy.set(consumer, this.busyOf(consumer) + 1);
    this.track(async () => {
      try {
        await this.deliver(m, info);
      } finally {
        this.busyBy.set(consumer, this.busyOf(consumer) - 1);
      }
    });
  }

  // deliver takes one notify message to its end: acknowledged, delivered
  // again later, or dead-lettered and then acknowledged (docs/protocol.md
  // "Notify deliveries": the one place that decides which).
  private async deliver(m: JsMsg, info: ConsumerInfo): Promise<void> {
    const attempt = m.info.deliveryCount;
    const s = this.settings();
    const cfg = info.config;
    let e: CloudEvent;
    try {
      e = decode(m.headers, m.data, this.c.maxEventSize);
      this.checkSubject(e.type, m.subject);
    } catch (err) {
      this.log.warn("invalid event in the stream: dead-lettering it", { subject: m.subject, err: errorMessage(err) });
      return this.deadLetter(m, cfg, s, errorMessage(err));
    }
    if (attempt > s.max_deliver) {
      return this.deadLetter(m, cfg, s, `no worker of ${this.name} answered in ${attempt - 1} deliveries`);
    }
    // Progress every half ack wait while the handler runs.
    const ackWaitMs = ackWaitOf(cfg);
    const progress = setInterval(() => m.working(), Math.max(ackWaitMs / 2, 50));
    let failed: unknown;
    let ok = false;
    try {
      await this.p.notify!({
        event: e,
        attempt,
        maxDeliver: s.max_deliver,
        subject: m.subject,
        streamSeq: m.seq,
        signal: this.handlerAbort.signal,
        inProgress: () => m.working(),
      });
      ok = true;
    } catch (err) {
      failed = err;
    } finally {
      clearInterval(progress);
    }
    if (ok) {
      m.ack();
      return;
    }
    if (isPermanent(failed) || attempt >= s.max_deliver) {
      this.log.warn("delivery failed for good: dead-lettering it", { event_id: e.id, err: errorMessage(failed) });
      return this.deadLetter(m, cfg, s, errorMessage(failed) || "handler failed");
    }
    m.nak(nakDelay(cfg, attempt, backoffAfter(s, attempt)));
  }

  // checkSubject refuses an event whose type is not the one its subject
  // carries: hookbus.event.<type>, or the plugin's event on hookbus.replay.<plugin>.
  private checkSubject(type: string, subject: string): void {
    if (subject === `hookbus.event.${type}`) return;
    if (subject === `hookbus.replay.${this.name}`) {
      if (type === this.event()) return;
      throw new ValidationError("type", `${JSON.stringify(type)} replayed on ${subject}: plugin ${this.name} takes events of type ${JSON.stringify(this.event())}`);
    }
    throw new ValidationError("type", `${JSON.stringify(type)} published on ${subject}: an event of type T belongs on hookbus.event.T`);
  }

  // deadLetter stores m in HOOKBUS_DLQ with reason, then acknowledges it;
  // if the dead letter is not stored, m is naked so that it comes back.
  // A worker may not read HOOKBUS_DLQ: on a duplicate acknowledgement the
  // dead letter is stored again under a unique id.
  private async deadLetter(m: JsMsg, cfg: ConsumerInfo["config"], s: Required<Settings>, reason: string): Promise<void> {
    const attempt = m.info.deliveryCount;
    const dl = newDeadLetter(this.name, { subject: m.subject, headers: m.headers, data: m.data, streamSeq: m.seq, deliveries: attempt }, reason, this.nc.info?.max_payload ?? 0);
    const progress = setInterval(() => m.working(), 5000);
    try {
      const stored = storeOnce(this.c, dl.subject, dl, "HOOKBUS_DLQ", (subject, msg) => publishDeadLetter(this.c, subject, msg), false);
      if (!(await within(stored, dlqTimeoutMs))) {
        stored.catch(() => {});
        throw new HookbusError(Codes.NotStored, "dead letter not stored in time");
      }
    } catch (err) {
      this.log.error("dead letter not stored: the event will come back", { subject: m.subject, attempt, err: errorMessage(err) });
      m.nak(nakDelay(cfg, attempt, backoffAfter(s, attempt)));
      return;
    } finally {
      clearInterval(progress);
    }
    m.ack();
  }
}

function respond(m: Msg, reply: Record<string, unknown>): void {
  let body: Uint8Array;
  try {
    body = encoder.encode(JSON.stringify(reply));
  } catch (err) {
    body = encoder.encode(JSON.stringify({ error: `encode state: ${errorMessage(err)}` }));
  }
  m.respond(body);
}

function headerInt(m: Msg, name: string): number {
  return Number.parseInt(headerValue(m.headers, name), 10) || 0;
}

function transient(err: unknown): boolean {
  if (err instanceof HookbusError) {
    return [Codes.NotApplied, Codes.NotStored, Codes.Unavailable, Codes.Timeout].includes(err.code as never);
  }
  const code = typeof err === "object" && err !== null ? String((err as { code?: unknown }).code ?? "") : "";
  return ["503", "TIMEOUT", "DISCONNECT", "CONNECTION_REFUSED"].includes(code);
}

function backoffAfter(s: Required<Settings>, attempt: number): number {
  const b = s.backoff_ms;
  return b.length === 0 ? 0 : b[Math.min(Math.max(attempt - 1, 0), b.length - 1)];
}

// ackWaitOf is the shortest time the consumer waits for an acknowledgement:
// its ack_wait, or the shortest backoff value (ms).
function ackWaitOf(cfg: ConsumerInfo["config"]): number {
  let d = (cfg.ack_wait ?? 0) / 1e6;
  for (const b of cfg.backoff ?? []) if (b > 0 && (d <= 0 || b / 1e6 < d)) d = b / 1e6;
  return d > 0 ? d : 30_000;
}

/**
 * nakDelay is the delay (ms) to send with the nak of the attempt-th
 * delivery so that JetStream delivers it again `want` ms later: with a
 * backoff list, nats-server redelivers a nak with delay d after
 * d - ack_wait + backoff[attempt-1], so that is taken off.
 */
export function nakDelay(cfg: ConsumerInfo["config"] | undefined, attempt: number, want: number): number {
  const backoff = cfg?.backoff ?? [];
  const ackWait = (cfg?.ack_wait ?? 0) / 1e6;
  if (backoff.length === 0 || ackWait <= 0) return want;
  const bo = backoff[Math.min(Math.max(attempt - 1, 0), backoff.length - 1)] / 1e6;
  return Math.max(want - bo + ackWait, 1);
}
