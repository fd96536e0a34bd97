//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/internal/natstest"
	"github.com/hookbus/hookbus/pkg/client"
	"github.com/hookbus/hookbus/pkg/events"
)

// The interop tests' event type and its two plugins.
const (
	interopType   = "com.example.interop"
	interopNotify = "interop-notify"
	interopChain  = "interop-chain"
)

// gatewayAuth is the one place that decides how a test authenticates to
// srv's gateway: every request the tests make, whatever the client
// (net/http, curl, the npm emitter, sdk-go), carries these headers. With a
// token (srv.GatewayToken) it is Authorization: Bearer <token>; without,
// nothing: an anonymous client, which the gateway allows on loopback.
func (s *server) gatewayAuth() http.Header {
	h := http.Header{}
	if s.GatewayToken != "" {
		h.Set("Authorization", "Bearer "+s.GatewayToken)
	}
	return h
}

// gatewayAnswer is the status, Content-Type and body of one answer of the
// gateway.
type gatewayAnswer struct {
	Status      int
	ContentType string
	Body        string
}

// stored decodes a 202's body.
func (a gatewayAnswer) stored(t *testing.T) storedJSON {
	t.Helper()
	if a.Status != http.StatusAccepted || !strings.HasPrefix(a.ContentType, "application/json") {
		t.Fatalf("answer %d %s %s, want 202 application/json", a.Status, a.ContentType, a.Body)
	}
	var s storedJSON
	decodeJSON(t, "the gateway", a.Body, &s)
	if s.Stream != events.StreamEvents || s.Seq == 0 {
		t.Fatalf("answer %s, want stream %s and a sequence", a.Body, events.StreamEvents)
	}
	return s
}

// storedJSON is the gateway's 202 body for one event.
type storedJSON struct {
	Stream    string `json:"stream"`
	Seq       uint64 `json:"seq"`
	Duplicate bool   `json:"duplicate"`
}

// batchJSON is the gateway's body for a batch.
type batchJSON struct {
	Results []struct {
		Status int `json:"status"`
		storedJSON
		Error *struct {
			Status int    `json:"status"`
			Code   string `json:"code"`
			Field  string `json:"field"`
			Reason string `json:"reason"`
		} `json:"error"`
	} `json:"results"`
}

// curlPost posts body to srv's gateway with curl (headers as "Name: value"
// lines, plus gatewayAuth's) and returns the answer. curl must be on PATH:
// CI machines have it, so a missing one fails the test.
func curlPost(t *testing.T, srv *server, path string, headers []string, body string) gatewayAnswer {
	t.Helper()
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatalf("curl is not installed: the gateway's interop tests post with it: %v", err)
	}
	args := []string{"-sS", "--max-time", "20", "-X", "POST", srv.GatewayURL + path, "--data-binary", body,
		"-w", "\n%{http_code} %{content_type}"}
	for k, vs := range srv.gatewayAuth() {
		for _, v := range vs {
			headers = append(headers, k+": "+v)
		}
	}
	for _, h := range headers {
		args = append(args, "-H", h)
	}
	stdout, stderr, code := runCommand(t, "curl", args...)
	if code != 0 {
		t.Fatalf("curl: exit status %d: %s", code, stderr)
	}
	// -w puts "\n<status> <content type>" after the body.
	i := strings.LastIndex(stdout, "\n")
	statusText, contentType, _ := strings.Cut(stdout[i+1:], " ")
	status, err := strconv.Atoi(statusText)
	if i < 0 || err != nil {
		t.Fatalf("curl printed %q: no status at the end", stdout)
	}
	return gatewayAnswer{Status: status, ContentType: contentType, Body: stdout[:i]}
}

// npmEmit sends e to srv's gateway with the npm cloudevents package's HTTP
// emitter (e2e/node/emit.mjs) in mode binary or structured and returns the
// body of the answer (the package does not report the status).
func npmEmit(t *testing.T, srv *server, mode string, e event.Event) gatewayAnswer {
	t.Helper()
	ev, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"--url", srv.GatewayURL + "/events", "--mode", mode, "--event", string(ev)}
	for k, vs := range srv.gatewayAuth() {
		for _, v := range vs {
			args = append(args, "--header", k+": "+v)
		}
	}
	stdout, stderr, code := runNode(t, "emit.mjs", args...)
	if code != 0 {
		t.Fatalf("node emit.mjs: exit status %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	var out struct {
		ContentType string `json:"contentType"`
		Body        string `json:"body"`
	}
	decodeJSON(t, "node emit.mjs", stdout, &out)
	// The answer of the gateway is 202 exactly when its body is a stored
	// event (a refusal is a problem, with its status inside).
	a := gatewayAnswer{ContentType: out.ContentType, Body: out.Body}
	var p struct {
		Status int `json:"status"`
	}
	if err := json.Unmarshal([]byte(out.Body), &p); err == nil && p.Status == 0 && strings.HasPrefix(out.ContentType, "application/json") {
		a.Status = http.StatusAccepted
	} else {
		a.Status = p.Status
	}
	return a
}

// sdkGoSend sends e to srv's gateway with sdk-go's own HTTP client
// (cloudevents.NewClientHTTP) in binary mode, or structured mode when
// structured is set, and returns the HTTP status it reported.
func sdkGoSend(t *testing.T, srv *server, structured bool, e event.Event) int {
	t.Helper()
	opts := []cehttp.Option{cehttp.WithTarget(srv.GatewayURL + "/events")}
	for k, vs := range srv.gatewayAuth() {
		for _, v := range vs {
			opts = append(opts, cehttp.WithHeader(k, v))
		}
	}
	c, err := cloudevents.NewClientHTTP(opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if structured {
		ctx = cloudevents.WithEncodingStructured(ctx)
	}
	res := c.Send(ctx, e)
	var hr *cehttp.Result
	if !cloudevents.ResultAs(res, &hr) {
		t.Fatalf("sdk-go send %s: %v, want an HTTP result", e.ID(), res)
	}
	return hr.StatusCode
}

// seenEvent is what a plugin saw of an event: every attribute, the
// extensions and the data.
type seenEvent struct {
	ID, Source, Type, Subject, Time, DataSchema, DataContentType string
	Extensions                                                   string // "name=value ...", sorted by name
	Data                                                         string // compacted JSON
}

// seenOf describes e as a plugin sees it.
func seenOf(e event.Event) seenEvent {
	s := seenEvent{ID: e.ID(), Source: e.Source(), Type: e.Type(), Subject: e.Subject(), DataSchema: e.DataSchema(),
		DataContentType: e.DataContentType()}
	if !e.Time().IsZero() {
		s.Time = e.Time().UTC().Format(time.RFC3339Nano)
	}
	ext := e.Extensions()
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(ext)) {
		parts = append(parts, fmt.Sprintf("%s=%v", k, ext[k]))
	}
	s.Extensions = strings.Join(parts, " ")
	var data bytes.Buffer
	if err := json.Compact(&data, e.Data()); err != nil {
		s.Data = "not JSON: " + string(e.Data())
	} else {
		s.Data = data.String()
	}
	return s
}

// sightings records what the interop plugins saw, by plugin and event id.
type sightings struct {
	mu   sync.Mutex
	seen map[string]map[string]seenEvent
}

func (s *sightings) add(plugin string, e event.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seen[plugin][e.ID()] = seenOf(e)
}

// wait returns what plugin saw of the event id, waiting for it.
func (s *sightings) wait(t *testing.T, plugin, id string) seenEvent {
	t.Helper()
	var got seenEvent
	natstest.Eventually(t, 20*time.Second, func() error {
		s.mu.Lock()
		defer s.mu.Unlock()
		var ok bool
		if got, ok = s.seen[plugin][id]; !ok {
			return fmt.Errorf("%s has not seen event %s", plugin, id)
		}
		return nil
	})
	return got
}

// startInteropPlugins runs a notify and a chain plugin of interopType in
// this process with the Go SDK (client.Serve) against srv, and waits
// until both run: every event of the type stored afterwards reaches both.
func startInteropPlugins(t *testing.T, srv *server) *sightings {
	t.Helper()
	nc, err := nats.Connect(srv.NATSURL, nats.Name("hookbus-e2e-plugins"), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(nc)
	if err != nil {
		nc.Close()
		t.Fatal(err)
	}
	s := &sightings{seen: map[string]map[string]seenEvent{interopNotify: {}, interopChain: {}}}
	running := make(chan string, 8)
	onRun := func(p events.Plugin) { running <- p.Name }
	plugins := []client.Plugin{
		{
			Spec: events.PluginSpec{Name: interopNotify, Event: interopType},
			Notify: func(_ context.Context, d *client.Delivery) error {
				s.add(interopNotify, d.Event)
				return nil
			},
			OnStart: onRun, OnRestart: onRun,
		},
		{
			Spec: events.PluginSpec{Name: interopChain, Event: interopType},
			Chain: func(_ context.Context, st *client.Step) (client.StepResult, error) {
				s.add(interopChain, st.Event)
				return client.Continue(nil), nil
			},
			OnStart: onRun, OnRestart: onRun,
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	errs := make(chan error, len(plugins))
	for _, p := range plugins {
		wg.Go(func() { errs <- c.Serve(ctx, p) })
	}
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		nc.Close()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Errorf("plugin worker: %v", err)
			}
		}
	})
	pending := map[string]bool{interopNotify: true, interopChain: true}
	deadline := time.After(runTimeout)
	for len(pending) > 0 {
		select {
		case name := <-running:
			delete(pending, name)
		case <-deadline:
			t.Fatalf("plugins %v not running after %s", slices.Sorted(maps.Keys(pending)), runTimeout)
		}
	}
	return s
}

// interopEvent is the event each interop case sends: every optional
// attribute, two extensions, JSON data with non-ASCII text. subject and
// tenant are the case's, so that a client that does not percent-encode
// headers (the npm package) gets values it can send.
func interopEvent(t *testing.T, id, source, subject, tenant string) event.Event {
	t.Helper()
	e := event.New()
	e.SetID(id)
	e.SetSource(source)
	e.SetType(interopType)
	e.SetSubject(subject)
	e.SetTime(time.Date(2026, 11, 28, 10, 0, 0, 125_000_000, time.UTC))
	e.SetDataSchema("https://example.com/schemas/interop.json")
	e.SetExtension("tenant", tenant)
	e.SetExtension("region", "eu-west-1")
	if err := e.SetData(event.ApplicationJSON, map[string]any{"order": 42, "note": "grüße ✓", "items": []int{1, 2}}); err != nil {
		t.Fatal(err)
	}
	return e
}

// TestGatewayInterop posts events to the gateway of the built binary with
// clients no one here wrote, curl (binary, structured, batch), the npm
// cloudevents package's HTTP emitter (binary, structured) and sdk-go's HTTP
// client (binary, structured), and checks that a notify plugin and a chain
// plugin each see every event with the same attributes, extensions and
// data as its twin, the same event published over NATS with the Go SDK.
func TestGatewayInterop(t *testing.T) {
	requireNode(t)
	srv := startServer(t, t.TempDir())
	seen := startInteropPlugins(t, srv)

	nc, err := nats.Connect(srv.NATSURL, nats.Name("hookbus-e2e-twins"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	overNATS, err := client.New(nc)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name            string
		subject, tenant string
		// send posts e over HTTP and returns the events it sent: e, and
		// for a batch the others.
		send func(t *testing.T, e event.Event) []event.Event
	}{
		{
			name: "curl binary", subject: "order 42 ü", tenant: "acme corp",
			send: func(t *testing.T, e event.Event) []event.Event {
				h := []string{"ce-specversion: 1.0", "ce-id: " + e.ID(), "ce-source: " + e.Source(), "ce-type: " + e.Type(),
					"ce-subject: order%2042%20%C3%BC", "ce-time: 2026-11-28T10:00:00.125Z", "ce-dataschema: " + e.DataSchema(),
					"ce-tenant: acme%20corp", "ce-region: eu-west-1", "Content-Type: application/json"}
				curlPost(t, srv, "/events", h, string(e.Data())).stored(t)
				return []event.Event{e}
			},
		},
		{
			name: "curl structured", subject: "order 42 ü", tenant: "acme corp",
			send: func(t *testing.T, e event.Event) []event.Event {
				body := `{"specversion":"1.0","id":"` + e.ID() + `","source":"` + e.Source() + `","type":"` + e.Type() + `",
					"subject":"order 42 ü","time":"2026-11-28T10:00:00.125Z","dataschema":"` + e.DataSchema() + `",
					"tenant":"acme corp","region":"eu-west-1","datacontenttype":"application/json","data":` + string(e.Data()) + `}`
				curlPost(t, srv, "/events", []string{"Content-Type: application/cloudevents+json; charset=utf-8"}, body).stored(t)
				return []event.Event{e}
			},
		},
		{
			name: "curl batch", subject: "order 42 ü", tenant: "acme corp",
			send: func(t *testing.T, e event.Event) []event.Event {
				second := e.Clone()
				second.SetID(e.ID() + "-2")
				second.SetSubject("")
				_ = second.SetData(event.ApplicationJSON, map[string]any{"order": 43})
				batch, err := json.Marshal([]event.Event{e, second})
				if err != nil {
					t.Fatal(err)
				}
				a := curlPost(t, srv, "/events", []string{"Content-Type: application/cloudevents-batch+json"}, string(batch))
				var got batchJSON
				decodeJSON(t, "the gateway", a.Body, &got)
				if a.Status != http.StatusAccepted || len(got.Results) != 2 {
					t.Fatalf("batch answer %d %s, want 202 with 2 results", a.Status, a.Body)
				}
				for i, r := range got.Results {
					if r.Status != http.StatusAccepted || r.Stream != events.StreamEvents || r.Seq == 0 || r.Duplicate || r.Error != nil {
						t.Errorf("batch result %d: %+v, want 202 stored, not a duplicate", i, r)
					}
				}
				if got.Results[1].Seq <= got.Results[0].Seq {
					t.Errorf("batch results %+v: want the events stored in the order of the batch", got.Results)
				}
				return []event.Event{e, second}
			},
		},
		{
			// The npm package does not percent-encode ce-* values: a
			// space goes as it is, and the gateway reads it as sent.
			name: "npm cloudevents binary", subject: "order 42", tenant: "acme corp",
			send: func(t *testing.T, e event.Event) []event.Event {
				npmEmit(t, srv, "binary", e).stored(t)
				return []event.Event{e}
			},
		},
		{
			name: "npm cloudevents structured", subject: "order 42 ü", tenant: "acme corp",
			send: func(t *testing.T, e event.Event) []event.Event {
				npmEmit(t, srv, "structured", e).stored(t)
				return []event.Event{e}
			},
		},
		{
			name: "sdk-go binary", subject: "order 42 ü", tenant: "acme corp",
			send: func(t *testing.T, e event.Event) []event.Event {
				if code := sdkGoSend(t, srv, false, e); code != http.StatusAccepted {
					t.Fatalf("sdk-go binary: status %d, want 202", code)
				}
				return []event.Event{e}
			},
		},
		{
			name: "sdk-go structured", subject: "order 42 ü", tenant: "acme corp",
			send: func(t *testing.T, e event.Event) []event.Event {
				if code := sdkGoSend(t, srv, true, e); code != http.StatusAccepted {
					t.Fatalf("sdk-go structured: status %d, want 202", code)
				}
				return []event.Event{e}
			},
		},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			source := "/e2e/interop/" + strings.ReplaceAll(tt.name, " ", "-")
			sent := tt.send(t, interopEvent(t, fmt.Sprintf("http-%d", i), source, tt.subject, tt.tenant))
			for _, e := range sent {
				// The twin: the same event, another id, over NATS.
				twin := e.Clone()
				twin.SetID("nats-" + e.ID())
				ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
				if _, err := overNATS.Publish(ctx, twin); err != nil {
					t.Fatalf("publish the twin of %s over NATS: %v", e.ID(), err)
				}
				cancel()
				want := seenOf(e)
				for _, plugin := range []string{interopNotify, interopChain} {
					got := seen.wait(t, plugin, e.ID())
					if got != want {
						t.Errorf("%s saw the event posted over HTTP as\n%+v\nwant\n%+v", plugin, got, want)
					}
					gotTwin := seen.wait(t, plugin, twin.ID())
					gotTwin.ID = e.ID()
					if got != gotTwin {
						t.Errorf("%s saw the event posted over HTTP and its twin published over NATS differently:\nHTTP %+v\nNATS %+v", plugin, got, gotTwin)
					}
				}
			}
		})
	}
	srv.stop(t)
}

// TestGatewayRetryAndRefusals: a POST sent again with the same source and
// id, in another mode or from another client, is stored once and answered
// duplicate:true with the first sequence; a batch with an invalid event
// stores the others and answers 207 naming the refused one, which is not
// stored.
func TestGatewayRetryAndRefusals(t *testing.T) {
	requireNode(t)
	srv := startServer(t, t.TempDir())
	e := interopEvent(t, "retry-1", "/e2e/retry", "order 42", "acme")

	binaryHeaders := []string{"ce-specversion: 1.0", "ce-id: retry-1", "ce-source: /e2e/retry", "ce-type: " + interopType,
		"Content-Type: application/json"}
	first := curlPost(t, srv, "/events", binaryHeaders, string(e.Data())).stored(t)
	if first.Duplicate {
		t.Fatalf("first POST answered %+v, want not a duplicate", first)
	}
	structured := `{"specversion":"1.0","id":"retry-1","source":"/e2e/retry","type":"` + interopType + `","datacontenttype":"application/json","data":` + string(e.Data()) + `}`
	again := curlPost(t, srv, "/events", []string{"Content-Type: application/cloudevents+json"}, structured).stored(t)
	if want := (storedJSON{Stream: events.StreamEvents, Seq: first.Seq, Duplicate: true}); again != want {
		t.Errorf("the same event again in structured mode: %+v, want %+v", again, want)
	}
	fromNPM := npmEmit(t, srv, "structured", e).stored(t)
	if !fromNPM.Duplicate || fromNPM.Seq != first.Seq {
		t.Errorf("the same event again from the npm emitter: %+v, want a duplicate of seq %d", fromNPM, first.Seq)
	}
	if n := streamMsgs(t, srv); n != 1 {
		t.Fatalf("HOOKBUS_EVENTS holds %d messages after one event posted three times, want 1", n)
	}
	stored := readEvents(t, srv)
	if want := events.MsgID("/e2e/retry", "retry-1"); len(stored) != 1 || stored[0].MsgID != want || stored[0].Mode != "binary" {
		t.Errorf("stored %+v, want one binary-mode event with Nats-Msg-Id %s", stored, want)
	}

	// A batch of a valid, an invalid (no source) and a valid event.
	batch := `[{"specversion":"1.0","id":"b-1","source":"/e2e/batch","type":"` + interopType + `","data":{"n":1}},
		{"specversion":"1.0","id":"b-2","type":"` + interopType + `","data":{"n":2}},
		{"specversion":"1.0","id":"b-3","source":"/e2e/batch","type":"` + interopType + `","data":{"n":3}}]`
	a := curlPost(t, srv, "/events", []string{"Content-Type: application/cloudevents-batch+json"}, batch)
	var got batchJSON
	decodeJSON(t, "the gateway", a.Body, &got)
	if a.Status != http.StatusMultiStatus || len(got.Results) != 3 {
		t.Fatalf("mixed batch: %d %s, want 207 with 3 results", a.Status, a.Body)
	}
	for _, i := range []int{0, 2} {
		if r := got.Results[i]; r.Status != http.StatusAccepted || r.Seq == 0 || r.Error != nil {
			t.Errorf("mixed batch result %d: %+v, want 202 stored", i, r)
		}
	}
	if r := got.Results[1]; r.Status != http.StatusBadRequest || r.Error == nil || r.Error.Code != "invalid" || r.Error.Field != "source" || r.Seq != 0 {
		t.Errorf("mixed batch result 1: %+v (error %+v), want 400 invalid, field source, not stored", r, r.Error)
	}
	var ids []string
	for _, s := range readEvents(t, srv) {
		ids = append(ids, s.ID)
	}
	if want := []string{"retry-1", "b-1", "b-3"}; !slices.Equal(ids, want) {
		t.Errorf("HOOKBUS_EVENTS holds %v, want %v", ids, want)
	}
	srv.stop(t)
}

// TestGatewayAnswersOnlyStoredEvents: while HOOKBUS_EVENTS refuses new
// messages (a limit reached, discard new), a POST is not answered 202 but
// with a problem, and nothing is stored; once the stream takes messages
// again, the same event posted again is stored (it was not before).
func TestGatewayAnswersOnlyStoredEvents(t *testing.T) {
	srv := startServer(t, t.TempDir())
	post := func(id string) gatewayAnswer {
		h := []string{"ce-specversion: 1.0", "ce-id: " + id, "ce-source: /e2e/full", "ce-type: " + interopType, "Content-Type: application/json"}
		return curlPost(t, srv, "/events", h, `{"n":1}`)
	}
	first := post("full-1").stored(t)

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	nc, err := nats.Connect(srv.NATSURL, nats.Name("hookbus-e2e"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(ctx, events.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	orig := stream.CachedInfo().Config
	full := orig
	full.MaxMsgs, full.Discard = 1, jetstream.DiscardNew
	if _, err := js.UpdateStream(ctx, full); err != nil {
		t.Fatalf("limit %s to its one message: %v", events.StreamEvents, err)
	}
	a := post("full-2")
	if a.Status < 500 || !strings.HasPrefix(a.ContentType, "application/problem+json") {
		t.Errorf("POST while %s refuses messages: %d %s %s, want a 5xx problem", events.StreamEvents, a.Status, a.ContentType, a.Body)
	}
	if n := streamMsgs(t, srv); n != 1 {
		t.Errorf("%s holds %d messages, want still 1", events.StreamEvents, n)
	}

	if _, err := js.UpdateStream(ctx, orig); err != nil {
		t.Fatalf("restore %s: %v", events.StreamEvents, err)
	}
	again := post("full-2").stored(t)
	if again.Duplicate || again.Seq != first.Seq+1 {
		t.Errorf("the refused event posted again: %+v, want stored as sequence %d, not a duplicate", again, first.Seq+1)
	}
	srv.stop(t)
}

// TestGatewayTokensFromTheCLI: with anonymous use off, the gateway takes
// only requests with a token of `hookbus gateway token create`, only for
// the types the token allows, and none once `hookbus gateway token revoke`
// revoked it; nothing is stored for a refused request, and neither the
// server's log nor the token list holds the token.
func TestGatewayTokensFromTheCLI(t *testing.T) {
	srv := startServer(t, t.TempDir(), "--gateway-anonymous", "false")
	headers := func(id, typ string) []string {
		return []string{"ce-specversion: 1.0", "ce-id: " + id, "ce-source: /e2e/tokens", "ce-type: " + typ, "Content-Type: application/json"}
	}
	refusedWith := func(a gatewayAnswer, status int, code string) {
		t.Helper()
		var p struct{ Code string }
		decodeJSON(t, "the gateway", a.Body, &p)
		if a.Status != status || p.Code != code {
			t.Fatalf("answer %d %s, want %d with code %s", a.Status, a.Body, status, code)
		}
	}
	refusedWith(curlPost(t, srv, "/events", headers("t-0", interopType), `{}`), http.StatusUnauthorized, "unauthorized")

	stdout, stderr, code := run(t, "gateway", "token", "create", "--nats-url", srv.NATSURL, "--name", "shop",
		"--allow", "publish:"+interopType+",call:"+interopType)
	token := strings.TrimSpace(stdout)
	if code != 0 || !strings.HasPrefix(token, "hbgw.shop.") {
		t.Fatalf("token create: exit %d, stdout %q, stderr %s", code, stdout, stderr)
	}
	srv.GatewayToken = token
	// The gateway takes a new token within its watch's latency.
	deadline := time.Now().Add(10 * time.Second)
	for a := curlPost(t, srv, "/events", headers("t-1", interopType), `{}`); a.Status != http.StatusAccepted; a = curlPost(t, srv, "/events", headers("t-1", interopType), `{}`) {
		if time.Now().After(deadline) {
			t.Fatalf("POST with the new token: %d %s, want 202 within 10s", a.Status, a.Body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	refusedWith(curlPost(t, srv, "/events", headers("t-2", "org.other.thing"), `{}`), http.StatusForbidden, "forbidden")

	stdout, stderr, code = run(t, "gateway", "token", "list", "--nats-url", srv.NATSURL, "-o", "json")
	if code != 0 || !strings.Contains(stdout, `"shop"`) || strings.Contains(stdout, token[len("hbgw.shop."):]) {
		t.Fatalf("token list: exit %d, stdout %s, stderr %s: want shop, never the token", code, stdout, stderr)
	}
	if _, stderr, code = run(t, "gateway", "token", "revoke", "--nats-url", srv.NATSURL, "shop"); code != 0 {
		t.Fatalf("token revoke: exit %d: %s", code, stderr)
	}
	deadline = time.Now().Add(10 * time.Second)
	for a := curlPost(t, srv, "/events", headers("t-3", interopType), `{}`); a.Status != http.StatusUnauthorized; a = curlPost(t, srv, "/events", headers("t-3", interopType), `{}`) {
		if a.Status != http.StatusAccepted || time.Now().After(deadline) {
			t.Fatalf("POST with the revoked token: %d %s, want 401 within 10s", a.Status, a.Body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	var ids []string
	for _, s := range readEvents(t, srv) {
		ids = append(ids, s.ID)
	}
	if len(ids) == 0 || ids[0] != "t-1" || slices.Contains(ids, "t-0") || slices.Contains(ids, "t-2") {
		t.Errorf("HOOKBUS_EVENTS holds %v: want t-1 (and t-3 only if posted before the revocation reached the gateway), never t-0 or t-2", ids)
	}
	srv.stop(t)
	if strings.Contains(srv.stderr.String(), token[len("hbgw.shop."):]) {
		t.Error("the server's log holds the token's secret")
	}
}
