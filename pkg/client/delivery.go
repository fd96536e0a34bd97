package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/internal/deadletter"
	"github.com/hookbus/hookbus/pkg/events"
)

// NotifyHandler takes one notify delivery: nil acknowledges it; an error
// has it delivered again after the plugin's backoff, and dead-lettered on
// the max_deliver-th failure or at once if Permanent. ctx ends at Serve's
// drain timeout.
type NotifyHandler func(ctx context.Context, d *Delivery) error

// Delivery is one delivery of an event to a notify plugin.
type Delivery struct {
	// Event is the published event, decoded and validated.
	Event event.Event
	// Attempt is 1 on the first delivery of the event to this plugin.
	Attempt int
	// MaxDeliver is the plugin's max_deliver: a failure on this attempt
	// dead-letters the event.
	MaxDeliver int
	// Subject is hookbus.event.<type>, or hookbus.replay.<plugin> for an
	// event resent from the dead-letter stream.
	Subject string
	// StreamSeq is the event's sequence in HOOKBUS_EVENTS.
	StreamSeq uint64

	msg jetstream.Msg
}

// InProgress tells JetStream the handler is still working; Serve already
// does so while the handler runs.
func (d *Delivery) InProgress() error { return d.msg.InProgress() }

// Permanent marks err as a failure retrying cannot fix: the event is
// dead-lettered at once with err as the reason. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err}
}

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// dlqTimeout bounds the wait for HOOKBUS_DLQ to store one dead letter.
const dlqTimeout = 30 * time.Second

// deliver takes one notify message to its end: acknowledged, delivered
// again later, or dead-lettered and then acknowledged. It is the one place
// that decides which:
//
//   - a message that is not a valid CloudEvent, or whose type is not the
//     one of its subject: dead-lettered at once;
//   - a delivery past max_deliver (a worker died during the last one):
//     dead-lettered without calling the handler;
//   - handler success: acknowledged;
//   - a Permanent error, or a failure on the max_deliver-th delivery:
//     dead-lettered with the error as the reason;
//   - any other failure: negatively acknowledged with the plugin's backoff
//     for this attempt.
//
// A dead letter is stored (JetStream acknowledged it) before the original
// is acknowledged; if it cannot be stored, the original comes back later.
// The pump keeps the message in progress while deliver runs.
func (w *worker) deliver(m jetstream.Msg, cfg jetstream.ConsumerConfig) {
	meta, err := m.Metadata()
	if err != nil { // not a JetStream delivery: nothing to acknowledge
		w.log.Error("notify message without metadata", "subject", m.Subject(), "err", err)
		return
	}
	attempt := int(meta.NumDelivered)
	s := w.settings()
	// The logger is built only on the paths that log: this runs for every
	// event.
	log := func() *slog.Logger { return w.log.With("subject", m.Subject(), "attempt", attempt) }

	e, err := w.c.codec.Decode(m.Headers(), m.Data())
	if err == nil {
		err = w.checkSubject(e.Type(), m.Subject())
	}
	if err != nil {
		log().Warn("invalid event in the stream: dead-lettering it", "err", err)
		w.deadLetter(m, meta, cfg, s, err.Error())
		return
	}
	if attempt > s.MaxDeliver {
		w.deadLetter(m, meta, cfg, s, deadletter.ExhaustedReason(w.name, uint64(attempt-1)))
		return
	}
	d := &Delivery{Event: *e, Attempt: attempt, MaxDeliver: s.MaxDeliver, Subject: m.Subject(), StreamSeq: meta.Sequence.Stream, msg: m}
	err = w.callNotify(d)
	var perm *permanentError
	switch {
	case err == nil:
		if err := m.Ack(); err != nil {
			log().Warn("ack delivery", "event_id", e.ID(), "err", err)
		}
	case errors.As(err, &perm) || attempt >= s.MaxDeliver:
		log().Warn("delivery failed for good: dead-lettering it", "event_id", e.ID(), "err", err)
		w.deadLetter(m, meta, cfg, s, reasonOf(err))
	default:
		delay := s.BackoffAfter(attempt)
		log().Debug("delivery failed, will retry", "event_id", e.ID(), "err", err, "delay", delay)
		if err := m.NakWithDelay(nakDelay(cfg, attempt, delay)); err != nil {
			log().Warn("nak delivery", "event_id", e.ID(), "err", err)
		}
	}
}

// checkSubject refuses an event whose type is not the one its subject
// carries: hookbus.event.<type>, or the plugin's event type on
// hookbus.replay.<plugin>. Otherwise a raw publisher could label an event
// of one type as another and so pass it by its real type's schema.
func (w *worker) checkSubject(typ, subject string) error {
	// The usual case, without building the subject: typ was validated by
	// Decode.
	if rest, ok := strings.CutPrefix(subject, events.SubjectRoot+".event."); ok && rest == typ {
		return nil
	}
	want, err := events.EventSubject(typ)
	if err != nil {
		return err
	}
	if subject == want {
		return nil
	}
	if replay, err := events.ReplaySubject(w.name); err == nil && subject == replay {
		event := w.event()
		if own, err := events.EventSubject(event); err == nil && own == want {
			return nil
		}
		return &events.ValidationError{Field: "type", Reason: fmt.Sprintf("%q replayed on %s: plugin %s takes events of type %q", typ, subject, w.name, event)}
	}
	return &events.ValidationError{Field: "type", Reason: fmt.Sprintf("%q published on %s: an event of type T belongs on hookbus.event.T", typ, subject)}
}

// callNotify runs the handler, turning a panic into an error.
func (w *worker) callNotify(d *Delivery) (err error) {
	defer w.recoverHandler(&err, d.Event.ID())
	w.busy.Add(1)
	defer w.busy.Add(-1)
	return w.p.Notify(w.handlerCtx, d)
}

// deadLetter stores m in HOOKBUS_DLQ with reason, then acknowledges it
// (deadletter.Writer's rule). If the dead letter is not stored, m is
// negatively acknowledged so that it comes back (and is dead-lettered
// again) after the backoff. A worker may not read HOOKBUS_DLQ, so on a
// duplicate acknowledgement it stores the dead letter again under a unique
// id, at the cost of a second copy after a crash.
func (w *worker) deadLetter(m jetstream.Msg, meta *jetstream.MsgMetadata, cfg jetstream.ConsumerConfig, s events.Settings, reason string) {
	ctx, cancel := context.WithTimeout(w.handlerCtx, dlqTimeout)
	defer cancel()
	dlq := deadletter.Writer{JS: w.c.js, MaxSize: int(w.c.nc.MaxPayload()), Log: w.log}
	if err := dlq.Settle(ctx, w.name, m, meta, reason); err != nil {
		w.log.Error("dead letter not stored: the event will come back", "subject", m.Subject(), "attempt", meta.NumDelivered, "err", err)
		_ = m.NakWithDelay(nakDelay(cfg, int(meta.NumDelivered), s.BackoffAfter(int(meta.NumDelivered))))
	}
}

// nakDelay is the delay to send with the nak of the attempt-th delivery so
// that JetStream delivers it again want later: with BackOff set,
// nats-server redelivers a nak with delay d after d - AckWait +
// BackOff[attempt-1] (the last value past the list's end), so that is
// taken off (docs/decisions.md).
func nakDelay(cfg jetstream.ConsumerConfig, attempt int, want time.Duration) time.Duration {
	if len(cfg.BackOff) == 0 || cfg.AckWait <= 0 {
		return want
	}
	bo := cfg.BackOff[min(max(attempt-1, 0), len(cfg.BackOff)-1)]
	return max(want-bo+cfg.AckWait, time.Millisecond)
}

func reasonOf(err error) string {
	if s := err.Error(); s != "" {
		return s
	}
	return "handler failed"
}

// ackWaitOf is the shortest time the consumer waits for an acknowledgement
// before it delivers again: its AckWait, or the shortest BackOff value
// (with BackOff set, JetStream waits BackOff[n-1] after the n-th delivery).
func ackWaitOf(cfg jetstream.ConsumerConfig) time.Duration {
	d := cfg.AckWait
	for _, b := range cfg.BackOff {
		if b > 0 && (d <= 0 || b < d) {
			d = b
		}
	}
	if d <= 0 {
		d = 30 * time.Second // JetStream's default
	}
	return d
}
