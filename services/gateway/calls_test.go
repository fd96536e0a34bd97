package gateway_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/hookbus/hookbus/internal/natstest"
	"github.com/hookbus/hookbus/pkg/client"
	"github.com/hookbus/hookbus/pkg/events"
	"github.com/hookbus/hookbus/services/dispatcher"
	"github.com/hookbus/hookbus/services/gateway"
	"github.com/hookbus/hookbus/services/registry"
)

// slowStep is how long the slow plugin takes over a step.
const slowStep = 1500 * time.Millisecond

// callBus is a NATS server with the topology, a registry, a dispatcher,
// chain plugins served with pkg/client and a gateway.
type callBus struct {
	srv *server.Server
	nc  *nats.Conn
	c   *client.Client
	url string // the gateway's base URL
}

// The chain plugins, one type each; every one passes a probe
// ({"probe":true}) through, so waitChain can tell it is in the chain.
var callPlugins = []struct {
	typ   string
	spec  events.PluginSpec
	chain func(ctx context.Context, state map[string]any) (client.StepResult, error)
}{
	{"com.example.call.tax", events.PluginSpec{Name: "tax", Priority: 10},
		func(_ context.Context, state map[string]any) (client.StepResult, error) {
			state["tax"] = 0.2
			return client.Continue(state), nil
		}},
	{"com.example.call.gate", events.PluginSpec{Name: "gate", Priority: 10},
		func(_ context.Context, state map[string]any) (client.StepResult, error) {
			state["blocked"] = true
			return client.Halt(state), nil
		}},
	{"com.example.call.strict", events.PluginSpec{Name: "strict", Priority: 10, Settings: events.Settings{OnError: events.OnErrorFail}},
		func(context.Context, map[string]any) (client.StepResult, error) {
			return client.StepResult{}, errors.New("card declined")
		}},
	{"com.example.call.slow", events.PluginSpec{Name: "slow", Priority: 10, Settings: events.Settings{StepTimeoutMS: 10000}},
		func(ctx context.Context, state map[string]any) (client.StepResult, error) {
			select {
			case <-ctx.Done():
				return client.StepResult{}, ctx.Err()
			case <-time.After(slowStep):
			}
			state["slow"] = true
			return client.Continue(state), nil
		}},
	{"com.example.call.meddle", events.PluginSpec{Name: "meddler", Priority: 10},
		func(_ context.Context, state map[string]any) (client.StepResult, error) {
			state["user_id"], state["note"] = "mallory", "changed"
			return client.Continue(state), nil
		}},
}

// runChainServices runs a registry and a dispatcher (with dcfg) on srv,
// each on a connection of its own, until the test ends: what calls and
// chains need.
func runChainServices(tb testing.TB, srv *server.Server, dcfg dispatcher.Config) {
	tb.Helper()
	reg, err := registry.New(registry.DefaultConfig(), natstest.Connect(tb, srv), nil)
	if err != nil {
		tb.Fatal(err)
	}
	natstest.RunService(tb, reg)
	disp, err := dispatcher.New(dcfg, natstest.Connect(tb, srv), nil)
	if err != nil {
		tb.Fatal(err)
	}
	natstest.RunService(tb, disp)
}

func newCallBus(t *testing.T) *callBus {
	t.Helper()
	srv, _ := natstest.RunTopology(t)
	dcfg := dispatcher.DefaultConfig()
	dcfg.ConsumerCheck = 200 * time.Millisecond
	runChainServices(t, srv, dcfg)

	nc := natstest.Connect(t, srv)
	c, err := client.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	b := &callBus{srv: srv, nc: nc, c: c}
	for _, p := range callPlugins {
		spec := p.spec
		spec.Event = p.typ
		b.serve(t, client.Plugin{Spec: spec, Chain: func(ctx context.Context, s *client.Step) (client.StepResult, error) {
			var state map[string]any
			if err := s.Event.DataAs(&state); err != nil {
				return client.StepResult{}, err
			}
			if state["probe"] == true {
				return client.Continue(state), nil
			}
			return p.chain(ctx, state)
		}})
	}
	for _, p := range callPlugins {
		b.waitChain(t, p.typ, p.spec.Name)
	}
	b.url = startGateway(t, nc, nil)
	return b
}

// startGateway serves a gateway on nc with httptest and returns its URL.
func startGateway(t *testing.T, nc *nats.Conn, set func(*gateway.Config)) string {
	t.Helper()
	cfg := gateway.DefaultConfig()
	cfg.MaxEventSize = testMaxEventSize
	if set != nil {
		set(&cfg)
	}
	svc, err := gateway.New(cfg, nc, nil)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(svc.Handler())
	t.Cleanup(hs.Close)
	return hs.URL
}

// serve runs plugin p until the test ends.
func (b *callBus) serve(t *testing.T, p client.Plugin) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.c.Serve(ctx, p) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve %s: %v", p.Spec.Name, err)
		}
	})
}

// waitChain polls until the dispatcher runs plugin in the chain of typ.
func (b *callBus) waitChain(t *testing.T, typ, plugin string) {
	t.Helper()
	natstest.Eventually(t, 20*time.Second, func() error {
		e := newCallEvent(typ, "probe", map[string]any{"probe": true})
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		res, err := b.c.Call(ctx, e)
		if err != nil {
			return err
		}
		if len(res.Trace) != 1 || res.Trace[0].Plugin != plugin {
			return fmt.Errorf("chain of %s: trace %+v, want plugin %s", typ, res.Trace, plugin)
		}
		return nil
	})
}

func newCallEvent(typ, id string, data any) event.Event {
	e := event.New()
	e.SetID(id)
	e.SetSource("/shop")
	e.SetType(typ)
	_ = e.SetData(event.ApplicationJSON, data)
	return e
}

// chainAnswer is a call's answer: a ChainResult, as JSON.
func chainAnswer(t *testing.T, body []byte) events.ChainResult {
	t.Helper()
	var res events.ChainResult
	if err := json.Unmarshal(body, &res); err != nil {
		t.Fatalf("answer %s: %v", body, err)
	}
	return res
}

func structuredCall(typ, id, data string) (map[string]string, string) {
	return map[string]string{"Content-Type": "application/cloudevents+json"},
		`{"specversion":"1.0","id":"` + id + `","source":"/shop","type":"` + typ + `","datacontenttype":"application/json","data":` + data + `}`
}

func TestCall(t *testing.T) {
	b := newCallBus(t)
	binary := func(typ, id string) map[string]string {
		return map[string]string{"ce-specversion": "1.0", "ce-id": id, "ce-source": "/shop", "ce-type": typ, "Content-Type": "application/json"}
	}
	tests := []struct {
		name    string
		path    string
		header  map[string]string
		body    string
		status  int
		state   string // the answer's state, JSON
		halted  string // halted_by, when halted
		outcome events.Outcome
		code    events.ErrorCode // the answer's error code
	}{
		{name: "continued, binary", path: "com.example.call.tax", header: binary("com.example.call.tax", "c-1"), body: `{"total":10}`,
			status: 200, state: `{"tax":0.2,"total":10}`, outcome: events.OutcomeContinued},
		{name: "continued, structured", path: "com.example.call.tax", body: `{"total":10}`,
			status: 200, state: `{"tax":0.2,"total":10}`, outcome: events.OutcomeContinued},
		{name: "halted", path: "com.example.call.gate", header: binary("com.example.call.gate", "c-2"), body: `{"total":10}`,
			status: 200, state: `{"blocked":true,"total":10}`, halted: "gate", outcome: events.OutcomeHalted},
		{name: "plugin failed", path: "com.example.call.strict", header: binary("com.example.call.strict", "c-3"), body: `{"total":10}`,
			status: 502, state: `{"total":10}`, outcome: events.OutcomeFailed, code: events.CodePluginFailed},
		{name: "data not JSON", path: "com.example.call.tax", header: map[string]string{
			"ce-specversion": "1.0", "ce-id": "c-4", "ce-source": "/shop", "ce-type": "com.example.call.tax", "Content-Type": "text/plain"},
			body: `{"total":`, status: 400, code: events.CodeInvalid},
		{name: "no chain plugin", path: "com.example.call.nobody", header: binary("com.example.call.nobody", "c-5"), body: `{"total":10}`,
			status: 200, state: `{"total":10}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			header, body := tt.header, tt.body
			if header == nil {
				header, body = structuredCall(tt.path, "c-s", tt.body)
			}
			status, h, raw := post(t, b.url+"/calls/"+tt.path, header, body)
			if status != tt.status {
				t.Fatalf("status %d, want %d; body %s", status, tt.status, raw)
			}
			if ct := h.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q, want application/json", ct)
			}
			res := chainAnswer(t, raw)
			if tt.state != "" && string(res.State) != tt.state {
				t.Errorf("state %s, want %s", res.State, tt.state)
			}
			if res.Halted != (tt.halted != "") || res.HaltedBy != tt.halted {
				t.Errorf("halted %v by %q, want by %q", res.Halted, res.HaltedBy, tt.halted)
			}
			if tt.outcome != "" && (len(res.Trace) != 1 || res.Trace[0].Outcome != tt.outcome) {
				t.Errorf("trace %+v, want one step %s", res.Trace, tt.outcome)
			}
			if (res.Error == nil) != (tt.code == "") || res.Error != nil && res.Error.Code != tt.code {
				t.Errorf("error %+v, want code %q", res.Error, tt.code)
			}
			if res.EventType != tt.path {
				t.Errorf("event_type %q, want %q", res.EventType, tt.path)
			}
		})
	}
}

func TestCallRefusals(t *testing.T) {
	b := newCallBus(t)
	header, body := structuredCall("com.example.call.tax", "r-1", `{"total":10}`)
	tests := []struct {
		name   string
		url    string
		header map[string]string
		body   string
		status int
		code   string
		field  string
	}{
		{"type not the path's", b.url + "/calls/com.example.call.gate", header, body, 400, "invalid", "type"},
		{"invalid event", b.url + "/calls/com.example.call.tax", header, strings.Replace(body, `"id":"r-1",`, "", 1), 400, "invalid", "id"},
		{"batch", b.url + "/calls/com.example.call.tax", map[string]string{"Content-Type": "application/cloudevents-batch+json"}, "[" + body + "]", 415, "unsupported_media_type", ""},
		{"not a CloudEvent", b.url + "/calls/com.example.call.tax", map[string]string{"Content-Type": "application/json"}, `{"total":10}`, 415, "unsupported_media_type", ""},
		{"Prefer wait not a number", b.url + "/calls/com.example.call.tax", withHeader(header, "Prefer", "wait=soon"), body, 400, "invalid", "Prefer"},
		{"Prefer wait zero", b.url + "/calls/com.example.call.tax", withHeader(header, "Prefer", "respond-async, wait=0"), body, 400, "invalid", "Prefer"},
		{"timeout not a time", b.url + "/calls/com.example.call.tax?timeout=soon", header, body, 400, "invalid", "timeout"},
		{"timeout negative", b.url + "/calls/com.example.call.tax?timeout=-1s", header, body, 400, "invalid", "timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, h, raw := post(t, tt.url, tt.header, tt.body)
			wantProblem(t, status, h, raw, tt.status, tt.code, tt.field)
		})
	}
}

// withHeader returns h with k set to v.
func withHeader(h map[string]string, k, v string) map[string]string {
	out := map[string]string{k: v}
	for hk, hv := range h {
		out[hk] = hv
	}
	return out
}

// wantProblem fails unless the answer is a problem with status, code and
// field.
func wantProblem(t *testing.T, status int, h http.Header, body []byte, wantStatus int, code, field string) problemBody {
	t.Helper()
	if status != wantStatus {
		t.Fatalf("status %d, want %d; body %s", status, wantStatus, body)
	}
	if ct := h.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("Content-Type %q, want application/problem+json", ct)
	}
	var p problemBody
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("body %s: %v", body, err)
	}
	if p.Status != wantStatus || p.Code != code || p.Field != field || !strings.HasSuffix(p.Type, "#http-gateway-"+code) || p.Detail == "" {
		t.Errorf("problem %s: want status %d, code %q, field %q", body, wantStatus, code, field)
	}
	return p
}

func TestCallWithoutDispatcher(t *testing.T) {
	b := newBus(t)
	header, body := structuredCall("com.example.call.tax", "n-1", `{"total":10}`)
	status, h, raw := post(t, b.url+"/calls/com.example.call.tax", header, body)
	wantProblem(t, status, h, raw, 503, "unavailable", "")
	if h.Get("Retry-After") != "1" {
		t.Errorf("Retry-After %q, want 1", h.Get("Retry-After"))
	}
}

func TestCallWait(t *testing.T) {
	b := newCallBus(t)
	header, body := structuredCall("com.example.call.slow", "w-1", `{"total":10}`)
	url := b.url + "/calls/com.example.call.slow"
	tests := []struct {
		name    string
		query   string
		prefer  string
		status  int
		applied string // Preference-Applied
	}{
		{name: "Prefer wait shorter than the chain", prefer: "wait=1", status: 504, applied: "wait=1"},
		{name: "timeout shorter than the chain, seconds", query: "?timeout=0.3", status: 504},
		{name: "timeout shorter than the chain, duration", query: "?timeout=300ms", status: 504},
		{name: "Prefer wait long enough", prefer: "return=representation; x=1, WAIT = 10", status: 200, applied: "wait=10"},
		{name: "Prefer wait over the maximum", prefer: "wait=100000", status: 200, applied: "wait=300"},
		{name: "timeout wins over Prefer", query: "?timeout=10s", prefer: "wait=1", status: 200},
		{name: "default wait", status: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := header
			if tt.prefer != "" {
				h = withHeader(header, "Prefer", tt.prefer)
			}
			start := time.Now()
			status, rh, raw := post(t, url+tt.query, h, body)
			took := time.Since(start)
			if got := rh.Get("Preference-Applied"); got != tt.applied {
				t.Errorf("Preference-Applied %q, want %q", got, tt.applied)
			}
			if tt.status == 504 {
				wantProblem(t, status, rh, raw, 504, "timeout", "")
				if took >= slowStep {
					t.Errorf("504 after %s: the wait was not bounded (the chain takes %s)", took, slowStep)
				}
				return
			}
			if status != tt.status {
				t.Fatalf("status %d, want %d; body %s", status, tt.status, raw)
			}
			if res := chainAnswer(t, raw); string(res.State) != `{"slow":true,"total":10}` {
				t.Errorf("state %s", res.State)
			}
		})
	}
}

// A call waits past the server's ReadTimeout, which bounds the reading of
// the request only (no WriteTimeout or handler timeout cuts a call short).
func TestCallOutlastsReadTimeout(t *testing.T) {
	b := newCallBus(t)
	cfg := gateway.DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.ReadTimeout = 300 * time.Millisecond
	svc, err := gateway.New(cfg, b.nc, nil)
	if err != nil {
		t.Fatal(err)
	}
	natstest.RunService(t, svc)
	header, body := structuredCall("com.example.call.slow", "rt-1", `{"total":10}`)
	status, _, raw := post(t, "http://"+svc.Addr()+"/calls/com.example.call.slow", header, body)
	if status != http.StatusOK {
		t.Fatalf("status %d, want 200; body %s", status, raw)
	}
}

func TestCallPrivateFields(t *testing.T) {
	b := newCallBus(t)
	tests := []struct {
		name    string
		header  map[string]string
		body    string
		private bool
	}{
		{"binary, ce-privatefields", map[string]string{"ce-specversion": "1.0", "ce-id": "p-1", "ce-source": "/shop",
			"ce-type": "com.example.call.meddle", "ce-privatefields": "user_id", "Content-Type": "application/json"},
			`{"user_id":"ada","note":"x"}`, true},
		{"structured, privatefields", map[string]string{"Content-Type": "application/cloudevents+json"},
			`{"specversion":"1.0","id":"p-2","source":"/shop","type":"com.example.call.meddle","privatefields":"user_id","data":{"user_id":"ada","note":"x"}}`, true},
		{"none private", map[string]string{"ce-specversion": "1.0", "ce-id": "p-3", "ce-source": "/shop",
			"ce-type": "com.example.call.meddle", "Content-Type": "application/json"},
			`{"user_id":"ada","note":"x"}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, _, raw := post(t, b.url+"/calls/com.example.call.meddle", tt.header, tt.body)
			if status != http.StatusOK {
				t.Fatalf("status %d, want 200; body %s", status, raw)
			}
			var state struct{ UserID, Note string }
			res := chainAnswer(t, raw)
			if err := json.Unmarshal(res.State, &struct {
				UserID *string `json:"user_id"`
				Note   *string `json:"note"`
			}{&state.UserID, &state.Note}); err != nil {
				t.Fatal(err)
			}
			wantUser := "mallory"
			if tt.private {
				wantUser = "ada"
			}
			if state.UserID != wantUser || state.Note != "changed" {
				t.Errorf("state %s: want user_id %q and the note changed", res.State, wantUser)
			}
		})
	}
}
