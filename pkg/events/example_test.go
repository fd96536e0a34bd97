package events_test

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"

	"github.com/hookbus/hookbus/pkg/events"
)

func ExampleEncode() {
	e := event.New()
	e.SetID("order-42")
	e.SetSource("/shop")
	e.SetType("com.example.order.created")
	e.SetTime(time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC))
	e.SetExtension("tenant", "acme corp")
	_ = e.SetData(event.ApplicationJSON, map[string]any{"total": 12.5})

	subject, err := events.EventSubject(e.Type())
	if err != nil {
		panic(err)
	}
	msg, err := events.Encode(subject, &e)
	if err != nil {
		panic(err)
	}
	fmt.Println(msg.Subject)
	for _, name := range slices.Sorted(maps.Keys(msg.Header)) {
		fmt.Printf("%s: %s\n", name, msg.Header.Get(name))
	}
	fmt.Printf("\n%s\n", msg.Data)
	// Output:
	// hookbus.event.com.example.order.created
	// Nats-Msg-Id: 034156ece92fdca7fd7dce00e495981afca176cf30a65d7af40553b86d0abce9
	// ce-id: order-42
	// ce-source: /shop
	// ce-specversion: 1.0
	// ce-tenant: acme%20corp
	// ce-time: 2026-11-21T10:00:00Z
	// ce-type: com.example.order.created
	// content-type: application/json
	//
	// {"total":12.5}
}

func ExampleDecode() {
	// A structured-mode message as a Node.js producer sends it; header
	// names are compared without regard to case.
	h := nats.Header{"Content-Type": {"application/cloudevents+json; charset=utf-8"}}
	body := []byte(`{"specversion":"1.0","id":"node-1","source":"/e2e/node",` +
		`"type":"com.example.order.created","datacontenttype":"application/json","data":{"n":2}}`)

	e, err := events.Decode(h, body)
	if err != nil {
		panic(err)
	}
	fmt.Println(e.ID(), e.Source(), e.Type())
	fmt.Printf("%s\n", e.Data())

	// An invalid event is refused with an error naming the attribute.
	_, err = events.Decode(nats.Header{"ce-specversion": {"1.0"}, "ce-source": {"/shop"}, "ce-type": {"x"}}, nil)
	var verr *events.ValidationError
	fmt.Println(err, errors.Is(err, events.ErrInvalid), errors.As(err, &verr) && verr.Field == "id")
	// Output:
	// node-1 /e2e/node com.example.order.created
	// {"n":2}
	// invalid event: id: required true true
}

func ExampleMsgID() {
	// The same (source, id) always gives the same JetStream deduplication
	// id, so a retried publish is stored once.
	fmt.Println(events.MsgID("/shop", "order-42"))
	fmt.Println(events.MsgID("/shop", "order-42") == events.MsgID("/warehouse", "order-42"))
	// Output:
	// 034156ece92fdca7fd7dce00e495981afca176cf30a65d7af40553b86d0abce9
	// false
}

func ExampleEventSubject() {
	fmt.Println(events.EventSubject("com.example.order.created"))
	// Nothing taken from a payload can widen a subscription or break a
	// subject.
	_, err := events.EventSubject("com.example.>")
	fmt.Println(err)
	// Output:
	// hookbus.event.com.example.order.created <nil>
	// invalid event: type: "com.example.>" contains '>': only letters, digits, '_' and '-' are allowed in a token
}
