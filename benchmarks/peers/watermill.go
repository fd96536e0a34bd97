package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/ThreeDotsLabs/watermill"
	wmjs "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/jetstream"
	wmnats "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/nats"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// watermillSide uses Watermill's JetStream backend (watermill-nats/v2
// pkg/jetstream): its Publisher, and its Subscriber on durable consumers.
// A Watermill topic is a stream of the same name whose one subject is that
// name, so every event type gets a stream (HOOKBUS_EVENTS's settings).
type watermillSide struct {
	env       *env
	nc        *nats.Conn
	js        jetstream.JetStream
	pub       *wmjs.Publisher
	doubleAck bool     // Watermill's default: wait for the server to confirm each ack
	streams   []string // made this round
}

func newWatermillSide(e *env, doubleAck bool) (*watermillSide, error) {
	nc, js, err := connectWith(e, "peers-watermill", newJetStream)
	if err != nil {
		return nil, err
	}
	w := &watermillSide{env: e, nc: nc, js: js, doubleAck: doubleAck}
	// Watermill's Publisher.Close closes the connection: the side's
	// Close does.
	w.pub, err = wmjs.NewPublisher(wmjs.PublisherConfig{
		Conn:            nc,
		Logger:          watermill.NopLogger{},
		ConfigureStream: w.streamConfig,
	})
	if err != nil {
		nc.Close()
		return nil, err
	}
	return w, nil
}

func (w *watermillSide) Name() string { return "Watermill" }

// topic is the Watermill topic of an event type: a stream name, which
// may not contain dots.
func topic(typ string) string { return "wm_" + strings.ReplaceAll(typ, ".", "_") }

func (w *watermillSide) streamConfig(topic string) jetstream.StreamConfig {
	return w.env.eventsStreamConfig(topic, topic)
}

// ensureTopic creates the topic's stream once, with Watermill's own
// SubscribeInitialize (CreateStream of ConfigureStream's definition).
func (w *watermillSide) ensureTopic(ctx context.Context, typ string) error {
	t := topic(typ)
	for _, s := range w.streams {
		if s == t {
			return nil
		}
	}
	if _, err := w.js.CreateStream(ctx, w.streamConfig(t)); err != nil {
		return fmt.Errorf("watermill stream %s: %w", t, err)
	}
	w.streams = append(w.streams, t)
	return nil
}

// newMessage is the event as a Watermill message: its UUID is the event's
// id, and the CloudEvents headers and Nats-Msg-Id of the other sides are
// metadata (Watermill's NATS marshaler sends metadata as headers).
func newMessage(typ, id string) *message.Message {
	m := message.NewMessage(id, eventData)
	m.Metadata = message.Metadata{
		"ce-specversion": "1.0",
		"ce-id":          id,
		"ce-source":      eventSource,
		"ce-type":        typ,
		"content-type":   "application/json",
		nats.MsgIdHdr:    id,
	}
	return m
}

func (w *watermillSide) Setup(ctx context.Context, typ string) error { return w.ensureTopic(ctx, typ) }

// PublishOne is Watermill's Publisher.Publish (a synchronous JetStream
// publish, with its own context.Background()).
func (w *watermillSide) PublishOne(_ context.Context, typ, id string) error {
	return w.pub.Publish(topic(typ), newMessage(typ, id))
}

func (w *watermillSide) PublishAsync(context.Context, string, string, int, int) error {
	return errNoAsync
}

// Store sends Watermill's own marshaling of each message (the bytes its
// Publisher sends) with nats.go's async publish: Watermill has none, and
// this part is not measured.
func (w *watermillSide) Store(ctx context.Context, typ, prefix string, n int) error {
	if err := w.ensureTopic(ctx, typ); err != nil {
		return err
	}
	var m wmnats.NATSMarshaler
	t := topic(typ)
	return publishAllAsync(ctx, w.nc, 256, n, "watermill stores", func(i int) (*nats.Msg, error) {
		return m.Marshal(t, newMessage(typ, idOf(prefix, i)))
	})
}

func (w *watermillSide) Prepare(ctx context.Context, typ, name string) error {
	if err := w.ensureTopic(ctx, typ); err != nil {
		return err
	}
	_, err := w.js.CreateOrUpdateConsumer(ctx, topic(typ), consumerConfig(name, topic(typ)))
	return err
}

// durable is a Watermill ResourceInitializer for a durable consumer with
// the settings of a Hookbus notify queue (Watermill's own initializers
// make consumers without a durable name, which the server removes when
// idle).
func (w *watermillSide) durable(name string) wmjs.ResourceInitializer {
	return func(ctx context.Context, js jetstream.JetStream, topic string) (jetstream.Consumer, func(context.Context, watermill.LoggerAdapter), error) {
		c, err := js.CreateOrUpdateConsumer(ctx, topic, consumerConfig(name, topic))
		return c, nil, err
	}
}

// Subscribe runs a Watermill Subscriber on a connection of its own
// (Close drains it) with PullMaxMessages(prefetch); a goroutine reads the
// output channel, calls handle and acks each message.
func (w *watermillSide) Subscribe(ctx context.Context, typ, name string, prefetch int, handle func(id string)) (func(), error) {
	nc, err := w.env.connect("peers-watermill-" + name)
	if err != nil {
		return nil, err
	}
	sub, err := wmjs.NewSubscriber(wmjs.SubscriberConfig{
		Conn:                nc,
		Logger:              watermill.NopLogger{},
		ResourceInitializer: w.durable(name),
		ConfigureStream:     w.streamConfig,
		ConsumeOptions:      []jetstream.PullConsumeOpt{jetstream.PullMaxMessages(prefetch)},
		AckAsync:            !w.doubleAck,
	})
	if err != nil {
		nc.Close()
		return nil, err
	}
	sctx, cancel := context.WithCancel(context.Background())
	out, err := sub.Subscribe(sctx, topic(typ))
	if err != nil {
		cancel()
		_ = sub.Close()
		return nil, err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m := range out {
			handle(m.UUID)
			m.Ack()
		}
	}()
	return func() {
		cancel()
		<-done
		_ = sub.Close()
		nc.Close()
	}, nil
}

// EndRound deletes the round's streams (and so their consumers).
func (w *watermillSide) EndRound(ctx context.Context) error {
	for _, s := range w.streams {
		if err := w.js.DeleteStream(ctx, s); err != nil {
			return fmt.Errorf("delete stream %s: %w", s, err)
		}
	}
	w.streams = nil
	return nil
}

func (w *watermillSide) Close() { _ = w.pub.Close() }
