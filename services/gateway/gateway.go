// Package gateway is Hookbus's HTTP gateway: CloudEvents over HTTP for
// clients without a NATS client. POST /events takes the CloudEvents HTTP
// binding 1.0.2 in binary (ce-* headers), structured
// (application/cloudevents+json) and batch
// (application/cloudevents-batch+json, each event on its own) mode,
// validates each event with the wire contract (events.Codec, catalog
// schemas included), publishes it to JetStream with the wire contract's
// Nats-Msg-Id, so a retried POST is stored once, and answers 202 only once
// JetStream stored it; refusals are RFC 9457 problems (docs/protocol.md,
// "HTTP gateway").
//
// Every request carries a bearer token (hookbus gateway token create),
// checked against an in-memory copy of bucket hookbus_gateway_tokens and
// limited to its allowed actions and event types and to its rate; on a
// loopback address requests without a token may be allowed (anonymous).
// POST /events/{type} makes a CloudEvent of a plain JSON webhook.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/time/rate"

	"github.com/hookbus/hookbus/pkg/client"
	"github.com/hookbus/hookbus/pkg/events"
)

// Service is the gateway. Several may run at once on the same NATS.
type Service struct {
	cfg   Config
	log   *slog.Logger
	codec events.Codec
	pub   *client.Publisher
	js    jetstream.JetStream

	tokens      tokenStore
	anonLimiter *rate.Limiter // shared by every anonymous request

	addr  atomic.Pointer[string] // set by Run once listening
	ready atomic.Bool
}

// New builds the gateway on nc; Run serves it. A nil logger discards logs.
func New(cfg Config, nc *nats.Conn, log *slog.Logger) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if nc == nil {
		return nil, errors.New("gateway: nil nats connection")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c, err := client.New(nc, client.WithMaxEventSize(cfg.MaxEventSize))
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	pub, err := c.NewPublisher(client.WithWindow(cfg.Window), client.WithAckTimeout(cfg.AckTimeout))
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	return &Service{
		cfg:         cfg,
		log:         log.With("service", "gateway"),
		codec:       events.Codec{MaxSize: cfg.MaxEventSize},
		pub:         pub,
		js:          js,
		tokens:      tokenStore{tokens: map[string]*storedToken{}},
		anonLimiter: rate.NewLimiter(rate.Limit(cfg.Rate), cfg.Rate),
	}, nil
}

// Handler returns the gateway's HTTP routes: POST /events and POST
// /events/{type}, behind CORS (when configured) and the token check. It
// answers until Run returns; after that, every event is refused with 503.
// Tokens are checked once Run loaded them (503 before).
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /events", s.postEvents)
	mux.HandleFunc("POST /events/{type}", s.postWebhook)
	return s.cors(s.guard(mux))
}

// errNotReady is what Ready returns while Run is not serving.
var errNotReady = errors.New("gateway not serving")

// errTokensNotLoaded is what Ready returns until the tokens are loaded.
var errTokensNotLoaded = errors.New("gateway tokens not loaded yet")

// Ready returns nil while Run serves HTTP requests with the tokens of
// bucket hookbus_gateway_tokens loaded.
func (s *Service) Ready(context.Context) error {
	if !s.ready.Load() {
		return errNotReady
	}
	if !s.tokens.loaded.Load() {
		return errTokensNotLoaded
	}
	return nil
}

// Addr returns the address Run listens on, "" before it listens.
func (s *Service) Addr() string {
	if a := s.addr.Load(); a != nil {
		return *a
	}
	return ""
}

// Run listens on Config.Addr and serves until ctx ends, then shuts down
// gracefully: it stops accepting connections, answers the requests in
// flight (each once JetStream acknowledged its event) and returns nil, or
// an error if that took more than Config.ShutdownTimeout.
func (s *Service) Run(ctx context.Context) error {
	l, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("gateway listen %s: %w", s.cfg.Addr, err)
	}
	addr := l.Addr().String()
	s.addr.Store(&addr)
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		ReadTimeout:       s.cfg.ReadTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
		MaxHeaderBytes:    s.cfg.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	watchErr := make(chan error, 1)
	go func() { watchErr <- s.watchTokens(wctx) }()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	s.ready.Store(true)
	s.log.Info("gateway listening", "addr", addr)
	if s.cfg.anonymous() {
		s.log.Warn("gateway anonymous use is on: requests without a token may publish and call every event type", "addr", addr)
	}

	var serveErr, watchFailed error
	watching := true
	select {
	case serveErr = <-errc:
	case watchFailed = <-watchErr: // nil only when ctx ended
		watching = false
	case <-ctx.Done():
	}
	s.ready.Store(false)
	stopWatch()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownTimeout)
	defer cancel()
	var errs []error
	if watchFailed != nil {
		errs = append(errs, watchFailed)
	}
	if serveErr != nil {
		errs = append(errs, fmt.Errorf("gateway serve: %w", serveErr))
	} else {
		if err := srv.Shutdown(sctx); err != nil {
			_ = srv.Close()
			errs = append(errs, fmt.Errorf("gateway shutdown: requests still in flight after %s: %w", s.cfg.ShutdownTimeout, err))
		}
		<-errc // http.ErrServerClosed
	}
	if watching {
		if err := <-watchErr; err != nil {
			errs = append(errs, err)
		}
	}
	// Every handler has returned (or Close cut them off): what is left in
	// the window belongs to nobody, Close waits for it within the same
	// bound.
	if err := s.pub.Close(sctx); err != nil {
		errs = append(errs, fmt.Errorf("gateway publisher: %w", err))
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	s.log.Info("gateway stopped")
	return nil
}
