// Package client is the Go SDK of Hookbus: publish CloudEvents and wait for
// JetStream to store them (Publish), run a chain now (Call), run plugin
// workers (Serve), administer plugins (Register, Start, ...) and dead
// letters (DeadLetters, Replay), and use the auth store (AuthStore). It
// talks to Hookbus only through the wire contract of package events, over
// a NATS connection you own.
package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/pkg/events"
)

// Client publishes to Hookbus over a NATS connection. It is safe for
// concurrent use; closing the connection is the caller's business.
type Client struct {
	nc    *nats.Conn
	js    jetstream.JetStream
	codec events.Codec
	retry time.Duration
}

// Option configures a Client.
type Option func(*Client)

// WithMaxEventSize sets the largest encoded event (data plus headers)
// Publish accepts and Serve hands to a handler; a larger one is invalid. The
// default is events.DefaultMaxSize (1 MiB), HOOKBUS_EVENTS's own limit
// unless the operator changed it.
func WithMaxEventSize(n int) Option { return func(c *Client) { c.codec.MaxSize = n } }

// WithRetryWait sets the longest wait between two attempts of a publish
// that failed for a passing reason. The default is 2 s.
func WithRetryWait(d time.Duration) Option { return func(c *Client) { c.retry = d } }

// New returns a Client on nc.
func New(nc *nats.Conn, opts ...Option) (*Client, error) {
	if nc == nil {
		return nil, errors.New("client: nil nats connection")
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("client: jetstream: %w", err)
	}
	c := &Client{nc: nc, js: js, retry: 2 * time.Second}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

// PublishAck is JetStream's receipt for a stored event.
type PublishAck struct {
	Stream    string // HOOKBUS_EVENTS
	Sequence  uint64 // the event's sequence in the stream
	Duplicate bool   // an event with the same source and id was already stored; this one was not stored again
}

// PublishOption changes one Publish.
type PublishOption func(*publishOptions)

type publishOptions struct{ structured bool }

// Structured sends the event in structured mode (one JSON document) instead
// of binary mode. Consumers read both; binary is the default.
func Structured() PublishOption { return func(o *publishOptions) { o.structured = true } }

// ErrNotStored is matched by Publish errors where no stream took the event
// before ctx ended: Hookbus is not running, the topology is missing, or the
// stream refused it (full).
var ErrNotStored = errors.New("event not stored")

// Publish validates e, sends it on hookbus.event.<type> and waits for the
// JetStream acknowledgement. An invalid event returns an error matching
// events.ErrInvalid (a *events.ValidationError naming the attribute) and
// nothing is sent. Failures that may pass (no stream answering during a
// leader election or restart, a timeout) are retried with the same message
// until ctx ends; the event's Nats-Msg-Id (events.MsgID of source and id)
// makes the retries store it once. Those that do not pass return an error
// matching ErrNotStored.
func (c *Client) Publish(ctx context.Context, e event.Event, opts ...PublishOption) (PublishAck, error) {
	var o publishOptions
	for _, opt := range opts {
		opt(&o)
	}
	subject, err := events.EventSubject(e.Type())
	if err != nil {
		return PublishAck{}, err
	}
	var msg *nats.Msg
	if o.structured {
		msg, err = c.codec.EncodeStructured(subject, &e)
	} else {
		msg, err = c.codec.Encode(subject, &e)
	}
	if err != nil {
		return PublishAck{}, err
	}
	ack, err := c.publish(ctx, msg, events.StreamEvents)
	if err != nil {
		return PublishAck{}, fmt.Errorf("publish %s %s: %w", e.Type(), e.ID(), err)
	}
	return PublishAck{Stream: ack.Stream, Sequence: ack.Sequence, Duplicate: ack.Duplicate}, nil
}

// publish sends msg until a stream acknowledges it or ctx ends, backing off
// between attempts. It is the one place that decides what is retried.
func (c *Client) publish(ctx context.Context, msg *nats.Msg, stream string) (*jetstream.PubAck, error) {
	wait := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ack, err := c.js.PublishMsg(actx, msg, jetstream.WithExpectStream(stream))
		cancel()
		if err == nil {
			return ack, nil
		}
		if !retryable(err) {
			return nil, fmt.Errorf("%w: %w", ErrNotStored, err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w after %d attempt(s): %w (is Hookbus running and the topology in place?)", ErrNotStored, attempt, err)
		case <-time.After(wait):
		}
		wait = min(2*wait, c.retry)
	}
}

// retryable reports whether a publish error may pass on its own.
func retryable(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		// The stream answered and refused (full, wrong stream, too large):
		// sending the same message again will not help.
		return false
	}
	return errors.Is(err, jetstream.ErrNoStreamResponse) ||
		errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, nats.ErrConnectionReconnecting) ||
		errors.Is(err, nats.ErrDisconnected)
}
