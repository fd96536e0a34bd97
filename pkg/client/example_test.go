package client_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/signal"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"

	"github.com/hookbus/hookbus/internal/natstest"
	"github.com/hookbus/hookbus/pkg/client"
	"github.com/hookbus/hookbus/pkg/events"
)

func ExampleClient_Publish() {
	// In production, connect to the NATS server Hookbus runs on (hookbus
	// serve, or the cluster in deployments/k8s). The example starts one in
	// the process, with the streams hookbus serve would create.
	url, stop := exampleServer()
	defer stop()

	nc, err := nats.Connect(url)
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	c, err := client.New(nc)
	if err != nil {
		log.Fatal(err)
	}

	e := event.New()
	e.SetID("order-42") // keep the id when you retry: the pair (source, id) is stored once
	e.SetSource("/shop")
	e.SetType("com.example.order.created")
	_ = e.SetData(event.ApplicationJSON, map[string]any{"total": 12.5})

	// Publish waits for the stream's acknowledgement, retrying until ctx ends.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ack, err := c.Publish(ctx, e)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(ack.Stream, ack.Sequence, "duplicate:", ack.Duplicate)

	// The same event again (a retry after a lost acknowledgement, say).
	ack, err = c.Publish(ctx, e)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(ack.Stream, ack.Sequence, "duplicate:", ack.Duplicate)
	// Output:
	// HOOKBUS_EVENTS 1 duplicate: false
	// HOOKBUS_EVENTS 1 duplicate: true
}

// A chain plugin: it adds a field to the state of every
// com.example.order.created call and lets the chain go on. Serve registers
// and starts the plugin, answers its steps until ctx ends, then drains. (Not
// run: it needs a running Hookbus.)
func ExampleClient_Serve() {
	nc, err := nats.Connect("nats://127.0.0.1:4222")
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	c, err := client.New(nc)
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	err = c.Serve(ctx, client.Plugin{
		Spec: events.PluginSpec{Name: "tax", Event: "com.example.order.created", Priority: 10},
		Chain: func(ctx context.Context, s *client.Step) (client.StepResult, error) {
			var order map[string]any
			if err := s.Event.DataAs(&order); err != nil {
				return client.StepResult{}, err // the plugin's error policy decides
			}
			order["tax"] = 0.2
			return client.Continue(order), nil
		},
		OnHeld: func(p events.Plugin) { log.Printf("%s is waiting for %v", p.Name, p.HardDepends()) },
	}, client.WithExitAction(client.ExitDelete))
	if err != nil {
		log.Fatal(err)
	}
}

// A notify plugin: every event once (at least), retried with the plugin's
// backoff, dead-lettered after its last failed delivery.
func ExampleNotifyHandler() {
	var c *client.Client // as in the Serve example
	mail := func(context.Context, string) error { return nil }
	err := c.Serve(context.Background(), client.Plugin{
		Spec: events.PluginSpec{Name: "mailer", Event: "com.example.order.created",
			Settings: events.Settings{MaxDeliver: 5, BackoffMS: []int{1000, 5000, 30000}}},
		Notify: func(ctx context.Context, d *client.Delivery) error {
			var order struct {
				Email string `json:"email"`
			}
			if err := d.Event.DataAs(&order); err != nil || order.Email == "" {
				return client.Permanent(fmt.Errorf("order without an email: %v", err)) // to the DLQ now
			}
			return mail(ctx, order.Email) // an error: delivered again after the backoff
		},
	}, client.WithConcurrency(16))
	if err != nil {
		log.Fatal(err)
	}
}

// exampleServer starts an in-process JetStream server with Hookbus's
// streams and buckets and returns its URL and a function that stops it.
func exampleServer() (url string, stop func()) {
	url, stop, err := natstest.StartTopology()
	if err != nil {
		log.Fatal(err)
	}
	return url, stop
}
