//go:build e2e

package e2e

import (
	"net/http"
	"slices"
	"strings"
	"testing"
)

// TestServeOps checks the operations endpoint of a running `hookbus serve`
// and that serve refuses a service it does not know.
func TestServeOps(t *testing.T) {
	srv := startServer(t, t.TempDir())

	code, body, err := httpGet(srv.OpsURL + "/livez")
	if err != nil || code != http.StatusOK || strings.TrimSpace(body) != "ok" {
		t.Errorf("GET /livez: %d %q (err %v), want 200 \"ok\"", code, body, err)
	}

	code, body, err = httpGet(srv.OpsURL + "/readyz")
	if err != nil || code != http.StatusOK || !slices.Contains(lines(body), "[+]nats ok") {
		t.Errorf("GET /readyz: %d %q (err %v), want 200 with the line \"[+]nats ok\"", code, body, err)
	}

	code, body, err = httpGet(srv.OpsURL + "/metrics")
	if err != nil || code != http.StatusOK {
		t.Fatalf("GET /metrics: %d (err %v), want 200", code, err)
	}
	for _, want := range []string{`hookbus_nats_connected 1`, `hookbus_ready{check="nats"} 1`} {
		if !slices.Contains(lines(body), want) {
			t.Errorf("GET /metrics has no line %q:\n%s", want, body)
		}
	}
	srv.stop(t)

	t.Run("unknown service", func(t *testing.T) {
		stdout, stderr, code := run(t, "serve", "unknownservice",
			"--nats-listen", freeAddr(t), "--ops-addr", freeAddr(t), "--data-dir", t.TempDir())
		if code != 2 {
			t.Errorf("exit status %d, want 2\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
		}
		if want := `unknown service "unknownservice"`; !strings.Contains(stderr, want) {
			t.Errorf("stderr %q does not contain %q", stderr, want)
		}
	})
}

func lines(s string) []string { return strings.Split(strings.TrimSpace(s), "\n") }
