// Package gateway is Hookbus's HTTP gateway: CloudEvents over HTTP for
// clients without a NATS client. POST /events takes the CloudEvents HTTP
// binding 1.0.2 in binary (ce-* headers), structured
// (application/cloudevents+json) and batch
// (application/cloudevents-batch+json, each event on its own) mode,
// validates each event with the wire contract (events.Codec, catalog
// schemas included), publishes it to JetStream with the wire contract's
// Nats-Msg-Id, so a retried POST is stored once, and answers 202 only once
// JetStream stored it; refusals are RFC 9457 problems (docs/protocol.md,
// "HTTP gateway"). POST /calls/{type} runs a chain now through
// hookbus.call.<type> and answers its result ("Calls over HTTP"). GET
// /openapi.json describes the routes.
//
// Every request carries a bearer token (hookbus gateway token create),
// checked against an in-memory copy of bucket hookbus_gateway_tokens and
// limited to its allowed actions and event types and to its rate; on a
// loopback address requests without a token may be allowed (anonymous).
// POST /events/{type} makes a CloudEvent of a plain JSON webhook.
package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/semaphore"
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
	nc    *nats.Conn // device pushes

	tokens      tokenStore
	anonLimiter *rate.Limiter       // shared by every anonymous request
	inflight    *semaphore.Weighted // Config.MaxInflightBytes
	bus         *client.Client      // calls
	met         *metrics
	life        *deviceLifecycle
	devicesKV   bucket      // hookbus_devices: generations and push cursors
	presenceKV  bucket      // hookbus_device_presence
	tls         *tls.Config // nil: plain HTTP

	addr  atomic.Pointer[string] // set by Run once listening
	ready atomic.Bool

	// calls ends half way through the shutdown: the calls still waiting
	// for their chain are then answered 503, within ShutdownTimeout.
	calls     context.Context
	stopCalls context.CancelFunc
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
	var tlsCfg *tls.Config
	if cfg.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("gateway TLS: %w", err)
		}
		tlsCfg = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
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
	calls, stopCalls := context.WithCancel(context.Background())
	return &Service{
		calls:       calls,
		stopCalls:   stopCalls,
		cfg:         cfg,
		log:         log.With("service", "gateway"),
		codec:       events.Codec{MaxSize: cfg.MaxEventSize},
		pub:         pub,
		js:          js,
		nc:          nc,
		bus:         c,
		met:         newMetrics(),
		life:        newDeviceLifecycle(),
		devicesKV:   bucket{name: events.BucketDevices},
		presenceKV:  bucket{name: events.BucketDevicePresence},
		tls:         tlsCfg,
		tokens:      tokenStore{tokens: map[string]*storedToken{}},
		anonLimiter: rate.NewLimiter(rate.Limit(cfg.Rate), cfg.Rate),
		inflight:    newInflight(cfg),
	}, nil
}

// Handler returns the gateway's HTTP routes (routes), behind CORS (when
// configured), each request counted and timed (Collector), and every
// route but GET /openapi.json behind the token check (guard). It answers
// until Run returns; after that, every event is refused with 503. Tokens
// are checked once Run loaded them (503 before).
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	for _, rt := range s.routes() {
		h := rt.handler
		if !rt.public {
			h = s.guard(s.bounded(h)).ServeHTTP
		}
		mux.HandleFunc(rt.pattern, s.met.routed(rt.pattern, h))
	}
	return s.cors(s.met.instrument(mux))
}

// route is a pattern of the mux and its handler; a public one is served
// without a token.
type route struct {
	pattern string
	handler http.HandlerFunc
	public  bool
}

// routes lists every route the gateway serves; openapi.json describes
// each one.
func (s *Service) routes() []route {
	return []route{
		{"POST /events", s.postEvents, false},
		{"POST /events/{type}", s.postWebhook, false},
		{"POST /calls/{type}", s.postCall, false},
		{"GET /openapi.json", getOpenAPI, true},
		// Devices authenticate with their own header, not a bearer token.
		{"GET /devices/websocket", s.deviceSocket, true},
	}
}

// Collector returns the gateway's metrics, for a Prometheus registry:
// hookbus_gateway_requests_total{route,status,token},
// hookbus_gateway_request_duration_seconds{route} and
// hookbus_gateway_events_total{result}.
func (s *Service) Collector() prometheus.Collector { return s.met }

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

// Run listens on Config.Addr (HTTPS with Config.TLSCertFile) and serves
// until ctx ends, then shuts down gracefully: it stops accepting
// connections, answers the requests in flight (each once JetStream acknowledged its event) and returns nil, or
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
		TLSConfig:         s.tls,
	}
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	watchErr := make(chan error, 1)
	go func() { watchErr <- s.watchTokens(wctx) }()
	errc := make(chan error, 1)
	go func() {
		if s.tls != nil {
			errc <- srv.ServeTLS(l, "", "") // the certificate is in TLSConfig
			return
		}
		errc <- srv.Serve(l)
	}()
	s.ready.Store(true)
	s.log.Info("gateway listening", "addr", addr, "tls", s.tls != nil)
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
		stop := time.AfterFunc(s.cfg.ShutdownTimeout/2, s.stopCalls)
		defer stop.Stop()
		if err := srv.Shutdown(sctx); err != nil {
			_ = srv.Close()
			errs = append(errs, fmt.Errorf("gateway shutdown: requests still in flight after %s: %w", s.cfg.ShutdownTimeout, err))
		}
		// Shutdown does not wait for hijacked connections: the device
		// sessions close now (1001), not never.
		s.stopCalls()
		<-errc // http.ErrServerClosed
		if err := s.waitDevices(sctx); err != nil {
			errs = append(errs, fmt.Errorf("gateway shutdown: %w", err))
		}
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

// bucket is a KV bucket the gateway uses at every device upgrade or
// session: looked up (a JetStream request) once, then kept.
type bucket struct {
	name string
	kv   atomic.Pointer[jetstream.KeyValue]
}

// get returns the bucket, looking it up on js the first time (and again
// after a failed lookup).
func (b *bucket) get(ctx context.Context, js jetstream.JetStream) (jetstream.KeyValue, error) {
	if kv := b.kv.Load(); kv != nil {
		return *kv, nil
	}
	kv, err := js.KeyValue(ctx, b.name)
	if err != nil {
		return nil, err
	}
	b.kv.Store(&kv)
	return kv, nil
}
