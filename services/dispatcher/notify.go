package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/pkg/events"
)

// notifier keeps one durable consumer per notify plugin on HOOKBUS_EVENTS:
// created when the plugin first runs (from the time it started, so nothing
// published after its start is missed), kept while it is stopped or held
// (its events wait for it), updated when its settings change, deleted when
// it is unregistered or stops being a notify plugin. JetStream does the
// fan-out; the plugin's workers read the consumer directly.
type notifier struct {
	js  jetstream.JetStream
	log *slog.Logger

	check time.Duration // how often the consumers are compared with the table anyway
	// view returns the plugin table caught up with the bucket: a replica
	// whose watch lags must not delete a queue another replica created
	// for a plugin it has not seen yet.
	view func(context.Context) (map[string]events.Plugin, error)

	changed chan struct{} // signalled (buffer 1) when the table changes

	// floors holds, per consumer, the highest stream sequence seen
	// acknowledged (read by apply only): a queue deleted by hand is
	// created again after it, not from the plugin's start.
	floors map[string]uint64
}

func newNotifier(js jetstream.JetStream, log *slog.Logger, check time.Duration, view func(context.Context) (map[string]events.Plugin, error)) *notifier {
	return &notifier{js: js, log: log, check: check, view: view, changed: make(chan struct{}, 1), floors: map[string]uint64{}}
}

// reconcile tells the notifier the table changed; it never blocks the
// route watcher.
func (n *notifier) reconcile() {
	select {
	case n.changed <- struct{}{}:
	default:
	}
}

// run applies the newest table whenever it changes, and every check
// besides (to retry what failed, and to restore a queue deleted by hand),
// until ctx ends.
func (n *notifier) run(ctx context.Context) error {
	tick := time.NewTicker(n.check)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-n.changed:
		case <-tick.C:
		}
		vctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		plugins, err := n.view(vctx)
		cancel()
		if err == nil {
			err = n.apply(ctx, plugins)
		}
		if err != nil && ctx.Err() == nil {
			n.log.Warn("notify consumers not in step yet, will retry", "err", err)
		}
	}
}

// apply makes the consumers match the table.
func (n *notifier) apply(ctx context.Context, plugins map[string]events.Plugin) error {
	stream, err := n.js.Stream(ctx, events.StreamEvents)
	if err != nil {
		return fmt.Errorf("stream %s: %w", events.StreamEvents, err)
	}
	existing := map[string]*jetstream.ConsumerInfo{}
	lister := stream.ListConsumers(ctx)
	for info := range lister.Info() {
		if strings.HasPrefix(info.Name, events.NotifyConsumer("")) {
			existing[info.Name] = info
			n.floors[info.Name] = max(n.floors[info.Name], info.AckFloor.Stream)
		}
	}
	if err := lister.Err(); err != nil {
		return fmt.Errorf("list consumers: %w", err)
	}
	var errs []error
	for _, p := range plugins {
		if p.Mode != events.ModeNotify {
			continue
		}
		name := events.NotifyConsumer(p.Name)
		cur, exists := existing[name]
		delete(existing, name)
		if !exists && !p.Status.Running() {
			continue // created when it first runs
		}
		want, err := consumerConfig(p, cur)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if floor := n.floors[name]; !exists && floor > 0 {
			// Deleted by hand: start after what its workers acknowledged.
			want.DeliverPolicy, want.OptStartSeq, want.OptStartTime = jetstream.DeliverByStartSequencePolicy, floor+1, nil
			n.log.Warn("notify consumer missing: creating it again", "plugin", p.Name, "from_stream_seq", floor+1)
		}
		paused := exists && cur.Paused
		if !exists || !sameConsumer(cur.Config, want) {
			c, err := stream.CreateOrUpdateConsumer(ctx, want)
			if err != nil {
				errs = append(errs, fmt.Errorf("consumer %s: %w", name, err))
				continue
			}
			ci := c.CachedInfo()
			paused = ci != nil && ci.Paused
			n.log.Info("notify consumer ready", "plugin", p.Name, "consumer", name, "created", !exists)
		}
		if err := n.setPaused(ctx, name, paused, !p.Status.Running()); err != nil {
			errs = append(errs, err)
		}
	}
	for name := range existing { // plugins gone, or no longer notify
		if err := stream.DeleteConsumer(ctx, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			errs = append(errs, fmt.Errorf("delete consumer %s: %w", name, err))
			continue
		}
		delete(n.floors, name)
		n.log.Info("notify consumer deleted", "consumer", name)
	}
	return errors.Join(errs...)
}

// setPaused pauses the queue of a plugin that is not running (stopped or
// held: its events wait, whatever language its workers are written in)
// and resumes it when the plugin runs again.
func (n *notifier) setPaused(ctx context.Context, name string, paused, want bool) error {
	switch {
	case want && !paused:
		if _, err := n.js.PauseConsumer(ctx, events.StreamEvents, name, pausedForever()); err != nil {
			return fmt.Errorf("pause consumer %s: %w", name, err)
		}
		n.log.Info("notify consumer paused", "consumer", name)
	case !want && paused:
		if _, err := n.js.ResumeConsumer(ctx, events.StreamEvents, name); err != nil {
			return fmt.Errorf("resume consumer %s: %w", name, err)
		}
		n.log.Info("notify consumer resumed", "consumer", name)
	}
	return nil
}

// pausedForever is a pause deadline no plugin outlives; a plugin's queue
// is resumed explicitly when it runs again.
func pausedForever() time.Time { return time.Now().AddDate(100, 0, 0) }

// consumerConfig is the consumer a notify plugin gets
// (events.NotifyConsumerConfig), keeping where an existing queue starts:
// that cannot change once it exists.
func consumerConfig(p events.Plugin, cur *jetstream.ConsumerInfo) (jetstream.ConsumerConfig, error) {
	cfg, err := events.NotifyConsumerConfig(p)
	if err != nil {
		return cfg, err
	}
	if cur != nil {
		cfg.DeliverPolicy, cfg.OptStartTime = cur.Config.DeliverPolicy, cur.Config.OptStartTime
	}
	return cfg, nil
}

func sameConsumer(a, b jetstream.ConsumerConfig) bool {
	return slices.Equal(a.FilterSubjects, b.FilterSubjects) && a.MaxDeliver == b.MaxDeliver &&
		slices.Equal(a.BackOff, b.BackOff) && a.AckWait == b.AckWait && a.MaxAckPending == b.MaxAckPending &&
		a.Description == b.Description
}
