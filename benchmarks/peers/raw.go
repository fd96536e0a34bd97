package main

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// rawStream holds the raw side's events: HOOKBUS_EVENTS's settings, its
// own subjects (raw.<type>), no dispatcher reading it.
const (
	rawStream   = "PEERS_RAW"
	rawSubjects = "raw.>"
)

// rawSide is what an application does with nats.go's jetstream package
// alone: PublishMsg / PublishMsgAsync of a message it builds, durable
// pull consumers with the settings of a Hookbus notify queue.
type rawSide struct {
	env       *env
	nc        *nats.Conn
	js        jetstream.JetStream
	consumers []string // made this round
	messages  bool     // consume with the Messages iterator instead of Consume
}

func newRawSide(ctx context.Context, e *env, messages bool) (*rawSide, error) {
	nc, js, err := connectWith(e, "peers-raw", newJetStream)
	if err != nil {
		return nil, err
	}
	if _, err := js.CreateOrUpdateStream(ctx, e.eventsStreamConfig(rawStream, rawSubjects)); err != nil {
		nc.Close()
		return nil, fmt.Errorf("raw stream: %w", err)
	}
	return &rawSide{env: e, nc: nc, js: js, messages: messages}, nil
}

func (r *rawSide) Name() string { return "raw nats.go" }

func rawSubject(typ string) string { return "raw." + typ }

// rawMsg builds the event as Hookbus puts it on the wire: binary-mode
// CloudEvents headers, the data as it is, and a Nats-Msg-Id (here the id
// itself: a raw application has no need to hash source and id).
func rawMsg(typ, id string) *nats.Msg {
	return &nats.Msg{
		Subject: rawSubject(typ),
		Header: nats.Header{
			"ce-specversion": {"1.0"},
			"ce-id":          {id},
			"ce-source":      {eventSource},
			"ce-type":        {typ},
			"content-type":   {"application/json"},
			nats.MsgIdHdr:    {id},
		},
		Data: eventData,
	}
}

func (r *rawSide) Setup(context.Context, string) error { return nil }

func (r *rawSide) PublishOne(ctx context.Context, typ, id string) error {
	_, err := r.js.PublishMsg(ctx, rawMsg(typ, id))
	return err
}

func (r *rawSide) PublishAsync(ctx context.Context, typ, prefix string, n, window int) error {
	return publishAllAsync(ctx, r.nc, window, n, "raw async publishes", func(i int) (*nats.Msg, error) {
		return rawMsg(typ, idOf(prefix, i)), nil
	})
}

// waitForRoom makes PublishMsgAsync wait while the window is full, as a
// client.Publisher does, rather than fail after nats.go's default stall
// wait (200 ms), which a busy machine exceeds.
var waitForRoom = []jetstream.PublishOpt{jetstream.WithStallWait(time.Minute)}

func (r *rawSide) Store(ctx context.Context, typ, prefix string, n int) error {
	return r.PublishAsync(ctx, typ, prefix, n, 256)
}

func (r *rawSide) Prepare(ctx context.Context, typ, name string) error {
	_, err := r.js.CreateOrUpdateConsumer(ctx, rawStream, consumerConfig(name, rawSubject(typ)))
	if err != nil {
		return err
	}
	r.consumers = append(r.consumers, name)
	return nil
}

// Subscribe consumes the durable consumer on a connection of its own with
// PullMaxMessages(prefetch), acking each message after handle.
func (r *rawSide) Subscribe(ctx context.Context, typ, name string, prefetch int, handle func(id string)) (func(), error) {
	nc, js, err := connectWith(r.env, "peers-raw-"+name, newJetStream)
	if err != nil {
		return nil, err
	}
	cons, err := js.Consumer(ctx, rawStream, name)
	if err != nil {
		nc.Close()
		return nil, err
	}
	if r.messages {
		it, err := cons.Messages(jetstream.PullMaxMessages(prefetch))
		if err != nil {
			nc.Close()
			return nil, err
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				m, err := it.Next()
				if err != nil {
					return
				}
				handle(m.Headers().Get("ce-id"))
				_ = m.Ack()
			}
		}()
		return func() { it.Stop(); <-done; nc.Close() }, nil
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		handle(m.Headers().Get("ce-id"))
		_ = m.Ack()
	}, jetstream.PullMaxMessages(prefetch))
	if err != nil {
		nc.Close()
		return nil, err
	}
	return func() { cc.Stop(); <-cc.Closed(); nc.Close() }, nil
}

func (r *rawSide) EndRound(ctx context.Context) error {
	for _, name := range r.consumers {
		if err := r.js.DeleteConsumer(ctx, rawStream, name); err != nil {
			return fmt.Errorf("delete consumer %s: %w", name, err)
		}
	}
	r.consumers = nil
	s, err := r.js.Stream(ctx, rawStream)
	if err != nil {
		return err
	}
	return s.Purge(ctx)
}

func (r *rawSide) Close() { r.nc.Close() }
