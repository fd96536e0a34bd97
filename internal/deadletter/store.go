package deadletter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/internal/durable"
	"github.com/hookbus/hookbus/pkg/events"
)

// attempts is how many times Writer publishes a dead letter before it
// gives up; firstPause is the pause after the first failure, doubled after
// each one; attemptTimeout bounds one attempt (a stream that does not
// answer).
const (
	attempts       = 4
	firstPause     = 100 * time.Millisecond
	attemptTimeout = 5 * time.Second
)

// checkTimeout bounds the read of HOOKBUS_DLQ that checks a duplicate
// acknowledgement.
const checkTimeout = 2 * time.Second

// ErrNotStored is matched by the error of a dead letter that was not
// stored.
var ErrNotStored = errors.New("dead letter not stored")

// Writer writes dead letters to HOOKBUS_DLQ by the one rule of every
// writer (the SDK's workers, the dispatcher's consumer and its advisory
// backstop): each is published with HOOKBUS_DLQ as the expected stream, up
// to 4 times while the stream does not answer, checked on a duplicate
// acknowledgement (StoreOnce), and stored before the original is
// acknowledged (Settle).
type Writer struct {
	JS jetstream.JetStream
	// Read says whether the writer may read HOOKBUS_DLQ to check a
	// duplicate acknowledgement (a worker may not: then the dead letter is
	// stored again under a unique id).
	Read bool
	// MaxSize is the largest dead letter on the wire, the connection's
	// MaxPayload (0: no limit); a larger one is by reference (New).
	MaxSize int
	// Log gets the ids taken by others and the failed publishes that are
	// tried again (nil: discarded).
	Log *slog.Logger

	retried func(attempt int, err error) // tests: after each failed attempt
}

// Original is the message of HOOKBUS_EVENTS a dead letter is written for.
type Original struct {
	Subject    string
	Header     nats.Header
	Data       []byte
	Seq        uint64 // its stream sequence
	Deliveries uint64 // how many times it was delivered
}

// OriginalOf is delivery m, whose metadata is meta.
func OriginalOf(m jetstream.Msg, meta *jetstream.MsgMetadata) Original {
	return Original{Subject: m.Subject(), Header: m.Headers(), Data: m.Data(), Seq: meta.Sequence.Stream, Deliveries: meta.NumDelivered}
}

// Write stores the dead letter (New) of o for subscriber with reason. An
// error wraps ErrNotStored.
func (w Writer) Write(ctx context.Context, subscriber string, o Original, reason string) error {
	dl, err := New(subscriber, o.Subject, o.Header, o.Data, o.Seq, o.Deliveries, reason, w.MaxSize)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrNotStored, err)
	}
	return w.Store(ctx, dl)
}

// Settle writes the dead letter of delivery m (meta its metadata) for
// subscriber with reason, then acknowledges m. When the dead letter is not
// stored, m is not acknowledged and the error (wrapping ErrNotStored) says
// why: the caller negatively acknowledges m so that it comes back.
func (w Writer) Settle(ctx context.Context, subscriber string, m jetstream.Msg, meta *jetstream.MsgMetadata, reason string) error {
	if err := w.Write(ctx, subscriber, OriginalOf(m, meta), reason); err != nil {
		return err
	}
	if err := m.Ack(); err != nil {
		// Stored; should m come back, its dead letter is stored once
		// (MsgID).
		w.log().Warn("ack dead-lettered event", "subject", m.Subject(), "err", err)
	}
	return nil
}

// Store stores dead letter dl, built by New, in HOOKBUS_DLQ (the rule of
// Writer). An error wraps ErrNotStored.
func (w Writer) Store(ctx context.Context, dl *nats.Msg) error {
	publish := func(ctx context.Context, m *nats.Msg) (*jetstream.PubAck, error) {
		return w.publish(ctx, m)
	}
	var get func(context.Context, uint64) (*jetstream.RawStreamMsg, error)
	if w.Read {
		get = func(ctx context.Context, seq uint64) (*jetstream.RawStreamMsg, error) {
			ctx, cancel := context.WithTimeout(ctx, checkTimeout)
			defer cancel()
			stream, err := w.JS.Stream(ctx, events.StreamDLQ)
			if err != nil {
				return nil, err
			}
			return stream.GetMsg(ctx, seq)
		}
	}
	_, conflict, err := StoreOnce(ctx, events.StreamDLQ, dl, publish, get)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrNotStored, dl.Subject, err)
	}
	if conflict != nil {
		w.log().Warn("dead letter id already taken: stored under a unique id", "subject", dl.Subject, "err", conflict)
	}
	return nil
}

// publish publishes m to HOOKBUS_DLQ (expected stream), again after a
// pause while the stream does not answer (durable.Transient: a refusal, such
// as another stream taking the subject, will not change), at most attempts
// times.
func (w Writer) publish(ctx context.Context, m *nats.Msg) (*jetstream.PubAck, error) {
	pause := firstPause
	for attempt := 1; ; attempt++ {
		// One request per attempt: this loop is the only retry.
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		ack, err := w.JS.PublishMsg(actx, m, jetstream.WithExpectStream(events.StreamDLQ), jetstream.WithRetryAttempts(0))
		cancel()
		if err == nil || attempt == attempts || !durable.Transient(err) || ctx.Err() != nil {
			return ack, err
		}
		w.log().Warn("publish dead letter, will retry", "subject", m.Subject, "attempt", attempt, "err", err)
		if w.retried != nil {
			w.retried(attempt, err)
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(pause):
		}
		pause *= 2
	}
}

func (w Writer) log() *slog.Logger {
	if w.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return w.Log
}
