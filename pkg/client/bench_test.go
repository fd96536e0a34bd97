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

// BenchmarkPublish compares client.Publish (validate, encode, publish, wait
// for the ack) with a raw JetStream publish of the same, already encoded
// message on the same server, one publisher at a time and with parallel
// publishers. Read hookbus/raw of the same shape side by side.
func BenchmarkPublish(b *testing.B) {
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
	newEvent := func() event.Event {
		e := event.New()
		e.SetID("bench-" + strconv.FormatInt(ids.Add(1), 10))
		e.SetSource("/bench")
		e.SetType("com.example.bench")
		_ = e.SetData(event.ApplicationJSON, map[string]any{"user": "ada", "amount": 42, "note": "a typical small event"})
		return e
	}
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
