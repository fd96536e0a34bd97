package k8s

// Escalations 8 to 10: plugin-example, which may publish on its own
// hookbus.dlq.example and on hookbus.event.>, against the dead letters of
// others. JetStream deduplicates by Nats-Msg-Id across a whole stream
// while permissions bind subjects; and a dead letter's headers are
// whatever its publisher wrote.

import (
	"context"
	"errors"
	"strconv"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/internal/deadletter"
	"github.com/hookbus/hookbus/pkg/client"
	"github.com/hookbus/hookbus/pkg/events"
)

// attackerJS is plugin-example's JetStream context.
func (st *attackStack) attackerJS(t *testing.T) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(st.mustConnect(t, pluginUser))
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// takeIDs has plugin-example publish on subject one message with each id.
func takeIDs(t *testing.T, ctx context.Context, js jetstream.JetStream, subject string, ids ...string) {
	t.Helper()
	for _, id := range ids {
		m := &nats.Msg{Subject: subject, Header: nats.Header{"Nats-Msg-Id": {id}}, Data: []byte(`{"junk":true}`)}
		if _, err := js.PublishMsg(ctx, m); err != nil {
			t.Fatalf("%s: publish %s with id %s: %v", pluginUser, subject, id, err)
		}
	}
}

// subjectCount is how many messages of stream are on subject.
func (st *attackStack) subjectCount(t *testing.T, ctx context.Context, stream, subject string) uint64 {
	t.Helper()
	s, err := st.ajs.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Subjects[subject]
}

// TestAttackEscalation8DLQDedupePoisoning: plugin-example learns the next
// sequence of HOOKBUS_EVENTS (its own publish's acknowledgement) and, on
// its own hookbus.dlq.example, takes the dead-letter ids
// dlq-hookbus-dispatcher-<seq> of the sequences to come. An invalid event
// published next must still get its dead letter on
// hookbus.dlq.hookbus-dispatcher: otherwise the dispatcher takes the
// duplicate acknowledgement for a stored dead letter, acknowledges the
// event, and it is lost.
func TestAttackEscalation8DLQDedupePoisoning(t *testing.T) {
	escalation(t, 8)
	st := startStack(t)
	ctx := attackContext(t)
	js := st.attackerJS(t)
	// The dispatcher reads the events of types with chain plugins.
	st.registerAndStart(t, ctx, events.PluginSpec{Name: otherPlugin, Event: "com.example.order.created", Priority: 10})

	probe, err := js.PublishMsg(ctx, &nats.Msg{Subject: "hookbus.event.com.example.probe", Data: []byte(`{}`)})
	if err != nil {
		t.Fatalf("%s: publish a probe: %v", pluginUser, err)
	}
	var ids []string
	for s := probe.Sequence + 1; s <= probe.Sequence+10; s++ {
		ids = append(ids, deadletter.MsgID(events.DispatcherConsumer, s))
	}
	takeIDs(t, ctx, js, "hookbus.dlq.example", ids...)

	// An invalid event (no id), as anyone may publish it.
	h := nats.Header{}
	h.Set("Content-Type", events.ContentTypeStructured)
	ack, err := st.ajs.PublishMsg(ctx, &nats.Msg{Subject: "hookbus.event.com.example.order.created", Header: h,
		Data: []byte(`{"specversion":"1.0","source":"/attack-suite","type":"com.example.order.created"}`)})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, ctx, "the dispatcher stores the dead letter of invalid event "+strconv.FormatUint(ack.Sequence, 10), nil, func() error {
		dls, err := deadLetters(ctx, st.ac, events.DispatcherConsumer)
		if err != nil {
			return err
		}
		for _, dl := range dls {
			if dl.StreamSeq == ack.Sequence {
				return nil
			}
		}
		return errors.New("no dead letter of hookbus-dispatcher references it")
	})
}

// TestAttackEscalation9ReplayDedupePoisoning: plugin-example publishes
// events with the ids replay-1 ... replay-20 that Replay gives its
// publishes on hookbus.replay.<subscriber>. admin's Replay of another
// plugin's dead letter must still resend the event (or fail and keep the
// dead letter): otherwise the duplicate acknowledgement passes for the
// replay, the dead letter is deleted, and the event is lost.
func TestAttackEscalation9ReplayDedupePoisoning(t *testing.T) {
	escalation(t, 9)
	st := startStack(t)
	ctx := attackContext(t)
	js := st.attackerJS(t)

	// other's dead letter, as its worker writes it.
	e := attackEvent(t, "com.example.other.happened", "escalation-9", map[string]any{"order": 9})
	codec := events.Codec{}
	orig, err := codec.Encode("hookbus.event.com.example.other.happened", &e)
	if err != nil {
		t.Fatal(err)
	}
	dl, err := deadletter.New(otherPlugin, orig.Subject, orig.Header, orig.Data, 1, 3, "mailer refused", 0)
	if err != nil {
		t.Fatal(err)
	}
	stored, err := st.ajs.PublishMsg(ctx, dl)
	if err != nil {
		t.Fatal(err)
	}

	var ids []string
	for s := 1; s <= 20; s++ {
		ids = append(ids, "replay-"+strconv.Itoa(s))
	}
	takeIDs(t, ctx, js, "hookbus.event.com.example.junk", ids...)

	replayErr := st.ac.Replay(ctx, stored.Sequence)
	replayed := st.subjectCount(t, ctx, streamEvents, "hookbus.replay."+otherPlugin)
	dlq, err := st.ajs.Stream(ctx, "HOOKBUS_DLQ")
	if err != nil {
		t.Fatal(err)
	}
	_, err = dlq.GetMsg(ctx, stored.Sequence)
	kept := err == nil
	t.Logf("admin: Replay(%d) = %v; %d message(s) on hookbus.replay.%s; dead letter kept %v", stored.Sequence, replayErr, replayed, otherPlugin, kept)
	if replayed == 0 && !kept {
		t.Errorf("the event of dead letter %d is lost: Replay returned %v, nothing was stored on hookbus.replay.%s, and the dead letter is deleted", stored.Sequence, replayErr, otherPlugin)
	}
}

// TestAttackEscalation10ForgedDeadLetterRedirect: admin publishes an
// event of a type neither example nor other takes; plugin-example, on its
// own hookbus.dlq.example, publishes dead letters by reference to it (the
// sequence guessed) that claim to be other's, or its own. An operator
// replaying every dead letter must send that event to no queue: nothing on
// hookbus.replay.other, nothing of that type on hookbus.replay.example.
func TestAttackEscalation10ForgedDeadLetterRedirect(t *testing.T) {
	escalation(t, 10)
	st := startStack(t)
	ctx := attackContext(t)
	js := st.attackerJS(t)
	st.registerAndStart(t, ctx, events.PluginSpec{Name: "example", Event: "com.example.order.created", Mode: events.ModeNotify, Priority: 10})
	st.registerAndStart(t, ctx, events.PluginSpec{Name: otherPlugin, Event: "com.example.other.happened", Mode: events.ModeNotify, Priority: 10})

	secret, err := st.ac.Publish(ctx, attackEvent(t, "com.example.payroll.paid", "escalation-10", map[string]any{"salary": 123456}))
	if err != nil {
		t.Fatal(err)
	}
	forged := func(subscriber, subject string) *nats.Msg {
		h := nats.Header{}
		h.Set(events.HeaderDLQSubscriber, subscriber)
		h.Set(events.HeaderDLQReason, "mailer refused")
		h.Set(events.HeaderDLQSubject, subject)
		h.Set(events.HeaderDLQStreamSeq, strconv.FormatUint(secret.Sequence, 10))
		h.Set(events.HeaderDLQDeliveries, "3")
		h.Set(events.HeaderDLQBody, "omitted: 10 bytes")
		return &nats.Msg{Subject: "hookbus.dlq.example", Header: h}
	}
	for _, m := range []*nats.Msg{
		forged(otherPlugin, "hookbus.event.com.example.other.happened"),
		forged("example", "hookbus.event.com.example.payroll.paid"),
		forged("example", "hookbus.event.com.example.order.created"),
		forged("example", "hookbus.replay.example"),
	} {
		if _, err := js.PublishMsg(ctx, m); err != nil {
			t.Fatalf("%s: publish a forged dead letter: %v", pluginUser, err)
		}
	}

	dls, err := deadLetters(ctx, st.ac, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(dls) != 4 {
		t.Fatalf("admin lists %d dead letters, want the 4 forged ones", len(dls))
	}
	for _, dl := range dls {
		if dl.Subscriber != "example" {
			t.Errorf("dead letter %d on hookbus.dlq.example is listed as %s's", dl.Seq, dl.Subscriber)
		}
		err := st.ac.Replay(ctx, dl.Seq)
		t.Logf("admin: Replay(%d) (original %s, forged %q): %v", dl.Seq, dl.Subject, dl.Forged, err)
		if err != nil && !errors.Is(err, client.ErrNotReplayable) {
			t.Errorf("Replay(%d) = %v, want success or ErrNotReplayable", dl.Seq, err)
		}
	}
	if n := st.subjectCount(t, ctx, streamEvents, "hookbus.replay."+otherPlugin); n != 0 {
		t.Errorf("%d message(s) replayed into %s's queue by %s's forged dead letters", n, otherPlugin, pluginUser)
	}
	if n := st.subjectCount(t, ctx, streamEvents, "hookbus.replay.example"); n != 0 {
		t.Errorf("%d message(s) (event %d, type com.example.payroll.paid) replayed into example's own queue by its forged dead letters", n, secret.Sequence)
	}
}
