// Package topology defines every JetStream stream and KV bucket Hookbus
// uses, in one place, creates or updates them (Ensure) and checks that what
// a server has matches (Check). The choices behind each setting are written
// next to it and in docs/decisions.md.
package topology

import (
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/pkg/events"
)

// Config holds the settings an operator may change; everything else is
// fixed below, on purpose.
type Config struct {
	// Replicas of every stream and bucket: 1 on a single server (the
	// all-in-one), 3 in production.
	Replicas int
	// EventsMaxAge is how long published events are kept. Subscribers that
	// are down longer than this miss events.
	EventsMaxAge time.Duration
	// EventsMaxBytes caps HOOKBUS_EVENTS; -1 leaves it to the server's store
	// limit. When full, new publishes are refused (never older, possibly
	// unconsumed events silently dropped).
	EventsMaxBytes int64
	// DLQMaxAge is how long dead letters are kept for inspection and replay.
	DLQMaxAge time.Duration
	// DuplicateWindow is how long a retried publish of the same event
	// (same source and id) is recognised and stored once.
	DuplicateWindow time.Duration
	// MaxEventSize is the largest event HOOKBUS_EVENTS accepts, headers
	// included (the wire contract's size limit, events.Codec): the server
	// refuses larger ones, so every stored event is one readers take.
	MaxEventSize int32
	// MaxMsgSize is the largest message the other streams accept, headers
	// included: room for a dead letter (an event plus its reason) and for
	// results, whose state a chain may grow. It must not exceed the
	// server's max_payload.
	MaxMsgSize int32
}

// deadLetterRoom is what MaxMsgSize must leave above MaxEventSize for the
// headers a dead letter adds.
const deadLetterRoom = 8 << 10

// DefaultConfig returns the all-in-one settings: one replica, events kept
// 7 days, dead letters 30 days, a 10-minute duplicate window.
func DefaultConfig() Config {
	return Config{
		Replicas:        1,
		EventsMaxAge:    7 * 24 * time.Hour,
		EventsMaxBytes:  -1,
		DLQMaxAge:       30 * 24 * time.Hour,
		DuplicateWindow: 10 * time.Minute,
		MaxEventSize:    events.DefaultMaxSize,
		MaxMsgSize:      2 << 20,
	}
}

// Validate reports the first unusable setting.
func (c Config) Validate() error {
	switch {
	case c.Replicas < 1 || c.Replicas > 5:
		return fmt.Errorf("replicas %d: want 1 to 5 (1 on one server, 3 in a cluster)", c.Replicas)
	case c.EventsMaxAge <= 0:
		return fmt.Errorf("events max age %s: must be positive", c.EventsMaxAge)
	case c.EventsMaxBytes == 0 || c.EventsMaxBytes < -1:
		return fmt.Errorf("events max bytes %d: want -1 (server limit) or a positive size", c.EventsMaxBytes)
	case c.DLQMaxAge <= 0:
		return fmt.Errorf("dlq max age %s: must be positive", c.DLQMaxAge)
	case c.DuplicateWindow <= 0 || c.DuplicateWindow > c.EventsMaxAge:
		return fmt.Errorf("duplicate window %s: must be positive and at most the events max age", c.DuplicateWindow)
	case c.MaxEventSize < 1:
		return fmt.Errorf("max event size %d: must be positive", c.MaxEventSize)
	case c.MaxMsgSize < c.MaxEventSize+deadLetterRoom:
		return fmt.Errorf("max msg size %d: must leave %d bytes above the event size limit %d for dead letters", c.MaxMsgSize, deadLetterRoom, c.MaxEventSize)
	}
	return nil
}

// Streams returns the definition of every stream, in a fixed order.
func (c Config) Streams() []jetstream.StreamConfig {
	return []jetstream.StreamConfig{
		{
			Name:        events.StreamEvents,
			Description: "Published CloudEvents, one subject per event type.",
			Subjects:    []string{events.EventSubjects, events.ReplaySubjects},
			// Limits, not work queue: the dispatcher and every notify
			// subscriber read the same message through their own consumer.
			Retention: jetstream.LimitsPolicy,
			MaxAge:    c.EventsMaxAge,
			MaxBytes:  c.EventsMaxBytes,
			MaxMsgs:   -1,
			// Refuse new events when full rather than drop old ones that a
			// subscriber may not have read: the publisher gets an error it
			// can act on, and no acknowledged event disappears early.
			Discard:           jetstream.DiscardNew,
			MaxMsgsPerSubject: -1,
			MaxMsgSize:        c.MaxEventSize,
			Duplicates:        c.DuplicateWindow,
			// Events are an audit trail: single events are never removed by
			// hand; an operator may still purge the stream.
			DenyDelete: true,
			// client.PublishBatch: all or nothing.
			AllowAtomicPublish: true,
			Storage:            jetstream.FileStorage,
			Replicas:           c.Replicas,
		},
		{
			Name:        events.StreamResults,
			Description: "Results of chain runs for published events, deduplicated by event.",
			Subjects:    []string{events.ResultSubjects},
			Retention:   jetstream.LimitsPolicy,
			MaxAge:      24 * time.Hour,
			MaxBytes:    -1,
			MaxMsgs:     -1,
			// Results are a log read soon after they are written; when full
			// the oldest go, so chains never stall on a full result stream.
			Discard:           jetstream.DiscardOld,
			MaxMsgsPerSubject: -1,
			MaxMsgSize:        c.MaxMsgSize,
			Duplicates:        c.DuplicateWindow,
			Storage:           jetstream.FileStorage,
			Replicas:          c.Replicas,
		},
		{
			Name:        events.StreamCommands,
			Description: "Lifecycle and hook commands for the registry.",
			Subjects:    []string{events.CommandSubjects},
			// Work queue: each command is applied by one registry replica and
			// removed once acknowledged.
			Retention: jetstream.WorkQueuePolicy,
			// A command nobody applied within a day is stale.
			MaxAge:   24 * time.Hour,
			MaxBytes: -1,
			MaxMsgs:  100_000,
			Discard:  jetstream.DiscardNew,
			// Per op and plugin (hookbus.cmd.plugin.<op>.<name>): one
			// worker flooding its own commands fills its own subjects, not
			// the stream every plugin's commands wait in.
			MaxMsgsPerSubject:    1000,
			DiscardNewPerSubject: true,
			MaxMsgSize:           c.MaxMsgSize,
			Duplicates:           2 * time.Minute,
			Storage:              jetstream.FileStorage,
			Replicas:             c.Replicas,
		},
		{
			Name:        events.StreamDevices,
			Description: "Messages devices sent (hookbus.device.<id>.in), stored by the gateway before it acknowledges them to the device.",
			Subjects:    []string{events.DeviceInSubjects},
			Retention:   jetstream.LimitsPolicy,
			MaxAge:      7 * 24 * time.Hour,
			MaxBytes:    -1,
			MaxMsgs:     -1,
			// Refuse when full: the device gets no ack and sends again,
			// rather than an acknowledged message disappearing unread.
			Discard:           jetstream.DiscardNew,
			MaxMsgsPerSubject: -1,
			MaxMsgSize:        c.MaxMsgSize,
			Duplicates:        c.DuplicateWindow,
			Storage:           jetstream.FileStorage,
			Replicas:          c.Replicas,
		},
		{
			Name:        events.StreamDevicePushes,
			Description: "Pushes to devices (hookbus.device.<id>.out), kept for a device that is not connected; each is published again on hookbus.device.<id>.push for the gateway replica holding its socket.",
			Subjects:    []string{events.DeviceOutSubjects},
			// Core copies with Nats-Sequence and Nats-Last-Sequence (the
			// subject's previous sequence): the gateway sends them live
			// and reads a gap again from the stream (direct get).
			RePublish: &jetstream.RePublish{Source: events.DeviceOutSubjects, Destination: events.DevicePushRepublish},
			Retention: jetstream.LimitsPolicy,
			// A push older than a day, or behind a device's last 1000,
			// is stale: when full the oldest go, so a device that never
			// connects cannot block the pushes to the others.
			MaxAge:            24 * time.Hour,
			MaxBytes:          1 << 30,
			MaxMsgs:           -1,
			Discard:           jetstream.DiscardOld,
			MaxMsgsPerSubject: 1000,
			MaxMsgSize:        c.MaxMsgSize,
			Duplicates:        c.DuplicateWindow,
			// Catch-up reads by subject without a consumer, on any replica.
			AllowDirect: true,
			Storage:     jetstream.FileStorage,
			Replicas:    c.Replicas,
		},
		{
			Name:        events.StreamLifecycle,
			Description: "What happened to each plugin and hook, as CloudEvents.",
			Subjects:    []string{events.LifecycleSubjects},
			// Each stored event is published again, without a reply
			// subject, on hookbus.notice.lifecycle.<name>: what workers
			// follow. The original carries the registry's publish
			// acknowledgement inbox, which a worker could answer (a
			// forged error slows every command down).
			RePublish: &jetstream.RePublish{Source: events.LifecycleSubjects, Destination: events.LifecycleNoticeSubjects},
			Retention: jetstream.LimitsPolicy,
			MaxAge:    7 * 24 * time.Hour,
			MaxBytes:  -1,
			MaxMsgs:   -1,
			Discard:   jetstream.DiscardOld,
			// The last thousand changes of each plugin are history enough.
			MaxMsgsPerSubject: 1000,
			MaxMsgSize:        c.MaxMsgSize,
			Duplicates:        c.DuplicateWindow,
			Storage:           jetstream.FileStorage,
			Replicas:          c.Replicas,
		},
		{
			Name:        events.StreamDLQ,
			Description: "Events a subscriber could not take, with the reason.",
			Subjects:    []string{events.DLQSubjects},
			Retention:   jetstream.LimitsPolicy,
			MaxAge:      c.DLQMaxAge,
			MaxBytes:    -1,
			MaxMsgs:     -1,
			// A full DLQ refuses: the source stays unacknowledged and is
			// retried, rather than a dead letter being dropped.
			Discard:           jetstream.DiscardNew,
			MaxMsgsPerSubject: -1,
			MaxMsgSize:        c.MaxMsgSize,
			// A dead letter written twice (a redelivery after a crash
			// between the write and the ack) is stored once.
			Duplicates: c.DuplicateWindow,
			Storage:    jetstream.FileStorage,
			Replicas:   c.Replicas,
		},
	}
}

// Buckets returns the definition of every KV bucket, in a fixed order.
func (c Config) Buckets() []jetstream.KeyValueConfig {
	return []jetstream.KeyValueConfig{
		{
			Bucket:      events.BucketPlugins,
			Description: "Plugin state, owned by the registry; the dispatcher watches it.",
			// A short history lets an operator see the last changes of a
			// plugin; compare-and-swap works on the latest revision only.
			History:      10,
			MaxValueSize: 64 << 10,
			MaxBytes:     -1,
			Storage:      jetstream.FileStorage,
			Replicas:     c.Replicas,
		},
		{
			Bucket:       events.BucketHooks,
			Description:  "Hooks bound to subjects, owned by the registry.",
			History:      10,
			MaxValueSize: 64 << 10,
			MaxBytes:     -1,
			Storage:      jetstream.FileStorage,
			Replicas:     c.Replicas,
		},
		{
			Bucket:      events.BucketHookSessions,
			Description: "Owners of temporary hooks, one key per session, refreshed by its heartbeat; the registry removes the hooks of an expired session.",
			// The bucket's max age is the session TTL: a key not written
			// again within it expires (docs/decisions.md).
			History:      1,
			TTL:          events.HookSessionTTL,
			MaxValueSize: 1 << 10,
			MaxBytes:     -1,
			Storage:      jetstream.FileStorage,
			Replicas:     c.Replicas,
		},
		{
			Bucket:      events.BucketHookState,
			Description: "Delivery state of each hook (last attempts, failing since), written by the dispatcher, read by the registry.",
			// Only the latest state matters; writers compare-and-swap on it.
			History:      1,
			MaxValueSize: 64 << 10,
			MaxBytes:     -1,
			Storage:      jetstream.FileStorage,
			Replicas:     c.Replicas,
		},
		{
			Bucket:      events.BucketAuth,
			Description: "Auth credentials and keys, encrypted by the persistence service.",
			// One revision: an old ciphertext is never kept once replaced.
			History:      1,
			MaxValueSize: 1 << 20,
			MaxBytes:     -1,
			Storage:      jetstream.FileStorage,
			Replicas:     c.Replicas,
		},
		{
			Bucket:       events.BucketDevices,
			Description:  "Device sessions and tokens, owned by the gateway.",
			History:      1,
			MaxValueSize: 64 << 10,
			MaxBytes:     -1,
			Storage:      jetstream.FileStorage,
			Replicas:     c.Replicas,
		},
		{
			Bucket:      events.BucketDevicePresence,
			Description: "Connected devices, one key per device, written by the gateway replica holding its socket, refreshed on each pong.",
			// Only the current session matters; the max age lets the keys
			// of a gateway that died expire (docs/protocol.md, presence).
			History:      1,
			TTL:          events.DevicePresenceTTL,
			MaxValueSize: 1 << 10,
			MaxBytes:     -1,
			Storage:      jetstream.FileStorage,
			Replicas:     c.Replicas,
		},
		{
			Bucket:      events.BucketGatewayTokens,
			Description: "HTTP gateway bearer tokens (SHA-256 only), written by hookbus gateway token, watched by the gateway.",
			// One revision: a revoked token's record is not kept.
			History:      1,
			MaxValueSize: 64 << 10,
			MaxBytes:     -1,
			Storage:      jetstream.FileStorage,
			Replicas:     c.Replicas,
		},
	}
}

// Drift is one difference between a definition and the server.
type Drift struct {
	Resource string // "stream HOOKBUS_EVENTS", "bucket hookbus_auth"
	Field    string // "replicas", "storage", "missing"
	Want     string
	Got      string
}

func (d Drift) String() string {
	if d.Field == "missing" {
		return d.Resource + ": missing"
	}
	return fmt.Sprintf("%s: %s is %s, want %s", d.Resource, d.Field, d.Got, d.Want)
}

// ErrDrift is matched by the error Check returns when the server differs.
var ErrDrift = errors.New("topology drift")

// DriftError lists every difference Check found.
type DriftError struct{ Drifts []Drift }

func (e *DriftError) Error() string {
	msg := fmt.Sprintf("topology drift: %d difference(s):", len(e.Drifts))
	for _, d := range e.Drifts {
		msg += "\n  - " + d.String()
	}
	return msg
}

// Is makes errors.Is(err, ErrDrift) true.
func (e *DriftError) Is(target error) bool { return target == ErrDrift }

// Missing reports whether every difference is a missing resource: what a
// service sees when it starts before the one that creates the topology
// (`hookbus serve --topology ensure`), so it waits rather than fails.
func (e *DriftError) Missing() bool {
	for _, d := range e.Drifts {
		if d.Field != "missing" {
			return false
		}
	}
	return len(e.Drifts) > 0
}
