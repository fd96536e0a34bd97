package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// side is one of the three systems under test. Every side sends the same
// event: the 128-byte JSON data below, with the CloudEvents attributes of
// Hookbus's binary mode as headers (ce-specversion, ce-id, ce-source,
// ce-type, content-type) and a Nats-Msg-Id, so the bytes on the wire are
// alike and the figures compare the software.
type side interface {
	// Name is the column of the table.
	Name() string
	// Setup makes what publishing events of type typ needs (Watermill:
	// the topic's stream); it is not measured.
	Setup(ctx context.Context, typ string) error
	// PublishOne publishes one event of type typ with id id and waits
	// for JetStream's acknowledgement. It builds the message itself.
	PublishOne(ctx context.Context, typ, id string) error
	// PublishAsync publishes n events with ids prefix-0 ... with at most
	// window acknowledgements outstanding, and returns when every one is
	// acknowledged. errNoAsync when the side has no such API.
	PublishAsync(ctx context.Context, typ, prefix string, n, window int) error
	// Store puts n events (ids prefix-0 ...) in the stream, fast; it is
	// not measured.
	Store(ctx context.Context, typ, prefix string, n int) error
	// Prepare makes ready, before any event of typ is published, what a
	// subscriber named name reads from: a durable queue.
	Prepare(ctx context.Context, typ, name string) error
	// Subscribe starts subscriber name on typ, with a prefetch of
	// prefetch events, calling handle with each event's id before it acks
	// it. stop ends the subscription and waits for it.
	Subscribe(ctx context.Context, typ, name string, prefetch int, handle func(id string)) (stop func(), err error)
	// EndRound removes what the round made (queues, stored events).
	EndRound(ctx context.Context) error
	// Close releases the side's connections.
	Close()
}

var errNoAsync = errors.New("no asynchronous publish API")

// eventData is the data of every event: 128 bytes of JSON.
var eventData = func() []byte {
	const head, tail = `{"user":"ada","amount":42,"currency":"EUR","note":"`, `"}`
	b := []byte(head + strings.Repeat("x", 128-len(head)-len(tail)) + tail)
	if len(b) != 128 {
		panic(fmt.Sprintf("event data is %d bytes", len(b)))
	}
	return b
}()

// eventSource is every event's ce-source.
const eventSource = "/bench"

// idOf is the id of event i of a run.
func idOf(prefix string, i int) string { return prefix + "-" + strconv.Itoa(i) }

// indexOf returns i of an id made by idOf, or -1.
func indexOf(id string) int {
	k := strings.LastIndexByte(id, '-')
	if k < 0 {
		return -1
	}
	i, err := strconv.Atoi(id[k+1:])
	if err != nil {
		return -1
	}
	return i
}

// connectWith connects as name and makes what the side uses on the
// connection (a JetStream context, a Hookbus client); the connection is
// closed when that fails.
func connectWith[T any](e *env, name string, make func(*nats.Conn) (T, error)) (*nats.Conn, T, error) {
	nc, err := e.connect(name)
	if err != nil {
		var zero T
		return nil, zero, err
	}
	v, err := make(nc)
	if err != nil {
		nc.Close()
		return nil, v, err
	}
	return nc, v, nil
}

// publishAllAsync sends msg(0) to msg(n-1) with nats.go's asynchronous
// publish on nc, at most window outstanding (waiting while it is full),
// and waits for every acknowledgement; what names the messages in the
// error when some failed.
func publishAllAsync(ctx context.Context, nc *nats.Conn, window, n int, what string, msg func(i int) (*nats.Msg, error)) error {
	var failed atomic.Int64
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(window),
		jetstream.WithPublishAsyncErrHandler(func(jetstream.JetStream, *nats.Msg, error) { failed.Add(1) }))
	if err != nil {
		return err
	}
	for i := range n {
		m, err := msg(i)
		if err != nil {
			return err
		}
		if _, err := js.PublishMsgAsync(m, waitForRoom...); err != nil {
			return err
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		return ctx.Err()
	}
	if n := failed.Load(); n > 0 {
		return fmt.Errorf("%d %s failed", n, what)
	}
	return nil
}

func newJetStream(nc *nats.Conn) (jetstream.JetStream, error) { return jetstream.New(nc) }
