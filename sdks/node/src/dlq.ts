// Dead letters (docs/protocol.md "Dead letters"): list HOOKBUS_DLQ, replay
// one to its subscriber alone, and the one rule every dead-letter writer
// follows (stored, checked on a duplicate, before the original's ack).
import { randomBytes } from "node:crypto";
import { AckPolicy, headers as newHeaders, type JsMsg, type MsgHdrs, StorageType, type StoredMsg } from "nats";
import { Codes, HookbusError, ValidationError, errorMessage } from "./errors.js";
import { type CloudEvent, decode, validateName } from "./event.js";
import type { Client, RequestOptions } from "./client.js";
import { headerValue, parsePubAck, type PublishAck, retryable, sleep } from "./wire.js";

/** DeadLetter is one message in HOOKBUS_DLQ: an event a subscriber could not take, with why. */
export interface DeadLetter {
  /** the dead letter's sequence in HOOKBUS_DLQ (replay takes it) */
  seq: number;
  time: Date;
  /** the last token of its subject hookbus.dlq.<subscriber> (which NATS permissions bind) */
  subscriber: string;
  /** set when the dead letter is not one Hookbus wrote: why */
  forged?: string;
  reason: string;
  /** the original's subject */
  subject: string;
  /** the original's sequence in HOOKBUS_EVENTS */
  streamSeq: number;
  deliveries: number;
  /** the original, decoded; undefined when it is not a valid CloudEvent (decodeError says why) */
  event?: CloudEvent;
  decodeError?: string;
  /** the original's headers (without the dead-letter and Nats-* headers) and data */
  headers: MsgHdrs;
  data: Uint8Array;
  /** set for a dead letter by reference: what was left out */
  omitted?: string;
}

const streamDLQ = "HOOKBUS_DLQ";
const streamEvents = "HOOKBUS_EVENTS";
const dlqPage = 64;

/** Headers of a dead letter. */
export const DLQHeaders = {
  reason: "Hookbus-Dlq-Reason",
  subscriber: "Hookbus-Dlq-Subscriber",
  subject: "Hookbus-Dlq-Subject",
  streamSeq: "Hookbus-Dlq-Stream-Seq",
  deliveries: "Hookbus-Dlq-Deliveries",
  body: "Hookbus-Dlq-Body",
} as const;

function subscriberOf(subject: string): string | undefined {
  const name = subject.startsWith("hookbus.dlq.") ? subject.slice("hookbus.dlq.".length) : "";
  return /^[A-Za-z0-9_-]{1,64}$/.test(name) ? name : undefined;
}

function read(subject: string, seq: number, time: Date, h: MsgHdrs | undefined, data: Uint8Array, maxSize: number): DeadLetter {
  const sub = subscriberOf(subject);
  const claimed = headerValue(h, DLQHeaders.subscriber);
  const dl: DeadLetter = {
    seq,
    time,
    subscriber: sub ?? claimed,
    reason: headerValue(h, DLQHeaders.reason),
    subject: headerValue(h, DLQHeaders.subject),
    streamSeq: Number(headerValue(h, DLQHeaders.streamSeq)) || 0,
    deliveries: Number(headerValue(h, DLQHeaders.deliveries)) || 0,
    headers: newHeaders(),
    data,
  };
  if (!sub) dl.forged = `its subject ${subject} is not hookbus.dlq.<subscriber>`;
  else if (claimed !== sub) dl.forged = `forged: it is on ${subject} but its ${DLQHeaders.subscriber} header says ${JSON.stringify(claimed)}`;
  const omitted = headerValue(h, DLQHeaders.body);
  if (omitted) dl.omitted = omitted;
  for (const k of h?.keys() ?? []) {
    const lk = k.toLowerCase();
    if (lk.startsWith("hookbus-dlq-") || lk.startsWith("nats-")) continue;
    for (const v of h!.values(k)) dl.headers.append(k, v);
  }
  if (dl.omitted) {
    dl.decodeError = `not copied into the dead letter (${dl.omitted}): the original is message ${dl.streamSeq} of ${streamEvents}`;
  } else {
    try {
      dl.event = decode(dl.headers, data, maxSize);
    } catch (err) {
      dl.decodeError = errorMessage(err);
    }
  }
  return dl;
}

/**
 * deadLetters yields the dead letters of subscriber (every subscriber's
 * when it is absent), oldest first, read 64 at a time through an
 * ephemeral consumer deleted at the end.
 */
export async function* deadLetters(c: Client, subscriber?: string, opts: RequestOptions = {}): AsyncGenerator<DeadLetter> {
  let filter = "hookbus.dlq.>";
  if (subscriber) {
    validateName("subscriber", subscriber);
    filter = `hookbus.dlq.${subscriber}`;
  }
  const jsm = await c.nc.jetstreamManager({ timeout: opts.timeoutMs ?? c.timeoutMs });
  let info;
  try {
    info = await jsm.consumers.add(streamDLQ, {
      filter_subject: filter,
      ack_policy: AckPolicy.None,
      mem_storage: true,
      num_replicas: 1,
      inactive_threshold: 5 * 60 * 1e9,
    });
  } catch (err) {
    throw new HookbusError(Codes.Unavailable, `read ${streamDLQ}: ${errorMessage(err)} (is Hookbus running and the topology in place?)`, { cause: err });
  }
  try {
    const consumer = await c.nc.jetstream().consumers.get(streamDLQ, info.name);
    let pending = info.num_pending;
    while (pending > 0) {
      if (opts.signal?.aborted) throw new HookbusError(Codes.Aborted, "dead letters: aborted", { cause: opts.signal.reason });
      const batch = await consumer.fetch({ max_messages: Math.min(pending, dlqPage), expires: 2000 });
      let n = 0;
      for await (const m of batch as AsyncIterable<JsMsg>) {
        n++;
        pending = m.info.pending;
        yield read(m.subject, m.seq, new Date(Math.floor(m.info.timestampNanos / 1e6)), m.headers, m.data, c.maxEventSize);
      }
      if (n === 0) return; // deleted since the consumer counted them
    }
  } finally {
    await jsm.consumers.delete(streamDLQ, info.name).catch(() => {});
  }
}

/**
 * storeOnce publishes msg on subject expecting stream; a duplicate
 * acknowledgement counts as stored only when the message at the
 * acknowledged sequence is this one (same subject and Nats-Msg-Id), else
 * (or when it cannot be read) it is stored again under a unique id.
 */
export async function storeOnce(
  c: Client,
  subject: string,
  msg: { headers: MsgHdrs; data: Uint8Array },
  stream: string,
  publish: (subject: string, msg: { headers: MsgHdrs; data: Uint8Array }) => Promise<PublishAck>,
  canRead: boolean,
): Promise<PublishAck> {
  const ack = await publish(subject, msg);
  if (!ack.duplicate) return ack;
  const id = headerValue(msg.headers, "Nats-Msg-Id");
  if (canRead && ack.seq !== 0) {
    try {
      const jsm = await c.nc.jetstreamManager();
      const stored = await jsm.streams.getMessage(stream, { seq: ack.seq });
      if (stored.subject === subject && headerValue(stored.header, "Nats-Msg-Id") === id) return ack;
    } catch {
      // unreadable: stored again below
    }
  }
  const again = newHeaders();
  for (const k of msg.headers.keys()) for (const v of msg.headers.values(k)) again.append(k, v);
  again.set("Nats-Msg-Id", `${id}-${randomBytes(13).toString("base64url")}`);
  const second = await publish(subject, { headers: again, data: msg.data });
  if (second.duplicate) throw new HookbusError(Codes.NotStored, `${subject}: a unique Nats-Msg-Id was acknowledged as a duplicate`);
  return second;
}

/**
 * replay stores the event of dead letter seq again for its subscriber
 * alone (hookbus.replay.<subscriber>, stored once per dead letter), then
 * deletes the dead letter. Errors: not_found, not_replayable, not_stored.
 */
export async function replay(c: Client, seq: number, opts: RequestOptions = {}): Promise<void> {
  if (!Number.isInteger(seq) || seq <= 0) throw new ValidationError("seq", `${seq} is not a stream sequence`, "request");
  const jsm = await c.nc.jetstreamManager({ timeout: opts.timeoutMs ?? c.timeoutMs });
  let m: StoredMsg;
  try {
    m = await jsm.streams.getMessage(streamDLQ, { seq });
  } catch (err) {
    if (/no message found|not found/i.test(errorMessage(err))) throw new HookbusError(Codes.NotFound, `replay: dead letter ${seq}: not found`, { cause: err });
    throw new HookbusError(Codes.Unavailable, `replay: dead letter ${seq}: ${errorMessage(err)}`, { cause: err });
  }
  const dl = read(m.subject, m.seq, m.time, m.header, m.data, c.maxEventSize);
  const refuse = (why: string) => new HookbusError(Codes.NotReplayable, `replay: dead letter ${seq}: dead letter cannot be replayed: ${why}`);
  if (dl.forged) throw refuse(dl.forged);
  if (dl.subscriber === "hookbus-dispatcher") {
    throw refuse(`the dispatcher refused it as invalid (${dl.reason}); fix the event and publish it again`);
  }
  const replaySubject = `hookbus.replay.${dl.subscriber}`;
  let filter = "";
  if (dl.subscriber.startsWith("hook-")) {
    const id = dl.subscriber.slice("hook-".length);
    const r = await c.request("hookbus.registry.hook.list", JSON.stringify({ id }), opts);
    const body = JSON.parse(new TextDecoder().decode(r.data)) as { hooks?: { node: string }[]; error?: { code: string; message: string } };
    if (body.error) throw new HookbusError(body.error.code, `replay: dead letter ${seq}: the node of hook ${id}: ${body.error.message}`);
    if (!body.hooks || body.hooks.length === 0) throw refuse(`hook ${id} no longer exists (its replay would reach no one)`);
    filter = `hookbus.event.${body.hooks[0].node}`;
  }
  let orig = dl.headers;
  let data = dl.data;
  if (dl.omitted) {
    let o: StoredMsg;
    try {
      o = await jsm.streams.getMessage(streamEvents, { seq: dl.streamSeq });
    } catch {
      throw refuse(`its event (${dl.omitted}) was message ${dl.streamSeq} of ${streamEvents}, which no longer keeps it`);
    }
    if (!filter && (o.subject !== replaySubject || dl.subject !== replaySubject)) {
      const { admin } = await import("./admin.js");
      const p = await admin.get(c, dl.subscriber, opts);
      filter = `hookbus.event.${p.event}`;
    }
    if (dl.subject !== o.subject) throw refuse(`it records its original as being on ${JSON.stringify(dl.subject)}, but the message it references is on ${o.subject}`);
    if (o.subject !== replaySubject && o.subject !== filter) {
      throw refuse(`the message it references is on ${o.subject}, but ${dl.subscriber} takes events on ${filter} (or hookbus.replay.${dl.subscriber})`);
    }
    orig = o.header ?? newHeaders();
    data = o.data;
  }
  const h = newHeaders();
  for (const k of orig.keys()) {
    if (k.toLowerCase().startsWith("nats-")) continue;
    for (const v of orig.values(k)) h.append(k, v);
  }
  h.set("Nats-Msg-Id", `replay-${seq}`);
  await storeOnce(c, replaySubject, { headers: h, data }, streamEvents, (s, msg) => c.send(s, msg, streamEvents, opts), true);
  try {
    await jsm.streams.deleteMessage(streamDLQ, seq);
  } catch (err) {
    if (!/no message found|not found/i.test(errorMessage(err))) {
      throw new HookbusError(
        Codes.Internal,
        `replay: dead letter ${seq} was replayed but not deleted (replaying it again within the duplicate window stores nothing new): ${errorMessage(err)}`,
      );
    }
  }
}

/**
 * publishDeadLetter publishes a dead letter expecting HOOKBUS_DLQ, up to 4
 * times while the stream does not answer (100 ms apart, doubling), as
 * every Hookbus writer does.
 */
export async function publishDeadLetter(c: Client, subject: string, msg: { headers: MsgHdrs; data: Uint8Array }): Promise<PublishAck> {
  msg.headers.set("Nats-Expected-Stream", streamDLQ);
  let pause = 100;
  for (let attempt = 1; ; attempt++) {
    try {
      return parsePubAck(await c.nc.request(subject, msg.data, { headers: msg.headers, timeout: 5000 }));
    } catch (err) {
      if (attempt === 4 || !retryable(err)) throw new HookbusError(Codes.NotStored, `${subject}: dead letter not stored: ${errorMessage(err)}`, { cause: err });
    }
    await sleep(pause);
    pause *= 2;
  }
}

/**
 * newDeadLetter builds the dead letter of an original (docs/protocol.md
 * "Dead letters"): its headers without Nats-*, the Hookbus-Dlq-* headers,
 * Nats-Msg-Id dlq-<subscriber>-<stream seq>; by reference when it would
 * be larger than maxSize.
 */
export function newDeadLetter(
  subscriber: string,
  o: { subject: string; headers?: MsgHdrs; data: Uint8Array; streamSeq: number; deliveries: number },
  reason: string,
  maxSize: number,
): { subject: string; headers: MsgHdrs; data: Uint8Array } {
  let why = reason.replace(/[\u0000-\u001f\u007f]/g, " ");
  if (!why.isWellFormed()) why = why.toWellFormed();
  if (Buffer.byteLength(why) > 1024) {
    const b = Buffer.from(why).subarray(0, 1024);
    why = new TextDecoder().decode(b).replace(/\uFFFD+$/, "");
  }
  const own: [string, string][] = [
    [DLQHeaders.reason, why],
    [DLQHeaders.subscriber, subscriber],
    [DLQHeaders.subject, o.subject],
    [DLQHeaders.streamSeq, String(o.streamSeq)],
    [DLQHeaders.deliveries, String(o.deliveries)],
    ["Nats-Msg-Id", `dlq-${subscriber}-${o.streamSeq}`],
  ];
  const build = (withOriginal: boolean) => {
    const h = newHeaders();
    if (withOriginal) {
      for (const k of o.headers?.keys() ?? []) {
        const lk = k.toLowerCase();
        if (lk.startsWith("nats-") || lk === DLQHeaders.body.toLowerCase() || own.some(([n]) => n.toLowerCase() === lk)) continue;
        for (const v of o.headers!.values(k)) h.append(k, v);
      }
    }
    for (const [k, v] of own) h.set(k, v);
    return h;
  };
  const size = (h: MsgHdrs, data: number) => {
    let n = "NATS/1.0\r\n\r\n".length + data;
    for (const k of h.keys()) for (const v of h.values(k)) n += k.length + Buffer.byteLength(v) + 4;
    return n;
  };
  let h = build(true);
  let data = o.data;
  if (maxSize > 0 && size(h, data.length) > maxSize) {
    let omitted = `omitted: ${data.length} bytes`;
    data = new Uint8Array(0);
    if (size(h, 0) + DLQHeaders.body.length + omitted.length + 4 > maxSize) {
      h = build(false);
      omitted += ", headers omitted";
    }
    h.set(DLQHeaders.body, omitted);
  }
  return { subject: `hookbus.dlq.${subscriber}`, headers: h, data };
}
