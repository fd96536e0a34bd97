// Publisher: many events in flight, each acknowledgement awaited on its own.
import type { MsgHdrs } from "nats";
import { Codes, HookbusError, ValidationError, aborted, errorMessage } from "./errors.js";
import type { CloudEvent } from "./event.js";
import type { Client, PublishOptions } from "./client.js";
import { Backoff, parsePubAck, type PublishAck, retryable } from "./wire.js";

/** PublisherOptions configure a Publisher. */
export interface PublisherOptions {
  /** events in flight at most (default 256) */
  window?: number;
  /** wait for one acknowledgement before sending again (default 5 000 ms) */
  ackTimeoutMs?: number;
  /** called once per event as it settles, before its PendingAck does */
  onAck?: (ev: CloudEvent, ack?: PublishAck, err?: HookbusError) => void;
}

/** PendingAck is the outcome of one Publisher.publish. */
export interface PendingAck {
  /** resolves once the event is stored; rejects with code "not_stored" or "publisher_closed" */
  readonly ack: Promise<PublishAck>;
}

/** PublisherStats count the settled events of a Publisher. */
export interface PublisherStats {
  /** acknowledged, duplicates included */
  published: number;
  /** acknowledged as duplicates: stored before, not again */
  duplicates: number;
  /** given up on */
  failed: number;
}

// attempts is how often a Publisher sends one event at most.
const attempts = 4;

interface Entry {
  ev: CloudEvent;
  subject: string;
  headers: MsgHdrs;
  data: Uint8Array;
  resolve: (a: PublishAck) => void;
  reject: (e: HookbusError) => void;
  settled: boolean;
}

/**
 * Publisher publishes events without waiting for each acknowledgement: up
 * to a window of them are in flight, each sent up to 4 times with the same
 * Nats-Msg-Id while no acknowledgement comes, then failed ("not_stored").
 * A refusal by the stream fails an event at once.
 */
export class Publisher {
  private readonly window: number;
  private readonly ackTimeoutMs: number;
  private readonly onAck?: PublisherOptions["onAck"];
  private inFlight = 0;
  private closed = false;
  private readonly roomWaiters: (() => void)[] = [];
  private readonly live = new Set<Entry>();
  private readonly counts: PublisherStats = { published: 0, duplicates: 0, failed: 0 };

  constructor(
    private readonly client: Client,
    opts: PublisherOptions = {},
  ) {
    const w = opts.window ?? 256;
    const t = opts.ackTimeoutMs ?? 5000;
    if (!Number.isInteger(w) || w < 1) throw new ValidationError("window", `${w} must be a positive integer`, "publisher option");
    if (!(Number.isFinite(t) && t > 0)) throw new ValidationError("ackTimeoutMs", `${t} must be a positive number`, "publisher option");
    this.window = w;
    this.ackTimeoutMs = t;
    this.onAck = opts.onAck;
  }

  /** pending is the number of events published and not yet settled (never more than the window). */
  get pending(): number {
    return this.inFlight;
  }

  /** stats returns the counts so far. */
  stats(): PublisherStats {
    return { ...this.counts };
  }

  /**
   * publish validates and encodes ev as Client.publish does (an invalid
   * event throws a ValidationError: nothing is sent), waits while the
   * window is full (signal bounds only that wait), sends ev and resolves
   * with its PendingAck without waiting for JetStream.
   */
  async publish(ev: CloudEvent, opts: Pick<PublishOptions, "signal" | "structured"> = {}): Promise<PendingAck> {
    if (this.closed) throw new HookbusError(Codes.PublisherClosed, "publisher closed");
    const subject = this.client.eventSubject(ev?.type);
    const m = this.client.encode(ev, opts.structured);
    m.headers.set("Nats-Expected-Stream", "HOOKBUS_EVENTS");
    while (this.inFlight >= this.window) {
      await this.room(opts.signal);
      if (this.closed) throw new HookbusError(Codes.PublisherClosed, "publisher closed");
    }
    this.inFlight++;
    let entry!: Entry;
    const ack = new Promise<PublishAck>((resolve, reject) => {
      entry = { ev, subject, headers: m.headers, data: m.data, resolve, reject, settled: false };
    });
    ack.catch(() => {}); // the caller may never look: not an unhandled rejection
    this.live.add(entry);
    void this.run(entry);
    return { ack };
  }

  private room(signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(aborted(signal, "publish"));
      const wake = () => {
        signal?.removeEventListener("abort", onAbort);
        resolve();
      };
      const onAbort = () => {
        const i = this.roomWaiters.indexOf(wake);
        if (i >= 0) this.roomWaiters.splice(i, 1);
        reject(aborted(signal!, "publish"));
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.roomWaiters.push(wake);
    });
  }

  // run sends one event until it settles.
  private async run(e: Entry): Promise<void> {
    const b = new Backoff(50, this.client.retryWaitMs);
    let last: unknown;
    for (let attempt = 1; attempt <= attempts && !e.settled; attempt++) {
      try {
        const m = await this.client.nc.request(e.subject, e.data, { headers: e.headers, timeout: this.ackTimeoutMs });
        return this.settle(e, parsePubAck(m));
      } catch (err) {
        last = err;
      }
      if (!retryable(last)) break;
      if (attempt < attempts) await new Promise((r) => setTimeout(r, b.next()));
    }
    this.settle(e, undefined, new HookbusError(Codes.NotStored, `publish ${e.ev.type} ${e.ev.id}: not stored: ${errorMessage(last)}`, { cause: last }));
  }

  private settle(e: Entry, ack?: PublishAck, err?: HookbusError): void {
    if (e.settled) return;
    e.settled = true;
    this.live.delete(e);
    if (ack) {
      this.counts.published++;
      if (ack.duplicate) this.counts.duplicates++;
    } else {
      this.counts.failed++;
    }
    try {
      this.onAck?.(e.ev, ack, err);
    } finally {
      if (ack) e.resolve(ack);
      else e.reject(err!);
      this.inFlight--;
      this.roomWaiters.shift()?.();
    }
  }

  /**
   * flush waits until every event published before it was called has
   * settled, or until signal aborts (code "aborted").
   */
  async flush(opts: { signal?: AbortSignal } = {}): Promise<void> {
    await this.waitSettled([...this.live], opts.signal);
  }

  private async waitSettled(entries: Entry[], signal?: AbortSignal): Promise<void> {
    const all = Promise.all(entries.map((e) => settledOf(e)));
    if (!signal) {
      await all;
      return;
    }
    if (signal.aborted) throw aborted(signal, "flush");
    let onAbort: (() => void) | undefined;
    const stop = new Promise<never>((_, reject) => {
      onAbort = () => reject(aborted(signal, "flush"));
      signal.addEventListener("abort", onAbort, { once: true });
    });
    try {
      await Promise.race([all, stop]);
    } finally {
      signal.removeEventListener("abort", onAbort!);
    }
  }

  /**
   * close stops taking events (publish throws "publisher_closed" from now
   * on), waits as flush until the events published before settle. If
   * signal aborts first, the events still unsettled fail with code
   * "publisher_closed" (one stored meanwhile stays stored) and close
   * throws "aborted".
   */
  async close(opts: { signal?: AbortSignal } = {}): Promise<void> {
    this.closed = true;
    for (const w of this.roomWaiters.splice(0)) w();
    try {
      await this.waitSettled([...this.live], opts.signal);
    } catch (err) {
      for (const e of [...this.live]) this.settle(e, undefined, new HookbusError(Codes.PublisherClosed, `publish ${e.ev.type} ${e.ev.id}: publisher closed before its acknowledgement`));
      throw err;
    }
  }
}

// settledOf resolves once e settles, stored or failed.
function settledOf(e: Entry): Promise<void> {
  return new Promise((resolve) => {
    const res = e.resolve;
    const rej = e.reject;
    if (e.settled) return resolve();
    e.resolve = (a) => {
      res(a);
      resolve();
    };
    e.reject = (err) => {
      rej(err);
      resolve();
    };
  });
}
