// Package natsembed runs a NATS server with JetStream inside the process:
// the all-in-one `hookbus serve` uses it so a new user needs nothing else.
package natsembed

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Config configures the embedded server. Zero fields take the value of
// DefaultConfig when passed through it; New uses the struct as given.
type Config struct {
	// ServerName names the server in logs and in JetStream's meta data.
	ServerName string
	// Addr is the client listener, host:port. Port -1 picks a free port.
	// The default listens on loopback only, so other processes and other
	// languages on this machine can connect but nothing else can.
	Addr string
	// StoreDir is where JetStream keeps its files.
	StoreDir string
	// WebsocketAddr, when not empty, opens a WebSocket listener (no TLS, for
	// local use such as browsers and nats.ws clients) on host:port.
	WebsocketAddr string
	// MonitorAddr, when not empty, opens NATS' HTTP monitoring endpoint
	// (/varz, /jsz, /healthz) on host:port.
	MonitorAddr string
	// MaxPayload is the largest message the server accepts, headers
	// included. It must exceed the event size limit plus its headers.
	MaxPayload int32
	// SyncAlways fsyncs every JetStream write before it is acknowledged, so
	// an acknowledged event survives a power loss, not only a crash of the
	// process. Slower; on by default.
	SyncAlways bool
	// ReadyTimeout bounds how long Start waits for the server to accept
	// connections.
	ReadyTimeout time.Duration
}

// DefaultConfig returns the all-in-one defaults: 127.0.0.1:4222, ./data,
// 2 MiB payloads, fsync on every write, no WebSocket or monitoring listener.
func DefaultConfig() Config {
	return Config{
		ServerName:   "hookbus",
		Addr:         "127.0.0.1:4222",
		StoreDir:     "./data",
		MaxPayload:   2 << 20,
		SyncAlways:   true,
		ReadyTimeout: 10 * time.Second,
	}
}

// Validate reports the first unusable field.
func (c Config) Validate() error {
	if _, _, err := splitAddr(c.Addr); err != nil {
		return fmt.Errorf("nats addr %q: %w", c.Addr, err)
	}
	if c.StoreDir == "" {
		return errors.New("nats store dir: required")
	}
	for name, addr := range map[string]string{"websocket": c.WebsocketAddr, "monitor": c.MonitorAddr} {
		if addr == "" {
			continue
		}
		if _, _, err := splitAddr(addr); err != nil {
			return fmt.Errorf("nats %s addr %q: %w", name, addr, err)
		}
	}
	if c.MaxPayload < 1<<20 {
		return fmt.Errorf("nats max payload %d: must be at least 1 MiB", c.MaxPayload)
	}
	return nil
}

func splitAddr(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < -1 || port > 65535 {
		return "", 0, fmt.Errorf("port %q: want -1 (any free port) to 65535", p)
	}
	return host, port, nil
}

// Server is an embedded NATS server with JetStream.
type Server struct {
	cfg Config
	log *slog.Logger
	ns  *server.Server
}

// New builds the server without starting it. A nil logger discards logs.
func New(cfg Config, log *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	opts, err := cfg.options()
	if err != nil {
		return nil, err
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("nats server: %w", err)
	}
	ns.SetLoggerV2(slogAdapter{log.With("component", "nats")}, false, false, false)
	return &Server{cfg: cfg, log: log, ns: ns}, nil
}

func (c Config) options() (*server.Options, error) {
	host, port, _ := splitAddr(c.Addr)
	opts := &server.Options{
		ServerName: c.ServerName,
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   c.StoreDir,
		MaxPayload: c.MaxPayload,
		// The process owns signals; `hookbus serve` drains its clients and
		// then calls Shutdown.
		NoSigs:     true,
		SyncAlways: c.SyncAlways,
	}
	if c.WebsocketAddr != "" {
		h, p, _ := splitAddr(c.WebsocketAddr)
		opts.Websocket.Host, opts.Websocket.Port, opts.Websocket.NoTLS = h, p, true
	}
	if c.MonitorAddr != "" {
		h, p, _ := splitAddr(c.MonitorAddr)
		opts.HTTPHost, opts.HTTPPort = h, p
	}
	return opts, nil
}

// Start starts the server and waits until it accepts connections and
// JetStream is enabled, or ctx ends, or Config.ReadyTimeout passes.
func (s *Server) Start(ctx context.Context) error {
	go s.ns.Start()
	timeout := s.cfg.ReadyTimeout
	if timeout <= 0 {
		timeout = DefaultConfig().ReadyTimeout
	}
	if d, ok := ctx.Deadline(); ok && time.Until(d) < timeout {
		timeout = time.Until(d)
	}
	if !s.ns.ReadyForConnections(timeout) {
		s.Shutdown()
		return fmt.Errorf("nats server on %s not ready after %s (is the port in use?)", s.cfg.Addr, timeout)
	}
	if !s.ns.JetStreamEnabled() {
		s.Shutdown()
		return fmt.Errorf("nats server: jetstream did not start (store dir %s)", s.cfg.StoreDir)
	}
	s.log.Info("embedded nats started", "url", s.ClientURL(), "store_dir", s.cfg.StoreDir, "sync_always", s.cfg.SyncAlways)
	return nil
}

// ClientURL is the nats:// URL clients connect to, with the real port when
// Config.Addr asked for any free one.
func (s *Server) ClientURL() string { return s.ns.ClientURL() }

// WebsocketURL is the ws:// URL of the WebSocket listener, or "" if off.
func (s *Server) WebsocketURL() string {
	if s.cfg.WebsocketAddr == "" {
		return ""
	}
	return s.ns.WebsocketURL()
}

// Shutdown stops the server and waits until it has stopped. JetStream
// flushes its files on the way down. Safe to call more than once.
func (s *Server) Shutdown() {
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
}

// slogAdapter routes the server's logger through slog. Notices (the
// start-up banner) go to Debug: Info is for Hookbus's own lifecycle lines.
type slogAdapter struct{ log *slog.Logger }

func (a slogAdapter) Noticef(format string, v ...any) { a.log.Debug(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Warnf(format string, v ...any)   { a.log.Warn(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Fatalf(format string, v ...any)  { a.log.Error(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Errorf(format string, v ...any)  { a.log.Error(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Debugf(format string, v ...any)  { a.log.Debug(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Tracef(format string, v ...any)  { a.log.Debug(fmt.Sprintf(format, v...)) }
