package dispatcher_test

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/internal/natstest"
	"github.com/hookbus/hookbus/internal/topology"
	"github.com/hookbus/hookbus/pkg/events"
)

func notifyPlugin(name string, status events.Status, started time.Time) events.Plugin {
	p := plugin(name, 0)
	p.Mode, p.Status, p.UpdatedAt = events.ModeNotify, status, started
	p.Settings = events.Settings{MaxDeliver: 3, BackoffMS: []int{100, 200}}
	return p
}

// consumer returns the info of consumer name of HOOKBUS_EVENTS.
func (e *env) consumer(name string) (*jetstream.ConsumerInfo, error) {
	c, err := e.js.Consumer(e.t.Context(), events.StreamEvents, name)
	if err != nil {
		return nil, err
	}
	return c.Info(e.t.Context())
}

func TestNotifyConsumerLifecycle(t *testing.T) {
	e := newEnv(t)
	e.runDispatcher()
	start := time.Now().Add(-time.Minute)

	// Registered, never started: no queue yet.
	e.put(notifyPlugin("mailer", events.StatusRegistered, start))
	e.put(plugin("marker", 0)) // a later change proves the first was seen
	e.worker("marker", appender("marker"))
	e.waitChain("ev", 1)
	if _, err := e.consumer(events.NotifyConsumer("mailer")); !errors.Is(err, jetstream.ErrConsumerNotFound) {
		t.Fatalf("consumer of a never-started plugin: %v, want none", err)
	}

	// Started: the queue and the replay consumer exist, from the start
	// time, with the settings, one filter subject each.
	e.put(notifyPlugin("mailer", events.StatusStarted, start))
	consumers := map[string]string{events.NotifyConsumer("mailer"): "hookbus.event.ev", events.ReplayConsumer("mailer"): "hookbus.replay.mailer"}
	for name, filter := range consumers {
		var info *jetstream.ConsumerInfo
		natstest.Eventually(t, 5*time.Second, func() (err error) { info, err = e.consumer(name); return err })
		c := info.Config
		if c.FilterSubject != filter || len(c.FilterSubjects) != 0 ||
			c.MaxDeliver != 4 || !slices.Equal(c.BackOff, []time.Duration{100 * time.Millisecond, 200 * time.Millisecond}) ||
			c.DeliverPolicy != jetstream.DeliverByStartTimePolicy || !c.OptStartTime.Equal(start) || c.AckPolicy != jetstream.AckExplicitPolicy {
			t.Errorf("%s config: filter %q %v max deliver %d backoff %v deliver %v from %v ack %v",
				name, c.FilterSubject, c.FilterSubjects, c.MaxDeliver, c.BackOff, c.DeliverPolicy, c.OptStartTime, c.AckPolicy)
		}
	}

	// Stopped and held: kept and paused, its events wait; running again:
	// resumed.
	for _, st := range []events.Status{events.StatusStopped, events.StatusHeld, events.StatusRestarted} {
		e.put(notifyPlugin("mailer", st, time.Now()))
		for name := range consumers {
			natstest.Eventually(t, 5*time.Second, func() error {
				info, err := e.consumer(name)
				if err != nil {
					return fmt.Errorf("%s while %s: %v, want it kept", name, st, err)
				}
				if info.Paused == st.Running() {
					return fmt.Errorf("%s while %s: paused %v", name, st, info.Paused)
				}
				return nil
			})
		}
	}

	// Settings change: updated in place, start kept.
	p := notifyPlugin("mailer", events.StatusRestarted, time.Now())
	p.Settings.MaxDeliver = 5
	e.put(p)
	for name := range consumers {
		natstest.Eventually(t, 5*time.Second, func() error {
			info, err := e.consumer(name)
			if err != nil {
				return err
			}
			if info.Config.MaxDeliver != 6 || !info.Config.OptStartTime.Equal(start) {
				return fmt.Errorf("%s: max deliver %d from %v, want 6 from %v", name, info.Config.MaxDeliver, info.Config.OptStartTime, start)
			}
			return nil
		})
	}

	// Unregistered: deleted.
	if err := e.kv.Delete(t.Context(), "mailer"); err != nil {
		t.Fatal(err)
	}
	for name := range consumers {
		natstest.Eventually(t, 5*time.Second, func() error {
			if _, err := e.consumer(name); !errors.Is(err, jetstream.ErrConsumerNotFound) {
				return fmt.Errorf("%s after unregister: %v", name, err)
			}
			return nil
		})
	}
}

// TestOldNotifyQueueHandsOverReplays: a notify queue of older versions
// (two filter subjects, replays included) loses its replay filter, and
// the replays it had not acknowledged are delivered by the new replay
// consumer; those it acknowledged are not delivered again.
func TestOldNotifyQueueHandsOverReplays(t *testing.T) {
	e := newEnv(t)
	started := time.Now().Add(-time.Minute)
	p := notifyPlugin("mailer", events.StatusStarted, started)
	old, err := topology.NotifyConsumerConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	old.FilterSubject, old.FilterSubjects = "", []string{"hookbus.event.ev", "hookbus.replay.mailer"}
	queue, err := e.js.CreateOrUpdateConsumer(t.Context(), events.StreamEvents, old)
	if err != nil {
		t.Fatal(err)
	}
	e.put(p)
	for _, id := range []string{"done", "left"} {
		ev := newEvent("ev", id, map[string]any{})
		msg, err := events.Encode("hookbus.replay.mailer", &ev)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.js.PublishMsg(t.Context(), msg); err != nil {
			t.Fatal(err)
		}
	}
	msgs, err := queue.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for m := range msgs.Messages() {
		if err := m.DoubleAck(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	e.runDispatcher()
	natstest.Eventually(t, 10*time.Second, func() error {
		info, err := e.consumer(events.NotifyConsumer("mailer"))
		if err != nil {
			return err
		}
		if info.Config.FilterSubject != "hookbus.event.ev" || len(info.Config.FilterSubjects) != 0 {
			return fmt.Errorf("queue filters %q %v", info.Config.FilterSubject, info.Config.FilterSubjects)
		}
		return nil
	})
	replays, err := e.js.Consumer(t.Context(), events.StreamEvents, events.ReplayConsumer("mailer"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := replays.Fetch(2, jetstream.FetchMaxWait(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for m := range got.Messages() {
		_ = m.Ack() // before the 100 ms ack wait delivers it again
		ev, err := events.Decode(m.Headers(), m.Data())
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, ev.ID())
	}
	if !slices.Equal(ids, []string{"left"}) {
		t.Errorf("replay consumer delivered %v, want only the replay the old queue had not acknowledged", ids)
	}
}

func TestNotifyQueueStartsAtThePluginsStart(t *testing.T) {
	e := newEnv(t)
	before := newEvent("ev", "before-start", map[string]any{})
	e.publish(before)
	start := time.Now()
	// Published after the start but before any dispatcher made the queue.
	e.publish(newEvent("ev", "after-start", map[string]any{}))
	e.put(notifyPlugin("mailer", events.StatusStarted, start))
	e.runDispatcher()
	// Pulled until something comes: the dispatcher may still be putting
	// the queue in place when it is first found.
	var ids []string
	natstest.Eventually(t, 10*time.Second, func() error {
		cons, err := e.js.Consumer(t.Context(), events.StreamEvents, events.NotifyConsumer("mailer"))
		if err != nil {
			return err
		}
		msgs, err := cons.Fetch(10, jetstream.FetchMaxWait(500*time.Millisecond))
		if err != nil {
			return err
		}
		for m := range msgs.Messages() {
			ev, err := events.Decode(m.Headers(), m.Data())
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, ev.ID())
			_ = m.Ack()
		}
		if len(ids) == 0 {
			return fmt.Errorf("nothing delivered yet (%v)", msgs.Error())
		}
		return nil
	})
	if !slices.Equal(ids, []string{"after-start"}) {
		t.Errorf("queue delivered %v, want only the event published after the start", ids)
	}
}

func TestExhaustedDeliveriesAreDeadLettered(t *testing.T) {
	e := newEnv(t)
	e.runDispatcher()
	p := notifyPlugin("crashy", events.StatusStarted, time.Now().Add(-time.Second))
	p.Settings = events.Settings{MaxDeliver: 1, BackoffMS: []int{50}}
	e.put(p)
	var cons jetstream.Consumer
	natstest.Eventually(t, 5*time.Second, func() (err error) {
		cons, err = e.js.Consumer(t.Context(), events.StreamEvents, events.NotifyConsumer("crashy"))
		return err
	})
	e.publish(newEvent("ev", "doomed", map[string]any{"k": "v"}))
	// A worker that takes every delivery and never answers (it crashes).
	deliveries := 0
	natstest.Eventually(t, 10*time.Second, func() error {
		msgs, err := cons.Fetch(1, jetstream.FetchMaxWait(200*time.Millisecond))
		if err == nil {
			for range msgs.Messages() {
				deliveries++
			}
		}
		if got := len(e.dlq("crashy")); got != 1 {
			return fmt.Errorf("%d dead letters after %d deliveries", got, deliveries)
		}
		return nil
	})
	dl := e.dlq("crashy")[0]
	ev, err := events.Decode(dl.Header, dl.Data)
	if err != nil || ev.ID() != "doomed" {
		t.Fatalf("dead letter holds %v, %v; want the original event", ev, err)
	}
	if got := dl.Header.Get(events.HeaderDLQDeliveries); got != strconv.Itoa(2) || deliveries != 2 {
		t.Errorf("dead letter after %s deliveries (worker saw %d), want 2 (max deliver 1 plus the spare)", got, deliveries)
	}
	if dl.Header.Get(events.HeaderDLQReason) != "no worker of crashy answered in 2 deliveries" {
		t.Errorf("reason %q", dl.Header.Get(events.HeaderDLQReason))
	}
}

// TestNotifyLosesNothingAcrossCrashes publishes events to a notify plugin,
// lets a worker take some and die without answering, restarts the
// dispatcher, and checks that a second worker still gets every event.
func TestNotifyLosesNothingAcrossCrashes(t *testing.T) {
	e := newEnv(t)
	stop := e.runDispatcher()
	e.put(notifyPlugin("mailer", events.StatusStarted, time.Now().Add(-time.Second)))
	var cons jetstream.Consumer
	natstest.Eventually(t, 5*time.Second, func() (err error) {
		cons, err = e.js.Consumer(t.Context(), events.StreamEvents, events.NotifyConsumer("mailer"))
		return err
	})
	const n = 20
	for i := range n {
		e.publish(newEvent("ev", fmt.Sprintf("e%d", i), map[string]any{"i": i}))
	}
	// The first worker takes five events and dies without answering.
	msgs, err := cons.Fetch(5, jetstream.FetchMaxWait(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	taken := 0
	for range msgs.Messages() {
		taken++
	}
	if taken != 5 {
		t.Fatalf("crashing worker took %d events, want 5", taken)
	}
	stop()
	e.runDispatcher()

	// A second worker gets all of them: the five after their ack wait.
	got := map[string]bool{}
	natstest.Eventually(t, 10*time.Second, func() error {
		msgs, err := cons.Fetch(n, jetstream.FetchMaxWait(200*time.Millisecond))
		if err != nil {
			return err
		}
		for m := range msgs.Messages() {
			ev, err := events.Decode(m.Headers(), m.Data())
			if err != nil {
				return err
			}
			got[ev.ID()] = true
			_ = m.Ack()
		}
		if len(got) != n {
			return fmt.Errorf("%d of %d events delivered", len(got), n)
		}
		return nil
	})
}

// TestDeletedNotifyQueueIsCreatedAgain: a notify queue deleted by hand
// comes back, delivering what was published meanwhile, and not again what
// its workers had acknowledged.
func TestDeletedNotifyQueueIsCreatedAgain(t *testing.T) {
	e := newEnv(t)
	e.runDispatcher()
	e.put(notifyPlugin("mailer", events.StatusStarted, time.Now().Add(-time.Second)))
	var cons jetstream.Consumer
	natstest.Eventually(t, 5*time.Second, func() (err error) {
		cons, err = e.js.Consumer(t.Context(), events.StreamEvents, events.NotifyConsumer("mailer"))
		return err
	})
	take := func(c jetstream.Consumer, want int) map[string]bool {
		got := map[string]bool{}
		natstest.Eventually(t, 10*time.Second, func() error {
			msgs, err := c.Fetch(want, jetstream.FetchMaxWait(200*time.Millisecond))
			if err != nil {
				return err
			}
			for m := range msgs.Messages() {
				ev, err := events.Decode(m.Headers(), m.Data())
				if err != nil {
					return err
				}
				got[ev.ID()] = true
				if err := m.DoubleAck(t.Context()); err != nil {
					return err
				}
			}
			if len(got) < want {
				return fmt.Errorf("%d of %d events delivered", len(got), want)
			}
			return nil
		})
		return got
	}
	for i := range 3 {
		e.publish(newEvent("ev", fmt.Sprintf("old%d", i), map[string]any{}))
	}
	take(cons, 3)
	time.Sleep(500 * time.Millisecond) // the dispatcher sees the ack floor (ConsumerCheck 200 ms)
	if err := e.js.DeleteConsumer(t.Context(), events.StreamEvents, events.NotifyConsumer("mailer")); err != nil {
		t.Fatal(err)
	}
	e.publish(newEvent("ev", "new", map[string]any{}))
	natstest.Eventually(t, 10*time.Second, func() (err error) {
		cons, err = e.js.Consumer(t.Context(), events.StreamEvents, events.NotifyConsumer("mailer"))
		return err
	})
	got := take(cons, 1)
	if !got["new"] || len(got) != 1 {
		t.Errorf("the queue created again delivered %v, want only the new event", got)
	}
}
