package dispatcher_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/hookbus/hookbus/internal/natstest"
	"github.com/hookbus/hookbus/pkg/events"
	"github.com/hookbus/hookbus/services/dispatcher"
)

// env is a server with the topology, a dispatcher, and helpers to store
// plugin state and to play plugin workers over the wire.
type env struct {
	t   testing.TB
	srv *server.Server
	nc  *nats.Conn
	js  jetstream.JetStream
	kv  jetstream.KeyValue
}

func newEnv(t testing.TB) *env {
	t.Helper()
	srv, js := natstest.RunTopology(t)
	kv, err := js.KeyValue(t.Context(), events.BucketPlugins)
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, srv: srv, nc: natstest.Connect(t, srv), js: js, kv: kv}
}

// runDispatcher starts a dispatcher on its own connection and waits until
// it is ready; stop ends it and waits for Run to return.
func (e *env) runDispatcher() (stop func()) {
	e.t.Helper()
	return e.runDispatcherWith(nil)
}

// runDispatcherWith is runDispatcher with settings changed by set.
func (e *env) runDispatcherWith(set func(*dispatcher.Config)) (stop func()) {
	e.t.Helper()
	cfg := dispatcher.DefaultConfig()
	cfg.RetryDelay = 50 * time.Millisecond
	cfg.MaxRetryDelay = 200 * time.Millisecond
	cfg.ConsumerCheck = 200 * time.Millisecond
	// A stopped dispatcher's last pull request may still be open on the
	// server and take a redelivered event into the void; the event then
	// comes back after the ack wait, short here.
	cfg.AckWait = 2 * time.Second
	if set != nil {
		set(&cfg)
	}
	svc, err := dispatcher.New(cfg, natstest.Connect(e.t, e.srv), nil)
	if err != nil {
		e.t.Fatal(err)
	}
	return natstest.RunService(e.t, svc)
}

// put stores plugin state as the registry would.
func (e *env) put(ps ...events.Plugin) {
	e.t.Helper()
	for _, p := range ps {
		if p.Mode == "" {
			p.Mode = events.ModeChain
		}
		if p.Status == "" {
			p.Status = events.StatusStarted
		}
		if p.UpdatedAt.IsZero() {
			p.UpdatedAt = time.Now()
		}
		b, err := json.Marshal(p)
		if err != nil {
			e.t.Fatal(err)
		}
		if _, err := e.kv.Put(e.t.Context(), p.Name, b); err != nil {
			e.t.Fatal(err)
		}
	}
}

// worker answers chain steps for plugin name with f; it records the steps
// it saw.
func (e *env) worker(name string, f func(state map[string]any) events.StepReply) *[]string {
	e.t.Helper()
	var mu sync.Mutex
	seen := &[]string{}
	subject, _ := events.PluginCallSubject(name)
	sub, err := e.nc.QueueSubscribe(subject, name, func(m *nats.Msg) {
		var state map[string]any
		_ = json.Unmarshal(m.Data, &state)
		reply := events.StepReply{Action: events.ActionContinue} // waitChain's probe passes everyone
		if state["probe"] != true {
			mu.Lock()
			*seen = append(*seen, m.Header.Get(events.HeaderChainStep))
			mu.Unlock()
			reply = f(state)
		}
		b, _ := json.Marshal(reply)
		_ = m.Respond(b)
	})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := e.nc.Flush(); err != nil {
		e.t.Fatal(err)
	}
	return seen
}

// appender continues with its name appended to state["seen"].
func appender(name string) func(map[string]any) events.StepReply {
	return func(state map[string]any) events.StepReply {
		seen, _ := state["seen"].([]any)
		state["seen"] = append(seen, name)
		b, _ := json.Marshal(state)
		return events.StepReply{Action: events.ActionContinue, State: b}
	}
}

func newEvent(typ, id string, data any) event.Event {
	e := event.New()
	e.SetID(id)
	e.SetSource("/test")
	e.SetType(typ)
	if err := e.SetData(event.ApplicationJSON, data); err != nil {
		panic(err)
	}
	return e
}

// call sends a synchronous call and decodes the result.
func (e *env) call(ev event.Event) events.ChainResult {
	e.t.Helper()
	subject, err := events.CallSubject(ev.Type())
	if err != nil {
		e.t.Fatal(err)
	}
	msg, err := events.Encode(subject, &ev)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(e.t.Context(), 10*time.Second)
	defer cancel()
	answer, err := e.nc.RequestMsgWithContext(ctx, msg)
	if err != nil {
		e.t.Fatal(err)
	}
	var res events.ChainResult
	if err := json.Unmarshal(answer.Data, &res); err != nil {
		e.t.Fatal(err)
	}
	return res
}

// waitChain polls calls until the route table has n plugins for typ.
func (e *env) waitChain(typ string, n int) {
	e.t.Helper()
	natstest.Eventually(e.t, 5*time.Second, func() error {
		res := e.call(newEvent(typ, "probe", map[string]any{"probe": true}))
		if len(res.Trace) != n {
			return fmt.Errorf("chain of %s has %d steps, want %d", typ, len(res.Trace), n)
		}
		return nil
	})
}

func plugin(name string, priority int, deps ...string) events.Plugin {
	p := events.Plugin{PluginSpec: events.PluginSpec{Name: name, Event: "ev", Priority: priority}}
	for _, d := range deps {
		n, soft := strings.CutPrefix(d, "~")
		p.Depends = append(p.Depends, events.Dependency{Name: n, Soft: soft})
	}
	return p
}

func trace(res events.ChainResult) string {
	var parts []string
	for _, s := range res.Trace {
		parts = append(parts, s.Plugin+":"+string(s.Outcome))
	}
	return strings.Join(parts, " ")
}

func TestChainSemantics(t *testing.T) {
	type workerSpec struct {
		name string
		f    func(map[string]any) events.StepReply
	}
	halt := func(map[string]any) events.StepReply {
		return events.StepReply{Action: events.ActionHalt, State: json.RawMessage(`{"verdict":"deny"}`)}
	}
	fail := func(map[string]any) events.StepReply { return events.StepReply{Error: "database down"} }
	slow := func(state map[string]any) events.StepReply {
		time.Sleep(300 * time.Millisecond)
		return appender("slow")(state)
	}
	withPolicy := func(p events.Plugin, policy events.OnError) events.Plugin {
		p.Settings.OnError = policy
		return p
	}
	tests := []struct {
		name      string
		plugins   []events.Plugin
		workers   []workerSpec
		data      map[string]any
		private   string
		wantTrace string
		wantState string
		wantHalt  string
		wantError string
	}{
		{
			name:      "priority order with ties by name",
			plugins:   []events.Plugin{plugin("b", 10), plugin("a", 10), plugin("c", 5)},
			workers:   []workerSpec{{"a", appender("a")}, {"b", appender("b")}, {"c", appender("c")}},
			wantTrace: "c:continued a:continued b:continued",
			wantState: `{"seen":["c","a","b"]}`,
		},
		{
			name:      "dependencies on the same event run first, soft or hard",
			plugins:   []events.Plugin{plugin("x", 1, "y"), plugin("y", 50, "~z"), plugin("z", 90)},
			workers:   []workerSpec{{"x", appender("x")}, {"y", appender("y")}, {"z", appender("z")}},
			wantTrace: "z:continued y:continued x:continued",
			wantState: `{"seen":["z","y","x"]}`,
		},
		{
			name:      "only running plugins take part",
			plugins:   []events.Plugin{plugin("a", 1), func() events.Plugin { p := plugin("b", 2); p.Status = events.StatusStopped; return p }(), func() events.Plugin { p := plugin("c", 3); p.Mode = events.ModeNotify; return p }()},
			workers:   []workerSpec{{"a", appender("a")}, {"b", appender("b")}, {"c", appender("c")}},
			wantTrace: "a:continued",
			wantState: `{"seen":["a"]}`,
		},
		{
			name:      "halt ends the chain with its state",
			plugins:   []events.Plugin{plugin("a", 1), plugin("h", 2), plugin("z", 3)},
			workers:   []workerSpec{{"a", appender("a")}, {"h", halt}, {"z", appender("z")}},
			wantTrace: "a:continued h:halted",
			wantState: `{"verdict":"deny"}`,
			wantHalt:  "h",
		},
		{
			name:      "error with skip goes on with the state before the step",
			plugins:   []events.Plugin{plugin("a", 1), plugin("f", 2), plugin("z", 3)},
			workers:   []workerSpec{{"a", appender("a")}, {"f", fail}, {"z", appender("z")}},
			wantTrace: "a:continued f:skipped z:continued",
			wantState: `{"seen":["a","z"]}`,
		},
		{
			name:      "error with halt stops with the state so far",
			plugins:   []events.Plugin{plugin("a", 1), withPolicy(plugin("f", 2), events.OnErrorHalt), plugin("z", 3)},
			workers:   []workerSpec{{"a", appender("a")}, {"f", fail}, {"z", appender("z")}},
			wantTrace: "a:continued f:halted_on_error",
			wantState: `{"seen":["a"]}`,
			wantHalt:  "f",
		},
		{
			name:      "error with fail fails the call with the plugin's error",
			plugins:   []events.Plugin{plugin("a", 1), withPolicy(plugin("f", 2), events.OnErrorFail), plugin("z", 3)},
			workers:   []workerSpec{{"a", appender("a")}, {"f", fail}, {"z", appender("z")}},
			wantTrace: "a:continued f:failed",
			wantState: `{"seen":["a"]}`,
			wantError: "plugin_failed: plugin f: database down",
		},
		{
			name: "a step over its timeout is an error under the policy",
			plugins: []events.Plugin{func() events.Plugin {
				p := plugin("s", 1)
				p.Settings.StepTimeoutMS = 100
				return p
			}(), plugin("z", 2)},
			workers:   []workerSpec{{"s", slow}, {"z", appender("z")}},
			wantTrace: "s:skipped z:continued",
			wantState: `{"seen":["z"]}`,
		},
		{
			name:      "no worker running is an error under the policy",
			plugins:   []events.Plugin{plugin("a", 1), withPolicy(plugin("ghost", 2), events.OnErrorFail)},
			workers:   []workerSpec{{"a", appender("a")}},
			wantTrace: "a:continued ghost:failed",
			wantState: `{"seen":["a"]}`,
			wantError: "plugin_failed: plugin ghost: no plugin worker is running",
		},
		{
			name:    "private fields are restored after every step",
			plugins: []events.Plugin{plugin("a", 1), plugin("b", 2)},
			workers: []workerSpec{{"a", func(state map[string]any) events.StepReply {
				state["user_id"] = "forged"
				delete(state, "ip")
				state["note"] = "a was here"
				b, _ := json.Marshal(state)
				return events.StepReply{Action: events.ActionContinue, State: b}
			}}, {"b", func(state map[string]any) events.StepReply {
				// b must see the caller's values, not a's.
				if state["user_id"] != "u1" || state["ip"] != "10.0.0.1" {
					return events.StepReply{Error: fmt.Sprintf("private fields leaked: %v", state)}
				}
				return events.StepReply{Action: events.ActionContinue}
			}}},
			data:      map[string]any{"user_id": "u1", "ip": "10.0.0.1"},
			private:   "user_id,ip",
			wantTrace: "a:continued b:continued",
			wantState: `{"ip":"10.0.0.1","note":"a was here","user_id":"u1"}`,
		},
		{
			name:      "a reply without a state keeps the state",
			plugins:   []events.Plugin{plugin("a", 1)},
			workers:   []workerSpec{{"a", func(map[string]any) events.StepReply { return events.StepReply{Action: events.ActionContinue} }}},
			data:      map[string]any{"k": "v"},
			wantTrace: "a:continued",
			wantState: `{"k":"v"}`,
		},
		{
			name:      "an answer with an unknown action is an error",
			plugins:   []events.Plugin{withPolicy(plugin("a", 1), events.OnErrorFail)},
			workers:   []workerSpec{{"a", func(map[string]any) events.StepReply { return events.StepReply{Action: "maybe"} }}},
			wantTrace: "a:failed",
			wantState: `{}`,
			wantError: `plugin_failed: plugin a: answer has action "maybe", want continue or halt`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.runDispatcher()
			for _, w := range tt.workers {
				e.worker(w.name, w.f)
			}
			e.put(tt.plugins...)
			running := 0
			for _, p := range tt.plugins {
				if p.Mode != events.ModeNotify && (p.Status == "" || p.Status.Running()) {
					running++
				}
			}
			e.waitChain("ev", running)
			data := tt.data
			if data == nil {
				data = map[string]any{}
			}
			ev := newEvent("ev", "call-1", data)
			if tt.private != "" {
				ev.SetExtension(events.ExtensionPrivate, tt.private)
			}
			res := e.call(ev)
			if got := trace(res); got != tt.wantTrace {
				t.Errorf("trace = %q, want %q", got, tt.wantTrace)
			}
			if string(res.State) != tt.wantState {
				t.Errorf("state = %s, want %s", res.State, tt.wantState)
			}
			if res.HaltedBy != tt.wantHalt || res.Halted != (tt.wantHalt != "") {
				t.Errorf("halted %v by %q, want %q", res.Halted, res.HaltedBy, tt.wantHalt)
			}
			gotErr := ""
			if res.Error != nil {
				gotErr = res.Error.Error()
			}
			if gotErr != tt.wantError {
				t.Errorf("error = %q, want %q", gotErr, tt.wantError)
			}
			if res.EventID != "call-1" || res.EventType != "ev" {
				t.Errorf("result names event %q of type %q", res.EventID, res.EventType)
			}
		})
	}
}

func TestRouteChangesTakeEffect(t *testing.T) {
	e := newEnv(t)
	e.runDispatcher()
	e.worker("a", appender("a"))
	e.worker("b", appender("b"))
	e.put(plugin("a", 1))
	e.waitChain("ev", 1)
	e.put(plugin("b", 0))
	e.waitChain("ev", 2)
	if got := trace(e.call(newEvent("ev", "1", map[string]any{}))); got != "b:continued a:continued" {
		t.Errorf("after adding b at priority 0: %q", got)
	}
	stopped := plugin("b", 0)
	stopped.Status = events.StatusHeld
	e.put(stopped)
	e.waitChain("ev", 1)
	if err := e.kv.Delete(t.Context(), "a"); err != nil {
		t.Fatal(err)
	}
	e.waitChain("ev", 0)
}

func TestCallErrors(t *testing.T) {
	e := newEnv(t)
	e.runDispatcher()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	answer, err := e.nc.RequestWithContext(ctx, "hookbus.call.ev", []byte("not a cloudevent"))
	if err != nil {
		t.Fatal(err)
	}
	var res events.ChainResult
	if err := json.Unmarshal(answer.Data, &res); err != nil {
		t.Fatal(err)
	}
	if res.Error == nil || res.Error.Code != events.CodeInvalid || !strings.Contains(res.Error.Message, "not a CloudEvent") {
		t.Errorf("invalid call answered %+v", res.Error)
	}
	checkErrorHeaders(t, answer, res.Error)
	other := newEvent("other", "x", map[string]any{})
	msg, _ := events.Encode("hookbus.call.ev", &other)
	answer, err = e.nc.RequestMsgWithContext(ctx, msg)
	if err != nil {
		t.Fatal(err)
	}
	_ = json.Unmarshal(answer.Data, &res)
	if res.Error == nil || !strings.Contains(res.Error.Message, `event type "other" does not match the call subject "hookbus.call.ev"`) {
		t.Errorf("mismatched call answered %+v", res.Error)
	}
	checkErrorHeaders(t, answer, res.Error)
	// No chain plugins: the state comes back unchanged, with an empty
	// trace and no error headers.
	quiet := newEvent("quiet", "q", map[string]any{"k": 1})
	msg, _ = events.Encode("hookbus.call.quiet", &quiet)
	if answer, err = e.nc.RequestMsgWithContext(ctx, msg); err != nil {
		t.Fatal(err)
	}
	res = events.ChainResult{}
	_ = json.Unmarshal(answer.Data, &res)
	if string(res.State) != `{"k":1}` || len(res.Trace) != 0 || res.Error != nil || answer.Header.Get(micro.ErrorCodeHeader) != "" {
		t.Errorf("call without plugins = %+v, headers %v", res, answer.Header)
	}
}

// checkErrorHeaders checks that a call's error answer carries micro's error
// headers with the code and message of the result's error (docs/protocol.md,
// "Errors").
func checkErrorHeaders(t *testing.T, answer *nats.Msg, want *events.Error) {
	t.Helper()
	if want == nil {
		return
	}
	if answer.Header.Get(micro.ErrorCodeHeader) != string(want.Code) || answer.Header.Get(micro.ErrorHeader) != want.Message {
		t.Errorf("headers %v, want %s %q and %s %q", answer.Header, micro.ErrorCodeHeader, want.Code, micro.ErrorHeader, want.Message)
	}
}

// publish stores an event in HOOKBUS_EVENTS as a producer would.
func (e *env) publish(ev event.Event) {
	e.t.Helper()
	subject, _ := events.EventSubject(ev.Type())
	msg, err := events.Encode(subject, &ev)
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.js.PublishMsg(e.t.Context(), msg); err != nil {
		e.t.Fatal(err)
	}
}

// results reads every stored chain result of typ, by event id.
func (e *env) results(typ string) map[string]events.ChainResult {
	e.t.Helper()
	stream, err := e.js.Stream(e.t.Context(), events.StreamResults)
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := stream.Info(e.t.Context(), jetstream.WithSubjectFilter("hookbus.result."+typ))
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string]events.ChainResult{}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		raw, err := stream.GetMsg(e.t.Context(), seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			e.t.Fatal(err)
		}
		if raw.Subject != "hookbus.result."+typ {
			continue
		}
		ev, err := events.Decode(raw.Header, raw.Data)
		if err != nil {
			e.t.Fatalf("stored result does not decode: %v", err)
		}
		var res events.ChainResult
		if err := json.Unmarshal(ev.Data(), &res); err != nil {
			e.t.Fatal(err)
		}
		if _, dup := out[res.EventID]; dup {
			e.t.Errorf("two results stored for event %s", res.EventID)
		}
		out[res.EventID] = res
	}
	return out
}

func (e *env) dlq(subscriber string) []*jetstream.RawStreamMsg {
	e.t.Helper()
	stream, err := e.js.Stream(e.t.Context(), events.StreamDLQ)
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := stream.Info(e.t.Context())
	if err != nil {
		e.t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		raw, err := stream.GetMsg(e.t.Context(), seq)
		if err != nil {
			continue
		}
		if raw.Subject == "hookbus.dlq."+subscriber {
			out = append(out, raw)
		}
	}
	return out
}

func TestPublishedEventsGetOneResultEach(t *testing.T) {
	e := newEnv(t)
	e.runDispatcher()
	e.runDispatcher() // two replicas share the work
	e.worker("a", appender("a"))
	e.put(plugin("a", 1))
	e.waitChain("ev", 1)
	const n = 100
	for i := range n {
		e.publish(newEvent("ev", fmt.Sprintf("e%d", i), map[string]any{"i": i}))
	}
	e.publish(newEvent("nochain", "q", map[string]any{}))
	natstest.Eventually(t, 10*time.Second, func() error {
		if got := len(e.results("ev")); got != n {
			return fmt.Errorf("%d results, want %d", got, n)
		}
		return nil
	})
	for id, res := range e.results("ev") {
		if trace(res) != "a:continued" || !strings.Contains(string(res.State), `"seen":["a"]`) {
			t.Errorf("result of %s: %s %s", id, trace(res), res.State)
		}
	}
	if got := len(e.results("nochain")); got != 0 {
		t.Errorf("%d results for an event without chain plugins, want 0", got)
	}
}

func TestInvalidPublishedEventsAreDeadLettered(t *testing.T) {
	e := newEnv(t)
	e.runDispatcher()
	e.worker("a", appender("a"))
	e.put(plugin("a", 1))
	e.waitChain("ev", 1)

	e.publish(newEvent("ev", "before", map[string]any{}))
	raw := []struct{ data, want string }{
		{`{"specversion":"1.0","source":"/x","type":"ev"`, "body: structured event is not a JSON object"},
		{`{"specversion":"1.0","source":"/x","type":"ev"}`, "id: required"},
	}
	for _, r := range raw {
		h := nats.Header{}
		h.Set("Content-Type", events.ContentTypeStructured)
		if _, err := e.js.PublishMsg(t.Context(), &nats.Msg{Subject: "hookbus.event.ev", Header: h, Data: []byte(r.data)}); err != nil {
			t.Fatal(err)
		}
	}
	e.publish(newEvent("ev", "after", map[string]any{}))

	natstest.Eventually(t, 10*time.Second, func() error {
		if got := len(e.results("ev")); got != 2 {
			return fmt.Errorf("%d results, want 2", got)
		}
		if got := len(e.dlq(events.DispatcherConsumer)); got != 2 {
			return fmt.Errorf("%d dead letters, want 2", got)
		}
		return nil
	})
	res := e.results("ev")
	for _, id := range []string{"before", "after"} {
		if _, ok := res[id]; !ok {
			t.Errorf("valid event %s has no result", id)
		}
	}
	// The dispatcher runs events concurrently, so dead letters are matched by
	// their body, not by the order they were written in.
	want := map[string]string{}
	for _, r := range raw {
		want[r.data] = r.want
	}
	for i, dl := range e.dlq(events.DispatcherConsumer) {
		reason := dl.Header.Get(events.HeaderDLQReason)
		wantReason, ok := want[string(dl.Data)]
		delete(want, string(dl.Data))
		if !ok || !strings.Contains(reason, wantReason) || dl.Header.Get(events.HeaderDLQSubject) != "hookbus.event.ev" {
			t.Errorf("dead letter %d: reason %q data %q subject %q", i, reason, dl.Data, dl.Header.Get(events.HeaderDLQSubject))
		}
	}
	for data := range want {
		t.Errorf("no dead letter holds %q", data)
	}
}

func TestDispatcherRestartMidChainStoresOneResult(t *testing.T) {
	e := newEnv(t)
	stop := e.runDispatcher()
	started := make(chan struct{}, 10)
	release := make(chan struct{})
	e.worker("slow", func(state map[string]any) events.StepReply {
		started <- struct{}{}
		<-release
		return appender("slow")(state)
	})
	p := plugin("slow", 1)
	p.Settings.StepTimeoutMS = 60_000
	e.put(p)
	e.waitChain("ev", 1)
	e.publish(newEvent("ev", "crash-1", map[string]any{}))
	<-started // the chain is running
	stop()    // the dispatcher goes away mid-chain
	close(release)
	e.runDispatcher() // another one takes over
	natstest.Eventually(t, 10*time.Second, func() error {
		if got := len(e.results("ev")); got != 1 {
			return fmt.Errorf("%d results, want 1", got)
		}
		return nil
	})
}

// Readiness says what runs now: once Run has returned, Ready names every
// part that stopped, not only the first.
func TestReadinessSaysWhatRuns(t *testing.T) {
	e := newEnv(t)
	svc, err := dispatcher.New(dispatcher.DefaultConfig(), natstest.Connect(t, e.srv), nil)
	if err != nil {
		t.Fatal(err)
	}
	stop := natstest.RunService(t, svc)
	if err := svc.Ready(t.Context()); err != nil {
		t.Fatalf("running: %v", err)
	}
	stop()
	err = svc.Ready(t.Context())
	for _, part := range []string{"not taking calls", "chain consumers not all in place", "not reading advisories"} {
		if err == nil || !strings.Contains(err.Error(), part) {
			t.Errorf("after Run returned: Ready = %v, want it to say %q", err, part)
		}
	}
}
