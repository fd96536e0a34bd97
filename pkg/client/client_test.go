package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/internal/natstest"
	"github.com/hookbus/hookbus/internal/topology"
	"github.com/hookbus/hookbus/pkg/client"
	"github.com/hookbus/hookbus/pkg/events"
)

// bus is one in-process NATS server with a client on its own connection
// and a JetStream context (on another connection) to look at the streams.
type bus struct {
	srv    *server.Server
	nc     *nats.Conn // the client's connection
	client *client.Client
	js     jetstream.JetStream
}

// newBus starts a server; with topology true it also creates every stream
// and bucket as Hookbus does at start.
func newBus(t *testing.T, withTopology bool, opts ...client.Option) *bus {
	t.Helper()
	b := &bus{srv: natstest.RunServer(t)}
	b.js = natstest.JetStream(t, b.srv)
	if withTopology {
		ensureTopology(t, b.js)
	}
	b.nc = natstest.Connect(t, b.srv)
	c, err := client.New(b.nc, opts...)
	if err != nil {
		t.Fatal(err)
	}
	b.client = c
	return b
}

func ensureTopology(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	if _, err := topology.Ensure(t.Context(), js, topology.DefaultConfig()); err != nil {
		t.Fatalf("topology: %v", err)
	}
}

// storedCount is the number of messages in HOOKBUS_EVENTS.
func (b *bus) storedCount(t *testing.T) uint64 {
	t.Helper()
	s, err := b.js.Stream(t.Context(), events.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func (b *bus) stored(t *testing.T, seq uint64) *jetstream.RawStreamMsg {
	t.Helper()
	s, err := b.js.Stream(t.Context(), events.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.GetMsg(t.Context(), seq)
	if err != nil {
		t.Fatalf("get message %d: %v", seq, err)
	}
	return m
}

func orderCreated(source, id string) event.Event {
	e := event.New()
	e.SetID(id)
	e.SetSource(source)
	e.SetType("com.example.order.created")
	e.SetSubject("orders/42")
	e.SetTime(time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC))
	e.SetExtension("tenant", "acme corp")
	if err := e.SetData(event.ApplicationJSON, json.RawMessage(`{"total":12.5}`)); err != nil {
		panic(err)
	}
	return e
}

func TestPublishStoresEvent(t *testing.T) {
	tests := []struct {
		name        string
		opts        []client.Option
		wantHeaders map[string]string // exact header set of the stored message
		binaryBody  bool
	}{
		{
			name: "binary mode by default",
			wantHeaders: map[string]string{
				"ce-specversion":   "1.0",
				"ce-id":            "order-42",
				"ce-source":        "/shop",
				"ce-type":          "com.example.order.created",
				"ce-subject":       "orders/42",
				"ce-time":          "2026-11-21T10:00:00Z",
				"ce-tenant":        "acme%20corp",
				"content-type":     "application/json",
				events.HeaderMsgID: events.MsgID("/shop", "order-42"),
			},
			binaryBody: true,
		},
		{
			name: "structured mode",
			opts: []client.Option{client.Structured()},
			wantHeaders: map[string]string{
				"content-type":     "application/cloudevents+json",
				events.HeaderMsgID: events.MsgID("/shop", "order-42"),
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBus(t, true)
			e := orderCreated("/shop", "order-42")
			ack, err := b.client.Publish(t.Context(), e, tt.opts...)
			if err != nil {
				t.Fatalf("Publish: %v", err)
			}
			if ack != (client.PublishAck{Stream: events.StreamEvents, Sequence: 1}) {
				t.Errorf("ack %+v, want stream %s, sequence 1, not a duplicate", ack, events.StreamEvents)
			}
			m := b.stored(t, ack.Sequence)
			if m.Subject != "hookbus.event.com.example.order.created" {
				t.Errorf("stored on %q", m.Subject)
			}
			got := map[string]string{}
			for k, vs := range m.Header {
				// JetStream keeps the publish expectations (the client
				// sends Nats-Expected-Stream); they are not the event's.
				if !strings.HasPrefix(k, "Nats-Expected-") {
					got[k] = strings.Join(vs, ",")
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.wantHeaders) {
				t.Errorf("stored headers:\n%v\nwant:\n%v", got, tt.wantHeaders)
			}
			if tt.binaryBody && string(m.Data) != `{"total":12.5}` {
				t.Errorf("body %s, want the data", m.Data)
			}
			if !tt.binaryBody && !json.Valid(m.Data) {
				t.Errorf("structured body is not JSON: %s", m.Data)
			}
			back, err := events.Decode(m.Header, m.Data)
			if err != nil {
				t.Fatalf("decode the stored message: %v", err)
			}
			if back.ID() != e.ID() || back.Source() != e.Source() || back.Type() != e.Type() ||
				back.Subject() != e.Subject() || !back.Time().Equal(e.Time()) ||
				back.DataContentType() != e.DataContentType() || back.Extensions()["tenant"] != "acme corp" ||
				string(back.Data()) != string(e.Data()) {
				t.Errorf("stored event decodes to\n%v\nwant\n%v", back, e)
			}
		})
	}
}

func TestPublishDeduplicates(t *testing.T) {
	tests := []struct {
		name       string
		first      event.Event
		second     event.Event
		wantDup    bool
		wantStored uint64
	}{
		{
			name:       "same source and id",
			first:      orderCreated("/shop", "order-42"),
			second:     orderCreated("/shop", "order-42"),
			wantDup:    true,
			wantStored: 1,
		},
		{
			name:       "same id from two sources",
			first:      orderCreated("/shop", "order-42"),
			second:     orderCreated("/warehouse", "order-42"),
			wantStored: 2,
		},
		{
			// MsgID keeps the pair apart even where the concatenation is
			// the same.
			name:       "source+id concatenations alike",
			first:      orderCreated("a", "bc"),
			second:     orderCreated("ab", "c"),
			wantStored: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBus(t, true)
			first, err := b.client.Publish(t.Context(), tt.first)
			if err != nil {
				t.Fatal(err)
			}
			if first.Duplicate {
				t.Errorf("first publish reported a duplicate")
			}
			second, err := b.client.Publish(t.Context(), tt.second)
			if err != nil {
				t.Fatal(err)
			}
			if second.Duplicate != tt.wantDup {
				t.Errorf("second publish: Duplicate = %v, want %v", second.Duplicate, tt.wantDup)
			}
			if tt.wantDup && second.Sequence != first.Sequence {
				t.Errorf("duplicate acked with sequence %d, the stored event has %d", second.Sequence, first.Sequence)
			}
			if got := b.storedCount(t); got != tt.wantStored {
				t.Errorf("%d messages stored, want %d", got, tt.wantStored)
			}
		})
	}
}

func TestPublishInvalid(t *testing.T) {
	tests := []struct {
		name  string
		opts  []client.Option
		event func() event.Event
		popts []client.Option
		field string
	}{
		{
			name: "missing id",
			event: func() event.Event {
				e := orderCreated("/shop", "x")
				e.Context.(*event.EventContextV1).ID = ""
				return e
			},
			field: "id",
		},
		{
			name: "missing id, structured",
			event: func() event.Event {
				e := orderCreated("/shop", "x")
				e.Context.(*event.EventContextV1).ID = ""
				return e
			},
			popts: []client.Option{client.Structured()},
			field: "id",
		},
		{
			name: "wildcard in type",
			event: func() event.Event {
				e := orderCreated("/shop", "order-42")
				e.SetType("com.example.>")
				return e
			},
			field: "type",
		},
		{
			name: "catalog data failing its schema",
			event: func() event.Event {
				e := orderCreated("/shop", "order-42")
				e.SetType(events.TypeOnUserLoginFailure)
				_ = e.SetData(event.ApplicationJSON, json.RawMessage(`{"ip":"192.0.2.1","endpoint":"web","error":{}}`))
				return e
			},
			field: "data.endpoint",
		},
		{
			name:  "over WithMaxEventSize",
			opts:  []client.Option{client.WithMaxEventSize(100)},
			event: func() event.Event { return orderCreated("/shop", "order-42") },
			field: "size",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBus(t, true, tt.opts...)
			ack, err := b.client.Publish(t.Context(), tt.event(), tt.popts...)
			if !errors.Is(err, events.ErrInvalid) {
				t.Fatalf("Publish: %v, want ErrInvalid", err)
			}
			if errors.Is(err, client.ErrNotStored) {
				t.Errorf("an invalid event also matches ErrNotStored: %v", err)
			}
			var ve *events.ValidationError
			if !errors.As(err, &ve) || ve.Field != tt.field {
				t.Errorf("error %v: want a *events.ValidationError for %q", err, tt.field)
			}
			if ack != (client.PublishAck{}) {
				t.Errorf("ack %+v returned with the error", ack)
			}
			if got := b.storedCount(t); got != 0 {
				t.Errorf("%d messages stored, want none", got)
			}
		})
	}
}

func TestPublishWithoutTopology(t *testing.T) {
	b := newBus(t, false)
	const wait = 300 * time.Millisecond
	start := time.Now() // before the deadline is set, so that took >= wait when Publish waits for it
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	_, err := b.client.Publish(ctx, orderCreated("/shop", "order-42"))
	took := time.Since(start)
	if !errors.Is(err, client.ErrNotStored) {
		t.Fatalf("Publish: %v, want ErrNotStored", err)
	}
	if errors.Is(err, events.ErrInvalid) {
		t.Errorf("a transport failure matches ErrInvalid: %v", err)
	}
	if took < wait || took > wait+500*time.Millisecond {
		t.Errorf("Publish returned after %s; want it to retry until the %s deadline and stop right after", took, wait)
	}
}

// TestPublishRefusedIsNotRetried: a stream that answers and refuses (here
// another stream owns the subjects) will not change its mind; Publish
// returns at once instead of retrying until ctx ends.
func TestPublishRefusedIsNotRetried(t *testing.T) {
	b := newBus(t, false)
	if _, err := b.js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "OTHER", Subjects: []string{events.EventSubjects}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	start := time.Now()
	_, err := b.client.Publish(ctx, orderCreated("/shop", "order-42"))
	if !errors.Is(err, client.ErrNotStored) {
		t.Fatalf("Publish: %v, want ErrNotStored", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Publish took %s: a refusal was retried", took)
	}
}

// TestPublishRetriesUntilStored: Hookbus (the topology) comes up while a
// publish is retrying; the publish then succeeds and the event is stored
// once.
func TestPublishRetriesUntilStored(t *testing.T) {
	b := newBus(t, false, client.WithRetryWait(50*time.Millisecond))
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()

	// One attempt of the client is one jetstream PublishMsg, which itself
	// resends on "no responders" DefaultPubRetryAttempts times. Once more
	// than that many messages went out, the client's own retry loop is
	// running: only then are the streams created.
	const sendsPerAttempt = 1 + jetstream.DefaultPubRetryAttempts
	created := make(chan error, 1)
	go func() {
		for b.nc.Stats().OutMsgs <= sendsPerAttempt {
			select {
			case <-ctx.Done():
				created <- fmt.Errorf("publish never retried: %w", ctx.Err())
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
		_, err := topology.Ensure(ctx, b.js, topology.DefaultConfig())
		created <- err
	}()

	ack, err := b.client.Publish(ctx, orderCreated("/shop", "order-42"))
	if err != nil {
		cancel() // the goroutine may still be waiting for a retry
		<-created
		t.Fatalf("Publish: %v", err)
	}
	if cerr := <-created; cerr != nil {
		t.Fatalf("creating the topology: %v", cerr)
	}
	if ack.Stream != events.StreamEvents || ack.Sequence != 1 || ack.Duplicate {
		t.Errorf("ack %+v, want stream %s, sequence 1, not a duplicate", ack, events.StreamEvents)
	}
	if got := b.storedCount(t); got != 1 {
		t.Errorf("%d messages stored, want 1", got)
	}
}

func TestNewNilConnection(t *testing.T) {
	if c, err := client.New(nil); err == nil || c != nil {
		t.Errorf("New(nil) = %v, %v; want an error", c, err)
	}
}

// TestPublishReadsAcksAsJetStream: whatever a stream answers, Publish
// reads it as jetstream's PublishMsg does (the client reads the forms the
// server writes without encoding/json). A subscriber stands in for the
// stream and gives both the same answer.
func TestPublishReadsAcksAsJetStream(t *testing.T) {
	b := newBus(t, false)
	answers := []string{
		`{"stream":"HOOKBUS_EVENTS","seq":7}`,
		`{"stream":"HOOKBUS_EVENTS","seq":0}`,
		`{"stream":"HOOKBUS_EVENTS","seq":18446744073709551615}`,
		`{"stream":"HOOKBUS_EVENTS","seq":9999999999999999999}`,
		`{"stream":"HOOKBUS_EVENTS","seq":7,"duplicate": true}`,
		`{"stream":"HOOKBUS_EVENTS","seq":7,"duplicate":false}`,
		`{"stream":"HOOKBUS_EVENTS","domain":"hub","seq":7}`,
		` { "stream" : "HOOKBUS_EVENTS" ,	"seq" : 7 }` + "\n",
		`{"seq":7,"stream":"HOOKBUS_EVENTS"}`,
		`{"stream":"OTHER","seq":7}`,
		`{"stream":"HOOKBUS_EVENTS","seq":7,"val":"1"}`,
		`{"stream":"HOOKBUS_EVENTS","seq":7,"batch":"b","count":2}`,
		`{"type":"io.nats.jetstream.api.v1.pub_ack_response","stream":"HOOKBUS_EVENTS","seq":7}`,
		`{"STREAM":"HOOKBUS_EVENTS","Seq":7}`,
		`{"stream":"HOOKBUS_EVENTS","seq":7,"stream":"OTHER"}`,
		`{"stream":"HOOK\u0042US_EVENTS","seq":7}`,
		`{"stream":"HOOKBUS_EVENTS","seq":07}`,
		`{"stream":"HOOKBUS_EVENTS","seq":7.0}`,
		`{"stream":"HOOKBUS_EVENTS","seq":1e3}`,
		`{"stream":"HOOKBUS_EVENTS","seq":-7}`,
		`{"stream":"HOOKBUS_EVENTS","seq":18446744073709551616}`,
		`{"stream":"HOOKBUS_EVENTS","seq":"7"}`,
		`{"stream":"HOOKBUS_EVENTS","seq":7,"duplicate":1}`,
		`{"stream":"HOOKBUS_EVENTS","seq":7}x`,
		`{"stream":"HOOKBUS_EVENTS","seq":7`,
		`{"stream":"","seq":7}`,
		`{"seq":7}`,
		`{}`,
		`[]`,
		`null`,
		`not json`,
		`{"error":{"code":503,"err_code":10077,"description":"maximum messages exceeded"}}`,
		`{"stream":"HOOKBUS_EVENTS","seq":7,"error":{"code":400,"err_code":10060,"description":"expected stream does not match"}}`,
		`{"error":null,"stream":"HOOKBUS_EVENTS","seq":7}`,
	}
	var answer atomic.Value
	sub, err := b.nc.Subscribe(events.EventSubjects, func(m *nats.Msg) { _ = m.Respond([]byte(answer.Load().(string))) })
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	js, err := jetstream.New(b.nc)
	if err != nil {
		t.Fatal(err)
	}
	for i, a := range answers {
		answer.Store(a)
		e := orderCreated("/shop", fmt.Sprint("ack-", i))
		msg, err := events.Encode("hookbus.event.com.example.order.created", &e)
		if err != nil {
			t.Fatal(err)
		}
		want, wantErr := js.PublishMsg(t.Context(), msg, jetstream.WithExpectStream(events.StreamEvents))
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		got, err := b.client.Publish(ctx, e)
		cancel()
		switch {
		case wantErr == nil && err != nil:
			t.Errorf("answer %s: Publish: %v; jetstream read %+v", a, err, want)
		case wantErr == nil && got != (client.PublishAck{Stream: want.Stream, Sequence: want.Sequence, Duplicate: want.Duplicate}):
			t.Errorf("answer %s: Publish read %+v, jetstream %+v", a, got, want)
		case wantErr != nil && err == nil:
			t.Errorf("answer %s: Publish read %+v; jetstream: %v", a, got, wantErr)
		case wantErr != nil:
			var wantAPI, gotAPI *jetstream.APIError
			if errors.As(wantErr, &wantAPI) != errors.As(err, &gotAPI) || wantAPI != nil && *wantAPI != *gotAPI {
				t.Errorf("answer %s: Publish: %v; jetstream: %v", a, err, wantErr)
			}
			if errors.Is(wantErr, jetstream.ErrInvalidJSAck) != errors.Is(err, jetstream.ErrInvalidJSAck) {
				t.Errorf("answer %s: Publish: %v; jetstream: %v", a, err, wantErr)
			}
			if !errors.Is(err, client.ErrNotStored) {
				t.Errorf("answer %s: Publish: %v, want ErrNotStored", a, err)
			}
		}
	}
}
