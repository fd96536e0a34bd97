//go:build chaos

package chaos

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookbus/hookbus/pkg/client"
	"github.com/hookbus/hookbus/pkg/events"
)

// The webhook receiver's failures: every hookFail500-th request is
// answered 500, every hookFail429-th 429 with Retry-After: 1. Each failure
// holds the hook (one event at a time, in order) for about a second, the
// dispatcher's retry delay: the fractions stay small enough for the hook
// to keep up with the publishers.
const (
	hookFail500 = 300
	hookFail429 = 500
	// webhookTolerance is how far a webhook-timestamp may be from the
	// receiver's clock, as Standard Webhooks receivers check.
	webhookTolerance = 5 * time.Minute
)

// chaosHook is a persistent webhook hook on notifyType, created with the
// CLI as admin, and its receiver in the test process: a loopback HTTP
// server that checks every request's Standard Webhooks signature by hand
// (HMAC-SHA256 of id.timestamp.body with the secret printed at create)
// and answers 500 or 429 to a fraction of them.
type chaosHook struct {
	id     string
	secret []byte
	srv    *httptest.Server

	mu        sync.Mutex
	requests  int
	answers   map[string]int       // requests by answer: 2xx, 500, 429, bad-signature
	delivered map[string]int       // event id -> requests answered 2xx with a valid signature
	firstAt   map[string]time.Time // event id -> its first such request
	badSigs   []string             // what was wrong with each bad signature
}

// startHook starts the receiver and creates the hook on notifyType with
// `hookbus hook create --persistent` as admin, then waits until the
// dispatcher has its consumer.
func startHook(t *testing.T, d deployment) *chaosHook {
	t.Helper()
	h := &chaosHook{id: client.NewHookID(), answers: map[string]int{}, delivered: map[string]int{}, firstAt: map[string]time.Time{}}
	h.srv = httptest.NewServer(http.HandlerFunc(h.serve))
	t.Cleanup(h.srv.Close)
	secret, err := createHook(t.Context(), d, h.id, h.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil || len(key) == 0 {
		t.Fatalf("hook create printed the secret %q: want whsec_<base64>", secret)
	}
	h.secret = key
	ctx, cancel := context.WithTimeout(t.Context(), readyTimeout)
	defer cancel()
	_, js := connectClient(t, d.natsURL, "chaos-hook-check", d.admin)
	for {
		// Each look-up on its own deadline: a request lost in a cluster
		// still settling is asked again.
		attempt, cancelAttempt := context.WithTimeout(ctx, attemptTimeout)
		_, err := consumerInfo(attempt, js, events.HookConsumer(h.id))
		cancelAttempt()
		if err == nil {
			return h
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no consumer for hook %s after %s: %v", h.id, readyTimeout, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// createHook runs `hookbus hook create` as admin, a few times if the
// registry is not answering yet, and returns the secret it printed.
func createHook(ctx context.Context, d deployment, id, url string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	var last error
	for ctx.Err() == nil {
		// The same --id each time: a create that did reach the registry
		// before its answer was lost is harmless to send again.
		cmd := exec.CommandContext(ctx, hookbusBin, "hook", "create", "--node", notifyType, "--type", "webhook", "--persistent", "--id", id, url)
		cmd.Env = cleanEnv(append([]string{"HOOKBUS_NATS_URL=" + d.natsURL}, d.admin.env()...)...)
		out, err := cmd.Output()
		if err == nil {
			sc := bufio.NewScanner(bytes.NewReader(out))
			for sc.Scan() {
				if secret, ok := strings.CutPrefix(sc.Text(), "secret: "); ok {
					return strings.TrimSpace(secret), nil
				}
			}
			return "", fmt.Errorf("hookbus hook create printed no secret: %s", out)
		}
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			err = fmt.Errorf("%w: %s", err, exit.Stderr)
		}
		last = err
		time.Sleep(time.Second)
	}
	return "", fmt.Errorf("hookbus hook create: %w", last)
}

// serve checks one request's signature, then answers it: 500 or 429 for
// the fractions above, else 204 (a bad signature: 401, and counted).
func (h *chaosHook) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	id := r.Header.Get("Ce-Id")
	h.mu.Lock()
	defer h.mu.Unlock()
	h.requests++
	n := h.requests
	if err == nil {
		err = h.verify(r.Header, body, time.Now())
	}
	switch {
	case err != nil:
		h.answers["bad-signature"]++
		h.badSigs = append(h.badSigs, fmt.Sprintf("%s: %v", id, err))
		w.WriteHeader(http.StatusUnauthorized)
	case n%hookFail500 == 0:
		h.answers["500"]++
		w.WriteHeader(http.StatusInternalServerError)
	case n%hookFail429 == 0:
		h.answers["429"]++
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusTooManyRequests)
	default:
		h.answers["2xx"]++
		if h.delivered[id]++; h.delivered[id] == 1 {
			h.firstAt[id] = time.Now()
		}
		w.WriteHeader(http.StatusNoContent)
	}
}

// verify checks a Standard Webhooks signature by hand: one of the
// space-separated "v1,<base64>" of webhook-signature must be the
// HMAC-SHA256, keyed with the secret's bytes, of "<webhook-id>.<webhook-timestamp>.<body>",
// and the timestamp within webhookTolerance of now.
func (h *chaosHook) verify(hd http.Header, body []byte, now time.Time) error {
	id, ts, sigs := hd.Get("webhook-id"), hd.Get("webhook-timestamp"), hd.Get("webhook-signature")
	if id == "" || ts == "" || sigs == "" {
		return fmt.Errorf("webhook headers missing: id %q, timestamp %q, signature %q", id, ts, sigs)
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("webhook-timestamp %q: %w", ts, err)
	}
	if d := now.Sub(time.Unix(sec, 0)); d > webhookTolerance || d < -webhookTolerance {
		return fmt.Errorf("webhook-timestamp %s is %s from now", ts, d)
	}
	mac := hmac.New(sha256.New, h.secret)
	mac.Write([]byte(id + "." + ts + "."))
	mac.Write(body)
	want := mac.Sum(nil)
	for _, s := range strings.Fields(sigs) {
		v, sig, ok := strings.Cut(s, ",")
		if !ok || v != "v1" {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(sig)
		if err == nil && hmac.Equal(got, want) {
			return nil
		}
	}
	return fmt.Errorf("no signature of %q matches", sigs)
}

// snapshot copies the events delivered so far into s.
func (h *chaosHook) snapshot(s *stored) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for id, n := range h.delivered {
		s.hookDeliveries[id] = n
	}
}

// deliveredAt returns when each event was first delivered.
func (h *chaosHook) deliveredAt() map[string]time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return maps.Clone(h.firstAt)
}

// summary is the receiver's line under the table.
func (h *chaosHook) summary() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return fmt.Sprintf("hook %s: %d requests, by answer %s", h.id, h.requests, counts(h.answers))
}

// checkHook fails t for every request whose signature did not verify, and
// when the receiver's failures were never exercised.
func checkHook(t *testing.T, h *chaosHook) {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.badSigs) > 0 {
		t.Errorf("webhook requests without a valid signature: %d, e.g. %v", len(h.badSigs), h.badSigs[:min(len(h.badSigs), 10)])
	}
	if h.answers["2xx"] == 0 {
		t.Errorf("the webhook hook delivered nothing (requests by answer: %s)", counts(h.answers))
	}
}
