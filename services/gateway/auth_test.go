package gateway_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hookbus/hookbus/internal/natstest"
	"github.com/hookbus/hookbus/internal/topology"
	"github.com/hookbus/hookbus/pkg/events"
	"github.com/hookbus/hookbus/services/gateway"
)

// authBus is a gateway run as `hookbus serve` runs it (Run, listening on
// loopback), with bucket hookbus_gateway_tokens at hand.
type authBus struct {
	bus
	kv  jetstream.KeyValue
	svc *gateway.Service
}

// newAuthBus runs a gateway with the test config changed by edit.
func newAuthBus(t *testing.T, edit func(*gateway.Config), log *slog.Logger) *authBus {
	t.Helper()
	s, js := natstest.RunTopology(t)
	nc := natstest.Connect(t, s)
	cfg := gateway.DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.MaxEventSize = testMaxEventSize
	if edit != nil {
		edit(&cfg)
	}
	svc, err := gateway.New(cfg, nc, log)
	if err != nil {
		t.Fatal(err)
	}
	natstest.RunService(t, svc)
	kv, err := js.KeyValue(t.Context(), events.BucketGatewayTokens)
	if err != nil {
		t.Fatal(err)
	}
	return &authBus{bus: bus{nc: nc, js: js, url: "http://" + svc.Addr()}, kv: kv, svc: svc}
}

// noAnonymous turns anonymous use off.
func noAnonymous(c *gateway.Config) {
	off := false
	c.Anonymous = &off
}

// createToken stores a new token as hookbus gateway token create does and
// returns it, once the gateway takes it.
func (b *authBus) createToken(t *testing.T, name string, rate int, allow ...string) string {
	t.Helper()
	var perms []gateway.Permission
	for _, a := range allow {
		p, err := gateway.ParsePermission(a)
		if err != nil {
			t.Fatal(err)
		}
		perms = append(perms, p)
	}
	token, rec, err := gateway.NewToken(name, perms, rate, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	v, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.kv.Create(t.Context(), name, v); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 5*time.Second, func() error {
		if !gateway.HasToken(b.svc, name) {
			return fmt.Errorf("gateway has not taken token %s yet", name)
		}
		return nil
	})
	return token
}

// structured is a structured-mode event of type typ.
func structured(id, typ string) (map[string]string, string) {
	return map[string]string{"Content-Type": "application/cloudevents+json"},
		`{"specversion":"1.0","id":"` + id + `","source":"/shop","type":"` + typ + `","data":{"n":1}}`
}

// withToken adds an Authorization header to h.
func withToken(h map[string]string, token string) map[string]string {
	out := map[string]string{"Authorization": "Bearer " + token}
	for k, v := range h {
		out[k] = v
	}
	return out
}

// refused checks that a request was refused with status and code, and
// returns the problem.
func refused(t *testing.T, status int, body []byte, wantStatus int, wantCode string) problemBody {
	t.Helper()
	if status != wantStatus {
		t.Fatalf("status %d, want %d; body %s", status, wantStatus, body)
	}
	var p problemBody
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("body %s: %v", body, err)
	}
	if p.Status != wantStatus || p.Code != wantCode || p.Detail == "" || !strings.HasSuffix(p.Type, "#http-gateway-"+wantCode) {
		t.Fatalf("problem %s: want status %d, code %s", body, wantStatus, wantCode)
	}
	return p
}

func TestTokenRequired(t *testing.T) {
	b := newAuthBus(t, noAnonymous, nil)
	token := b.createToken(t, "shop", 0, "publish:com.example.>")
	name, secret, _ := strings.Cut(strings.TrimPrefix(token, "hbgw."), ".")
	other := b.createToken(t, "other", 0, "publish:com.example.>")
	_, otherSecret, _ := strings.Cut(strings.TrimPrefix(other, "hbgw."), ".")
	h, body := structured("auth-1", "com.example.order.created")

	status, rh, rb := post(t, b.url+"/events", h, body)
	refused(t, status, rb, http.StatusUnauthorized, "unauthorized")
	if !strings.HasPrefix(rh.Get("WWW-Authenticate"), "Bearer") {
		t.Errorf("no token: WWW-Authenticate %q, want Bearer", rh.Get("WWW-Authenticate"))
	}

	// Every bad token gets the same answer: nothing tells which names exist.
	var answers []string
	for _, tt := range []struct{ name, authorization string }{
		{"wrong secret", "Bearer hbgw." + name + "." + otherSecret},
		{"unknown name", "Bearer hbgw.nobody." + secret},
		{"secret of another name", "Bearer hbgw.other." + secret},
		{"malformed", "Bearer " + secret},
		{"short secret", "Bearer hbgw." + name + "." + secret[1:]},
		{"other prefix", "Bearer hbxx." + name + "." + secret},
		{"other scheme", "Basic " + token},
		{"no scheme", token},
	} {
		t.Run(tt.name, func(t *testing.T) {
			hh := map[string]string{"Authorization": tt.authorization}
			for k, v := range h {
				hh[k] = v
			}
			status, rh, rb := post(t, b.url+"/events", hh, body)
			p := refused(t, status, rb, http.StatusUnauthorized, "unauthorized")
			if !strings.HasPrefix(rh.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("WWW-Authenticate %q, want Bearer", rh.Get("WWW-Authenticate"))
			}
			answers = append(answers, p.Detail)
		})
	}
	for _, a := range answers {
		if a != answers[0] {
			t.Errorf("bad tokens answered differently: %q", answers)
			break
		}
	}
	if n := b.stored(t); n != 0 {
		t.Fatalf("stream holds %d events after refusals", n)
	}
	postStored(t, b.url, withToken(h, token), body)
	postStored(t, b.url, withToken(h, other), strings.Replace(body, "auth-1", "auth-2", 1))
}

func TestRevokedTokenIsRefused(t *testing.T) {
	b := newAuthBus(t, noAnonymous, nil)
	token := b.createToken(t, "shop", 0, "publish:>")
	h, body := structured("rev-1", "com.example.order.created")
	postStored(t, b.url, withToken(h, token), body)
	if err := b.kv.Purge(t.Context(), "shop"); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 5*time.Second, func() error {
		status, _, rb := post(t, b.url+"/events", withToken(h, token), strings.Replace(body, "rev-1", "rev-2", 1))
		if status != http.StatusUnauthorized {
			return fmt.Errorf("revoked token answered %d %s", status, rb)
		}
		return nil
	})
	// Refused from then on, and nothing stored.
	before := b.stored(t)
	status, _, rb := post(t, b.url+"/events", withToken(h, token), strings.Replace(body, "rev-1", "rev-5", 1))
	refused(t, status, rb, http.StatusUnauthorized, "unauthorized")
	if n := b.stored(t); n != before {
		t.Errorf("stream holds %d events after a refusal, want %d", n, before)
	}
	if n := gateway.TokenCount(b.svc); n != 0 {
		t.Errorf("gateway holds %d tokens (and limiters) after the only one was revoked", n)
	}
	// A token created again under the same name is a new one: the old
	// one stays refused.
	renewed := b.createToken(t, "shop", 0, "publish:>")
	status, _, rb = post(t, b.url+"/events", withToken(h, token), strings.Replace(body, "rev-1", "rev-3", 1))
	refused(t, status, rb, http.StatusUnauthorized, "unauthorized")
	postStored(t, b.url, withToken(h, renewed), strings.Replace(body, "rev-1", "rev-4", 1))
}

func TestTokenLimitedToItsTypes(t *testing.T) {
	b := newAuthBus(t, noAnonymous, nil)
	token := b.createToken(t, "orders", 0, "publish:com.example.order.*", "call:com.example.>")
	h, body := structured("perm-1", "com.example.order.created")
	postStored(t, b.url, withToken(h, token), body)

	for _, typ := range []string{"com.example.invoice.paid", "com.example.order.created.v2", "com.example.order"} {
		t.Run(typ, func(t *testing.T) {
			h, body := structured("perm-x", typ)
			status, _, rb := post(t, b.url+"/events", withToken(h, token), body)
			p := refused(t, status, rb, http.StatusForbidden, "forbidden")
			if !strings.Contains(p.Detail, "publish") || !strings.Contains(p.Detail, typ) || !strings.Contains(p.Detail, "orders") {
				t.Errorf("detail %q: want the action, the type and the token's name", p.Detail)
			}
			// The webhook route checks the path's type.
			status, _, rb = post(t, b.url+"/events/"+typ, map[string]string{"Authorization": "Bearer " + token, "Content-Type": "application/json"}, `{"n":1}`)
			refused(t, status, rb, http.StatusForbidden, "forbidden")
		})
	}

	// In a batch, the events of other types are refused, the others stored.
	batch := `[{"specversion":"1.0","id":"perm-2","source":"/shop","type":"com.example.order.paid"},
		{"specversion":"1.0","id":"perm-3","source":"/shop","type":"com.example.invoice.paid"},
		{"specversion":"1.0","id":"perm-4","source":"/shop","type":"com.example.order.shipped"}]`
	status, _, rb := post(t, b.url+"/events", map[string]string{"Authorization": "Bearer " + token, "Content-Type": "application/cloudevents-batch+json"}, batch)
	if status != http.StatusMultiStatus {
		t.Fatalf("batch: status %d, want 207; body %s", status, rb)
	}
	var got gateway.BatchAnswer
	if err := json.Unmarshal(rb, &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Results) != 3 || got.Results[0].Status != 202 || got.Results[2].Status != 202 ||
		got.Results[1].Status != 403 || got.Results[1].Error == nil || got.Results[1].Error.Code != "forbidden" {
		t.Errorf("batch answer %s: want 202, 403 forbidden, 202", rb)
	}
	if n := b.stored(t); n != 3 {
		t.Errorf("stream holds %d events, want 3 (nothing of the refused types)", n)
	}
}

func TestAnonymous(t *testing.T) {
	h, body := structured("anon-1", "com.example.order.created")
	t.Run("allowed on loopback by default", func(t *testing.T) {
		b := newAuthBus(t, nil, nil)
		postStored(t, b.url, h, body)
		// A token, when given, is checked all the same.
		status, _, rb := post(t, b.url+"/events", withToken(h, "hbgw.shop.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"), body)
		refused(t, status, rb, http.StatusUnauthorized, "unauthorized")
		// The event of a webhook names its principal in its source.
		status, _, rb = post(t, b.url+"/events/com.example.hook", map[string]string{"Content-Type": "application/json", "Idempotency-Key": "anon-2"}, `{"n":2}`)
		ack := accepted(t, status, rb)
		if _, e := b.storedEvent(t, ack.Sequence); e.Source() != "/gateway/anonymous" {
			t.Errorf("webhook source %q, want /gateway/anonymous", e.Source())
		}
		if n := b.stored(t); n != 2 {
			t.Errorf("stream holds %d events, want 2", n)
		}
	})
	t.Run("refused when turned off", func(t *testing.T) {
		b := newAuthBus(t, noAnonymous, nil)
		status, _, rb := post(t, b.url+"/events", h, body)
		refused(t, status, rb, http.StatusUnauthorized, "unauthorized")
		if n := b.stored(t); n != 0 {
			t.Errorf("stream holds %d events after a refusal", n)
		}
	})
	t.Run("logged", func(t *testing.T) {
		var logs natstest.SyncBuffer
		newAuthBus(t, nil, slog.New(slog.NewTextHandler(&logs, nil)))
		if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "anonymous use is on") {
			t.Errorf("log %q: want a warning that anonymous use is on", logs.String())
		}
		var quiet natstest.SyncBuffer
		newAuthBus(t, noAnonymous, slog.New(slog.NewTextHandler(&quiet, nil)))
		if strings.Contains(quiet.String(), "anonymous") {
			t.Errorf("log %q: anonymous use is off", quiet.String())
		}
	})
}

func TestRateLimit(t *testing.T) {
	b := newAuthBus(t, func(c *gateway.Config) { c.Rate = 1 }, nil)
	token := b.createToken(t, "fast", 2, "publish:>") // its own rate, burst 2
	h, body := structured("rate-1", "com.example.order.created")
	n := 0
	post1 := func(header map[string]string) (int, http.Header, []byte) {
		n++
		return post(t, b.url+"/events", header, strings.Replace(body, "rate-1", "rate-"+strconv.Itoa(n), 1))
	}
	// The burst passes, then the token is over its rate (requests here
	// take far less than the half second a new one takes to come).
	for range 2 {
		status, _, rb := post1(withToken(h, token))
		accepted(t, status, rb)
	}
	status, rh, rb := post1(withToken(h, token))
	p := refused(t, status, rb, http.StatusTooManyRequests, "rate_limited")
	if ra, err := strconv.Atoi(rh.Get("Retry-After")); err != nil || ra != 1 {
		t.Errorf("Retry-After %q: want 1 (whole seconds, at least 1)", rh.Get("Retry-After"))
	}
	if !strings.Contains(p.Detail, "fast") || !strings.Contains(p.Detail, "rate of 2 ") {
		t.Errorf("detail %q: want the token's name and its own rate", p.Detail)
	}
	if got := b.stored(t); got != 2 {
		t.Errorf("stream holds %d events, want 2: the refused one stored", got)
	}

	// Anonymous requests share one limiter at Config.Rate, and a token of
	// rate 0 has its own at Config.Rate.
	status, _, rb = post1(h)
	accepted(t, status, rb)
	status, rh, rb = post1(h)
	refused(t, status, rb, http.StatusTooManyRequests, "rate_limited")
	if rh.Get("Retry-After") != "1" {
		t.Errorf("Retry-After %q, want 1", rh.Get("Retry-After"))
	}
	other := b.createToken(t, "other", 0, "publish:>")
	status, _, rb = post1(withToken(h, other))
	accepted(t, status, rb)
	status, _, rb = post1(withToken(h, other))
	p = refused(t, status, rb, http.StatusTooManyRequests, "rate_limited")
	if !strings.Contains(p.Detail, "rate of 1 ") {
		t.Errorf("detail %q: want the default rate", p.Detail)
	}
	if got := b.stored(t); got != 4 {
		t.Errorf("stream holds %d events, want 4", got)
	}
}

func TestTooManyHeaders(t *testing.T) {
	b := newAuthBus(t, func(c *gateway.Config) { c.MaxHeaders = 10 }, nil)
	h, body := structured("hdr-1", "com.example.order.created")
	// With User-Agent, Content-Length and Accept-Encoding (Go's client
	// sends them): 10.
	for i := 0; len(h) < 7; i++ {
		h["X-Extra-"+strconv.Itoa(i)] = "x"
	}
	postStored(t, b.url, h, body)
	h["X-One-More"] = "x"
	status, _, rb := post(t, b.url+"/events", h, strings.Replace(body, "hdr-1", "hdr-2", 1))
	refused(t, status, rb, http.StatusRequestHeaderFieldsTooLarge, "too_many_headers")
	if n := b.stored(t); n != 1 {
		t.Errorf("stream holds %d events, want 1", n)
	}
}

func TestLogsHoldNoToken(t *testing.T) {
	var logs natstest.SyncBuffer
	b := newAuthBus(t, noAnonymous, slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	token := b.createToken(t, "logged", 0, "publish:com.example.>")
	_, secret, _ := strings.Cut(strings.TrimPrefix(token, "hbgw."), ".")
	h, body := structured("log-1", "com.example.order.created")
	postStored(t, b.url, withToken(h, token), body)
	hf, bodyf := structured("log-2", "com.other.thing")
	post(t, b.url+"/events", withToken(hf, token), bodyf)                                // forbidden
	post(t, b.url+"/events", withToken(h, token+"x"), body)                              // malformed
	post(t, b.url+"/events", withToken(h, "hbgw.logged."+strings.ToUpper(secret)), body) // wrong secret
	if err := b.js.DeleteStream(t.Context(), events.StreamEvents); err != nil {
		t.Fatal(err)
	}
	post(t, b.url+"/events", withToken(h, token), strings.Replace(body, "log-1", "log-3", 1)) // not stored: logged with a warning
	out := logs.String()
	if !strings.Contains(out, "event not stored") {
		t.Fatalf("logs %s: want the failed publish logged", out)
	}
	if strings.Contains(out, secret) || strings.Contains(out, secret[:16]) {
		t.Errorf("logs hold the token's secret:\n%s", out)
	}
	if !strings.Contains(out, `"token":"logged"`) {
		t.Errorf("logs %s: want the token's name", out)
	}
}

// Until the watch delivered the bucket's tokens, the gateway is not ready
// and answers a request with a token 503 (not 401: the token may well be
// valid); a gateway started before the bucket exists waits for it.
func TestNotReadyUntilTokensLoaded(t *testing.T) {
	s := natstest.RunServer(t)
	js := natstest.JetStream(t, s)
	cfg := gateway.DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	svc, err := gateway.New(cfg, natstest.Connect(t, s), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	runErr := make(chan error, 1)
	go func() { runErr <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-runErr; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	natstest.Eventually(t, 5*time.Second, func() error {
		if svc.Addr() == "" {
			return errors.New("not listening yet")
		}
		return nil
	})
	url := "http://" + svc.Addr()
	h, body := structured("nr-1", "com.example.order.created")
	for range 5 {
		if err := svc.Ready(t.Context()); err == nil {
			t.Fatal("ready without bucket " + events.BucketGatewayTokens)
		}
		status, rh, rb := post(t, url+"/events", withToken(h, "hbgw.shop.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"), body)
		refused(t, status, rb, http.StatusServiceUnavailable, "unavailable")
		if rh.Get("Retry-After") == "" {
			t.Error("503 without Retry-After")
		}
		time.Sleep(50 * time.Millisecond) // the bucket stays missing: nothing to poll for
	}
	if _, err := topology.Ensure(t.Context(), js, topology.DefaultConfig()); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 10*time.Second, func() error { return svc.Ready(t.Context()) })
	status, _, rb := post(t, url+"/events", withToken(h, "hbgw.shop.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"), body)
	refused(t, status, rb, http.StatusUnauthorized, "unauthorized")
}

// TestMetricsNameTheToken: requests are counted under the name of the
// token that sent them, on their route, and those refused before they had
// a principal (no token, a bad one) under "-", on their route too.
func TestMetricsNameTheToken(t *testing.T) {
	b := newAuthBus(t, noAnonymous, nil)
	reg := prometheus.NewRegistry()
	if err := reg.Register(b.svc.Collector()); err != nil {
		t.Fatal(err)
	}
	shop := b.createToken(t, "shop", 0, "publish:com.example.>")
	h, body := structured("m-1", "com.example.order.created")
	status, _, answer := post(t, b.url+"/events", withToken(h, shop), body)
	accepted(t, status, answer)
	if status, _, answer = post(t, b.url+"/events/com.example.other", withToken(map[string]string{"Content-Type": "application/json"}, shop), `{}`); status != 202 {
		t.Fatalf("webhook: status %d: %s", status, answer)
	}
	status, _, answer = post(t, b.url+"/calls/com.example.order.created", withToken(h, shop), body)
	refused(t, status, answer, 403, "forbidden")
	status, _, answer = post(t, b.url+"/events", h, body)
	refused(t, status, answer, 401, "unauthorized")
	status, _, answer = post(t, b.url+"/events", withToken(h, shop+"x"), body)
	refused(t, status, answer, 401, "unauthorized")

	got := gathered(t, reg)
	for k, v := range map[string]float64{
		`hookbus_gateway_requests_total{route=POST /events,status=202,token=shop}`:        1,
		`hookbus_gateway_requests_total{route=POST /events/{type},status=202,token=shop}`: 1,
		`hookbus_gateway_requests_total{route=POST /calls/{type},status=403,token=shop}`:  1,
		`hookbus_gateway_requests_total{route=POST /events,status=401,token=-}`:           2,
		`hookbus_gateway_request_duration_seconds{route=POST /events}`:                    3,
	} {
		if got[k] != v {
			t.Errorf("%s = %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
}
