package ops_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hookbus/hookbus/internal/ops"
)

func TestEndpoints(t *testing.T) {
	s := start(t)
	failing := errors.New("stream leader not elected")
	var registryDown atomic.Bool
	s.AddCheck("nats", func(context.Context) error { return nil })
	s.AddCheck("registry", func(context.Context) error {
		if registryDown.Load() {
			return failing
		}
		return nil
	})

	tests := []struct {
		name     string
		path     string
		before   func()
		wantCode int
		want     []string
	}{
		{"livez", "/livez", nil, 200, []string{"ok"}},
		{"ready", "/readyz", nil, 200, []string{"[+]nats ok", "[+]registry ok"}},
		{"not ready", "/readyz", func() { registryDown.Store(true) }, 503, []string{"[+]nats ok", "[-]registry: stream leader not elected"}},
		{"livez while not ready", "/livez", nil, 200, []string{"ok"}},
		{"metrics", "/metrics", nil, 200, []string{`hookbus_ready{check="nats"} 1`, `hookbus_ready{check="registry"} 0`, "go_goroutines"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.before != nil {
				tt.before()
			}
			code, body := get(t, "http://"+s.Addr()+tt.path)
			if code != tt.wantCode {
				t.Errorf("GET %s = %d, want %d\n%s", tt.path, code, tt.wantCode, body)
			}
			for _, w := range tt.want {
				if !strings.Contains(body, w) {
					t.Errorf("GET %s body lacks %q:\n%s", tt.path, w, body)
				}
			}
		})
	}
}

func TestReadyWithoutChecksIsNotReady(t *testing.T) {
	s := start(t)
	code, body := get(t, "http://"+s.Addr()+"/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "no checks registered") {
		t.Errorf("GET /readyz = %d %q, want 503 naming the missing checks", code, body)
	}
}

func TestCheckTimeout(t *testing.T) {
	s := start(t)
	s.AddCheck("slow", func(ctx context.Context) error {
		<-ctx.Done()
		return ctx.Err()
	})
	code, body := get(t, "http://"+s.Addr()+"/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "[-]slow: context deadline exceeded") {
		t.Errorf("GET /readyz = %d %q, want the slow check to time out", code, body)
	}
}

func TestConfigValidate(t *testing.T) {
	if err := ops.DefaultConfig().Validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}
	bad := ops.Config{Addr: "8090", CheckTimeout: 1}
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), `ops addr "8090"`) {
		t.Errorf("Validate(%+v) = %v, want an error naming the address", bad, err)
	}
}

func start(t *testing.T) *ops.Server {
	t.Helper()
	cfg := ops.DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.CheckTimeout = 200 * time.Millisecond
	s, err := ops.New(cfg, prometheus.NewRegistry(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	if err := s.Ready(t.Context()); err != nil {
		t.Fatal(err)
	}
	return s
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}
