package client_test

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/internal/natstest"
	"github.com/hookbus/hookbus/internal/topology"
	"github.com/hookbus/hookbus/pkg/client"
	"github.com/hookbus/hookbus/pkg/events"
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
		_ = e.SetData(event.ApplicationJSON, map[string]any{"user": "ada", "amount": 42, "note": "a typical small event"})
		return e
	}
}

// BenchmarkPublish compares client.Publish (validate, encode, publish, wait
// for the ack) with a raw JetStream publish of the same, already encoded
// message on the same server, one publisher at a time and with parallel
// publishers. Read hookbus/raw of the same shape side by side.
func BenchmarkPublish(b *testing.B) {
	js, c, newEvent := publishBench(b, "bench-")
	var ids atomic.Int64 // the raw side's ids
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
				id := "raw-" + strconv.FormatInt(ids.Add(1), 10)
				msg := nats.NewMsg(enc.Subject)
				for k, v := range enc.Header {
					msg.Header[k] = v
				}
				msg.Header.Set("ce-id", id)
				msg.Header.Set(events.HeaderMsgID, events.MsgID("/bench", id))
				msg.Data = enc.Data
				_, err := js.PublishMsg(ctx, msg)
				return err
			})
		})
	}
}

// BenchmarkPublishAsync compares a client.Publisher (validate, encode,
// publish with up to client.DefaultWindow acknowledgements outstanding)
// with raw JetStream PublishMsgAsync of the same, already encoded message
// with the same bound (WithPublishAsyncMaxPending). Both wait for every
// acknowledgement before the timer stops. Read hookbus/raw side by side.
func BenchmarkPublishAsync(b *testing.B) {
	js, c, newEvent := publishBench(b, "async-")
	var ids atomic.Int64 // the raw side's ids
	window := client.DefaultWindow
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
			id := "raw-async-" + strconv.FormatInt(ids.Add(1), 10)
			msg := nats.NewMsg(enc.Subject)
			for k, v := range enc.Header {
				msg.Header[k] = v
			}
			msg.Header.Set("ce-id", id)
			msg.Header.Set(events.HeaderMsgID, events.MsgID("/bench", id))
			msg.Data = enc.Data
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
