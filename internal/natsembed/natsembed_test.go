package natsembed_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/internal/natsembed"
)

func TestStartPublishRestart(t *testing.T) {
	dir := t.TempDir()
	cfg := natsembed.DefaultConfig()
	cfg.Addr = "127.0.0.1:-1"
	cfg.WebsocketAddr = "127.0.0.1:-1"
	cfg.StoreDir = dir

	srv := start(t, cfg)
	if !strings.HasPrefix(srv.WebsocketURL(), "ws://127.0.0.1:") {
		t.Errorf("WebsocketURL = %q, want a ws:// loopback URL", srv.WebsocketURL())
	}
	js := connect(t, srv.ClientURL())
	if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(t.Context(), "s.1", []byte("kept")); err != nil {
		t.Fatal(err)
	}
	srv.Shutdown()

	srv = start(t, cfg)
	js = connect(t, srv.ClientURL())
	stream, err := js.Stream(t.Context(), "S")
	if err != nil {
		t.Fatalf("after restart on the same store: %v", err)
	}
	msg, err := stream.GetMsg(t.Context(), 1)
	if err != nil {
		t.Fatalf("after restart on the same store: %v", err)
	}
	if string(msg.Data) != "kept" {
		t.Errorf("message after restart = %q, want %q", msg.Data, "kept")
	}
}

func TestPortInUse(t *testing.T) {
	cfg := natsembed.DefaultConfig()
	cfg.Addr = "127.0.0.1:-1"
	cfg.StoreDir = t.TempDir()
	first := start(t, cfg)

	cfg.Addr = strings.TrimPrefix(first.ClientURL(), "nats://")
	cfg.StoreDir = t.TempDir()
	cfg.ReadyTimeout = 500 * time.Millisecond
	second, err := natsembed.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := second.Start(t.Context()); err == nil {
		second.Shutdown()
		t.Fatal("second server on a used port started")
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*natsembed.Config)
		want   string
	}{
		{"no port", func(c *natsembed.Config) { c.Addr = "localhost" }, `nats addr "localhost"`},
		{"bad port", func(c *natsembed.Config) { c.Addr = "127.0.0.1:99999" }, "want -1 (any free port) to 65535"},
		{"no store", func(c *natsembed.Config) { c.StoreDir = "" }, "store dir: required"},
		{"bad websocket", func(c *natsembed.Config) { c.WebsocketAddr = "ws" }, `websocket addr "ws"`},
		{"small payload", func(c *natsembed.Config) { c.MaxPayload = 1000 }, "at least 1 MiB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := natsembed.DefaultConfig()
			tt.mutate(&cfg)
			if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Validate = %v, want %q", err, tt.want)
			}
		})
	}
}

func start(t *testing.T, cfg natsembed.Config) *natsembed.Server {
	t.Helper()
	return startLogged(t, cfg, nil)
}

func connect(t *testing.T, url string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if _, err := js.AccountInfo(ctx); err != nil {
		t.Fatal(err)
	}
	return js
}
