package client_test

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/internal/natstest"
	"github.com/hookbus/hookbus/internal/topology"
	"github.com/hookbus/hookbus/pkg/client"
	"github.com/hookbus/hookbus/pkg/events"
	"github.com/hookbus/hookbus/services/registry"
)

// publishBench starts a server with the topology and returns its
// JetStream, a client, and a maker of distinct small events (ids with
// prefix).
func publishBench(b *testing.B, prefix string) (jetstream.JetStream, *client.Client, func() event.Event) {
	srv := natstest.RunServer(b)
	nc := natstest.Connect(b, srv)
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := topology.Ensure(context.Background(), js, topology.DefaultConfig()); err != nil {
		b.Fatal(err)
	}
	c, err := client.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	var ids atomic.Int64
	return js, c, func() event.Event {
		e := event.New()
		e.SetID(prefix + strconv.FormatInt(ids.Add(1), 10))
		e.SetSource("/bench")
		e.SetType("com.example.bench")
		_ = e.SetData(event.ApplicationJSON, benchData)
		return e
	}
}

// benchData is the data of every benchmark event, encoded once: the raw
// side sends these bytes too, so neither side counts a JSON encoding. It
// is a []byte, which SetData keeps as it is (a json.RawMessage goes
// through json.Marshal again; binary mode sends both the same).
var benchData = []byte(`{"user":"ada","amount":42,"note":"a typical small event"}`)

// BenchmarkPublish compares client.Publish (validate, encode, publish, wait
// for the ack) with a raw JetStream PublishMsg of the same, already encoded
// message on the same server, one publisher at a time and with parallel
// publishers. Read hookbus/raw of the same shape side by side.
//
// allocs/op and B/op count the whole process: the NATS server runs in the
// test process, so its allocations for receiving, storing and
// acknowledging each message are in both figures, beside the client's.
// Each side makes its input per publish, as a producer would: hookbus an
// event (event.New and its setters, 5 allocations: see new-event), raw a
// message (nats.NewMsg, the copied headers, a new ce-id and Nats-Msg-Id).
func BenchmarkPublish(b *testing.B) {
	js, c, newEvent := publishBench(b, "bench-")
	var ids atomic.Int64 // the raw side's ids
	b.Run("new-event", func(b *testing.B) {
		// What the hookbus side spends making its events, not publishing.
		b.ReportAllocs()
		for b.Loop() {
			_ = newEvent()
		}
	})
	for _, parallel := range []bool{false, true} {
		mode := "serial"
		if parallel {
			mode = "parallel"
		}
		b.Run(fmt.Sprintf("%s/hookbus", mode), func(b *testing.B) {
			run(b, parallel, func(ctx context.Context) error {
				_, err := c.Publish(ctx, newEvent())
				return err
			})
		})
		b.Run(fmt.Sprintf("%s/raw", mode), func(b *testing.B) {
			// The same bytes on the wire, encoded once up front: only the
			// id and its deduplication header change per message.
			tmpl := newEvent()
			enc, err := events.Encode("hookbus.event.com.example.bench", &tmpl)
			if err != nil {
				b.Fatal(err)
			}
			run(b, parallel, func(ctx context.Context) error {
				msg := rawMsg(enc, "raw-"+strconv.FormatInt(ids.Add(1), 10))
				_, err := js.PublishMsg(ctx, msg)
				return err
			})
		})
	}
}

// BenchmarkPublishAsync compares a client.Publisher (validate, encode,
// publish with up to 256 acknowledgements outstanding)
// with raw JetStream PublishMsgAsync of the same, already encoded message
// with the same bound (WithPublishAsyncMaxPending). Both wait for every
// acknowledgement before the timer stops. Read hookbus/raw side by side.
// As in BenchmarkPublish, allocs/op counts the whole process, the
// in-process server included, and each side makes its input per publish.
func BenchmarkPublishAsync(b *testing.B) {
	js, c, newEvent := publishBench(b, "async-")
	var ids atomic.Int64 // the raw side's ids
	window := 256        // the default
	b.Run(fmt.Sprintf("window=%d/hookbus", window), func(b *testing.B) {
		ctx := context.Background()
		p, err := c.NewPublisher(client.WithWindow(window))
		if err != nil {
			b.Fatal(err)
		}
		// b.N, not b.Loop: the timer must run until the last
		// acknowledgement, and b.Loop stops it when the loop ends.
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			if _, err := p.Publish(ctx, newEvent()); err != nil {
				b.Fatal(err)
			}
		}
		if err := p.Close(ctx); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if st := p.Stats(); st.Failed > 0 || st.Duplicates > 0 {
			b.Fatalf("stats %+v", st)
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})
	b.Run(fmt.Sprintf("window=%d/raw", window), func(b *testing.B) {
		var failed atomic.Int64
		rjs, err := jetstream.New(js.Conn(), jetstream.WithPublishAsyncMaxPending(window),
			jetstream.WithPublishAsyncErrHandler(func(jetstream.JetStream, *nats.Msg, error) { failed.Add(1) }))
		if err != nil {
			b.Fatal(err)
		}
		tmpl := newEvent()
		enc, err := events.Encode("hookbus.event.com.example.bench", &tmpl)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			msg := rawMsg(enc, "raw-async-"+strconv.FormatInt(ids.Add(1), 10))
			if _, err := rjs.PublishMsgAsync(msg); err != nil {
				b.Fatal(err)
			}
		}
		<-rjs.PublishAsyncComplete()
		b.StopTimer()
		if n := failed.Load(); n > 0 {
			b.Fatalf("%d raw publishes failed", n)
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})
}

// rawMsg is the raw side's message: encoded event enc with the ce-id and
// deduplication id of id, built per publish as a producer would.
func rawMsg(enc *nats.Msg, id string) *nats.Msg {
	msg := nats.NewMsg(enc.Subject)
	for k, v := range enc.Header {
		msg.Header[k] = v
	}
	msg.Header.Set("ce-id", id)
	msg.Header.Set(events.HeaderMsgID, events.MsgID("/bench", id))
	msg.Data = enc.Data
	return msg
}

func run(b *testing.B, parallel bool, publish func(context.Context) error) {
	ctx := context.Background()
	b.ReportAllocs()
	if !parallel {
		for b.Loop() {
			if err := publish(ctx); err != nil {
				b.Fatal(err)
			}
		}
	} else {
		b.SetParallelism(8)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := publish(ctx); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkNotifyServe measures how fast a client.Serve worker takes
// events already stored in its notify queue (decode and validate, handler,
// ack), beside a raw consumer with the same settings read with nats.go's
// Consume and acking each message, with the worker's pull options (a
// prefetch as large as its concurrency, a 1 s heartbeat).
// The raw consumer runs its callback one message at a time, so it has no
// figure for handlers that block. Read events/s of the two side by side.
func BenchmarkNotifyServe(b *testing.B) {
	srv, js := natstest.RunTopology(b)
	svc, err := registry.New(registry.DefaultConfig(), natstest.Connect(b, srv), nil)
	if err != nil {
		b.Fatal(err)
	}
	natstest.RunService(b, svc)
	c, err := client.New(natstest.Connect(b, srv))
	if err != nil {
		b.Fatal(err)
	}
	round := 0
	// queue makes a consumer as the dispatcher does for a plugin of its
	// own and stores n events for it.
	queue := func(b *testing.B, n int) (events.PluginSpec, jetstream.Consumer) {
		round++
		spec := events.PluginSpec{Name: fmt.Sprintf("bench-%d", round), Event: fmt.Sprintf("bench.serve.%d", round), Mode: events.ModeNotify}
		cfg, err := topology.NotifyConsumerConfig(events.Plugin{PluginSpec: spec})
		if err != nil {
			b.Fatal(err)
		}
		cons, err := js.CreateOrUpdateConsumer(b.Context(), events.StreamEvents, cfg)
		if err != nil {
			b.Fatal(err)
		}
		natstest.StoreEvents(b, js, spec.Event, n)
		return spec, cons
	}
	serve := func(b *testing.B, concurrency int, work time.Duration) {
		spec, _ := queue(b, b.N)
		var handled atomic.Int64
		done := make(chan struct{})
		ctx, cancel := context.WithCancel(context.Background())
		served := make(chan error, 1)
		b.ResetTimer()
		go func() {
			served <- c.Serve(ctx, client.Plugin{Spec: spec, Notify: func(context.Context, *client.Delivery) error {
				if work > 0 {
					time.Sleep(work)
				}
				if handled.Add(1) == int64(b.N) {
					close(done)
				}
				return nil
			}}, client.WithConcurrency(concurrency))
		}()
		<-done
		b.StopTimer()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		cancel()
		if err := <-served; err != nil {
			b.Fatal(err)
		}
	}
	for _, concurrency := range []int{1, 8, 256} {
		b.Run(fmt.Sprintf("concurrency=%d/hookbus", concurrency), func(b *testing.B) { serve(b, concurrency, 0) })
		b.Run(fmt.Sprintf("concurrency=%d/raw", concurrency), func(b *testing.B) {
			_, cons := queue(b, b.N)
			var got atomic.Int64
			done := make(chan struct{})
			b.ResetTimer()
			cc, err := cons.Consume(func(m jetstream.Msg) {
				if err := m.Ack(); err != nil {
					b.Error(err)
				}
				if got.Add(1) == int64(b.N) {
					close(done)
				}
			}, jetstream.PullMaxMessages(concurrency), jetstream.PullHeartbeat(time.Second))
			if err != nil {
				b.Fatal(err)
			}
			<-done
			b.StopTimer()
			cc.Stop()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
	// Handlers that wait (on a database, say) run side by side: up to
	// concurrency/work events a second.
	b.Run("concurrency=64/handler=1ms/hookbus", func(b *testing.B) { serve(b, 64, time.Millisecond) })
}
