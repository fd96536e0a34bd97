package client

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime/debug"
	"strconv"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"

	"github.com/hookbus/hookbus/pkg/events"
)

// ChainHandler answers one chain step. It returns Continue or Halt with the
// new state, or an error, which the dispatcher treats under the plugin's
// error policy (skip, halt or fail). ctx ends at the plugin's step timeout:
// after that the dispatcher no longer waits for the answer.
type ChainHandler func(ctx context.Context, s *Step) (StepResult, error)

// Step is one chain step sent to a plugin worker.
type Step struct {
	// Event is the event the chain runs for; its data is the current
	// state (JSON), as the previous plugins left it. Read it with
	// Event.DataAs.
	Event event.Event
	// Number is the 1-based position of the step in the chain
	// (events.HeaderChainStep).
	Number int
	// Attempt is how often the dispatcher has run this event's chain; a
	// published event runs again after a dispatcher crash, so handlers
	// should be idempotent per event id (events.HeaderChainAttempt).
	Attempt int
}

// StepResult is a chain handler's answer. The zero value continues with
// the state unchanged.
type StepResult struct {
	halt  bool
	state any
}

// Continue passes state to the next plugin. state is encoded with
// encoding/json (a json.RawMessage is sent as it is); nil keeps the state
// unchanged.
func Continue(state any) StepResult { return StepResult{state: state} }

// Halt ends the chain: state becomes the call's result and later plugins
// are not called. nil keeps the state unchanged.
func Halt(state any) StepResult { return StepResult{halt: true, state: state} }

// reply turns r into the wire answer.
func (r StepResult) reply() events.StepReply {
	out := events.StepReply{Action: events.ActionContinue}
	if r.halt {
		out.Action = events.ActionHalt
	}
	if r.state == nil {
		return out
	}
	b, err := json.Marshal(r.state)
	if err != nil {
		return events.StepReply{Error: "encode state: " + err.Error()}
	}
	out.State = b
	return out
}

// respond sends a step's reply. Every step request gets one: an
// undecodable request, a handler error and a panic each become a StepReply
// with Error (see step).
func (w *worker) respond(m *nats.Msg, reply events.StepReply) {
	if m.Reply == "" {
		w.log.Warn("chain step without a reply subject", "subject", m.Subject)
		return
	}
	b, err := json.Marshal(reply)
	if err != nil { // a StepReply always encodes; keep the promise of a reply anyway
		b = []byte(`{"error":"encode reply"}`)
	}
	if err := m.Respond(b); err != nil {
		w.log.Warn("send chain step reply", "subject", m.Subject, "err", err)
	}
}

// step runs the chain handler for one step request.
func (w *worker) step(m *nats.Msg) events.StepReply {
	e, err := w.c.codec.Decode(m.Header, m.Data)
	if err != nil {
		w.log.Warn("invalid chain step request", "subject", m.Subject, "err", err)
		return events.StepReply{Error: "invalid step request: " + err.Error()}
	}
	s := &Step{
		Event:   *e,
		Number:  headerInt(m.Header, events.HeaderChainStep),
		Attempt: headerInt(m.Header, events.HeaderChainAttempt),
	}
	ctx, cancel := context.WithTimeout(w.handlerCtx, w.settings().StepTimeout())
	defer cancel()
	res, err := w.callChain(ctx, s)
	if err != nil {
		w.log.Debug("chain step failed", "event_id", e.ID(), "event_type", e.Type(), "err", err)
		msg := err.Error()
		if msg == "" {
			msg = "handler failed"
		}
		return events.StepReply{Error: msg}
	}
	return res.reply()
}

// callChain runs the handler, turning a panic into an error.
func (w *worker) callChain(ctx context.Context, s *Step) (res StepResult, err error) {
	defer w.recoverHandler(&err, s.Event.ID())
	w.busy.Add(1)
	defer w.busy.Add(-1)
	return w.p.Chain(ctx, s)
}

// recoverHandler, deferred by a handler's caller, turns the handler's panic
// into *err and logs it with its stack.
func (w *worker) recoverHandler(err *error, eventID string) {
	if r := recover(); r != nil {
		w.log.Error("handler panicked", "event_id", eventID, "panic", r, "stack", string(debug.Stack()))
		*err = fmt.Errorf("panic: %v", r)
	}
}

// headerInt reads a numeric header (names compared without regard to
// case); 0 when absent or not a number.
func headerInt(h nats.Header, name string) int {
	n, err := strconv.Atoi(events.HeaderValue(h, name))
	if err != nil {
		return 0
	}
	return n
}
