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

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/pkg/events"
)

// Watcher is the watched copy of the bucket.
type Watcher struct {
	js       jetstream.JetStream
	kv       jetstream.KeyValue
	log      *slog.Logger
	onChange func(map[string]events.Plugin)

	mu      sync.Mutex
	plugins map[string]events.Plugin
	rev     uint64        // highest revision applied
	changed chan struct{} // closed and replaced whenever rev grows
	ready   bool          // the initial values are in
}

// New returns a watcher of kv, a bucket of js; Run feeds it. onChange, if not nil, gets a
// copy of every plugin after the initial load and after each change, from
// Run's goroutine; it must not block for long. A nil logger discards logs.
func New(js jetstream.JetStream, kv jetstream.KeyValue, log *slog.Logger, onChange func(map[string]events.Plugin)) *Watcher {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Watcher{js: js, kv: kv, log: log, onChange: onChange, plugins: map[string]events.Plugin{}, changed: make(chan struct{})}
}

// Run applies the watcher's entries until ctx ends.
func (w *Watcher) Run(ctx context.Context) error {
	kw, err := w.kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watch %s: %w", events.BucketPlugins, err)
	}
	defer func() { _ = kw.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-kw.Updates():
			if !ok {
				return fmt.Errorf("watch %s: watcher closed", events.BucketPlugins)
			}
			if snapshot := w.apply(e); snapshot != nil && w.onChange != nil {
				w.onChange(snapshot)
			}
			// Only now does CatchUp count the entry: what onChange
			// builds from it (the dispatcher's route table) is in place.
			w.settle(e)
		}
	}
}

// apply takes one entry (nil marks the end of the initial values) into the
// copy and returns a copy of the plugins to announce, or nil during the
// initial load.
func (w *Watcher) apply(e jetstream.KeyValueEntry) map[string]events.Plugin {
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
	if !w.ready && e != nil {
		return nil
	}
	return maps.Clone(w.plugins)
}

// settle marks entry e (nil: the end of the initial values) as applied,
// for CatchUp.
func (w *Watcher) settle(e jetstream.KeyValueEntry) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if e == nil {
		w.ready = true
	} else {
		w.rev = max(w.rev, e.Revision())
	}
	close(w.changed)
	w.changed = make(chan struct{})
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
// 0 when it holds none.
func (w *Watcher) lastRevision(ctx context.Context) (uint64, error) {
	st, err := w.kv.Status(ctx)
	if err != nil {
		return 0, fmt.Errorf("bucket %s status: %w", events.BucketPlugins, err)
	}
	info := st.(*jetstream.KeyValueBucketStatus).StreamInfo()
	if info.State.Msgs == 0 {
		return 0, nil
	}
	stream, err := w.js.Stream(ctx, info.Config.Name)
	if err != nil {
		return 0, fmt.Errorf("bucket %s stream: %w", events.BucketPlugins, err)
	}
	m, err := stream.GetLastMsgForSubject(ctx, ">")
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return 0, nil
	case err != nil:
		return 0, fmt.Errorf("bucket %s last revision: %w", events.BucketPlugins, err)
	}
	return m.Sequence, nil
}
