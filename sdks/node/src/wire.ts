// What the SDK's parts share about talking to NATS: error codes, backoff,
// JetStream acknowledgements, service errors.
import type { Msg, MsgHdrs } from "nats";
import { Codes, HookbusError, errorMessage } from "./errors.js";

const decoder = new TextDecoder();

/** PublishAck is JetStream's receipt for a stored event. */
export interface PublishAck {
  stream: string;
  seq: number;
  /** an event with the same source and id was already stored; this one was not stored again */
  duplicate: boolean;
}

/** NATS error codes (nats.js ErrorCode) the client tells apart. */
const natsCodes = { noResponders: "503", timeout: "TIMEOUT", disconnect: "DISCONNECT", closed: "CONNECTION_CLOSED", draining: "CONNECTION_DRAINING" };

/** natsCode is the code of a nats.js error, "" for another value. */
export function natsCode(err: unknown): string {
  return typeof err === "object" && err !== null && typeof (err as { code?: unknown }).code === "string" ? (err as { code: string }).code : "";
}

/** isNoResponders reports a request nobody subscribes to. */
export function isNoResponders(err: unknown): boolean {
  return natsCode(err) === natsCodes.noResponders;
}

/** retryable reports whether a publish failure may pass on its own (as the
Go client's retryable): no answer, no stream, a reconnect. */
export function retryable(err: unknown): boolean {
  if (err instanceof StreamRefusal) return false;
  const c = natsCode(err);
  return c === natsCodes.noResponders || c === natsCodes.timeout || c === natsCodes.disconnect || err instanceof AttemptTimeout;
}

/** StreamRefusal is a stream's answer refusing a publish (full, wrong stream, too large, duplicate batch). */
export class StreamRefusal extends Error {
  readonly errCode: number;
  constructor(code: number, errCode: number, description: string) {
    super(`nats: API error: code=${code} err_code=${errCode} description=${description}`);
    this.errCode = errCode;
  }
}

/** AttemptTimeout is one attempt that ran out of time. */
export class AttemptTimeout extends Error {}

/** sleep waits ms, cut short (false) when signal aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve(false);
    const t = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve(true);
    }, Math.max(0, ms));
    const onAbort = () => {
      clearTimeout(t);
      resolve(false);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** Backoff doubles a pause from first to max. */
export class Backoff {
  private d: number;
  constructor(
    private readonly first: number,
    private readonly max: number,
  ) {
    this.d = first;
  }
  reset(): void {
    this.d = this.first;
  }
  next(): number {
    const d = this.d;
    this.d = Math.min(2 * this.d, this.max);
    return d;
  }
}

/** parsePubAck reads a stream's answer to a publish: the acknowledgement or its refusal. */
export function parsePubAck(m: Msg): PublishAck {
  let r: { stream?: string; seq?: number; duplicate?: boolean; error?: { code: number; err_code: number; description: string } };
  try {
    r = JSON.parse(decoder.decode(m.data));
  } catch {
    throw new HookbusError(Codes.NotStored, "invalid JetStream acknowledgement");
  }
  if (r.error) throw new StreamRefusal(r.error.code, r.error.err_code, r.error.description);
  if (!r.stream) throw new HookbusError(Codes.NotStored, "invalid JetStream acknowledgement");
  return { stream: r.stream, seq: r.seq ?? 0, duplicate: r.duplicate === true };
}

/**
 * serviceError returns the error a Hookbus service answered (the body's
 * `error` member, or micro's Nats-Service-Error-Code header), or undefined.
 */
export function serviceError(m: Msg, body?: unknown): HookbusError | undefined {
  const b = body as { error?: { code?: unknown; message?: unknown } } | undefined;
  if (b && typeof b === "object" && b.error && typeof b.error === "object" && typeof b.error.code === "string") {
    return new HookbusError(b.error.code, String(b.error.message ?? b.error.code));
  }
  const code = m.headers?.get("Nats-Service-Error-Code");
  if (code) return new HookbusError(code, m.headers?.get("Nats-Service-Error") || code);
  return undefined;
}

/** jsonBody parses a JSON answer. */
export function jsonBody(m: Msg, what: string): unknown {
  try {
    return m.data.length === 0 ? undefined : JSON.parse(decoder.decode(m.data));
  } catch (err) {
    throw new HookbusError(Codes.Internal, `${what}: unreadable answer: ${errorMessage(err)}`);
  }
}


/**
 * within waits for p at most ms: true when p settled in time (its
 * rejection is thrown), false when the time ran out. The timer is cleared
 * either way, so it never keeps the process alive.
 */
export async function within(p: Promise<unknown>, ms: number): Promise<boolean> {
  let t: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    t = setTimeout(() => resolve(false), Math.max(0, ms));
  });
  try {
    return await Promise.race([p.then(() => true), timeout]);
  } finally {
    clearTimeout(t);
  }
}

/** headerValue is the first value of header name in h, names compared without regard to case ("" when absent). */
export function headerValue(h: MsgHdrs | undefined, name: string): string {
  if (!h) return "";
  const lower = name.toLowerCase();
  for (const k of h.keys()) if (k.toLowerCase() === lower) return h.values(k)[0] ?? "";
  return "";
}
