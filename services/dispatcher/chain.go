package dispatcher

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"

	"github.com/hookbus/hookbus/internal/stepheader"
	"github.com/hookbus/hookbus/pkg/events"
)

// runChain runs the chain of e's type: one request per running chain
// plugin, in chain order, each bounded by the plugin's step timeout, with
// its error policy applied to failures (an error answer, a timeout, no
// worker, an unreadable answer). Private fields are restored after every
// step. It never fails as a whole: a failure is in the result.
func (s *Service) runChain(ctx context.Context, e *event.Event, chain []events.Plugin, attempt uint64) events.ChainResult {
	res := events.ChainResult{EventID: e.ID(), EventSource: e.Source(), EventType: e.Type(), State: e.Data(), Trace: []events.TraceStep{}}
	if len(res.State) == 0 {
		res.State = json.RawMessage("null")
	}
	if !json.Valid(res.State) {
		res.State = json.RawMessage("null")
		res.Error = &events.Error{Code: events.CodeInvalid, Message: "the event's data must be JSON to run a chain on it"}
		return res
	}
	if len(chain) == 0 {
		return res
	}
	private := privateFields(e.Type(), e.Extensions()[events.ExtensionPrivate])
	original := res.State

	base, err := stepHeader(e)
	if err != nil {
		res.Error = &events.Error{Code: events.CodeInvalid, Message: err.Error()}
		return res
	}
	for i, p := range chain {
		start := time.Now()
		reply, err := s.step(ctx, p, base, res.State, i+1, attempt)
		step := events.TraceStep{Plugin: p.Name, DurationMS: float64(time.Since(start).Microseconds()) / 1000}
		if err == nil {
			var next json.RawMessage
			next, err = nextState(res.State, reply, original, private)
			if err == nil {
				res.State = next
				if reply.Action == events.ActionHalt {
					step.Outcome = events.OutcomeHalted
					res.Trace = append(res.Trace, step)
					res.Halted, res.HaltedBy = true, p.Name
					return res
				}
				step.Outcome = events.OutcomeContinued
				res.Trace = append(res.Trace, step)
				continue
			}
		}
		step.Error = err.Error()
		switch p.Settings.WithDefaults().OnError {
		case events.OnErrorHalt:
			step.Outcome = events.OutcomeHaltedErr
			res.Trace = append(res.Trace, step)
			res.Halted, res.HaltedBy = true, p.Name
			return res
		case events.OnErrorFail:
			step.Outcome = events.OutcomeFailed
			res.Trace = append(res.Trace, step)
			res.Error = &events.Error{Code: events.CodePluginFailed, Message: fmt.Sprintf("plugin %s: %s", p.Name, step.Error)}
			return res
		default:
			step.Outcome = events.OutcomeSkipped
			res.Trace = append(res.Trace, step)
		}
	}
	return res
}

// stepHeader is the binary-mode header of e (validated when it was
// decoded) with the JSON content type of the chain's state; each step
// copies it. The state is not checked against a catalog schema at each
// step: plugins may add to it.
func stepHeader(e *event.Event) (nats.Header, error) {
	h, err := stepheader.Binary(e)
	if err != nil {
		return nil, err
	}
	h.Set(events.HeaderContentType, event.ApplicationJSON)
	return h, nil
}

// errNoWorker and friends are the step failures a trace names.
var errNoWorker = errors.New("no plugin worker is running")

// step sends one chain step and reads the answer.
func (s *Service) step(ctx context.Context, p events.Plugin, base nats.Header, state json.RawMessage, n int, attempt uint64) (events.StepReply, error) {
	subject, err := events.PluginCallSubject(p.Name)
	if err != nil {
		return events.StepReply{}, err
	}
	msg := &nats.Msg{Subject: subject, Header: make(nats.Header, len(base)+2), Data: state}
	for k, v := range base {
		msg.Header[k] = v
	}
	msg.Header.Set(events.HeaderChainStep, strconv.Itoa(n))
	msg.Header.Set(events.HeaderChainAttempt, strconv.FormatUint(attempt, 10))
	timeout := p.Settings.WithDefaults().StepTimeout()
	sctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	answer, err := s.nc.RequestMsgWithContext(sctx, msg)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return events.StepReply{}, errNoWorker
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
		return events.StepReply{}, fmt.Errorf("timeout after %s", timeout)
	case err != nil:
		return events.StepReply{}, err
	}
	var reply events.StepReply
	if err := json.Unmarshal(answer.Data, &reply); err != nil {
		return reply, fmt.Errorf("unreadable answer: %v", err)
	}
	if reply.Error != "" {
		return reply, errors.New(reply.Error)
	}
	if reply.Action != events.ActionContinue && reply.Action != events.ActionHalt {
		return reply, fmt.Errorf("answer has action %q, want continue or halt", reply.Action)
	}
	return reply, nil
}

// nextState is the state after a step: the plugin's state, or the current
// one if it sent none, with the private fields put back as the caller sent
// them.
func nextState(cur json.RawMessage, reply events.StepReply, original json.RawMessage, private []string) (json.RawMessage, error) {
	next := reply.State
	if len(bytes.TrimSpace(next)) == 0 || bytes.Equal(bytes.TrimSpace(next), []byte("null")) {
		next = cur
	}
	if !json.Valid(next) {
		return nil, errors.New("answer's state is not valid JSON")
	}
	if len(private) == 0 {
		return next, nil
	}
	var orig, got map[string]json.RawMessage
	if err := json.Unmarshal(original, &orig); err != nil {
		return next, nil // private fields only exist in an object
	}
	if err := json.Unmarshal(next, &got); err != nil || got == nil {
		return nil, errors.New("answer's state is not a JSON object, but the event has private fields")
	}
	changed := false
	for _, f := range private {
		ov, had := orig[f]
		nv, has := got[f]
		switch {
		case had && (!has || !bytes.Equal(ov, nv)):
			got[f] = ov
			changed = true
		case !had && has:
			delete(got, f)
			changed = true
		}
	}
	if !changed {
		return next, nil
	}
	return json.Marshal(got)
}

// privateFields returns the private top-level fields of an event: those
// named in its privatefields extension, plus "private" for catalog types
// that declare it.
func privateFields(typ string, extension any) []string {
	var out []string
	if s, ok := extension.(string); ok {
		for f := range strings.SplitSeq(s, ",") {
			if f = strings.TrimSpace(f); f != "" {
				out = append(out, f)
			}
		}
	}
	if entry, ok := events.LookupCatalog(typ); ok {
		for _, f := range entry.Fields {
			if f.Name == "private" {
				out = append(out, "private")
			}
		}
	}
	return out
}
