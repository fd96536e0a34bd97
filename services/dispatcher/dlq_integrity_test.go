package dispatcher_test

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/internal/deadletter"
	"github.com/hookbus/hookbus/internal/natstest"
	"github.com/hookbus/hookbus/pkg/events"
)

// nextEventSeq is the sequence the next message of HOOKBUS_EVENTS gets.
func (e *env) nextEventSeq() uint64 {
	e.t.Helper()
	s, err := e.js.Stream(e.t.Context(), events.StreamEvents)
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := s.Info(e.t.Context())
	if err != nil {
		e.t.Fatal(err)
	}
	return info.State.LastSeq + 1
}

// takeDLQIDs publishes on subject (a plugin worker's own
// hookbus.dlq.<name>) one message with each dead-letter id of subscriber
// for the next n sequences of HOOKBUS_EVENTS: JetStream deduplicates
// across HOOKBUS_DLQ, so those ids are taken for every subject.
func (e *env) takeDLQIDs(subject, subscriber string, n uint64) {
	e.t.Helper()
	next := e.nextEventSeq()
	for s := next; s < next+n; s++ {
		m := &nats.Msg{Subject: subject, Header: nats.Header{events.HeaderMsgID: {deadletter.MsgID(subscriber, s)}}, Data: []byte("junk")}
		if _, err := e.js.PublishMsg(e.t.Context(), m); err != nil {
			e.t.Fatal(err)
		}
	}
}

// The dead letter of an invalid event is stored although a plugin worker
// took its id on its own hookbus.dlq.<name> first.
func TestInvalidEventDeadLetterIDTaken(t *testing.T) {
	e := newEnv(t)
	e.runDispatcher()
	e.put(plugin("a", 1))
	e.takeDLQIDs("hookbus.dlq.example", events.DispatcherConsumer, 5)
	h := nats.Header{}
	h.Set("Content-Type", events.ContentTypeStructured)
	if _, err := e.js.PublishMsg(t.Context(), &nats.Msg{Subject: "hookbus.event.ev", Header: h, Data: []byte(`{"specversion":"1.0","source":"/x","type":"ev"}`)}); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 10*time.Second, func() error {
		if got := len(e.dlq(events.DispatcherConsumer)); got != 1 {
			return fmt.Errorf("%d dead letters of %s, want 1", got, events.DispatcherConsumer)
		}
		return nil
	})
}

// The backstop's dead letter of an event whose deliveries ran out is
// stored although a plugin worker took its id first.
func TestExhaustedDeadLetterIDTaken(t *testing.T) {
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
	e.takeDLQIDs("hookbus.dlq.example", "crashy", 5)
	e.publish(newEvent("ev", "doomed", map[string]any{"k": "v"}))
	natstest.Eventually(t, 10*time.Second, func() error {
		if msgs, err := cons.Fetch(1, jetstream.FetchMaxWait(200*time.Millisecond)); err == nil {
			for range msgs.Messages() {
			}
		}
		if got := len(e.dlq("crashy")); got != 1 {
			return fmt.Errorf("%d dead letters of crashy", got)
		}
		return nil
	})
}

// A dead letter written twice (stored, then the dispatcher crashed before
// acknowledging the event) is stored once: the duplicate is its own.
func TestDeadLetterWrittenTwiceStoredOnce(t *testing.T) {
	e := newEnv(t)
	seq := e.nextEventSeq()
	first := &nats.Msg{Subject: "hookbus.dlq." + events.DispatcherConsumer, Header: nats.Header{}, Data: []byte("written before the crash")}
	first.Header.Set(events.HeaderMsgID, deadletter.MsgID(events.DispatcherConsumer, seq))
	first.Header.Set(events.HeaderDLQStreamSeq, strconv.FormatUint(seq, 10))
	if _, err := e.js.PublishMsg(t.Context(), first); err != nil {
		t.Fatal(err)
	}
	e.runDispatcher()
	e.put(plugin("a", 1))
	h := nats.Header{}
	h.Set("Content-Type", events.ContentTypeStructured)
	ack, err := e.js.PublishMsg(t.Context(), &nats.Msg{Subject: "hookbus.event.ev", Header: h, Data: []byte(`{"specversion":"1.0","source":"/x","type":"ev"}`)})
	if err != nil || ack.Sequence != seq {
		t.Fatalf("published %+v, %v; want sequence %d", ack, err, seq)
	}
	// The dispatcher acknowledges the event once its dead letter is stored.
	natstest.Eventually(t, 10*time.Second, func() error {
		info, err := e.consumer(events.ChainConsumer("ev"))
		if err != nil {
			return err
		}
		if info.AckFloor.Stream < seq {
			return fmt.Errorf("event %d not acknowledged (ack floor %d)", seq, info.AckFloor.Stream)
		}
		return nil
	})
	if got := len(e.dlq(events.DispatcherConsumer)); got != 1 {
		t.Errorf("%d dead letters, want 1: a dead letter written twice was stored twice", got)
	}
}
