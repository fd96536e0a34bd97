package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/pkg/events"
)

// streamLookupTTL is how long the answer to "which stream holds this
// subject" is trusted before JetStream is asked again.
const streamLookupTTL = 5 * time.Second

// subjectPublisher publishes events to subject hooks, with the
// dispatcher's own NATS user: through JetStream, waiting for the
// acknowledgement, when a stream captures the subject, else as a core
// publish followed by a round trip to the server.
//
// NATS reports a refused publish only as an asynchronous error of the
// connection (its LastError), not per message; publishes are therefore
// made one at a time, and a refusal is an error that was not there before
// the publish, naming its subject, when the round trip after it returns
// (the server answers in order).
type subjectPublisher struct {
	nc             *nats.Conn
	js             jetstream.JetStream
	codec          events.Codec
	defaultTimeout time.Duration
	now            func() time.Time

	publishMu sync.Mutex // one publish and its round trip at a time

	mu      sync.Mutex
	streams map[string]streamLookup // subject -> the stream that holds it
}

// streamLookup is a cached answer of JetStream: the stream holding a
// subject ("" for none) as of at.
type streamLookup struct {
	stream string
	at     time.Time
}

// newSubjectPublisher returns a publisher on nc.
func newSubjectPublisher(nc *nats.Conn, codec events.Codec, defaultTimeout time.Duration) (*subjectPublisher, error) {
	// Its own JetStream context: an acknowledgement that never comes
	// drops the pending publish after the longest hook timeout.
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(events.MaxHookTimeout))
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	return &subjectPublisher{nc: nc, js: js, codec: codec, defaultTimeout: defaultTimeout, now: time.Now,
		streams: map[string]streamLookup{}}, nil
}

// send publishes e to the subject in h's arg once and classifies the
// outcome: a publish the server refuses for want of permission is final;
// a timeout, no JetStream answer or a JetStream error is retried.
func (p *subjectPublisher) send(ctx context.Context, h events.Hook, e *event.Event) delivery {
	timeout := p.defaultTimeout
	if h.Settings.TimeoutMS > 0 {
		timeout = time.Duration(h.Settings.TimeoutMS) * time.Millisecond
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	subject := h.Arg
	if err := events.ValidateHookSubject(subject); err != nil {
		return delivery{err: fmt.Errorf("hook %s: %w", h.ID, err)}
	}
	msg, err := p.codec.Encode(subject, e)
	if err != nil {
		return delivery{err: fmt.Errorf("hook %s: encode event: %w", h.ID, err)}
	}
	stream, err := p.stream(ctx, subject)
	if err != nil {
		return delivery{retry: true, err: fmt.Errorf("hook %s: which stream holds %s: %w", h.ID, subject, err)}
	}
	if stream == "" {
		if err := p.publish(ctx, subject, func() error { return p.nc.PublishMsg(msg) }); err != nil {
			return p.failed(h, subject, err)
		}
		return delivery{}
	}
	var ack jetstream.PubAckFuture
	err = p.publish(ctx, subject, func() error {
		var err error
		ack, err = p.js.PublishMsgAsync(msg, jetstream.WithExpectStream(stream))
		return err
	})
	if err != nil {
		p.forget(subject)
		return p.failed(h, subject, err)
	}
	select {
	case <-ack.Ok():
		return delivery{}
	case err := <-ack.Err():
		p.forget(subject) // the stream may have changed
		return delivery{retry: true, err: fmt.Errorf("hook %s: publish to %s (stream %s): %w", h.ID, subject, stream, err)}
	case <-ctx.Done():
		return delivery{retry: true, err: fmt.Errorf("hook %s: publish to %s (stream %s): no acknowledgement in %s", h.ID, subject, stream, timeout)}
	}
}

// errForbidden is matched by the error of a publish the server refused.
var errForbidden = errors.New("permissions violation")

// publish runs pub, then a round trip to the server, one at a time, and
// returns errForbidden when the server refused the publish to subject.
func (p *subjectPublisher) publish(ctx context.Context, subject string, pub func() error) error {
	p.publishMu.Lock()
	defer p.publishMu.Unlock()
	before := p.nc.LastError()
	if err := pub(); err != nil {
		return err
	}
	if err := p.nc.FlushWithContext(ctx); err != nil {
		return fmt.Errorf("round trip after the publish: %w", err)
	}
	if after := p.nc.LastError(); after != nil && after != before && refused(after, subject) {
		return errForbidden
	}
	return nil
}

// refused reports whether err is the server refusing a publish to subject.
func refused(err error, subject string) bool {
	return errors.Is(err, nats.ErrPermissionViolation) &&
		strings.Contains(strings.ToLower(err.Error()), "publish to "+strings.ToLower(strconv.Quote(subject)))
}

// failed classifies a failed publish: refused and too large are final,
// the rest is retried.
func (p *subjectPublisher) failed(h events.Hook, subject string, err error) delivery {
	switch {
	case errors.Is(err, errForbidden):
		return delivery{err: fmt.Errorf("hook %s: the dispatcher's NATS user may not publish to %s: NATS refused it (permissions violation); allow the subject in the user's publish permissions, or give the hook another subject", h.ID, subject)}
	case errors.Is(err, nats.ErrMaxPayload):
		return delivery{err: fmt.Errorf("hook %s: publish to %s: %w", h.ID, subject, err)}
	}
	return delivery{retry: true, err: fmt.Errorf("hook %s: publish to %s: %w", h.ID, subject, err)}
}

// stream returns the stream that captures subject, "" for none, asking
// JetStream at most every streamLookupTTL.
func (p *subjectPublisher) stream(ctx context.Context, subject string) (string, error) {
	now := p.now()
	p.mu.Lock()
	l, ok := p.streams[subject]
	p.mu.Unlock()
	if ok && now.Sub(l.at) < streamLookupTTL {
		return l.stream, nil
	}
	name, err := p.js.StreamNameBySubject(ctx, subject)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		name, err = "", nil
	}
	if err != nil {
		return "", err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	// Drop stale answers, so subjects no hook uses any more go.
	for s, l := range p.streams {
		if now.Sub(l.at) >= streamLookupTTL {
			delete(p.streams, s)
		}
	}
	p.streams[subject] = streamLookup{stream: name, at: now}
	return name, nil
}

// forget drops the cached stream of subject.
func (p *subjectPublisher) forget(subject string) {
	p.mu.Lock()
	delete(p.streams, subject)
	p.mu.Unlock()
}
