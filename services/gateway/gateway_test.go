package gateway_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/internal/natstest"
	"github.com/hookbus/hookbus/pkg/client"
	"github.com/hookbus/hookbus/pkg/events"
	"github.com/hookbus/hookbus/services/gateway"
)

// testMaxEventSize is the event size limit of the tests' gateways, small
// so that bodies over it are cheap.
const testMaxEventSize = 16 << 10

// bus is a NATS server with the topology and a gateway on it.
type bus struct {
	nc  *nats.Conn
	js  jetstream.JetStream
	url string // the gateway's base URL
}

func newBus(t *testing.T) *bus {
	t.Helper()
	s, js := natstest.RunTopology(t)
	nc := natstest.Connect(t, s)
	cfg := gateway.DefaultConfig()
	cfg.MaxEventSize = testMaxEventSize
	svc, err := gateway.New(cfg, nc, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(svc.Handler())
	t.Cleanup(srv.Close)
	return &bus{nc: nc, js: js, url: srv.URL}
}

// stored returns how many events HOOKBUS_EVENTS holds.
func (b *bus) stored(t *testing.T) uint64 {
	t.Helper()
	return storedEvents(t, b.js)
}

// storedEvents returns how many events HOOKBUS_EVENTS holds.
func storedEvents(t *testing.T, js jetstream.JetStream) uint64 {
	t.Helper()
	st, err := js.Stream(t.Context(), events.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// storedEvent returns the message stored at seq and the event decoded
// from it as any NATS reader would.
func (b *bus) storedEvent(t *testing.T, seq uint64) (*jetstream.RawStreamMsg, *event.Event) {
	t.Helper()
	st, err := b.js.Stream(t.Context(), events.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := st.GetMsg(t.Context(), seq)
	if err != nil {
		t.Fatalf("stored message %d: %v", seq, err)
	}
	e, err := events.Decode(msg.Header, msg.Data)
	if err != nil {
		t.Fatalf("decode stored message %d: %v", seq, err)
	}
	return msg, e
}

// post sends a request as curl would and returns the status and body.
func post(t *testing.T, url string, header map[string]string, body string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

func accepted(t *testing.T, status int, body []byte) gateway.Stored {
	t.Helper()
	if status != http.StatusAccepted {
		t.Fatalf("status %d, want 202; body %s", status, body)
	}
	var got gateway.Stored
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("answer %s: %v", body, err)
	}
	if got.Stream != events.StreamEvents || got.Sequence == 0 {
		t.Fatalf("answer %s: want stream %s and a sequence", body, events.StreamEvents)
	}
	return got
}

// referenceEvent is the event the requests below carry, as a NATS
// publisher would build it: an id that needs percent-encoding in binary
// mode, a subject, a time and an extension.
func referenceEvent(t *testing.T, id string) event.Event {
	t.Helper()
	e := event.New()
	e.SetID(id)
	e.SetSource("/shop/eu")
	e.SetType("com.example.order.created")
	e.SetSubject("order 42")
	e.SetTime(time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC))
	e.SetExtension("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	if err := e.SetData(event.ApplicationJSON, map[string]any{"total": 12.5}); err != nil {
		t.Fatal(err)
	}
	return e
}

func TestPostedEventIsStoredAsOnePublishedOnNATS(t *testing.T) {
	b := newBus(t)
	tests := []struct {
		name   string
		id     string
		header func(id string) map[string]string
		body   func(id string) string
	}{
		{
			name: "binary",
			id:   "order 42 ü",
			header: func(string) map[string]string {
				return map[string]string{
					"ce-specversion": "1.0",
					"ce-id":          "order%2042%20%C3%BC",
					"ce-source":      "/shop/eu",
					"ce-type":        "com.example.order.created",
					"ce-subject":     "order%2042",
					"ce-time":        "2026-11-21T10:00:00Z",
					"ce-traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
					"Content-Type":   "application/json",
				}
			},
			body: func(string) string { return `{"total":12.5}` },
		},
		{
			name: "structured",
			id:   "order 43 ü",
			header: func(string) map[string]string {
				return map[string]string{"Content-Type": "application/cloudevents+json; charset=utf-8"}
			},
			body: func(id string) string {
				return `{"specversion":"1.0","id":"` + id + `","source":"/shop/eu","type":"com.example.order.created",
					"subject":"order 42","time":"2026-11-21T10:00:00Z","traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
					"datacontenttype":"application/json","data":{ "total": 12.5 }}`
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := b.stored(t)
			status, _, body := post(t, b.url+"/events", tt.header(tt.id), tt.body(tt.id))
			got := accepted(t, status, body)
			if got.Duplicate {
				t.Errorf("first POST answered duplicate: %s", body)
			}
			if n := b.stored(t); n != before+1 {
				t.Errorf("stream holds %d events, want %d", n, before+1)
			}

			want := referenceEvent(t, tt.id)
			msg, stored := b.storedEvent(t, got.Sequence)
			if s := msg.Subject; s != "hookbus.event.com.example.order.created" {
				t.Errorf("stored on %q", s)
			}
			if id := msg.Header.Get(events.HeaderMsgID); id != events.MsgID(want.Source(), want.ID()) {
				t.Errorf("Nats-Msg-Id %q, want MsgID(source, id) %q", id, events.MsgID(want.Source(), want.ID()))
			}
			if stored.String() != want.String() {
				t.Errorf("stored event:\n%s\nwant:\n%s", stored, want)
			}

			// The same event published on NATS is the same event: stored
			// already, at the same sequence.
			c, err := client.New(b.nc)
			if err != nil {
				t.Fatal(err)
			}
			ack, err := c.Publish(t.Context(), want)
			if err != nil {
				t.Fatal(err)
			}
			if !ack.Duplicate || ack.Sequence != got.Sequence {
				t.Errorf("publish on NATS: %+v, want a duplicate of sequence %d", ack, got.Sequence)
			}
		})
	}
}

func TestRetriedPostIsStoredOnce(t *testing.T) {
	b := newBus(t)
	header := map[string]string{"Content-Type": "application/cloudevents+json"}
	body := `{"specversion":"1.0","id":"retry-1","source":"/shop","type":"com.example.order.created","data":{"n":1}}`
	first := postStored(t, b.url, header, body)
	// The same source and id, other bytes (binary mode, other data): the
	// wire contract's Nats-Msg-Id is (source, id).
	second := postStored(t, b.url, map[string]string{
		"ce-specversion": "1.0", "ce-id": "retry-1", "ce-source": "/shop", "ce-type": "com.example.order.created",
	}, `{"n":1}`)
	if first.Duplicate || !second.Duplicate || second.Sequence != first.Sequence {
		t.Errorf("first %+v, retry %+v: want the retry a duplicate of the first", first, second)
	}
	if n := b.stored(t); n != 1 {
		t.Errorf("stream holds %d events, want 1", n)
	}
	// Another source with the same id is another event.
	other := postStored(t, b.url, header, strings.Replace(body, `"/shop"`, `"/shop2"`, 1))
	if other.Duplicate {
		t.Errorf("same id from another source answered duplicate: %+v", other)
	}
}

// postStored posts to url's /events and returns the answer, failing
// unless it is 202.
func postStored(t *testing.T, url string, header map[string]string, body string) gateway.Stored {
	t.Helper()
	status, _, b := post(t, url+"/events", header, body)
	return accepted(t, status, b)
}

// problemBody is what a refusal answers, RFC 9457 and the gateway's
// members.
type problemBody struct {
	Type, Title, Detail string
	Status              int
	Code, Field, Reason string
}

func TestRefusals(t *testing.T) {
	b := newBus(t)
	structured := map[string]string{"Content-Type": "application/cloudevents+json"}
	batch := map[string]string{"Content-Type": "application/cloudevents-batch+json"}
	binary := func(extra map[string]string) map[string]string {
		h := map[string]string{"ce-specversion": "1.0", "ce-id": "r-1", "ce-source": "/shop", "ce-type": "com.example.order.created"}
		for k, v := range extra {
			h[k] = v
		}
		return h
	}
	big := strings.Repeat("x", testMaxEventSize)
	tests := []struct {
		name   string
		header map[string]string
		body   string
		status int
		code   string
		field  string
	}{
		{"binary without id", map[string]string{"ce-specversion": "1.0", "ce-source": "/shop", "ce-type": "t"}, "", 400, "invalid", "id"},
		{"binary bad type", binary(map[string]string{"ce-type": "a%20b"}), "", 400, "invalid", "type"},
		{"binary specversion 0.3", binary(map[string]string{"ce-specversion": "0.3"}), "", 400, "invalid", "specversion"},
		{"binary bad extension name", binary(map[string]string{"ce-my_ext": "x"}), "", 400, "invalid", "my_ext"},
		{"binary bad time", binary(map[string]string{"ce-time": "yesterday"}), "", 400, "invalid", "time"},
		{"binary bad datacontenttype", binary(map[string]string{"Content-Type": "json"}), "x", 400, "invalid", "datacontenttype"},
		{"structured without source", structured, `{"specversion":"1.0","id":"r-1","type":"t"}`, 400, "invalid", "source"},
		{"structured source not canonical", structured, `{"specversion":"1.0","id":"r-1","source":"/a b","type":"t"}`, 400, "invalid", "source"},
		{"structured not an object", structured, `[1,2]`, 400, "invalid", "body"},
		{"catalog schema", structured, `{"specversion":"1.0","id":"r-1","source":"/shop","type":"on_user_after_logout","data":{"user_id":"3f2504e0-4f89-41d3-9a0c-0305e82c3301","ip":"192.0.2.1","endpoint":"web"}}`, 400, "invalid", "data.endpoint"},
		{"no content type, no ce headers", nil, `{"specversion":"1.0","id":"r-1","source":"/shop","type":"t"}`, 415, "unsupported_media_type", ""},
		{"plain JSON", map[string]string{"Content-Type": "application/json"}, `{"n":1}`, 415, "unsupported_media_type", ""},
		{"other event format", map[string]string{"Content-Type": "application/cloudevents+avro"}, "x", 415, "unsupported_media_type", ""},
		{"batch not an array", batch, `{"specversion":"1.0","id":"r-1","source":"/shop","type":"t"}`, 400, "invalid", "body"},
		{"batch not JSON", batch, `[{"specversion":"1.0",`, 400, "invalid", "body"},
		{"batch of too many events", batch, "[" + strings.Repeat(`{},`, gateway.MaxBatchEvents) + "{}]", 413, "too_large", ""},
		{"batch body over the limit", batch, `[{"specversion":"1.0","id":"r-1","source":"/shop","type":"t","data":"` + strings.Repeat(big, 6) + `"}]`, 413, "too_large", ""},
		{"binary body over the limit", binary(nil), big + "x", 413, "too_large", ""},
		{"structured body over the limit", structured, `{"specversion":"1.0","id":"r-1","source":"/shop","type":"t","data":"` + strings.Repeat(big, 6) + `"}`, 413, "too_large", ""},
		{"encoded event over the limit", binary(nil), big[:testMaxEventSize-10], 413, "too_large", "size"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, h, body := post(t, b.url+"/events", tt.header, tt.body)
			if status != tt.status {
				t.Fatalf("status %d, want %d; body %s", status, tt.status, body)
			}
			if ct := h.Get("Content-Type"); ct != "application/problem+json" {
				t.Errorf("Content-Type %q, want application/problem+json", ct)
			}
			var p problemBody
			if err := json.Unmarshal(body, &p); err != nil {
				t.Fatalf("body %s: %v", body, err)
			}
			if p.Status != tt.status || p.Code != tt.code || p.Field != tt.field || p.Title != http.StatusText(tt.status) ||
				!strings.HasSuffix(p.Type, "#http-gateway-"+tt.code) || p.Detail == "" {
				t.Errorf("problem %s: want status %d, code %q, field %q", body, tt.status, tt.code, tt.field)
			}
			if tt.field != "" && p.Reason == "" {
				t.Errorf("problem %s: no reason", body)
			}
			if n := b.stored(t); n != 0 {
				t.Errorf("stream holds %d events after a refusal", n)
			}
		})
	}
}

func TestOnlyPostEvents(t *testing.T) {
	b := newBus(t)
	resp, err := http.Get(b.url + "/events")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /events: %d, want 405", resp.StatusCode)
	}
}

func TestSDKGoHTTPClient(t *testing.T) {
	b := newBus(t)
	c, err := cloudevents.NewClientHTTP(cloudevents.WithTarget(b.url + "/events"))
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"binary", "structured"} {
		t.Run(mode, func(t *testing.T) {
			ctx := t.Context()
			if mode == "structured" {
				ctx = binding.WithForceStructured(ctx)
			}
			want := referenceEvent(t, "sdk "+mode)
			res := c.Send(ctx, want)
			var hr *cehttp.Result
			if !cloudevents.ResultAs(res, &hr) || hr.StatusCode != http.StatusAccepted {
				t.Fatalf("send: %v, want 202", res)
			}
			// The answer is a response without an event; the stream has it.
			st, err := b.js.Stream(t.Context(), events.StreamEvents)
			if err != nil {
				t.Fatal(err)
			}
			msg, err := st.GetLastMsgForSubject(t.Context(), "hookbus.event.com.example.order.created")
			if err != nil {
				t.Fatal(err)
			}
			got, err := events.Decode(msg.Header, msg.Data)
			if err != nil {
				t.Fatal(err)
			}
			if got.String() != want.String() {
				t.Errorf("stored event:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

func TestConcurrentPostsAreEachStored(t *testing.T) {
	b := newBus(t)
	const n = 64
	errs := make(chan error, n)
	seqs := make(chan uint64, n)
	for i := range n {
		go func() {
			body := `{"specversion":"1.0","id":"c-` + string(rune('A'+i%26)) + string(rune('a'+i/26)) + `","source":"/load","type":"com.example.load"}`
			req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, b.url+"/events", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/cloudevents+json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			var s gateway.Stored
			if err := json.NewDecoder(resp.Body).Decode(&s); err != nil || resp.StatusCode != http.StatusAccepted || s.Duplicate {
				errs <- &httpError{resp.StatusCode}
				return
			}
			seqs <- s.Sequence
		}()
	}
	seen := map[uint64]bool{}
	for range n {
		select {
		case err := <-errs:
			t.Fatal(err)
		case s := <-seqs:
			if seen[s] {
				t.Errorf("sequence %d answered twice", s)
			}
			seen[s] = true
		}
	}
	if got := b.stored(t); got != n {
		t.Errorf("stream holds %d events, want %d", got, n)
	}
}

type httpError struct{ status int }

func (e *httpError) Error() string { return "status " + http.StatusText(e.status) }
