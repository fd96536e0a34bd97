// Command peers compares Hookbus with raw nats.go (its jetstream package)
// and with Watermill's JetStream backend (watermill-nats/v2 pkg/jetstream)
// on one in-process NATS server configured as `hookbus serve` configures
// its embedded one, with Hookbus's services running beside it. It runs
// every figure for the three sides in interleaved rounds and prints the
// medians as one markdown table (make bench-peers; docs/performance.md).
//
// It is a module of its own so that the main module does not depend on
// Watermill.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

type config struct {
	rounds        int
	events        int // N: stored events delivered to one subscriber
	fanoutEvents  int // stored events delivered to each of 4 subscribers
	publishEvents int // synchronous publishes per run (and the allocation count)
	asyncEvents   int
	publishers    int
	window        int // prefetch of every subscriber, window of async publishes
	latencyRate   int
	latencyTime   time.Duration
	storeDir      string
	rawMessages   bool
	wmDoubleAck   bool
	figures       string
}

// timeout is how long a delivery of n events may take before the run
// counts as failed: very generous, it is there to end a stuck run.
func (c config) timeout(n int) time.Duration {
	return max(time.Minute, time.Duration(n)*200*time.Microsecond)
}

func main() {
	var c config
	flag.IntVar(&c.rounds, "rounds", 5, "interleaved rounds; the table shows medians over them")
	flag.IntVar(&c.events, "events", 100_000, "N: stored events delivered to one subscriber (figure 4)")
	flag.IntVar(&c.fanoutEvents, "fanout-events", 50_000, "stored events delivered to each of 4 subscribers (figure 6)")
	flag.IntVar(&c.publishEvents, "publish-events", 20_000, "events of each synchronous publish run (figures 1, 2 and 7)")
	flag.IntVar(&c.asyncEvents, "async-events", 50_000, "events of each asynchronous publish run (figure 3)")
	flag.IntVar(&c.publishers, "publishers", 8, "publishers of figure 2, goroutines sharing one connection")
	flag.IntVar(&c.window, "window", 256, "prefetch of every subscriber and window of asynchronous publishes")
	flag.IntVar(&c.latencyRate, "latency-rate", 1000, "events/s of the latency run (figure 5)")
	flag.DurationVar(&c.latencyTime, "latency-duration", 3*time.Second, "length of the latency run")
	flag.StringVar(&c.storeDir, "store-dir", "", "parent of the JetStream store directory (default /dev/shm, else the system temporary directory)")
	flag.BoolVar(&c.rawMessages, "raw-messages", false, "raw side: consume with the Messages iterator instead of Consume")
	flag.BoolVar(&c.wmDoubleAck, "watermill-double-ack", false, "Watermill side: its default acknowledgement (DoubleAck: wait for the server's confirmation) instead of AckAsync")
	flag.StringVar(&c.figures, "figures", "1,2,3,4,5,6", "figures to run, comma-separated (7, allocations, comes with 1)")
	flag.Parse()
	if c.rounds < 1 || c.events < 1 || c.fanoutEvents < 1 || c.publishEvents < 1 || c.asyncEvents < 1 || c.publishers < 1 || c.window < 1 || c.latencyRate < 1 || c.latencyTime <= 0 {
		fmt.Fprintln(os.Stderr, "peers: every count, rate and duration must be positive")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, c); err != nil {
		fmt.Fprintln(os.Stderr, "peers:", err)
		os.Exit(1)
	}
}

// figure is one row group of the table.
type figure struct {
	key  string // in event types and names
	num  int
	run  func(ctx context.Context, r *runner, s side, typ, name string) ([]float64, error)
	rows []row
}

type row struct {
	label string
	unit  string // "events/s", "µs", "allocs"
	lower bool   // lower is better
}

type runner struct {
	cfg     config
	env     *env
	results map[string]map[string][]float64 // row label -> side -> one value per round
}

func (r *runner) logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
}

func figures(c config) []figure {
	return []figure{
		{key: "pub1", num: 1, run: func(ctx context.Context, r *runner, s side, typ, _ string) ([]float64, error) {
			rate, allocs, err := r.publishSync(ctx, s, typ, c.publishEvents, 1)
			return []float64{rate, allocs}, err
		}, rows: []row{
			{label: "1. Publish sync, 1 publisher", unit: "events/s"},
			{label: "7. Allocations per published event, whole process (sync, 1 publisher)", unit: "allocs", lower: true},
		}},
		{key: "pub8", num: 2, run: func(ctx context.Context, r *runner, s side, typ, _ string) ([]float64, error) {
			rate, _, err := r.publishSync(ctx, s, typ, c.publishEvents, c.publishers)
			return []float64{rate}, err
		}, rows: []row{{label: fmt.Sprintf("2. Publish sync, %d publishers on one connection", c.publishers), unit: "events/s"}}},
		{key: "async", num: 3, run: func(ctx context.Context, r *runner, s side, typ, _ string) ([]float64, error) {
			rate, err := r.publishAsync(ctx, s, typ, c.asyncEvents, c.window)
			return []float64{rate}, err
		}, rows: []row{{label: fmt.Sprintf("3. Publish async, window %d", c.window), unit: "events/s"}}},
		{key: "deliver", num: 4, run: func(ctx context.Context, r *runner, s side, typ, name string) ([]float64, error) {
			rate, err := r.deliver(ctx, s, typ, name, c.events, 1)
			return []float64{rate}, err
		}, rows: []row{{label: fmt.Sprintf("4. Delivery of %s stored events to 1 subscriber", count(c.events)), unit: "events/s"}}},
		{key: "latency", num: 5, run: func(ctx context.Context, r *runner, s side, typ, name string) ([]float64, error) {
			p50, p99, err := r.latency(ctx, s, typ, name, c.latencyRate, c.latencyRate*int(c.latencyTime/time.Millisecond)/1000)
			return []float64{float64(p50) / 1e3, float64(p99) / 1e3}, err
		}, rows: []row{
			{label: fmt.Sprintf("5. Publish-to-handler latency p50 at %d events/s", c.latencyRate), unit: "µs", lower: true},
			{label: fmt.Sprintf("5. Publish-to-handler latency p99 at %d events/s", c.latencyRate), unit: "µs", lower: true},
		}},
		{key: "fanout", num: 6, run: func(ctx context.Context, r *runner, s side, typ, name string) ([]float64, error) {
			rate, err := r.deliver(ctx, s, typ, name, c.fanoutEvents, 4)
			return []float64{rate}, err
		}, rows: []row{{label: fmt.Sprintf("6. Fan-out of %s stored events to 4 subscribers (events/s, each to all 4)", count(c.fanoutEvents)), unit: "events/s"}}},
	}
}

func count(n int) string {
	if n%1000 == 0 {
		return strconv.Itoa(n/1000) + " k"
	}
	return strconv.Itoa(n)
}

// orders are the six orders of the three sides; round r, figure f runs
// them in orders[(r+f)%6], so no side is always first or last.
var orders = [][3]int{{0, 1, 2}, {1, 2, 0}, {2, 0, 1}, {0, 2, 1}, {2, 1, 0}, {1, 0, 2}}

var shortNames = []string{"hb", "raw", "wm"}

func run(ctx context.Context, c config) error {
	started := time.Now()
	e, err := startEnv(ctx, c.storeDir)
	if err != nil {
		return err
	}
	defer e.close()

	hb, err := newHookbusSide(e)
	if err != nil {
		return err
	}
	defer hb.Close()
	raw, err := newRawSide(ctx, e, c.rawMessages)
	if err != nil {
		return err
	}
	defer raw.Close()
	wm, err := newWatermillSide(e, c.wmDoubleAck)
	if err != nil {
		return err
	}
	defer wm.Close()
	sides := []side{hb, raw, wm}

	want := map[int]bool{}
	for _, f := range strings.Split(c.figures, ",") {
		if n, err := strconv.Atoi(strings.TrimSpace(f)); err == nil {
			want[n] = true
		}
	}
	if want[7] {
		want[1] = true
	}
	var figs []figure
	for _, f := range figures(c) {
		if want[f.num] {
			figs = append(figs, f)
		}
	}

	r := &runner{cfg: c, env: e, results: map[string]map[string][]float64{}}
	cpu0 := sampleCPU()
	r.logf("peers: store %s, %d round(s)", e.storeDir, c.rounds)
	for round := 1; round <= c.rounds; round++ {
		for fi, f := range figs {
			for _, si := range orders[(round-1+fi)%len(orders)] {
				s := sides[si]
				typ := fmt.Sprintf("peers.r%d.%s.%s", round, f.key, shortNames[si])
				name := fmt.Sprintf("peers-r%d-%s-%s", round, f.key, shortNames[si])
				t0 := time.Now()
				vals, err := f.run(ctx, r, s, typ, name)
				switch {
				case errors.Is(err, errNoAsync):
					r.logf("round %d %-8s %-12s —", round, f.key, s.Name())
					continue
				case ctx.Err() != nil:
					return ctx.Err()
				case err != nil:
					// A failed run leaves its cell out of this round's
					// values; the table says how many rounds a median has.
					r.logf("round %d %-8s %-12s error: %v", round, f.key, s.Name(), err)
					continue
				}
				var parts []string
				for i, v := range vals {
					row := f.rows[i]
					if r.results[row.label] == nil {
						r.results[row.label] = map[string][]float64{}
					}
					r.results[row.label][s.Name()] = append(r.results[row.label][s.Name()], v)
					parts = append(parts, format(v, row.unit))
				}
				r.logf("round %d %-8s %-12s %s (%.1fs)", round, f.key, s.Name(), strings.Join(parts, ", "), time.Since(t0).Seconds())
			}
		}
		for _, s := range sides {
			if err := s.EndRound(ctx); err != nil {
				return fmt.Errorf("end of round %d, %s: %w", round, s.Name(), err)
			}
		}
	}

	fmt.Println(settings(c, e, time.Since(started), othersShare(cpu0, sampleCPU())))
	fmt.Println()
	fmt.Println(table(figs, r.results, c.rounds))
	return nil
}

func settings(c config, e *env, took time.Duration, others string) string {
	store := e.storeDir + " (tmpfs)"
	if !e.tmpfs {
		store = e.storeDir
	}
	consume := "Consume"
	if c.rawMessages {
		consume = "Messages"
	}
	ack := "AckAsync"
	if c.wmDoubleAck {
		ack = "DoubleAck"
	}
	return fmt.Sprintf("Settings: nats-server %s in process (as `hookbus serve`: JetStream file store, sync_always, fsync per write), store %s; "+
		"Hookbus registry, dispatcher and persistence running; rounds %d (medians); N %d (delivery), %d (fan-out), %d sync publishes, %d async publishes; "+
		"prefetch/window %d; latency %d events/s for %s; raw consumes with %s; Watermill acks with %s; GOMAXPROCS %d, NumCPU %d; %s, %s; run took %s; %s.",
		server.VERSION, store, c.rounds, c.events, c.fanoutEvents, c.publishEvents, c.asyncEvents,
		c.window, c.latencyRate, c.latencyTime, consume, ack, runtime.GOMAXPROCS(0), runtime.NumCPU(), runtime.Version(), modules(),
		took.Round(time.Second), others)
}

// modules lists the versions of the libraries under test, from the build.
func modules() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "module versions unknown"
	}
	var out []string
	for _, d := range bi.Deps {
		switch d.Path {
		case "github.com/nats-io/nats.go", "github.com/ThreeDotsLabs/watermill", "github.com/ThreeDotsLabs/watermill-nats/v2", "github.com/cloudevents/sdk-go/v2":
			out = append(out, d.Path[strings.LastIndexByte(strings.TrimSuffix(d.Path, "/v2"), '/')+1:]+" "+d.Version)
		}
	}
	return strings.Join(out, ", ")
}

func table(figs []figure, results map[string]map[string][]float64, rounds int) string {
	var b strings.Builder
	b.WriteString("| Figure | Hookbus | raw nats.go | Watermill | Hookbus/raw | Hookbus/Watermill |\n")
	b.WriteString("|---|---|---|---|---|---|\n")
	names := []string{"Hookbus", "raw nats.go", "Watermill"}
	var rows []row
	for _, f := range figs {
		rows = append(rows, f.rows...)
	}
	// In the order of the figures' numbers (7 is measured with 1).
	slices.SortStableFunc(rows, func(a, b row) int { return strings.Compare(a.label[:2], b.label[:2]) })
	var short []string
	for _, row := range rows {
		label := row.label
		if row.lower {
			label += " (lower is better)"
		} else if !strings.Contains(label, "events/s") {
			label += " (events/s)"
		}
		vals := make([]float64, len(names))
		cells := []string{label}
		for i, n := range names {
			vals[i] = median(results[row.label][n])
			cell := format(vals[i], row.unit)
			if got := len(results[row.label][n]); got > 0 && got < rounds {
				short = append(short, fmt.Sprintf("%s, %s: %d of %d rounds", row.label, n, got, rounds))
			}
			cells = append(cells, cell)
		}
		cells = append(cells, ratio(vals[0], vals[1]), ratio(vals[0], vals[2]))
		b.WriteString("| " + strings.Join(cells, " | ") + " |\n")
	}
	b.WriteString("\nRatios are Hookbus's figure over the other's: above 1 is better for Hookbus in events/s, worse for latency and allocations (lower is better).")
	if len(short) > 0 {
		b.WriteString("\nMedians of fewer rounds (the others failed, see the log): " + strings.Join(short, "; ") + ".")
	}
	return b.String()
}

func median(vs []float64) float64 {
	if len(vs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func ratio(a, b float64) string {
	if math.IsNaN(a) || math.IsNaN(b) || b == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f", a/b)
}

func format(v float64, unit string) string {
	if math.IsNaN(v) {
		return "—"
	}
	switch unit {
	case "events/s":
		return fmt.Sprintf("%.1f k/s", v/1000)
	case "µs":
		if v >= 10_000 {
			return fmt.Sprintf("%.1f ms", v/1000)
		}
		return fmt.Sprintf("%.0f µs", v)
	default:
		return fmt.Sprintf("%.0f", v)
	}
}
