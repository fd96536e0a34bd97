package client_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"iter"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/internal/deadletter"
	"github.com/hookbus/hookbus/internal/natstest"
	"github.com/hookbus/hookbus/pkg/client"
	"github.com/hookbus/hookbus/pkg/events"
)

// collect reads every dead letter of seq, or its error.
func collect(seq iter.Seq2[client.DeadLetter, error]) ([]client.DeadLetter, error) {
	var out []client.DeadLetter
	for dl, err := range seq {
		if err != nil {
			return nil, err
		}
		out = append(out, dl)
	}
	return out, nil
}

// Dead letters are listed per subscriber and replayed to their subscriber
// alone, as a new delivery; the dispatcher's are refused.
func TestDeadLettersAndReplay(t *testing.T) {
	t.Parallel()
	b := workerBus(t)
	ctx := ctxT(t)
	spec := notifySpec("n", 2, 50)
	cons := notifyConsumer(t, b.js, spec)
	other := notifyConsumer(t, b.js, notifySpec("other", 2, 50))
	d, heal := refusingWorker(t, b, spec) // one at a time: replays arrive in order

	// A dead letter of the worker, a headerless raw JSON event that is
	// valid (structured mode), and one of the dispatcher.
	seq := b.publish(t, "a")
	deadLetters(t, b.client, "n", 1)
	heal()
	raw := `{"specversion":"1.0","id":"raw-1","source":"/raw","type":"` + testType + `","data":{"x":1}}`
	rawDL, err := deadletter.New("n", "hookbus.event."+testType, nil, []byte(raw), 99, 3, "no answer after 2 deliveries", 0)
	if err != nil {
		t.Fatal(err)
	}
	invalid, err := deadletter.New(events.DispatcherConsumer, "hookbus.event."+testType, nats.Header{"x": {"y"}}, []byte("garbage"), 100, 1, "invalid event: specversion: not a CloudEvent", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []*nats.Msg{rawDL, invalid} {
		if _, err := b.js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}

	all, err := collect(b.client.DeadLetters(ctx, ""))
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
	if dls, err := collect(b.client.DeadLetters(ctx, "n")); err != nil || len(dls) != 0 {
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
	if _, err := collect(b.client.DeadLetters(ctx, "bad name")); !errors.Is(err, events.ErrInvalid) {
		t.Errorf("DeadLetters with a bad name = %v, want events.ErrInvalid", err)
	}
}

func TestDeadLettersWithoutTopology(t *testing.T) {
	t.Parallel()
	b := newBus(t, false)
	if _, err := collect(b.client.DeadLetters(t.Context(), "")); !errors.Is(err, jetstream.ErrStreamNotFound) {
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

// takeIDs publishes, on subject of stream (where the attacker may
// publish), one message for each id: JetStream deduplicates across the
// stream, so those ids are taken for everybody.
func takeIDs(t *testing.T, js jetstream.JetStream, subject string, ids ...string) {
	t.Helper()
	for _, id := range ids {
		m := &nats.Msg{Subject: subject, Header: nats.Header{events.HeaderMsgID: {id}}, Data: []byte(`{"junk":true}`)}
		if _, err := js.PublishMsg(t.Context(), m); err != nil {
			t.Fatal(err)
		}
	}
}

// A worker's dead letter whose id another plugin's worker took first (on
// its own hookbus.dlq.<name>) is still stored, before the event is
// acknowledged.
func TestNotifyDeadLetterIDTaken(t *testing.T) {
	t.Parallel()
	b := workerBus(t)
	spec := notifySpec("n", 2, 50)
	cons := notifyConsumer(t, b.js, spec)
	startServe(t, b.client, client.Plugin{Spec: spec, Notify: func(context.Context, *client.Delivery) error {
		return client.Permanent(errors.New("mailer refused"))
	}})
	next := b.storedLastSeq(t) + 1
	var ids []string
	for s := next; s < next+5; s++ {
		ids = append(ids, deadletter.MsgID("n", s))
	}
	takeIDs(t, b.js, "hookbus.dlq.attacker", ids...)

	seq := b.publish(t, "a")
	b.settled(t, cons)
	dls := deadLetters(t, b.client, "n", 1)
	if dl := dls[0]; dl.StreamSeq != seq || dl.Reason != "mailer refused" || dl.Forged != "" {
		t.Errorf("dead letter = %+v, want the one of event %d", dl, seq)
	}
}

// A replay whose id replay-<seq> someone took first (an event published
// with that Nats-Msg-Id) is still stored and delivered; a replay whose
// first publish was stored (Replay interrupted before the dead letter was
// deleted) is stored once.
func TestReplayIDTaken(t *testing.T) {
	t.Parallel()
	b := workerBus(t)
	ctx := ctxT(t)
	spec := notifySpec("n", 2, 50)
	cons := notifyConsumer(t, b.js, spec)
	d, heal := refusingWorker(t, b, spec)
	b.publish(t, "a")
	b.publish(t, "b")
	dls := deadLetters(t, b.client, "n", 2)
	heal()

	var ids []string
	for s := uint64(1); s <= 20; s++ {
		ids = append(ids, "replay-"+strconv.FormatUint(s, 10))
	}
	takeIDs(t, b.js, "hookbus.event.com.example.junk", ids...)
	if err := b.client.Replay(ctx, dls[0].Seq); err != nil {
		t.Fatalf("Replay %d: %v", dls[0].Seq, err)
	}
	got := d.waitCount(t, 3)
	if r := got[2]; r.id != "a" || r.subject != "hookbus.replay.n" || r.attempt != 1 {
		t.Errorf("replayed delivery = %+v, want a on hookbus.replay.n", r)
	}

	b.settled(t, cons)
	deadLetters(t, b.client, "n", 1)
	if n := replayed(t, b.js, "hookbus.replay.n"); n != 1 {
		t.Errorf("%d messages on hookbus.replay.n, want 1", n)
	}
}

// replayed counts the messages of HOOKBUS_EVENTS on subject.
func replayed(t *testing.T, js jetstream.JetStream, subject string) uint64 {
	t.Helper()
	s, err := js.Stream(t.Context(), events.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context(), jetstream.WithSubjectFilter(subject))
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Subjects[subject]
}

// Replay interrupted after its publish was stored, before the dead letter
// was deleted: replaying again stores nothing new (the duplicate is its
// own) and deletes the dead letter.
func TestReplayStoredOnce(t *testing.T) {
	t.Parallel()
	b := workerBus(t)
	ctx := ctxT(t)
	spec := notifySpec("n", 2, 50)
	notifyConsumer(t, b.js, spec)
	var d deliveries
	startServe(t, b.client, client.Plugin{Spec: spec, Notify: func(_ context.Context, x *client.Delivery) error {
		d.record(x)
		if x.Subject != "hookbus.replay.n" {
			return client.Permanent(errors.New("mailer refused"))
		}
		return nil
	}})
	b.publish(t, "a")
	dl := deadLetters(t, b.client, "n", 1)[0]
	first := &nats.Msg{Subject: "hookbus.replay.n", Header: nats.Header{}, Data: dl.Data}
	for k, v := range dl.Header {
		first.Header[k] = v
	}
	first.Header.Set(events.HeaderMsgID, "replay-"+strconv.FormatUint(dl.Seq, 10))
	if _, err := b.js.PublishMsg(ctx, first); err != nil {
		t.Fatal(err)
	}
	if err := b.client.Replay(ctx, dl.Seq); err != nil {
		t.Fatalf("Replay %d: %v", dl.Seq, err)
	}
	deadLetters(t, b.client, "n", 0)
	d.waitCount(t, 2)
	if n := replayed(t, b.js, "hookbus.replay.n"); n != 1 {
		t.Errorf("%d messages on hookbus.replay.n, want 1: an interrupted replay replayed again was stored twice", n)
	}
}

// forgedDeadLetter is a dead letter by reference to message seq of
// HOOKBUS_EVENTS, published on hookbus.dlq.<on> by a worker of on, that
// claims to be subscriber's, of an original on subject.
func forgedDeadLetter(on, subscriber, subject string, seq uint64) *nats.Msg {
	h := nats.Header{}
	h.Set(events.HeaderDLQSubscriber, subscriber)
	h.Set(events.HeaderDLQReason, "forged")
	h.Set(events.HeaderDLQSubject, subject)
	h.Set(events.HeaderDLQStreamSeq, strconv.FormatUint(seq, 10))
	h.Set(events.HeaderDLQDeliveries, "1")
	h.Set(events.HeaderDLQBody, events.DLQBodyOmitted+": 10 bytes")
	return &nats.Msg{Subject: "hookbus.dlq." + on, Header: h}
}

// A dead letter a worker of n publishes on its own hookbus.dlq.n cannot
// have another plugin's queue, nor its own, sent an event it does not
// take: one that claims another subscriber is listed as forged and not
// replayed; one by reference to an event of another type, or to a message
// on another subject than the one it records, is not replayed.
func TestReplayForgedDeadLetter(t *testing.T) {
	t.Parallel()
	b := workerBus(t)
	ctx := ctxT(t)
	if _, err := b.client.Register(ctx, notifySpec("other", 2, 50)); err != nil {
		t.Fatal(err)
	}
	if _, err := b.client.Register(ctx, notifySpec("n", 2, 50)); err != nil {
		t.Fatal(err)
	}
	secret := testEvent("secret", map[string]string{"card": "4242"})
	secret.SetType("com.example.secret")
	ack, err := b.client.Publish(ctx, secret)
	if err != nil {
		t.Fatal(err)
	}
	own := b.publish(t, "own")
	for _, m := range []*nats.Msg{
		forgedDeadLetter("n", "other", "hookbus.event."+testType, own),
		forgedDeadLetter("n", "n", "hookbus.event.com.example.secret", ack.Sequence),
		forgedDeadLetter("n", "n", "hookbus.event."+testType, ack.Sequence),
		forgedDeadLetter("n", "n", "hookbus.replay.n", ack.Sequence),
	} {
		if _, err := b.js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	dls := deadLetters(t, b.client, "n", 4)
	if dl := dls[0]; dl.Subscriber != "n" || dl.Forged == "" {
		t.Errorf("dead letter on hookbus.dlq.n claiming other = subscriber %q, forged %q; want n, forged", dl.Subscriber, dl.Forged)
	}
	if others := deadLetters(t, b.client, "other", 0); len(others) != 0 {
		t.Errorf("other has dead letters: %+v", others)
	}
	for i, dl := range dls {
		if i > 0 && dl.Forged != "" {
			t.Errorf("dead letter %d: forged %q, want not", dl.Seq, dl.Forged)
		}
		err := b.client.Replay(ctx, dl.Seq)
		if !errors.Is(err, client.ErrNotReplayable) {
			t.Errorf("Replay of dead letter %d (%s by reference to %d) = %v, want ErrNotReplayable", dl.Seq, dl.Subject, dl.StreamSeq, err)
		} else {
			t.Logf("Replay %d: %v", dl.Seq, err)
		}
	}
	for _, subject := range []string{"hookbus.replay.other", "hookbus.replay.n"} {
		if n := replayed(t, b.js, subject); n != 0 {
			t.Errorf("%d messages replayed on %s, want none", n, subject)
		}
	}
	deadLetters(t, b.client, "n", 4)
}

// refusingWorker serves spec one delivery at a time, refusing every one
// for good (a dead letter at once) until heal is called, then taking them.
func refusingWorker(t *testing.T, b *bus, spec events.PluginSpec) (d *deliveries, heal func()) {
	t.Helper()
	d = &deliveries{}
	var healthy bool // guarded by d.mu
	startServe(t, b.client, client.Plugin{Spec: spec, Notify: func(_ context.Context, x *client.Delivery) error {
		d.record(x)
		d.mu.Lock()
		defer d.mu.Unlock()
		if !healthy {
			return client.Permanent(errors.New("mailer refused"))
		}
		return nil
	}}, client.WithConcurrency(1))
	return d, func() {
		d.mu.Lock()
		healthy = true
		d.mu.Unlock()
	}
}

// DeadLetters reads past a page, filters by subscriber, keeps stream
// order, and stops reading when the loop stops, leaving no consumer.
func TestDeadLettersPages(t *testing.T) {
	t.Parallel()
	b := newBus(t, true)
	ctx := ctxT(t)
	const mine, others = 150, 10 // more than two pages of the subscriber's
	for i := range mine + others {
		subject := "hookbus.dlq.n"
		if i%16 == 0 && i/16 < others {
			subject = "hookbus.dlq.other"
		}
		if _, err := b.js.Publish(ctx, subject, []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		subscriber string
		want       int
	}{{"n", mine}, {"", mine + others}, {"other", others}}
	for _, tt := range tests {
		dls, err := collect(b.client.DeadLetters(ctx, tt.subscriber))
		if err != nil {
			t.Fatal(err)
		}
		if got := len(dls); got != tt.want {
			t.Errorf("DeadLetters(%q): %d, want %d", tt.subscriber, got, tt.want)
		}
		for i, dl := range dls {
			if tt.subscriber != "" && dl.Subscriber != tt.subscriber {
				t.Errorf("DeadLetters(%q) lists dead letter %d of %s", tt.subscriber, dl.Seq, dl.Subscriber)
			}
			if i > 0 && dl.Seq <= dls[i-1].Seq {
				t.Errorf("DeadLetters(%q): seq %d after %d, want stream order", tt.subscriber, dl.Seq, dls[i-1].Seq)
			}
		}
	}
	n := 0
	for _, err := range b.client.DeadLetters(ctx, "") {
		if err != nil {
			t.Fatal(err)
		}
		if n++; n == 3 {
			break
		}
	}
	stream, err := b.js.Stream(ctx, events.StreamDLQ)
	if err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 5*time.Second, func() error {
		info, err := stream.Info(ctx)
		if err != nil {
			return err
		}
		if info.State.Consumers != 0 {
			return fmt.Errorf("%d consumers on %s after the loops ended, want 0", info.State.Consumers, events.StreamDLQ)
		}
		return nil
	})
}
