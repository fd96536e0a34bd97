package client_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hookbus/hookbus/pkg/client"
	"github.com/hookbus/hookbus/pkg/events"
)

// Own temporary hooks: they live while the session heartbeats, and go at
// Close, or within seconds of the process's death.
func ExampleClient_HookSession() {
	url, stopBus := exampleBus() // in production: hookbus serve, or deployments/k8s
	defer stopBus()
	nc, err := nats.Connect(url)
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	c, err := client.New(nc)
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	s, err := c.HookSession(ctx) // writes the session's key, then heartbeats it
	if err != nil {
		log.Fatal(err)
	}
	h, err := s.CreateHook(ctx, events.HookSpec{Node: "com.example.order.created", Type: events.HookWebhook, Arg: "https://shop.example/tail"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("persistent:", h.Persistent, "secret shown:", h.Secret != "")

	// ... receive webhooks; s.Err() reports a failing heartbeat, s.Done()
	// closes if the session is lost.

	if err := s.Close(ctx); err != nil { // deletes the hook, then the key
		log.Fatal(err)
	}
	left, err := c.ListHooks(ctx, events.HookFilter{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("hooks left:", len(left))
	// Output:
	// persistent: false secret shown: true
	// hooks left: 0
}
