package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/pkg/events"
)

// view is the registry's in-memory copy of bucket hookbus_plugins, kept by
// a KV watcher. Before deciding anything the registry waits until the view
// has caught up with the bucket's last revision (catchUp), so it reads its
// own writes and those of other replicas.
type view struct {
	kv  jetstream.KeyValue
	log *slog.Logger

	mu      sync.Mutex
	plugins map[string]events.Plugin
	rev     uint64        // highest revision applied
	changed chan struct{} // closed and replaced whenever rev grows
	ready   bool
}

func newView(kv jetstream.KeyValue, log *slog.Logger) *view {
	return &view{kv: kv, log: log, plugins: map[string]events.Plugin{}, changed: make(chan struct{})}
}

// run applies the watcher's entries until ctx ends.
func (v *view) run(ctx context.Context) error {
	w, err := v.kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watch %s: %w", events.BucketPlugins, err)
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				return fmt.Errorf("watch %s: watcher closed", events.BucketPlugins)
			}
			v.apply(e)
		}
	}
}

func (v *view) apply(e jetstream.KeyValueEntry) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if e == nil { // initial values delivered
		v.ready = true
		v.notifyLocked()
		return
	}
	switch e.Operation() {
	case jetstream.KeyValuePut:
		var p events.Plugin
		if err := json.Unmarshal(e.Value(), &p); err != nil {
			// Not written by a registry; keep it out of every decision
			// rather than guess.
			v.log.Error("unreadable plugin state ignored", "plugin", e.Key(), "err", err)
			delete(v.plugins, e.Key())
		} else {
			p.Revision = e.Revision()
			v.plugins[e.Key()] = p
		}
	default: // delete or purge
		delete(v.plugins, e.Key())
	}
	v.rev = max(v.rev, e.Revision())
	v.notifyLocked()
}

func (v *view) notifyLocked() {
	close(v.changed)
	v.changed = make(chan struct{})
}

// catchUp waits until the view holds every write the bucket has, and
// returns a copy of the plugins.
func (v *view) catchUp(ctx context.Context) (map[string]events.Plugin, error) {
	st, err := v.kv.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("bucket %s status: %w", events.BucketPlugins, err)
	}
	last := st.(*jetstream.KeyValueBucketStatus).StreamInfo().State.LastSeq
	for {
		v.mu.Lock()
		if v.ready && v.rev >= last {
			out := maps.Clone(v.plugins)
			v.mu.Unlock()
			return out, nil
		}
		ch := v.changed
		v.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, fmt.Errorf("plugin view behind revision %d: %w", last, ctx.Err())
		}
	}
}
