//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/pkg/client"
	"github.com/hookbus/hookbus/pkg/events"
)

// The conformance suite (e2e/adapters/ADAPTER.md): every plugin-worker SDK,
// driven through its adapter, against a real hookbus serve, case by case.

// adapterDef is how to start one adapter.
type adapterDef struct {
	name string
	cmd  func() *exec.Cmd
	node bool // needs Node.js
}

// adapters are the SDKs the suite holds to the protocol.
func adapters() []adapterDef {
	return []adapterDef{
		{name: "go", cmd: func() *exec.Cmd { return exec.Command(goAdapter) }},
		{name: "node", node: true, cmd: func() *exec.Cmd { return exec.Command("node", filepath.Join(nodeAdapterDir, "adapter.mjs")) }},
		{name: "raw", cmd: func() *exec.Cmd { return exec.Command(rawAdapter) }},
	}
}

// brokenRaw is the raw adapter broken on purpose (-break how).
func brokenRaw(how string) adapterDef {
	return adapterDef{name: "raw-" + how, cmd: func() *exec.Cmd { return exec.Command(rawAdapter, "-break", how) }}
}

// report is one line an adapter writes.
type report struct {
	Report   string          `json:"report"`
	Plugin   string          `json:"plugin"`
	ID       string          `json:"id"`
	Attempt  int             `json:"attempt"`
	Step     int             `json:"step"`
	Outcome  string          `json:"outcome"`
	TMS      int64           `json:"t_ms"`
	SDK      string          `json:"sdk"`
	Features map[string]bool `json:"features"`
	Error    string          `json:"error"`
}

// adapterProc is one running adapter.
type adapterProc struct {
	def    adapterDef
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr *strings.Builder
	exited chan struct{}

	mu      sync.Mutex
	reports []report
	changed chan struct{} // closed and replaced at every report
}

func startAdapter(natsURL string, def adapterDef) (*adapterProc, error) {
	cmd := def.cmd()
	cmd.Env = append(cleanEnv(), "HOOKBUS_NATS_URL="+natsURL)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	a := &adapterProc{def: def, cmd: cmd, stdin: stdin, stderr: &strings.Builder{}, exited: make(chan struct{}), changed: make(chan struct{})}
	cmd.Stderr = &lockedWriter{w: a.stderr}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start adapter %s: %w", def.name, err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var r report
			if json.Unmarshal(sc.Bytes(), &r) != nil {
				continue
			}
			a.mu.Lock()
			a.reports = append(a.reports, r)
			close(a.changed)
			a.changed = make(chan struct{})
			a.mu.Unlock()
		}
		_ = cmd.Wait()
		close(a.exited)
	}()
	return a, nil
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (a *adapterProc) send(v any) error {
	b, _ := json.Marshal(v)
	_, err := a.stdin.Write(append(b, '\n'))
	return err
}

// wait returns the first report matching ok, waiting up to timeout.
func (a *adapterProc) wait(timeout time.Duration, what string, ok func(report) bool) (report, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		a.mu.Lock()
		i := slices.IndexFunc(a.reports, ok)
		var r report
		if i >= 0 {
			r = a.reports[i]
		}
		changed := a.changed
		a.mu.Unlock()
		if i >= 0 {
			return r, nil
		}
		select {
		case <-changed:
		case <-a.exited:
			return report{}, fmt.Errorf("adapter %s exited before %s (stderr: %s)", a.def.name, what, a.stderrText())
		case <-deadline.C:
			return report{}, fmt.Errorf("adapter %s: no %s in %s", a.def.name, what, timeout)
		}
	}
}

// of returns the reports of kind about event id, in order.
func (a *adapterProc) of(kind, id string) []report {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []report
	for _, r := range a.reports {
		if r.Report == kind && r.ID == id {
			out = append(out, r)
		}
	}
	return out
}

func (a *adapterProc) all(kind string) []report {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []report
	for _, r := range a.reports {
		if r.Report == kind {
			out = append(out, r)
		}
	}
	return out
}

func (a *adapterProc) stderrText() string {
	a.cmd.Stderr.(*lockedWriter).mu.Lock()
	defer a.cmd.Stderr.(*lockedWriter).mu.Unlock()
	s := a.stderr.String()
	if len(s) > 4000 {
		s = "..." + s[len(s)-4000:]
	}
	return s
}

// stop asks the adapter to stop and returns its stop report's error.
func (a *adapterProc) stop(timeout time.Duration) error {
	if err := a.send(map[string]string{"cmd": "stop"}); err != nil {
		return err
	}
	r, err := a.wait(timeout, "stopped report", func(r report) bool { return r.Report == "stopped" })
	if err != nil {
		a.kill()
		return err
	}
	select {
	case <-a.exited:
	case <-time.After(5 * time.Second):
		a.kill()
		return fmt.Errorf("adapter %s did not exit after stopping", a.def.name)
	}
	if r.Error != "" {
		return fmt.Errorf("adapter %s stopped with an error: %s", a.def.name, r.Error)
	}
	return nil
}

func (a *adapterProc) kill() {
	_ = a.cmd.Process.Kill()
	<-a.exited
}

// confCase is one case of the suite: run returns what broke the protocol.
type confCase struct {
	name  string
	needs []string // features
	run   func(c *caseEnv) error
}

// caseEnv is what a case works with.
type caseEnv struct {
	t        *testing.T
	srv      *server
	nc       *nats.Conn
	js       jetstream.JetStream
	cl       *client.Client
	def      adapterDef
	name     string // the plugin, unique per case and adapter
	typ      string // its event type
	adapter  *adapterProc
	features map[string]bool
}

// serve starts the adapter (if none runs) and has it serve the plugin,
// then waits until the plugin takes work.
func (c *caseEnv) serve(mode events.Mode, s events.Settings, concurrency int) error {
	return c.serveWith(mode, s, concurrency, 10)
}

// serveAt is serve with the plugin's priority.
func (c *caseEnv) serveAt(mode events.Mode, s events.Settings, priority int) error {
	return c.serveWith(mode, s, 0, priority)
}

func (c *caseEnv) serveWith(mode events.Mode, s events.Settings, concurrency, priority int) error {
	if c.adapter == nil {
		a, err := startAdapter(c.srv.NATSURL, c.def)
		if err != nil {
			return err
		}
		c.adapter = a
		if err := a.send(map[string]string{"cmd": "hello"}); err != nil {
			return err
		}
		if _, err := a.wait(20*time.Second, "hello", func(r report) bool { return r.Report == "hello" }); err != nil {
			return err
		}
	}
	spec := events.PluginSpec{Name: c.name, Event: c.typ, Mode: mode, Priority: priority, Settings: s}
	if err := c.adapter.send(map[string]any{"cmd": "serve", "plugin": spec, "concurrency": concurrency, "drain_timeout_ms": 10_000}); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		ready := false
		if p, err := c.cl.Get(ctx, c.name); err == nil && p.Status.Running() {
			if mode == events.ModeNotify {
				_, err := c.js.Consumer(ctx, events.StreamEvents, events.NotifyConsumer(c.name))
				ready = err == nil
			} else {
				res, err := c.cl.Call(ctx, c.event("probe-"+events.MsgID(c.name, time.Now().String())[:8], map[string]any{}))
				ready = err == nil && slices.ContainsFunc(res.Trace, func(s events.TraceStep) bool {
					return s.Plugin == c.name && s.Outcome == events.OutcomeContinued
				})
			}
		}
		if ready {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("plugin %s not serving within 30s (adapter stderr: %s)", c.name, c.adapter.stderrText())
		case <-c.adapter.exited:
			return fmt.Errorf("adapter exited while starting (stderr: %s)", c.adapter.stderrText())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (c *caseEnv) event(id string, data any) event.Event {
	e := event.New()
	e.SetID(id)
	e.SetSource("/e2e/conformance")
	e.SetType(c.typ)
	_ = e.SetData(event.ApplicationJSON, data)
	return e
}

// publish stores an event with data and returns its stream sequence.
func (c *caseEnv) publish(id string, data any) (uint64, error) {
	ack, err := c.cl.Publish(context.Background(), c.event(id, data))
	return ack.Sequence, err
}

// deadLetter waits for the dead letter of stream sequence seq.
func (c *caseEnv) deadLetter(seq uint64, timeout time.Duration) (client.DeadLetter, error) {
	deadline := time.Now().Add(timeout)
	for {
		for dl, err := range c.cl.DeadLetters(context.Background(), c.name) {
			if err == nil && dl.StreamSeq == seq {
				return dl, nil
			}
		}
		if time.Now().After(deadline) {
			return client.DeadLetter{}, fmt.Errorf("no dead letter of event seq %d for %s in %s", seq, c.name, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// acked waits until the notify queue's ack floor has passed seq with
// nothing pending.
func (c *caseEnv) acked(seq uint64, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last *jetstream.ConsumerInfo
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		cons, err := c.js.Consumer(ctx, events.StreamEvents, events.NotifyConsumer(c.name))
		if err == nil {
			last, err = cons.Info(ctx)
		}
		cancel()
		if err == nil && last.AckFloor.Stream >= seq && last.NumAckPending == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			if last != nil {
				return fmt.Errorf("event seq %d not acknowledged in %s (ack floor %d, %d pending, %d redelivered)", seq, timeout, last.AckFloor.Stream, last.NumAckPending, last.NumRedelivered)
			}
			return fmt.Errorf("event seq %d not acknowledged in %s: %v", seq, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// runs returns the handler runs (start reports) of event id.
func (c *caseEnv) runs(id string) []report { return c.adapter.of("start", id) }

// noMoreRuns checks that event id is not handled again for d.
func (c *caseEnv) noMoreRuns(id string, want int, d time.Duration) error {
	for end := time.Now().Add(d); ; time.Sleep(50 * time.Millisecond) {
		if n := len(c.runs(id)); n != want {
			return fmt.Errorf("event %s handled %d times, want %d", id, n, want)
		}
		if time.Now().After(end) {
			return nil
		}
	}
}

func (c *caseEnv) waitEnd(id string, attempt int, timeout time.Duration) (report, error) {
	return c.adapter.wait(timeout, fmt.Sprintf("end of %s attempt %d", id, attempt), func(r report) bool {
		return r.Report == "end" && r.ID == id && r.Attempt == attempt
	})
}

func (c *caseEnv) call(id string, data any, opts ...client.Option) (events.ChainResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	return c.cl.Call(ctx, c.event(id, data), opts...)
}

var notifyFast = events.Settings{MaxDeliver: 3, BackoffMS: []int{300}}

// conformanceCases are the protocol's observable rules (docs/protocol.md
// "Plugin workers"), one case each.
func conformanceCases() []confCase {
	return []confCase{
		{"chain continue with a new state", []string{"chain"}, func(c *caseEnv) error {
			if err := c.serve(events.ModeChain, events.Settings{}, 0); err != nil {
				return err
			}
			res, err := c.call("c1", map[string]any{"keep": "k", "b": map[string]any{"act": "continue", "set": map[string]any{"x": 1}}})
			if err != nil {
				return err
			}
			var st map[string]any
			_ = json.Unmarshal(res.State, &st)
			if st["x"] != 1.0 || st["keep"] != "k" {
				return fmt.Errorf("state %s, want x 1 set and keep k kept", res.State)
			}
			if len(res.Trace) != 1 || res.Trace[0].Plugin != c.name || res.Trace[0].Outcome != events.OutcomeContinued {
				return fmt.Errorf("trace %+v, want one continued step of %s", res.Trace, c.name)
			}
			// The adapter's reports may come after the call's answer.
			if _, err := c.adapter.wait(5*time.Second, "start of c1", func(r report) bool { return r.Report == "start" && r.ID == "c1" }); err != nil {
				return err
			}
			if r := c.runs("c1"); len(r) != 1 || r[0].Step != 1 || r[0].Attempt < 1 {
				return fmt.Errorf("handler saw %+v, want one run at step 1 with an attempt", r)
			}
			return nil
		}},
		{"chain halt", []string{"chain"}, func(c *caseEnv) error {
			if err := c.serve(events.ModeChain, events.Settings{}, 0); err != nil {
				return err
			}
			res, err := c.call("h1", map[string]any{"b": map[string]any{"act": "halt", "set": map[string]any{"h": true}}})
			if err != nil {
				return err
			}
			var st map[string]any
			_ = json.Unmarshal(res.State, &st)
			if !res.Halted || res.HaltedBy != c.name || st["h"] != true || res.Trace[0].Outcome != events.OutcomeHalted {
				return fmt.Errorf("result %+v (state %s), want halted by %s with h true", res, res.State, c.name)
			}
			return nil
		}},
		{"chain error answer (on_error skip)", []string{"chain"}, func(c *caseEnv) error {
			if err := c.serve(events.ModeChain, events.Settings{}, 0); err != nil {
				return err
			}
			res, err := c.call("e1", map[string]any{"b": map[string]any{"act": "error", "msg": "database down", "set": map[string]any{"x": 1}}})
			if err != nil {
				return err
			}
			var st map[string]any
			_ = json.Unmarshal(res.State, &st)
			if len(res.Trace) != 1 || res.Trace[0].Outcome != events.OutcomeSkipped || res.Trace[0].Error != "database down" || st["x"] != nil {
				return fmt.Errorf("trace %+v state %s, want the step skipped with error %q and the state before it", res.Trace, res.State, "database down")
			}
			return nil
		}},
		{"chain error answer (on_error fail)", []string{"chain"}, func(c *caseEnv) error {
			if err := c.serve(events.ModeChain, events.Settings{OnError: events.OnErrorFail}, 0); err != nil {
				return err
			}
			res, err := c.call("f1", map[string]any{"b": map[string]any{"act": "error", "msg": "refused"}})
			if !errors.Is(err, client.ErrPluginFailed) || len(res.Trace) != 1 || res.Trace[0].Outcome != events.OutcomeFailed {
				return fmt.Errorf("call: %v, trace %+v; want plugin_failed after one failed step", err, res.Trace)
			}
			return nil
		}},
		{"chain private fields restored", []string{"chain"}, func(c *caseEnv) error {
			if err := c.serve(events.ModeChain, events.Settings{}, 0); err != nil {
				return err
			}
			res, err := c.call("p1", map[string]any{"user_id": "u1", "b": map[string]any{"act": "continue", "set": map[string]any{"user_id": "evil", "y": 2}}}, client.Private("user_id"))
			if err != nil {
				return err
			}
			var st map[string]any
			_ = json.Unmarshal(res.State, &st)
			if st["user_id"] != "u1" || st["y"] != 2.0 {
				return fmt.Errorf("state %s, want user_id u1 (private) and y 2", res.State)
			}
			return nil
		}},
		{"notify ack: handled once", []string{"notify"}, func(c *caseEnv) error {
			if err := c.serve(events.ModeNotify, events.Settings{MaxDeliver: 3, BackoffMS: []int{1000}}, 0); err != nil {
				return err
			}
			seq, err := c.publish("a1", map[string]any{"b": map[string]any{}})
			if err != nil {
				return err
			}
			if _, err := c.waitEnd("a1", 1, 15*time.Second); err != nil {
				return err
			}
			if err := c.acked(seq, 5*time.Second); err != nil {
				return err
			}
			return c.noMoreRuns("a1", 1, 1500*time.Millisecond)
		}},
		{"notify retry after the backoff (nak delay corrected)", []string{"notify"}, func(c *caseEnv) error {
			// backoff [500, 2000]: the ack wait is 500 ms, so the second
			// nak needs the correction of docs/protocol.md to wait 2 s
			// (uncorrected it waits 3.5 s).
			if err := c.serve(events.ModeNotify, events.Settings{MaxDeliver: 5, BackoffMS: []int{500, 2000}}, 0); err != nil {
				return err
			}
			seq, err := c.publish("r1", map[string]any{"b": map[string]any{"fail_until": 3}})
			if err != nil {
				return err
			}
			if _, err := c.waitEnd("r1", 3, 20*time.Second); err != nil {
				return err
			}
			runs := c.runs("r1")
			if len(runs) != 3 {
				return fmt.Errorf("%d runs, want 3", len(runs))
			}
			for i, want := range []int64{500, 2000} {
				gap := runs[i+1].TMS - runs[i].TMS
				if gap < want-100 || gap > want+1000 {
					return fmt.Errorf("attempt %d came %d ms after attempt %d, want %d ms (backoff_ms[%d])", i+2, gap, i+1, want, i)
				}
			}
			return c.acked(seq, 5*time.Second)
		}},
		{"notify dead letter after exactly max_deliver runs", []string{"notify"}, func(c *caseEnv) error {
			if err := c.serve(events.ModeNotify, notifyFast, 0); err != nil {
				return err
			}
			seq, err := c.publish("m1", map[string]any{"b": map[string]any{"fail": "always"}})
			if err != nil {
				return err
			}
			dl, err := c.deadLetter(seq, 20*time.Second)
			if err != nil {
				return err
			}
			if dl.Reason != "fail 3" || dl.Deliveries != 3 || dl.Event == nil || dl.Event.ID() != "m1" {
				return fmt.Errorf("dead letter reason %q deliveries %d, want %q after 3", dl.Reason, dl.Deliveries, "fail 3")
			}
			if err := c.acked(seq, 5*time.Second); err != nil {
				return err
			}
			return c.noMoreRuns("m1", 3, time.Second)
		}},
		{"notify permanent failure dead-lettered at once", []string{"notify"}, func(c *caseEnv) error {
			if err := c.serve(events.ModeNotify, notifyFast, 0); err != nil {
				return err
			}
			seq, err := c.publish("x1", map[string]any{"b": map[string]any{"fail": "permanent"}})
			if err != nil {
				return err
			}
			if _, err := c.deadLetter(seq, 15*time.Second); err != nil {
				return err
			}
			if err := c.acked(seq, 5*time.Second); err != nil {
				return err
			}
			return c.noMoreRuns("x1", 1, time.Second)
		}},
		{"notify dead letter stored before the ack", []string{"notify"}, func(c *caseEnv) error {
			// HOOKBUS_DLQ refuses every dead letter while the handler
			// fails for the last time: a worker that acks anyway loses
			// the event; one that follows the rule naks, and the event
			// is dead-lettered once HOOKBUS_DLQ takes messages again.
			if err := c.serve(events.ModeNotify, events.Settings{MaxDeliver: 2, BackoffMS: []int{3000}}, 0); err != nil {
				return err
			}
			restore, err := c.refuseDeadLetters()
			if err != nil {
				return err
			}
			defer restore()
			seq, err := c.publish("d1", map[string]any{"b": map[string]any{"fail": "always"}})
			if err != nil {
				return err
			}
			if _, err := c.waitEnd("d1", 2, 20*time.Second); err != nil {
				return err
			}
			time.Sleep(500 * time.Millisecond) // the worker's dead letter is refused meanwhile
			if err := restore(); err != nil {
				return err
			}
			if _, err := c.deadLetter(seq, 20*time.Second); err != nil {
				return fmt.Errorf("the event was acknowledged without its dead letter stored (lost): %w", err)
			}
			return c.acked(seq, 5*time.Second)
		}},
		{"notify spare delivery dead-lettered without the handler", []string{"notify"}, func(c *caseEnv) error {
			s := events.Settings{MaxDeliver: 2, BackoffMS: []int{1000}}
			if err := c.serve(events.ModeNotify, s, 0); err != nil {
				return err
			}
			seq, err := c.publish("s1", map[string]any{"b": map[string]any{"fail_until": 2, "hang_at": 2}})
			if err != nil {
				return err
			}
			if _, err := c.adapter.wait(20*time.Second, "attempt 2 of s1", func(r report) bool { return r.Report == "start" && r.ID == "s1" && r.Attempt == 2 }); err != nil {
				return err
			}
			c.adapter.kill() // dies during the last try
			c.adapter = nil
			if err := c.serve(events.ModeNotify, s, 0); err != nil {
				return err
			}
			dl, err := c.deadLetter(seq, 20*time.Second)
			if err != nil {
				return err
			}
			if want := fmt.Sprintf("no worker of %s answered in 2 deliveries", c.name); dl.Reason != want {
				return fmt.Errorf("dead letter reason %q, want %q", dl.Reason, want)
			}
			if r := c.runs("s1"); len(r) != 0 {
				return fmt.Errorf("the new worker ran the handler for the spare delivery: %+v", r)
			}
			return nil
		}},
		{"notify invalid events dead-lettered without the handler", []string{"notify"}, func(c *caseEnv) error {
			if err := c.serve(events.ModeNotify, notifyFast, 0); err != nil {
				return err
			}
			subject, _ := events.EventSubject(c.typ)
			var seqs []uint64
			garbage := nats.NewMsg(subject)
			garbage.Header.Set("Nats-Msg-Id", "garbage-"+c.name)
			garbage.Data = []byte("not a cloudevent")
			other := c.event("w1", map[string]any{})
			other.SetType(c.typ + ".other") // a valid event on another type's subject
			wrong, err := events.Encode(subject, &other)
			if err != nil {
				return err
			}
			for _, m := range []*nats.Msg{garbage, wrong} {
				ack, err := c.js.PublishMsg(context.Background(), m)
				if err != nil {
					return err
				}
				seqs = append(seqs, ack.Sequence)
			}
			for _, seq := range seqs {
				if _, err := c.deadLetter(seq, 15*time.Second); err != nil {
					return err
				}
				if err := c.acked(seq, 5*time.Second); err != nil {
					return err
				}
			}
			if r := c.adapter.all("start"); len(r) != 0 {
				return fmt.Errorf("the handler ran for an invalid event: %+v", r)
			}
			return nil
		}},
		{"notify progress for a handler longer than the ack wait", []string{"notify", "progress"}, func(c *caseEnv) error {
			if err := c.serve(events.ModeNotify, events.Settings{MaxDeliver: 3, BackoffMS: []int{1000}}, 0); err != nil {
				return err
			}
			seq, err := c.publish("g1", map[string]any{"b": map[string]any{"sleep_ms": 2500}})
			if err != nil {
				return err
			}
			if _, err := c.waitEnd("g1", 1, 20*time.Second); err != nil {
				return err
			}
			if err := c.acked(seq, 5*time.Second); err != nil {
				return err
			}
			return c.noMoreRuns("g1", 1, time.Second)
		}},
		{"notify drain at shutdown", []string{"notify", "drain"}, func(c *caseEnv) error {
			if err := c.serve(events.ModeNotify, events.Settings{MaxDeliver: 3, BackoffMS: []int{5000}}, 0); err != nil {
				return err
			}
			seq, err := c.publish("n1", map[string]any{"b": map[string]any{"sleep_ms": 1500}})
			if err != nil {
				return err
			}
			if _, err := c.adapter.wait(15*time.Second, "start of n1", func(r report) bool { return r.Report == "start" && r.ID == "n1" }); err != nil {
				return err
			}
			a := c.adapter
			c.adapter = nil
			if err := a.stop(20 * time.Second); err != nil {
				return err
			}
			if e := a.of("end", "n1"); len(e) != 1 || e[0].Outcome != "ok" {
				return fmt.Errorf("the running handler did not finish at shutdown: %+v", e)
			}
			return c.acked(seq, 5*time.Second)
		}},
		{"notify concurrency limit", []string{"notify", "concurrency"}, func(c *caseEnv) error {
			const limit, n = 3, 12
			if err := c.serve(events.ModeNotify, events.Settings{MaxDeliver: 3, BackoffMS: []int{10_000}}, limit); err != nil {
				return err
			}
			var last uint64
			for i := range n {
				seq, err := c.publish(fmt.Sprintf("k%d", i), map[string]any{"b": map[string]any{"sleep_ms": 400}})
				if err != nil {
					return err
				}
				last = seq
			}
			for i := range n {
				if _, err := c.waitEnd(fmt.Sprintf("k%d", i), 1, 30*time.Second); err != nil {
					return err
				}
			}
			type edge struct {
				t     int64
				delta int
			}
			var edges []edge
			for _, r := range c.adapter.all("start") {
				edges = append(edges, edge{r.TMS, +1})
			}
			for _, r := range c.adapter.all("end") {
				edges = append(edges, edge{r.TMS, -1})
			}
			sort.Slice(edges, func(i, j int) bool {
				return edges[i].t < edges[j].t || edges[i].t == edges[j].t && edges[i].delta < edges[j].delta
			})
			cur, most := 0, 0
			for _, e := range edges {
				cur += e.delta
				most = max(most, cur)
			}
			if most > limit || most < 2 {
				return fmt.Errorf("%d handlers ran at once at most, want 2 to %d", most, limit)
			}
			return c.acked(last, 5*time.Second)
		}},
	}
}

// refuseDeadLetters makes HOOKBUS_DLQ refuse every message (its
// max_msg_size made tiny); the function returned restores it (once).
func (c *caseEnv) refuseDeadLetters() (func() error, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := c.js.Stream(ctx, events.StreamDLQ)
	if err != nil {
		return nil, err
	}
	orig := s.CachedInfo().Config
	tiny := orig
	tiny.MaxMsgSize = 16
	if _, err := c.js.UpdateStream(ctx, tiny); err != nil {
		return nil, fmt.Errorf("make %s refuse messages: %w", events.StreamDLQ, err)
	}
	var once sync.Once
	var rerr error
	return func() error {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, rerr = c.js.UpdateStream(ctx, orig)
		})
		return rerr
	}, nil
}

// conformanceResult is one cell of the table.
type conformanceResult struct {
	adapter, name, outcome string
	err                    error
}

// runConformance runs cases against one adapter on its own hookbus serve.
func runConformance(t *testing.T, def adapterDef, cases []confCase) []conformanceResult {
	t.Helper()
	srv := startServer(t, t.TempDir())
	nc, js, cl := connectClient(t, srv, "hookbus-e2e-conformance")
	features := helloFeatures(t, srv, def)
	var out []conformanceResult
	for i, cc := range cases {
		res := conformanceResult{adapter: def.name, name: cc.name}
		if missing := slices.DeleteFunc(slices.Clone(cc.needs), func(f string) bool { return features[f] }); len(missing) > 0 {
			res.outcome = "skipped (" + strings.Join(missing, ", ") + ")"
			out = append(out, res)
			continue
		}
		id := strings.ReplaceAll(def.name, "-", "")
		c := &caseEnv{t: t, srv: srv, nc: nc, js: js, cl: cl, def: def, features: features,
			name: fmt.Sprintf("cf-%s-%d", id, i), typ: fmt.Sprintf("conformance.%s.case%d", id, i)}
		res.err = cc.run(c)
		if c.adapter != nil {
			if err := c.adapter.stop(30 * time.Second); err != nil && res.err == nil {
				res.err = err
			}
		}
		res.outcome = "pass"
		if res.err != nil {
			res.outcome = "FAIL"
		}
		out = append(out, res)
	}
	srv.stop(t)
	return out
}

// helloFeatures starts the adapter once to read its features.
func helloFeatures(t *testing.T, srv *server, def adapterDef) map[string]bool {
	t.Helper()
	a, err := startAdapter(srv.NATSURL, def)
	if err != nil {
		t.Fatal(err)
	}
	defer a.kill()
	if err := a.send(map[string]string{"cmd": "hello"}); err != nil {
		t.Fatal(err)
	}
	r, err := a.wait(30*time.Second, "hello", func(r report) bool { return r.Report == "hello" })
	if err != nil {
		t.Fatal(err)
	}
	return r.Features
}

// TestConformance holds every SDK's worker to the protocol and prints the
// table of cases (also written to $HOOKBUS_CONFORMANCE_TABLE when set).
func TestConformance(t *testing.T) {
	var table []conformanceResult
	for _, def := range adapters() {
		t.Run(def.name, func(t *testing.T) {
			if def.node {
				requireNode(t)
			}
			results := runConformance(t, def, conformanceCases())
			for _, r := range results {
				if r.err != nil {
					t.Errorf("%s: %s: %v", def.name, r.name, r.err)
				}
			}
			table = append(table, results...)
		})
	}
	printConformance(t, table)
}

// TestConformanceCatchesBrokenAdapter shows the suite fails a worker that
// breaks the rules it guards: the raw adapter passes the two cases, and
// fails each when broken on purpose.
func TestConformanceCatchesBrokenAdapter(t *testing.T) {
	byName := map[string]confCase{}
	for _, cc := range conformanceCases() {
		byName[cc.name] = cc
	}
	dlq := byName["notify dead letter stored before the ack"]
	nak := byName["notify retry after the backoff (nak delay corrected)"]
	var table []conformanceResult
	for _, tc := range []struct {
		def  adapterDef
		fail map[string]bool
	}{
		{brokenRaw("ack-before-dlq"), map[string]bool{dlq.name: true, nak.name: false}},
		{brokenRaw("wrong-nak-delay"), map[string]bool{dlq.name: false, nak.name: true}},
	} {
		results := runConformance(t, tc.def, []confCase{dlq, nak})
		for _, r := range results {
			if failed := r.err != nil; failed != tc.fail[r.name] {
				t.Errorf("%s: %s: failed %v (%v), want failed %v", tc.def.name, r.name, failed, r.err, tc.fail[r.name])
			}
		}
		table = append(table, results...)
	}
	printConformance(t, table)
}

func printConformance(t *testing.T, table []conformanceResult) {
	var adaptersSeen []string
	cells := map[string]map[string]string{}
	var names []string
	for _, r := range table {
		if !slices.Contains(adaptersSeen, r.adapter) {
			adaptersSeen = append(adaptersSeen, r.adapter)
		}
		if cells[r.name] == nil {
			cells[r.name] = map[string]string{}
			names = append(names, r.name)
		}
		cells[r.name][r.adapter] = r.outcome
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%-58s", "conformance case")
	for _, a := range adaptersSeen {
		fmt.Fprintf(&b, " | %-20s", a)
	}
	b.WriteString("\n")
	for _, n := range names {
		fmt.Fprintf(&b, "%-58s", n)
		for _, a := range adaptersSeen {
			fmt.Fprintf(&b, " | %-20s", cells[n][a])
		}
		b.WriteString("\n")
	}
	t.Logf("\n%s", b.String())
	if path := os.Getenv("HOOKBUS_CONFORMANCE_TABLE"); path != "" {
		f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err == nil {
			_, _ = f.WriteString(t.Name() + ":\n" + b.String() + "\n")
			_ = f.Close()
		}
	}
}
