package dispatcher_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookbus/hookbus/internal/natstest"
	"github.com/hookbus/hookbus/pkg/events"
)

// signedBy reports whether one of the request's webhook-signature
// entries is the spec's HMAC-SHA256 of id.timestamp.body under secret.
func signedBy(secret string, h http.Header, body []byte) bool {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		return false
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(h.Get("webhook-id") + "." + h.Get("webhook-timestamp") + "."))
	mac.Write(body)
	want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	for _, sig := range strings.Fields(h.Get("webhook-signature")) {
		if sig == want {
			return true
		}
	}
	return false
}

// signedTarget records, for each event it gets, which of the secrets sign
// it.
type signedTarget struct {
	mu      sync.Mutex
	secrets []string
	got     []string // "<ce-id>:<index of each signing secret>"
}

func (s *signedTarget) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	defer s.mu.Unlock()
	line := r.Header.Get("Ce-Id") + ":"
	for i, secret := range s.secrets {
		if signedBy(secret, r.Header, body) {
			line += fmt.Sprint(i)
		}
	}
	s.got = append(s.got, line)
	w.WriteHeader(http.StatusNoContent)
}

func (s *signedTarget) received() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.got, " ")
}

// A rotated secret reaches the running reader: the next event is signed
// with both secrets, by the same consumer, which delivers nothing twice.
func TestRotatedSecretReachesTheRunningHook(t *testing.T) {
	e := newEnv(t)
	e.runDispatcherWith(allowLoopback)
	rec := &signedTarget{}
	srv := httptest.NewServer(http.HandlerFunc(rec.serve))
	t.Cleanup(srv.Close)
	h := e.putHook("a", srv.URL, 0)
	const rotated = "whsec_cm90YXRlZC1zZWNyZXQtMDEyMzQ1Njc4OWFi"
	rec.secrets = []string{h.Secret, rotated}
	e.waitConsumer(h)
	before, err := e.consumer(events.HookConsumer(h.ID))
	if err != nil {
		t.Fatal(err)
	}
	e.publishID("a", "e1")
	natstest.Eventually(t, 10*time.Second, func() error {
		if got := rec.received(); got != "e1:0" {
			return fmt.Errorf("target got %q, want e1 signed by the first secret", got)
		}
		return nil
	})

	kv, err := e.js.KeyValue(t.Context(), events.BucketHooks)
	if err != nil {
		t.Fatal(err)
	}
	h.PreviousSecret, h.PreviousExpires, h.Secret = h.Secret, time.Now().Add(time.Hour), rotated
	b, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(t.Context(), h.ID, b); err != nil {
		t.Fatal(err)
	}
	// The watch hands the update over asynchronously: publish until an
	// event comes signed by the new secret.
	n := 1
	natstest.Eventually(t, 10*time.Second, func() error {
		got := strings.Fields(rec.received())
		if len(got) > 0 && strings.HasSuffix(got[len(got)-1], ":01") {
			return nil
		}
		if len(got) == n { // the last one is in: send the next
			n++
			e.publishID("a", fmt.Sprintf("e%d", n))
		}
		return fmt.Errorf("%d events, none signed by both secrets (the last %v)", len(got), got[max(0, len(got)-3):])
	})
	after, err := e.consumer(events.HookConsumer(h.ID))
	if err != nil {
		t.Fatal(err)
	}
	if !after.Created.Equal(before.Created) {
		t.Errorf("consumer created again (%v, was %v): want the running one kept", after.Created, before.Created)
	}
	natstest.Eventually(t, 10*time.Second, func() error {
		if got := strings.Count(rec.received(), "e"); got != n {
			return fmt.Errorf("target got %q, want %d events", rec.received(), n)
		}
		return nil
	})
	for i, line := range strings.Fields(rec.received()) {
		if id, _, _ := strings.Cut(line, ":"); id != fmt.Sprintf("e%d", i+1) {
			t.Errorf("delivery %d is %s: want each event once, in order (%s)", i+1, line, rec.received())
		}
	}
}
