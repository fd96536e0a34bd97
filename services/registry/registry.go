// Package registry owns plugin and hook state. It applies lifecycle
// commands from stream HOOKBUS_COMMANDS to buckets hookbus_plugins and
// hookbus_hooks with compare-and-swap, answers each sender, announces every
// change as a lifecycle CloudEvent, and serves get and list queries as the
// NATS micro service hookbus-registry. The rules are DESIGN §1.1 (see plan.go).
package registry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"golang.org/x/sync/errgroup"

	"github.com/hookbus/hookbus/internal/durable"
	"github.com/hookbus/hookbus/internal/execdir"
	"github.com/hookbus/hookbus/internal/pluginwatch"
	"github.com/hookbus/hookbus/internal/topology"
	"github.com/hookbus/hookbus/pkg/events"
)

// Config configures the registry.
type Config struct {
	// Consumer is the durable consumer all registry replicas share.
	Consumer string
	// AckWait is how long a command may take before JetStream hands it to
	// another replica.
	AckWait time.Duration
	// RetryDelay is how long a command that could not be applied (storage
	// unavailable) waits before it is tried again; the wait doubles with
	// each attempt, up to MaxRetryDelay.
	RetryDelay    time.Duration
	MaxRetryDelay time.Duration
	// MaxAttempts bounds the deliveries of a command: one still not
	// applied after that many is answered with an error and dropped.
	MaxAttempts int
	// CatchUpTimeout bounds the wait for the plugin view to hold every
	// write before a command is planned.
	CatchUpTimeout time.Duration
	// ConsumerCheck is how often the registry's durable consumer is
	// looked up; a missing one is created again.
	ConsumerCheck time.Duration
	// Topology is what the registry checks at start.
	Topology topology.Config
	// Version is reported by the micro service.
	Version string
	// WebhookAllow are the internal networks webhooks may reach (the
	// dispatcher's allow-list): a webhook whose URL is a literal address
	// is refused at create when netguard refuses it.
	WebhookAllow []netip.Prefix
	// HookSessionSweep is how often the temporary hooks of expired
	// sessions are looked for and removed.
	HookSessionSweep time.Duration
	// HookExecDir is the dispatcher's exec directory: an exec hook is
	// refused at create when it is empty (exec hooks off) or when the
	// program is not an executable regular file inside it.
	HookExecDir string
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		Consumer:         "hookbus-registry",
		AckWait:          30 * time.Second,
		RetryDelay:       time.Second,
		MaxRetryDelay:    time.Minute,
		MaxAttempts:      10,
		CatchUpTimeout:   10 * time.Second,
		ConsumerCheck:    5 * time.Second,
		Topology:         topology.DefaultConfig(),
		Version:          "0.1.0",
		HookSessionSweep: time.Second,
	}
}

// Validate reports the first unusable setting.
func (c Config) Validate() error {
	if err := events.ValidateName("consumer", c.Consumer); err != nil {
		return err
	}
	if c.AckWait < time.Second {
		return fmt.Errorf("registry ack wait %s: at least 1s", c.AckWait)
	}
	switch {
	case c.RetryDelay <= 0 || c.MaxRetryDelay < c.RetryDelay:
		return fmt.Errorf("registry retry delays %s to %s: must be positive and in order", c.RetryDelay, c.MaxRetryDelay)
	case c.MaxAttempts < 1:
		return fmt.Errorf("registry max attempts %d: at least 1", c.MaxAttempts)
	case c.CatchUpTimeout <= 0 || c.ConsumerCheck <= 0:
		return fmt.Errorf("registry catch-up timeout %s and consumer check %s: must be positive", c.CatchUpTimeout, c.ConsumerCheck)
	case c.HookSessionSweep <= 0 || c.HookSessionSweep > events.HookSessionTTL:
		return fmt.Errorf("registry hook session sweep %s: want more than 0, at most the session TTL %s", c.HookSessionSweep, events.HookSessionTTL)
	}
	if err := execdir.ValidateDir(c.HookExecDir); err != nil {
		return err
	}
	return c.Topology.Validate()
}

// Service is the registry. Several may run at once on the same NATS.
type Service struct {
	cfg   Config
	nc    *nats.Conn
	js    jetstream.JetStream
	log   *slog.Logger
	codec events.Codec
	now   func() time.Time

	plugins      *pluginwatch.Watcher // set by Run
	hookSessions jetstream.KeyValue   // set by Run
	ready        atomic.Bool          // the plugin command consumer is read
	hooksReady   atomic.Bool          // the hook command consumer is read
}

// New builds a registry on nc; Run starts it. A nil logger discards logs.
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
	return &Service{cfg: cfg, nc: nc, js: js, log: log.With("service", "registry"), now: time.Now}, nil
}

// errNotReady is what Ready returns until Run has started every part.
var errNotReady = errors.New("registry not started")

// Ready returns nil once the registry consumes commands and answers
// queries.
func (s *Service) Ready(context.Context) error {
	if !s.ready.Load() || !s.hooksReady.Load() {
		return errNotReady
	}
	return nil
}

// Run checks the topology, loads the plugin view, then applies commands and
// answers queries until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	kv, err := pluginwatch.OpenBucket(ctx, s.js, s.cfg.Topology, s.log)
	if err != nil {
		return err
	}
	s.plugins = pluginwatch.New(s.js, kv, s.log, nil)
	hooks, err := s.js.KeyValue(ctx, events.BucketHooks)
	if err != nil {
		return fmt.Errorf("bucket %s: %w", events.BucketHooks, err)
	}
	if s.hookSessions, err = s.js.KeyValue(ctx, events.BucketHookSessions); err != nil {
		return fmt.Errorf("bucket %s: %w", events.BucketHookSessions, err)
	}
	hookState, err := s.js.KeyValue(ctx, events.BucketHookState)
	if err != nil {
		return fmt.Errorf("bucket %s: %w", events.BucketHookState, err)
	}
	commands := &durable.Keeper{
		Stream: events.StreamCommands,
		Config: jetstream.ConsumerConfig{
			Durable:       s.cfg.Consumer,
			Description:   "Plugin lifecycle commands, applied one at a time in stream order.",
			FilterSubject: events.CommandTypePrefix + ">",
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       s.cfg.AckWait,
			// One command at a time across every replica: commands apply in
			// the order they were stored, and a cascade never interleaves
			// with another command. Revisions still guard every write.
			MaxAckPending: 1,
			// The registry bounds the attempts itself (MaxAttempts).
			MaxDeliver:    -1,
			DeliverPolicy: jetstream.DeliverAllPolicy,
		},
		Read: func(ctx context.Context, cons jetstream.Consumer) error {
			return s.consume(ctx, cons, func(ctx context.Context, msg jetstream.Msg) { s.handle(ctx, kv, msg) })
		},
		Ready: s.ready.Store,
		Check: s.cfg.ConsumerCheck,
		Log:   s.log,
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.plugins.Run(gctx) })
	g.Go(func() error {
		if _, err := s.plugins.CatchUp(gctx); err != nil {
			return err
		}
		svc, err := s.addQueries(kv, hooks, hookState)
		if err != nil {
			return err
		}
		defer func() { _ = svc.Stop() }()
		if err := s.nc.FlushTimeout(10 * time.Second); err != nil {
			s.log.Warn("query subscriptions not confirmed by the server yet", "err", err)
		}
		s.log.Info("registry ready", "consumer", s.cfg.Consumer)
		hg, hctx := errgroup.WithContext(gctx)
		hg.Go(func() error { return commands.Run(hctx, s.js) })
		hg.Go(func() error { return s.hookCommands(hooks).Run(hctx, s.js) })
		hg.Go(func() error { return s.sweepSessions(hctx, hooks) })
		return hg.Wait()
	})
	err = g.Wait()
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// consume hands one command at a time to handle until ctx ends or the
// consumer is gone.
func (s *Service) consume(ctx context.Context, cons jetstream.Consumer, handle func(context.Context, jetstream.Msg)) error {
	for {
		fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		msgs, err := cons.Fetch(1, jetstream.FetchContext(fctx))
		if err == nil {
			for msg := range msgs.Messages() {
				handle(ctx, msg)
			}
			err = msgs.Error()
		}
		cancel()
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, jetstream.ErrConsumerDeleted), errors.Is(err, jetstream.ErrConsumerNotFound):
			return err
		case err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, nats.ErrTimeout):
			s.log.Warn("fetch command", "err", err)
			if !sleep(ctx, s.cfg.RetryDelay) {
				return nil
			}
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// inboxOnly drops a request whose reply subject is not an inbox: a
// JetStream push consumer's delivery has a $JS.ACK. reply, and nothing is
// answered there (docs/security.md).
func (s *Service) inboxOnly(h micro.HandlerFunc) micro.Handler {
	return micro.HandlerFunc(func(r micro.Request) {
		if err := events.CheckRequestReply(r.Reply()); err != nil {
			s.log.Debug("query refused", "subject", r.Subject(), "err", err)
			return
		}
		h(r)
	})
}

// addQueries starts the hookbus-registry micro service (get and list);
// replicas share its endpoints through the micro queue group.
func (s *Service) addQueries(kv, hooks, hookState jetstream.KeyValue) (micro.Service, error) {
	svc, err := micro.AddService(s.nc, micro.Config{
		Name:        "hookbus-registry",
		Version:     s.cfg.Version,
		Description: "Hookbus plugin registry: get and list plugin state, list hooks and their attempts.",
	})
	if err != nil {
		return nil, fmt.Errorf("micro service: %w", err)
	}
	if err := svc.AddEndpoint("get", s.inboxOnly(func(r micro.Request) { s.serveGet(kv, r) }),
		micro.WithEndpointSubject(events.RegistryGetSubject)); err != nil {
		return nil, fmt.Errorf("endpoint get: %w", err)
	}
	if err := svc.AddEndpoint("list", s.inboxOnly(s.serveList),
		micro.WithEndpointSubject(events.RegistryListSubject)); err != nil {
		return nil, fmt.Errorf("endpoint list: %w", err)
	}
	if err := svc.AddEndpoint("hook-list", s.inboxOnly(func(r micro.Request) { s.serveHookList(hooks, hookState, r) }),
		micro.WithEndpointSubject(events.HookListSubject)); err != nil {
		return nil, fmt.Errorf("endpoint hook-list: %w", err)
	}
	if err := svc.AddEndpoint("hook-attempts", s.inboxOnly(func(r micro.Request) { s.serveHookAttempts(hooks, hookState, r) }),
		micro.WithEndpointSubject(events.HookAttemptsSubject)); err != nil {
		return nil, fmt.Errorf("endpoint hook-attempts: %w", err)
	}
	return svc, nil
}
