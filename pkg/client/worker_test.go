package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/internal/natstest"
	"github.com/hookbus/hookbus/pkg/client"
	"github.com/hookbus/hookbus/pkg/events"
	"github.com/hookbus/hookbus/services/registry"
)

// Plugin worker tests: a real NATS server, the real registry, and the
// dispatcher's side played by the test over the wire (chain step requests
// sent by hand, notify consumers created as the dispatcher creates them).

const testType = "com.example.test"

// workerBus is a bus with a registry running.
func workerBus(t *testing.T) *bus {
	t.Helper()
	b := newBus(t, true)
	svc, err := registry.New(registry.DefaultConfig(), natstest.Connect(t, b.srv), nil)
	if err != nil {
		t.Fatal(err)
	}
	natstest.RunService(t, svc)
	return b
}

// serving is one Serve running in the background.
type serving struct {
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

// startServe runs Serve until stop (or the end of the test).
func startServe(t *testing.T, c *client.Client, p client.Plugin, opts ...client.Option) *serving {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &serving{cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- c.Serve(ctx, p, opts...) }()
	t.Cleanup(func() {
		if err := s.stop(t); err != nil {
			t.Errorf("Serve %s: %v", p.Spec.Name, err)
		}
	})
	return s
}

// stop ends Serve and returns what it returned.
func (s *serving) stop(t *testing.T) error {
	t.Helper()
	s.once.Do(func() {
		s.cancel()
		select {
		case s.err = <-s.done:
		case <-time.After(20 * time.Second):
			s.err = errors.New("did not return within 20s of cancel")
		}
	})
	return s.err
}

// returned reports whether Serve has returned (without waiting).
func (s *serving) returned() bool {
	select {
	case err := <-s.done:
		s.done <- err
		return true
	default:
		return false
	}
}

// waitStatus polls the registry until the plugin has status want.
func waitStatus(t *testing.T, c *client.Client, name string, want events.Status) {
	t.Helper()
	natstest.Eventually(t, 10*time.Second, func() error {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		p, err := c.Get(ctx, name)
		if err != nil {
			return err
		}
		if p.Status != want {
			return fmt.Errorf("plugin %s is %s, want %s", name, p.Status, want)
		}
		return nil
	})
}

func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func testEvent(id string, data any) event.Event {
	e := event.New()
	e.SetID(id)
	e.SetSource("/test")
	e.SetType(testType)
	if data != nil {
		if err := e.SetData(event.ApplicationJSON, data); err != nil {
			panic(err)
		}
	}
	return e
}

// sendStep sends one chain step to plugin name as the dispatcher does and
// returns the reply.
func sendStep(t *testing.T, nc *nats.Conn, name string, msg *nats.Msg) events.StepReply {
	t.Helper()
	subject, err := events.PluginCallSubject(name)
	if err != nil {
		t.Fatal(err)
	}
	msg.Subject = subject
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	answer, err := nc.RequestMsgWithContext(ctx, msg)
	if err != nil {
		t.Fatalf("step request: %v", err)
	}
	var reply events.StepReply
	if err := json.Unmarshal(answer.Data, &reply); err != nil {
		t.Fatalf("step reply %q: %v", answer.Data, err)
	}
	return reply
}

// stepMsg is a chain step request: the event in binary mode, its data the
// state, with the step headers.
func stepMsg(t *testing.T, state string, step, attempt int) *nats.Msg {
	t.Helper()
	e := testEvent("evt-1", json.RawMessage(state))
	m, err := events.Encode("hookbus.plugin.x.call", &e)
	if err != nil {
		t.Fatal(err)
	}
	m.Header.Set(events.HeaderChainStep, fmt.Sprint(step))
	m.Header.Set(events.HeaderChainAttempt, fmt.Sprint(attempt))
	return m
}

func TestServeChainSteps(t *testing.T) {
	t.Parallel()
	b := workerBus(t)
	var seen sync.Map // state "case" -> *client.Step
	handler := func(ctx context.Context, s *client.Step) (client.StepResult, error) {
		var state map[string]any
		if err := s.Event.DataAs(&state); err != nil {
			return client.StepResult{}, err
		}
		seen.Store(state["case"], s)
		switch state["case"] {
		case "add":
			state["added"] = "by-p"
			return client.Continue(state), nil
		case "same":
			return client.StepResult{}, nil
		case "halt":
			return client.Halt(map[string]any{"stopped": true}), nil
		case "raw":
			return client.Continue(json.RawMessage(`{"raw":[1,2]}`)), nil
		case "error":
			return client.StepResult{}, errors.New("database down")
		case "panic":
			panic("boom")
		case "badstate":
			return client.Continue(make(chan int)), nil
		case "deadline":
			<-ctx.Done()
			return client.StepResult{}, ctx.Err()
		}
		return client.StepResult{}, fmt.Errorf("unexpected case %v", state["case"])
	}
	startServe(t, b.client, client.Plugin{
		Spec:  events.PluginSpec{Name: "p", Event: testType, Settings: events.Settings{StepTimeoutMS: 200}},
		Chain: handler,
	})
	waitStatus(t, b.client, "p", events.StatusStarted)

	tests := []struct {
		name string
		msg  func(t *testing.T) *nats.Msg
		want events.StepReply
	}{
		{"continue with a changed state", func(t *testing.T) *nats.Msg { return stepMsg(t, `{"case":"add"}`, 1, 1) },
			events.StepReply{Action: events.ActionContinue, State: json.RawMessage(`{"added":"by-p","case":"add"}`)}},
		{"zero result continues unchanged", func(t *testing.T) *nats.Msg { return stepMsg(t, `{"case":"same"}`, 1, 1) },
			events.StepReply{Action: events.ActionContinue}},
		{"halt with a state", func(t *testing.T) *nats.Msg { return stepMsg(t, `{"case":"halt"}`, 1, 1) },
			events.StepReply{Action: events.ActionHalt, State: json.RawMessage(`{"stopped":true}`)}},
		{"raw JSON state as is", func(t *testing.T) *nats.Msg { return stepMsg(t, `{"case":"raw"}`, 1, 1) },
			events.StepReply{Action: events.ActionContinue, State: json.RawMessage(`{"raw":[1,2]}`)}},
		{"handler error", func(t *testing.T) *nats.Msg { return stepMsg(t, `{"case":"error"}`, 1, 1) },
			events.StepReply{Error: "database down"}},
		{"panic is recovered", func(t *testing.T) *nats.Msg { return stepMsg(t, `{"case":"panic"}`, 1, 1) },
			events.StepReply{Error: "panic: boom"}},
		{"unencodable state", func(t *testing.T) *nats.Msg { return stepMsg(t, `{"case":"badstate"}`, 1, 1) },
			events.StepReply{Error: "encode state: json: unsupported type: chan int"}},
		{"context ends at the step timeout", func(t *testing.T) *nats.Msg { return stepMsg(t, `{"case":"deadline"}`, 1, 1) },
			events.StepReply{Error: "context deadline exceeded"}},
		{"not a CloudEvent", func(t *testing.T) *nats.Msg {
			return &nats.Msg{Header: nats.Header{"content-type": {"text/plain"}}, Data: []byte("hello")}
		}, events.StepReply{Error: `invalid step request: invalid event: specversion: not a CloudEvent: no ce-specversion header (binary mode) and content-type is "text/plain", not application/cloudevents+json (structured mode)`}},
		{"structured mode is read too", func(t *testing.T) *nats.Msg {
			e := testEvent("evt-s", json.RawMessage(`{"case":"add"}`))
			m, err := events.Codec{}.EncodeStructured("x", &e)
			if err != nil {
				t.Fatal(err)
			}
			return m
		}, events.StepReply{Action: events.ActionContinue, State: json.RawMessage(`{"added":"by-p","case":"add"}`)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := sendStep(t, b.nc, "p", tt.msg(t))
			if got.Action != tt.want.Action || got.Error != tt.want.Error || string(got.State) != string(tt.want.State) {
				t.Errorf("reply = %+v (state %s), want %+v (state %s)", got, got.State, tt.want, tt.want.State)
			}
		})
	}

	// The handler saw the step headers and the event.
	sendStep(t, b.nc, "p", stepMsg(t, `{"case":"same"}`, 3, 2))
	v, _ := seen.Load("same")
	if s := v.(*client.Step); s.Number != 3 || s.Attempt != 2 || s.Event.ID() != "evt-1" || s.Event.Type() != testType {
		t.Errorf("step = number %d attempt %d event %s %s, want 3, 2, evt-1 %s", s.Number, s.Attempt, s.Event.ID(), s.Event.Type(), testType)
	}
}

// Replicas of a worker share the steps through the queue group.
func TestServeChainReplicasShareSteps(t *testing.T) {
	t.Parallel()
	b := workerBus(t)
	var calls [2]atomic.Int64
	for i := range calls {
		c, err := client.New(natstest.Connect(t, b.srv))
		if err != nil {
			t.Fatal(err)
		}
		startServe(t, c, client.Plugin{
			Spec: events.PluginSpec{Name: "shared", Event: testType},
			Chain: func(context.Context, *client.Step) (client.StepResult, error) {
				calls[i].Add(1)
				return client.StepResult{}, nil
			},
		})
	}
	waitStatus(t, b.client, "shared", events.StatusStarted)
	const steps = 40
	for range steps {
		if r := sendStep(t, b.nc, "shared", stepMsg(t, `{}`, 1, 1)); r.Action != events.ActionContinue {
			t.Fatalf("reply %+v", r)
		}
	}
	a, c := calls[0].Load(), calls[1].Load()
	if a+c != steps || a == 0 || c == 0 {
		t.Errorf("replicas answered %d and %d steps, want %d in all, shared", a, c, steps)
	}
}

func TestServeInvalidPlugin(t *testing.T) {
	t.Parallel()
	b := newBus(t, true)
	chain := func(context.Context, *client.Step) (client.StepResult, error) { return client.StepResult{}, nil }
	notify := func(context.Context, *client.Delivery) error { return nil }
	tests := []struct {
		name    string
		p       client.Plugin
		opts    []client.Option
		invalid bool // matches events.ErrInvalid
	}{
		{"no handler", client.Plugin{Spec: events.PluginSpec{Name: "p", Event: testType}}, nil, false},
		{"two handlers", client.Plugin{Spec: events.PluginSpec{Name: "p", Event: testType}, Chain: chain, Notify: notify}, nil, false},
		{"chain mode without a chain handler", client.Plugin{Spec: events.PluginSpec{Name: "p", Event: testType, Mode: events.ModeChain}, Notify: notify}, nil, false},
		{"notify mode without a notify handler", client.Plugin{Spec: events.PluginSpec{Name: "p", Event: testType, Mode: events.ModeNotify}, Chain: chain}, nil, false},
		{"bad name", client.Plugin{Spec: events.PluginSpec{Name: "p q", Event: testType}, Chain: chain}, nil, true},
		{"bad priority", client.Plugin{Spec: events.PluginSpec{Name: "p", Event: testType, Priority: 101}, Chain: chain}, nil, true},
		{"zero concurrency", client.Plugin{Spec: events.PluginSpec{Name: "p", Event: testType}, Chain: chain}, []client.Option{client.WithConcurrency(0)}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := b.client.Serve(t.Context(), tt.p, tt.opts...)
			if err == nil {
				t.Fatal("Serve = nil, want an error")
			}
			if errors.Is(err, events.ErrInvalid) != tt.invalid {
				t.Errorf("Serve = %v; matches events.ErrInvalid: %v, want %v", err, !tt.invalid, tt.invalid)
			}
		})
	}
}

func TestServeExitAction(t *testing.T) {
	t.Parallel()
	tests := []struct {
		action client.ExitAction
		want   events.Status // "" means unregistered
	}{
		{client.ExitLeave, events.StatusStarted},
		{client.ExitDeactivate, events.StatusRegistered},
		{client.ExitStop, events.StatusStopped},
		{client.ExitUnregister, ""},
	}
	for _, tt := range tests {
		t.Run(tt.action.String(), func(t *testing.T) {
			t.Parallel()
			b := workerBus(t)
			s := startServe(t, b.client, client.Plugin{
				Spec:  events.PluginSpec{Name: "p", Event: testType},
				Chain: func(context.Context, *client.Step) (client.StepResult, error) { return client.StepResult{}, nil },
			}, client.WithExitAction(tt.action))
			waitStatus(t, b.client, "p", events.StatusStarted)
			if err := s.stop(t); err != nil {
				t.Fatalf("Serve = %v", err)
			}
			p, err := b.client.Get(ctxT(t), "p")
			switch {
			case tt.want == "" && !errors.Is(err, client.ErrNotFound):
				t.Errorf("after Serve: %v, %v; want ErrNotFound", p.Status, err)
			case tt.want != "" && (err != nil || p.Status != tt.want):
				t.Errorf("after Serve: %v, %v; want %s", p.Status, err, tt.want)
			}
		})
	}
}

// A notify worker whose plugin was stopped while a handler runs still
// ends within its drain timeout when its context ends.
func TestServeDrainTimeoutAfterPluginStop(t *testing.T) {
	t.Parallel()
	b := workerBus(t)
	spec := notifySpec("n", 3, 30000)
	notifyConsumer(t, b.js, spec)
	entered := make(chan struct{})
	s := startServe(t, b.client, client.Plugin{Spec: spec, Notify: func(ctx context.Context, _ *client.Delivery) error {
		close(entered)
		<-ctx.Done() // until Serve's drain timeout cancels it
		return ctx.Err()
	}}, client.WithDrainTimeout(300*time.Millisecond))
	waitStatus(t, b.client, "n", events.StatusStarted)
	b.publish(t, "a")
	<-entered
	if _, err := b.client.Stop(ctxT(t), "n"); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, b.client, "n", events.StatusStopped)
	start := time.Now()
	s.cancel()
	natstest.Eventually(t, 5*time.Second, func() error {
		if !s.returned() {
			return errors.New("Serve has not returned")
		}
		return nil
	})
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("Serve returned after %v, before its drain timeout", d)
	}
}

// A stopped plugin is not started by Serve: stopped is the operator's.
func TestServeRespectsStopped(t *testing.T) {
	t.Parallel()
	b := workerBus(t)
	ctx := ctxT(t)
	spec := events.PluginSpec{Name: "p", Event: testType}
	if _, err := b.client.Register(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if _, err := b.client.Stop(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	registered := make(chan events.Plugin, 1)
	started := make(chan events.Plugin, 1)
	spec.Version = "2" // so that Serve's registration changes the plugin and is announced
	startServe(t, b.client, client.Plugin{
		Spec:       spec,
		Chain:      func(context.Context, *client.Step) (client.StepResult, error) { return client.StepResult{}, nil },
		OnRegister: func(p events.Plugin) { registered <- p },
		OnStart:    func(p events.Plugin) { started <- p },
	})
	select {
	case p := <-registered:
		if p.Status != events.StatusStopped || p.Version != "2" {
			t.Fatalf("OnRegister with %s version %q, want stopped version 2", p.Status, p.Version)
		}
	case <-ctx.Done():
		t.Fatal("OnRegister not called")
	}
	// Serve does not start a stopped plugin; had it tried, the refusal
	// would be its last word, and the status stays stopped either way.
	waitStatus(t, b.client, "p", events.StatusStopped)
	if _, err := b.client.Enable(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-started:
		if p.Status != events.StatusStarted {
			t.Errorf("OnStart with %s", p.Status)
		}
	case <-ctx.Done():
		t.Fatal("OnStart not called after enable")
	}
	if r := sendStep(t, b.nc, "p", stepMsg(t, `{}`, 1, 1)); r.Action != events.ActionContinue {
		t.Errorf("step after enable: %+v", r)
	}
}

// recorder collects lifecycle callbacks as "callback:status".
type recorder struct {
	mu  sync.Mutex
	got []string
}

func (r *recorder) add(name string) func(events.Plugin) {
	return func(p events.Plugin) {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.got = append(r.got, name+":"+string(p.Status))
	}
}

func (r *recorder) plugin(p client.Plugin) client.Plugin {
	p.OnRegister, p.OnStart, p.OnRestart = r.add("register"), r.add("start"), r.add("restart")
	p.OnStop, p.OnHeld, p.OnUnregister = r.add("stop"), r.add("held"), r.add("unregister")
	return p
}

// wait polls until n callbacks were recorded and returns them.
func (r *recorder) wait(t *testing.T, n int) []string {
	t.Helper()
	natstest.Eventually(t, 10*time.Second, func() error {
		r.mu.Lock()
		defer r.mu.Unlock()
		if len(r.got) < n {
			return fmt.Errorf("%d callbacks so far, want %d: %v", len(r.got), n, r.got)
		}
		return nil
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

func TestServeLifecycleCallbacks(t *testing.T) {
	t.Parallel()
	b := workerBus(t)
	ctx := ctxT(t)
	c := b.client
	if _, err := c.Register(ctx, events.PluginSpec{Name: "dep", Event: "other"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Start(ctx, "dep"); err != nil {
		t.Fatal(err)
	}
	var rec recorder
	startServe(t, c, rec.plugin(client.Plugin{
		Spec:  events.PluginSpec{Name: "p", Event: testType, Depends: []events.Dependency{{Name: "dep"}}},
		Chain: func(context.Context, *client.Step) (client.StepResult, error) { return client.StepResult{}, nil },
	}))
	want := []string{"register:registered", "start:started"}
	if got := rec.wait(t, len(want)); !slices.Equal(got, want) {
		t.Fatalf("callbacks after Serve started = %v, want %v", got, want)
	}
	steps := []struct {
		do   func() (events.Plugin, error)
		want string
	}{
		{func() (events.Plugin, error) { return c.Stop(ctx, "p") }, "stop:stopped"},
		{func() (events.Plugin, error) { return c.Enable(ctx, "p") }, "start:started"},
		{func() (events.Plugin, error) { return c.Restart(ctx, "p") }, "restart:restarted"},
		{func() (events.Plugin, error) { return c.Stop(ctx, "dep") }, "held:held"},
		{func() (events.Plugin, error) { return c.Enable(ctx, "dep") }, "restart:restarted"},
		{func() (events.Plugin, error) { return c.Delete(ctx, "p") }, "register:registered"},
		{func() (events.Plugin, error) { return c.Unregister(ctx, "p") }, "unregister:registered"},
	}
	for _, s := range steps {
		if _, err := s.do(); err != nil {
			t.Fatal(err)
		}
		want = append(want, s.want)
		if got := rec.wait(t, len(want)); !slices.Equal(got, want) {
			t.Fatalf("callbacks = %v, want %v", got, want)
		}
	}
}

func TestServeWaitsForDependencies(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		before   func(ctx context.Context, c *client.Client) error // dep registered, not running
		waiting  events.Status                                     // p's status while Serve waits
		callback string                                            // the callback when p runs
		running  events.Status
	}{
		{
			name: "a new plugin is held, then released",
			before: func(ctx context.Context, c *client.Client) error {
				_, err := c.Register(ctx, events.PluginSpec{Name: "dep", Event: "other"})
				return err
			},
			waiting:  events.StatusHeld,
			callback: "restart:restarted",
			running:  events.StatusRestarted,
		},
		{
			name: "a registered plugin is started when the dependency starts",
			before: func(ctx context.Context, c *client.Client) error {
				for _, f := range []func() error{
					func() error { _, err := c.Register(ctx, events.PluginSpec{Name: "dep", Event: "other"}); return err },
					func() error { _, err := c.Start(ctx, "dep"); return err },
					func() error {
						_, err := c.Register(ctx, events.PluginSpec{Name: "p", Event: testType, Depends: []events.Dependency{{Name: "dep"}}})
						return err
					},
					func() error { _, err := c.Delete(ctx, "dep"); return err },
				} {
					if err := f(); err != nil {
						return err
					}
				}
				return nil
			},
			waiting:  events.StatusRegistered,
			callback: "start:started",
			running:  events.StatusStarted,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := workerBus(t)
			ctx := ctxT(t)
			if err := tt.before(ctx, b.client); err != nil {
				t.Fatal(err)
			}
			var rec recorder
			var logs natstest.SyncBuffer
			s := startServe(t, b.client, rec.plugin(client.Plugin{
				Spec:  events.PluginSpec{Name: "p", Event: testType, Depends: []events.Dependency{{Name: "dep"}}},
				Chain: func(context.Context, *client.Step) (client.StepResult, error) { return client.StepResult{}, nil },
			}), client.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
			// Serve found the dependency not running and waits.
			natstest.Eventually(t, 10*time.Second, func() error {
				if !strings.Contains(logs.String(), "waiting for") {
					return fmt.Errorf("Serve has not said it waits; log:\n%s", logs.String())
				}
				return nil
			})
			waitStatus(t, b.client, "p", tt.waiting)
			if s.returned() {
				t.Fatalf("Serve returned while waiting for a dependency: %v", s.stop(t))
			}
			if _, err := b.client.Start(ctx, "dep"); err != nil {
				t.Fatal(err)
			}
			natstest.Eventually(t, 10*time.Second, func() error {
				rec.mu.Lock()
				defer rec.mu.Unlock()
				if !slices.Contains(rec.got, tt.callback) {
					return fmt.Errorf("callbacks %v, want %s among them", rec.got, tt.callback)
				}
				return nil
			})
			waitStatus(t, b.client, "p", tt.running)
		})
	}
}

// Shutdown answers the step in progress, then returns.
func TestServeChainDrain(t *testing.T) {
	t.Parallel()
	b := workerBus(t)
	entered, release := make(chan struct{}), make(chan struct{})
	s := startServe(t, b.client, client.Plugin{
		Spec: events.PluginSpec{Name: "p", Event: testType},
		Chain: func(context.Context, *client.Step) (client.StepResult, error) {
			close(entered)
			<-release
			return client.Continue(map[string]bool{"finished": true}), nil
		},
	})
	waitStatus(t, b.client, "p", events.StatusStarted)
	replies := make(chan events.StepReply, 1)
	go func() {
		m := stepMsg(t, `{}`, 1, 1)
		m.Subject = "hookbus.plugin.p.call"
		answer, err := b.nc.RequestMsg(m, 10*time.Second)
		var r events.StepReply
		if err == nil {
			err = json.Unmarshal(answer.Data, &r)
		}
		if err != nil {
			r.Error = "request: " + err.Error()
		}
		replies <- r
	}()
	<-entered
	s.cancel()
	if s.returned() {
		t.Fatal("Serve returned with a step in progress")
	}
	close(release)
	if r := <-replies; r.Action != events.ActionContinue || string(r.State) != `{"finished":true}` {
		t.Errorf("reply of the step in progress = %+v (state %s)", r, r.State)
	}
	if err := s.stop(t); err != nil {
		t.Errorf("Serve = %v", err)
	}
	if _, err := b.nc.Request("hookbus.plugin.p.call", nil, 2*time.Second); !errors.Is(err, nats.ErrNoResponders) {
		t.Errorf("step after Serve returned: %v, want no responders", err)
	}
}

// A handler that outlives the drain timeout has its context cancelled.
func TestServeDrainTimeout(t *testing.T) {
	t.Parallel()
	b := workerBus(t)
	entered := make(chan struct{})
	s := startServe(t, b.client, client.Plugin{
		Spec: events.PluginSpec{Name: "p", Event: testType, Settings: events.Settings{StepTimeoutMS: 60_000}},
		Chain: func(ctx context.Context, _ *client.Step) (client.StepResult, error) {
			close(entered)
			<-ctx.Done()
			return client.StepResult{}, ctx.Err()
		},
	}, client.WithDrainTimeout(100*time.Millisecond))
	waitStatus(t, b.client, "p", events.StatusStarted)
	replies := make(chan *nats.Msg, 1)
	m := stepMsg(t, `{}`, 1, 1)
	m.Subject = "hookbus.plugin.p.call"
	m.Reply = b.nc.NewRespInbox()
	sub, err := b.nc.ChanSubscribe(m.Reply, replies)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := b.nc.PublishMsg(m); err != nil {
		t.Fatal(err)
	}
	<-entered
	start := time.Now()
	if err := s.stop(t); err != nil {
		t.Errorf("Serve = %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Serve took %s to return, want about the drain timeout", d)
	}
	select {
	case r := <-replies:
		if want := `{"error":"context canceled"}`; string(r.Data) != want {
			t.Errorf("reply = %s, want %s", r.Data, want)
		}
	case <-time.After(5 * time.Second):
		t.Error("no reply for the cancelled step")
	}
}

// A chain handler that ignores its cancelled context does not hold Serve:
// it returns cancelGrace after the drain timeout, without the handler.
func TestServeAbandonsChainHandlerIgnoringContext(t *testing.T) {
	t.Parallel()
	b := workerBus(t)
	entered, release := make(chan struct{}, 1), make(chan struct{})
	var logs natstest.SyncBuffer
	s := startServe(t, b.client, client.Plugin{
		Spec: events.PluginSpec{Name: "p", Event: testType, Settings: events.Settings{StepTimeoutMS: 60_000}},
		Chain: func(context.Context, *client.Step) (client.StepResult, error) {
			entered <- struct{}{}
			<-release // ignoring ctx
			return client.StepResult{}, nil
		},
	}, client.WithDrainTimeout(100*time.Millisecond), client.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	t.Cleanup(func() { close(release) }) // runs before Serve's stop
	waitStatus(t, b.client, "p", events.StatusStarted)
	m := stepMsg(t, `{}`, 1, 1)
	m.Subject, m.Reply = "hookbus.plugin.p.call", b.nc.NewRespInbox()
	if err := b.nc.PublishMsg(m); err != nil {
		t.Fatal(err)
	}
	waitEntered(t, entered)
	s.cancel()
	waitAbandoned(t, s, &logs)
}

// A notify handler that ignores its cancelled context does not hold
// Serve either; its event is no longer kept in progress once Serve has
// returned, so JetStream delivers it again.
func TestServeAbandonsNotifyHandlerIgnoringContext(t *testing.T) {
	t.Parallel()
	b := workerBus(t)
	spec := notifySpec("n", 3, 300)
	cons := notifyConsumer(t, b.js, spec)
	entered, release := make(chan struct{}, 1), make(chan struct{})
	var logs natstest.SyncBuffer
	s := startServe(t, b.client, client.Plugin{Spec: spec, Notify: func(context.Context, *client.Delivery) error {
		entered <- struct{}{}
		<-release // ignoring ctx
		return nil
	}}, client.WithDrainTimeout(100*time.Millisecond), client.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	t.Cleanup(func() { close(release) }) // runs before Serve's stop
	b.publish(t, "a")
	waitEntered(t, entered)
	s.cancel()
	waitAbandoned(t, s, &logs)
	natstest.Eventually(t, 10*time.Second, func() error {
		m, err := cons.Next(jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return err
		}
		meta, err := m.Metadata()
		if err != nil {
			return err
		}
		if meta.NumDelivered != 2 {
			return fmt.Errorf("delivery %d, want 2", meta.NumDelivered)
		}
		return nil
	})
}

func waitEntered(t *testing.T, entered <-chan struct{}) {
	t.Helper()
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("handler not called")
	}
}

// waitAbandoned polls until Serve has returned, leaving one handler
// behind.
func waitAbandoned(t *testing.T, s *serving, logs *natstest.SyncBuffer) {
	t.Helper()
	natstest.Eventually(t, 10*time.Second, func() error {
		if !s.returned() {
			return errors.New("Serve has not returned")
		}
		return nil
	})
	if err := s.stop(t); !errors.Is(err, client.ErrHandlersAbandoned) {
		t.Errorf("Serve = %v, want ErrHandlersAbandoned", err)
	}
	s.err = nil // checked: the test's cleanup must not report it again
	if l := logs.String(); !strings.Contains(l, "returning without them") || !strings.Contains(l, "handlers=1") {
		t.Errorf("log does not say one handler was left behind:\n%s", l)
	}
}

// A worker started before Hookbus (no topology, no registry yet, as when a
// whole deployment starts at once) waits for it instead of returning.
func TestServeWaitsForHookbus(t *testing.T) {
	t.Parallel()
	b := newBus(t, false)
	s := startServe(t, b.client, client.Plugin{
		Spec:  events.PluginSpec{Name: "early", Event: testType},
		Chain: func(context.Context, *client.Step) (client.StepResult, error) { return client.Continue(nil), nil },
	})
	time.Sleep(time.Second) // nothing to poll for: Serve must still be running after a while
	if s.returned() {
		t.Fatalf("Serve returned before Hookbus was there: %v", s.stop(t))
	}
	ensureTopology(t, b.js)
	svc, err := registry.New(registry.DefaultConfig(), natstest.Connect(t, b.srv), nil)
	if err != nil {
		t.Fatal(err)
	}
	natstest.RunService(t, svc)
	waitStatus(t, b.client, "early", events.StatusStarted)
}

// A message on the plugin's step subject whose reply is not an inbox is not
// a step: only the dispatcher sends steps, from its inbox. A JetStream push
// consumer aimed at the step subject delivers with a $JS.ACK. reply (a
// client cannot publish with such a reply itself: the server refuses it),
// and a plain publish has none.
func TestServeIgnoresStepsWithoutInboxReply(t *testing.T) {
	t.Parallel()
	b := workerBus(t)
	var calls atomic.Int32
	startServe(t, b.client, client.Plugin{
		Spec: events.PluginSpec{Name: "p", Event: testType},
		Chain: func(_ context.Context, s *client.Step) (client.StepResult, error) {
			calls.Add(1)
			return client.StepResult{}, nil
		},
	})
	waitStatus(t, b.client, "p", events.StatusStarted)

	// A push consumer delivering stored events into the step subject.
	ctx := ctxT(t)
	push, err := b.js.CreateOrUpdateConsumer(ctx, events.StreamEvents, jetstream.ConsumerConfig{
		Name: "push", DeliverSubject: "hookbus.plugin.p.call", DeliverGroup: "p", AckPolicy: jetstream.AckNonePolicy,
	})
	if err != nil {
		t.Fatal(err)
	}
	b.publish(t, "pushed")
	natstest.Eventually(t, 5*time.Second, func() error {
		info, err := push.Info(ctx)
		if err != nil {
			return err
		}
		if info.Delivered.Consumer < 1 {
			return fmt.Errorf("not delivered yet")
		}
		return nil
	})
	m := stepMsg(t, `{"case":"no reply"}`, 1, 1)
	m.Subject = "hookbus.plugin.p.call"
	if err := b.nc.PublishMsg(m); err != nil {
		t.Fatal(err)
	}
	// A real step after them: answered, so the two before it were taken
	// (one subscription, in order) and dropped.
	if r := sendStep(t, b.nc, "p", stepMsg(t, `{"case":"real"}`, 1, 1)); r.Error != "" {
		t.Fatalf("real step: %+v", r)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("handler ran %d times, want once (for the step from an inbox)", n)
	}
}
