package dispatcher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/internal/durable"
	"github.com/hookbus/hookbus/pkg/events"
)

// maxRetryAfter caps how long a target's Retry-After may hold an event.
const maxRetryAfter = time.Hour

// hookAction sends one event to a hook's target once and says what came of
// it; deliver settles the event by that outcome. The webhook sender, the
// subject publisher and the exec runner are the actions.
type hookAction interface {
	send(ctx context.Context, h events.Hook, e *event.Event) delivery
}

// hookRunners keeps one durable consumer hook-<id> per stored hook, on
// HOOKBUS_EVENTS filtered to hookbus.event.<node> from the hook's
// creation, each kept and read by a durable.Keeper: a deleted hook's
// reader stops and its consumer is deleted. Replicas read the same
// consumers and share the deliveries.
type hookRunners struct {
	s       *Service
	actions map[events.HookType]hookAction

	mu   sync.Mutex
	live map[string]hookRunner // hook id -> its reader
	wg   sync.WaitGroup
}

type hookRunner struct {
	hook events.Hook
	stop context.CancelFunc
}

// run watches bucket hookbus_hooks until ctx ends, starting and stopping
// readers as hooks come and go.
func (r *hookRunners) run(ctx context.Context, kv jetstream.KeyValue) error {
	defer r.wait()
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watch %s: %w", events.BucketHooks, err)
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return nil
		case entry, ok := <-w.Updates():
			if !ok {
				return fmt.Errorf("watch %s: stopped", events.BucketHooks)
			}
			if entry == nil {
				continue // every stored hook seen
			}
			r.apply(ctx, entry)
		}
	}
}

// apply starts the reader of a new hook, or stops a deleted hook's and
// deletes its consumer.
func (r *hookRunners) apply(ctx context.Context, entry jetstream.KeyValueEntry) {
	id := entry.Key()
	r.mu.Lock()
	defer r.mu.Unlock()
	if entry.Operation() != jetstream.KeyValuePut {
		if cur, ok := r.live[id]; ok {
			cur.stop()
			delete(r.live, id)
		}
		err := r.s.js.DeleteConsumer(ctx, events.StreamEvents, events.HookConsumer(id))
		if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			r.s.log.Warn("delete the consumer of a deleted hook", "hook", id, "err", err)
		}
		return
	}
	var h events.Hook
	if err := json.Unmarshal(entry.Value(), &h); err != nil {
		r.s.log.Error("stored hook unreadable: not run", "hook", id, "err", err)
		return
	}
	if _, ok := r.live[id]; ok {
		return // a hook's declaration does not change once created
	}
	subject, err := events.HookEventSubject(h.Node)
	if err != nil {
		r.s.log.Error("stored hook with an invalid node: not run", "hook", id, "err", err)
		return
	}
	rctx, stop := context.WithCancel(ctx)
	r.live[id] = hookRunner{hook: h, stop: stop}
	created := h.Created
	keeper := &durable.Keeper{
		Stream: events.StreamEvents,
		Config: jetstream.ConsumerConfig{
			Durable:       events.HookConsumer(id),
			Description:   fmt.Sprintf("Deliveries of hook %s (%s on %s).", id, h.Type, h.Node),
			FilterSubject: subject,
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       r.s.cfg.AckWait,
			MaxAckPending: 1,
			// The dispatcher bounds the attempts itself and dead-letters
			// the event past them.
			MaxDeliver:    -1,
			DeliverPolicy: jetstream.DeliverByStartTimePolicy,
			OptStartTime:  &created,
		},
		Read:  func(ctx context.Context, cons jetstream.Consumer) error { return r.read(ctx, h, cons) },
		Check: r.s.cfg.ConsumerCheck,
		Log:   r.s.log.With("hook", id),
	}
	r.wg.Go(func() { _ = keeper.Run(rctx, r.s.js) })
}

// wait stops every reader and waits for them.
func (r *hookRunners) wait() {
	r.mu.Lock()
	for id, cur := range r.live {
		cur.stop()
		delete(r.live, id)
	}
	r.mu.Unlock()
	r.wg.Wait()
}

// read delivers the hook's events, one at a time, until ctx ends or the
// consumer fails.
func (r *hookRunners) read(ctx context.Context, h events.Hook, cons jetstream.Consumer) error {
	iter, err := cons.Messages(jetstream.PullMaxMessages(1), jetstream.PullExpiry(pullExpiry))
	if err != nil {
		return fmt.Errorf("consume %s: %w", events.HookConsumer(h.ID), err)
	}
	stop := context.AfterFunc(ctx, iter.Drain)
	defer stop()
	for {
		msg, err := iter.Next()
		switch {
		case errors.Is(err, jetstream.ErrMsgIteratorClosed):
			return ctx.Err()
		case errors.Is(err, jetstream.ErrConsumerDeleted), errors.Is(err, jetstream.ErrConsumerNotFound):
			iter.Stop()
			return err
		case err != nil:
			r.s.log.Warn("next event of a hook", "hook", h.ID, "err", err)
			continue
		}
		r.deliver(ctx, h, msg)
	}
}

// deliver settles one event of hook h. This is the one place that
// decides: filtered out or delivered, acknowledged; an invalid event, a final failure
// (a webhook's 4xx or refused address, a subject the dispatcher may not
// publish to, an exec program refused) or the last of the hook's attempts,
// dead-lettered for subscriber hook-<id>, then acknowledged; any other
// failure tried again after the dispatcher's backoff, or the target's
// Retry-After when longer.
func (r *hookRunners) deliver(ctx context.Context, h events.Hook, msg jetstream.Msg) {
	s := r.s
	meta, err := msg.Metadata()
	if err != nil {
		_ = msg.Term()
		return
	}
	subscriber := events.HookConsumer(h.ID)
	log := s.log.With("hook", h.ID, "subject", msg.Subject(), "attempt", meta.NumDelivered)
	e, err := s.codec.Decode(msg.Headers(), msg.Data())
	if err != nil {
		s.settleHook(ctx, subscriber, msg, meta, err.Error())
		return
	}
	if !h.Matches(e) {
		// Not this hook's: its filters narrow the node.
		if err := msg.Ack(); err != nil {
			log.Warn("ack filtered event", "err", err)
		}
		return
	}
	done := s.keepAlive(ctx, msg)
	d := r.send(ctx, h, e)
	close(done)
	if ctx.Err() != nil {
		_ = msg.NakWithDelay(pullExpiry)
		return
	}
	if d.err == nil {
		if err := msg.Ack(); err != nil {
			log.Warn("ack delivered event", "err", err)
		}
		return
	}
	maxAttempts := s.cfg.MaxAttempts
	if h.Settings.MaxAttempts > 0 {
		maxAttempts = h.Settings.MaxAttempts
	}
	if !d.retry || meta.NumDelivered >= uint64(maxAttempts) {
		reason := fmt.Sprintf("hook %s: not delivered (attempt %d of %d): %v", h.ID, meta.NumDelivered, maxAttempts, d.err)
		log.Warn("hook delivery failed: dead-lettered", "err", d.err)
		s.settleHook(ctx, subscriber, msg, meta, reason)
		return
	}
	delay := durable.RetryDelay(s.cfg.RetryDelay, s.cfg.MaxRetryDelay, meta.NumDelivered)
	delay = max(delay, min(d.retryAfter, maxRetryAfter))
	log.Debug("hook delivery failed, will retry", "err", d.err, "delay", delay)
	_ = msg.NakWithDelay(delay)
}

// send runs the action of h's type on e.
func (r *hookRunners) send(ctx context.Context, h events.Hook, e *event.Event) delivery {
	a, ok := r.actions[h.Type]
	if !ok {
		return delivery{err: fmt.Errorf("hook %s: type %q is not one this dispatcher runs", h.ID, h.Type)}
	}
	return a.send(ctx, h, e)
}

// settleHook dead-letters msg for subscriber with reason, then
// acknowledges it; when the dead letter cannot be stored the event comes
// back later.
func (s *Service) settleHook(ctx context.Context, subscriber string, msg jetstream.Msg, meta *jetstream.MsgMetadata, reason string) {
	if err := s.dlq().Settle(ctx, subscriber, msg, meta, reason); err != nil {
		s.retryLater(msg, meta, "dead letter not stored", err)
	}
}
