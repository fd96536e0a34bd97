package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hookbus/hookbus/internal/microerr"
	"github.com/hookbus/hookbus/internal/natstest"
	"github.com/hookbus/hookbus/pkg/client"
	"github.com/hookbus/hookbus/pkg/events"
)

// fakeDispatcher answers calls on hookbus.call.<testType> in the
// dispatchers' queue group with answer, and hands over each request.
func fakeDispatcher(t *testing.T, nc *nats.Conn, answer events.ChainResult) <-chan *nats.Msg {
	t.Helper()
	reqs := make(chan *nats.Msg, 10)
	subject, err := events.CallSubject(testType)
	if err != nil {
		t.Fatal(err)
	}
	sub, err := nc.QueueSubscribe(subject, events.DispatcherQueue, func(m *nats.Msg) {
		reqs <- m
		b, _ := json.Marshal(answer)
		reply := &nats.Msg{Data: b}
		if answer.Error != nil { // as the dispatcher answers errors
			reply.Header = microerr.Header(answer.Error)
		}
		_ = m.RespondMsg(reply)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return reqs
}

func TestCall(t *testing.T) {
	t.Parallel()
	ok := events.ChainResult{
		EventID: "call-1", EventSource: "/test", EventType: testType,
		State:  json.RawMessage(`{"n":2}`),
		Trace:  []events.TraceStep{{Plugin: "p", Outcome: events.OutcomeContinued, DurationMS: 1.5}},
		Halted: false,
	}
	failed := ok
	failed.Trace = []events.TraceStep{{Plugin: "p", Outcome: events.OutcomeFailed, Error: "database down"}}
	failed.Error = &events.Error{Code: events.CodePluginFailed, Message: "plugin p failed: database down"}
	refused := events.ChainResult{Error: &events.Error{Code: events.CodeInvalid, Message: "state is not JSON"}}

	tests := []struct {
		name       string
		dispatcher *events.ChainResult // nil: none runs
		opts       []client.Option
		wantErr    []error // errors.Is targets
		wantState  string
		wantExt    any // the privatefields extension the dispatcher saw
	}{
		{name: "no dispatcher", wantErr: []error{client.ErrNoDispatcher, nats.ErrNoResponders}},
		{name: "result", dispatcher: &ok, wantState: `{"n":2}`},
		{name: "private fields travel as an extension", dispatcher: &ok, opts: []client.Option{client.Private("user_id", "token")},
			wantState: `{"n":2}`, wantExt: "user_id,token"},
		{name: "a plugin failed: the error and the result", dispatcher: &failed, wantErr: []error{client.ErrPluginFailed}, wantState: `{"n":2}`},
		{name: "refused as invalid", dispatcher: &refused, wantErr: []error{events.ErrInvalid}, wantState: "null"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := newBus(t, false)
			var reqs <-chan *nats.Msg
			if tt.dispatcher != nil {
				reqs = fakeDispatcher(t, natstest.Connect(t, b.srv), *tt.dispatcher)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			e := testEvent("call-1", map[string]int{"n": 1})
			res, err := b.client.Call(ctx, e, tt.opts...)
			for _, target := range tt.wantErr {
				if !errors.Is(err, target) {
					t.Errorf("Call error = %v, want it to match %v", err, target)
				}
			}
			if len(tt.wantErr) == 0 && err != nil {
				t.Fatalf("Call = %v", err)
			}
			if string(res.State) != tt.wantState {
				t.Errorf("state = %s, want %s", res.State, tt.wantState)
			}
			var ce *client.Error
			if tt.dispatcher != nil && tt.dispatcher.Error != nil && (!errors.As(err, &ce) || ce.Code != tt.dispatcher.Error.Code || ce.Message != tt.dispatcher.Error.Message) {
				t.Errorf("Call error = %#v, want a *client.Error with code %s", err, tt.dispatcher.Error.Code)
			}
			if reqs == nil {
				return
			}
			m := <-reqs
			got, err := events.Decode(m.Header, m.Data)
			if err != nil {
				t.Fatalf("the request is not a valid event: %v", err)
			}
			if got.ID() != "call-1" || got.Type() != testType || string(got.Data()) != `{"n":1}` || m.Header.Get("ce-id") != "call-1" {
				t.Errorf("request = %v, want the event in binary mode", got)
			}
			if ext := got.Extensions()[events.ExtensionPrivate]; ext != tt.wantExt {
				t.Errorf("privatefields = %v, want %v", ext, tt.wantExt)
			}
			if _, set := e.Extensions()[events.ExtensionPrivate]; set {
				t.Error("Call changed the caller's event")
			}
		})
	}
}

func TestCallInvalidEvent(t *testing.T) {
	t.Parallel()
	b := newBus(t, false)
	e := testEvent("", nil)
	if _, err := b.client.Call(t.Context(), e); !errors.Is(err, events.ErrInvalid) {
		t.Errorf("Call without an id = %v, want events.ErrInvalid", err)
	}
}
