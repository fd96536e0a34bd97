package dispatcher_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/internal/natstest"
	"github.com/hookbus/hookbus/internal/topology"
	"github.com/hookbus/hookbus/pkg/events"
	"github.com/hookbus/hookbus/services/dispatcher"
)

// TestEventsWaitForTheRouteTable: a dispatcher that starts with events
// waiting and a large plugin bucket routes none of them before its table
// holds every plugin; each event gets the result of its whole chain.
func TestEventsWaitForTheRouteTable(t *testing.T) {
	e := newEnv(t)
	e.worker("a", appender("a"))
	const fillers = 2000
	for i := range fillers {
		p := plugin(fmt.Sprintf("filler-%04d", i), 1)
		p.Event = "other"
		e.put(p)
	}
	e.put(plugin("a", 1))
	const n = 100
	for i := range n {
		e.publish(newEvent("ev", fmt.Sprintf("e%d", i), map[string]any{"i": i}))
	}
	e.runDispatcher()
	natstest.Eventually(t, 20*time.Second, func() error {
		if got := len(e.results("ev")); got != n {
			return fmt.Errorf("%d results, want %d", got, n)
		}
		return nil
	})
	for id, res := range e.results("ev") {
		if trace(res) != "a:continued" {
			t.Errorf("result of %s ran without its chain: trace %q", id, trace(res))
		}
	}
}

// publishRaw stores a message in HOOKBUS_EVENTS as a careless publisher
// would, bypassing the codec.
func (e *env) publishRaw(subject string, h nats.Header, data string) {
	e.t.Helper()
	if _, err := e.js.PublishMsg(e.t.Context(), &nats.Msg{Subject: subject, Header: h, Data: []byte(data)}); err != nil {
		e.t.Fatal(err)
	}
}

func binaryHeader(id, typ, contentType string) nats.Header {
	h := nats.Header{}
	h.Set("ce-specversion", "1.0")
	h.Set("ce-id", id)
	h.Set("ce-source", "/poison")
	h.Set("ce-type", typ)
	h.Set("content-type", contentType)
	h.Set(events.HeaderMsgID, events.MsgID("/poison", id))
	return h
}

// TestPoisonDoesNotStopChains: events whose data is not JSON, on a type
// with chain plugins, are dead-lettered with a result saying why, and never
// hold the consumer's ack-pending slots: valid events keep flowing.
func TestPoisonDoesNotStopChains(t *testing.T) {
	e := newEnv(t)
	e.runDispatcherWith(func(c *dispatcher.Config) { c.Concurrency = 2 }) // 8 ack-pending slots
	e.worker("a", appender("a"))
	e.put(plugin("a", 1))
	e.waitChain("ev", 1)
	const poison = 40
	for i := range poison {
		e.publishRaw("hookbus.event.ev", binaryHeader(fmt.Sprintf("p%d", i), "ev", "text/plain"), "{not json")
	}
	e.publish(newEvent("ev", "valid", map[string]any{}))
	natstest.Eventually(t, 15*time.Second, func() error {
		res := e.results("ev")
		if got := len(res); got != poison+1 {
			return fmt.Errorf("%d results, want %d", got, poison+1)
		}
		if got := len(e.dlq(events.DispatcherConsumer)); got != poison {
			return fmt.Errorf("%d dead letters, want %d", got, poison)
		}
		return nil
	})
	res := e.results("ev")
	if trace(res["valid"]) != "a:continued" {
		t.Errorf("valid event: trace %q", trace(res["valid"]))
	}
	p := res["p0"]
	if p.Error == nil || p.Error.Code != events.CodeInvalid || string(p.State) != "null" || len(p.Trace) != 0 {
		t.Errorf("result of a non-JSON event: %+v, want an invalid error, a null state and no step", p)
	}
	for _, dl := range e.dlq(events.DispatcherConsumer) {
		if r := dl.Header.Get(events.HeaderDLQReason); !strings.Contains(r, "must be JSON") {
			t.Errorf("dead letter reason %q", r)
		}
	}
	e.waitSettled()
}

// waitSettled waits until the chain consumer of "ev" holds nothing: every
// event delivered and acknowledged.
func (e *env) waitSettled() {
	e.t.Helper()
	natstest.Eventually(e.t, 15*time.Second, func() error {
		info, err := e.consumerInfo()
		if err != nil {
			return err
		}
		if info.NumAckPending != 0 || info.NumPending != 0 {
			return fmt.Errorf("consumer holds %d unacknowledged and %d undelivered events", info.NumAckPending, info.NumPending)
		}
		return nil
	})
}

func (e *env) consumerInfo() (*jetstream.ConsumerInfo, error) {
	return e.consumer(events.ChainConsumer("ev"))
}

// TestCallsWithNonJSONDataAreAnswered: with or without chain plugins.
func TestCallsWithNonJSONDataAreAnswered(t *testing.T) {
	e := newEnv(t)
	e.runDispatcher()
	e.worker("a", appender("a"))
	e.put(plugin("a", 1))
	e.waitChain("ev", 1)
	for _, typ := range []string{"ev", "nochain"} {
		t.Run(typ, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			answer, err := e.nc.RequestMsgWithContext(ctx, &nats.Msg{Subject: "hookbus.call." + typ, Header: binaryHeader("c1", typ, "text/plain"), Data: []byte("{not json")})
			if err != nil {
				t.Fatalf("no answer: %v", err)
			}
			var res events.ChainResult
			if err := json.Unmarshal(answer.Data, &res); err != nil {
				t.Fatal(err)
			}
			if res.Error == nil || res.Error.Code != events.CodeInvalid || len(res.Trace) != 0 {
				t.Errorf("answer %s, want an invalid error and no step", answer.Data)
			}
		})
	}
}

// TestDeadLetterStoredBeforeAck: while HOOKBUS_DLQ refuses writes, an
// invalid event stays unacknowledged and comes back; once it accepts, the
// event is dead-lettered once and acknowledged.
func TestDeadLetterStoredBeforeAck(t *testing.T) {
	e := newEnv(t)
	e.runDispatcher()
	e.put(plugin("a", 1))
	dlq := e.refuseWrites(events.StreamDLQ)
	e.publishRaw("hookbus.event.ev", binaryHeader("bad", "other-type", "application/json"), "{}")
	natstest.Eventually(t, 10*time.Second, func() error {
		info, err := e.consumerInfo()
		if err != nil {
			return err
		}
		if info.NumRedelivered == 0 {
			return fmt.Errorf("not delivered again yet (ack floor %d)", info.AckFloor.Stream)
		}
		return nil
	})
	if info, err := e.consumerInfo(); err != nil || info.AckFloor.Stream != 0 {
		t.Fatalf("the event was acknowledged without its dead letter: %+v %v", info, err)
	}
	dlq()
	natstest.Eventually(t, 10*time.Second, func() error {
		if got := len(e.dlq(events.DispatcherConsumer)); got != 1 {
			return fmt.Errorf("%d dead letters, want 1", got)
		}
		return nil
	})
	e.waitSettled()
}

// refuseWrites makes stream take no new message (its subjects moved
// away), and returns a function that puts them back.
func (e *env) refuseWrites(name string) (restore func()) {
	e.t.Helper()
	stream, err := e.js.Stream(e.t.Context(), name)
	if err != nil {
		e.t.Fatal(err)
	}
	cfg := stream.CachedInfo().Config
	moved := cfg
	moved.Subjects = []string{"moved." + strings.ToLower(name)}
	if _, err := e.js.UpdateStream(e.t.Context(), moved); err != nil {
		e.t.Fatal(err)
	}
	return func() {
		if _, err := e.js.UpdateStream(e.t.Context(), cfg); err != nil {
			e.t.Fatal(err)
		}
	}
}

// TestUnstorableResultsAreDeadLetteredAfterMaxAttempts: an event whose
// result cannot be stored is tried MaxAttempts times, then dead-lettered;
// nothing is retried forever.
func TestUnstorableResultsAreDeadLetteredAfterMaxAttempts(t *testing.T) {
	e := newEnv(t)
	e.runDispatcherWith(func(c *dispatcher.Config) { c.MaxAttempts = 3 })
	var steps atomic.Int32
	e.worker("a", func(state map[string]any) events.StepReply {
		steps.Add(1)
		return appender("a")(state)
	})
	e.put(plugin("a", 1))
	e.waitChain("ev", 1)
	e.refuseWrites(events.StreamResults)
	e.publish(newEvent("ev", "stuck", map[string]any{}))
	natstest.Eventually(t, 15*time.Second, func() error {
		dls := e.dlq(events.DispatcherConsumer)
		if len(dls) != 1 {
			return fmt.Errorf("%d dead letters, want 1", len(dls))
		}
		if r := dls[0].Header.Get(events.HeaderDLQReason); r != "no chain result stored in 3 deliveries" {
			return fmt.Errorf("reason %q", r)
		}
		return nil
	})
	e.waitSettled()
	if got := steps.Load(); got != 3 {
		t.Errorf("the chain ran %d times, want 3 (MaxAttempts)", got)
	}
}

// TestDeletedConsumerIsCreatedAgain: the dispatcher notices its consumer
// is gone, creates it again after the last acknowledged event (old events
// do not run again) and goes on.
func TestDeletedConsumerIsCreatedAgain(t *testing.T) {
	e := newEnv(t)
	e.runDispatcher()
	var steps atomic.Int32
	e.worker("a", func(state map[string]any) events.StepReply {
		steps.Add(1)
		return appender("a")(state)
	})
	e.put(plugin("a", 1))
	e.waitChain("ev", 1)
	const before = 5
	for i := range before {
		e.publish(newEvent("ev", fmt.Sprintf("b%d", i), map[string]any{}))
	}
	natstest.Eventually(t, 10*time.Second, func() error {
		if got := len(e.results("ev")); got != before {
			return fmt.Errorf("%d results, want %d", got, before)
		}
		return nil
	})
	e.waitSettled()
	time.Sleep(500 * time.Millisecond) // let the dispatcher see the ack floor (ConsumerCheck 200 ms)
	if err := e.js.DeleteConsumer(t.Context(), events.StreamEvents, events.ChainConsumer("ev")); err != nil {
		t.Fatal(err)
	}
	e.publish(newEvent("ev", "after", map[string]any{}))
	natstest.Eventually(t, 15*time.Second, func() error {
		if _, ok := e.results("ev")["after"]; !ok {
			return fmt.Errorf("no result for the event published after the consumer was deleted")
		}
		return nil
	})
	e.waitSettled()
	if got := steps.Load(); got != before+1 {
		t.Errorf("the chain ran %d times, want %d: events acknowledged before the deletion ran again", got, before+1)
	}
}

// TestStartWaitsForTheTopology: a dispatcher started before the service
// that creates the topology waits, not ready, instead of exiting (in a
// split deployment every pod starts at once).
func TestStartWaitsForTheTopology(t *testing.T) {
	srv := natstest.RunServer(t)
	svc, err := dispatcher.New(dispatcher.DefaultConfig(), natstest.Connect(t, srv), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	select {
	case err := <-done:
		t.Fatalf("Run returned before the topology existed: %v", err)
	case <-time.After(time.Second):
	}
	if svc.Ready(ctx) == nil {
		t.Fatal("ready without a topology")
	}
	if _, err := topology.Ensure(ctx, natstest.JetStream(t, srv), topology.DefaultConfig()); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 15*time.Second, func() error { return svc.Ready(ctx) })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// TestEventAfterAPluginChangeSeesIt: an event published after a plugin's
// state was stored runs through that plugin, even while the dispatcher's
// copy of the bucket is busy with a burst of other changes.
func TestEventAfterAPluginChangeSeesIt(t *testing.T) {
	e := newEnv(t)
	e.runDispatcher()
	e.worker("a", appender("a"))
	for i := range 1000 {
		p := plugin(fmt.Sprintf("filler-%04d", i), 1)
		p.Event = "other"
		e.put(p)
	}
	e.put(plugin("a", 1))
	e.publish(newEvent("ev", "right-after", map[string]any{}))
	res := e.call(newEvent("ev", "call-right-after", map[string]any{}))
	if trace(res) != "a:continued" {
		t.Errorf("call right after the start: trace %q, want a:continued", trace(res))
	}
	natstest.Eventually(t, 15*time.Second, func() error {
		if _, ok := e.results("ev")["right-after"]; !ok {
			return fmt.Errorf("no result for the event published right after the start")
		}
		return nil
	})
	if got := trace(e.results("ev")["right-after"]); got != "a:continued" {
		t.Errorf("event right after the start: trace %q, want a:continued", got)
	}
}
