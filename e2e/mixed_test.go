//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/pkg/events"
)

// TestMixedLanguages: on one event type, a chain of a Go and a Node.js
// plugin (each SDK's worker, through its conformance adapter) and a notify
// plugin in each language. Every published event gets a result that went
// through the Go plugin and then the Node one, and reaches both notify
// plugins.
func TestMixedLanguages(t *testing.T) {
	requireNode(t)
	srv := startServer(t, t.TempDir())
	defer srv.stop(t)
	nc, js, cl := connectClient(t, srv, "hookbus-e2e-mixed")
	const typ = "com.example.mixed"
	byName := map[string]adapterDef{}
	for _, d := range adapters() {
		byName[d.name] = d
	}
	workers := []struct {
		adapter, name string
		mode          events.Mode
		priority      int
	}{
		{"go", "mixed-go", events.ModeChain, 10},
		{"node", "mixed-node", events.ModeChain, 20},
		{"go", "mixed-go-notify", events.ModeNotify, 0},
		{"node", "mixed-node-notify", events.ModeNotify, 0},
	}
	procs := map[string]*adapterProc{}
	for _, w := range workers {
		c := &caseEnv{t: t, srv: srv, nc: nc, js: js, cl: cl, def: byName[w.adapter], name: w.name, typ: typ}
		if err := c.serveAt(w.mode, events.Settings{MaxDeliver: 3, BackoffMS: []int{1000}}, w.priority); err != nil {
			t.Fatalf("%s (%s): %v", w.name, w.adapter, err)
		}
		procs[w.name] = c.adapter
		defer func() {
			if err := c.adapter.stop(30 * time.Second); err != nil {
				t.Errorf("%s: %v", w.name, err)
			}
		}()
	}
	// Both chain plugins run: a call goes through the two, Go first.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		e := (&caseEnv{typ: typ}).event(fmt.Sprintf("probe-%d", time.Now().UnixNano()), map[string]any{})
		res, err := cl.Call(ctx, e)
		if err == nil && len(res.Trace) == 2 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("the chain never held both plugins: %v %+v", err, res.Trace)
		}
		time.Sleep(100 * time.Millisecond)
	}
	const n = 20
	for i := range n {
		e := (&caseEnv{typ: typ}).event(fmt.Sprintf("mixed-%d", i), map[string]any{"i": i, "b": map[string]any{"act": "continue"}})
		if _, err := cl.Publish(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	for _, notify := range []string{"mixed-go-notify", "mixed-node-notify"} {
		for i := range n {
			id := fmt.Sprintf("mixed-%d", i)
			if _, err := procs[notify].wait(30*time.Second, "end of "+id, func(r report) bool { return r.Report == "end" && r.ID == id && r.Outcome == "ok" }); err != nil {
				t.Fatalf("%s: %v", notify, err)
			}
		}
	}
	// Every event's result: the Go plugin, then the Node one.
	subject, _ := events.ResultSubject(typ)
	cons, err := js.OrderedConsumer(ctx, events.StreamResults, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for len(seen) < n {
		m, err := cons.Next(jetstream.FetchMaxWait(30 * time.Second))
		if err != nil {
			t.Fatalf("results: %d of %d read: %v", len(seen), n, err)
		}
		var res events.ChainResult
		if err := json.Unmarshal(m.Data(), &res); err != nil {
			t.Fatal(err)
		}
		if len(res.EventID) < 6 || res.EventID[:6] != "mixed-" {
			continue
		}
		if len(res.Trace) != 2 || res.Trace[0].Plugin != "mixed-go" || res.Trace[1].Plugin != "mixed-node" || res.Error != nil {
			t.Fatalf("result of %s: %+v, want mixed-go then mixed-node", res.EventID, res)
		}
		seen[res.EventID] = true
	}
}
