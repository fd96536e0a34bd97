package natstest

import (
	"fmt"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/pkg/events"
)

// StoreEvents stores n binary-mode events of typ in HOOKBUS_EVENTS with
// asynchronous publishes, ids "<typ>-<i>" (unique per type: nothing is
// deduplicated), and waits for every acknowledgement.
func StoreEvents(t testing.TB, js jetstream.JetStream, typ string, n int) {
	t.Helper()
	subject, err := events.EventSubject(typ)
	if err != nil {
		t.Fatal(err)
	}
	futures := make([]jetstream.PubAckFuture, 0, n)
	for i := range n {
		e := event.New()
		e.SetID(fmt.Sprintf("%s-%d", typ, i))
		e.SetSource("/bench")
		e.SetType(typ)
		_ = e.SetData(event.ApplicationJSON, map[string]any{"user": "ada", "amount": i})
		msg, err := events.Encode(subject, &e)
		if err != nil {
			t.Fatal(err)
		}
		f, err := js.PublishMsgAsync(msg)
		if err != nil {
			t.Fatal(err)
		}
		futures = append(futures, f)
	}
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			t.Fatal(err)
		}
	}
}
