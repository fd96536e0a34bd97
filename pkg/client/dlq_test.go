package client_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/internal/natstest"
	"github.com/hookbus/hookbus/pkg/client"
	"github.com/hookbus/hookbus/pkg/events"
)

// Dead letters are listed per subscriber and replayed to their subscriber
// alone, as a new delivery; the dispatcher's are refused.
func TestDeadLettersAndReplay(t *testing.T) {
	t.Parallel()
	b := workerBus(t)
	ctx := ctxT(t)
	spec := notifySpec("n", 2, 50)
	cons := notifyConsumer(t, b.js, spec)
	other := notifyConsumer(t, b.js, notifySpec("other", 2, 50))
	var d deliveries
	var healthy bool // guarded by d.mu
	startServe(t, b.client, client.Plugin{Spec: spec, Notify: func(_ context.Context, x *client.Delivery) error {
		d.record(x)
		d.mu.Lock()
		defer d.mu.Unlock()
		if !healthy {
			return client.Permanent(errors.New("mailer refused"))
		}
		return nil
	}}, client.WithConcurrency(1)) // one at a time: replays arrive in order

	// A dead letter of the worker, a headerless raw JSON event that is
	// valid (structured mode), and one of the dispatcher.
	seq := b.publish(t, "a")
	deadLetters(t, b.client, "n", 1)
	d.mu.Lock()
	healthy = true
	d.mu.Unlock()
	raw := `{"specversion":"1.0","id":"raw-1","source":"/raw","type":"` + testType + `","data":{"x":1}}`
	rawDL, err := events.DeadLetter("n", "hookbus.event."+testType, nil, []byte(raw), 99, 3, "no answer after 2 deliveries", 0)
	if err != nil {
		t.Fatal(err)
	}
	invalid, err := events.DeadLetter(events.DispatcherConsumer, "hookbus.event."+testType, nats.Header{"x": {"y"}}, []byte("garbage"), 100, 1, "invalid event: specversion: not a CloudEvent", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []*nats.Msg{rawDL, invalid} {
		if _, err := b.js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}

	all, err := b.client.DeadLetters(ctx, "")
	if err != nil || len(all) != 3 {
		t.Fatalf("all dead letters = %v, %v; want 3", all, err)
	}
	mine := deadLetters(t, b.client, "n", 2)
	if dl := mine[0]; dl.Reason != "mailer refused" || dl.StreamSeq != seq || dl.Event == nil || dl.Event.ID() != "a" || dl.Seq != all[0].Seq || dl.Time.IsZero() {
		t.Errorf("worker's dead letter = %+v", dl)
	}
	if dl := mine[1]; dl.Event == nil || dl.Event.ID() != "raw-1" || len(dl.Header) != 0 {
		t.Errorf("raw event's dead letter = %+v (%s)", dl, dl.DecodeError)
	}
	if dl := all[2]; dl.Subscriber != events.DispatcherConsumer || dl.Event != nil || dl.DecodeError == "" || dl.Header.Get("x") != "y" {
		t.Errorf("dispatcher's dead letter = %+v", dl)
	}

	for _, dl := range mine {
		if err := b.client.Replay(ctx, dl.Seq); err != nil {
			t.Fatalf("Replay %d: %v", dl.Seq, err)
		}
	}
	got := d.waitCount(t, 3)
	for i, id := range []string{"a", "raw-1"} {
		if r := got[i+1]; r.id != id || r.attempt != 1 || r.subject != "hookbus.replay.n" {
			t.Errorf("replayed delivery = %+v, want %s on hookbus.replay.n at attempt 1", r, id)
		}
	}
	b.settled(t, cons)
	if dls, err := b.client.DeadLetters(ctx, "n"); err != nil || len(dls) != 0 {
		t.Errorf("dead letters of n after replay = %v, %v; want none", dls, err)
	}
	// The replay went to n alone.
	if info, err := other.Info(ctx); err != nil || info.NumPending != 1 {
		t.Errorf("other subscriber: %+v, %v; want only the original event pending", info, err)
	}
	stream, err := b.js.Stream(ctx, events.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	m, err := stream.GetLastMsgForSubject(ctx, "hookbus.replay.n")
	if err != nil {
		t.Fatal(err)
	}
	if id := m.Header.Get(events.HeaderMsgID); id != "replay-"+strconv.FormatUint(mine[1].Seq, 10) {
		t.Errorf("replay Nats-Msg-Id = %q, want replay-%d", id, mine[1].Seq)
	}

	if err := b.client.Replay(ctx, all[2].Seq); !errors.Is(err, client.ErrNotReplayable) {
		t.Errorf("Replay of the dispatcher's dead letter = %v, want ErrNotReplayable", err)
	}
	if err := b.client.Replay(ctx, 12345); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("Replay of an unknown dead letter = %v, want ErrNotFound", err)
	}
	if _, err := b.client.DeadLetters(ctx, "bad name"); !errors.Is(err, events.ErrInvalid) {
		t.Errorf("DeadLetters with a bad name = %v, want events.ErrInvalid", err)
	}
}

func TestDeadLettersWithoutTopology(t *testing.T) {
	t.Parallel()
	b := newBus(t, false)
	if _, err := b.client.DeadLetters(t.Context(), ""); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Errorf("DeadLetters without HOOKBUS_DLQ = %v, want stream not found", err)
	}
}

// An event too large to copy into a dead letter (close to the server's
// max_payload) is dead-lettered by reference with the handler's reason,
// and Replay resends it from HOOKBUS_EVENTS.
func TestNotifyDeadLetterByReference(t *testing.T) {
	t.Parallel()
	b := workerBus(t)
	ctx := ctxT(t)
	maxPayload := int(b.nc.MaxPayload())
	// Let HOOKBUS_EVENTS, and the worker, take events up to max_payload.
	stream, err := b.js.Stream(ctx, events.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	cfg := stream.CachedInfo().Config
	cfg.MaxMsgSize = int32(maxPayload)
	if _, err := b.js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(natstest.Connect(t, b.srv), client.WithMaxEventSize(maxPayload))
	if err != nil {
		t.Fatal(err)
	}
	spec := notifySpec("n", 3, 30000) // no redelivery of the large event, however slow
	cons := notifyConsumer(t, b.js, spec)
	replay, err := events.ReplaySubject("n")
	if err != nil {
		t.Fatal(err)
	}
	var (
		d        deliveries
		mu       sync.Mutex
		replayed []byte
	)
	startServe(t, c, client.Plugin{Spec: spec, Notify: func(_ context.Context, x *client.Delivery) error {
		d.record(x)
		if x.Subject != replay {
			return client.Permanent(errors.New("too large to mail"))
		}
		mu.Lock()
		defer mu.Unlock()
		replayed = x.Event.Data()
		return nil
	}})

	// An event of max_payload less a few bytes: its dead letter's headers
	// do not fit beside its data.
	codec := events.Codec{MaxSize: maxPayload}
	e := testEvent("big", map[string]string{"pad": ""})
	m, err := codec.Encode("hookbus.event."+testType, &e)
	if err != nil {
		t.Fatal(err)
	}
	pad := strings.Repeat("x", maxPayload-events.WireSize(m.Header, m.Data)-64)
	e = testEvent("big", map[string]string{"pad": pad})
	if m, err = codec.Encode("hookbus.event."+testType, &e); err != nil {
		t.Fatal(err)
	}
	ack, err := b.js.PublishMsg(ctx, m)
	if err != nil {
		t.Fatal(err)
	}

	dl := deadLetters(t, c, "n", 1)[0]
	if want := fmt.Sprintf("%s: %d bytes", events.DLQBodyOmitted, len(m.Data)); dl.Omitted != want {
		t.Errorf("dead letter omits %q, want %q", dl.Omitted, want)
	}
	if dl.Reason != "too large to mail" || dl.StreamSeq != ack.Sequence || dl.Subject != "hookbus.event."+testType || len(dl.Data) != 0 {
		t.Errorf("dead letter = reason %q, seq %d, subject %s, %d bytes of data; want too large to mail, %d, hookbus.event.%s, none",
			dl.Reason, dl.StreamSeq, dl.Subject, len(dl.Data), ack.Sequence, testType)
	}
	if err := c.Replay(ctx, dl.Seq); err != nil {
		t.Fatalf("Replay = %v", err)
	}
	got := d.waitCount(t, 2)
	if got[1].id != "big" || got[1].subject != replay || got[1].attempt != 1 {
		t.Errorf("after Replay: %+v, want big on %s at attempt 1", got[1], replay)
	}
	mu.Lock()
	if !bytes.Equal(replayed, m.Data) {
		t.Errorf("replayed data: %d bytes, want the original's %d", len(replayed), len(m.Data))
	}
	mu.Unlock()
	b.settled(t, cons)
	deadLetters(t, c, "n", 0)
	if n := len(d.all()); n != 2 {
		t.Errorf("handler called %d times, want 2", n)
	}
}
