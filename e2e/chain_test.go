//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/internal/natstest"
	"github.com/hookbus/hookbus/pkg/events"
)

const greeting = "com.example.greeting"

// TestChainGoAndNode runs the two example plugins, the Go SDK one and the
// Node.js one (npm nats, no Hookbus library), as workers of one chain
// under `hookbus serve`, and calls the chain from the CLI: both run, in
// priority order, and both change the state. Then a Go worker that halts
// joins between them, a plugin with error policy fail and no worker makes
// the call fail, and the workers shut down cleanly.
func TestChainGoAndNode(t *testing.T) {
	requireNode(t)
	srv := startServer(t, t.TempDir())

	goWorker := startWorker(t, goPlugin, "-nats-url", srv.NATSURL, "-name", "greeter-go", "-event", greeting, "-priority", "10")
	nodeWorker := startWorker(t, "node", filepath.Join(nodePluginDir, "plugin.mjs"),
		"--nats-url", srv.NATSURL, "--name", "greeter-node", "--event", greeting, "--priority", "20")
	nodeWorker.waitOutput(t, "plugin greeter-node ready (started)")
	goWorker.waitOutput(t, "plugin greeter-go started")

	res := callUntil(t, srv, 2)
	wantTrace(t, res, "greeter-go:continued", "greeter-node:continued")
	if got := visited(t, res); !slices.Equal(got, []string{"greeter-go", "greeter-node"}) || res.Halted {
		t.Errorf("state %s (halted %v), want visited by greeter-go then greeter-node", res.State, res.Halted)
	}

	// Text output for people: the state, who halted, the trace in order.
	stdout, stderr, code := run(t, "call", "--nats-url", srv.NATSURL, "--type", greeting, "--data", `{"name":"ada"}`)
	if code != 0 {
		t.Fatalf("hookbus call: exit %d\n%s%s", code, stdout, stderr)
	}
	for _, want := range []string{`state:  {"name":"ada","visited":["greeter-go","greeter-node"]}`, "halted: no", "STEP", "1     greeter-go    continued", "2     greeter-node  continued"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("hookbus call printed:\n%s\nwant a line with %q", stdout, want)
		}
	}

	// A worker that halts, between the two: the Node.js plugin is not called.
	stopper := startWorker(t, goPlugin, "-nats-url", srv.NATSURL, "-name", "stopper", "-event", greeting, "-priority", "15", "-halt", "-exit", "unregister")
	stopper.waitOutput(t, "plugin stopper started")
	res = callUntil(t, srv, 2, func(r events.ChainResult) bool { return r.Halted })
	wantTrace(t, res, "greeter-go:continued", "stopper:halted")
	if got := visited(t, res); !slices.Equal(got, []string{"greeter-go", "stopper"}) || res.HaltedBy != "stopper" {
		t.Errorf("state %s, halted by %q; want visited by greeter-go then stopper, halted by stopper", res.State, res.HaltedBy)
	}
	stopper.stop(t) // and it unregisters its plugin on the way out
	callUntil(t, srv, 2, func(r events.ChainResult) bool { return !r.Halted })

	// A plugin with error policy fail and no worker: the call fails, exit 1,
	// with the state before it and the trace.
	if _, stderr, code := run(t, "plugin", "register", "--nats-url", srv.NATSURL, "--name", "strict", "--event", greeting, "--priority", "30", "--on-error", "fail"); code != 0 {
		t.Fatalf("register strict: exit %d: %s", code, stderr)
	}
	if _, stderr, code := run(t, "plugin", "start", "--nats-url", srv.NATSURL, "strict"); code != 0 {
		t.Fatalf("start strict: exit %d: %s", code, stderr)
	}
	var failed events.ChainResult
	natstest.Eventually(t, 10*time.Second, func() error {
		stdout, stderr, code := run(t, "call", "--nats-url", srv.NATSURL, "--type", greeting, "--data", `{}`, "-o", "json")
		if code != 1 {
			return fmt.Errorf("exit %d, want 1\n%s%s", code, stdout, stderr)
		}
		if !strings.Contains(stderr, "plugin_failed: plugin strict: no plugin worker is running") {
			return fmt.Errorf("stderr %q, want the plugin_failed reason", stderr)
		}
		return json.Unmarshal([]byte(stdout), &failed)
	})
	wantTrace(t, failed, "greeter-go:continued", "greeter-node:continued", "strict:failed")
	if failed.Error == nil || failed.Error.Code != events.CodePluginFailed || len(visited(t, failed)) != 2 {
		t.Errorf("failed call = %+v (state %s), want plugin_failed with the state before strict", failed.Error, failed.State)
	}

	// Invalid input: exit 2 before anything is sent.
	if _, stderr, code := run(t, "call", "--nats-url", srv.NATSURL, "--type", "bad type", "--data", "{}"); code != 2 || !strings.Contains(stderr, "invalid event: type") {
		t.Errorf("call with a bad type: exit %d, stderr %q; want 2 naming the type", code, stderr)
	}

	goWorker.stop(t)
	nodeWorker.stop(t)
	srv.stop(t)
}

// TestDLQCLI: an invalid event published raw on a type with a chain
// plugin is dead-lettered by the dispatcher, `hookbus dlq list` shows it with the reason, and replaying
// it is refused (it would be refused again).
func TestDLQCLI(t *testing.T) {
	srv := startServer(t, t.TempDir())
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	nc, err := nats.Connect(srv.NATSURL, nats.Name("hookbus-e2e"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	// The dispatcher reads the events of types with running chain plugins.
	if _, stderr, code := run(t, "plugin", "register", "--nats-url", srv.NATSURL, "--name", "greeter", "--event", greeting); code != 0 {
		t.Fatalf("register: exit %d: %s", code, stderr)
	}
	if _, stderr, code := run(t, "plugin", "start", "--nats-url", srv.NATSURL, "greeter"); code != 0 {
		t.Fatalf("start: exit %d: %s", code, stderr)
	}
	if _, err := js.Publish(ctx, "hookbus.event."+greeting, []byte(`{"specversion":"1.0","source":"/raw","type":"`+greeting+`"}`)); err != nil {
		t.Fatal(err)
	}

	type deadLetter struct {
		Seq        uint64 `json:"seq"`
		Subscriber string `json:"subscriber"`
		Reason     string `json:"reason"`
		StreamSeq  uint64 `json:"stream_seq"`
		Data       string `json:"data"`
	}
	var dls []deadLetter
	natstest.Eventually(t, 10*time.Second, func() error {
		stdout, stderr, code := run(t, "dlq", "list", "--nats-url", srv.NATSURL, "-o", "json")
		if code != 0 {
			return fmt.Errorf("dlq list: exit %d: %s", code, stderr)
		}
		if err := json.Unmarshal([]byte(stdout), &dls); err != nil {
			return err
		}
		if len(dls) != 1 {
			return fmt.Errorf("%d dead letters, want 1", len(dls))
		}
		return nil
	})
	if dl := dls[0]; dl.Subscriber != events.DispatcherConsumer || dl.Reason != "invalid event: id: required" || dl.StreamSeq != 1 || !strings.Contains(dl.Data, `"/raw"`) {
		t.Errorf("dead letter = %+v", dl)
	}
	stdout, _, code := run(t, "dlq", "list", "--nats-url", srv.NATSURL)
	if code != 0 || !strings.Contains(stdout, "TYPE") || !strings.Contains(stdout, "hookbus-dispatcher  -     -") {
		t.Errorf("dlq list table:\n%s", stdout)
	}
	_, stderr, code := run(t, "dlq", "replay", "--nats-url", srv.NATSURL, fmt.Sprint(dls[0].Seq))
	if code != 1 || !strings.Contains(stderr, "cannot be replayed") {
		t.Errorf("dlq replay of the dispatcher's dead letter: exit %d, stderr %q; want 1, cannot be replayed", code, stderr)
	}
	_, stderr, code = run(t, "dlq", "replay", "--nats-url", srv.NATSURL, "x")
	if code != 2 {
		t.Errorf("dlq replay x: exit %d, stderr %q; want 2", code, stderr)
	}
	srv.stop(t)
}

// callUntil runs `hookbus call -o json` until the trace has n steps and
// every extra condition holds (the dispatcher's route table follows plugin
// changes within a fraction of a second), and returns the result.
func callUntil(t *testing.T, srv *server, n int, conds ...func(events.ChainResult) bool) events.ChainResult {
	t.Helper()
	var res events.ChainResult
	natstest.Eventually(t, 15*time.Second, func() error {
		stdout, stderr, code := run(t, "call", "--nats-url", srv.NATSURL, "--type", greeting, "--data", `{"name":"ada"}`, "-o", "json")
		if code != 0 {
			return fmt.Errorf("hookbus call: exit %d\n%s%s", code, stdout, stderr)
		}
		res = events.ChainResult{}
		if err := json.Unmarshal([]byte(stdout), &res); err != nil {
			return fmt.Errorf("hookbus call printed %q: %v", stdout, err)
		}
		if len(res.Trace) != n {
			return fmt.Errorf("trace %+v, want %d steps", res.Trace, n)
		}
		for _, ok := range conds {
			if !ok(res) {
				return fmt.Errorf("result %+v not as wanted yet", res)
			}
		}
		return nil
	})
	return res
}

func wantTrace(t *testing.T, res events.ChainResult, want ...string) {
	t.Helper()
	var got []string
	for _, s := range res.Trace {
		got = append(got, s.Plugin+":"+string(s.Outcome))
	}
	if !slices.Equal(got, want) {
		t.Errorf("trace %+v, want %v", res.Trace, want)
	}
}

// visited is the "visited" list the example plugins append to.
func visited(t *testing.T, res events.ChainResult) []string {
	t.Helper()
	var state struct {
		Visited []string `json:"visited"`
	}
	if err := json.Unmarshal(res.State, &state); err != nil {
		t.Fatalf("state %s: %v", res.State, err)
	}
	return state.Visited
}

// worker is a plugin worker subprocess (an example plugin).
type worker struct {
	name   string
	cmd    *exec.Cmd
	out    *natstest.SyncBuffer // stdout and stderr
	exited chan struct{}
	err    error // cmd.Wait's result, set before exited is closed
}

// startWorker starts name with args; it is killed at the end of the test
// if still running, and its output logged if the test failed.
func startWorker(t *testing.T, name string, args ...string) *worker {
	t.Helper()
	w := &worker{name: filepath.Base(name) + " " + strings.Join(args, " "), out: &natstest.SyncBuffer{}, exited: make(chan struct{})}
	w.cmd = exec.Command(name, args...)
	w.cmd.Env = cleanEnv()
	w.cmd.Dir = t.TempDir()
	w.cmd.Stdout, w.cmd.Stderr = w.out, w.out
	if err := w.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", w.name, err)
	}
	go func() {
		w.err = w.cmd.Wait()
		close(w.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-w.exited:
		default:
			_ = w.cmd.Process.Kill()
			<-w.exited
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", w.name, w.out)
		}
	})
	return w
}

// waitOutput waits until the worker has printed s.
func (w *worker) waitOutput(t *testing.T, s string) {
	t.Helper()
	natstest.Eventually(t, runTimeout, func() error {
		select {
		case <-w.exited:
			t.Fatalf("%s exited (%v) before printing %q:\n%s", w.name, w.err, s, w.out)
		default:
		}
		if !strings.Contains(w.out.String(), s) {
			return errors.New("not printed yet")
		}
		return nil
	})
}

// stop sends SIGTERM and requires a clean exit within stopTimeout.
func (w *worker) stop(t *testing.T) {
	t.Helper()
	if err := w.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM %s: %v", w.name, err)
	}
	select {
	case <-w.exited:
	case <-time.After(stopTimeout):
		t.Fatalf("%s did not exit within %s of SIGTERM", w.name, stopTimeout)
	}
	if w.err != nil {
		t.Errorf("%s after SIGTERM: %v, want exit status 0", w.name, w.err)
	}
}
