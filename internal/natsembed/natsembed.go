// Package natsembed runs a NATS server with JetStream inside the process:
// the all-in-one `hookbus serve` uses it so a new user needs nothing else.
package natsembed

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// GeneratedUser is the user of the generated password: the one identity
// of the all-in-one when a listener is off loopback and no user is
// configured.
const GeneratedUser = "hookbus"

// PasswordFileName is the file, in the store directory, that keeps the
// generated password (Config.PasswordFile).
const PasswordFileName = "nats.password"

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
	// local use such as browsers and nats.ws clients) on host:port. Port -1
	// picks a free port (just before the server starts: the origin check
	// needs it). A handshake whose Origin header is neither one of the
	// listener's own origins (http://host:port for the addresses it listens
	// on; for 0.0.0.0 or :: every address of this machine, localhost and
	// the host name) nor in WebsocketOrigins is refused with 403. A
	// handshake without an Origin header (not a browser) is accepted.
	WebsocketAddr string
	// WebsocketOrigins are more origins (scheme://host[:port], http or
	// https) allowed to open the WebSocket listener, e.g. the web app that
	// uses it. Needs WebsocketAddr.
	WebsocketOrigins []string
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

	// User and Password, set together, are the one identity every client
	// must authenticate as, on every listener, loopback included.
	//
	// Without them, the server requires no authentication while every
	// listener (client and WebSocket) is on loopback; once one is off
	// loopback (0.0.0.0, ::, a LAN address, a host name other than
	// localhost) it requires user GeneratedUser with the password in
	// PasswordFile, generated (32 random bytes, hex) on first start. Either
	// way the identity may do everything: least privilege per service is for
	// a split deployment on a NATS server of its own.
	User, Password string
	// PasswordFile keeps the generated password (mode 0600, one line).
	// Empty means PasswordFileName in StoreDir.
	PasswordFile string
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
	if (c.User == "") != (c.Password == "") {
		return errors.New("nats auth: a user and a password go together: set both or neither")
	}
	if len(c.WebsocketOrigins) > 0 && c.WebsocketAddr == "" {
		return errors.New("nats websocket origins: set without a WebSocket listener")
	}
	for _, o := range c.WebsocketOrigins {
		if err := ValidateOrigin(o); err != nil {
			return fmt.Errorf("nats websocket origin %q: %w", o, err)
		}
	}
	return nil
}

// ValidateOrigin accepts what a browser sends as Origin: scheme://host or
// scheme://host:port, scheme http or https, nothing after.
func ValidateOrigin(o string) error {
	const want = "want scheme://host[:port] with scheme http or https, e.g. https://app.example.com"
	u, err := url.Parse(o)
	if err != nil {
		return fmt.Errorf("%w; %s", err, want)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return errors.New(want)
	case u.Host == "" || u.Hostname() == "":
		return fmt.Errorf("no host; %s", want)
	case u.User != nil || u.Path != "" || u.RawQuery != "" || u.Fragment != "" || strings.HasSuffix(o, "?") || strings.HasSuffix(o, "#"):
		return fmt.Errorf("an origin has no user, path (not even /), query or fragment; %s", want)
	case strings.Contains(u.Hostname(), "*"):
		return fmt.Errorf("no wildcards: list every origin; %s", want)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("port %q: want 1 to 65535", p)
		}
	} else if strings.HasSuffix(u.Host, ":") {
		return fmt.Errorf("empty port; %s", want)
	}
	return nil
}

// isLoopback reports whether host names only this machine: localhost or a
// loopback IP. An empty host (every interface), an unspecified address,
// any other IP and any other host name are not loopback.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// authRequired reports whether the server must require a user: one is
// configured, or a listener is off loopback.
func (c Config) authRequired() bool {
	if c.User != "" {
		return true
	}
	for _, addr := range []string{c.Addr, c.WebsocketAddr} {
		if addr == "" {
			continue
		}
		if host, _, err := splitAddr(addr); err != nil || !isLoopback(host) {
			return true
		}
	}
	return false
}

func (c Config) passwordFile() string {
	if c.PasswordFile != "" {
		return c.PasswordFile
	}
	return filepath.Join(c.StoreDir, PasswordFileName)
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
	cfg            Config
	log            *slog.Logger
	ns             *server.Server
	user, password string   // "" when the server requires no authentication
	auth           string   // how clients authenticate, for the start line
	origins        []string // origins the WebSocket listener accepts
	lock           *os.File // held on StoreDir/LockFileName until Shutdown
}

// New builds the server without starting it. A nil logger discards logs.
// When the server needs the generated password (Config.User) and
// Config.PasswordFile does not exist yet, New creates it and logs, once, a
// warning saying where it is and how clients use it.
func New(cfg Config, log *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// Before anything touches the directory (the password file, the
	// store): a second server on it is refused at once.
	lock, err := lockStoreDir(cfg.StoreDir)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: log, auth: "none (every listener on loopback)", lock: lock}
	ok := false
	defer func() {
		if !ok {
			s.unlock()
		}
	}()
	switch {
	case cfg.User != "":
		s.user, s.password, s.auth = cfg.User, cfg.Password, "user "+cfg.User+" (configured)"
	case cfg.authRequired():
		path := cfg.passwordFile()
		pw, shown, err := s.generatedPassword(path)
		if err != nil {
			return nil, err
		}
		s.user, s.password, s.auth = GeneratedUser, pw, "user "+GeneratedUser+", password in "+shown
	}
	opts, err := cfg.options(s.user, s.password)
	if err != nil {
		return nil, err
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("nats server: %w", err)
	}
	ns.SetLoggerV2(slogAdapter{log.With("component", "nats")}, false, false, false)
	s.ns, s.origins = ns, opts.Websocket.AllowedOrigins
	ok = true
	return s, nil
}

// generatedPassword reads the password file, or creates it with a new
// random password if there is none. shown is the file's absolute path.
func (s *Server) generatedPassword(path string) (pw, shown string, err error) {
	shown = path
	if abs, err := filepath.Abs(path); err == nil {
		shown = abs
	}
	pw, created, err := loadOrCreatePassword(path)
	if err != nil {
		return "", "", err
	}
	if created {
		s.log.Warn(fmt.Sprintf("nats auth on (a listener is off loopback and no HOOKBUS_NATS_USER is set): "+
			"generated the password of user %s into %s; clients connect with "+
			"HOOKBUS_NATS_USER=%s HOOKBUS_NATS_PASSWORD=$(cat %s) "+
			"(hookbus commands on this machine, without HOOKBUS_NATS_URL, read it themselves)",
			GeneratedUser, shown, GeneratedUser, shown), "user", GeneratedUser, "path", shown)
		return pw, shown, nil
	}
	if info, err := os.Stat(path); err == nil && info.Mode().Perm()&0o077 != 0 {
		s.log.Warn("nats password file is readable by other users: chmod 600 it", "path", shown, "mode", info.Mode().Perm().String())
	}
	s.log.Info("nats auth on (a listener is off loopback): user "+GeneratedUser+" with the password in the data directory",
		"user", GeneratedUser, "path", shown)
	return pw, shown, nil
}

// ReadPasswordFile returns the password in a file written for
// GeneratedUser (Config.PasswordFile). A missing file is an error that
// matches fs.ErrNotExist.
func ReadPasswordFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("nats password: %w", err)
	}
	pw := strings.TrimSpace(string(b))
	if pw == "" || strings.ContainsAny(pw, "\r\n") {
		return "", fmt.Errorf("nats password: %s is not one line with the password: delete it and restart hookbus serve to generate a new one", path)
	}
	return pw, nil
}

// NewPassword returns a new random NATS password: 32 bytes in hex (a
// NATS configuration reads it as a string, never as a number).
func NewPassword() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b)
}

// loadOrCreatePassword reads path, or creates it (mode 0600, its
// directory 0700 if missing) with 32 random bytes in hex. created is true
// when this call wrote the file.
func loadOrCreatePassword(path string) (pw string, created bool, err error) {
	pw, err = ReadPasswordFile(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return pw, false, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", false, fmt.Errorf("nats password: %w", err)
	}
	pw = NewPassword()
	// O_EXCL: never overwrite a password that appeared meanwhile.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		pw, err = ReadPasswordFile(path)
		return pw, false, err
	}
	if err != nil {
		return "", false, fmt.Errorf("nats password: %w", err)
	}
	_, err = f.WriteString(pw + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		// Leave no empty or partial file behind: the next start generates
		// again.
		_ = os.Remove(path)
		return "", false, fmt.Errorf("nats password: write %s: %w", path, err)
	}
	return pw, true, nil
}

// ownOrigins are the origins of a WebSocket listener on host:port: what a
// page served from this listener's own address would send. They are
// literal addresses and names of this machine, never taken from the
// request, so a page on a domain the attacker points at 127.0.0.1 (DNS
// rebinding) is still refused.
func ownOrigins(host string, port int) []string {
	var hosts []string
	ip := net.ParseIP(host)
	switch {
	case host == "" || (ip != nil && ip.IsUnspecified()):
		hosts = []string{"localhost", "127.0.0.1", "::1"}
		if addrs, err := net.InterfaceAddrs(); err == nil {
			for _, a := range addrs {
				if n, ok := a.(*net.IPNet); ok && !n.IP.IsLinkLocalUnicast() {
					hosts = append(hosts, n.IP.String())
				}
			}
		}
		if name, err := os.Hostname(); err == nil && name != "" {
			hosts = append(hosts, name)
		}
	case isLoopback(host):
		hosts = []string{host, "localhost", "127.0.0.1", "::1"}
	default:
		hosts = []string{host}
	}
	var out []string
	for _, h := range hosts {
		o := "http://" + net.JoinHostPort(strings.ToLower(h), strconv.Itoa(port))
		if !slices.Contains(out, o) {
			out = append(out, o)
		}
	}
	return out
}

// freePort returns a port nobody listens on now at host.
func freePort(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (c Config) options(user, password string) (*server.Options, error) {
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
	if user != "" {
		// One identity; nil permissions: it may do everything. WebSocket
		// clients authenticate against the same users (no websocket{}
		// override is set).
		opts.Users = []*server.User{{Username: user, Password: password}}
	}
	if c.WebsocketAddr != "" {
		h, p, _ := splitAddr(c.WebsocketAddr)
		if p == -1 {
			var err error
			if p, err = freePort(h); err != nil {
				return nil, fmt.Errorf("nats websocket addr %q: %w", c.WebsocketAddr, err)
			}
		}
		opts.Websocket.Host, opts.Websocket.Port, opts.Websocket.NoTLS = h, p, true
		// Never empty, so the server always checks the Origin header.
		// SameOrigin stays off: nats-server would then require an origin
		// to be both the request's Host and in the list (refusing every
		// listed origin but our own), and Host comes from the request.
		opts.Websocket.AllowedOrigins = append(ownOrigins(h, p), c.WebsocketOrigins...)
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
	attrs := []any{"url", s.ClientURL(), "store_dir", s.cfg.StoreDir, "sync_always", s.cfg.SyncAlways, "auth", s.auth}
	if s.cfg.WebsocketAddr != "" {
		attrs = append(attrs, "websocket_url", s.WebsocketURL(), "websocket_origins", strings.Join(s.origins, ","))
	}
	s.log.Info("embedded nats started", attrs...)
	return nil
}

// Credentials are the user and password clients must present, or two
// empty strings when the server requires no authentication.
func (s *Server) Credentials() (user, password string) { return s.user, s.password }

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
	s.unlock()
}

// unlock lets another server take the store directory.
func (s *Server) unlock() {
	if s.lock != nil {
		_ = s.lock.Close()
		s.lock = nil
	}
}

// slogAdapter routes the server's logger through slog. Notices (the
// start-up banner) go to Debug: Info is for Hookbus's own lifecycle lines.
type slogAdapter struct{ log *slog.Logger }

func (a slogAdapter) Noticef(format string, v ...any) { a.log.Debug(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Warnf(format string, v ...any) {
	// The users are given in memory by this process, not in a file that
	// bcrypt hashes or nkeys would protect: nothing for an operator to fix.
	if strings.HasPrefix(format, "Plaintext passwords detected") {
		a.log.Debug(fmt.Sprintf(format, v...))
		return
	}
	a.log.Warn(fmt.Sprintf(format, v...))
}
func (a slogAdapter) Fatalf(format string, v ...any) { a.log.Error(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Errorf(format string, v ...any) { a.log.Error(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Debugf(format string, v ...any) { a.log.Debug(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Tracef(format string, v ...any) { a.log.Debug(fmt.Sprintf(format, v...)) }
