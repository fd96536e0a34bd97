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

	"github.com/hookbus/hookbus/internal/topology"
	"github.com/hookbus/hookbus/pkg/events"
)

// consumers keeps the dispatcher's durable consumers on HOOKBUS_EVENTS in
// step with the plugin table:
//   - one chain consumer per event type with running chain plugins
//     (events.ChainConsumer), read by the dispatcher itself (chainReaders):
//     created when the type's first chain plugin runs, from the time it
//     started (events.Plugin.UpdatedAt), so an event of the type stored
//     after that runs through the chain; deleted when no chain plugin of
//     the type runs, so events of types without a chain are never read by
//     the dispatcher;
//   - one notify queue per notify plugin (events.NotifyConsumer), read by
//     the plugin's workers: created when the plugin first runs (from the
//     time it started), kept while it is stopped or held (paused: its
//     events wait for it), updated when its settings change, deleted when
//     it is unregistered or stops being a notify plugin. JetStream does the
//     fan-out.
//
// A consumer deleted by hand is created again after the highest stream
// sequence seen acknowledged on it, not from the start.
type consumers struct {
	js  jetstream.JetStream
	log *slog.Logger

	check time.Duration // how often the consumers are compared with the table anyway
	// view returns the plugin table caught up with the bucket: a replica
	// whose watch lags must not delete a consumer another replica created
	// for a plugin it has not seen yet.
	view func(context.Context) (map[string]events.Plugin, error)
	// chainConfig is the configuration of the chain consumer of a type
	// (the dispatcher's ack wait and concurrency).
	chainConfig func(typ string) jetstream.ConsumerConfig
	// readers reads the chain consumers; keep is told, after every
	// apply, which ones exist.
	readers *chainReaders

	changed chan struct{} // signalled (buffer 1) when the table changes

	// floors holds, per consumer, the highest stream sequence seen
	// acknowledged (read by apply only).
	floors map[string]uint64
}

// reconcile tells the keeper the table changed; it never blocks the
// route watcher.
func (n *consumers) reconcile() {
	select {
	case n.changed <- struct{}{}:
	default:
	}
}

// run applies the newest table whenever it changes, and every check
// besides (to retry what failed, and to restore a consumer deleted by
// hand), until ctx ends.
func (n *consumers) run(ctx context.Context) error {
	defer n.readers.wait()
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
			n.log.Warn("consumers not in step yet, will retry", "err", err)
		}
	}
}

// apply makes the consumers match the table, then has the chain
// consumers read.
func (n *consumers) apply(ctx context.Context, plugins map[string]events.Plugin) error {
	stream, err := n.js.Stream(ctx, events.StreamEvents)
	if err != nil {
		n.readers.notReady()
		return fmt.Errorf("stream %s: %w", events.StreamEvents, err)
	}
	notify, chains := map[string]*jetstream.ConsumerInfo{}, map[string]*jetstream.ConsumerInfo{}
	var legacy *jetstream.ConsumerInfo
	lister := stream.ListConsumers(ctx)
	for info := range lister.Info() {
		switch {
		case strings.HasPrefix(info.Name, events.HookReplayConsumer("")):
			continue // a hook's replays: kept by hookRunners
		case strings.HasPrefix(info.Name, events.NotifyConsumer("")), strings.HasPrefix(info.Name, events.ReplayConsumer("")):
			notify[info.Name] = info
		case strings.HasPrefix(info.Name, events.ChainConsumerPrefix):
			chains[info.Name] = info
		case info.Name == events.DispatcherConsumer:
			legacy = info
		default:
			continue
		}
		n.floors[info.Name] = max(n.floors[info.Name], info.AckFloor.Stream)
	}
	if err := lister.Err(); err != nil {
		n.readers.notReady()
		return fmt.Errorf("list consumers: %w", err)
	}
	chainErr := n.applyChains(ctx, stream, plugins, chains, legacy)
	return errors.Join(chainErr, n.applyNotify(ctx, stream, plugins, notify))
}

// applyChains makes the chain consumers match the table's chains and has
// them read. Consumers of versions that read every event through one
// consumer (events.DispatcherConsumer) hand over: chain consumers created
// while it exists start after its acknowledgement floor, and it is deleted
// once they all exist.
func (n *consumers) applyChains(ctx context.Context, stream jetstream.Stream, plugins map[string]events.Plugin, existing map[string]*jetstream.ConsumerInfo, legacy *jetstream.ConsumerInfo) error {
	var errs []error
	read := map[string]jetstream.Consumer{}
	types := chainTypes(plugins)
	wanted := map[string]bool{}
	for typ := range types {
		wanted[events.ChainConsumer(typ)] = true
	}
	for name := range n.floors {
		// A chain consumer gone while its type has no chain (deleted
		// here or by another replica) starts afresh should the type get
		// one again.
		if strings.HasPrefix(name, events.ChainConsumerPrefix) && existing[name] == nil && !wanted[name] {
			delete(n.floors, name)
		}
	}
	for typ, since := range types {
		name := events.ChainConsumer(typ)
		cur, exists := existing[name]
		want := n.chainConfig(typ)
		switch floor := n.floors[name]; {
		case exists:
			want.DeliverPolicy, want.OptStartSeq, want.OptStartTime = cur.Config.DeliverPolicy, cur.Config.OptStartSeq, cur.Config.OptStartTime
		case floor > 0:
			// Deleted by hand: start after what was acknowledged.
			want.DeliverPolicy, want.OptStartSeq = jetstream.DeliverByStartSequencePolicy, floor+1
			n.log.Warn("chain consumer missing: creating it again", "event_type", typ, "from_stream_seq", floor+1)
		case legacy != nil:
			want.DeliverPolicy, want.OptStartSeq = jetstream.DeliverByStartSequencePolicy, legacy.AckFloor.Stream+1
		case !since.IsZero():
			want.DeliverPolicy, want.OptStartTime = jetstream.DeliverByStartTimePolicy, &since
		}
		if exists && sameConsumer(cur.Config, want) {
			c, err := stream.Consumer(ctx, name)
			if err != nil {
				read[name] = nil // a running reader keeps reading
				errs = append(errs, fmt.Errorf("consumer %s: %w", name, err))
				continue
			}
			read[name] = c
			continue
		}
		c, err := stream.CreateOrUpdateConsumer(ctx, want)
		if err != nil {
			read[name] = nil
			errs = append(errs, fmt.Errorf("consumer %s: %w", name, err))
			continue
		}
		read[name] = c
		n.log.Info("chain consumer ready", "event_type", typ, "consumer", name, "created", !exists)
	}
	for name := range existing {
		if wanted[name] {
			continue
		}
		// Its type has no running chain plugin left.
		n.readers.stop(name)
		if err := stream.DeleteConsumer(ctx, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			errs = append(errs, fmt.Errorf("delete consumer %s: %w", name, err))
			continue
		}
		delete(n.floors, name)
		n.log.Info("chain consumer deleted", "consumer", name)
	}
	if legacy != nil && len(errs) == 0 {
		if err := stream.DeleteConsumer(ctx, legacy.Name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			errs = append(errs, fmt.Errorf("delete consumer %s: %w", legacy.Name, err))
		} else {
			n.log.Info("consumer of every event replaced by chain consumers: deleted", "consumer", legacy.Name, "ack_floor_stream_seq", legacy.AckFloor.Stream)
		}
	}
	n.readers.keep(ctx, read, len(errs) == 0)
	return errors.Join(errs...)
}

// chainTypes returns the event types with running chain plugins, each
// with the earliest time one of them last changed (when its chain started
// to run, unless it changed since).
func chainTypes(plugins map[string]events.Plugin) map[string]time.Time {
	out := map[string]time.Time{}
	for _, p := range plugins {
		if p.Mode != events.ModeChain || !p.Status.Running() {
			continue
		}
		if since, ok := out[p.Event]; !ok || p.UpdatedAt.Before(since) {
			out[p.Event] = p.UpdatedAt
		}
	}
	return out
}

// subscriberConsumers are the consumers of a notify plugin: its replay
// consumer first, so that a queue of older versions, which also took the
// plugin's replays, hands them over before its filter changes.
var subscriberConsumers = []struct {
	name   func(string) string
	config func(events.Plugin) (jetstream.ConsumerConfig, error)
}{
	{events.ReplayConsumer, topology.ReplayConsumerConfig},
	{events.NotifyConsumer, topology.NotifyConsumerConfig},
}

// applyNotify makes the notify queues and replay consumers match the
// table.
func (n *consumers) applyNotify(ctx context.Context, stream jetstream.Stream, plugins map[string]events.Plugin, existing map[string]*jetstream.ConsumerInfo) error {
	var errs []error
	kept := map[string]bool{} // the consumers of notify plugins
	for _, p := range plugins {
		if p.Mode != events.ModeNotify {
			continue
		}
		queue := existing[events.NotifyConsumer(p.Name)]
		for _, kind := range subscriberConsumers {
			name := kind.name(p.Name)
			kept[name] = true
			cur := existing[name]
			exists := cur != nil
			if !exists && !p.Status.Running() {
				continue // created when it first runs
			}
			want, err := kind.config(p)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			switch floor := n.floors[name]; {
			case exists:
				// Where a consumer starts cannot change once it exists.
				want.DeliverPolicy, want.OptStartSeq, want.OptStartTime = cur.Config.DeliverPolicy, cur.Config.OptStartSeq, cur.Config.OptStartTime
			case floor > 0:
				// Deleted by hand: start after what its workers acknowledged.
				want.DeliverPolicy, want.OptStartSeq, want.OptStartTime = jetstream.DeliverByStartSequencePolicy, floor+1, nil
				n.log.Warn("notify consumer missing: creating it again", "plugin", p.Name, "consumer", name, "from_stream_seq", floor+1)
			case queue != nil && len(queue.Config.FilterSubjects) > 1:
				// The queue also took replays: they continue here.
				want.DeliverPolicy, want.OptStartSeq, want.OptStartTime = jetstream.DeliverByStartSequencePolicy, queue.AckFloor.Stream+1, nil
			}
			paused := exists && cur.Paused
			if !exists || !sameConsumer(cur.Config, want) {
				c, err := stream.CreateOrUpdateConsumer(ctx, want)
				if err != nil {
					errs = append(errs, fmt.Errorf("consumer %s: %w", name, err))
					break // the queue keeps its replays until this exists
				}
				ci := c.CachedInfo()
				paused = ci != nil && ci.Paused
				n.log.Info("notify consumer ready", "plugin", p.Name, "consumer", name, "created", !exists)
			}
			if err := n.setPaused(ctx, name, paused, !p.Status.Running()); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for name := range existing {
		if kept[name] {
			continue
		}
		// Its plugin is gone, or no longer a notify plugin.
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
func (n *consumers) setPaused(ctx context.Context, name string, paused, want bool) error {
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

func sameConsumer(a, b jetstream.ConsumerConfig) bool {
	return a.FilterSubject == b.FilterSubject && slices.Equal(a.FilterSubjects, b.FilterSubjects) && a.MaxDeliver == b.MaxDeliver &&
		slices.Equal(a.BackOff, b.BackOff) && a.AckWait == b.AckWait && a.MaxAckPending == b.MaxAckPending &&
		a.Description == b.Description
}
