package dispatcher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/time/rate"

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
// creation, and beside it replay-hook-<id> filtered to
// hookbus.replay.hook-<id> (its replayed dead letters), each kept and read
// by a durable.Keeper while the hook is not disabled: a disabled hook's reader stops and its consumer stays, so its
// events wait; a deleted hook's reader stops and its consumer and
// delivery state are deleted. Replicas read the same consumers and share
// the deliveries.
type hookRunners struct {
	s       *Service
	actions map[events.HookType]hookAction
	state   jetstream.KeyValue // bucket hookbus_hook_state

	mu   sync.Mutex
	live map[string]*hookRunner // hook id -> its reader and state
	wg   sync.WaitGroup
}

// hookRunner is what runs for one stored hook.
type hookRunner struct {
	// hook is the hook as last stored, read at each delivery: a rotated
	// secret reaches the running reader without a new consumer.
	hook *atomic.Pointer[events.Hook]
	// stop stops the reader; nil while the hook is disabled.
	stop context.CancelFunc
	// state records the attempts; stopState stops its flusher.
	state     *hookState
	stopState context.CancelFunc
	// limit spaces the attempts (Settings.Rate); nil: unlimited.
	limit *rate.Limiter
	// floor and replayFloor are the ack floors of its consumers, kept
	// across readers: a consumer lost while the hook was disabled is made
	// again after what was delivered, not from the hook's creation.
	floor, replayFloor atomic.Uint64
}

// run watches bucket hookbus_hooks until ctx ends, starting and stopping
// readers as hooks come and go.
func (r *hookRunners) run(ctx context.Context, kv jetstream.KeyValue) error {
	defer r.wait()
	var w jetstream.KeyWatcher
	// A NATS node restarting is waited out, not a reason to stop.
	err := durable.Start(ctx, r.s.log, "watch "+events.BucketHooks, func(ctx context.Context) (err error) {
		w, err = kv.WatchAll(ctx)
		return err
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("watch %s: %w", events.BucketHooks, err)
	}
	defer func() { _ = w.Stop() }()
	r.wg.Go(func() { r.collect(ctx, kv) })
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

// collect deletes, every ConsumerCheck until ctx ends, the consumers
// (hook-<id>, replay-hook-<id>) and delivery state of hooks that are no
// longer stored: what a deletion that failed when the hook went (a NATS
// node restarting, say) left behind. A hook counts as gone only when the
// bucket says so, not when this replica's watch has not seen it yet.
func (r *hookRunners) collect(ctx context.Context, kv jetstream.KeyValue) {
	tick := time.NewTicker(r.s.cfg.ConsumerCheck)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if err := r.collectOnce(ctx, kv); err != nil && ctx.Err() == nil {
			r.s.log.Warn("collect the consumers of deleted hooks, will retry", "err", err)
		}
	}
}

// collectOnce is one pass of collect.
func (r *hookRunners) collectOnce(ctx context.Context, kv jetstream.KeyValue) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	stream, err := r.s.js.Stream(ctx, events.StreamEvents)
	if err != nil {
		return err
	}
	gone := map[string][]string{}       // hook id -> its consumers found
	lister := stream.ListConsumers(ctx) // the dispatcher's user may list, not ask for names
	for info := range lister.Info() {
		name := info.Name
		id, ok := events.HookOfSubscriber(strings.TrimPrefix(name, events.ReplayConsumer("")))
		if !ok {
			continue
		}
		r.mu.Lock()
		_, live := r.live[id]
		r.mu.Unlock()
		if !live {
			gone[id] = append(gone[id], name)
		}
	}
	if err := lister.Err(); err != nil {
		return err
	}
	var errs []error
	for id, consumers := range gone {
		_, err := kv.Get(ctx, id)
		if !errors.Is(err, jetstream.ErrKeyNotFound) {
			errs = append(errs, err) // stored (nil: not seen here yet), or unknown
			continue
		}
		for _, name := range consumers {
			if err := r.s.js.DeleteConsumer(ctx, events.StreamEvents, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
				errs = append(errs, err)
				continue
			}
			r.s.log.Info("consumer of a deleted hook collected", "hook", id, "consumer", name)
		}
		if err := r.state.Delete(ctx, id); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// apply starts the reader of a new hook, hands a changed hook (a rotated
// secret) to its running reader, stops or starts a known hook's reader as
// it is disabled or enabled, or stops a deleted hook's and deletes its
// consumer and state.
func (r *hookRunners) apply(ctx context.Context, entry jetstream.KeyValueEntry) {
	id := entry.Key()
	r.mu.Lock()
	defer r.mu.Unlock()
	if entry.Operation() != jetstream.KeyValuePut {
		if cur, ok := r.live[id]; ok {
			cur.stopReader()
			cur.state.drop()
			cur.stopState()
			delete(r.live, id)
		}
		for _, name := range []string{events.HookConsumer(id), events.HookReplayConsumer(id)} {
			err := r.s.js.DeleteConsumer(ctx, events.StreamEvents, name)
			if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
				r.s.log.Warn("delete a consumer of a deleted hook", "hook", id, "consumer", name, "err", err)
			}
		}
		if err := r.state.Delete(ctx, id); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			r.s.log.Warn("delete the delivery state of a deleted hook", "hook", id, "err", err)
		}
		return
	}
	var h events.Hook
	if err := json.Unmarshal(entry.Value(), &h); err != nil {
		r.s.log.Error("stored hook unreadable: not run", "hook", id, "err", err)
		return
	}
	cur, ok := r.live[id]
	if !ok {
		if _, err := events.HookEventSubject(h.Node); err != nil {
			r.s.log.Error("stored hook with an invalid node: not run", "hook", id, "err", err)
			return
		}
		sctx, stopState := context.WithCancel(ctx)
		cur = &hookRunner{hook: &atomic.Pointer[events.Hook]{}, state: newHookState(r.state, h, r.s.cfg.HookDisableAfter, r.s.requestDisable, r.s.log), stopState: stopState}
		if h.Settings.Rate > 0 {
			cur.limit = rate.NewLimiter(rate.Limit(h.Settings.Rate), 1)
		}
		r.live[id] = cur
		r.wg.Go(func() { cur.state.run(sctx) })
	} else if old := cur.hook.Load(); old.Node != h.Node {
		// The registry changes a hook's secrets and status, never its
		// node: the consumer stays as it is, at its position.
		r.s.log.Error("stored hook's node changed: its consumer keeps the old one", "hook", id, "node", old.Node, "stored_node", h.Node)
	}
	cur.hook.Store(&h)
	cur.state.setHook(h)
	switch {
	case h.Status == events.HookDisabled && cur.stop != nil:
		cur.stopReader()
		r.s.log.Info("hook disabled: its events wait", "hook", id, "reason", h.DisabledReason)
	case h.Status != events.HookDisabled && cur.stop == nil:
		r.startReader(ctx, cur)
	}
}

// startReader keeps and reads the hook's consumer until stopReader.
func (r *hookRunners) startReader(ctx context.Context, cur *hookRunner) {
	h := *cur.hook.Load()
	subject, _ := events.HookEventSubject(h.Node) // checked in apply
	rctx, stop := context.WithCancel(ctx)
	cur.stop = stop
	created := h.Created
	// No InactiveThreshold, temporary hooks included: a consumer the server
	// deleted while its hook is disabled (or every dispatcher down) would
	// be made again from the hook's creation, delivering again what was
	// delivered. A deleted hook's consumers are deleted when the bucket
	// watch sees it go, at a restart too (the watch gives delete markers).
	keeper := &durable.Keeper{
		Stream: events.StreamEvents,
		Config: jetstream.ConsumerConfig{
			Durable:       events.HookConsumer(h.ID),
			Description:   fmt.Sprintf("Deliveries of hook %s (%s on %s).", h.ID, h.Type, h.Node),
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
		Read: func(ctx context.Context, cons jetstream.Consumer) error {
			return r.read(ctx, hookRun{hook: cur.hook, state: cur.state, limit: cur.limit}, cons, pullExpiry)
		},
		Check: r.s.cfg.ConsumerCheck,
		Log:   r.s.log.With("hook", h.ID),
		Floor: &cur.floor,
	}
	// The hook's replayed dead letters (hookbus.replay.hook-<id>, stored by
	// hookbus dlq replay) reach it alone, through the same deliver: its
	// filters decide again, its attempts and rate limit are shared, and a
	// replay failing again is dead-lettered again for hook-<id>. Replays
	// are rare: a long pull.
	replaySubject, _ := events.ReplaySubject(events.HookConsumer(h.ID)) // a valid hook id
	replays := &durable.Keeper{
		Stream: events.StreamEvents,
		Config: jetstream.ConsumerConfig{
			Durable:       events.HookReplayConsumer(h.ID),
			Description:   fmt.Sprintf("Replayed dead letters of hook %s.", h.ID),
			FilterSubject: replaySubject,
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       r.s.cfg.AckWait,
			MaxAckPending: 1,
			MaxDeliver:    -1,
			DeliverPolicy: jetstream.DeliverAllPolicy,
		},
		Read: func(ctx context.Context, cons jetstream.Consumer) error {
			return r.read(ctx, hookRun{hook: cur.hook, state: cur.state, limit: cur.limit}, cons, replayPullExpiry)
		},
		Check: r.s.cfg.ConsumerCheck,
		Log:   r.s.log.With("hook", h.ID, "consumer", events.HookReplayConsumer(h.ID)),
		Floor: &cur.replayFloor,
	}
	r.wg.Go(func() { _ = keeper.Run(rctx, r.s.js) })
	r.wg.Go(func() { _ = replays.Run(rctx, r.s.js) })
}

// replayPullExpiry is how long a pull of a hook's replays waits (the
// nats.go default, as workers read their replays): replays are rare.
const replayPullExpiry = 30 * time.Second

// stopReader stops the hook's reader, if it runs.
func (cur *hookRunner) stopReader() {
	if cur.stop != nil {
		cur.stop()
		cur.stop = nil
	}
}

// wait stops every reader and state flusher and waits for them.
func (r *hookRunners) wait() {
	r.mu.Lock()
	for id, cur := range r.live {
		cur.stopReader()
		cur.stopState()
		delete(r.live, id)
	}
	r.mu.Unlock()
	r.wg.Wait()
}

// hookRun is what a reader delivers with: the hook as last stored (read
// at each delivery), its state and its rate limit.
type hookRun struct {
	hook  *atomic.Pointer[events.Hook]
	state *hookState
	limit *rate.Limiter
}

// read delivers the hook's events, one at a time, until ctx ends or the
// consumer fails.
func (r *hookRunners) read(ctx context.Context, run hookRun, cons jetstream.Consumer, expiry time.Duration) error {
	id := run.hook.Load().ID
	iter, err := cons.Messages(jetstream.PullMaxMessages(1), jetstream.PullExpiry(expiry))
	if err != nil {
		return fmt.Errorf("consume %s: %w", cons.CachedInfo().Name, err)
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
			r.s.log.Warn("next event of a hook", "hook", id, "err", err)
			continue
		}
		r.deliver(ctx, run, msg)
	}
}

// deliver settles one event of the hook, each attempt waiting for the
// hook's rate limit and recorded in its state. This is the one place that
// decides: filtered out or delivered, acknowledged; an invalid event, a final failure
// (a webhook's 4xx or refused address, a subject the dispatcher may not
// publish to, an exec program refused) or the last of the hook's attempts,
// dead-lettered for subscriber hook-<id>, then acknowledged; any other
// failure tried again after the dispatcher's backoff, or the target's
// Retry-After when longer.
func (r *hookRunners) deliver(ctx context.Context, run hookRun, msg jetstream.Msg) {
	s, h := r.s, *run.hook.Load()
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
	if run.limit != nil {
		if err := run.limit.Wait(ctx); err != nil {
			close(done)
			_ = msg.NakWithDelay(pullExpiry)
			return
		}
	}
	start := time.Now()
	d := r.send(ctx, h, e)
	close(done)
	if ctx.Err() != nil {
		_ = msg.NakWithDelay(pullExpiry)
		return
	}
	run.state.record(ctx, d.attempt(start, time.Since(start)))
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
