// Package benchmarks measures Hookbus end to end on one embedded server,
// each figure beside the raw NATS figure for the same work (make bench).
package benchmarks

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/internal/natstest"
	"github.com/hookbus/hookbus/internal/topology"
	"github.com/hookbus/hookbus/pkg/client"
	"github.com/hookbus/hookbus/pkg/events"
	"github.com/hookbus/hookbus/services/dispatcher"
	"github.com/hookbus/hookbus/services/registry"
)

// BenchmarkNotifyDelivery measures how fast events already in
// HOOKBUS_EVENTS reach a notify plugin, on one embedded server with the
// registry and the dispatcher running: hookbus is a client.Serve worker
// (decode and validate, handler, ack) on the queue the dispatcher made;
// raw is a plain JetStream consumer with the same settings, consumed with
// nats.go's Consume (the fastest plain way), acking each message. Each
// round uses a plugin and an event type of its own. Read events/s of the
// two side by side.
func BenchmarkNotifyDelivery(b *testing.B) {
	const concurrency = 256
	srv, js := natstest.RunTopology(b)
	for _, svc := range []natstest.Service{newRegistry(b, srv), newDispatcher(b, srv)} {
		natstest.RunService(b, svc)
	}
	c, err := client.New(natstest.Connect(b, srv))
	if err != nil {
		b.Fatal(err)
	}
	round := 0
	b.Run("hookbus", func(b *testing.B) {
		round++
		spec := events.PluginSpec{Name: fmt.Sprintf("bench-%d", round), Event: fmt.Sprintf("bench.notify.%d", round), Mode: events.ModeNotify}
		ctx := b.Context()
		if _, err := c.Register(ctx, spec); err != nil {
			b.Fatal(err)
		}
		if _, err := c.Start(ctx, spec.Name); err != nil {
			b.Fatal(err)
		}
		natstest.Eventually(b, 5*time.Second, func() error {
			_, err := js.Consumer(ctx, events.StreamEvents, events.NotifyConsumer(spec.Name))
			return err
		})
		natstest.StoreEvents(b, js, spec.Event, b.N)
		var handled atomic.Int64
		done := make(chan struct{})
		wctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		b.ResetTimer()
		go func() {
			_ = c.Serve(wctx, client.Plugin{Spec: spec, Notify: func(context.Context, *client.Delivery) error {
				if handled.Add(1) == int64(b.N) {
					close(done)
				}
				return nil
			}}, client.WithConcurrency(concurrency))
		}()
		<-done
		b.StopTimer()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})
	b.Run("raw", func(b *testing.B) {
		round++
		ctx := b.Context()
		typ := fmt.Sprintf("bench.raw.%d", round)
		cfg, err := topology.NotifyConsumerConfig(events.Plugin{PluginSpec: events.PluginSpec{Name: fmt.Sprintf("raw-%d", round), Event: typ, Mode: events.ModeNotify}})
		if err != nil {
			b.Fatal(err)
		}
		cons, err := js.CreateOrUpdateConsumer(ctx, events.StreamEvents, cfg)
		if err != nil {
			b.Fatal(err)
		}
		natstest.StoreEvents(b, js, typ, b.N)
		b.ResetTimer()
		var got atomic.Int64
		done := make(chan struct{})
		cc, err := cons.Consume(func(m jetstream.Msg) {
			if err := m.Ack(); err != nil {
				b.Error(err)
			}
			if got.Add(1) == int64(b.N) {
				close(done)
			}
		}, jetstream.PullMaxMessages(concurrency))
		if err != nil {
			b.Fatal(err)
		}
		<-done
		cc.Stop()
		b.StopTimer()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})
}

func newRegistry(b *testing.B, srv *server.Server) natstest.Service {
	b.Helper()
	svc, err := registry.New(registry.DefaultConfig(), natstest.Connect(b, srv), nil)
	if err != nil {
		b.Fatal(err)
	}
	return svc
}

func newDispatcher(b *testing.B, srv *server.Server) natstest.Service {
	b.Helper()
	svc, err := dispatcher.New(dispatcher.DefaultConfig(), natstest.Connect(b, srv), nil)
	if err != nil {
		b.Fatal(err)
	}
	return svc
}
