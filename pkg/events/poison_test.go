package events_test

import (
	"strings"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"

	"github.com/hookbus/hookbus/internal/natstest"
	"github.com/hookbus/hookbus/pkg/events"
)

// TestDecodeRefusesNonUTF8Attributes: an id that is not UTF-8 would come
// back changed (U+FFFD) from every JSON reader, its result and dead letter
// naming another event.
func TestDecodeRefusesNonUTF8Attributes(t *testing.T) {
	for _, header := range []string{"ce-id", "ce-subject", "ce-myext"} {
		t.Run(header, func(t *testing.T) {
			h := nats.Header{}
			h.Set("ce-specversion", "1.0")
			h.Set("ce-id", "id-1")
			h.Set("ce-source", "/test")
			h.Set("ce-type", "ev")
			h.Set("content-type", "application/json")
			h.Set(header, "bad-\xff\xfe")
			_, err := events.Decode(h, []byte(`{}`))
			if err == nil || !strings.Contains(err.Error(), "not valid UTF-8") {
				t.Fatalf("decode: %v, want a refusal naming UTF-8", err)
			}
		})
	}
	e := event.New()
	e.SetID("id-\xff")
	e.SetSource("/test")
	e.SetType("ev")
	if err := (events.Codec{}).Validate(&e); err == nil || !strings.Contains(err.Error(), "id: is not valid UTF-8") {
		t.Fatalf("validate: %v", err)
	}
}

// TestEventSizeLimitHoldsAtTheServer: HOOKBUS_EVENTS refuses what the codec
// refuses, counting as the codec does, so every stored event is one readers
// take, and the largest event the codec encodes is stored.
func TestEventSizeLimitHoldsAtTheServer(t *testing.T) {
	_, js := natstest.RunTopology(t)
	limit := events.DefaultMaxSize
	e := event.New()
	e.SetID("big")
	e.SetSource("/test")
	e.SetType("ev")
	// Grow the data until the encoded event is exactly at the limit.
	_ = e.SetData("text/plain", []byte{})
	probe, err := events.Encode("hookbus.event.ev", &e)
	if err != nil {
		t.Fatal(err)
	}
	overhead := events.WireSize(probe.Header, nil)
	_ = e.SetData("text/plain", []byte(strings.Repeat("x", limit-overhead)))
	msg, err := events.Encode("hookbus.event.ev", &e)
	if err != nil {
		t.Fatalf("an event of exactly the limit: %v", err)
	}
	if _, err := js.PublishMsg(t.Context(), msg); err != nil {
		t.Fatalf("the server refused an event the codec accepts: %v", err)
	}
	stream, err := js.Stream(t.Context(), events.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	stored, err := stream.GetMsg(t.Context(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := events.Decode(stored.Header, stored.Data); err != nil {
		t.Fatalf("a reader refuses the stored event: %v", err)
	}
	// One byte more, sent raw as a careless publisher would.
	over := &nats.Msg{Subject: msg.Subject, Header: msg.Header, Data: append(msg.Data, 'x')}
	over.Header.Set(events.HeaderMsgID, strings.Repeat("0", len(msg.Header.Get(events.HeaderMsgID))))
	if _, err := js.PublishMsg(t.Context(), over); err == nil {
		t.Fatal("HOOKBUS_EVENTS stored an event over the size limit")
	}
	if _, err := events.Decode(over.Header, over.Data); err == nil {
		t.Fatal("the codec takes an event over the size limit")
	}
}
