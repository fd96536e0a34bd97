package dispatcher

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hookbus/hookbus/internal/microerr"
	"github.com/hookbus/hookbus/pkg/events"
)

// serveCalls answers synchronous calls on hookbus.call.> (queue group
// hookbus-dispatcher, so replicas share them) until ctx ends, running up to
// Concurrency chains at once. Every call with an inbox reply subject is
// answered: calls taken while the dispatcher stops are answered
// "unavailable". A message with no reply, or a reply that is not an inbox
// (a JetStream push consumer's delivery: docs/security.md), is dropped.
func (s *Service) serveCalls(ctx context.Context) error {
	sem := make(chan struct{}, s.cfg.Concurrency)
	var wg sync.WaitGroup
	defer wg.Wait()
	sub, err := s.nc.QueueSubscribe(events.CallSubjects, events.DispatcherQueue, func(m *nats.Msg) {
		if err := events.CheckRequestReply(m.Reply); err != nil {
			s.log.Debug("call refused", "subject", m.Subject, "err", err)
			return
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			s.respond(m, events.ChainResult{Trace: []events.TraceStep{}, Error: &events.Error{Code: events.CodeUnavailable, Message: "the dispatcher is stopping: call again"}})
			return
		}
		wg.Go(func() {
			defer func() { <-sem }()
			s.answerCall(ctx, m)
		})
	})
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", events.CallSubjects, err)
	}
	// Take all calls the connection can buffer: the semaphore, not the
	// subscription, limits the work.
	_ = sub.SetPendingLimits(-1, 64<<20)
	// Ready means reachable: the server has the subscription (or,
	// disconnected, will have it on reconnecting).
	if err := s.nc.FlushTimeout(10 * time.Second); err != nil {
		s.log.Warn("call subscription not confirmed by the server yet", "err", err)
	}
	s.calls.Store(true)
	<-ctx.Done()
	s.calls.Store(false)
	return sub.Drain()
}

func (s *Service) answerCall(ctx context.Context, m *nats.Msg) {
	var res events.ChainResult
	e, err := s.codec.Decode(m.Header, m.Data)
	switch {
	case err != nil:
		res = events.ChainResult{Trace: []events.TraceStep{}, Error: &events.Error{Code: events.CodeInvalid, Message: err.Error()}}
	case !onSubject(events.CallSubject, e.Type(), m.Subject):
		res = events.ChainResult{EventID: e.ID(), EventSource: e.Source(), EventType: e.Type(), Trace: []events.TraceStep{},
			Error: &events.Error{Code: events.CodeInvalid, Message: fmt.Sprintf("event type %q does not match the call subject %q", e.Type(), m.Subject)}}
	default:
		if err := s.plugins.Fresh(ctx); err != nil {
			res = events.ChainResult{EventID: e.ID(), EventSource: e.Source(), EventType: e.Type(), Trace: []events.TraceStep{},
				Error: &events.Error{Code: events.CodeUnavailable, Message: "the plugin table could not be read: " + err.Error()}}
			break
		}
		res = s.runChain(ctx, e, s.routes.chain(e.Type()), 1)
	}
	s.respond(m, res)
}

// respond answers call m with res, with micro's error headers when it
// failed (docs/protocol.md, "Errors"). An answer that cannot be sent as it is
// (too large for the connection) is replaced by an error answer, so the
// caller always hears back.
func (s *Service) respond(m *nats.Msg, res events.ChainResult) {
	b, err := json.Marshal(res)
	if err == nil && len(b) > int(s.nc.MaxPayload()) {
		err = fmt.Errorf("the answer is %d bytes, more than the connection's limit %d", len(b), s.nc.MaxPayload())
	}
	if err != nil {
		s.log.Error("call answer replaced by an error", "subject", m.Subject, "err", err)
		res.State = json.RawMessage("null")
		res.Error = &events.Error{Code: events.CodeInternal, Message: "the chain ran but its answer could not be sent: " + err.Error()}
		if b, err = json.Marshal(res); err != nil {
			return // only strings and null left: cannot fail
		}
	}
	answer := &nats.Msg{Data: b}
	if res.Error != nil {
		answer.Header = microerr.Header(res.Error)
	}
	if err := m.RespondMsg(answer); err != nil {
		s.log.Warn("answer call", "subject", m.Subject, "err", err)
	}
}

// onSubject reports whether subject is the one the wire contract gives an
// event of type typ (subjectOf is events.EventSubject or CallSubject).
func onSubject(subjectOf func(string) (string, error), typ, subject string) bool {
	want, err := subjectOf(typ)
	return err == nil && want == subject
}
