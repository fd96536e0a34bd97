package events

import (
	"encoding/json"
	"strings"
)

// Chain steps, calls and results (docs/protocol.md, "Chains"). A chain step
// is a core NATS request to PluginCallSubject(name), queue group <name>,
// carrying the event in binary mode with its data replaced by the current
// state; the plugin answers with a StepReply.

// Headers of a chain step request.
const (
	// HeaderChainStep is the 1-based position of the step in the chain.
	HeaderChainStep = "Hookbus-Chain-Step"
	// HeaderChainAttempt is how often the dispatcher has run this event's
	// chain (a published event is run again after a dispatcher crash).
	HeaderChainAttempt = "Hookbus-Chain-Attempt"
)

// ExtensionPrivate is the CloudEvents extension attribute that lists, comma
// separated, the top-level fields of the data plugins may not change: after
// every step they are restored as the caller sent them. For catalog types
// with a field named "private" that field is always private.
const ExtensionPrivate = "privatefields"

// Action is a chain step's answer.
type Action string

// Step actions.
const (
	// ActionContinue passes the (possibly changed) state to the next plugin.
	ActionContinue Action = "continue"
	// ActionHalt ends the chain; the step's state is the result.
	ActionHalt Action = "halt"
)

// StepReply is a plugin's answer to one chain step, as JSON.
type StepReply struct {
	// Action is continue or halt; required unless Error is set.
	Action Action `json:"action,omitempty"`
	// State replaces the event's state; absent or null keeps it unchanged.
	State json.RawMessage `json:"state,omitempty"`
	// Error reports that the plugin failed; the plugin's error policy
	// decides what happens (skip, halt or fail).
	Error string `json:"error,omitempty"`
}

// Outcome is what became of one step, in a trace.
type Outcome string

// Step outcomes.
const (
	OutcomeContinued Outcome = "continued" // the plugin answered continue
	OutcomeHalted    Outcome = "halted"    // the plugin answered halt
	OutcomeSkipped   Outcome = "skipped"   // the step failed; policy skip: went on with the state before it
	OutcomeHaltedErr Outcome = "halted_on_error"
	OutcomeFailed    Outcome = "failed" // the step failed; policy fail: the call failed
)

// TraceStep records one step of a chain run.
type TraceStep struct {
	Plugin     string  `json:"plugin"`
	Outcome    Outcome `json:"outcome"`
	DurationMS float64 `json:"duration_ms"`
	// Error says why a step failed: the plugin's error, "timeout after 2s",
	// "no plugin worker is running", an unreadable answer.
	Error string `json:"error,omitempty"`
}

// ChainResult is the answer to a call on hookbus.call.<type>, and the data of
// the result of a published event on hookbus.result.<type>.
type ChainResult struct {
	EventID     string          `json:"event_id"`
	EventSource string          `json:"event_source"`
	EventType   string          `json:"event_type"`
	State       json.RawMessage `json:"state"`
	Halted      bool            `json:"halted"`
	HaltedBy    string          `json:"halted_by,omitempty"`
	Trace       []TraceStep     `json:"trace"`
	// Error is set when the call failed: a plugin with policy fail failed
	// (Code "plugin_failed", State is the state before that step), or the
	// request was refused (Code "invalid").
	Error *Error `json:"error,omitempty"`
}

// Error codes of chain calls.
const (
	CodePluginFailed ErrorCode = "plugin_failed"
)

// ResultType is the CloudEvents type of a chain result.
const ResultType = "hookbus.chain.result"

// ResultSource is the CloudEvents source of chain results.
const ResultSource = "/hookbus/dispatcher"

// Subjects and names of the dispatcher and its subscribers.
const (
	// DispatcherConsumer names the dispatcher as a subscriber: its dead
	// letters are on hookbus.dlq.hookbus-dispatcher. Before chain
	// consumers (ChainConsumer) it was also the one durable consumer that
	// read every published event; a dispatcher finding that consumer
	// starts its chain consumers after what it acknowledged, then deletes
	// it.
	DispatcherConsumer = "hookbus-dispatcher"
	// ChainConsumerPrefix starts the name of every chain consumer.
	ChainConsumerPrefix = "chain-"
	// DispatcherQueue is the queue group of hookbus.call.> subscriptions.
	DispatcherQueue = "hookbus-dispatcher"
	// CallSubjects captures every synchronous call.
	CallSubjects = "hookbus.call.>"
	// ReplaySubjects captures events resent from the DLQ to one subscriber
	// (stream HOOKBUS_EVENTS; only that subscriber's consumer reads them).
	ReplaySubjects = "hookbus.replay.>"
)

// ChainConsumer is the durable consumer on HOOKBUS_EVENTS through which
// the dispatcher runs the chain of the published events of type typ, while
// typ has running chain plugins: "chain-" and the type with each '.'
// written '~' (a consumer name has no dots). Types with no chain plugin
// have no such consumer: the dispatcher never reads their events.
func ChainConsumer(typ string) string {
	return ChainConsumerPrefix + strings.ReplaceAll(typ, ".", "~")
}

// NotifyConsumer is the durable consumer of notify plugin name on
// HOOKBUS_EVENTS.
func NotifyConsumer(name string) string { return "notify-" + name }

// ReplayConsumer is the durable consumer of notify plugin name on
// HOOKBUS_EVENTS that delivers its replayed dead letters
// (hookbus.replay.<name>), beside its notify queue.
func ReplayConsumer(name string) string { return "replay-" + name }

// ReplaySubject is where an event is resent from the DLQ to subscriber:
// hookbus.replay.<subscriber>.
func ReplaySubject(subscriber string) (string, error) {
	if err := ValidateName("subscriber", subscriber); err != nil {
		return "", err
	}
	return SubjectRoot + ".replay." + subscriber, nil
}

// Headers of a dead letter on hookbus.dlq.<subscriber>; the rest of the
// message (headers and data) is the original.
const (
	HeaderDLQReason     = "Hookbus-Dlq-Reason"
	HeaderDLQSubscriber = "Hookbus-Dlq-Subscriber"
	HeaderDLQSubject    = "Hookbus-Dlq-Subject"    // the original subject
	HeaderDLQStreamSeq  = "Hookbus-Dlq-Stream-Seq" // the original's sequence in HOOKBUS_EVENTS
	HeaderDLQDeliveries = "Hookbus-Dlq-Deliveries" // how often it was delivered
	// HeaderDLQBody is set on a dead letter by reference: the original was
	// too large to copy; its data is message Hookbus-Dlq-Stream-Seq of
	// HOOKBUS_EVENTS (while that keeps it). The value starts with
	// DLQBodyOmitted, then the original data's size.
	HeaderDLQBody = "Hookbus-Dlq-Body"
	// DLQBodyOmitted starts the value of HeaderDLQBody.
	DLQBodyOmitted = "omitted"
)
