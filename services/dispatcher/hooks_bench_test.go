package dispatcher_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/pkg/events"
)

// arrivals counts the deliveries of benchmark events and keeps each one's
// latency from the event's time (set just before its publish) to its
// arrival.
type arrivals struct {
	tick chan struct{} // something arrived

	mu  sync.Mutex
	n   int
	lat []time.Duration
}

func newArrivals() *arrivals { return &arrivals{tick: make(chan struct{}, 1)} }

// took counts one arrival of an event whose ce-time is at.
func (a *arrivals) took(at string) {
	now := time.Now()
	t, err := time.Parse(time.RFC3339Nano, at)
	a.mu.Lock()
	a.n++
	if err == nil {
		a.lat = append(a.lat, now.Sub(t))
	}
	a.mu.Unlock()
	select {
	case a.tick <- struct{}{}:
	default:
	}
}

// reset forgets what arrived so far.
func (a *arrivals) reset() {
	a.mu.Lock()
	a.n, a.lat = 0, a.lat[:0]
	a.mu.Unlock()
}

// wait returns once n arrived since the last reset, or fails after a
// minute.
func (a *arrivals) wait(b *testing.B, n int) {
	deadline := time.After(time.Minute)
	for {
		a.mu.Lock()
		got := a.n
		a.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-a.tick:
		case <-deadline:
			b.Fatalf("%d of %d deliveries arrived in a minute", got, n)
		}
	}
}

// latencies returns the latencies since the last reset, sorted.
func (a *arrivals) latencies() []time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	d := slices.Clone(a.lat)
	slices.Sort(d)
	return d
}

// newBenchReceiver starts a keep-alive webhook target on loopback that
// verifies nothing: it counts requests in a.
func newBenchReceiver(b *testing.B, a *arrivals) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		_, _ = io.Copy(io.Discard, req.Body)
		a.took(req.Header.Get("Ce-Time"))
	}))
	b.Cleanup(srv.Close)
	return srv
}

// BenchmarkHookDelivery measures webhook deliveries by the dispatcher to a
// local keep-alive receiver, with 1 and 32 webhook hooks on the same event
// type, beside raw NATS (JetStream pull consumers, one per hook, reading
// with nats.go's default batching and acknowledging each event) taking
// the same events from HOOKBUS_EVENTS, on one embedded server.
//
// throughput publishes b.N events at once (asynchronous publishes) and
// waits for every delivery: events/s is events published per second of the
// run with all their deliveries made, deliveries/s that times the hooks.
// latency publishes one event at a time and waits for all its
// deliveries: p50_ms and p99_ms are from just before the publish to the
// arrival of each delivery. x_raw is hookbus's figure over raw's (events/s
// or p50).
func BenchmarkHookDelivery(b *testing.B) {
	for _, hooks := range []int{1, 32} {
		b.Run(fmt.Sprintf("hooks=%d", hooks), func(b *testing.B) { benchHooks(b, hooks) })
	}
}

// benchHooks runs BenchmarkHookDelivery with that many hooks on a server of
// its own.
func benchHooks(b *testing.B, hooks int) {
	e := newEnv(b)
	e.runDispatcherWith(allowLoopback)
	// Raw reads events of a type of its own, so that the hooks do
	// not work while raw is measured.
	hooked := &benchPublisher{js: e.js, typ: fmt.Sprintf("bench.hook.n%d", hooks)}
	direct := &benchPublisher{js: e.js, typ: fmt.Sprintf("bench.raw.n%d", hooks)}
	recv, raw := newArrivals(), newArrivals()
	target := newBenchReceiver(b, recv)
	for range hooks {
		e.waitConsumer(e.putHook(hooked.typ, target.URL, 0))
	}
	rawReaders(b, e, direct.typ, hooks, raw)

	var rawRate float64
	b.Run("throughput/raw", func(b *testing.B) {
		raw.reset()
		start := time.Now()
		direct.publish(b, b.N, true)
		raw.wait(b, b.N*hooks)
		rawRate = float64(b.N) / time.Since(start).Seconds()
		b.ReportMetric(rawRate, "events/s")
	})
	b.Run("throughput/hookbus", func(b *testing.B) {
		recv.reset()
		start := time.Now()
		hooked.publish(b, b.N, true)
		recv.wait(b, b.N*hooks)
		rate := float64(b.N) / time.Since(start).Seconds()
		b.ReportMetric(rate, "events/s")
		b.ReportMetric(rate*float64(hooks), "deliveries/s")
		b.ReportMetric(rate/rawRate, "x_raw")
	})
	var rawP50 time.Duration
	b.Run("latency/raw", func(b *testing.B) {
		raw.reset()
		for i := 0; b.Loop(); i++ {
			direct.publish(b, 1, false)
			raw.wait(b, (i+1)*hooks)
		}
		rawP50 = reportLatencies(b, raw.latencies())
	})
	b.Run("latency/hookbus", func(b *testing.B) {
		recv.reset()
		for i := 0; b.Loop(); i++ {
			hooked.publish(b, 1, false)
			recv.wait(b, (i+1)*hooks)
		}
		p50 := reportLatencies(b, recv.latencies())
		b.ReportMetric(float64(p50)/float64(rawP50), "x_raw")
	})
}

// reportLatencies reports the p50, p99 and maximum of sorted d in milliseconds and
// returns the p50.
func reportLatencies(b *testing.B, d []time.Duration) time.Duration {
	if len(d) == 0 {
		b.Fatal("no latencies")
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(ms(d[len(d)/2]), "p50_ms")
	b.ReportMetric(ms(d[len(d)*99/100]), "p99_ms")
	b.ReportMetric(ms(d[len(d)-1]), "max_ms")
	return d[len(d)/2]
}

// benchPublisher stores events of one type in HOOKBUS_EVENTS, each with
// a new id and its time set just before its publish.
type benchPublisher struct {
	js   jetstream.JetStream
	typ  string
	sent int
}

// publish stores n events, asynchronously (waiting for every
// acknowledgement at the end) or one acknowledged publish each.
func (p *benchPublisher) publish(b *testing.B, n int, async bool) {
	subject, err := events.EventSubject(p.typ)
	if err != nil {
		b.Fatal(err)
	}
	for range n {
		p.sent++
		ev := event.New()
		ev.SetID(fmt.Sprintf("%s-%d", p.typ, p.sent))
		ev.SetSource("/bench")
		ev.SetType(p.typ)
		ev.SetTime(time.Now())
		_ = ev.SetData(event.ApplicationJSON, map[string]any{"user": "ada", "amount": p.sent})
		msg, err := events.Encode(subject, &ev)
		if err != nil {
			b.Fatal(err)
		}
		if !async {
			if _, err := p.js.PublishMsg(b.Context(), msg); err != nil {
				b.Fatal(err)
			}
			continue
		}
		if _, err := p.js.PublishMsgAsync(msg); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-p.js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		b.Fatal("publishes not acknowledged in a minute")
	}
}

// rawReaders starts the raw side: n JetStream pull consumers on the
// events of typ, from now on, each taking (nats.go's Consume, default
// batching) and acknowledging every event, counted in a.
func rawReaders(b *testing.B, e *env, typ string, n int, a *arrivals) {
	subject, err := events.EventSubject(typ)
	if err != nil {
		b.Fatal(err)
	}
	for i := range n {
		cons, err := e.js.CreateConsumer(b.Context(), events.StreamEvents, jetstream.ConsumerConfig{
			Durable:       fmt.Sprintf("bench-%s-%d", strings.ReplaceAll(typ, ".", "-"), i),
			FilterSubject: subject,
			AckPolicy:     jetstream.AckExplicitPolicy,
			DeliverPolicy: jetstream.DeliverNewPolicy,
		})
		if err != nil {
			b.Fatal(err)
		}
		cc, err := cons.Consume(func(m jetstream.Msg) {
			_ = m.Ack()
			a.took(m.Headers().Get(events.HeaderPrefix + "time"))
		})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(cc.Stop)
	}
}
