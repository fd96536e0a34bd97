package events

import (
	"encoding/json"
	"fmt"
	"maps"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
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

// PrivateFields returns the private top-level fields of an event: those
// named in its privatefields extension, plus "private" for catalog types
// that declare it.
func PrivateFields(typ string, extension any) []string {
	var out []string
	if s, ok := extension.(string); ok {
		for f := range strings.SplitSeq(s, ",") {
			if f = strings.TrimSpace(f); f != "" {
				out = append(out, f)
			}
		}
	}
	if entry, ok := LookupCatalog(typ); ok {
		for _, f := range entry.Fields {
			if f.Name == "private" {
				out = append(out, "private")
			}
		}
	}
	return out
}

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

// SubscriberOf returns the notify plugin whose consumer (notify queue or
// replay consumer) is named consumer.
func SubscriberOf(consumer string) (string, bool) {
	if name, ok := strings.CutPrefix(consumer, NotifyConsumer("")); ok {
		return name, true
	}
	return strings.CutPrefix(consumer, ReplayConsumer(""))
}

// NotifyConsumerConfig is the durable consumer of notify plugin p on
// HOOKBUS_EVENTS, as the dispatcher creates it (docs/protocol.md, "Notify
// queues"): filtered to the plugin's event subject alone, explicit acks,
// max_deliver + 1 deliveries (the spare lets a worker dead-letter an event
// whose last try died with its worker), the plugin's backoff with its first
// value as the ack wait, delivering from p.UpdatedAt (the start) or, when
// that is zero, from the beginning of the stream.
func NotifyConsumerConfig(p Plugin) (jetstream.ConsumerConfig, error) {
	subject, err := EventSubject(p.Event)
	if err != nil {
		return jetstream.ConsumerConfig{}, err
	}
	return subscriberConfig(p, NotifyConsumer(p.Name), subject, fmt.Sprintf("Notify queue of plugin %s (event %s).", p.Name, p.Event), 1000), nil
}

// ReplayConsumerConfig is the replay consumer of notify plugin p
// (ReplayConsumer): as its notify queue, filtered to hookbus.replay.<name>.
// Replays have a consumer of their own so that the notify queue, which
// takes every event, has one filter subject: a consumer with two takes the
// server's slower path for every delivery.
func ReplayConsumerConfig(p Plugin) (jetstream.ConsumerConfig, error) {
	subject, err := ReplaySubject(p.Name)
	if err != nil {
		return jetstream.ConsumerConfig{}, err
	}
	return subscriberConfig(p, ReplayConsumer(p.Name), subject, fmt.Sprintf("Replayed dead letters of plugin %s.", p.Name), 100), nil
}

func subscriberConfig(p Plugin, name, subject, description string, maxAckPending int) jetstream.ConsumerConfig {
	st := p.Settings.WithDefaults()
	backoff := st.Backoff()
	cfg := jetstream.ConsumerConfig{
		Durable:       name,
		Description:   description,
		FilterSubject: subject,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       backoff[0],
		MaxDeliver:    st.MaxDeliver + 1,
		BackOff:       backoff,
		MaxAckPending: maxAckPending,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
	if !p.UpdatedAt.IsZero() {
		start := p.UpdatedAt
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &start
	}
	return cfg
}

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

// ExhaustedReason is the dead-letter reason of an event no worker of
// subscriber answered in n deliveries (a worker crashing on it each time).
// Workers and the dispatcher's backstop both use it.
func ExhaustedReason(subscriber string, n uint64) string {
	return fmt.Sprintf("no worker of %s answered in %d deliveries", subscriber, n)
}

// DLQMsgID is the deduplication id of the dead letter of stream sequence
// seq for subscriber: a dead letter written twice (around a crash) is stored
// once.
func DLQMsgID(subscriber string, seq uint64) string {
	return fmt.Sprintf("dlq-%s-%d", subscriber, seq)
}

// DeadLetter builds the dead letter of a message a subscriber could not
// take: the original headers and data, the original's own deduplication
// and expectation headers removed, the Hookbus-Dlq-* headers added, on
// hookbus.dlq.<subscriber>, with Nats-Msg-Id DLQMsgID(subscriber, seq).
// When that would be more than maxSize bytes on the wire (0: no limit; pass
// the connection's MaxPayload), the dead letter is by reference: it keeps
// the headers but not the data, and Hookbus-Dlq-Body says so; the original
// stays message seq of HOOKBUS_EVENTS. Publish it with a JetStream publish
// and acknowledge the original only once that publish is acknowledged.
func DeadLetter(subscriber string, subject string, h nats.Header, data []byte, seq uint64, deliveries uint64, reason string, maxSize int) (*nats.Msg, error) {
	dlq, err := DLQSubject(subscriber)
	if err != nil {
		return nil, err
	}
	out := nats.Header{}
	for k, vs := range h {
		if strings.HasPrefix(strings.ToLower(k), "nats-") || strings.EqualFold(k, HeaderDLQBody) {
			continue
		}
		out[k] = append([]string(nil), vs...)
	}
	reason = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(reason, "?"))
	if len(reason) > 1024 {
		reason = strings.ToValidUTF8(reason[:1024], "")
	}
	own := nats.Header{}
	own.Set(HeaderDLQReason, reason)
	own.Set(HeaderDLQSubscriber, subscriber)
	own.Set(HeaderDLQSubject, subject)
	own.Set(HeaderDLQStreamSeq, strconv.FormatUint(seq, 10))
	own.Set(HeaderDLQDeliveries, strconv.FormatUint(deliveries, 10))
	own.Set(HeaderMsgID, DLQMsgID(subscriber, seq))
	maps.Copy(out, own)
	if maxSize > 0 && WireSize(out, data) > maxSize {
		// By reference: without the data, and without the original
		// headers too when they alone are too large.
		omitted := fmt.Sprintf("%s: %d bytes", DLQBodyOmitted, len(data))
		if data = nil; WireSize(out, nil)+len(HeaderDLQBody)+len(omitted)+4 > maxSize {
			out = own
			omitted += ", headers omitted"
		}
		out.Set(HeaderDLQBody, omitted)
	}
	return &nats.Msg{Subject: dlq, Header: out, Data: data}, nil
}
