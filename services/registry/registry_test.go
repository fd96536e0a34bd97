package registry_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
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
	"github.com/hookbus/hookbus/pkg/client"
	"github.com/hookbus/hookbus/pkg/events"
	"github.com/hookbus/hookbus/services/registry"
)

// setup starts a server with the topology and returns a client on it.
func setup(t *testing.T) (*server.Server, *client.Client, jetstream.JetStream) {
	t.Helper()
	srv, js := natstest.RunTopology(t)
	c, err := client.New(natstest.Connect(t, srv))
	if err != nil {
		t.Fatal(err)
	}
	return srv, c, js
}

// runRegistry starts a registry on its own connection and waits until it is
// ready; the returned function stops it.
func runRegistry(t *testing.T, srv *server.Server) (stop func()) {
	t.Helper()
	cfg := registry.DefaultConfig()
	cfg.ConsumerCheck = 200 * time.Millisecond
	svc, err := registry.New(cfg, natstest.Connect(t, srv), nil)
	if err != nil {
		t.Fatal(err)
	}
	return natstest.RunService(t, svc)
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestLifecycleThroughTheClient(t *testing.T) {
	srv, c, js := setup(t)
	runRegistry(t, srv)
	ctx := ctxT(t)

	a, err := c.Register(ctx, events.PluginSpec{Name: "auth", Event: "on_user_authorisation", Priority: 10})
	if err != nil || a.Status != events.StatusRegistered || a.Revision == 0 {
		t.Fatalf("Register auth = %+v, %v; want registered with a revision", a, err)
	}
	b, err := c.Register(ctx, events.PluginSpec{Name: "audit", Event: "on_user_after_login", Depends: []events.Dependency{{Name: "auth"}}})
	if err != nil || b.Status != events.StatusHeld {
		t.Fatalf("Register audit = %+v, %v; want held (auth not running)", b, err)
	}
	if _, err := c.Start(ctx, "audit"); !errors.Is(err, client.ErrDependencyNotRunning) || !strings.Contains(err.Error(), "auth") {
		t.Fatalf("Start audit = %v, want ErrDependencyNotRunning naming auth", err)
	}
	if a, err = c.Start(ctx, "auth"); err != nil || a.Status != events.StatusStarted {
		t.Fatalf("Start auth = %+v, %v", a, err)
	}
	if b, err = c.Get(ctx, "audit"); err != nil || b.Status != events.StatusRestarted {
		t.Fatalf("audit after auth started = %+v, %v; want released (restarted)", b, err)
	}
	if _, err := c.Stop(ctx, "auth"); err != nil {
		t.Fatal(err)
	}
	if b, _ = c.Get(ctx, "audit"); b.Status != events.StatusHeld {
		t.Errorf("audit after auth stopped = %s, want held", b.Status)
	}
	if _, err := c.Start(ctx, "auth"); !errors.Is(err, client.ErrStopped) {
		t.Errorf("Start a stopped plugin = %v, want ErrStopped", err)
	}
	if _, err := c.Enable(ctx, "auth"); err != nil {
		t.Fatal(err)
	}
	if b, _ = c.Get(ctx, "audit"); b.Status != events.StatusRestarted {
		t.Errorf("audit after auth enabled = %s, want restarted", b.Status)
	}
	if _, err := c.Register(ctx, events.PluginSpec{Name: "auth", Event: "on_user_authorisation", Depends: []events.Dependency{{Name: "audit", Soft: true}}}); !errors.Is(err, client.ErrCycle) {
		t.Errorf("Register closing a cycle = %v, want ErrCycle", err)
	}
	if _, err := c.Register(ctx, events.PluginSpec{Name: "bad name!", Event: "e"}); !errors.Is(err, events.ErrInvalid) {
		t.Errorf("Register with a bad name = %v, want events.ErrInvalid", err)
	}
	if _, err := c.Get(ctx, "nobody"); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("Get unknown = %v, want ErrNotFound", err)
	}
	list, err := c.List(ctx, events.PluginFilter{Status: events.StatusRestarted})
	if err != nil || len(list) != 1 || list[0].Name != "audit" {
		t.Errorf("List restarted = %v, %v; want [audit]", list, err)
	}
	if _, err := c.Unregister(ctx, "auth"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, "auth"); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("Get after unregister = %v, want ErrNotFound", err)
	}
	if b, _ = c.Get(ctx, "audit"); b.Status != events.StatusHeld {
		t.Errorf("audit after auth unregistered = %s, want held", b.Status)
	}

	// Every change was announced, in order, on the lifecycle stream.
	want := map[string][]string{
		"auth":  {"registered", "started", "stopped", "started", "unregistered"},
		"audit": {"held", "restarted", "held", "restarted", "held"},
	}
	for name, types := range want {
		if got := lifecycleTypes(t, js, name); !slices.Equal(got, types) {
			t.Errorf("lifecycle of %s = %v, want %v", name, got, types)
		}
	}
}

// lifecycleTypes reads every lifecycle event of a plugin, in order, as the
// last token of its type.
func lifecycleTypes(t *testing.T, js jetstream.JetStream, name string) []string {
	t.Helper()
	cons, err := js.OrderedConsumer(t.Context(), events.StreamLifecycle, jetstream.OrderedConsumerConfig{FilterSubjects: []string{"hookbus.lifecycle." + name}})
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for range info.NumPending {
		msg, err := cons.Next(jetstream.FetchMaxWait(2 * time.Second))
		if err != nil {
			t.Fatal(err)
		}
		e, err := events.Decode(msg.Headers(), msg.Data())
		if err != nil {
			t.Fatalf("lifecycle event does not decode: %v", err)
		}
		var p events.Plugin
		if err := json.Unmarshal(e.Data(), &p); err != nil || p.Name != name {
			t.Fatalf("lifecycle data = %s, %v", e.Data(), err)
		}
		out = append(out, strings.TrimPrefix(e.Type(), events.LifecycleTypePrefix))
	}
	return out
}

func TestBulkByEvent(t *testing.T) {
	srv, c, _ := setup(t)
	runRegistry(t, srv)
	ctx := ctxT(t)
	for _, s := range []events.PluginSpec{
		{Name: "b", Event: "e", Depends: []events.Dependency{{Name: "a"}}},
		{Name: "a", Event: "e"},
		{Name: "x", Event: "other"},
	} {
		if _, err := c.Register(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	got, err := c.Apply(ctx, events.OpStart, "e")
	if err != nil {
		t.Fatalf("bulk start: %v", err)
	}
	if len(got) != 2 || got[0].Name != "a" || got[1].Name != "b" || !got[0].Status.Running() || !got[1].Status.Running() {
		t.Errorf("bulk start = %v, want a then b running", got)
	}
	if x, _ := c.Get(ctx, "x"); x.Status != events.StatusRegistered {
		t.Errorf("plugin of another event touched: %s", x.Status)
	}
	if _, err := c.Apply(ctx, events.OpStop, "nothing"); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("bulk on an empty event = %v, want ErrNotFound", err)
	}
}

func TestCommandsWaitForARegistry(t *testing.T) {
	srv, c, _ := setup(t)
	// No registry: commands are stored, not answered.
	for _, op := range []func(context.Context) error{
		func(ctx context.Context) error {
			_, err := c.Register(ctx, events.PluginSpec{Name: "a", Event: "e"})
			return err
		},
		func(ctx context.Context) error { _, err := c.Start(ctx, "a"); return err },
		func(ctx context.Context) error { _, err := c.Stop(ctx, "a"); return err },
		func(ctx context.Context) error { _, err := c.Enable(ctx, "a"); return err },
		func(ctx context.Context) error { _, err := c.Restart(ctx, "a"); return err },
	} {
		short, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		err := op(short)
		cancel()
		if !errors.Is(err, client.ErrNotApplied) {
			t.Fatalf("command without a registry = %v, want ErrNotApplied", err)
		}
	}
	runRegistry(t, srv)
	ctx := ctxT(t)
	natstest.Eventually(t, 5*time.Second, func() error {
		p, err := c.Get(ctx, "a")
		if err != nil {
			return err
		}
		// register, start, stop, enable, restart applied in order end in
		// restarted; any other order ends elsewhere.
		if p.Status != events.StatusRestarted || p.CommandSeq != 5 {
			return fmt.Errorf("a is %s at command %d, want restarted at 5", p.Status, p.CommandSeq)
		}
		return nil
	})
}

func TestInvalidCommandIsAnsweredAndDoesNotBlock(t *testing.T) {
	srv, c, _ := setup(t)
	runRegistry(t, srv)
	ctx := ctxT(t)
	// Subscription and command on one connection (see sendCommand).
	nc := natstest.Connect(t, srv)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}

	send := func(t *testing.T, subject string, h nats.Header, data []byte) (events.CommandReply, nats.Header) {
		// The answer subject of the plugin the subject names (token 5),
		// or of a bulk command.
		target := ""
		if tokens := strings.Split(subject, "."); len(tokens) > 4 {
			target = tokens[4]
		}
		inbox, err := events.AnswerSubject("plugin", target, nats.NewInbox()[len("_INBOX."):])
		if err != nil {
			t.Fatal(err)
		}
		sub, err := nc.SubscribeSync(inbox)
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Unsubscribe()
		msg := &nats.Msg{Subject: subject, Header: h, Data: data}
		if msg.Header == nil {
			msg.Header = nats.Header{}
		}
		msg.Header.Set(events.HeaderReplyTo, inbox)
		if _, err := js.PublishMsg(ctx, msg); err != nil {
			t.Fatal(err)
		}
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var r events.CommandReply
		if err := json.Unmarshal(m.Data, &r); err != nil {
			t.Fatal(err)
		}
		return r, m.Header
	}
	ce := func(typ, data string) (nats.Header, []byte) {
		e := event.New()
		e.SetID(typ + data) // distinct, or JetStream would drop it as a duplicate
		e.SetSource("/test")
		e.SetType(typ)
		e.SetDataContentType("application/json")
		e.DataEncoded = []byte(data)
		m, err := events.Encode("hookbus.cmd.plugin.x", &e)
		if err != nil {
			t.Fatal(err)
		}
		return m.Header, m.Data
	}
	tests := []struct {
		name    string
		subject string
		h       nats.Header
		data    []byte
		want    string
	}{
		{"not a cloudevent", "hookbus.cmd.plugin.start.a", nil, []byte("start a please"), "invalid event: specversion: not a CloudEvent"},
		{"unknown op", "hookbus.cmd.plugin.explode.a", nil, nil, "invalid command: op"},
		{"type and subject differ", "hookbus.cmd.plugin.start.a", nil, nil, `command type "hookbus.cmd.plugin.stop" does not match`},
		{"unknown field", "hookbus.cmd.plugin.start.a", nil, nil, `unknown field "nmae"`},
		{"subject names another plugin", "hookbus.cmd.plugin.stop.a", nil, nil, `the subject names plugin "a", the command is about "b"`},
		{"register of another plugin", "hookbus.cmd.plugin.register.a", nil, nil, `the subject names plugin "a", the command is about "b"`},
		{"one plugin on the bulk subject", "hookbus.cmd.plugin.stop", nil, nil, `the subject names plugin "", the command is about "a"`},
		{"register on another event", "hookbus.cmd.plugin.register.a.e", nil, nil, `the subject names event "e", the declaration "com.other.payment"`},
		{"register without an event", "hookbus.cmd.plugin.register.a", nil, nil, `the subject names event "", the declaration "e"`},
	}
	tests[1].h, tests[1].data = ce("hookbus.cmd.plugin.explode", `{"name":"a"}`)
	tests[2].h, tests[2].data = ce("hookbus.cmd.plugin.stop", `{"name":"a"}`)
	tests[3].h, tests[3].data = ce("hookbus.cmd.plugin.start", `{"nmae":"a"}`)
	tests[4].h, tests[4].data = ce("hookbus.cmd.plugin.stop", `{"name":"b"}`)
	tests[5].h, tests[5].data = ce("hookbus.cmd.plugin.register", `{"plugin":{"name":"b","event":"e"}}`)
	tests[6].h, tests[6].data = ce("hookbus.cmd.plugin.stop", `{"name": "a"}`) // another id than tests[2]
	tests[7].h, tests[7].data = ce("hookbus.cmd.plugin.register", `{"plugin":{"name":"a","event":"com.other.payment"}}`)
	tests[8].h, tests[8].data = ce("hookbus.cmd.plugin.register", `{"plugin":{"name":"a","event":"e"}}`)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, h := send(t, tt.subject, tt.h, tt.data)
			if r.Error == nil || r.Error.Code != events.CodeInvalid || !strings.Contains(r.Error.Message, tt.want) {
				t.Errorf("reply = %+v, want invalid: %q", r.Error, tt.want)
			}
			// The same error in micro's headers (docs/protocol.md, "Errors").
			if h.Get(micro.ErrorCodeHeader) != "invalid" || !strings.Contains(h.Get(micro.ErrorHeader), tt.want) {
				t.Errorf("headers %v, want %s invalid and %s containing %q", h, micro.ErrorCodeHeader, micro.ErrorHeader, tt.want)
			}
		})
	}
	// The valid command behind them goes through, answered without error
	// headers.
	if _, err := c.Register(ctx, events.PluginSpec{Name: "a", Event: "e"}); err != nil {
		t.Fatalf("valid command after invalid ones: %v", err)
	}
	h, data := ce("hookbus.cmd.plugin.start", `{"name":"a"}`)
	if r, h := send(t, "hookbus.cmd.plugin.start.a", h, data); r.Error != nil || len(r.Plugins) != 1 || h.Get(micro.ErrorCodeHeader) != "" {
		t.Errorf("start a: reply %+v, headers %v; want the plugin and no error header", r, h)
	}
}

// TestConcurrentRegistriesEqualSerialReplay sends hundreds of commands on
// overlapping plugins from many goroutines to two registries, then checks
// that the final state, and every answer, equal applying the stored
// commands one by one in stream order.
func TestConcurrentRegistriesEqualSerialReplay(t *testing.T) {
	if testing.Short() {
		t.Skip("hundreds of commands")
	}
	srv, _, _ := setup(t)
	runRegistry(t, srv)
	runRegistry(t, srv)
	// The answer's subscription and the command must go out on the same
	// connection, or the answer may come back before the server has the
	// subscription.
	nc := natstest.Connect(t, srv)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()

	names := []string{"p0", "p1", "p2", "p3", "p4", "p5"}
	// Unregister is rarer, so the final state has plugins left to compare.
	ops := []events.PluginOp{events.OpStart, events.OpStart, events.OpStop, events.OpStop, events.OpRestart, events.OpEnable, events.OpEnable, events.OpDelete, events.OpUnregister}
	type sent struct {
		seq   uint64
		op    events.PluginOp
		cmd   events.PluginCommand
		reply events.CommandReply
	}
	const workers, perWorker = 8, 40
	results := make([][]sent, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 42))
			for i := range perWorker {
				op := ops[rng.IntN(len(ops))]
				cmd := events.PluginCommand{Name: names[rng.IntN(len(names))]}
				if rng.IntN(3) == 0 {
					op = events.OpRegister
					name := names[rng.IntN(len(names))]
					spec := events.PluginSpec{Name: name, Event: "e" + fmt.Sprint(rng.IntN(2)), Priority: rng.IntN(100)}
					if dep := names[rng.IntN(len(names))]; dep != name {
						spec.Depends = []events.Dependency{{Name: dep, Soft: rng.IntN(2) == 0}}
					}
					cmd = events.PluginCommand{Plugin: &spec}
				}
				seq, reply, err := sendCommand(ctx, nc, js, fmt.Sprintf("w%d-%d", w, i), op, cmd)
				if err != nil {
					t.Errorf("worker %d command %d: %v", w, i, err)
					return
				}
				results[w] = append(results[w], sent{seq, op, cmd, reply})
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	var all []sent
	for _, r := range results {
		all = append(all, r...)
	}
	slices.SortFunc(all, func(a, b sent) int { return int(a.seq) - int(b.seq) })

	// Replay serially through a third, fresh registry on a fresh server.
	srv2, c2, _ := setup(t)
	runRegistry(t, srv2)
	for _, s := range all {
		var err error
		var got []events.Plugin
		if s.op == events.OpRegister {
			var p events.Plugin
			p, err = c2.Register(ctx, *s.cmd.Plugin)
			got = []events.Plugin{p}
		} else {
			got, err = applyByName(ctx, c2, s.op, s.cmd.Name)
		}
		var ce *client.Error
		switch {
		case s.reply.Error != nil:
			if !errors.As(err, &ce) || ce.Code != s.reply.Error.Code {
				t.Errorf("seq %d %s %+v: concurrent run answered %v, serial replay %v", s.seq, s.op, s.cmd, s.reply.Error, err)
			}
		case err != nil:
			t.Errorf("seq %d %s: concurrent run succeeded, serial replay: %v", s.seq, s.op, err)
		case len(got) != len(s.reply.Plugins) || (len(got) == 1 && got[0].Status != s.reply.Plugins[0].Status):
			t.Errorf("seq %d %s %s: concurrent answer %v, serial %v", s.seq, s.op, s.cmd.Name, s.reply.Plugins, got)
		}
	}
	c1, err := client.New(natstest.Connect(t, srv))
	if err != nil {
		t.Fatal(err)
	}
	final1, err := c1.List(ctx, events.PluginFilter{})
	if err != nil {
		t.Fatal(err)
	}
	final2, err := c2.List(ctx, events.PluginFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if render(final1) != render(final2) {
		t.Errorf("final state differs from the serial replay:\nconcurrent: %s\nserial:     %s", render(final1), render(final2))
	}
	t.Logf("%d commands, final state %s", len(all), render(final1))
}

func applyByName(ctx context.Context, c *client.Client, op events.PluginOp, name string) ([]events.Plugin, error) {
	f := map[events.PluginOp]func(context.Context, string) (events.Plugin, error){
		events.OpStart: c.Start, events.OpStop: c.Stop, events.OpRestart: c.Restart,
		events.OpEnable: c.Enable, events.OpDelete: c.Delete, events.OpUnregister: c.Unregister,
	}[op]
	p, err := f(ctx, name)
	return []events.Plugin{p}, err
}

func render(ps []events.Plugin) string {
	var parts []string
	for _, p := range ps {
		b, _ := json.Marshal(p.PluginSpec)
		parts = append(parts, fmt.Sprintf("%s=%s%s", p.Name, p.Status, b))
	}
	slices.Sort(parts)
	return strings.Join(parts, " ")
}

// sendCommand publishes one command and waits for the answer, returning
// the command's stream sequence.
func sendCommand(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, id string, op events.PluginOp, cmd events.PluginCommand) (uint64, events.CommandReply, error) {
	subject, err := events.CommandSubject("plugin", string(op), cmd.Target())
	if op == events.OpRegister {
		subject, err = events.RegisterSubject(cmd.Target(), cmd.Plugin.Event)
	}
	if err != nil {
		return 0, events.CommandReply{}, err
	}
	e := event.New()
	e.SetID(id)
	e.SetSource("/test")
	e.SetType(events.CommandTypePrefix + string(op))
	if err := e.SetData(event.ApplicationJSON, cmd); err != nil {
		return 0, events.CommandReply{}, err
	}
	msg, err := events.Encode(subject, &e)
	if err != nil {
		return 0, events.CommandReply{}, err
	}
	inbox, err := events.AnswerSubject("plugin", cmd.Target(), id)
	if err != nil {
		return 0, events.CommandReply{}, err
	}
	ch := make(chan *nats.Msg, 4)
	sub, err := nc.ChanSubscribe(inbox, ch)
	if err != nil {
		return 0, events.CommandReply{}, err
	}
	defer sub.Unsubscribe()
	msg.Header.Set(events.HeaderReplyTo, inbox)
	ack, err := js.PublishMsg(ctx, msg)
	if err != nil {
		return 0, events.CommandReply{}, fmt.Errorf("publish: %w", err)
	}
	var m *nats.Msg
	select {
	case m = <-ch:
	case <-ctx.Done():
		return 0, events.CommandReply{}, fmt.Errorf("answer to command %d: %w", ack.Sequence, ctx.Err())
	}
	var r events.CommandReply
	err = json.Unmarshal(m.Data, &r)
	return ack.Sequence, r, err
}

// A command whose Hookbus-Reply-To is not an answer subject of its plugin
// is refused: the registry would otherwise publish, with its own rights,
// wherever the sender asks (another plugin's state in the bucket, a forged
// lifecycle event).
func TestCommandWithForeignReplySubjectIsRefused(t *testing.T) {
	srv, c, js := setup(t)
	runRegistry(t, srv)
	ctx := ctxT(t)
	if _, err := c.Register(ctx, events.PluginSpec{Name: "other", Event: "e"}); err != nil {
		t.Fatal(err)
	}
	before, err := c.Start(ctx, "other")
	if err != nil {
		t.Fatal(err)
	}
	nc := natstest.Connect(t, srv)
	spy, err := nc.SubscribeSync(">")
	if err != nil {
		t.Fatal(err)
	}
	targets := []string{"$KV.hookbus_plugins.other", "hookbus.lifecycle.other", "_INBOX.admin.x", "hookbus.answer.plugin.other"}
	var last uint64
	for i, replyTo := range targets {
		e := event.New()
		e.SetID(fmt.Sprintf("deputy-%d", i))
		e.SetSource("/attacker")
		e.SetType("hookbus.cmd.plugin.stop")
		if err := e.SetData(event.ApplicationJSON, events.PluginCommand{Name: "other"}); err != nil {
			t.Fatal(err)
		}
		msg, err := events.Encode("hookbus.cmd.plugin.stop.other", &e)
		if err != nil {
			t.Fatal(err)
		}
		msg.Header.Set(events.HeaderReplyTo, replyTo)
		ack, err := js.PublishMsg(ctx, msg)
		if err != nil {
			t.Fatal(err)
		}
		last = ack.Sequence
	}
	// Wait until the registry has settled every one of them.
	natstest.Eventually(t, 5*time.Second, func() error {
		info, err := js.Stream(ctx, events.StreamCommands)
		if err != nil {
			return err
		}
		if st := info.CachedInfo().State; st.Msgs != 0 || st.LastSeq < last {
			return fmt.Errorf("%d commands not settled", st.Msgs)
		}
		return nil
	})
	after, err := c.Get(ctx, "other")
	if err != nil {
		t.Fatal(err)
	}
	if after.Status != events.StatusStarted || after.Revision != before.Revision {
		t.Errorf("other is %s at revision %d, want started at %d", after.Status, after.Revision, before.Revision)
	}
	if err := nc.Flush(); err != nil { // what the server routed to spy has arrived
		t.Fatal(err)
	}
	for {
		m, err := spy.NextMsg(0)
		if err != nil {
			break
		}
		for _, target := range targets {
			if m.Subject == target {
				t.Errorf("the registry published on %s", target)
			}
		}
	}
}

// A query the registry refuses is a micro error: the Nats-Service-Error
// headers, the body {"error": {...}}, and counted in $SRV.STATS.
func TestQueryErrorsAreMicroErrors(t *testing.T) {
	srv, _, _ := setup(t)
	runRegistry(t, srv)
	nc := natstest.Connect(t, srv)
	for i, body := range []string{`{"name":"nope"}`, `{"name":"a b"}`} {
		m, err := nc.Request(events.RegistryGetSubject, []byte(body), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"not_found", "invalid"}[i]
		var reply events.ErrorReply
		if err := json.Unmarshal(m.Data, &reply); err != nil || reply.Error == nil {
			t.Fatalf("get %s: body %s (%v), want {\"error\": ...}", body, m.Data, err)
		}
		if code := m.Header.Get(micro.ErrorCodeHeader); code != want || reply.Error.Code != events.ErrorCode(want) ||
			m.Header.Get(micro.ErrorHeader) != reply.Error.Message || reply.Error.Message == "" {
			t.Errorf("get %s: headers %v, body %s; want code %s in both and the message in both", body, m.Header, m.Data, want)
		}
	}
	if n := natstest.EndpointErrors(t, nc, "hookbus-registry", "get"); n != 2 {
		t.Errorf("$SRV.STATS counts %d errors of get, want 2", n)
	}
}
