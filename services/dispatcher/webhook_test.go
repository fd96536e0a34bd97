package dispatcher

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/hookbus/hookbus/pkg/events"
)

// loopback lets tests reach their local targets.
var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}

func testHook(url string) events.Hook {
	key := make([]byte, 24)
	_, _ = rand.Read(key)
	return events.Hook{
		HookSpec: events.HookSpec{ID: strings.Repeat("ab", 16), Node: "com.example.order.created", Type: events.HookWebhook, Arg: url, Persistent: true},
		Status:   events.HookActive,
		Secret:   "whsec_" + base64.StdEncoding.EncodeToString(key),
	}
}

func testEvent(t *testing.T) *event.Event {
	t.Helper()
	e := event.New()
	e.SetID("order-42")
	e.SetSource("/shop")
	e.SetType("com.example.order.created")
	e.SetSubject("42")
	e.SetExtension("tenant", "acme")
	if err := e.SetData(event.ApplicationJSON, map[string]any{"total": 12}); err != nil {
		t.Fatal(err)
	}
	return &e
}

// received is one request a test target got.
type received struct {
	header http.Header
	body   []byte
}

// target is a local HTTP server answering with answer, recording what it
// gets.
func target(t *testing.T, answer http.HandlerFunc) (*httptest.Server, chan received) {
	t.Helper()
	got := make(chan received, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- received{header: r.Header.Clone(), body: b}
		answer(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, got
}

func ok(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }

// The signature is checked by the spec's recipe, written out here, not by
// the sender's code: HMAC-SHA256 keyed with the base64-decoded secret over
// "<webhook-id>.<webhook-timestamp>.<body>", "v1," and its base64.
func TestWebhookIsSignedAsStandardWebhooks(t *testing.T) {
	srv, got := target(t, ok)
	h := testHook(srv.URL + "/in")
	d := newWebhookSender(loopback, time.Second).send(t.Context(), h, testEvent(t))
	if d.err != nil || d.status != http.StatusNoContent {
		t.Fatalf("send = %+v, want success", d)
	}
	r := <-got
	id, ts, sig := r.header.Get("webhook-id"), r.header.Get("webhook-timestamp"), r.header.Get("webhook-signature")
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(h.Secret, "whsec_"))
	if err != nil {
		t.Fatal(err)
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + ts + "."))
	mac.Write(r.body)
	want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	if id == "" || sig != want {
		t.Errorf("webhook-id %q, webhook-signature %q; want %q", id, sig, want)
	}
	if n, err := strconv.ParseInt(ts, 10, 64); err != nil || time.Since(time.Unix(n, 0)).Abs() > time.Minute {
		t.Errorf("webhook-timestamp %q: want the unix time of the attempt", ts)
	}
	// Binary mode: the data is the body, the attributes are headers.
	if string(r.body) != `{"total":12}` || r.header.Get("Content-Type") != "application/json" ||
		r.header.Get("Ce-Id") != "order-42" || r.header.Get("Ce-Type") != "com.example.order.created" ||
		r.header.Get("Ce-Source") != "/shop" || r.header.Get("Ce-Tenant") != "acme" {
		t.Errorf("binary-mode request: headers %v, body %s", r.header, r.body)
	}

	// A second attempt of the same event carries the same webhook-id.
	if d := newWebhookSender(loopback, time.Second).send(t.Context(), h, testEvent(t)); d.err != nil {
		t.Fatal(d.err)
	}
	if again := <-got; again.header.Get("webhook-id") != id {
		t.Errorf("webhook-id of a second attempt %q, want %q", again.header.Get("webhook-id"), id)
	}
}

func TestWebhookStructuredMode(t *testing.T) {
	srv, got := target(t, ok)
	h := testHook(srv.URL)
	h.Settings.Structured = true
	if d := newWebhookSender(loopback, time.Second).send(t.Context(), h, testEvent(t)); d.err != nil {
		t.Fatal(d.err)
	}
	r := <-got
	var body map[string]any
	if err := json.Unmarshal(r.body, &body); err != nil || !strings.HasPrefix(r.header.Get("Content-Type"), "application/cloudevents+json") ||
		body["id"] != "order-42" || body["tenant"] != "acme" {
		t.Errorf("structured request: content type %q, body %s (%v)", r.header.Get("Content-Type"), r.body, err)
	}
}

// What a target's answer means: 2xx success; 408, 429 and 5xx retried
// (with Retry-After when given); other 4xx and redirects fail at once.
func TestWebhookAnswerClassification(t *testing.T) {
	var redirected atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { redirected.Add(1) }))
	t.Cleanup(other.Close)
	now := time.Now()
	cases := []struct {
		name       string
		answer     http.HandlerFunc
		wantErr    bool
		retry      bool
		retryAfter time.Duration
	}{
		{"200", func(w http.ResponseWriter, _ *http.Request) {}, false, false, 0},
		{"202", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(202) }, false, false, 0},
		{"500", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(500) }, true, true, 0},
		{"503 Retry-After seconds", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Retry-After", "7")
			w.WriteHeader(503)
		}, true, true, 7 * time.Second},
		{"429 Retry-After seconds", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Retry-After", "120")
			w.WriteHeader(429)
		}, true, true, 2 * time.Minute},
		{"429 Retry-After date", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Retry-After", now.Add(time.Hour).UTC().Format(http.TimeFormat))
			w.WriteHeader(429)
		}, true, true, time.Hour},
		{"408", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(408) }, true, true, 0},
		{"404", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(404) }, true, false, 0},
		{"400", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(400) }, true, false, 0},
		{"302", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, other.URL, http.StatusFound) }, true, false, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv, _ := target(t, tc.answer)
			w := newWebhookSender(loopback, time.Second)
			w.now = func() time.Time { return now }
			d := w.send(t.Context(), testHook(srv.URL), testEvent(t))
			if (d.err != nil) != tc.wantErr || d.retry != tc.retry {
				t.Errorf("send = %+v, want error %v, retry %v", d, tc.wantErr, tc.retry)
			}
			// An HTTP date has one-second precision.
			if diff := (d.retryAfter - tc.retryAfter).Abs(); diff > time.Second {
				t.Errorf("retry after %s, want %s", d.retryAfter, tc.retryAfter)
			}
		})
	}
	if n := redirected.Load(); n != 0 {
		t.Errorf("the redirect target got %d requests: redirects must not be followed", n)
	}
}

// A target that is down or too slow is retried: its events wait for it.
func TestWebhookUnreachableTargetIsRetried(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "http://" + ln.Addr().String()
	_ = ln.Close()
	if d := newWebhookSender(loopback, time.Second).send(t.Context(), testHook(down), testEvent(t)); d.err == nil || !d.retry {
		t.Errorf("send to a closed port = %+v, want a retried error", d)
	}

	release := make(chan struct{})
	slow, _ := target(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)
	h := testHook(slow.URL)
	h.Settings.TimeoutMS = 100
	start := time.Now()
	d := newWebhookSender(loopback, time.Minute).send(t.Context(), h, testEvent(t))
	if d.err == nil || !d.retry || time.Since(start) > 10*time.Second {
		t.Errorf("send to a target slower than the hook's timeout = %+v after %s, want a retried error at the timeout", d, time.Since(start))
	}
}

// The SSRF guard refuses, on the address actually dialled, what the host,
// its cluster and its cloud serve, unless the operator allowed it; the
// refusal is final (not retried) and the target never sees a request.
func TestWebhookRefusesInternalAddresses(t *testing.T) {
	var hits atomic.Int32
	local := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { hits.Add(1) }))
	t.Cleanup(local.Close)
	_, port, _ := net.SplitHostPort(local.Listener.Addr().String())
	// The redirect comes from a target on 127.0.0.2, the only address
	// allowed in that case; it points at the local server on 127.0.0.1.
	redirector := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, local.URL+"/meta", http.StatusTemporaryRedirect)
	}))
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Skipf("no 127.0.0.2 to listen on: %v", err)
	}
	redirector.Listener = ln
	redirector.Start()
	t.Cleanup(redirector.Close)

	cases := []struct {
		name  string
		url   string
		allow []netip.Prefix
	}{
		{"127.0.0.1", local.URL, nil},
		{"::1", "http://[::1]:" + port, nil},
		{"metadata 169.254.169.254", "http://169.254.169.254/latest/meta-data/", nil},
		{"private 10.0.0.1", "http://10.0.0.1/", nil},
		{"a name resolving to loopback", "http://localhost:" + port, nil},
		{"loopback outside the allowed prefix", local.URL, []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}},
		{"a redirect to loopback", redirector.URL, []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := newWebhookSender(tc.allow, 2*time.Second).send(t.Context(), testHook(tc.url), testEvent(t))
			if d.err == nil || d.retry {
				t.Errorf("send to %s = %+v, want a final refusal", tc.url, d)
			}
		})
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("the loopback target got %d requests", n)
	}
	// The same target is reached once the operator allows loopback: the
	// refusals above are the guard's, not a broken target.
	if d := newWebhookSender(loopback, time.Second).send(t.Context(), testHook(local.URL), testEvent(t)); d.err != nil || hits.Load() != 1 {
		t.Errorf("send with loopback allowed = %+v, %d hits; want one delivery", d, hits.Load())
	}
}

// The timestamp sent is the one signed, however the clock moves between
// readings.
func TestWebhookTimestampIsTheSignedOne(t *testing.T) {
	srv, got := target(t, ok)
	h := testHook(srv.URL)
	w := newWebhookSender(loopback, time.Second)
	clock := time.Now()
	w.now = func() time.Time { clock = clock.Add(time.Second); return clock }
	if d := w.send(t.Context(), h, testEvent(t)); d.err != nil {
		t.Fatal(d.err)
	}
	r := <-got
	key, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(h.Secret, "whsec_"))
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(r.header.Get("webhook-id") + "." + r.header.Get("webhook-timestamp") + "."))
	mac.Write(r.body)
	if want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil)); r.header.Get("webhook-signature") != want {
		t.Errorf("signature %q does not sign the timestamp sent (%s)", r.header.Get("webhook-signature"), r.header.Get("webhook-timestamp"))
	}
}

// verifies is a receiver that knows one secret, written from the spec:
// webhook-signature is a space-separated list of "v1,<base64>"; the
// request is accepted when one of them is the HMAC-SHA256, keyed with the
// secret's base64-decoded bytes, of "<webhook-id>.<webhook-timestamp>.<body>".
func verifies(t *testing.T, secret string, r received) bool {
	t.Helper()
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		t.Fatal(err)
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(r.header.Get("webhook-id") + "." + r.header.Get("webhook-timestamp") + "."))
	mac.Write(r.body)
	want := mac.Sum(nil)
	for _, sig := range strings.Fields(r.header.Get("webhook-signature")) {
		version, b64, ok := strings.Cut(sig, ",")
		got, err := base64.StdEncoding.DecodeString(b64)
		if ok && version == "v1" && err == nil && hmac.Equal(got, want) {
			return true
		}
	}
	return false
}

// During a rotation's overlap both secrets sign: a receiver that knows
// only the old one and one that knows only the new one both accept; once
// the overlap is over only the new one signs.
func TestWebhookSignedWithBothSecretsDuringOverlap(t *testing.T) {
	srv, got := target(t, ok)
	old := testHook(srv.URL).Secret
	h := testHook(srv.URL)
	h.PreviousSecret = old
	w := newWebhookSender(loopback, time.Second)
	now := time.Now()
	w.now = func() time.Time { return now }
	h.PreviousExpires = now.Add(time.Hour)
	if d := w.send(t.Context(), h, testEvent(t)); d.err != nil {
		t.Fatal(d.err)
	}
	r := <-got
	if n := len(strings.Fields(r.header.Get("webhook-signature"))); n != 2 {
		t.Errorf("webhook-signature %q: want 2 signatures during the overlap", r.header.Get("webhook-signature"))
	}
	if !verifies(t, h.Secret, r) || !verifies(t, old, r) {
		t.Errorf("during the overlap: new secret accepted %v, old %v; want both", verifies(t, h.Secret, r), verifies(t, old, r))
	}
	if verifies(t, testHook(srv.URL).Secret, r) {
		t.Fatal("a secret of neither accepted: the check proves nothing")
	}

	h.PreviousExpires = now // the overlap ends
	if d := w.send(t.Context(), h, testEvent(t)); d.err != nil {
		t.Fatal(d.err)
	}
	r = <-got
	if !verifies(t, h.Secret, r) || verifies(t, old, r) {
		t.Errorf("after the overlap: new secret accepted %v, old %v; want only the new", verifies(t, h.Secret, r), verifies(t, old, r))
	}
}
