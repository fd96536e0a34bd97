package node

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hookbus/hookbus/internal/natstest"
	"github.com/hookbus/hookbus/internal/topology"
	"github.com/hookbus/hookbus/pkg/events"
	"github.com/hookbus/hookbus/services/registry"
)

// Events and rounds of one run: env HOOKBUS_BENCH_NODE_EVENTS and
// HOOKBUS_BENCH_NODE_ROUNDS change them.
var (
	benchEvents = envInt("HOOKBUS_BENCH_NODE_EVENTS", 5000)
	benchRounds = envInt("HOOKBUS_BENCH_NODE_ROUNDS", 3)
)

const (
	window      = 256 // the SDK publisher's default
	concurrency = 8   // client.serve's default
)

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

var (
	setupOnce sync.Once
	setupErr  error
	skipMsg   string
)

// setup installs bench.mjs's dependencies (and builds the SDK) once.
func setup(b *testing.B) {
	b.Helper()
	setupOnce.Do(func() {
		for _, tool := range []string{"node", "npm"} {
			if _, err := exec.LookPath(tool); err != nil {
				skipMsg = tool + " is not installed: the Node SDK benchmarks need Node.js 20 or later and npm"
				return
			}
		}
		sdk := filepath.Join("..", "..", "sdks", "node")
		if _, err := os.Stat(filepath.Join(sdk, "package.json")); err != nil {
			skipMsg = "sdks/node is missing: no Node SDK to measure"
			return
		}
		if _, err := os.Stat(filepath.Join(sdk, "dist", "index.js")); err != nil {
			if setupErr = npm(sdk, "ci", "--no-audit", "--no-fund"); setupErr != nil {
				return
			}
			if setupErr = npm(sdk, "run", "build"); setupErr != nil {
				return
			}
		}
		if _, err := os.Stat(filepath.Join("node_modules", "nats")); err != nil {
			setupErr = npm(".", "ci", "--no-audit", "--no-fund")
		}
	})
	if skipMsg != "" {
		b.Skip(skipMsg)
	}
	if setupErr != nil {
		b.Fatal(setupErr)
	}
}

func npm(dir string, args ...string) error {
	cmd := exec.Command("npm", args...)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("npm %v in %s: %w\n%s", args, dir, err, out.Bytes())
	}
	return nil
}

type result struct {
	Skip string  `json:"skip"`
	SDK  float64 `json:"sdk"`
	Raw  float64 `json:"raw"`
}

// runBench runs bench.mjs once per iteration (prepare(run) first, off the
// clock) and reports the medians of its last run.
func runBench(b *testing.B, url, mode string, prepare func(run int)) {
	var r result
	run := 0
	for b.Loop() {
		b.StopTimer()
		prepare(run)
		b.StartTimer()
		ctx, cancel := context.WithTimeout(b.Context(), 10*time.Minute)
		cmd := exec.CommandContext(ctx, "node", "bench.mjs", "--server", url, "--mode", mode, "--run", strconv.Itoa(run),
			"--events", strconv.Itoa(benchEvents), "--rounds", strconv.Itoa(benchRounds),
			"--window", strconv.Itoa(window), "--concurrency", strconv.Itoa(concurrency))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		cancel()
		if err != nil {
			b.Fatalf("node bench.mjs --mode %s: %v\n%s", mode, err, stderr.Bytes())
		}
		if err := json.Unmarshal(out, &r); err != nil {
			b.Fatalf("bench.mjs printed %q: %v", out, err)
		}
		if r.Skip != "" {
			b.Skip(r.Skip)
		}
		run++
	}
	b.ReportMetric(r.SDK, "events/s")
	b.ReportMetric(r.Raw, "raw-events/s")
	b.ReportMetric(r.SDK/r.Raw, "x_raw")
}

// BenchmarkNodePublish: the SDK's publisher (window 256) beside raw
// js.publish with the same window and the same binary-mode message.
func BenchmarkNodePublish(b *testing.B) {
	setup(b)
	srv, _ := natstest.RunTopology(b)
	runBench(b, srv.ClientURL(), "publish", func(int) {})
}

// BenchmarkNodeNotify: client.serve's notify worker (concurrency 8)
// beside a raw pull consumer acking each message, each on a queue of its
// own holding the same number of events: notify-sdk-<run>-<round> (the
// plugin client.serve registers) and notify-raw-<run>-<round>.
func BenchmarkNodeNotify(b *testing.B) {
	setup(b)
	srv, js := natstest.RunTopology(b)
	svc, err := registry.New(registry.DefaultConfig(), natstest.Connect(b, srv), nil)
	if err != nil {
		b.Fatal(err)
	}
	natstest.RunService(b, svc)
	runBench(b, srv.ClientURL(), "notify", func(run int) {
		for r := range benchRounds {
			for _, side := range []string{"sdk", "raw"} {
				name := fmt.Sprintf("%s-%d-%d", side, run, r)
				spec := events.PluginSpec{Name: name, Event: "bench.serve." + name, Mode: events.ModeNotify}
				cfg, err := topology.NotifyConsumerConfig(events.Plugin{PluginSpec: spec})
				if err != nil {
					b.Fatal(err)
				}
				if _, err := js.CreateOrUpdateConsumer(b.Context(), events.StreamEvents, cfg); err != nil {
					b.Fatal(err)
				}
				natstest.StoreEvents(b, js, spec.Event, benchEvents)
			}
		}
	})
}
