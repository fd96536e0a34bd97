// Package pluginwatch keeps an in-memory copy of bucket hookbus_plugins,
// fed by a KV watcher: the registry decides on it, the dispatcher routes by
// it. The copy can wait until it holds every write the bucket has
// (CatchUp), so a reader sees its own writes and those of other replicas.
package pluginwatch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/internal/durable"
	"github.com/hookbus/hookbus/internal/topology"
	"github.com/hookbus/hookbus/pkg/events"
)

// Watcher is the watched copy of the bucket.
type Watcher struct {
	js       jetstream.JetStream
	kv       jetstream.KeyValue
	log      *slog.Logger
	onChange func(map[string]events.Plugin)

	mu      sync.Mutex
	stream  jetstream.Stream // the bucket's stream, once looked up
	plugins map[string]events.Plugin
	rev     uint64        // highest revision applied (and announced)
	changed chan struct{} // closed and replaced whenever rev grows
	ready   bool          // the initial values are in

	// Fresh's requests: asked counts them, served is the highest one a
	// catch-up that started after it has served.
	fmu           sync.Mutex
	asked, served uint64
	refreshing    bool
	refreshed     chan struct{} // closed and replaced after each catch-up
	refreshErr    error
}

// New returns a watcher of kv, a bucket of js; Run feeds it. onChange, if not nil, gets a
// copy of every plugin after the initial load and after each change, from
// Run's goroutine; it must not block for long. A nil logger discards logs.
func New(js jetstream.JetStream, kv jetstream.KeyValue, log *slog.Logger, onChange func(map[string]events.Plugin)) *Watcher {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Watcher{js: js, kv: kv, log: log, onChange: onChange, plugins: map[string]events.Plugin{}, changed: make(chan struct{}), refreshed: make(chan struct{})}
}

// Run applies the watcher's entries until ctx ends.
func (w *Watcher) Run(ctx context.Context) error {
	var kw jetstream.KeyWatcher
	// A NATS node restarting is waited out, not a reason to stop.
	err := durable.Start(ctx, w.log, "watch "+events.BucketPlugins, func(ctx context.Context) (err error) {
		kw, err = w.kv.WatchAll(ctx)
		return err
	})
	if err != nil || ctx.Err() != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("watch %s: %w", events.BucketPlugins, err)
	}
	defer func() { _ = kw.Stop() }()
	var pending uint64 // highest revision applied but not yet settled
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-kw.Updates():
			if !ok {
				return fmt.Errorf("watch %s: watcher closed", events.BucketPlugins)
			}
			if e != nil {
				pending = max(pending, e.Revision())
			}
			// A burst of writes (thousands of plugins registered) is
			// announced once, when no more entries are waiting.
			if e != nil && len(kw.Updates()) > 0 {
				w.apply(e, false)
				continue
			}
			if snapshot := w.apply(e, true); snapshot != nil && w.onChange != nil {
				w.onChange(snapshot)
			}
			// Only now does CatchUp count the entries: what onChange
			// builds from them (the dispatcher's route table) is in
			// place.
			w.settle(e == nil, pending)
		}
	}
}

// apply takes one entry (nil marks the end of the initial values) into the
// copy and, with announce, returns a copy of the plugins to announce (nil
// during the initial load).
func (w *Watcher) apply(e jetstream.KeyValueEntry, announce bool) map[string]events.Plugin {
	w.mu.Lock()
	defer w.mu.Unlock()
	if e != nil {
		if e.Operation() == jetstream.KeyValuePut {
			var p events.Plugin
			if err := json.Unmarshal(e.Value(), &p); err != nil {
				// Not written by a registry: kept out of every decision
				// rather than guessed at.
				w.log.Error("unreadable plugin state ignored", "plugin", e.Key(), "err", err)
				delete(w.plugins, e.Key())
			} else {
				p.Revision = e.Revision()
				w.plugins[e.Key()] = p
			}
		} else {
			delete(w.plugins, e.Key())
		}
	}
	if !announce || !w.ready && e != nil {
		return nil
	}
	return maps.Clone(w.plugins)
}

// settle marks the entries up to revision rev (and, with initial, the end
// of the initial values) as applied, for CatchUp.
func (w *Watcher) settle(initial bool, rev uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.ready = w.ready || initial
	w.rev = max(w.rev, rev)
	close(w.changed)
	w.changed = make(chan struct{})
}

// Fresh waits until the copy holds every write the bucket had when Fresh
// was called: a caller that learnt of a write (a plugin started, then an
// event published) sees it. Concurrent callers share catch-ups: one
// catch-up, started after a caller asked, serves every caller that asked
// before it started, so under load it costs about one request to the
// server at a time, not one per caller.
func (w *Watcher) Fresh(ctx context.Context) error {
	w.fmu.Lock()
	w.asked++
	ticket := w.asked
	if !w.refreshing {
		w.refreshing = true
		go w.refresh()
	}
	for w.served < ticket {
		ch := w.refreshed
		w.fmu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("plugin state not caught up: %w", ctx.Err())
		}
		w.fmu.Lock()
	}
	err := w.refreshErr
	w.fmu.Unlock()
	return err
}

// refresh runs catch-ups while callers of Fresh wait for one.
func (w *Watcher) refresh() {
	w.fmu.Lock()
	for w.served < w.asked {
		upTo := w.asked
		w.fmu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := w.CatchUp(ctx)
		cancel()
		w.fmu.Lock()
		w.served, w.refreshErr = upTo, err
		close(w.refreshed)
		w.refreshed = make(chan struct{})
	}
	w.refreshing = false
	w.fmu.Unlock()
}

// Ready reports whether the initial values are loaded.
func (w *Watcher) Ready() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ready
}

// CatchUp waits until the copy holds every write the bucket has, and
// returns a copy of the plugins. Every write means up to the last message
// the bucket's stream still holds: one purged from it (by an operator)
// never comes, and is not waited for.
func (w *Watcher) CatchUp(ctx context.Context) (map[string]events.Plugin, error) {
	last, err := w.lastRevision(ctx)
	if err != nil {
		return nil, err
	}
	for {
		w.mu.Lock()
		if w.ready && w.rev >= last {
			out := maps.Clone(w.plugins)
			w.mu.Unlock()
			return out, nil
		}
		ch := w.changed
		w.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, fmt.Errorf("plugin state behind revision %d: %w", last, ctx.Err())
		}
	}
}

// lastRevision is the sequence of the last message in the bucket's stream,
// 0 when it holds none: one direct get (the bucket allows them) of the last
// message on any of its subjects, so a message purged from the stream is
// never waited for.
func (w *Watcher) lastRevision(ctx context.Context) (uint64, error) {
	stream, err := w.backingStream(ctx)
	if err != nil {
		return 0, err
	}
	m, err := stream.GetLastMsgForSubject(ctx, "$KV."+events.BucketPlugins+".>")
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return 0, nil
	case err != nil:
		return 0, fmt.Errorf("bucket %s last revision: %w", events.BucketPlugins, err)
	}
	return m.Sequence, nil
}

// backingStream is the bucket's stream, looked up once.
func (w *Watcher) backingStream(ctx context.Context) (jetstream.Stream, error) {
	w.mu.Lock()
	stream := w.stream
	w.mu.Unlock()
	if stream != nil {
		return stream, nil
	}
	stream, err := w.js.Stream(ctx, "KV_"+events.BucketPlugins)
	if err != nil {
		return nil, fmt.Errorf("bucket %s stream: %w", events.BucketPlugins, err)
	}
	w.mu.Lock()
	w.stream = stream
	w.mu.Unlock()
	return stream, nil
}

// OpenBucket checks the topology against cfg and opens hookbus_plugins,
// what the registry and the dispatcher do first; NATS not answering or the
// topology not created yet is waited out (durable.Start).
func OpenBucket(ctx context.Context, js jetstream.JetStream, cfg topology.Config, log *slog.Logger) (jetstream.KeyValue, error) {
	var kv jetstream.KeyValue
	err := durable.Start(ctx, log, "start", func(ctx context.Context) (err error) {
		if err := topology.Check(ctx, js, cfg); err != nil {
			return err
		}
		if kv, err = js.KeyValue(ctx, events.BucketPlugins); err != nil {
			return fmt.Errorf("bucket %s: %w", events.BucketPlugins, err)
		}
		return nil
	})
	return kv, err
}
