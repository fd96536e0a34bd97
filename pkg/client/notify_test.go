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

	"github.com/hookbus/hookbus/internal/deadletter"
	"github.com/hookbus/hookbus/internal/natstest"
	"github.com/hookbus/hookbus/internal/topology"
	"github.com/hookbus/hookbus/pkg/client"
	"github.com/hookbus/hookbus/pkg/events"
)

// notifyConsumer creates the consumers of a notify plugin exactly as the
// dispatcher does (topology.ReplayConsumerConfig, topology.NotifyConsumerConfig),
// delivering from the start of the stream, and returns the notify queue.
func notifyConsumer(t *testing.T, js jetstream.JetStream, spec events.PluginSpec) jetstream.Consumer {
	t.Helper()
	var cons jetstream.Consumer
	for _, config := range []func(events.Plugin) (jetstream.ConsumerConfig, error){topology.ReplayConsumerConfig, topology.NotifyConsumerConfig} {
		cfg, err := config(events.Plugin{PluginSpec: spec})
		if err != nil {
			t.Fatal(err)
		}
		// Created again right after a delete (as the dispatcher does), the
		// server may still be removing the old consumer's files and answer
		// a passing error 500 ("rename .../o.dat.tmp: no such file"): try
		// again, as the dispatcher does on its next comparison.
		natstest.Eventually(t, 5*time.Second, func() error {
			var err error
			cons, err = js.CreateOrUpdateConsumer(t.Context(), events.StreamEvents, cfg)
			if err != nil {
				return fmt.Errorf("consumer %s: %w", cfg.Durable, err)
			}
			return nil
		})
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

// settled polls until the plugin's consumers (cons, its notify queue, and
// its replay consumer) have been delivered every message of HOOKBUS_EVENTS
// on their subjects and have acknowledgements for all of them, and
// returns cons's info. (A consumer counts a new message a moment after its
// publish is acknowledged, so "nothing pending" alone could be true too
// early.)
func (b *bus) settled(t *testing.T, cons jetstream.Consumer) *jetstream.ConsumerInfo {
	t.Helper()
	plugin, _ := topology.SubscriberOf(cons.CachedInfo().Name)
	var info *jetstream.ConsumerInfo
	natstest.Eventually(t, 10*time.Second, func() error {
		stream, err := b.js.Stream(t.Context(), events.StreamEvents)
		if err != nil {
			return err
		}
		for _, name := range []string{events.NotifyConsumer(plugin), events.ReplayConsumer(plugin)} {
			c, err := stream.Consumer(t.Context(), name)
			if err != nil {
				return err
			}
			ci, err := c.Info(t.Context())
			if err != nil {
				return err
			}
			var last uint64
			if m, err := stream.GetLastMsgForSubject(t.Context(), ci.Config.FilterSubject); err == nil {
				last = m.Sequence
			} else if !errors.Is(err, jetstream.ErrMsgNotFound) {
				return err
			}
			if ci.Delivered.Stream < last || ci.NumPending != 0 || ci.NumAckPending != 0 {
				return fmt.Errorf("consumer %s: delivered up to %d of %d, %d pending, %d unacknowledged", name, ci.Delivered.Stream, last, ci.NumPending, ci.NumAckPending)
			}
			if name == cons.CachedInfo().Name {
				info = ci
			}
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
		if dls, err = collect(c.DeadLetters(t.Context(), subscriber)); err != nil {
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
	spec := notifySpec("n", 3, 5000)
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
	if info.Delivered.Consumer != 3 || info.AckFloor.Stream != 3 {
		t.Errorf("consumer: %d deliveries, ack floor %d; want 3 and 3", info.Delivered.Consumer, info.AckFloor.Stream)
	}
	for i, id := range []string{"a", "b", "c"} {
		if got[i].id != id || got[i].attempt != 1 || got[i].subject != "hookbus.event."+testType {
			t.Errorf("delivery %d = %+v, want %s attempt 1", i, got[i], id)
		}
	}
	if dls, err := collect(b.client.DeadLetters(t.Context(), "n")); err != nil || len(dls) != 0 {
		t.Errorf("dead letters = %v, %v; want none", dls, err)
	}
}

func TestNotifyRetriesAfterBackoff(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		backoff []int // ms; the waits after the first and the second failure
	}{
		{"growing backoff", []int{600, 2400}},
		{"shrinking backoff", []int{2400, 600}},
	}
	// Room for the pauses of a loaded machine; less than the difference
	// of the two backoffs, and than what a nak delay not compensated for
	// the backoff (see nakDelay) would add or take.
	const slack = time.Second
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
				if gap := got[i+1].at.Sub(got[i].at); gap < want || gap > want+slack {
					t.Errorf("delivery %d came %s after delivery %d, want %s (+ up to %s)", i+2, gap, i+1, want, slack)
				}
			}
			if dls, _ := collect(b.client.DeadLetters(t.Context(), "n")); len(dls) != 0 {
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
	if dl.Reason != deadletter.ExhaustedReason("n", 2) || dl.Deliveries != 3 || dl.StreamSeq != seq {
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
	// Reports are due every half ack wait: the other half must outlast
	// the pauses of a loaded machine, where the test process can stall
	// for a few hundred milliseconds.
	spec := notifySpec("n", 3, 1000)
	cons := notifyConsumer(t, b.js, spec)
	var calls atomic.Int64
	startServe(t, b.client, client.Plugin{Spec: spec, Notify: func(context.Context, *client.Delivery) error {
		calls.Add(1)
		time.Sleep(2500 * time.Millisecond) // the handler's slow work: 2.5 ack waits
		return nil
	}})
	b.publish(t, "slow")
	info := b.settled(t, cons)
	if n := calls.Load(); n != 1 || info.Delivered.Consumer != 1 {
		t.Errorf("handler called %d times, event delivered %d times; want once, once", n, info.Delivered.Consumer)
	}
}

// At most WithConcurrency handlers run at once; the events a busy worker
// has taken beyond them (its prefetch, at most as many) wait kept in
// progress, so that JetStream does not deliver them again meanwhile (here
// to a pull request of the test's, waiting all along), even when the
// handlers run for many ack waits.
func TestNotifyConcurrencyLimit(t *testing.T) {
	t.Parallel()
	b := workerBus(t)
	// Reports are due every quarter ack wait: the rest must outlast the
	// pauses of a loaded machine.
	spec := notifySpec("n", 3, 1000)
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
	// The worker's prefetch arrives.
	natstest.Eventually(t, 10*time.Second, func() error {
		info, err := cons.Info(t.Context())
		if err != nil {
			return err
		}
		if info.NumAckPending <= limit {
			return fmt.Errorf("%d events delivered to the worker, want more than %d", info.NumAckPending, limit)
		}
		return nil
	})
	// Three ack waits with every handler busy, and a pull request of the
	// test's waiting all along: it takes (and acknowledges) the events the
	// worker did not prefetch, and would take those it did, delivered
	// again, if the worker let their ack wait pass.
	batch, err := cons.Fetch(total, jetstream.FetchMaxWait(3*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	taken := 0
	for m := range batch.Messages() {
		if meta, err := m.Metadata(); err != nil || meta.NumDelivered != 1 {
			t.Errorf("event %s delivered again while the worker held it (%+v, %v)", m.Headers().Get("ce-id"), meta, err)
		}
		if err := m.DoubleAck(t.Context()); err != nil {
			t.Fatal(err)
		}
		taken++
	}
	prefetched := total - limit - taken
	if prefetched < 1 || prefetched > limit {
		t.Errorf("the worker prefetched %d events, want 1 to %d", prefetched, limit)
	}
	close(release)
	natstest.Eventually(t, 10*time.Second, func() error {
		if n := done.Load(); n != int64(total-taken) {
			return fmt.Errorf("%d handled, want %d", n, total-taken)
		}
		return nil
	})
	info := b.settled(t, cons)
	if p := peak.Load(); p != limit {
		t.Errorf("at most %d handlers ran at once, want %d", p, limit)
	}
	if info.Delivered.Consumer != total || info.NumRedelivered != 0 {
		t.Errorf("%d deliveries of %d events, %d redelivered; want one each", info.Delivered.Consumer, total, info.NumRedelivered)
	}
	for _, x := range d.waitCount(t, total-taken) {
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
	if info.Delivered.Consumer != 1 || calls.Load() != 1 {
		t.Errorf("%d calls, %d deliveries; want 1 and 1", calls.Load(), info.Delivered.Consumer)
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

// An event whose type is not the one of its subject is dead-lettered
// without reaching the handler: otherwise a raw publisher could label an
// event of one type as another and pass it by its real type's schema. On
// the plugin's replay subject, only the plugin's own event type is taken.
func TestNotifyTypeMustMatchSubject(t *testing.T) {
	t.Parallel()
	b := workerBus(t)
	spec := notifySpec("n", 5, 5000)
	cons := notifyConsumer(t, b.js, spec)
	var d deliveries
	startServe(t, b.client, client.Plugin{Spec: spec, Notify: func(_ context.Context, x *client.Delivery) error {
		d.record(x)
		return nil
	}}, client.WithConcurrency(1)) // one at a time: in stream order
	eventSubject, err := events.EventSubject(testType)
	if err != nil {
		t.Fatal(err)
	}
	replay, err := events.ReplaySubject("n")
	if err != nil {
		t.Fatal(err)
	}
	raw := func(subject, id, typ string) {
		t.Helper()
		e := testEvent(id, map[string]int{"x": 1})
		e.SetType(typ)
		m, err := events.Encode(subject, &e)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.js.PublishMsg(t.Context(), m); err != nil {
			t.Fatal(err)
		}
	}
	b.publish(t, "before")
	raw(eventSubject, "other-type", "com.example.forged")
	raw(replay, "other-type-replayed", "com.example.other")
	raw(replay, "replayed", testType)
	b.publish(t, "after")

	// The notify queue and the replay consumer deliver side by side: in
	// order by id.
	got := d.waitCount(t, 3)
	slices.SortFunc(got, func(a, b delivered) int { return strings.Compare(a.id, b.id) })
	want := []delivered{{id: "after", subject: eventSubject}, {id: "before", subject: eventSubject}, {id: "replayed", subject: replay}}
	for i := range want {
		if got[i].id != want[i].id || got[i].subject != want[i].subject || got[i].attempt != 1 {
			t.Errorf("delivery %d = %+v, want %s on %s at attempt 1", i, got[i], want[i].id, want[i].subject)
		}
	}
	dls := deadLetters(t, b.client, "n", 2)
	slices.SortFunc(dls, func(a, b client.DeadLetter) int { return strings.Compare(a.Subject+a.Reason, b.Subject+b.Reason) })

	b.settled(t, cons)
	if n := len(d.all()); n != 3 {
		t.Errorf("handler called %d times, want 3", n)
	}
	wantDL := []struct {
		subject, id, reason string
	}{
		{eventSubject, "other-type", `invalid event: type: "com.example.forged" published on ` + eventSubject + ": an event of type T belongs on hookbus.event.T"},
		{replay, "other-type-replayed", `invalid event: type: "com.example.other" replayed on ` + replay + `: plugin n takes events of type "` + testType + `"`},
	}
	for i, w := range wantDL {
		if dls[i].Reason != w.reason || dls[i].Subject != w.subject || dls[i].Event == nil || dls[i].Event.ID() != w.id || dls[i].Deliveries != 1 {
			t.Errorf("dead letter %d = reason %q, subject %s, event %v, %d deliveries; want reason %q, subject %s, event %s, 1 delivery",
				i, dls[i].Reason, dls[i].Subject, dls[i].Event, dls[i].Deliveries, w.reason, w.subject, w.id)
		}
	}
}

// watchAcks records, for each acknowledgement (+ACK) sent for the notify
// consumer of plugin name, whether HOOKBUS_DLQ held a dead letter of the
// plugin when the acknowledgement was seen. The function returned checks
// that there was one at each, once there has been an acknowledgement.
func watchAcks(t *testing.T, b *bus, name string) (check func()) {
	t.Helper()
	stream, err := b.js.Stream(t.Context(), events.StreamDLQ)
	if err != nil {
		t.Fatal(err)
	}
	dlq, err := events.DLQSubject(name)
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu   sync.Mutex
		acks []bool
	)
	nc := natstest.Connect(t, b.srv)
	// Acknowledgements are messages on the consumer's ack subjects:
	// another subscriber sees them as the server does.
	_, err = nc.Subscribe("$JS.ACK."+events.StreamEvents+"."+events.NotifyConsumer(name)+".>", func(m *nats.Msg) {
		if string(m.Data) != "+ACK" {
			return
		}
		_, err := stream.GetLastMsgForSubject(t.Context(), dlq)
		mu.Lock()
		acks = append(acks, err == nil)
		mu.Unlock()
	})
	if err == nil {
		err = nc.Flush()
	}
	if err != nil {
		t.Fatal(err)
	}
	return func() {
		t.Helper()
		natstest.Eventually(t, 10*time.Second, func() error {
			mu.Lock()
			defer mu.Unlock()
			if len(acks) == 0 {
				return errors.New("no acknowledgement seen")
			}
			return nil
		})
		mu.Lock()
		defer mu.Unlock()
		// More than one when the event was dead-lettered twice (delivered
		// again meanwhile): the DLQ stores it once.
		if slices.Contains(acks, false) {
			t.Errorf("acknowledgements, with whether the dead letter was stored before each: %v; want it stored before all", acks)
		}
	}
}

// changeDLQ changes the config of HOOKBUS_DLQ and returns a function that
// puts it back.
func changeDLQ(t *testing.T, js jetstream.JetStream, change func(*jetstream.StreamConfig)) (restore func()) {
	t.Helper()
	stream, err := js.Stream(t.Context(), events.StreamDLQ)
	if err != nil {
		t.Fatal(err)
	}
	orig := stream.CachedInfo().Config
	cfg := orig
	change(&cfg)
	if _, err := js.UpdateStream(t.Context(), cfg); err != nil {
		t.Fatalf("change %s: %v", events.StreamDLQ, err)
	}
	return func() {
		t.Helper()
		if _, err := js.UpdateStream(t.Context(), orig); err != nil {
			t.Fatalf("restore %s: %v", events.StreamDLQ, err)
		}
	}
}

// A dead letter the DLQ refuses is not lost: the event is not
// acknowledged, comes back, and is dead-lettered once the DLQ stores
// again.
func TestNotifyDeadLetterRefused(t *testing.T) {
	t.Parallel()
	b := workerBus(t)
	spec := notifySpec("n", 20, 100)
	cons := notifyConsumer(t, b.js, spec)
	checkAcks := watchAcks(t, b, "n")
	// A full DLQ (it discards new messages) refuses the dead letter.
	if _, err := b.js.Publish(t.Context(), "hookbus.dlq.other", nil); err != nil {
		t.Fatal(err)
	}
	restore := changeDLQ(t, b.js, func(cfg *jetstream.StreamConfig) { cfg.MaxMsgs = 1 })
	var d deliveries
	startServe(t, b.client, client.Plugin{Spec: spec, Notify: func(_ context.Context, x *client.Delivery) error {
		d.record(x)
		return client.Permanent(errors.New("bad address"))
	}})
	seq := b.publish(t, "a")
	d.waitCount(t, 2) // came back: not acknowledged
	info, err := cons.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.AckFloor.Stream >= seq {
		t.Errorf("ack floor %d: event %d acknowledged while the DLQ refused its dead letter", info.AckFloor.Stream, seq)
	}
	restore()
	dl := deadLetters(t, b.client, "n", 1)[0]
	info = b.settled(t, cons)
	if info.AckFloor.Stream != seq {
		t.Errorf("ack floor %d, want %d", info.AckFloor.Stream, seq)
	}
	if dl.Reason != "bad address" || dl.StreamSeq != seq || dl.Deliveries < 2 {
		t.Errorf("dead letter = reason %q, seq %d, %d deliveries; want bad address, %d, at least 2", dl.Reason, dl.StreamSeq, dl.Deliveries, seq)
	}
	checkAcks()
}

// The original is acknowledged only once its dead letter is stored, also
// when storing it takes a while.
func TestNotifyDeadLetterStoredBeforeAck(t *testing.T) {
	t.Parallel()
	b := workerBus(t)
	spec := notifySpec("n", 3, 30000)
	cons := notifyConsumer(t, b.js, spec)
	checkAcks := watchAcks(t, b, "n")
	// No stream takes hookbus.dlq.n for now: the worker tries again.
	restore := changeDLQ(t, b.js, func(cfg *jetstream.StreamConfig) { cfg.Subjects = []string{"hookbus.dlq.other"} })
	var d deliveries
	startServe(t, b.client, client.Plugin{Spec: spec, Notify: func(_ context.Context, x *client.Delivery) error {
		d.record(x)
		return client.Permanent(errors.New("bad address"))
	}})
	seq := b.publish(t, "a")
	d.waitCount(t, 1)
	time.Sleep(300 * time.Millisecond) // the DLQ's outage: an early ack would come now
	restore()
	dl := deadLetters(t, b.client, "n", 1)[0]
	info := b.settled(t, cons)
	if info.AckFloor.Stream != seq || dl.StreamSeq != seq || dl.Reason != "bad address" {
		t.Errorf("ack floor %d, dead letter of %d with reason %q; want %d, %d, bad address", info.AckFloor.Stream, dl.StreamSeq, dl.Reason, seq, seq)
	}
	checkAcks()
	if n := len(d.all()); n != 1 {
		t.Errorf("handler called %d times, want 1", n)
	}
}
