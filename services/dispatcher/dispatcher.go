// Package dispatcher routes events to plugins. It keeps a route table from
// bucket hookbus_plugins, runs priority-ordered chains for synchronous calls
// (hookbus.call.<type>) and for published events (stream HOOKBUS_EVENTS,
// results on hookbus.result.<type>), keeps one durable consumer per notify
// plugin so JetStream fans events out to them, delivers the events of
// every stored hook from a durable consumer of its own (hook-<id>), and
// dead-letters what cannot be delivered. It is stateless: replicas share the work.
package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/hookbus/hookbus/internal/durable"
	"github.com/hookbus/hookbus/internal/execdir"
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
	// MaxAttempts bounds the deliveries of a published event: one whose
	// result is not stored after that many (each failure waits longer,
	// from RetryDelay up to MaxRetryDelay) is dead-lettered.
	MaxAttempts int
	// MaxRetryDelay caps the wait between attempts.
	MaxRetryDelay time.Duration
	// ConsumerCheck is how often the dispatcher's durable consumer and
	// the notify queues are looked up; missing ones are created again.
	ConsumerCheck time.Duration
	// WebhookTimeout bounds one attempt of a hook that sets no timeout of
	// its own: a webhook's POST, a subject hook's publish, an exec hook's
	// run.
	WebhookTimeout time.Duration
	// WebhookAllow are the networks webhooks may reach although they are
	// loopback, private, link-local or otherwise internal (refused by
	// default).
	WebhookAllow []netip.Prefix
	// HookDisableAfter is how long a hook may fail with no success before
	// the dispatcher asks the registry to disable it.
	HookDisableAfter time.Duration
	// HookExecDir is the absolute directory whose programs exec hooks may
	// run; empty turns exec hooks off (their events are dead-lettered).
	HookExecDir string
	// HookExecMax bounds the exec hook programs running at once.
	HookExecMax int
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		Concurrency:      256,
		AckWait:          30 * time.Second,
		RetryDelay:       time.Second,
		Topology:         topology.DefaultConfig(),
		MaxEventSize:     events.DefaultMaxSize,
		MaxAttempts:      10,
		MaxRetryDelay:    time.Minute,
		ConsumerCheck:    5 * time.Second,
		WebhookTimeout:   10 * time.Second,
		HookDisableAfter: 24 * time.Hour,
		HookExecMax:      4,
	}
}

// Validate reports the first unusable setting.
func (c Config) Validate() error {
	switch {
	case c.Concurrency < 1:
		return fmt.Errorf("dispatcher concurrency %d: at least 1", c.Concurrency)
	case c.AckWait < time.Second:
		return fmt.Errorf("dispatcher ack wait %s: at least 1s", c.AckWait)
	case c.RetryDelay <= 0 || c.MaxRetryDelay < c.RetryDelay:
		return fmt.Errorf("dispatcher retry delays %s to %s: must be positive and in order", c.RetryDelay, c.MaxRetryDelay)
	case c.MaxAttempts < 1:
		return fmt.Errorf("dispatcher max attempts %d: at least 1", c.MaxAttempts)
	case c.ConsumerCheck <= 0:
		return fmt.Errorf("dispatcher consumer check %s: must be positive", c.ConsumerCheck)
	case c.WebhookTimeout <= 0:
		return fmt.Errorf("dispatcher webhook timeout %s: must be positive", c.WebhookTimeout)
	case c.HookDisableAfter < time.Second:
		return fmt.Errorf("dispatcher hook disable-after %s: at least 1s", c.HookDisableAfter)
	case c.HookExecMax < 1:
		return fmt.Errorf("dispatcher exec hooks at once %d: at least 1", c.HookExecMax)
	}
	if err := execdir.ValidateDir(c.HookExecDir); err != nil {
		return err
	}
	if c.HookExecDir != "" && !execSupported {
		return fmt.Errorf("exec directory %q: exec hooks need a Unix system (process groups)", c.HookExecDir)
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

	routes routes
	// plugins is the watched plugin table the routes are built from; its
	// Fresh makes a route decision see every plugin change made before
	// the event or call arrived.
	plugins *pluginwatch.Watcher
	events  *prometheus.CounterVec // published events by outcome
	// The parts that must run for the dispatcher to be ready.
	calls, consuming, advisories atomic.Bool
}

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
	s := &Service{cfg: cfg, nc: nc, js: js, log: log, codec: events.Codec{MaxSize: cfg.MaxEventSize},
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookbus_dispatcher_events_total",
			Help: "Published events the dispatcher settled, by outcome: result (chain run, result stored), no_chain, invalid (dead-lettered), exhausted (dead-lettered after its attempts), retried (an attempt failed).",
		}, []string{"outcome"})}
	return s, nil
}

// Outcomes of hookbus_dispatcher_events_total.
const (
	outcomeResult    = "result"
	outcomeNoChain   = "no_chain"
	outcomeInvalid   = "invalid"
	outcomeExhausted = "exhausted"
	outcomeRetried   = "retried"
)

// Collector returns the dispatcher's metrics, for a Prometheus registry.
func (s *Service) Collector() prometheus.Collector { return s.events }

var errNotReady = errors.New("dispatcher not ready")

// Ready returns nil while the route table is loaded and the dispatcher
// takes calls, reads its chain consumers and reads advisories, else an
// error naming every part that does not run now (a part that stops, the
// consumers while they are created again, all of them once Run returns).
func (s *Service) Ready(context.Context) error {
	var missing []string
	if !s.routes.isReady() {
		missing = append(missing, "route table not loaded")
	}
	if !s.calls.Load() {
		missing = append(missing, "not taking calls")
	}
	if !s.consuming.Load() {
		missing = append(missing, "chain consumers not all in place and read")
	}
	if !s.advisories.Load() {
		missing = append(missing, "not reading advisories")
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: %s", errNotReady, strings.Join(missing, "; "))
	}
	return nil
}

// Run checks the topology, loads the route table, then runs every part
// until ctx ends. Nothing is routed before the table holds every plugin
// the bucket has: an event taken earlier would run without its chain.
func (s *Service) Run(ctx context.Context) error {
	kv, err := pluginwatch.OpenBucket(ctx, s.js, s.cfg.Topology, s.log)
	if err != nil {
		return err
	}
	var watch *pluginwatch.Watcher
	cons := &consumers{js: s.js, log: s.log, check: s.cfg.ConsumerCheck, chainConfig: s.chainConfig,
		view:    func(ctx context.Context) (map[string]events.Plugin, error) { return watch.CatchUp(ctx) },
		changed: make(chan struct{}, 1), floors: map[string]uint64{}}
	cons.readers = newChainReaders(s, cons.reconcile)
	s.plugins = pluginwatch.New(s.js, kv, s.log, func(plugins map[string]events.Plugin) {
		s.routes.rebuild(plugins)
		cons.reconcile()
	})
	watch = s.plugins
	var hooks jetstream.KeyValue
	// Here and below, a NATS node restarting is waited out (not ready
	// meanwhile), not a reason to exit.
	err = durable.Start(ctx, s.log, "bucket "+events.BucketHooks, func(ctx context.Context) (err error) {
		hooks, err = s.js.KeyValue(ctx, events.BucketHooks)
		return err
	})
	if err != nil {
		return fmt.Errorf("bucket %s: %w", events.BucketHooks, err)
	}
	hookState, err := s.js.KeyValue(ctx, events.BucketHookState)
	if err != nil {
		return fmt.Errorf("bucket %s: %w", events.BucketHookState, err)
	}
	publisher, err := newSubjectPublisher(s.nc, s.codec, s.cfg.WebhookTimeout)
	if err != nil {
		return err
	}
	runners := &hookRunners{s: s, state: hookState, live: map[string]*hookRunner{}, actions: map[events.HookType]hookAction{
		events.HookWebhook: newWebhookSender(s.cfg.WebhookAllow, s.cfg.WebhookTimeout),
		events.HookSubject: publisher,
		events.HookExec:    newExecRunner(s.cfg.HookExecDir, s.cfg.HookExecMax, s.cfg.WebhookTimeout),
	}}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return watch.Run(gctx) })
	g.Go(func() error { return runners.run(gctx, hooks) })
	g.Go(func() error { return cons.run(gctx) })
	g.Go(func() error {
		err := durable.Start(gctx, s.log, "load the route table", func(ctx context.Context) error {
			_, err := watch.CatchUp(ctx)
			return err
		})
		if err != nil {
			return err
		}
		s.log.Info("route table loaded")
		r, rctx := errgroup.WithContext(gctx)
		r.Go(func() error { return s.serveCalls(rctx) })
		r.Go(func() error { return s.watchAdvisories(rctx) })
		return r.Wait()
	})
	err = g.Wait()
	if ctx.Err() != nil {
		return nil
	}
	return err
}
