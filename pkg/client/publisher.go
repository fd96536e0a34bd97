package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/pkg/events"
)

// defaultWindow is how many events a Publisher has in flight at most,
// unless WithWindow says otherwise.
const defaultWindow = 256

// publishAttempts is how many times a Publisher sends an event whose
// acknowledgement does not come: the first send and three more.
const publishAttempts = 4

// ErrPublisherClosed is returned by Publisher.Publish after Close.
var ErrPublisherClosed = errors.New("client: publisher closed")

// Publisher publishes events without waiting for each acknowledgement:
// up to a window of them are in flight, and each Publish returns a
// PendingAck that settles stored or failed (sent up to 4 times, then
// ErrNotStored). It is safe for concurrent use; Close it when done.
type Publisher struct {
	c          *Client
	js         jetstream.JetStream
	slots      chan struct{} // one token per event in flight
	onAck      func(event.Event, PublishAck, error)
	ackTimeout time.Duration

	mu        sync.Mutex
	closed    bool                      // Publish takes no more events
	stopped   bool                      // nothing is sent any more: events still unsettled fail
	inflight  map[*nats.Msg]*PendingAck // sent, waiting for JetStream's answer
	unsettled map[*PendingAck]struct{}  // published, not settled (sent or backing off)

	published, duplicates, failed atomic.Int64
}

// NewPublisher returns a Publisher on c's connection, size limit and retry
// wait; its options are WithWindow, OnAck and WithAckTimeout.
func (c *Client) NewPublisher(opts ...Option) (*Publisher, error) {
	o := options{window: defaultWindow, ackTimeout: 5 * time.Second}
	if err := o.apply(inPublisher, opts); err != nil {
		return nil, err
	}
	p := &Publisher{
		c:          c,
		slots:      make(chan struct{}, o.window),
		onAck:      o.onAck,
		ackTimeout: o.ackTimeout,
		inflight:   make(map[*nats.Msg]*PendingAck),
		unsettled:  make(map[*PendingAck]struct{}),
	}
	js, err := jetstream.New(c.nc,
		// The window is p.slots; the library's own bound is a safety net
		// it never reaches (its stall would be an error, not a wait).
		jetstream.WithPublishAsyncMaxPending(cap(p.slots)+1),
		jetstream.WithPublishAsyncTimeout(p.ackTimeout),
		jetstream.WithPublishAsyncAckHandler(p.acked),
		jetstream.WithPublishAsyncErrHandler(p.lost),
	)
	if err != nil {
		return nil, fmt.Errorf("client: jetstream: %w", err)
	}
	p.js = js
	return p, nil
}

// PendingAck is the outcome of one Publisher.Publish, known once Done is
// closed.
type PendingAck struct {
	e        event.Event
	msg      *nats.Msg
	attempts int        // sends so far; changed only by the one send in flight
	backoff  backoff    // the pause before the next send
	ack      PublishAck // set before settled
	err      error

	mu      sync.Mutex
	settled bool
	done    chan struct{} // made by the first Done before the event settles: most are never asked for
}

// closedDone is Done of an event that settled before anyone asked.
var closedDone = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

// Done is closed when the event is stored or the Publisher gave up on it.
func (a *PendingAck) Done() <-chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.done == nil {
		if a.settled {
			return closedDone
		}
		a.done = make(chan struct{})
	}
	return a.done
}

// Wait waits until the event settles or ctx ends, and returns its
// acknowledgement or the error it failed with (an error matching
// ErrNotStored). When ctx ends first it returns ctx's error; the event
// still settles on its own.
func (a *PendingAck) Wait(ctx context.Context) (PublishAck, error) {
	select {
	case <-a.Done():
		return a.ack, a.err
	case <-ctx.Done():
		return PublishAck{}, ctx.Err()
	}
}

// Publish validates and encodes e as Client.Publish does (an invalid event
// returns an error matching events.ErrInvalid, nothing is sent and no
// PendingAck is made), waits while the window is full or until ctx ends,
// sends e and returns its PendingAck without waiting for JetStream. ctx
// bounds only the wait for room in the window. Publish after Close returns
// ErrPublisherClosed.
func (p *Publisher) Publish(ctx context.Context, e event.Event, opts ...Option) (*PendingAck, error) {
	if p.isClosed() {
		return nil, ErrPublisherClosed
	}
	msg, err := p.c.encode(&e, opts)
	if err != nil {
		return nil, err
	}
	expectStream(msg, events.StreamEvents)

	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("publish %s %s: waiting for room in the window: %w", e.Type(), e.ID(), ctx.Err())
	}
	a := &PendingAck{e: e, msg: msg, backoff: newBackoff(50*time.Millisecond, p.c.retry)}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		<-p.slots
		return nil, ErrPublisherClosed
	}
	p.unsettled[a] = struct{}{}
	p.mu.Unlock()
	p.send(a)
	return a, nil
}

// send sends a once more. Its answer comes to acked or lost.
func (p *Publisher) send(a *PendingAck) {
	a.attempts++
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		p.failed1(a, ErrPublisherClosed)
		return
	}
	p.inflight[a.msg] = a
	p.mu.Unlock()
	if _, err := p.js.PublishMsgAsync(a.msg); err != nil {
		// Not sent (the connection is closed, ...), unless the library
		// answered through lost first: whoever takes a out of inflight
		// handles it.
		if p.take(a.msg) != nil {
			p.failed1(a, err)
		}
	}
}

// take removes and returns the event in flight as msg, or nil if its
// answer was handled already.
func (p *Publisher) take(msg *nats.Msg) *PendingAck {
	p.mu.Lock()
	defer p.mu.Unlock()
	a := p.inflight[msg]
	delete(p.inflight, msg)
	return a
}

// acked is the library's acknowledgement handler.
func (p *Publisher) acked(_ jetstream.JetStream, msg *nats.Msg, ack *jetstream.PubAck) {
	a := p.take(msg)
	if a == nil {
		return
	}
	p.settle(a, PublishAck{Stream: ack.Stream, Sequence: ack.Sequence, Duplicate: ack.Duplicate}, nil)
}

// lost is the library's error handler. The library may call it with its
// own lock held (ack timeouts), so the handling is never done here.
func (p *Publisher) lost(_ jetstream.JetStream, msg *nats.Msg, err error) {
	a := p.take(msg)
	if a == nil {
		return
	}
	if p.isStopped() {
		go p.failed1(a, fmt.Errorf("%w: %w", ErrPublisherClosed, err))
		return
	}
	if !retryableAsync(err) || a.attempts >= publishAttempts {
		go p.failed1(a, err)
		return
	}
	time.AfterFunc(a.backoff.next(), func() { p.send(a) })
}

// failed1 settles a with the error of its last send.
func (p *Publisher) failed1(a *PendingAck, err error) {
	if retryableAsync(err) {
		err = fmt.Errorf("%w after %d attempt(s): %w", ErrNotStored, a.attempts, err)
	} else {
		err = fmt.Errorf("%w: %w", ErrNotStored, err)
	}
	p.settle(a, PublishAck{}, fmt.Errorf("publish %s %s: %w", a.e.Type(), a.e.ID(), err))
}

func (p *Publisher) settle(a *PendingAck, ack PublishAck, err error) {
	a.ack, a.err = ack, err
	switch {
	case err != nil:
		p.failed.Add(1)
	case ack.Duplicate:
		p.duplicates.Add(1)
		p.published.Add(1)
	default:
		p.published.Add(1)
	}
	p.mu.Lock()
	delete(p.unsettled, a)
	p.mu.Unlock()
	<-p.slots
	if p.onAck != nil {
		p.onAck(a.e, ack, err)
	}
	a.mu.Lock()
	a.settled = true
	if a.done != nil {
		close(a.done)
	}
	a.mu.Unlock()
}

// retryableAsync reports whether an async publish error may pass on its
// own: those of Client.Publish and an acknowledgement that did not come.
func retryableAsync(err error) bool {
	return retryable(err) ||
		errors.Is(err, jetstream.ErrAsyncPublishTimeout) ||
		errors.Is(err, jetstream.ErrTooManyStalledMsgs)
}

// Flush waits until every event published before it was called has
// settled, or until ctx ends (then it returns ctx's error).
func (p *Publisher) Flush(ctx context.Context) error {
	p.mu.Lock()
	waiting := make([]*PendingAck, 0, len(p.unsettled))
	for a := range p.unsettled {
		waiting = append(waiting, a)
	}
	p.mu.Unlock()
	for _, a := range waiting {
		select {
		case <-a.Done():
		case <-ctx.Done():
			return fmt.Errorf("flush: %d event(s) not settled: %w", p.Pending(), ctx.Err())
		}
	}
	return nil
}

// Close stops taking events (Publish returns ErrPublisherClosed from now
// on), waits as Flush until the events published before settle, and
// releases the Publisher's subscription. If ctx ends first, the events
// still unsettled fail with an error matching ErrPublisherClosed (one
// stored meanwhile stays stored) and Close returns ctx's error.
func (p *Publisher) Close(ctx context.Context) error {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	err := p.Flush(ctx)
	p.mu.Lock()
	p.stopped = true
	p.mu.Unlock()
	// Fails what is still in flight through lost (not retried: stopped).
	p.js.CleanupPublisher()
	return err
}

func (p *Publisher) isStopped() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stopped
}

func (p *Publisher) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

// Pending is the number of events published and not yet settled: sent and
// waiting for their acknowledgement, or waiting to be sent again. It is
// never more than the window.
func (p *Publisher) Pending() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.unsettled)
}

// PublisherStats counts the events of a Publisher that settled.
type PublisherStats struct {
	Published  int64 // acknowledged, duplicates included
	Duplicates int64 // acknowledged as duplicates: stored before, not again
	Failed     int64 // given up on
}

// Stats returns the counts so far.
func (p *Publisher) Stats() PublisherStats {
	return PublisherStats{Published: p.published.Load(), Duplicates: p.duplicates.Load(), Failed: p.failed.Load()}
}
