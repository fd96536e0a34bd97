// Package durable keeps a service's durable JetStream consumer in place and
// a reader on it: the consumer is created (or updated) at start, watched,
// and created again when it disappears (deleted by hand, lost with a
// stream), resuming after the last position the service saw acknowledged,
// so a deleted consumer neither stops the service for good nor runs old
// events again.
package durable

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Reader reads the consumer until ctx ends or the consumer fails it (it was
// deleted, ...). Its error is logged; a nil error after ctx ended is a
// normal stop.
type Reader func(ctx context.Context, c jetstream.Consumer) error

// Keeper keeps one durable consumer and its reader running.
type Keeper struct {
	// Stream and Config define the consumer; Config.Durable names it.
	Stream string
	Config jetstream.ConsumerConfig
	// Read reads it.
	Read Reader
	// Ready, if not nil, is told when a reader starts (true) and stops
	// (false), for readiness checks.
	Ready func(bool)
	// Check is how often the consumer is looked up while a reader runs
	// (default 5 s); a consumer found missing stops the reader and is
	// created again.
	Check time.Duration
	Log   *slog.Logger
	// Floor, if not nil, is the highest stream sequence seen
	// acknowledged, kept across Keepers of the same consumer (a reader
	// stopped, then started again by a new Keeper): a consumer found
	// missing is created again after it instead of from Config's start.
	// The Keeper also records the ack floor when its reader stops.
	Floor *atomic.Uint64
}

// Run keeps the consumer until ctx ends. It returns only then, with nil:
// failures are logged and tried again with a growing delay (up to 5 s).
func (k *Keeper) Run(ctx context.Context, js jetstream.JetStream) error {
	log := k.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("consumer", k.Config.Durable)
	check := k.Check
	if check <= 0 {
		check = 5 * time.Second
	}
	floor := k.Floor // highest stream sequence seen acknowledged
	if floor == nil {
		floor = new(atomic.Uint64)
	}
	var (
		delay   = 100 * time.Millisecond
		started bool
	)
	for ctx.Err() == nil {
		cons, err := k.ensure(ctx, js, floor)
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("durable consumer not in place, will retry", "err", err, "delay", delay)
			}
			sleep(ctx, delay)
			delay = min(2*delay, 5*time.Second)
			continue
		}
		if started {
			log.Warn("durable consumer created again", "from_stream_seq", floor.Load()+1)
		}
		started = true
		rctx, cancel := context.WithCancel(ctx)
		watched := make(chan struct{})
		go func() {
			defer close(watched)
			k.watch(rctx, cancel, cons, floor, check, log)
		}()
		if k.Ready != nil {
			k.Ready(true)
		}
		err = k.Read(rctx, cons)
		if k.Ready != nil {
			k.Ready(false)
		}
		cancel()
		<-watched
		if k.Floor != nil {
			recordFloor(cons, floor)
		}
		if ctx.Err() != nil {
			return nil
		}
		log.Warn("durable consumer reader stopped, starting again", "err", err)
		sleep(ctx, delay)
		if err == nil {
			delay = 100 * time.Millisecond
		} else {
			delay = min(2*delay, 5*time.Second)
		}
	}
	return nil
}

// ensure creates the consumer or updates it in place. An existing
// consumer keeps where it delivers from (that cannot change) and raises
// floor to its ack floor; a missing one starts after floor, from the start
// of the stream when floor is 0.
func (k *Keeper) ensure(ctx context.Context, js jetstream.JetStream, floor *atomic.Uint64) (jetstream.Consumer, error) {
	cfg := k.Config
	cur, err := js.Consumer(ctx, k.Stream, cfg.Durable)
	switch {
	case err == nil:
		if info := cur.CachedInfo(); info != nil {
			cfg.DeliverPolicy, cfg.OptStartSeq, cfg.OptStartTime = info.Config.DeliverPolicy, info.Config.OptStartSeq, info.Config.OptStartTime
			raise(floor, info.AckFloor.Stream)
		}
	case errors.Is(err, jetstream.ErrConsumerNotFound):
		if f := floor.Load(); f > 0 {
			cfg.DeliverPolicy, cfg.OptStartSeq, cfg.OptStartTime = jetstream.DeliverByStartSequencePolicy, f+1, nil
		}
	default:
		return nil, fmt.Errorf("look up consumer %s: %w", cfg.Durable, err)
	}
	c, err := js.CreateOrUpdateConsumer(ctx, k.Stream, cfg)
	if err != nil {
		return nil, fmt.Errorf("consumer %s: %w", cfg.Durable, err)
	}
	return c, nil
}

// watch looks the consumer up every check until ctx ends, records its ack
// floor, and stops the reader (stop) when the consumer is gone.
func (k *Keeper) watch(ctx context.Context, stop context.CancelFunc, c jetstream.Consumer, floor *atomic.Uint64, check time.Duration, log *slog.Logger) {
	t := time.NewTicker(check)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		info, err := c.Info(ctx)
		switch {
		case errors.Is(err, jetstream.ErrConsumerNotFound):
			log.Error("durable consumer gone: creating it again")
			stop()
			return
		case err == nil:
			raise(floor, info.AckFloor.Stream)
		}
	}
}

// raise sets floor to seq if seq is higher.
func raise(floor *atomic.Uint64, seq uint64) {
	for {
		cur := floor.Load()
		if seq <= cur || floor.CompareAndSwap(cur, seq) {
			return
		}
	}
}

// recordFloorTimeout bounds the look-up of the ack floor when a reader
// stops.
const recordFloorTimeout = 2 * time.Second

// recordFloor raises floor to c's ack floor, if it can be read within
// recordFloorTimeout: what was acknowledged since the last check.
func recordFloor(c jetstream.Consumer, floor *atomic.Uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), recordFloorTimeout)
	defer cancel()
	if info, err := c.Info(ctx); err == nil {
		raise(floor, info.AckFloor.Stream)
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// RetryDelay is the wait before the delivery that follows failed attempt n
// (from 1): base, doubled with each attempt, at most maxDelay. Services nak
// with it, so a message that keeps failing is tried less and less often
// until its last attempt.
func RetryDelay(base, maxDelay time.Duration, n uint64) time.Duration {
	d := base
	for i := uint64(1); i < n && d < maxDelay; i++ {
		d *= 2
	}
	return min(d, maxDelay)
}
