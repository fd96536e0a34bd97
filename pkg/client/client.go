// Package client is the Go SDK of Hookbus: publish events (Publish,
// NewPublisher, PublishBatch), run a chain (Call), run plugin workers
// (Serve), administer plugins (Register, Start, ...), dead letters
// (DeadLetters, Replay) and the auth store (AuthStore), over a NATS
// connection you own.
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

// Client is a connection to Hookbus over a NATS connection the caller
// owns and closes; it is safe for concurrent use.
type Client struct {
	nc       *nats.Conn
	js       jetstream.JetStream
	codec    events.Codec
	retry    time.Duration
	timeout  time.Duration
	subjects subjectCache
}

// New returns a Client on nc; its options are WithMaxEventSize,
// WithRetryWait and WithTimeout.
func New(nc *nats.Conn, opts ...Option) (*Client, error) {
	if nc == nil {
		return nil, errors.New("client: nil nats connection")
	}
	o := options{maxEventSize: events.DefaultMaxSize, retryWait: 2 * time.Second, timeout: defaultTimeout}
	if err := o.apply(inNew, opts); err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("client: jetstream: %w", err)
	}
	return &Client{nc: nc, js: js, codec: events.Codec{MaxSize: o.maxEventSize}, retry: o.retryWait, timeout: o.timeout}, nil
}

// PublishAck is JetStream's receipt for a stored event.
type PublishAck struct {
	Stream    string // HOOKBUS_EVENTS
	Sequence  uint64 // the event's sequence in the stream
	Duplicate bool   // an event with the same source and id was already stored; this one was not stored again
}

// ErrNotStored is matched by Publish errors where no stream took the event
// before ctx ended: Hookbus is not running, the topology is missing, or the
// stream refused it (full).
var ErrNotStored = errors.New("event not stored")

// Publish stores e in HOOKBUS_EVENTS (binary mode unless Structured) and
// returns JetStream's acknowledgement. An invalid event matches
// events.ErrInvalid and is not sent; passing failures are retried, stored
// once, until ctx ends (or the client's timeout when ctx has no deadline);
// the others, and running out of time, match ErrNotStored.
func (c *Client) Publish(ctx context.Context, e event.Event, opts ...Option) (PublishAck, error) {
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
func (c *Client) encode(e *event.Event, opts []Option) (*nats.Msg, error) {
	var structured bool
	if len(opts) > 0 {
		// Only here, as the options take its address: a Publish without
		// options does not allocate them.
		var o options
		if err := o.apply(inPublish, opts); err != nil {
			return nil, err
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
// acknowledgement: jetstream's default timeout.
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

// send sends msg until a stream acknowledges it, ctx ends, or, when ctx
// has no deadline, the client's timeout passes, backing off between
// attempts. It is the one place that decides what is retried.
func (c *Client) send(ctx context.Context, msg *nats.Msg, stream string) (jetstream.PubAck, error) {
	expectStream(msg, stream)
	var end time.Time // without a deadline in ctx: the end of the last attempt
	if _, ok := ctx.Deadline(); !ok {
		end = time.Now().Add(c.timeout)
	}
	b := newBackoff(50*time.Millisecond, c.retry)
	for attempt := 1; ; attempt++ {
		ack, err := c.sendOnce(ctx, msg, end)
		if err == nil {
			return ack, nil
		}
		if !retryable(err) {
			return jetstream.PubAck{}, fmt.Errorf("%w: %w", ErrNotStored, err)
		}
		if !b.wait(ctx, end) {
			return jetstream.PubAck{}, fmt.Errorf("%w after %d attempt(s): %w (is Hookbus running and the topology in place?)", ErrNotStored, attempt, err)
		}
	}
}

// sendOnce is one attempt of send: what jetstream's PublishMsg does (a
// request to the stream, made again up to jetstream.DefaultPubRetryAttempts
// times while nothing answers, then ErrNoStreamResponse; the
// acknowledgement read as it reads it), bounded by attemptTimeout, by end
// when set, or by ctx if that ends sooner. It spares what PublishMsg
// allocates around the request: its options, and a context and a timer for
// the bound when ctx never ends (a request with a timeout, whose timer
// nats.go reuses, bounds it instead) or ends within attemptTimeout (ctx
// bounds it).
func (c *Client) sendOnce(ctx context.Context, msg *nats.Msg, end time.Time) (jetstream.PubAck, error) {
	limit := attemptTimeout
	if !end.IsZero() {
		limit = min(limit, time.Until(end))
	}
	var deadline time.Time // when ctx never ends: the attempt's end
	if ctx.Done() == nil {
		deadline = time.Now().Add(limit)
	} else if d, ok := ctx.Deadline(); !ok || time.Until(d) > limit {
		actx, cancel := context.WithTimeout(ctx, limit)
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
