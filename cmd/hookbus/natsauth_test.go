package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/internal/natsembed"
	"github.com/hookbus/hookbus/internal/topology"
)

// cleanNATSEnv empties every variable that decides where and how a command
// connects, so the machine's environment does not leak into a test.
func cleanNATSEnv(t *testing.T, dataDir, listen string) {
	t.Helper()
	for _, k := range []string{"HOOKBUS_NATS_URL", "HOOKBUS_NATS_CREDS", "HOOKBUS_NATS_USER", "HOOKBUS_NATS_PASSWORD",
		"HOOKBUS_NATS_CA", "HOOKBUS_NATS_WEBSOCKET", "HOOKBUS_NATS_WEBSOCKET_ORIGINS", "HOOKBUS_NATS_MONITOR"} {
		t.Setenv(k, "")
	}
	t.Setenv("HOOKBUS_DATA_DIR", dataDir)
	t.Setenv("HOOKBUS_NATS_LISTEN", listen)
}

func writePasswordFile(t *testing.T, dataDir, pw string) {
	t.Helper()
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dataDir, natsembed.PasswordFileName), []byte(pw+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestNATSConnUsesGeneratedPassword: a command uses <data-dir>/nats.password
// as user hookbus only for the local default, never for a server
// HOOKBUS_NATS_URL names, and never over a configured user or creds file.
func TestNATSConnUsesGeneratedPassword(t *testing.T) {
	withFile, without := t.TempDir(), t.TempDir()
	writePasswordFile(t, withFile, "generated-pw")
	tests := []struct {
		name               string
		cfg                Config
		wantUser, wantPass string
	}{
		{"local default", Config{DataDir: withFile, NATSListen: "127.0.0.1:4222"}, natsembed.GeneratedUser, "generated-pw"},
		{"HOOKBUS_NATS_URL set", Config{DataDir: withFile, NATSURL: "nats://127.0.0.1:4222"}, "", ""},
		{"HOOKBUS_NATS_URL elsewhere", Config{DataDir: withFile, NATSURL: "nats://nats.example.com:4222"}, "", ""},
		{"configured user", Config{DataDir: withFile, NATSUser: "alice", NATSPassword: "pw"}, "alice", "pw"},
		{"creds file", Config{DataDir: withFile, NATSCreds: "/x.creds"}, "", ""},
		{"no file", Config{DataDir: without}, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nc := tt.cfg.natsConn("test")
			if nc.User != tt.wantUser || nc.Password != tt.wantPass {
				t.Errorf("natsConn user %q password %q, want %q %q", nc.User, nc.Password, tt.wantUser, tt.wantPass)
			}
		})
	}
}

// TestCLIUsesGeneratedPassword runs CLI commands in-process against an
// embedded server listening off loopback (so requiring the generated
// password): without HOOKBUS_NATS_URL they read <data-dir>/nats.password
// and work; with HOOKBUS_NATS_URL naming the very same server they do not
// send it and are refused; a configured user wins over the file.
func TestCLIUsesGeneratedPassword(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	ecfg := natsembed.DefaultConfig()
	ecfg.Addr, ecfg.StoreDir, ecfg.SyncAlways = "0.0.0.0:-1", dataDir, false
	srv, err := natsembed.New(ecfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(srv.ClientURL(), "nats://"))
	local := "127.0.0.1:" + port
	cleanNATSEnv(t, dataDir, local)
	ensureTopology(t, "nats://"+local, srv)

	out, err := runCLI(t, "publish", "--type", "com.example.t", "--source", "/test")
	if err != nil || !strings.Contains(out, "published") {
		t.Fatalf("publish with the generated password: %v\n%s", err, out)
	}

	// Another data directory: no password there; --data-dir names the right one.
	t.Setenv("HOOKBUS_DATA_DIR", t.TempDir())
	if out, err := runCLI(t, "publish", "--type", "com.example.t", "--source", "/test"); !errors.Is(err, nats.ErrAuthorization) || !strings.Contains(err.Error(), "no password in") {
		t.Fatalf("publish from another data directory = %v (%s), want an authorization violation saying no password was found", err, out)
	}
	if out, err := runCLI(t, "publish", "--type", "com.example.t", "--source", "/test", "--data-dir", dataDir); err != nil || !strings.Contains(out, "published") {
		t.Fatalf("publish --data-dir: %v\n%s", err, out)
	}
	t.Setenv("HOOKBUS_DATA_DIR", dataDir)

	t.Setenv("HOOKBUS_NATS_URL", "nats://"+local)
	if out, err := runCLI(t, "publish", "--type", "com.example.t", "--source", "/test"); !errors.Is(err, nats.ErrAuthorization) || !strings.Contains(err.Error(), "nats.password is not used") {
		t.Fatalf("publish with HOOKBUS_NATS_URL = %v (%s), want an authorization violation saying the password file is not used", err, out)
	}
	if out, err := runCLI(t, "publish", "--type", "com.example.t", "--source", "/test", "--nats-url", "nats://"+local); !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("publish with --nats-url = %v (%s), want an authorization violation", err, out)
	}

	t.Setenv("HOOKBUS_NATS_URL", "")
	t.Setenv("HOOKBUS_NATS_USER", "alice")
	t.Setenv("HOOKBUS_NATS_PASSWORD", "not-it")
	if out, err := runCLI(t, "publish", "--type", "com.example.t", "--source", "/test"); !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("publish as a configured user = %v (%s), want an authorization violation (the configured user, not the file)", err, out)
	}
}

// TestServeAuthOffLoopback runs `serve` in-process with every service and
// its client listener on 0.0.0.0: the server refuses a client without
// credentials, the services in the process connect with the generated
// ones (the topology is in place, the gateway stores an event posted
// over HTTP and the registry answers), and a CLI
// command on the same data directory reads the password file.
func TestServeAuthOffLoopback(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	port := freeTCPPort(t)
	cleanNATSEnv(t, dataDir, "0.0.0.0:"+port)
	t.Setenv("HOOKBUS_OPS_ADDR", "127.0.0.1:0")
	gatewayAddr := "127.0.0.1:" + freeTCPPort(t)
	t.Setenv("HOOKBUS_GATEWAY_ADDR", gatewayAddr)
	t.Setenv("HOOKBUS_NATS_SYNC_ALWAYS", "false")
	t.Setenv("HOOKBUS_LOG_LEVEL", "error")
	t.Setenv("HOOKBUS_PERSISTENCE_KEY", "")
	t.Setenv("HOOKBUS_PERSISTENCE_KEY_FILE", "")
	cfg, err := loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, slices.Sorted(maps.Keys(serviceFactories))) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("serve did not stop within 30s")
		}
	})

	url := "nats://127.0.0.1:" + port
	var pw string
	eventually(t, 30*time.Second, func() error {
		select {
		case err := <-done:
			t.Fatalf("serve exited: %v", err)
		default:
		}
		pw, err = natsembed.ReadPasswordFile(filepath.Join(dataDir, natsembed.PasswordFileName))
		if err != nil {
			return err
		}
		nc, err := nats.Connect(url, nats.UserInfo(natsembed.GeneratedUser, pw))
		if err != nil {
			return err
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			return err
		}
		_, err = js.Stream(ctx, "HOOKBUS_EVENTS") // created by serve's own connection
		return err
	})
	if nc, err := nats.Connect(url); !errors.Is(err, nats.ErrAuthorization) {
		if nc != nil {
			nc.Close()
		}
		t.Fatalf("connect without credentials = %v, want an authorization violation", err)
	}
	// The gateway publishes with the same credentials: an event posted
	// over HTTP is stored.
	eventually(t, 30*time.Second, func() error {
		resp, err := http.Post("http://"+gatewayAddr+"/events", "application/cloudevents+json",
			strings.NewReader(`{"specversion":"1.0","id":"gw-1","source":"/test","type":"com.example.t"}`))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if body, _ := io.ReadAll(resp.Body); resp.StatusCode != http.StatusAccepted {
			return fmt.Errorf("POST /events: %d %s", resp.StatusCode, body)
		}
		return nil
	})
	t.Setenv("HOOKBUS_NATS_LISTEN", "127.0.0.1:"+port)
	eventually(t, 30*time.Second, func() error {
		out, err := runCLI(t, "plugin", "list", "--timeout", "2s")
		if err == nil && !strings.HasPrefix(out, "NAME") {
			return errors.New("plugin list printed " + out)
		}
		return err
	})
}

// TestNATSAuthConfigErrors: half a user, a creds file for the embedded
// server and a bad WebSocket origin are configuration errors with a clear
// message (exit 2).
func TestNATSAuthConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"user only", map[string]string{"HOOKBUS_NATS_USER": "alice"}, "HOOKBUS_NATS_USER is set but HOOKBUS_NATS_PASSWORD is not"},
		{"password only", map[string]string{"HOOKBUS_NATS_PASSWORD": "pw"}, "HOOKBUS_NATS_PASSWORD is set but HOOKBUS_NATS_USER"},
		{"password only, own server", map[string]string{"HOOKBUS_NATS_PASSWORD": "pw", "HOOKBUS_NATS_URL": "nats://x:4222"}, "set both or neither"},
		{"creds for the embedded server", map[string]string{"HOOKBUS_NATS_CREDS": "/x.creds"}, "HOOKBUS_NATS_CREDS is for a NATS server of your own"},
		{"bad origin", map[string]string{"HOOKBUS_NATS_WEBSOCKET": "127.0.0.1:8080", "HOOKBUS_NATS_WEBSOCKET_ORIGINS": "https://a.example, app.example.com"},
			`websocket origin "app.example.com"`},
		{"origins without websocket", map[string]string{"HOOKBUS_NATS_WEBSOCKET_ORIGINS": "https://a.example"}, "without a WebSocket listener"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cleanNATSEnv(t, t.TempDir(), "127.0.0.1:1")
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			cfg, err := loadConfig()
			if err != nil {
				t.Fatal(err)
			}
			if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("serve: Validate = %v, want %q", err, tt.want)
			}
		})
	}
	for _, env := range []map[string]string{{"HOOKBUS_NATS_USER": "alice"}, {"HOOKBUS_NATS_PASSWORD": "pw"}} {
		cleanNATSEnv(t, t.TempDir(), "127.0.0.1:1")
		for k, v := range env {
			t.Setenv(k, v)
		}
		_, err := runCLI(t, "publish", "--type", "t", "--source", "/s", "--timeout", "1s")
		if err == nil || !strings.Contains(err.Error(), "set both or neither") || exitCode(err) != exitInvalid {
			t.Errorf("publish with %v = %v (exit %d), want exit %d saying set both or neither", env, err, exitCode(err), exitInvalid)
		}
	}
	cfg := Config{NATSWebsocket: "127.0.0.1:8080", NATSWebsocketOrigins: " https://a.example ,,http://localhost:3000 "}
	if got := cfg.embedded().WebsocketOrigins; !slices.Equal(got, []string{"https://a.example", "http://localhost:3000"}) {
		t.Errorf("origins %q", got)
	}
}

func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.ExecuteContext(t.Context())
	return out.String(), err
}

func ensureTopology(t *testing.T, url string, srv *natsembed.Server) {
	t.Helper()
	user, pw := srv.Credentials()
	nc, err := nats.Connect(url, nats.UserInfo(user, pw))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cfg, err := loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := topology.Ensure(ctx, js, cfg.topology()); err != nil {
		t.Fatal(err)
	}
}

func freeTCPPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port
}

// eventually polls f until it returns nil, failing with its last error
// after timeout.
func eventually(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %v", timeout, err)
		}
		time.Sleep(50 * time.Millisecond) // poll interval
	}
}
