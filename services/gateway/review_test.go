package gateway_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hookbus/hookbus/internal/natstest"
	"github.com/hookbus/hookbus/pkg/events"
	"github.com/hookbus/hookbus/services/gateway"
)

// A token must not take the source /gateway/<name> of another token's
// webhooks: an event of its own with that source and the id of a coming
// delivery would make the victim's delivery a "duplicate", never stored.
func TestReviewWebhookSourceCannotBeClaimedByAnotherToken(t *testing.T) {
	b := newAuthBus(t, noAnonymous, nil)
	attacker := b.createToken(t, "attacker", 0, "publish:com.attacker.>")
	victim := b.createToken(t, "victim", 0, "publish:com.example.>")
	structuredCT := map[string]string{"Content-Type": "application/cloudevents+json"}

	// Structured, binary and batch: each refused, nothing stored.
	status, _, body := post(t, b.url+"/events", withToken(structuredCT, attacker),
		`{"specversion":"1.0","id":"delivery-1","source":"/gateway/victim","type":"com.attacker.x","data":{"n":1}}`)
	refused(t, status, body, http.StatusForbidden, "forbidden")
	status, _, body = post(t, b.url+"/events", withToken(map[string]string{"Ce-Specversion": "1.0", "Ce-Id": "delivery-2",
		"Ce-Source": "/gateway/victim", "Ce-Type": "com.attacker.x", "Content-Type": "application/json"}, attacker), `{}`)
	refused(t, status, body, http.StatusForbidden, "forbidden")
	status, _, body = post(t, b.url+"/events", withToken(map[string]string{"Content-Type": "application/cloudevents-batch+json"}, attacker),
		`[{"specversion":"1.0","id":"delivery-3","source":"/gateway/victim","type":"com.attacker.x","data":{"n":1}}]`)
	if status != http.StatusMultiStatus {
		t.Fatalf("batch claiming /gateway/victim: status %d, want 207; body %s", status, body)
	}
	if n := b.stored(t); n != 0 {
		t.Fatalf("%d events stored with another token's webhook source, want 0", n)
	}

	// The victim's deliveries are each stored, not found duplicate.
	for _, id := range []string{"delivery-1", "delivery-2", "delivery-3"} {
		status, _, body = post(t, b.url+"/events/com.example.order.paid",
			withToken(map[string]string{"Content-Type": "application/json", "Idempotency-Key": id}, victim), `{"amount":100}`)
		if st := accepted(t, status, body); st.Duplicate {
			t.Fatalf("victim's delivery %s: %s: taken as a duplicate of the attacker's event", id, body)
		}
	}

	// A token may still send its own webhook source (a CloudEvent retried
	// in structured mode), and sources elsewhere.
	status, _, body = post(t, b.url+"/events", withToken(structuredCT, victim),
		`{"specversion":"1.0","id":"delivery-1","source":"/gateway/victim","type":"com.example.order.paid","data":{"amount":100}}`)
	accepted(t, status, body)
}

// A refusal must not echo an unbounded part of the request: a 1 MiB source
// that is not in canonical form came back as an 18 MiB problem (the value
// quoted, in its canonical form too, in detail and reason, each '<' JSON
// escaped as \u003c), some 200 MB allocated for one request.
func TestReviewRefusalDoesNotAmplifyTheRequest(t *testing.T) {
	b := newBus(t)
	src := strings.Repeat("<", testMaxEventSize-1000)
	ev := `{"specversion":"1.0","id":"x","source":"` + src + `","type":"com.example.a","data":{}}`
	status, _, body := post(t, b.url+"/events", map[string]string{"Content-Type": "application/cloudevents+json"}, ev)
	p := refused(t, status, body, http.StatusBadRequest, "invalid")
	if p.Field != "source" {
		t.Fatalf("problem %.300s: want field source", body)
	}
	if len(body) > 4<<10 {
		t.Fatalf("a %d-byte event was refused with a %d-byte problem, want at most 4 KiB", len(ev), len(body))
	}

	// In a batch, each result is bounded the same way.
	var parts []string
	for range 20 {
		parts = append(parts, `{"specversion":"1.0","id":"x","source":"`+strings.Repeat("<", 700)+`","type":"com.example.a"}`)
	}
	batch := "[" + strings.Join(parts, ",") + "]"
	status, _, body = post(t, b.url+"/events", map[string]string{"Content-Type": "application/cloudevents-batch+json"}, batch)
	if status != http.StatusMultiStatus {
		t.Fatalf("batch: status %d, want 207", status)
	}
	if len(body) > 20*4<<10 {
		t.Fatalf("a %d-byte batch of 20 events was answered with %d bytes, want at most 4 KiB per event", len(batch), len(body))
	}
}

// A call in flight when the gateway shuts down must get an answer within
// the shutdown bound: it was cut off with no answer at all (EOF) when its
// chain took longer than ShutdownTimeout, and Run failed.
func TestReviewCallInFlightIsAnsweredAtShutdown(t *testing.T) {
	b := newCallBus(t)
	cfg := gateway.DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.ShutdownTimeout = 600 * time.Millisecond // shorter than the slow chain
	svc, err := gateway.New(cfg, b.nc, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	natstest.Eventually(t, 5*time.Second, func() error { return svc.Ready(ctx) })

	header, body := structuredCall("com.example.call.slow", "sd-1", `{"total":10}`)
	type answer struct {
		status int
		h      http.Header
		body   []byte
		err    error
	}
	answers := make(chan answer, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, "http://"+svc.Addr()+"/calls/com.example.call.slow", strings.NewReader(body))
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			answers <- answer{err: err}
			return
		}
		defer resp.Body.Close()
		raw, err := io.ReadAll(resp.Body)
		answers <- answer{status: resp.StatusCode, h: resp.Header, body: raw, err: err}
	}()
	time.Sleep(300 * time.Millisecond) // the call is waiting for its chain
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v, want a clean shutdown", err)
	}
	a := <-answers
	if a.err != nil {
		t.Fatalf("call in flight at shutdown: %v, want an answer", a.err)
	}
	wantProblem(t, a.status, a.h, a.body, http.StatusServiceUnavailable, "unavailable", "")
}

// Token names the gateway gives requests of its own must not be tokens'
// too: "anonymous" is the principal (and webhook source /gateway/anonymous)
// of requests without a token, "-" the metrics' token label of refused
// requests; a token so named would share them.
func TestReviewReservedTokenNames(t *testing.T) {
	allow := []gateway.Permission{{Action: gateway.ActionPublish, Pattern: "com.example.>"}}
	for _, name := range []string{"anonymous", "-"} {
		if _, _, err := gateway.NewToken(name, allow, 0, time.Now()); !errors.Is(err, events.ErrInvalid) {
			t.Errorf("token named %q: %v, want invalid", name, err)
		}
	}
	if _, _, err := gateway.NewToken("anonymous-2", allow, 0, time.Now()); err != nil {
		t.Errorf("token named anonymous-2: %v", err)
	}
}

// Anonymous use on loopback must not let any web page the user visits
// publish: a cross-origin "simple" request (Content-Type text/plain, no
// custom header, so no preflight; fetch with mode no-cors) to the webhook
// route was stored and dispatched, though the page cannot read the answer.
// The all-in-one's NATS WebSocket refuses foreign origins for this reason.
func TestReviewAnonymousRefusesBrowsersFromOtherOrigins(t *testing.T) {
	b := newAuthBus(t, nil, nil) // 127.0.0.1: anonymous use on
	h := map[string]string{"Content-Type": "text/plain;charset=UTF-8", "Origin": "https://evil.example"}
	status, _, body := post(t, b.url+"/events/com.example.order.paid", h, `{"amount":1}`)
	if status != http.StatusForbidden && status != http.StatusUnauthorized {
		t.Errorf("anonymous request from origin https://evil.example: status %d (%s), want 401 or 403", status, body)
	}
	if n := b.stored(t); n != 0 {
		t.Fatalf("%d events stored from a foreign web page, want 0", n)
	}
	// curl and SDKs send no Origin: still anonymous.
	status, _, body = post(t, b.url+"/events/com.example.order.paid", map[string]string{"Content-Type": "application/json"}, `{"amount":1}`)
	accepted(t, status, body)
}

// Prefer: wait=100000 is capped at the maximum; a longer number of seconds
// (beyond int64) must be capped the same, not refused.
func TestReviewPreferWaitBeyondInt64IsCapped(t *testing.T) {
	b := newCallBus(t)
	header, body := structuredCall("com.example.call.tax", "pw-1", `{"total":10}`)
	status, h, raw := post(t, b.url+"/calls/com.example.call.tax", withHeader(header, "Prefer", "wait=99999999999999999999"), body)
	if status != http.StatusOK || h.Get("Preference-Applied") != "wait=300" {
		t.Fatalf("Prefer wait=99999999999999999999: status %d, Preference-Applied %q, want 200 and wait=300; body %s", status, h.Get("Preference-Applied"), raw)
	}
}

// A batch is a JSON array: the body null is not one (it decoded as an
// empty batch and was answered 202).
func TestReviewBatchNullIsRefused(t *testing.T) {
	b := newBus(t)
	status, _, body := post(t, b.url+"/events", map[string]string{"Content-Type": "application/cloudevents-batch+json"}, "null")
	refused(t, status, body, http.StatusBadRequest, "invalid")
}

// The gateway does not decode Content-Encoding: a gzip-compressed body
// was stored as the event's data as it came, compressed, and answered
// 202. It must be refused (415), nothing stored.
func TestReviewContentEncodingIsRefused(t *testing.T) {
	b := newBus(t)
	h := map[string]string{"Ce-Specversion": "1.0", "Ce-Id": "gz-1", "Ce-Source": "/shop", "Ce-Type": "com.example.order.created",
		"Content-Type": "application/json", "Content-Encoding": "gzip"}
	status, _, body := post(t, b.url+"/events", h, "\x1f\x8b\x08\x00\x00\x00\x00\x00")
	refused(t, status, body, http.StatusUnsupportedMediaType, "unsupported_media_type")
	status, _, body = post(t, b.url+"/events/com.example.order.created",
		map[string]string{"Content-Type": "application/json", "Content-Encoding": "br"}, `{"a":1}`)
	refused(t, status, body, http.StatusUnsupportedMediaType, "unsupported_media_type")
	if n := b.stored(t); n != 0 {
		t.Fatalf("%d events stored, want 0", n)
	}
	h["Content-Encoding"], h["Ce-Id"] = "identity", "gz-2"
	status, _, body = post(t, b.url+"/events", h, `{"a":1}`)
	accepted(t, status, body)
}
