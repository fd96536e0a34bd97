package natsembed_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/internal/natsembed"
	"github.com/hookbus/hookbus/internal/natstest"
)

// TestNoAuthOnLoopback: with every listener on loopback and no user
// configured, nothing changes: clients connect without credentials on both
// listeners, and no password file is written.
func TestNoAuthOnLoopback(t *testing.T) {
	cfg := natsembed.DefaultConfig()
	cfg.Addr, cfg.WebsocketAddr, cfg.StoreDir = "127.0.0.1:-1", "localhost:-1", t.TempDir()
	srv := start(t, cfg)
	if u, p := srv.Credentials(); u != "" || p != "" {
		t.Errorf("Credentials = %q, %q; want none on loopback", u, p)
	}
	for _, u := range []string{srv.ClientURL(), loopback(t, srv.WebsocketURL())} {
		nc, err := nats.Connect(u)
		if err != nil {
			t.Fatalf("connect %s without credentials: %v", u, err)
		}
		nc.Close()
	}
	if _, err := os.Stat(filepath.Join(cfg.StoreDir, natsembed.PasswordFileName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("password file on loopback: stat = %v, want none", err)
	}
}

// TestAuthOffLoopback: a client or WebSocket listener off loopback turns
// authentication on, with the generated password, on both listeners.
func TestAuthOffLoopback(t *testing.T) {
	for _, tt := range []struct{ name, addr, ws string }{
		{"client listener on 0.0.0.0", "0.0.0.0:-1", "127.0.0.1:-1"},
		{"websocket listener on 0.0.0.0", "127.0.0.1:-1", "0.0.0.0:-1"},
		{"client listener on every interface", ":-1", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := natsembed.DefaultConfig()
			cfg.Addr, cfg.WebsocketAddr, cfg.StoreDir = tt.addr, tt.ws, t.TempDir()
			srv := start(t, cfg)
			user, pw := srv.Credentials()
			if user != natsembed.GeneratedUser || pw == "" {
				t.Fatalf("Credentials = %q, %q; want user %s and a password", user, pw, natsembed.GeneratedUser)
			}
			urls := []string{loopback(t, srv.ClientURL())}
			if tt.ws != "" {
				urls = append(urls, loopback(t, srv.WebsocketURL()))
			}
			for _, u := range urls {
				requireRefused(t, u)
				requireRefused(t, u, nats.UserInfo(user, "wrong"))
				requireRefused(t, u, nats.UserInfo("someone", pw))
				nc, err := nats.Connect(u, nats.UserInfo(user, pw))
				if err != nil {
					t.Fatalf("connect %s with the generated credentials: %v", u, err)
				}
				nc.Close()
			}
			// The same identity may use JetStream (it has every permission).
			nc, err := nats.Connect(urls[0], nats.UserInfo(user, pw))
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			js, err := jetstream.New(nc)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			if _, err := js.AccountInfo(ctx); err != nil {
				t.Fatalf("jetstream as %s: %v", user, err)
			}
		})
	}
}

// TestGeneratedPasswordFile: the password is 32 random bytes in hex, in
// <store>/nats.password with mode 0600 (its directory created), announced
// once with where it is and how clients use it, and reused by the next
// start, which logs where it is; no log line shows the password.
func TestGeneratedPasswordFile(t *testing.T) {
	cfg := natsembed.DefaultConfig()
	cfg.Addr, cfg.StoreDir = "0.0.0.0:-1", filepath.Join(t.TempDir(), "data")
	var logs natstest.SyncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))

	srv := startLogged(t, cfg, log)
	_, pw := srv.Credentials()
	path := filepath.Join(cfg.StoreDir, natsembed.PasswordFileName)
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm != 0o600 {
		t.Errorf("%s has mode %o, want 600", path, perm)
	}
	if b, err := hex.DecodeString(pw); err != nil || len(b) != 32 {
		t.Errorf("password %d characters, hex error %v; want 32 bytes in hex", len(pw), err)
	}
	if got, err := natsembed.ReadPasswordFile(path); err != nil || got != pw {
		t.Errorf("ReadPasswordFile = %v; want the server's password", err)
	}
	first := logs.String()
	for _, want := range []string{"level=WARN", "generated the password of user hookbus", path,
		"HOOKBUS_NATS_USER=hookbus HOOKBUS_NATS_PASSWORD=$(cat " + path + ")"} {
		if !strings.Contains(first, want) {
			t.Errorf("first start logged:\n%s\nwant it to say %q", first, want)
		}
	}
	srv.Shutdown()

	logs = natstest.SyncBuffer{}
	log = slog.New(slog.NewTextHandler(&logs, nil))
	srv = startLogged(t, cfg, log)
	if _, again := srv.Credentials(); again != pw {
		t.Error("second start: a new password, want the stored one")
	}
	nc, err := nats.Connect(loopback(t, srv.ClientURL()), nats.UserInfo(natsembed.GeneratedUser, pw))
	if err != nil {
		t.Fatalf("second start: connect with the first start's password: %v", err)
	}
	nc.Close()
	second := logs.String()
	if strings.Contains(second, "generated") || !strings.Contains(second, "level=INFO msg=\"nats auth on") || !strings.Contains(second, path) {
		t.Errorf("second start logged:\n%s\nwant an Info line saying auth is on and where the file is, nothing generated", second)
	}
	if strings.Contains(first+second, pw) {
		t.Error("a log line shows the password")
	}
}

// TestConfiguredUser: a configured user and password are required as given,
// on loopback too, and nothing is generated.
func TestConfiguredUser(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:-1", "0.0.0.0:-1"} {
		t.Run(addr, func(t *testing.T) {
			cfg := natsembed.DefaultConfig()
			cfg.Addr, cfg.WebsocketAddr, cfg.StoreDir = addr, "127.0.0.1:-1", t.TempDir()
			cfg.User, cfg.Password = "alice", "correct horse"
			srv := start(t, cfg)
			if u, p := srv.Credentials(); u != "alice" || p != "correct horse" {
				t.Errorf("Credentials = %q, %q; want the configured ones", u, p)
			}
			for _, u := range []string{loopback(t, srv.ClientURL()), loopback(t, srv.WebsocketURL())} {
				requireRefused(t, u)
				requireRefused(t, u, nats.UserInfo("alice", "wrong"))
				requireRefused(t, u, nats.UserInfo(natsembed.GeneratedUser, "correct horse"))
				nc, err := nats.Connect(u, nats.UserInfo("alice", "correct horse"))
				if err != nil {
					t.Fatalf("connect %s as the configured user: %v", u, err)
				}
				nc.Close()
			}
			if _, err := os.Stat(filepath.Join(cfg.StoreDir, natsembed.PasswordFileName)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("password file with a configured user: stat = %v, want none", err)
			}
		})
	}
}

// TestBadPasswordFile: an empty password file is an error naming it, not
// a new password (clients hold the old one).
func TestBadPasswordFile(t *testing.T) {
	cfg := natsembed.DefaultConfig()
	cfg.Addr, cfg.StoreDir = "0.0.0.0:-1", t.TempDir()
	path := filepath.Join(cfg.StoreDir, natsembed.PasswordFileName)
	if err := os.WriteFile(path, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := natsembed.New(cfg, nil); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("New with an empty password file = %v, want an error naming it", err)
	}
}

// TestWebsocketOrigin: the WebSocket listener accepts a handshake from its
// own origin, from an allowed origin and without an Origin header (not a
// browser: nats-server v2.15.2 accepts those), and refuses any other
// origin with 403, including a rebound domain whose Host header matches
// its Origin.
func TestWebsocketOrigin(t *testing.T) {
	hostname, _ := os.Hostname()
	hostname = strings.ToLower(hostname)
	for _, listen := range []string{"127.0.0.1", "0.0.0.0"} {
		t.Run(listen, func(t *testing.T) {
			cfg := natsembed.DefaultConfig()
			cfg.Addr, cfg.WebsocketAddr, cfg.StoreDir = "127.0.0.1:-1", listen+":-1", t.TempDir()
			cfg.WebsocketOrigins = []string{"https://app.example.com", "http://localhost:3000"}
			srv := start(t, cfg)
			addr := strings.TrimPrefix(loopback(t, srv.WebsocketURL()), "ws://")
			_, port, _ := net.SplitHostPort(addr)
			offLoopback := http.StatusForbidden // only a 0.0.0.0 listener is reachable by the host name
			if listen == "0.0.0.0" {
				offLoopback = http.StatusSwitchingProtocols
			}
			tests := []struct {
				name, host, origin string
				want               int
			}{
				{"no origin", "", "", http.StatusSwitchingProtocols},
				{"own origin", "", "http://127.0.0.1:" + port, http.StatusSwitchingProtocols},
				{"own origin by name", "localhost:" + port, "http://localhost:" + port, http.StatusSwitchingProtocols},
				{"own origin over IPv6 loopback", "", "http://[::1]:" + port, http.StatusSwitchingProtocols},
				{"host name", hostname + ":" + port, "http://" + hostname + ":" + port, offLoopback},
				{"allowed", "", "https://app.example.com", http.StatusSwitchingProtocols},
				{"allowed, upper case", "", "HTTPS://APP.EXAMPLE.COM", http.StatusSwitchingProtocols},
				{"allowed with its port", "", "http://localhost:3000", http.StatusSwitchingProtocols},
				{"foreign", "", "https://evil.example", http.StatusForbidden},
				{"allowed host, other scheme", "", "http://app.example.com", http.StatusForbidden},
				{"allowed host, other port", "", "https://app.example.com:8443", http.StatusForbidden},
				{"sub-domain of an allowed one", "", "https://x.app.example.com", http.StatusForbidden},
				{"own host, other port", "", "http://127.0.0.1:1", http.StatusForbidden},
				{"rebound domain", "evil.example:" + port, "http://evil.example:" + port, http.StatusForbidden},
				{"null", "", "null", http.StatusForbidden},
			}
			for _, tt := range tests {
				if got := handshake(t, addr, tt.host, tt.origin); got != tt.want {
					t.Errorf("%s: handshake with Host %q, Origin %q = %d, want %d", tt.name, tt.host, tt.origin, got, tt.want)
				}
			}
		})
	}
	t.Run("no list", func(t *testing.T) {
		cfg := natsembed.DefaultConfig()
		cfg.Addr, cfg.WebsocketAddr, cfg.StoreDir = "127.0.0.1:-1", "127.0.0.1:-1", t.TempDir()
		srv := start(t, cfg)
		addr := strings.TrimPrefix(srv.WebsocketURL(), "ws://")
		_, port, _ := net.SplitHostPort(addr)
		if got := handshake(t, addr, "", "http://127.0.0.1:"+port); got != http.StatusSwitchingProtocols {
			t.Errorf("own origin: %d, want 101", got)
		}
		if got := handshake(t, addr, "", "https://app.example.com"); got != http.StatusForbidden {
			t.Errorf("an origin no list allows: %d, want 403", got)
		}
	})
}

func TestAuthConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*natsembed.Config)
		want   string
	}{
		{"user only", func(c *natsembed.Config) { c.User = "alice" }, "set both or neither"},
		{"password only", func(c *natsembed.Config) { c.Password = "pw" }, "set both or neither"},
		{"origins without websocket", func(c *natsembed.Config) { c.WebsocketOrigins = []string{"https://a.example"} }, "without a WebSocket listener"},
		{"origin without scheme", func(c *natsembed.Config) { c.WebsocketOrigins = []string{"app.example.com"} }, `origin "app.example.com": want scheme://host[:port]`},
		{"origin ws scheme", func(c *natsembed.Config) { c.WebsocketOrigins = []string{"ws://a.example"} }, "with scheme http or https"},
		{"origin with path", func(c *natsembed.Config) { c.WebsocketOrigins = []string{"https://a.example/app"} }, "no user, path"},
		{"origin with slash", func(c *natsembed.Config) { c.WebsocketOrigins = []string{"https://a.example/"} }, "no user, path"},
		{"origin with query", func(c *natsembed.Config) { c.WebsocketOrigins = []string{"https://a.example?x"} }, "no user, path"},
		{"origin with user", func(c *natsembed.Config) { c.WebsocketOrigins = []string{"https://u@a.example"} }, "no user, path"},
		{"origin wildcard", func(c *natsembed.Config) { c.WebsocketOrigins = []string{"https://*.example.com"} }, "no wildcards"},
		{"origin bad port", func(c *natsembed.Config) { c.WebsocketOrigins = []string{"https://a.example:0"} }, `port "0"`},
		{"origin empty port", func(c *natsembed.Config) { c.WebsocketOrigins = []string{"https://a.example:"} }, "empty port"},
		{"origin no host", func(c *natsembed.Config) { c.WebsocketOrigins = []string{"https://:443"} }, "no host"},
		{"origin empty", func(c *natsembed.Config) { c.WebsocketOrigins = []string{""} }, `origin ""`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := natsembed.DefaultConfig()
			if !strings.Contains(tt.name, "without websocket") {
				cfg.WebsocketAddr = "127.0.0.1:-1"
			}
			tt.mutate(&cfg)
			if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Validate = %v, want %q", err, tt.want)
			}
		})
	}
	cfg := natsembed.DefaultConfig()
	cfg.WebsocketAddr = "127.0.0.1:8080"
	cfg.WebsocketOrigins = []string{"https://app.example.com", "http://localhost:3000", "http://[::1]:8081", "HTTPS://A.EXAMPLE"}
	if err := cfg.Validate(); err != nil {
		t.Errorf("Validate of good origins = %v", err)
	}
}

func startLogged(t *testing.T, cfg natsembed.Config, log *slog.Logger) *natsembed.Server {
	t.Helper()
	srv, err := natsembed.New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	return srv
}

// loopback turns a URL on 0.0.0.0 (or every interface) into one on
// 127.0.0.1, for a client on this machine.
func loopback(t *testing.T, raw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	if h := u.Hostname(); h == "" || h == "0.0.0.0" || h == "::" {
		u.Host = net.JoinHostPort("127.0.0.1", u.Port())
	}
	return u.String()
}

// requireRefused requires that connecting to u with opts fails with an
// authorization violation. Over WebSocket the server may close the
// connection before nats.go reads its -ERR (the client then reports a
// broken pipe): such an attempt is tried again, until the deadline.
func requireRefused(t *testing.T, u string, opts ...nats.Option) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		nc, err := nats.Connect(u, append(opts, nats.Timeout(10*time.Second))...)
		if err == nil {
			nc.Close()
			t.Fatalf("connect %s: accepted, want an authorization violation", u)
		}
		if errors.Is(err, nats.ErrAuthorization) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("connect %s: %v, want an authorization violation", u, err)
		}
		time.Sleep(20 * time.Millisecond) // between attempts, not a wait for a state
	}
}

// handshake sends a WebSocket upgrade request to addr, with host as its
// Host header (addr when empty) and origin as its Origin header (none when
// empty), and returns the status code.
func handshake(t *testing.T, addr, host, origin string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	key := make([]byte, 16)
	_, _ = rand.Read(key)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", base64.StdEncoding.EncodeToString(key))
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("handshake with Origin %q: %v", origin, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
