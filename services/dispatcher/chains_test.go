package dispatcher_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/internal/natstest"
	"github.com/hookbus/hookbus/pkg/events"
)

// chainConsumers lists the chain consumers of HOOKBUS_EVENTS.
func (e *env) chainConsumers() ([]string, error) {
	stream, err := e.js.Stream(e.t.Context(), events.StreamEvents)
	if err != nil {
		return nil, err
	}
	var out []string
	names := stream.ConsumerNames(e.t.Context())
	for name := range names.Name() {
		if strings.HasPrefix(name, events.ChainConsumerPrefix) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out, names.Err()
}

// waitChainConsumers waits until the chain consumers are exactly want.
func (e *env) waitChainConsumers(want ...string) {
	e.t.Helper()
	slices.Sort(want)
	natstest.Eventually(e.t, 10*time.Second, func() error {
		got, err := e.chainConsumers()
		if err != nil {
			return err
		}
		if !slices.Equal(got, want) {
			return fmt.Errorf("chain consumers %v, want %v", got, want)
		}
		return nil
	})
}

// TestDispatcherReadsOnlyChainTypes: the dispatcher has a consumer for
// each event type with running chain plugins, filtered to that type, and
// none for others: events of types without a chain (notify-only, or no
// plugin) are never delivered to it.
func TestDispatcherReadsOnlyChainTypes(t *testing.T) {
	e := newEnv(t)
	e.runDispatcher()
	e.worker("a", appender("a"))
	e.worker("b", appender("b"))
	b := plugin("b", 1)
	b.Event = "order.created"
	e.put(plugin("a", 1), b, notifyPlugin("mailer", events.StatusStarted, time.Now()))
	stopped := plugin("c", 1)
	stopped.Event, stopped.Status = "order.paid", events.StatusStopped
	e.put(stopped)
	e.waitChainConsumers(events.ChainConsumer("ev"), events.ChainConsumer("order.created"))
	if got := events.ChainConsumer("order.created"); got != "chain-order~created" {
		t.Errorf("chain consumer name %q", got)
	}
	info, err := e.consumer(events.ChainConsumer("order.created"))
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.FilterSubject != "hookbus.event.order.created" || len(info.Config.FilterSubjects) != 0 {
		t.Errorf("filter %q %v, want the one subject of the type", info.Config.FilterSubject, info.Config.FilterSubjects)
	}
	for i := range 20 {
		e.publish(newEvent("order.paid", fmt.Sprintf("p%d", i), map[string]any{}))
		e.publish(newEvent("ev", fmt.Sprintf("e%d", i), map[string]any{}))
	}
	natstest.Eventually(t, 10*time.Second, func() error {
		if got := len(e.results("ev")); got != 20 {
			return fmt.Errorf("%d results of ev, want 20", got)
		}
		return nil
	})
	for name, want := range map[string]uint64{events.ChainConsumer("ev"): 20, events.ChainConsumer("order.created"): 0} {
		info, err := e.consumer(name)
		if err != nil {
			t.Fatal(err)
		}
		if info.Delivered.Consumer != want {
			t.Errorf("%s delivered %d events, want %d", name, info.Delivered.Consumer, want)
		}
	}
	if got := len(e.results("order.paid")); got != 0 {
		t.Errorf("%d results of a type without a running chain plugin", got)
	}
}

// TestChainStartsAtThePluginsStart: a chain consumer created after the
// fact (the dispatcher was down when the plugin started) runs every event
// stored since the plugin's start, and none stored before it.
func TestChainStartsAtThePluginsStart(t *testing.T) {
	e := newEnv(t)
	e.worker("a", appender("a"))
	for i := range 3 {
		e.publish(newEvent("ev", fmt.Sprintf("before%d", i), map[string]any{}))
	}
	time.Sleep(10 * time.Millisecond) // the server's timestamps and this clock are the same
	e.put(plugin("a", 1))             // started now
	for i := range 3 {
		e.publish(newEvent("ev", fmt.Sprintf("after%d", i), map[string]any{}))
	}
	e.runDispatcher()
	natstest.Eventually(t, 10*time.Second, func() error {
		if got := len(e.results("ev")); got != 3 {
			return fmt.Errorf("%d results, want 3", got)
		}
		return nil
	})
	e.waitSettled()
	for id := range e.results("ev") {
		if !strings.HasPrefix(id, "after") {
			t.Errorf("event %s, stored before the plugin started, ran through its chain", id)
		}
	}
}

// TestChainConsumerFollowsTheChain: when the last chain plugin of a type
// stops, its consumer goes (events stored meanwhile have no chain); when
// one starts again, a new consumer starts from that start.
func TestChainConsumerFollowsTheChain(t *testing.T) {
	e := newEnv(t)
	e.runDispatcher()
	e.worker("a", appender("a"))
	e.put(plugin("a", 1))
	e.waitChainConsumers(events.ChainConsumer("ev"))
	e.publish(newEvent("ev", "running1", map[string]any{}))
	natstest.Eventually(t, 10*time.Second, func() error {
		if got := len(e.results("ev")); got != 1 {
			return fmt.Errorf("%d results, want 1", got)
		}
		return nil
	})
	stopped := plugin("a", 1)
	stopped.Status = events.StatusStopped
	e.put(stopped)
	e.waitChainConsumers()
	e.publish(newEvent("ev", "stopped", map[string]any{}))
	time.Sleep(10 * time.Millisecond)
	e.put(plugin("a", 1))
	e.publish(newEvent("ev", "running2", map[string]any{}))
	e.waitChainConsumers(events.ChainConsumer("ev"))
	natstest.Eventually(t, 10*time.Second, func() error {
		if got := len(e.results("ev")); got != 2 {
			return fmt.Errorf("%d results, want 2", got)
		}
		return nil
	})
	e.waitSettled()
	if _, ok := e.results("ev")["stopped"]; ok {
		t.Error("an event stored while no chain plugin ran went through the chain")
	}
}

// TestOneConsumerOfEveryEventHandsOver: a deployment upgraded from the
// dispatcher that read every event through hookbus-dispatcher: the chain
// consumers start after what that consumer acknowledged (no event run
// twice, none missed), and it is deleted.
func TestOneConsumerOfEveryEventHandsOver(t *testing.T) {
	e := newEnv(t)
	e.worker("a", appender("a"))
	e.put(plugin("a", 1))
	legacy, err := e.js.CreateOrUpdateConsumer(t.Context(), events.StreamEvents, jetstream.ConsumerConfig{
		Durable: events.DispatcherConsumer, FilterSubject: events.EventSubjects, AckPolicy: jetstream.AckExplicitPolicy,
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		e.publish(newEvent("ev", fmt.Sprintf("done%d", i), map[string]any{}))
	}
	msgs, err := legacy.Fetch(3, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for m := range msgs.Messages() { // the old dispatcher ran these
		if err := m.DoubleAck(t.Context()); err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 3 {
		t.Fatalf("fetched %d of 3", n)
	}
	for i := range 3 {
		e.publish(newEvent("ev", fmt.Sprintf("left%d", i), map[string]any{}))
	}
	e.runDispatcher()
	natstest.Eventually(t, 10*time.Second, func() error {
		if got := len(e.results("ev")); got != 3 {
			return fmt.Errorf("%d results, want 3", got)
		}
		if _, err := e.consumer(events.DispatcherConsumer); !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return fmt.Errorf("%s still there (%v)", events.DispatcherConsumer, err)
		}
		return nil
	})
	e.waitSettled()
	for id := range e.results("ev") {
		if !strings.HasPrefix(id, "left") {
			t.Errorf("event %s, acknowledged on the old consumer, ran again", id)
		}
	}
}
