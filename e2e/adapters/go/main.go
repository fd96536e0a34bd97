// Command go is the conformance adapter of the Go SDK (client.Serve): see
// e2e/adapters/ADAPTER.md for the protocol it speaks on stdin and stdout.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"os"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hookbus/hookbus/pkg/client"
	"github.com/hookbus/hookbus/pkg/events"
)

type command struct {
	Cmd            string            `json:"cmd"`
	Plugin         events.PluginSpec `json:"plugin"`
	Concurrency    int               `json:"concurrency"`
	DrainTimeoutMS int               `json:"drain_timeout_ms"`
}

// behaviour is what the event's data asks of the handler (member "b").
type behaviour struct {
	Act       string         `json:"act"`
	Set       map[string]any `json:"set"`
	Msg       string         `json:"msg"`
	FailUntil int            `json:"fail_until"`
	Fail      string         `json:"fail"`
	SleepMS   int            `json:"sleep_ms"`
	HangAt    int            `json:"hang_at"`
}

var (
	outMu sync.Mutex
	out   = json.NewEncoder(os.Stdout)
)

func report(v map[string]any) {
	outMu.Lock()
	defer outMu.Unlock()
	_ = out.Encode(v)
}

func now() int64 { return time.Now().UnixMilli() }

func main() {
	log.SetPrefix("go-adapter: ")
	nc, err := nats.Connect(os.Getenv("HOOKBUS_NATS_URL"), nats.MaxReconnects(-1))
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	c, err := client.New(nc)
	if err != nil {
		log.Fatal(err)
	}
	var (
		cancel context.CancelFunc
		done   chan error
	)
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		var cmd command
		if err := json.Unmarshal(in.Bytes(), &cmd); err != nil {
			log.Fatalf("command %q: %v", in.Text(), err)
		}
		switch cmd.Cmd {
		case "hello":
			report(map[string]any{"report": "hello", "sdk": "go", "features": map[string]bool{
				"chain": true, "notify": true, "progress": true, "concurrency": true, "drain": true,
			}})
		case "serve":
			var ctx context.Context
			ctx, cancel = context.WithCancel(context.Background())
			done = make(chan error, 1)
			p := plugin(cmd.Plugin)
			opts := []client.Option{}
			if cmd.Concurrency > 0 {
				opts = append(opts, client.WithConcurrency(cmd.Concurrency))
			}
			if cmd.DrainTimeoutMS > 0 {
				opts = append(opts, client.WithDrainTimeout(time.Duration(cmd.DrainTimeoutMS)*time.Millisecond))
			}
			go func() { done <- c.Serve(ctx, p, opts...) }()
		case "stop":
			msg := ""
			if cancel != nil {
				cancel()
				if err := <-done; err != nil {
					msg = err.Error()
				}
			}
			report(map[string]any{"report": "stopped", "error": msg})
			return
		default:
			log.Fatalf("unknown command %q", cmd.Cmd)
		}
	}
}

func plugin(spec events.PluginSpec) client.Plugin {
	name := spec.Name
	if spec.Mode == events.ModeNotify {
		return client.Plugin{Spec: spec, Notify: func(ctx context.Context, d *client.Delivery) error {
			var data struct {
				B behaviour `json:"b"`
			}
			_ = d.Event.DataAs(&data)
			report(map[string]any{"report": "start", "plugin": name, "id": d.Event.ID(), "attempt": d.Attempt, "step": 0, "t_ms": now()})
			err := notify(ctx, data.B, d.Attempt)
			outcome := "ok"
			if err != nil {
				outcome = "fail"
			}
			report(map[string]any{"report": "end", "plugin": name, "id": d.Event.ID(), "attempt": d.Attempt, "outcome": outcome, "t_ms": now()})
			return err
		}}
	}
	return client.Plugin{Spec: spec, Chain: func(ctx context.Context, s *client.Step) (client.StepResult, error) {
		var state map[string]any
		_ = s.Event.DataAs(&state)
		report(map[string]any{"report": "start", "plugin": name, "id": s.Event.ID(), "attempt": s.Attempt, "step": s.Number, "t_ms": now()})
		var b behaviour
		if raw, err := json.Marshal(state["b"]); err == nil {
			_ = json.Unmarshal(raw, &b)
		}
		sleep(ctx, b.SleepMS)
		if state == nil {
			state = map[string]any{}
		}
		for k, v := range b.Set {
			state[k] = v
		}
		outcome := "ok"
		defer func() {
			report(map[string]any{"report": "end", "plugin": name, "id": s.Event.ID(), "attempt": s.Attempt, "outcome": outcome, "t_ms": now()})
		}()
		switch b.Act {
		case "halt":
			return client.Halt(state), nil
		case "error":
			outcome = "fail"
			return client.StepResult{}, errors.New(b.Msg)
		default:
			return client.Continue(state), nil
		}
	}}
}

func notify(ctx context.Context, b behaviour, attempt int) error {
	switch {
	case b.Fail == "always":
		return fmt.Errorf("fail %d", attempt)
	case b.Fail == "permanent":
		return client.Permanent(fmt.Errorf("permanent failure at %d", attempt))
	case attempt < b.FailUntil:
		return fmt.Errorf("fail %d", attempt)
	}
	if b.HangAt == attempt {
		sleep(ctx, 600_000)
	}
	sleep(ctx, b.SleepMS)
	return nil
}

func sleep(ctx context.Context, ms int) {
	if ms <= 0 {
		return
	}
	t := time.NewTimer(time.Duration(ms) * time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
