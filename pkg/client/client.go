// Package client is the Go SDK of Hookbus: publish CloudEvents and wait for
// JetStream to store them (Publish), run a chain now (Call), run plugin
// workers (Serve), administer plugins (Register, Start, ...) and dead
// letters (DeadLetters, Replay), and use the auth store (AuthStore). It
// talks to Hookbus only through the wire contract of package events, over
// a NATS connection you own.
package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/pkg/events"
)

// Client publishes to Hookbus over a NATS connection. It is safe for
// concurrent use; closing the connection is the caller's business.
type Client struct {
	nc       *nats.Conn
	js       jetstream.JetStream
	codec    events.Codec
	retry    time.Duration
	subjects subjectCache
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
	msg, err := c.encode(&e, opts)
	if err != nil {
		return PublishAck{}, err
	}
	ack, err := c.send(ctx, msg, events.StreamEvents)
	if err != nil {
		return PublishAck{}, fmt.Errorf("publish %s %s: %w", e.Type(), e.ID(), err)
	}
	return PublishAck{Stream: ack.Stream, Sequence: ack.Sequence, Duplicate: ack.Duplicate}, nil
}

// encode validates e and returns its message on hookbus.event.<type>, in
// the mode opts ask for.
func (c *Client) encode(e *event.Event, opts []PublishOption) (*nats.Msg, error) {
	var structured bool
	if len(opts) > 0 {
		// Only here, as the options take its address: a Publish without
		// options does not allocate them.
		var o publishOptions
		for _, opt := range opts {
			opt(&o)
		}
		structured = o.structured
	}
	subject, err := c.subjects.eventSubject(e.Type())
	if err != nil {
		return nil, err
	}
	if structured {
		// encoding/json takes the event as an interface, which puts it on
		// the heap: a copy goes, so that e stays on its caller's stack.
		ev := *e
		return c.codec.EncodeStructured(subject, &ev)
	}
	return c.codec.Encode(subject, e)
}

// maxCachedSubjects bounds the event types a client keeps the subject of.
const maxCachedSubjects = 256

// subjectCache keeps events.EventSubject of the event types a client
// publishes, so that a publish of a type seen before neither validates the
// type again nor builds its subject. It keeps maxCachedSubjects types at
// most; other types are served as before, without it.
type subjectCache struct {
	m  atomic.Pointer[map[string]string] // replaced, never changed
	mu sync.Mutex                        // serialises replacements
}

func (s *subjectCache) eventSubject(typ string) (string, error) {
	if m := s.m.Load(); m != nil {
		if subject, ok := (*m)[typ]; ok {
			return subject, nil
		}
	}
	subject, err := events.EventSubject(typ)
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var known map[string]string
	if m := s.m.Load(); m != nil {
		known = *m
	}
	if len(known) < maxCachedSubjects {
		m := make(map[string]string, len(known)+1)
		maps.Copy(m, known)
		m[typ] = subject
		s.m.Store(&m)
	}
	return subject, nil
}

// attemptTimeout bounds one attempt of a publish, the wait for one
// acknowledgement: jetstream's default timeout, which bounded it when
// attempts were jetstream.PublishMsg calls.
const attemptTimeout = 5 * time.Second

// expectStream sets the header of jetstream.WithExpectStream(stream) on
// msg, once for all its attempts: the option would allocate itself and its
// options on every one.
func expectStream(msg *nats.Msg, stream string) {
	if msg.Header == nil {
		msg.Header = nats.Header{}
	}
	if stream == events.StreamEvents {
		msg.Header[jetstream.ExpectedStreamHeader] = expectEventsStream
		return
	}
	msg.Header[jetstream.ExpectedStreamHeader] = []string{stream}
}

// expectEventsStream is the value of expectStream's header for
// HOOKBUS_EVENTS, shared by every event message the client sends. Those
// messages are the client's own and nothing writes into a header value in
// place (Header.Set replaces the slice, Add appends past its capacity).
var expectEventsStream = []string{events.StreamEvents}

// publish is send with the acknowledgement as jetstream returns it.
func (c *Client) publish(ctx context.Context, msg *nats.Msg, stream string) (*jetstream.PubAck, error) {
	ack, err := c.send(ctx, msg, stream)
	if err != nil {
		return nil, err
	}
	return &ack, nil
}

// send sends msg until a stream acknowledges it or ctx ends, backing off
// between attempts. It is the one place that decides what is retried.
func (c *Client) send(ctx context.Context, msg *nats.Msg, stream string) (jetstream.PubAck, error) {
	expectStream(msg, stream)
	wait := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		ack, err := c.sendOnce(ctx, msg)
		if err == nil {
			return ack, nil
		}
		if !retryable(err) {
			return jetstream.PubAck{}, fmt.Errorf("%w: %w", ErrNotStored, err)
		}
		select {
		case <-ctx.Done():
			return jetstream.PubAck{}, fmt.Errorf("%w after %d attempt(s): %w (is Hookbus running and the topology in place?)", ErrNotStored, attempt, err)
		case <-time.After(wait):
		}
		wait = min(2*wait, c.retry)
	}
}

// sendOnce is one attempt of send: what jetstream's PublishMsg does (a
// request to the stream, made again up to jetstream.DefaultPubRetryAttempts
// times while nothing answers, then ErrNoStreamResponse; the
// acknowledgement read as it reads it), bounded by attemptTimeout or by ctx
// if that ends sooner. It spares what PublishMsg allocates around the
// request: its options, and a context and a timer for the bound when ctx
// never ends (a request with a timeout, whose timer nats.go reuses, bounds
// it instead) or ends within attemptTimeout (ctx bounds it).
func (c *Client) sendOnce(ctx context.Context, msg *nats.Msg) (jetstream.PubAck, error) {
	var deadline time.Time // when ctx never ends: the attempt's end
	if ctx.Done() == nil {
		deadline = time.Now().Add(attemptTimeout)
	} else if d, ok := ctx.Deadline(); !ok || time.Until(d) > attemptTimeout {
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		defer cancel()
		ctx = actx
	}
	resp, err := c.request(ctx, deadline, msg)
	for r := 0; errors.Is(err, nats.ErrNoResponders) && r < jetstream.DefaultPubRetryAttempts; r++ {
		// A stream leader may be moving: ask again shortly.
		select {
		case <-ctx.Done():
		case <-time.After(jetstream.DefaultPubRetryWait):
		}
		resp, err = c.request(ctx, deadline, msg)
	}
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) {
			return jetstream.PubAck{}, jetstream.ErrNoStreamResponse
		}
		return jetstream.PubAck{}, err
	}
	return parsePubAck(resp.Data)
}

// request sends msg and waits for its answer until ctx ends or, when
// deadline is set (ctx then never ends), until deadline.
func (c *Client) request(ctx context.Context, deadline time.Time, msg *nats.Msg) (*nats.Msg, error) {
	if deadline.IsZero() {
		return c.nc.RequestMsgWithContext(ctx, msg)
	}
	left := time.Until(deadline)
	if left <= 0 {
		return nil, context.DeadlineExceeded
	}
	return c.nc.RequestMsg(msg, left)
}

// parsePubAck reads a stream's answer to a publish as jetstream's
// PublishMsg does: the acknowledgement, the stream's refusal as its
// *jetstream.APIError, or jetstream.ErrInvalidJSAck.
func parsePubAck(data []byte) (jetstream.PubAck, error) {
	var resp struct { // jetstream's pubAckResponse
		Type  string              `json:"type"`
		Error *jetstream.APIError `json:"error,omitempty"`
		*jetstream.PubAck
	}
	if err := json.Unmarshal(data, &resp); err != nil {
		return jetstream.PubAck{}, jetstream.ErrInvalidJSAck
	}
	if resp.Error != nil {
		return jetstream.PubAck{}, fmt.Errorf("nats: %w", resp.Error)
	}
	if resp.PubAck == nil || resp.Stream == "" {
		return jetstream.PubAck{}, jetstream.ErrInvalidJSAck
	}
	return *resp.PubAck, nil
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
