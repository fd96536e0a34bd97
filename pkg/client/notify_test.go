package client_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/internal/natstest"
	"github.com/hookbus/hookbus/pkg/client"
	"github.com/hookbus/hookbus/pkg/events"
)

// notifyConsumer creates the consumer of a notify plugin exactly as the
// dispatcher does (events.NotifyConsumerConfig), delivering from the start
// of the stream.
func notifyConsumer(t *testing.T, js jetstream.JetStream, spec events.PluginSpec) jetstream.Consumer {
	t.Helper()
	cfg, err := events.NotifyConsumerConfig(events.Plugin{PluginSpec: spec})
	if err != nil {
		t.Fatal(err)
	}
	cons, err := js.CreateOrUpdateConsumer(t.Context(), events.StreamEvents, cfg)
	if err != nil {
		t.Fatalf("notify consumer: %v", err)
	}
	return cons
}

// deliveries records what a notify handler was given.
type deliveries struct {
	mu  sync.Mutex
	got []delivered
}

type delivered struct {
	id      string
	attempt int
	subject string
	at      time.Time
}

func (d *deliveries) record(x *client.Delivery) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.got = append(d.got, delivered{x.Event.ID(), x.Attempt, x.Subject, time.Now()})
}

func (d *deliveries) all() []delivered {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.got)
}

// waitCount polls until n deliveries were recorded.
func (d *deliveries) waitCount(t *testing.T, n int) []delivered {
	t.Helper()
	natstest.Eventually(t, 10*time.Second, func() error {
		if got := len(d.all()); got < n {
			return fmt.Errorf("%d deliveries, want %d", got, n)
		}
		return nil
	})
	return d.all()
}

func (b *bus) publish(t *testing.T, id string) uint64 {
	t.Helper()
	ack, err := b.client.Publish(ctxT(t), testEvent(id, map[string]string{"id": id}))
	if err != nil {
		t.Fatal(err)
	}
	return ack.Sequence
}

// settled polls until the consumer has been delivered every message of
// HOOKBUS_EVENTS and has acknowledgements for all of them. (A consumer
// counts a new message a moment after its publish is acknowledged, so
// "nothing pending" alone could be true too early.)
func (b *bus) settled(t *testing.T, cons jetstream.Consumer) *jetstream.ConsumerInfo {
	t.Helper()
	var info *jetstream.ConsumerInfo
	natstest.Eventually(t, 10*time.Second, func() error {
		last := b.storedLastSeq(t)
		var err error
		if info, err = cons.Info(t.Context()); err != nil {
			return err
		}
		if info.Delivered.Stream < last || info.NumPending != 0 || info.NumAckPending != 0 {
			return fmt.Errorf("consumer: delivered up to %d of %d, %d pending, %d unacknowledged", info.Delivered.Stream, last, info.NumPending, info.NumAckPending)
		}
		return nil
	})
	return info
}

// storedLastSeq is the last sequence of HOOKBUS_EVENTS.
func (b *bus) storedLastSeq(t *testing.T) uint64 {
	t.Helper()
	s, err := b.js.Stream(t.Context(), events.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	return s.CachedInfo().State.LastSeq
}

// deadLetters polls until subscriber has n dead letters and returns them.
func deadLetters(t *testing.T, c *client.Client, subscriber string, n int) []client.DeadLetter {
	t.Helper()
	var dls []client.DeadLetter
	natstest.Eventually(t, 10*time.Second, func() error {
		var err error
		if dls, err = c.DeadLetters(t.Context(), subscriber); err != nil {
			return err
		}
		if len(dls) != n {
			return fmt.Errorf("%d dead letters, want %d", len(dls), n)
		}
		return nil
	})
	return dls
}

func notifySpec(name string, maxDeliver int, backoffMS ...int) events.PluginSpec {
	return events.PluginSpec{Name: name, Event: testType, Mode: events.ModeNotify,
		Settings: events.Settings{MaxDeliver: maxDeliver, BackoffMS: backoffMS}}
}

func TestNotifyAcknowledges(t *testing.T) {
	t.Parallel()
	b := workerBus(t)
	spec := notifySpec("n", 3, 50)
	cons := notifyConsumer(t, b.js, spec)
	var d deliveries
	startServe(t, b.client, client.Plugin{Spec: spec, Notify: func(_ context.Context, x *client.Delivery) error {
		d.record(x)
		return nil
	}})
	for _, id := range []string{"a", "b", "c"} {
		b.publish(t, id)
	}
	got := d.waitCount(t, 3)
	slices.SortFunc(got, func(a, b delivered) int { return strings.Compare(a.id, b.id) }) // handled concurrently
	info := b.settled(t, cons)
	if info.NumRedelivered != 0 || info.AckFloor.Stream != 3 {
		t.Errorf("consumer: %d redelivered, ack floor %d; want 0 and 3", info.NumRedelivered, info.AckFloor.Stream)
	}
	for i, id := range []string{"a", "b", "c"} {
		if got[i].id != id || got[i].attempt != 1 || got[i].subject != "hookbus.event."+testType {
			t.Errorf("delivery %d = %+v, want %s attempt 1", i, got[i], id)
		}
	}
	if dls, err := b.client.DeadLetters(t.Context(), "n"); err != nil || len(dls) != 0 {
		t.Errorf("dead letters = %v, %v; want none", dls, err)
	}
}

func TestNotifyRetriesAfterBackoff(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		backoff []int // ms; the waits after the first and the second failure
	}{
		{"growing backoff", []int{100, 400}},
		{"shrinking backoff", []int{400, 100}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := workerBus(t)
			spec := notifySpec("n", 3, tt.backoff...)
			cons := notifyConsumer(t, b.js, spec)
			var d deliveries
			startServe(t, b.client, client.Plugin{Spec: spec, Notify: func(_ context.Context, x *client.Delivery) error {
				d.record(x)
				if x.Attempt < 3 {
					return errors.New("not yet")
				}
				return nil
			}})
			b.publish(t, "a")
			got := d.waitCount(t, 3)
			b.settled(t, cons)
			if got[0].attempt != 1 || got[1].attempt != 2 || got[2].attempt != 3 {
				t.Errorf("attempts = %v, want 1, 2, 3", got)
			}
			// Each failure waits its own backoff: not less, and not the
			// other one either.
			for i, ms := range tt.backoff {
				want := time.Duration(ms) * time.Millisecond
				if gap := got[i+1].at.Sub(got[i].at); gap < want || gap > want+250*time.Millisecond {
					t.Errorf("delivery %d came %s after delivery %d, want %s (+ up to 250ms)", i+2, gap, i+1, want)
				}
			}
			if dls, _ := b.client.DeadLetters(t.Context(), "n"); len(dls) != 0 {
				t.Errorf("dead letters = %v, want none", dls)
			}
		})
	}
}

func TestNotifyDeadLetters(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		err        error
		maxDeliver int
		wantCalls  int
		wantReason string
	}{
		{"after exactly max_deliver failures", errors.New("mailer down"), 3, 3, "mailer down"},
		{"at once on a permanent error", client.Permanent(errors.New("bad address")), 3, 1, "bad address"},
		{"max_deliver 1", errors.New("nope"), 1, 1, "nope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := workerBus(t)
			spec := notifySpec("n", tt.maxDeliver, 50)
			cons := notifyConsumer(t, b.js, spec)
			var d deliveries
			startServe(t, b.client, client.Plugin{Spec: spec, Notify: func(_ context.Context, x *client.Delivery) error {
				d.record(x)
				return tt.err
			}})
			seq := b.publish(t, "a")
			dl := deadLetters(t, b.client, "n", 1)[0]
			// The dead letter is stored before the original is acknowledged;
			// once acknowledged, it is never delivered again.
			info := b.settled(t, cons)
			if got := d.all(); len(got) != tt.wantCalls {
				t.Errorf("handler called %d times, want %d: %v", len(got), tt.wantCalls, got)
			}
			if info.AckFloor.Stream != seq {
				t.Errorf("ack floor %d, want %d", info.AckFloor.Stream, seq)
			}
			if dl.Reason != tt.wantReason || dl.Subscriber != "n" || dl.StreamSeq != seq ||
				dl.Deliveries != uint64(tt.wantCalls) || dl.Subject != "hookbus.event."+testType {
				t.Errorf("dead letter = %+v", dl)
			}
			if dl.Event == nil || dl.Event.ID() != "a" || string(dl.Event.Data()) != `{"id":"a"}` {
				t.Errorf("dead letter event = %v (%s)", dl.Event, dl.DecodeError)
			}
		})
	}
}

// A delivery past max_deliver means a worker died during the last one:
// it is dead-lettered without calling the handler again.
func TestNotifySpareDelivery(t *testing.T) {
	t.Parallel()
	b := workerBus(t)
	spec := notifySpec("n", 2, 50)
	cons := notifyConsumer(t, b.js, spec)
	seq := b.publish(t, "a")
	// A worker that takes the event and dies, twice.
	for want := uint64(1); want <= 2; want++ {
		natstest.Eventually(t, 10*time.Second, func() error {
			m, err := cons.Next(jetstream.FetchMaxWait(time.Second))
			if err != nil {
				return err
			}
			meta, _ := m.Metadata()
			if meta.NumDelivered != want {
				return fmt.Errorf("delivery %d, want %d", meta.NumDelivered, want)
			}
			return nil
		})
	}
	var calls atomic.Int64
	startServe(t, b.client, client.Plugin{Spec: spec, Notify: func(context.Context, *client.Delivery) error {
		calls.Add(1)
		return nil
	}})
	dl := deadLetters(t, b.client, "n", 1)[0]
	b.settled(t, cons)
	if n := calls.Load(); n != 0 {
		t.Errorf("handler called %d times, want 0", n)
	}
	if dl.Reason != events.ExhaustedReason("n", 2) || dl.Deliveries != 3 || dl.StreamSeq != seq {
		t.Errorf("dead letter = reason %q, deliveries %d, seq %d", dl.Reason, dl.Deliveries, dl.StreamSeq)
	}
}

// An invalid message in the stream is dead-lettered at once and never
// holds up the valid events around it.
func TestNotifyInvalidMessage(t *testing.T) {
	t.Parallel()
	b := workerBus(t)
	spec := notifySpec("n", 5, 5000)
	cons := notifyConsumer(t, b.js, spec)
	var d deliveries
	startServe(t, b.client, client.Plugin{Spec: spec, Notify: func(_ context.Context, x *client.Delivery) error {
		d.record(x)
		return nil
	}}, client.WithConcurrency(1)) // one at a time: in stream order
	b.publish(t, "before")
	subject := "hookbus.event." + testType
	for _, raw := range []*nats.Msg{
		{Subject: subject, Data: []byte("not json at all")},
		{Subject: subject, Data: []byte(`{"specversion":"1.0","source":"/raw","type":"` + testType + `"}`)},
	} {
		if _, err := b.js.PublishMsg(t.Context(), raw); err != nil {
			t.Fatal(err)
		}
	}
	b.publish(t, "after")
	got := d.waitCount(t, 2)
	if got[0].id != "before" || got[1].id != "after" || got[1].attempt != 1 {
		t.Errorf("deliveries = %+v, want before and after, once each", got)
	}
	dls := deadLetters(t, b.client, "n", 2)
	b.settled(t, cons)
	for i, want := range []string{"not a CloudEvent", "id: required"} {
		if dls[i].Event != nil || !strings.Contains(dls[i].Reason, want) || dls[i].Deliveries != 1 || dls[i].StreamSeq != uint64(i+2) {
			t.Errorf("dead letter %d = %+v, want the reason to mention %q", i, dls[i], want)
		}
		if dls[i].DecodeError == "" {
			t.Errorf("dead letter %d has no decode error", i)
		}
	}
	if string(dls[0].Data) != "not json at all" {
		t.Errorf("dead letter data = %q", dls[0].Data)
	}
}

// A handler slower than the ack wait keeps its event: Serve reports it in
// progress, so it is not delivered again.
func TestNotifyInProgress(t *testing.T) {
	t.Parallel()
	b := workerBus(t)
	spec := notifySpec("n", 3, 100)
	cons := notifyConsumer(t, b.js, spec)
	var calls atomic.Int64
	startServe(t, b.client, client.Plugin{Spec: spec, Notify: func(context.Context, *client.Delivery) error {
		calls.Add(1)
		time.Sleep(700 * time.Millisecond) // the handler's slow work: 7 ack waits
		return nil
	}})
	b.publish(t, "slow")
	info := b.settled(t, cons)
	if n := calls.Load(); n != 1 || info.NumRedelivered != 0 {
		t.Errorf("handler called %d times, %d redelivered; want once, none", n, info.NumRedelivered)
	}
}

// At most WithConcurrency handlers run at once; the events a busy worker
// has taken beyond them (its prefetch, at most as many) wait kept in
// progress, so that JetStream does not deliver them again meanwhile, even
// when the handlers run for many ack waits.
func TestNotifyConcurrencyLimit(t *testing.T) {
	t.Parallel()
	b := workerBus(t)
	spec := notifySpec("n", 3, 200) // ack wait 200ms
	cons := notifyConsumer(t, b.js, spec)
	const limit, total = 3, 10
	var active, peak, done atomic.Int64
	var d deliveries
	release := make(chan struct{})
	startServe(t, b.client, client.Plugin{Spec: spec, Notify: func(_ context.Context, x *client.Delivery) error {
		d.record(x)
		n := active.Add(1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		<-release
		active.Add(-1)
		done.Add(1)
		return nil
	}}, client.WithConcurrency(limit))
	for i := range total {
		b.publish(t, fmt.Sprint(i))
	}
	natstest.Eventually(t, 10*time.Second, func() error {
		if n := active.Load(); n != limit {
			return fmt.Errorf("%d handlers running, want %d", n, limit)
		}
		return nil
	})
	time.Sleep(time.Second) // five ack waits with every handler busy
	info, err := cons.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.NumAckPending > 2*limit || info.NumRedelivered != 0 {
		t.Errorf("consumer: %d unacknowledged, %d redelivered; want at most %d (running and prefetched) and none", info.NumAckPending, info.NumRedelivered, 2*limit)
	}
	close(release)
	natstest.Eventually(t, 10*time.Second, func() error {
		if n := done.Load(); n != total {
			return fmt.Errorf("%d handled, want %d", n, total)
		}
		return nil
	})
	info = b.settled(t, cons)
	if p := peak.Load(); p != limit {
		t.Errorf("at most %d handlers ran at once, want %d", p, limit)
	}
	if info.NumRedelivered != 0 {
		t.Errorf("%d events delivered again, want none", info.NumRedelivered)
	}
	for _, x := range d.waitCount(t, total) {
		if x.attempt != 1 {
			t.Errorf("event %s handled on attempt %d, want 1", x.id, x.attempt)
		}
	}
}

// Shutdown finishes the delivery in progress and acknowledges it; later
// events stay in the queue.
func TestNotifyDrain(t *testing.T) {
	t.Parallel()
	b := workerBus(t)
	spec := notifySpec("n", 3, 200)
	cons := notifyConsumer(t, b.js, spec)
	entered, release := make(chan struct{}), make(chan struct{})
	var calls atomic.Int64
	s := startServe(t, b.client, client.Plugin{Spec: spec, Notify: func(context.Context, *client.Delivery) error {
		if calls.Add(1) == 1 {
			close(entered)
			<-release
		}
		return nil
	}})
	b.publish(t, "a")
	<-entered
	s.cancel()
	if s.returned() {
		t.Fatal("Serve returned with a delivery in progress")
	}
	close(release)
	if err := s.stop(t); err != nil {
		t.Fatalf("Serve = %v", err)
	}
	info := b.settled(t, cons) // acknowledged before Serve returned, redelivered never
	if info.NumRedelivered != 0 || calls.Load() != 1 {
		t.Errorf("%d calls, %d redelivered; want 1 and 0", calls.Load(), info.NumRedelivered)
	}
	b.publish(t, "b")
	// The consumer counts a new event a moment after the publish is
	// acknowledged.
	natstest.Eventually(t, 5*time.Second, func() error {
		info, err := cons.Info(t.Context())
		if err != nil {
			return err
		}
		if info.NumPending != 1 || info.NumWaiting != 0 || info.NumAckPending != 0 {
			return fmt.Errorf("after Serve returned: %d pending, %d pull requests, %d unacknowledged; want 1, 0, 0", info.NumPending, info.NumWaiting, info.NumAckPending)
		}
		return nil
	})
	if n := calls.Load(); n != 1 {
		t.Errorf("handler called %d times, want 1", n)
	}
}

// A handler that does not return does not hold up the events behind it:
// another goroutine takes over pulling while it runs.
func TestNotifySlowHandlerDoesNotBlockOthers(t *testing.T) {
	t.Parallel()
	b := workerBus(t)
	spec := notifySpec("n", 3, 30000)
	notifyConsumer(t, b.js, spec)
	var d deliveries
	release := make(chan struct{})
	startServe(t, b.client, client.Plugin{Spec: spec, Notify: func(_ context.Context, x *client.Delivery) error {
		if x.Event.ID() == "stuck" {
			<-release
		}
		d.record(x)
		return nil
	}}, client.WithConcurrency(4))
	t.Cleanup(func() { close(release) }) // runs before Serve's stop
	b.publish(t, "stuck")
	for i := range 20 {
		b.publish(t, fmt.Sprint(i))
	}
	got := d.waitCount(t, 20)
	for _, x := range got {
		if x.id == "stuck" {
			t.Errorf("the stuck handler returned")
		}
	}
}

// Events taken out of a saturated worker's prefetch wait kept in progress;
// one of them hanging in its handler holds up nothing but itself.
func TestNotifyHeldEventHangingDoesNotBlockOthers(t *testing.T) {
	t.Parallel()
	b := workerBus(t)
	spec := notifySpec("n", 3, 200) // ack wait 200ms: the prefetch is taken out after 50ms
	notifyConsumer(t, b.js, spec)
	var d deliveries
	release := make(chan struct{})
	startServe(t, b.client, client.Plugin{Spec: spec, Notify: func(_ context.Context, x *client.Delivery) error {
		switch x.Event.ID() {
		case "s1", "s2":
			time.Sleep(150 * time.Millisecond) // both handlers busy: saturated
		case "hang":
			<-release
		}
		d.record(x)
		return nil
	}}, client.WithConcurrency(2))
	t.Cleanup(func() { close(release) }) // runs before Serve's stop
	for _, id := range []string{"s1", "s2", "hang", "e1"} {
		b.publish(t, id)
	}
	time.Sleep(400 * time.Millisecond)
	for _, id := range []string{"e2", "e3"} {
		b.publish(t, id)
	}
	got := d.waitCount(t, 5)
	for _, x := range got {
		if x.attempt != 1 {
			t.Errorf("%s handled on attempt %d, want 1", x.id, x.attempt)
		}
	}
}

// A worker whose consumer fails (here: deleted and made again) pulls
// again at once, even while a handler of the old consumer still runs.
func TestNotifyConsumerReplacedWhileHandlerRuns(t *testing.T) {
	t.Parallel()
	b := workerBus(t)
	spec := notifySpec("n", 3, 30000)
	notifyConsumer(t, b.js, spec)
	var d deliveries
	entered := make(chan struct{}, 2)
	release := make(chan struct{})
	startServe(t, b.client, client.Plugin{Spec: spec, Notify: func(_ context.Context, x *client.Delivery) error {
		if x.Event.ID() == "stuck" {
			entered <- struct{}{}
			<-release
		}
		d.record(x)
		return nil
	}}, client.WithConcurrency(4))
	t.Cleanup(func() { close(release) }) // runs before Serve's stop
	b.publish(t, "stuck")
	<-entered
	if err := b.js.DeleteConsumer(t.Context(), events.StreamEvents, events.NotifyConsumer(spec.Name)); err != nil {
		t.Fatal(err)
	}
	notifyConsumer(t, b.js, spec)
	b.publish(t, "after")
	got := d.waitCount(t, 1)
	if got[0].id != "after" {
		t.Errorf("handled %+v, want after", got)
	}
}

// At shutdown, the events a worker prefetched but did not start are given
// back at once (a nak), not after their ack wait: another worker takes
// them straight away.
func TestNotifyShutdownGivesBackPrefetched(t *testing.T) {
	t.Parallel()
	b := workerBus(t)
	spec := notifySpec("n", 3, 30000) // an ack wait far beyond the test
	notifyConsumer(t, b.js, spec)
	const limit = 4
	var running atomic.Int64
	release := make(chan struct{})
	first := startServe(t, b.client, client.Plugin{Spec: spec, Notify: func(context.Context, *client.Delivery) error {
		running.Add(1)
		<-release
		return nil
	}}, client.WithConcurrency(limit))
	releaseAll := sync.OnceFunc(func() { close(release) })
	t.Cleanup(releaseAll) // before the first worker's stop, also on failure
	ids := []string{"a", "b", "c", "d", "e", "f", "g", "h"}
	for _, id := range ids {
		b.publish(t, id)
	}
	natstest.Eventually(t, 10*time.Second, func() error {
		if n := running.Load(); n != limit {
			return fmt.Errorf("%d handlers running, want %d", n, limit)
		}
		return nil
	})
	time.Sleep(200 * time.Millisecond) // the next pull's events arrive
	first.cancel()
	var d deliveries
	startServe(t, b.client, client.Plugin{Spec: spec, Notify: func(_ context.Context, x *client.Delivery) error {
		d.record(x)
		return nil
	}}, client.WithConcurrency(limit))
	got := d.waitCount(t, len(ids)-limit)
	slices.SortFunc(got, func(a, b delivered) int { return strings.Compare(a.id, b.id) })
	var gotIDs []string
	for _, x := range got {
		gotIDs = append(gotIDs, x.id)
	}
	if !slices.Equal(gotIDs, ids[limit:]) {
		t.Errorf("second worker got %v, want %v", gotIDs, ids[limit:])
	}
	releaseAll()
	if err := first.stop(t); err != nil {
		t.Fatal(err)
	}
}

// A notify worker pulls only while its plugin runs, and waits for its
// consumer to exist.
func TestNotifyOnlyWhileRunning(t *testing.T) {
	t.Parallel()
	b := workerBus(t)
	ctx := ctxT(t)
	spec := notifySpec("n", 3, 200)
	var d deliveries
	var stopped atomic.Bool
	startServe(t, b.client, client.Plugin{
		Spec: spec,
		Notify: func(_ context.Context, x *client.Delivery) error {
			if stopped.Load() {
				t.Errorf("delivery %s while the plugin is stopped", x.Event.ID())
			}
			d.record(x)
			return nil
		},
		OnStop:  func(events.Plugin) { stopped.Store(true) },
		OnStart: func(events.Plugin) { stopped.Store(false) },
	})
	waitStatus(t, b.client, "n", events.StatusStarted)
	b.publish(t, "a") // before the consumer exists: it starts at the first event
	cons := notifyConsumer(t, b.js, spec)
	d.waitCount(t, 1)

	if _, err := b.client.Stop(ctx, "n"); err != nil {
		t.Fatal(err)
	}
	// Once the open pull request ends, no other is made.
	natstest.Eventually(t, 10*time.Second, func() error {
		info, err := cons.Info(ctx)
		if err != nil {
			return err
		}
		if !stopped.Load() || info.NumWaiting != 0 {
			return fmt.Errorf("stopped callback %v, %d pull requests waiting", stopped.Load(), info.NumWaiting)
		}
		return nil
	})
	b.publish(t, "b")
	natstest.Eventually(t, 5*time.Second, func() error {
		info, err := cons.Info(ctx)
		if err != nil {
			return err
		}
		if info.NumPending != 1 {
			return fmt.Errorf("%d pending, want 1", info.NumPending)
		}
		return nil
	})
	for deadline := time.Now().Add(500 * time.Millisecond); time.Now().Before(deadline); {
		info, err := cons.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.NumWaiting != 0 || info.NumPending != 1 {
			t.Fatalf("stopped plugin: %d pull requests, %d pending; want 0 and 1", info.NumWaiting, info.NumPending)
		}
		time.Sleep(50 * time.Millisecond) // watching that nothing happens
	}
	if _, err := b.client.Enable(ctx, "n"); err != nil {
		t.Fatal(err)
	}
	got := d.waitCount(t, 2)
	if got[1].id != "b" || got[1].attempt != 1 {
		t.Errorf("after enable: %+v, want b at attempt 1", got[1])
	}
	b.settled(t, cons)
}
