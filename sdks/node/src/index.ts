// @hookbus/client: the Node.js SDK of Hookbus (docs/protocol.md).
export { Codes, HookbusError, ValidationError, permanent, isPermanent, type Code } from "./errors.js";
export {
  type CloudEvent,
  type Encoded,
  DefaultMaxSize,
  ContentTypeStructured,
  msgId,
  newId,
  validate,
  validateType,
  validateName,
  validateSource,
  encodeBinary,
  encodeStructured,
  decode,
  percentEncode,
  percentDecode,
  isJSONType,
} from "./event.js";
export { isCatalogType } from "./catalog.js";
export {
  Client,
  type ClientOptions,
  type RequestOptions,
  type PublishOptions,
  type BatchAck,
  type ChainResult,
  type TraceEntry,
  type CallOptions,
  MaxBatch,
  StreamEvents,
} from "./client.js";
export type { PublishAck } from "./wire.js";
export { Publisher, type PublisherOptions, type PendingAck, type PublisherStats } from "./publisher.js";
export { type Plugin, type PluginSpec, type PluginFilter, type Settings, type Status, type Mode, type Op } from "./admin.js";
export { type DeadLetter, DLQHeaders } from "./dlq.js";
export { AuthStore, type Credentials, type AuthRotation } from "./auth.js";
export { serve, continueWith, halt, nakDelay, type Step, type StepResult, type Delivery, type PluginDef, type ServeOptions, type ExitAction, type Logger } from "./worker.js";
