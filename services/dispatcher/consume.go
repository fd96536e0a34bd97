package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/pkg/events"
)

// pullExpiry bounds how long a pull request of a stopped dispatcher can
// outlive it on the server.
const pullExpiry = 5 * time.Second

// consumeEvents runs the chain of every published event that has chain
// plugins, through the durable consumer all replicas share, until ctx ends.
func (s *Service) consumeEvents(ctx context.Context) error {
	cons, err := s.js.CreateOrUpdateConsumer(ctx, events.StreamEvents, jetstream.ConsumerConfig{
		Durable:       events.DispatcherConsumer,
		Description:   "Runs the chain of every published event; results on hookbus.result.<type>.",
		FilterSubject: events.EventSubjects,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       s.cfg.AckWait,
		MaxAckPending: s.cfg.Concurrency * 4,
		// Redelivered until a result is stored: a chain run never fails as
		// a whole (failures are in the result), only storing it can.
		MaxDeliver:    -1,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return fmt.Errorf("consumer %s: %w", events.DispatcherConsumer, err)
	}
	iter, err := cons.Messages(jetstream.PullMaxMessages(s.cfg.Concurrency), jetstream.PullExpiry(pullExpiry))
	if err != nil {
		return fmt.Errorf("consume %s: %w", events.DispatcherConsumer, err)
	}
	s.running.Add(1)
	go func() {
		<-ctx.Done()
		iter.Drain()
	}()
	sem := make(chan struct{}, s.cfg.Concurrency)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		msg, err := iter.Next()
		if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
			return nil
		}
		if err != nil {
			s.log.Warn("next published event", "err", err)
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			s.handleEvent(ctx, msg)
		})
	}
}

// handleEvent settles one published event. This is the one place that
// decides: invalid events are dead-lettered and acknowledged (never
// retried, never blocking the events behind them); events without chain
// plugins are acknowledged; the others are acknowledged once their result
// is stored, and retried after RetryDelay when it could not be.
func (s *Service) handleEvent(ctx context.Context, msg jetstream.Msg) {
	meta, err := msg.Metadata()
	if err != nil {
		s.log.Error("published event without metadata", "subject", msg.Subject(), "err", err)
		_ = msg.Term()
		return
	}
	log := s.log.With("subject", msg.Subject(), "attempt", meta.NumDelivered)
	e, err := s.codec.Decode(msg.Headers(), msg.Data())
	if err == nil && !onSubject(events.EventSubject, e.Type(), msg.Subject()) {
		err = &events.ValidationError{Field: "type", Reason: fmt.Sprintf("%q published on %s: an event of type T belongs on hookbus.event.T", e.Type(), msg.Subject())}
	}
	if err != nil {
		dl, derr := events.DeadLetter(events.DispatcherConsumer, msg.Subject(), msg.Headers(), msg.Data(), meta.Sequence.Stream, meta.NumDelivered, err.Error())
		if derr == nil {
			_, derr = s.js.PublishMsg(ctx, dl)
		}
		if derr != nil {
			log.Error("dead-letter invalid event, will retry", "err", derr)
			_ = msg.NakWithDelay(s.cfg.RetryDelay)
			return
		}
		log.Warn("invalid event dead-lettered", "reason", err)
		_ = msg.Ack()
		return
	}
	chain := s.routes.chain(e.Type())
	if len(chain) == 0 {
		_ = msg.Ack()
		return
	}
	log = log.With("event_id", e.ID(), "event_type", e.Type())
	done := s.keepAlive(ctx, msg)
	res := s.runChain(ctx, e, chain, meta.NumDelivered)
	close(done)
	if ctx.Err() != nil {
		// Shutting down mid-chain: leave the event to another replica,
		// once this one's last pull requests have expired on the server
		// (one still open there would take the event and hold it until
		// the ack wait ends).
		_ = msg.NakWithDelay(pullExpiry)
		return
	}
	if err := s.storeResult(ctx, e, res); err != nil {
		log.Error("store chain result, will retry", "err", err)
		_ = msg.NakWithDelay(s.cfg.RetryDelay)
		return
	}
	if err := msg.Ack(); err != nil {
		log.Warn("ack published event", "err", err)
	}
}

// keepAlive tells JetStream the event is still being worked on, every half
// ack wait, until done is closed.
func (s *Service) keepAlive(ctx context.Context, msg jetstream.Msg) chan struct{} {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(s.cfg.AckWait / 2)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				_ = msg.InProgress()
			}
		}
	}()
	return done
}

// storeResult publishes the result of e's chain on hookbus.result.<type>,
// as a CloudEvent whose id is derived from e's source and id, so a chain
// run again after a crash stores its result once.
func (s *Service) storeResult(ctx context.Context, e *event.Event, res events.ChainResult) error {
	subject, err := events.ResultSubject(e.Type())
	if err != nil {
		return err
	}
	r := event.New()
	r.SetID(events.MsgID(e.Source(), e.ID()))
	r.SetSource(events.ResultSource)
	r.SetType(events.ResultType)
	r.SetSubject(e.Type())
	r.SetTime(time.Now())
	if err := r.SetData(event.ApplicationJSON, res); err != nil {
		return err
	}
	msg, err := (events.Codec{MaxSize: 2 * s.cfg.MaxEventSize}).Encode(subject, &r)
	if err != nil {
		return err
	}
	_, err = s.js.PublishMsg(ctx, msg)
	return err
}
