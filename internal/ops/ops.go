// Package ops serves the operations endpoint of a Hookbus process on one
// port: /livez (the process answers; never depends on NATS), /readyz (every
// registered check passes) and /metrics (Prometheus).
package ops

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Config configures the endpoint.
type Config struct {
	// Addr is host:port to listen on. Port 0 picks a free one (tests).
	Addr string
	// CheckTimeout bounds each readiness check.
	CheckTimeout time.Duration
}

// DefaultConfig listens on 127.0.0.1:8090, a port of its own: 4222 and 8222
// belong to NATS.
func DefaultConfig() Config {
	return Config{Addr: "127.0.0.1:8090", CheckTimeout: 2 * time.Second}
}

// Validate reports an unusable address or timeout.
func (c Config) Validate() error {
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return fmt.Errorf("ops addr %q: %w", c.Addr, err)
	}
	if c.CheckTimeout <= 0 {
		return fmt.Errorf("ops check timeout %s: must be positive", c.CheckTimeout)
	}
	return nil
}

// CheckFunc reports whether one part of the process is ready; nil means
// ready. It must return promptly once ctx is done.
type CheckFunc func(ctx context.Context) error

// Server is the operations endpoint.
type Server struct {
	cfg      Config
	log      *slog.Logger
	registry *prometheus.Registry

	mu     sync.Mutex
	checks map[string]CheckFunc

	ready chan struct{} // closed once listening
	addr  string
}

// New builds the endpoint; Run serves it. Metrics are gathered from reg,
// which also gets the Go and process collectors and hookbus_ready. A nil
// logger discards logs.
func New(cfg Config, reg *prometheus.Registry, log *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: log, registry: reg, checks: map[string]CheckFunc{}, ready: make(chan struct{})}
	if err := reg.Register(collectors.NewGoCollector()); err != nil {
		return nil, fmt.Errorf("register go collector: %w", err)
	}
	if err := reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return nil, fmt.Errorf("register process collector: %w", err)
	}
	if err := reg.Register(readinessCollector{s}); err != nil {
		return nil, fmt.Errorf("register readiness collector: %w", err)
	}
	return s, nil
}

// AddCheck adds a readiness check under name (e.g. "nats", "registry").
// Adding a name twice replaces the check.
func (s *Server) AddCheck(name string, f CheckFunc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checks[name] = f
}

// Handler returns the HTTP handler of the three endpoints.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", s.serveReady)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{}))
	return mux
}

// checkResult is the outcome of one readiness check.
type checkResult struct {
	name string
	err  error
}

// runChecks runs every check concurrently, each within CheckTimeout, and
// returns the results sorted by name.
func (s *Server) runChecks(ctx context.Context) []checkResult {
	s.mu.Lock()
	names := make([]string, 0, len(s.checks))
	for n := range s.checks {
		names = append(names, n)
	}
	funcs := make([]CheckFunc, len(names))
	slices.Sort(names)
	for i, n := range names {
		funcs[i] = s.checks[n]
	}
	s.mu.Unlock()

	results := make([]checkResult, len(names))
	var wg sync.WaitGroup
	for i := range names {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, s.cfg.CheckTimeout)
			defer cancel()
			results[i] = checkResult{name: names[i], err: funcs[i](cctx)}
		})
	}
	wg.Wait()
	return results
}

// serveReady answers 200 when every check passes and 503 otherwise, with
// one line per check: "[+]name ok" or "[-]name: reason".
func (s *Server) serveReady(w http.ResponseWriter, r *http.Request) {
	results := s.runChecks(r.Context())
	var b strings.Builder
	failed := len(results) == 0
	if failed {
		b.WriteString("[-]no checks registered yet\n")
	}
	for _, res := range results {
		if res.err != nil {
			failed = true
			fmt.Fprintf(&b, "[-]%s: %v\n", res.name, res.err)
		} else {
			fmt.Fprintf(&b, "[+]%s ok\n", res.name)
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if failed {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	fmt.Fprint(w, b.String())
}

// Run listens and serves until ctx is done, then shuts down gracefully.
func (s *Server) Run(ctx context.Context) error {
	l, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("ops listen %s: %w", s.cfg.Addr, err)
	}
	s.addr = l.Addr().String()
	close(s.ready)
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	s.log.Info("ops endpoint listening", "addr", s.addr)
	select {
	case err := <-errc:
		return fmt.Errorf("ops serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("ops shutdown: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("ops serve: %w", err)
	}
	return nil
}

// Ready returns nil once Run is listening, or ctx's error.
func (s *Server) Ready(ctx context.Context) error {
	select {
	case <-s.ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Addr is the address Run listens on; valid once Ready returned nil.
func (s *Server) Addr() string {
	<-s.ready
	return s.addr
}

// readinessCollector exports hookbus_ready{check} at scrape time.
type readinessCollector struct{ s *Server }

var readyDesc = prometheus.NewDesc("hookbus_ready", "1 when the named readiness check passes, 0 when it fails.", []string{"check"}, nil)

func (c readinessCollector) Describe(ch chan<- *prometheus.Desc) { ch <- readyDesc }

func (c readinessCollector) Collect(ch chan<- prometheus.Metric) {
	for _, res := range c.s.runChecks(context.Background()) {
		v := 1.0
		if res.err != nil {
			v = 0
		}
		ch <- prometheus.MustNewConstMetric(readyDesc, prometheus.GaugeValue, v, res.name)
	}
}
