// Errors of the Hookbus SDK: one class, HookbusError, with a stable `code`.
// The codes of service answers are those of docs/protocol.md ("Errors: one
// shape"); the client adds its own for what it decides itself.

/** Codes a HookbusError carries. */
export const Codes = {
  /** a malformed event, name, declaration or request (ValidationError) */
  Invalid: "invalid",
  /** the plugin, key or dead letter does not exist */
  NotFound: "not_found",
  /** the declaration would close a dependency cycle */
  Cycle: "cycle",
  /** a hard dependency is not running */
  DependencyNotRunning: "dependency_not_running",
  /** the plugin is stopped; only enable leaves it */
  Stopped: "stopped",
  /** the service failed for a passing reason */
  Internal: "internal",
  /** a chain plugin with policy fail failed (call) */
  PluginFailed: "plugin_failed",
  /** a conditional save lost to another writer */
  Conflict: "conflict",
  /** a stored value cannot be decrypted */
  Decrypt: "decrypt",
  /** the service did not carry it out: send again */
  Unavailable: "unavailable",
  /** no stream took the event (Hookbus not running, topology missing, stream full) */
  NotStored: "not_stored",
  /** no dispatcher answers calls */
  NoDispatcher: "no_dispatcher",
  /** the command is stored but no registry answered in time; a registry applies it later */
  NotApplied: "not_applied",
  /** an event of the batch is already stored: the whole batch was refused */
  BatchDuplicate: "batch_duplicate",
  /** the dead letter cannot be replayed */
  NotReplayable: "not_replayable",
  /** the publisher is closed */
  PublisherClosed: "publisher_closed",
  /** the caller's AbortSignal ended the operation */
  Aborted: "aborted",
  /** no answer came in time */
  Timeout: "timeout",
} as const;

/** Code is one of Codes' values (services may add codes: any string is kept). */
export type Code = (typeof Codes)[keyof typeof Codes] | (string & {});

/** HookbusError is every failure the SDK reports; `code` is stable, `message` for people. */
export class HookbusError extends Error {
  readonly code: Code;
  /** a failed call's result so far (call only) */
  result?: unknown;

  constructor(code: Code, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "HookbusError";
    this.code = code;
  }
}

/**
 * ValidationError is what is refused before anything is sent (or a decoded
 * message that is not a valid event): code "invalid", with what (`of`), the
 * field and why, as "invalid <of>: <field>: <reason>".
 */
export class ValidationError extends HookbusError {
  readonly of: string;
  readonly field: string;
  readonly reason: string;

  constructor(field: string, reason: string, of = "event") {
    super(Codes.Invalid, `invalid ${of}: ${field}: ${reason}`);
    this.name = "ValidationError";
    this.of = of;
    this.field = field;
    this.reason = reason;
  }
}

const permanentMark = Symbol.for("hookbus.permanent");

/**
 * permanent marks a notify handler's failure as one retrying cannot fix:
 * the event is dead-lettered at once with the error as its reason.
 */
export function permanent(err: unknown): Error {
  const e = err instanceof Error ? err : new Error(String(err));
  (e as unknown as Record<symbol, boolean>)[permanentMark] = true;
  return e;
}

/** isPermanent reports whether err was marked by permanent. */
export function isPermanent(err: unknown): boolean {
  return typeof err === "object" && err !== null && (err as Record<symbol, unknown>)[permanentMark] === true;
}

/** aborted is the error of an operation its AbortSignal ended. */
export function aborted(signal: AbortSignal, what: string): HookbusError {
  return new HookbusError(Codes.Aborted, `${what}: aborted`, { cause: signal.reason });
}

/** errorMessage is the text of any thrown value. */
export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
