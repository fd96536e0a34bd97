// Package dispatcher routes events to plugins. It keeps a route table from
// bucket hookbus_plugins, runs priority-ordered chains for synchronous calls
// (hookbus.call.<type>) and for published events (stream HOOKBUS_EVENTS,
// results on hookbus.result.<type>), keeps one durable consumer per notify
// plugin so JetStream fans events out to them, and dead-letters what cannot
// be delivered. It is stateless: replicas share the work.
package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/hookbus/hookbus/internal/pluginwatch"
	"github.com/hookbus/hookbus/internal/topology"
	"github.com/hookbus/hookbus/pkg/events"
)

// Config configures the dispatcher.
type Config struct {
	// Concurrency bounds the chains run at once, for calls and for
	// published events each.
	Concurrency int
	// AckWait is how long a published event may go without news before
	// JetStream gives it to another replica; long chains report progress.
	AckWait time.Duration
	// RetryDelay is how long an event whose result could not be stored
	// waits before its chain runs again.
	RetryDelay time.Duration
	// Topology is what the dispatcher checks at start.
	Topology topology.Config
	// MaxEventSize is the codec's size limit.
	MaxEventSize int
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		Concurrency:  256,
		AckWait:      30 * time.Second,
		RetryDelay:   time.Second,
		Topology:     topology.DefaultConfig(),
		MaxEventSize: events.DefaultMaxSize,
	}
}

// Validate reports the first unusable setting.
func (c Config) Validate() error {
	switch {
	case c.Concurrency < 1:
		return fmt.Errorf("dispatcher concurrency %d: at least 1", c.Concurrency)
	case c.AckWait < time.Second:
		return fmt.Errorf("dispatcher ack wait %s: at least 1s", c.AckWait)
	case c.RetryDelay <= 0:
		return fmt.Errorf("dispatcher retry delay %s: must be positive", c.RetryDelay)
	}
	return c.Topology.Validate()
}

// Service is the dispatcher.
type Service struct {
	cfg   Config
	nc    *nats.Conn
	js    jetstream.JetStream
	log   *slog.Logger
	codec events.Codec

	routes  routes
	notify  *notifier
	running atomic.Int32 // parts started; ready when all are
}

// parts is how many parts Run starts before the dispatcher is ready: the
// route table, calls, published events, advisories.
const parts = 4

// New builds a dispatcher on nc; Run starts it. A nil logger discards logs.
func New(cfg Config, nc *nats.Conn, log *slog.Logger) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("service", "dispatcher")
	s := &Service{cfg: cfg, nc: nc, js: js, log: log, codec: events.Codec{MaxSize: cfg.MaxEventSize}}
	s.notify = newNotifier(js, log)
	return s, nil
}

var errNotReady = errors.New("dispatcher not started")

// Ready returns nil once the route table is loaded and the dispatcher takes
// calls, published events and advisories.
func (s *Service) Ready(context.Context) error {
	if s.running.Load() < parts || !s.routes.isReady() {
		return errNotReady
	}
	return nil
}

// Run checks the topology and runs every part until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	if err := topology.Check(ctx, s.js, s.cfg.Topology); err != nil {
		return err
	}
	kv, err := s.js.KeyValue(ctx, events.BucketPlugins)
	if err != nil {
		return fmt.Errorf("bucket %s: %w", events.BucketPlugins, err)
	}
	watch := pluginwatch.New(kv, s.log, func(plugins map[string]events.Plugin) {
		s.routes.rebuild(plugins)
		s.notify.reconcile(plugins)
	})
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { s.running.Add(1); return watch.Run(gctx) })
	g.Go(func() error { return s.notify.run(gctx) })
	g.Go(func() error { return s.serveCalls(gctx) })
	g.Go(func() error { return s.consumeEvents(gctx) })
	g.Go(func() error { return s.watchAdvisories(gctx) })
	err = g.Wait()
	if ctx.Err() != nil {
		return nil
	}
	return err
}
