//go:build chaos

package chaos

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hookbus/hookbus/pkg/client"
	"github.com/hookbus/hookbus/pkg/events"
)

// The event types and plugins of every scenario.
const (
	chainType  = "chaos.chain"  // chain plugins chainA and chainB
	notifyType = "chaos.notify" // notify plugin notifyPlugin
	chainA     = "chaos-chain-a"
	chainB     = "chaos-chain-b"
	notify     = "chaos-notify"
)

// Environment of a plugin worker child process.
const (
	workerEnv = "CHAOS_WORKER" // chain or notify: run as a worker, not tests
	natsEnv   = "CHAOS_NATS_URL"
	userEnv   = "CHAOS_NATS_USER"     // the worker's NATS user (split scenario); empty: none
	passEnv   = "CHAOS_NATS_PASSWORD" // its password
	outEnv    = "CHAOS_OUT"           // notify: the file deliveries are appended to
)

// notifySettings redeliver after 1 s, often enough that a worker killed a
// few times with an event in hand does not send it to the DLQ.
var notifySettings = events.Settings{MaxDeliver: 20, BackoffMS: []int{1000}}

// chainSpec is a chain plugin on chainType; it adds its name to the state.
func chainSpec(name string, priority int) events.PluginSpec {
	return events.PluginSpec{Name: name, Event: chainType, Priority: priority}
}

func notifySpec() events.PluginSpec {
	return events.PluginSpec{Name: notify, Event: notifyType, Mode: events.ModeNotify, Settings: notifySettings}
}

// connect connects to NATS as u the way a long-lived service does: retrying
// the first connection and reconnecting for ever.
func connect(url, name string, u natsUser) (*nats.Conn, error) {
	opts := []nats.Option{nats.Name(name), nats.MaxReconnects(-1), nats.ReconnectWait(100 * time.Millisecond),
		nats.RetryOnFailedConnect(true), nats.ReconnectBufSize(32 << 20)}
	return nats.Connect(url, append(opts, u.options()...)...)
}

// chainHandler marks the state as seen by plugin name.
func chainHandler(name string) client.ChainHandler {
	return func(_ context.Context, s *client.Step) (client.StepResult, error) {
		var state map[string]any
		if err := s.Event.DataAs(&state); err != nil {
			return client.StepResult{}, err
		}
		if state == nil {
			state = map[string]any{}
		}
		state[name] = true
		return client.Continue(state), nil
	}
}

// runWorker is main for a worker child process.
func runWorker() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	kind := os.Getenv(workerEnv)
	nc, err := connect(os.Getenv(natsEnv), "chaos-worker-"+kind, natsUser{os.Getenv(userEnv), os.Getenv(passEnv)})
	if err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		return 1
	}
	defer nc.Close()
	c, err := client.New(nc)
	if err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		return 1
	}
	var p client.Plugin
	switch kind {
	case workerChain:
		p = client.Plugin{Spec: chainSpec(chainB, 20), Chain: chainHandler(chainB)}
	case workerNotify:
		out, err := os.OpenFile(os.Getenv(outEnv), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			fmt.Fprintln(os.Stderr, "worker:", err)
			return 1
		}
		defer out.Close()
		p = client.Plugin{Spec: notifySpec(), Notify: recordDelivery(out)}
	default:
		fmt.Fprintf(os.Stderr, "worker: %s=%q: want chain or notify\n", workerEnv, kind)
		return 2
	}
	if err := c.Serve(ctx, p, client.WithConcurrency(16)); err != nil {
		fmt.Fprintln(os.Stderr, "worker: serve:", err)
		return 1
	}
	return 0
}

// recordDelivery appends "<event id> <unix nanoseconds>" for every delivery
// before it is acknowledged. A write reaches the kernel at once, so it
// survives a SIGKILL of the worker.
func recordDelivery(out *os.File) client.NotifyHandler {
	var mu sync.Mutex
	return func(_ context.Context, d *client.Delivery) error {
		mu.Lock()
		defer mu.Unlock()
		_, err := out.WriteString(d.Event.ID() + " " + strconv.FormatInt(time.Now().UnixNano(), 10) + "\n")
		return err
	}
}

// startWorkers starts two replicas of the chain worker and two of the
// notify worker as child processes, and chainA in the test process, each
// kind as its NATS user of d (none in the all-in-one).
func startWorkers(t *testing.T, ps *procs, d deployment) (workers []*proc, deliveryFiles []string) {
	t.Helper()
	env := func(kind string, extra ...string) []string {
		u := d.workers[kind]
		return cleanEnv(append([]string{workerEnv + "=" + kind, natsEnv + "=" + d.natsURL, userEnv + "=" + u.name, passEnv + "=" + u.password}, extra...)...)
	}
	for i := 1; i <= 2; i++ {
		out := fmt.Sprintf("%s/deliveries-%d.txt", ps.logDir, i)
		deliveryFiles = append(deliveryFiles, out)
		workers = append(workers,
			ps.add(fmt.Sprintf("worker-chain-%d", i), "worker", selfBin, nil, env(workerChain), nil),
			ps.add(fmt.Sprintf("worker-notify-%d", i), "worker", selfBin, nil, env(workerNotify, outEnv+"="+out), nil))
	}
	for _, w := range workers {
		if err := w.start(); err != nil {
			t.Fatal(err)
		}
	}
	serveInProcess(t, d.natsURL, d.workers[workerInProcess], client.Plugin{Spec: chainSpec(chainA, 10), Chain: chainHandler(chainA)})
	return workers, deliveryFiles
}

// serveInProcess serves p from the test process as u until the test ends.
func serveInProcess(t *testing.T, natsURL string, u natsUser, p client.Plugin) {
	t.Helper()
	nc, err := connect(natsURL, "chaos-inprocess-"+p.Spec.Name, u)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		// Serve returns an error when it cannot register the plugin (no
		// registry answers): serve again, as a supervisor would restart it.
		for {
			err := c.Serve(ctx, p, client.WithConcurrency(16), client.WithDrainTimeout(time.Second))
			if ctx.Err() != nil {
				done <- err
				return
			}
			t.Logf("in-process plugin %s: serve: %v; serving again", p.Spec.Name, err)
			select {
			case <-ctx.Done():
			case <-time.After(crashRestartDelay):
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Logf("in-process plugin %s: %v", p.Spec.Name, err)
		}
		nc.Close()
	})
}
