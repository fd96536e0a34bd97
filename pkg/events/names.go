package events

// JetStream streams and KV buckets of the wire contract (DESIGN §3). Their
// settings live in internal/topology; the names are part of the contract
// because clients, NATS permissions and operators refer to them.
const (
	StreamEvents    = "HOOKBUS_EVENTS"
	StreamResults   = "HOOKBUS_RESULTS"
	StreamCommands  = "HOOKBUS_COMMANDS"
	StreamLifecycle = "HOOKBUS_LIFECYCLE"
	StreamDLQ       = "HOOKBUS_DLQ"

	BucketPlugins = "hookbus_plugins"
	BucketHooks   = "hookbus_hooks"
	BucketAuth    = "hookbus_auth"
	BucketDevices = "hookbus_devices"
	// BucketGatewayTokens holds the HTTP gateway's bearer tokens, one
	// key per token name, each stored only as its SHA-256.
	BucketGatewayTokens = "hookbus_gateway_tokens"
	// BucketHookSessions holds one key per live owner of temporary hooks
	// (its session id), refreshed by its heartbeat; a key older than
	// HookSessionTTL expires, and the registry removes the session's hooks.
	BucketHookSessions = "hookbus_hook_sessions"
)
