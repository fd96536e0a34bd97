package client_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/internal/natstest"
	"github.com/hookbus/hookbus/pkg/client"
	"github.com/hookbus/hookbus/pkg/events"
)

// defaultWindow is the window of a Publisher made without WithWindow.
const defaultWindow = 256

func newPublisher(t *testing.T, c *client.Client, opts ...client.Option) *client.Publisher {
	t.Helper()
	p, err := c.NewPublisher(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = p.Close(ctx)
	})
	return p
}

// waitAll waits for every PendingAck, failing the test on an error.
func waitAll(t *testing.T, acks []*client.PendingAck) []client.PublishAck {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	out := make([]client.PublishAck, len(acks))
	for i, a := range acks {
		ack, err := a.Wait(ctx)
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		out[i] = ack
	}
	return out
}

// TestPublisherBurst: a window-sized burst from several goroutines is
// stored exactly once, every event acknowledged once (OnAck too), with
// never more than the window pending.
func TestPublisherBurst(t *testing.T) {
	b := newBus(t, true)
	var callbacks atomic.Int64
	p := newPublisher(t, b.client, client.OnAck(func(_ event.Event, _ client.PublishAck, err error) {
		if err != nil {
			t.Errorf("OnAck: %v", err)
		}
		callbacks.Add(1)
	}))
	const workers, each = 4, defaultWindow / 4
	acks := make([]*client.PendingAck, workers*each)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				n := w*each + i
				a, err := p.Publish(t.Context(), orderCreated("/shop", fmt.Sprintf("order-%d", n)))
				if err != nil {
					t.Errorf("Publish %d: %v", n, err)
					return
				}
				acks[n] = a
				if got := p.Pending(); got > defaultWindow {
					t.Errorf("%d pending, the window is %d", got, defaultWindow)
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	if err := p.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	for i, a := range acks {
		select {
		case <-a.Done():
		default:
			t.Fatalf("event %d not settled after Flush", i)
		}
	}
	seqs := map[uint64]bool{}
	for i, ack := range waitAll(t, acks) {
		if ack.Stream != events.StreamEvents || ack.Duplicate || seqs[ack.Sequence] {
			t.Errorf("event %d: ack %+v (a duplicate, another stream or a sequence seen before)", i, ack)
		}
		seqs[ack.Sequence] = true
	}
	if got := b.storedCount(t); got != workers*each {
		t.Errorf("%d messages stored, want %d", got, workers*each)
	}
	if got := callbacks.Load(); got != workers*each {
		t.Errorf("OnAck called %d times, want %d", got, workers*each)
	}
	if st := p.Stats(); st != (client.PublisherStats{Published: workers * each}) || p.Pending() != 0 {
		t.Errorf("stats %+v, pending %d after Flush", st, p.Pending())
	}
}

// TestPublisherWindow: with acknowledgements that do not come (no stream,
// a subscriber that never answers), exactly the window is sent and the
// next Publish waits until its ctx ends. Closing with a ctx that ends
// fails the events in flight.
func TestPublisherWindow(t *testing.T) {
	b := newBus(t, false)
	silent := natstest.Connect(t, b.srv)
	var seen atomic.Int64
	if _, err := silent.Subscribe(events.EventSubjects, func(*nats.Msg) { seen.Add(1) }); err != nil {
		t.Fatal(err)
	}
	if err := silent.Flush(); err != nil {
		t.Fatal(err)
	}
	const window = 4
	p := newPublisher(t, b.client, client.WithWindow(window), client.WithAckTimeout(time.Minute))
	var acks []*client.PendingAck
	for i := range window {
		a, err := p.Publish(t.Context(), orderCreated("/shop", fmt.Sprintf("order-%d", i)))
		if err != nil {
			t.Fatalf("Publish %d: %v", i, err)
		}
		acks = append(acks, a)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	if a, err := p.Publish(ctx, orderCreated("/shop", "one-too-many")); !errors.Is(err, context.DeadlineExceeded) || a != nil {
		t.Fatalf("Publish over the window: %v, %v; want it to wait until ctx ends", a, err)
	}
	natstest.Eventually(t, 10*time.Second, func() error {
		if n := seen.Load(); n != window {
			return fmt.Errorf("%d messages sent, want %d", n, window)
		}
		return nil
	})
	if got := p.Pending(); got != window {
		t.Errorf("%d pending, want %d", got, window)
	}

	cctx, ccancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer ccancel()
	if err := p.Close(cctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close: %v, want the ctx error", err)
	}
	for i, a := range acks {
		_, err := a.Wait(t.Context())
		if !errors.Is(err, client.ErrPublisherClosed) || !errors.Is(err, client.ErrNotStored) {
			t.Errorf("event %d after Close: %v, want ErrPublisherClosed and ErrNotStored", i, err)
		}
	}
	if n := seen.Load(); n != window {
		t.Errorf("%d messages sent, want %d", n, window)
	}
	if st := p.Stats(); st.Failed != window {
		t.Errorf("stats %+v, want %d failed", st, window)
	}
}

// TestPublisherInvalid: an invalid event fails at once, nothing sent.
func TestPublisherInvalid(t *testing.T) {
	tests := []struct {
		name  string
		opts  []client.Option
		event func() event.Event
		field string
	}{
		{"missing id", nil, func() event.Event {
			e := orderCreated("/shop", "x")
			e.Context.(*event.EventContextV1).ID = ""
			return e
		}, "id"},
		{"over WithMaxEventSize", []client.Option{client.WithMaxEventSize(100)}, func() event.Event { return orderCreated("/shop", "order-42") }, "size"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBus(t, true, tt.opts...)
			p := newPublisher(t, b.client)
			a, err := p.Publish(t.Context(), tt.event())
			var ve *events.ValidationError
			if !errors.As(err, &ve) || ve.Field != tt.field || a != nil {
				t.Fatalf("Publish: %v, %v; want a *events.ValidationError for %q", a, err, tt.field)
			}
			if err := p.Flush(t.Context()); err != nil {
				t.Fatal(err)
			}
			if got := b.storedCount(t); got != 0 {
				t.Errorf("%d messages stored, want none", got)
			}
		})
	}
}

// TestPublisherRefusedFailsAtOnce: a stream that refuses (another stream
// owns the subjects) fails the future after one send.
func TestPublisherRefusedFailsAtOnce(t *testing.T) {
	b := newBus(t, false)
	if _, err := b.js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "OTHER", Subjects: []string{events.EventSubjects}}); err != nil {
		t.Fatal(err)
	}
	p := newPublisher(t, b.client)
	a, err := p.Publish(t.Context(), orderCreated("/shop", "order-42"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = a.Wait(t.Context())
	var apiErr *jetstream.APIError
	if !errors.Is(err, client.ErrNotStored) || !errors.As(err, &apiErr) {
		t.Fatalf("Wait: %v, want ErrNotStored and the stream's refusal", err)
	}
	if st := p.Stats(); st != (client.PublisherStats{Failed: 1}) {
		t.Errorf("stats %+v", st)
	}
}

// TestPublisherResendsLostAck: the stream stores the event but its
// acknowledgement is lost (NoAck); the Publisher sends it again with the
// same Nats-Msg-Id once acks are back, and it is stored once.
func TestPublisherResendsLostAck(t *testing.T) {
	b := newBus(t, true, client.WithRetryWait(50*time.Millisecond))
	setNoAck := func(noAck bool) {
		t.Helper()
		s, err := b.js.Stream(t.Context(), events.StreamEvents)
		if err != nil {
			t.Fatal(err)
		}
		cfg := s.CachedInfo().Config
		cfg.NoAck = noAck
		if _, err := b.js.UpdateStream(t.Context(), cfg); err != nil {
			t.Fatalf("update stream: %v", err)
		}
	}
	setNoAck(true)
	// 4 attempts of 1 s each: the stream answers again long before.
	p := newPublisher(t, b.client, client.WithAckTimeout(time.Second))
	a, err := p.Publish(t.Context(), orderCreated("/shop", "order-42"))
	if err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 10*time.Second, func() error {
		if n := b.storedCount(t); n != 1 {
			return fmt.Errorf("%d stored", n)
		}
		return nil
	})
	setNoAck(false)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	ack, err := a.Wait(ctx)
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if ack != (client.PublishAck{Stream: events.StreamEvents, Sequence: 1, Duplicate: true}) {
		t.Errorf("ack %+v, want the stored sequence 1 as a duplicate (the re-send)", ack)
	}
	if got := b.storedCount(t); got != 1 {
		t.Errorf("%d messages stored, want 1", got)
	}
}

// TestPublisherGivesUp: acks that never come fail the event after a
// bounded number of sends, each with the same Nats-Msg-Id.
func TestPublisherGivesUp(t *testing.T) {
	b := newBus(t, false, client.WithRetryWait(20*time.Millisecond))
	silent := natstest.Connect(t, b.srv)
	ids := make(chan string, 16)
	if _, err := silent.Subscribe(events.EventSubjects, func(m *nats.Msg) { ids <- m.Header.Get(events.HeaderMsgID) }); err != nil {
		t.Fatal(err)
	}
	if err := silent.Flush(); err != nil {
		t.Fatal(err)
	}
	p := newPublisher(t, b.client, client.WithAckTimeout(100*time.Millisecond))
	a, err := p.Publish(t.Context(), orderCreated("/shop", "order-42"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if _, err := a.Wait(ctx); !errors.Is(err, client.ErrNotStored) || !errors.Is(err, jetstream.ErrAsyncPublishTimeout) {
		t.Fatalf("Wait: %v, want ErrNotStored after ack timeouts", err)
	}
	want := events.MsgID("/shop", "order-42")
	natstest.Eventually(t, 10*time.Second, func() error {
		if n := len(ids); n != 4 {
			return fmt.Errorf("%d sends, want 4", n)
		}
		return nil
	})
	for range 4 {
		if id := <-ids; id != want {
			t.Errorf("sent with Nats-Msg-Id %q, want %q", id, want)
		}
	}
}

// TestPublisherReconnect: the connection drops with a window in flight;
// every event still ends acknowledged and stored once.
func TestPublisherReconnect(t *testing.T) {
	b := newBus(t, true)
	p := newPublisher(t, b.client)
	const n = defaultWindow
	acks := make([]*client.PendingAck, n)
	for i := range n {
		a, err := p.Publish(t.Context(), orderCreated("/shop", fmt.Sprintf("order-%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		acks[i] = a
		if i == n/2 {
			if err := b.nc.ForceReconnect(); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitAll(t, acks)
	if got := b.storedCount(t); got != n {
		t.Errorf("%d messages stored, want %d", got, n)
	}
}

func TestPublisherClosed(t *testing.T) {
	b := newBus(t, true)
	p, err := b.client.NewPublisher()
	if err != nil {
		t.Fatal(err)
	}
	a, err := p.Publish(t.Context(), orderCreated("/shop", "order-1"))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Close(t.Context()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case <-a.Done():
	default:
		t.Fatal("event published before Close not settled by Close")
	}
	if _, err := a.Wait(t.Context()); err != nil {
		t.Errorf("event published before Close: %v", err)
	}
	if a, err := p.Publish(t.Context(), orderCreated("/shop", "order-2")); !errors.Is(err, client.ErrPublisherClosed) || a != nil {
		t.Errorf("Publish after Close: %v, %v; want ErrPublisherClosed", a, err)
	}
	if err := p.Close(t.Context()); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if got := b.storedCount(t); got != 1 {
		t.Errorf("%d messages stored, want 1", got)
	}
}

// TestPublisherDoneBeforeAndAfterSettling: Done asked for before the
// event settles is closed when it does; asked for after, it is closed
// already; Wait returns the acknowledgement either way. (A PendingAck
// makes its channel only when asked for.)
func TestPublisherDoneBeforeAndAfterSettling(t *testing.T) {
	b := newBus(t, false)
	release := make(chan struct{})
	stream := natstest.Connect(t, b.srv) // stands in for HOOKBUS_EVENTS
	seq := 0
	sub, err := stream.Subscribe(events.EventSubjects, func(m *nats.Msg) {
		<-release
		seq++
		_ = m.Respond(fmt.Appendf(nil, `{"stream":%q,"seq":%d}`, events.StreamEvents, seq))
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	p := newPublisher(t, b.client)
	early, err := p.Publish(t.Context(), orderCreated("/shop", "early"))
	if err != nil {
		t.Fatal(err)
	}
	done := early.Done()
	if done != early.Done() {
		t.Error("two calls of Done returned two channels")
	}
	select {
	case <-done:
		t.Fatal("Done closed before the acknowledgement")
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Done not closed after the acknowledgement")
	}
	late, err := p.Publish(t.Context(), orderCreated("/shop", "late"))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-late.Done():
	default:
		t.Fatal("Done of a settled event is not closed")
	}
	for i, a := range []*client.PendingAck{early, late} {
		if ack, err := a.Wait(t.Context()); err != nil || ack != (client.PublishAck{Stream: events.StreamEvents, Sequence: uint64(i + 1)}) {
			t.Errorf("event %d: Wait = %+v, %v", i, ack, err)
		}
	}
}
