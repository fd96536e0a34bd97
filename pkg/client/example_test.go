package client_test

import (
	"context"
	"errors"
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
	}, client.WithExitAction(client.ExitDeactivate), client.WithDrainTimeout(10*time.Second))
	if errors.Is(err, client.ErrHandlersAbandoned) {
		log.Fatal("a handler ignored its cancelled context: ", err)
	}
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

// A Publisher keeps up to a window of events in flight; each Publish
// returns a PendingAck to wait for, and Close waits for the rest.
func ExampleClient_NewPublisher() {
	// Requests and publishes whose ctx has no deadline end after 5 s; a
	// publish that failed for a passing reason waits up to 1 s to retry.
	c, stop := exampleClient(client.WithTimeout(5*time.Second), client.WithRetryWait(time.Second))
	defer stop()
	failed := 0
	p, err := c.NewPublisher(client.WithWindow(64), client.WithAckTimeout(2*time.Second),
		client.OnAck(func(_ event.Event, _ client.PublishAck, err error) {
			if err != nil {
				failed++ // OnAck calls are not concurrent with Close's return
			}
		}))
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	var acks []*client.PendingAck
	for i := range 3 {
		e := event.New()
		e.SetID(fmt.Sprintf("order-%d", i))
		e.SetSource("/shop")
		e.SetType("com.example.order.created")
		a, err := p.Publish(ctx, e)
		if err != nil {
			log.Fatal(err)
		}
		acks = append(acks, a)
	}
	first, err := acks[0].Wait(ctx)
	if err != nil {
		log.Fatal(err)
	}
	if err := p.Close(ctx); err != nil {
		log.Fatal(err)
	}
	_, err = p.Publish(ctx, event.New())
	fmt.Println("first stored at", first.Sequence, "stats:", p.Stats(), "failed:", failed, "then closed:", errors.Is(err, client.ErrPublisherClosed))
	// Output:
	// first stored at 1 stats: {3 0 0} failed: 0 then closed: true
}

// A batch is stored whole or not at all.
func ExampleClient_PublishBatch() {
	c, stop := exampleClient()
	defer stop()
	batch := make([]event.Event, 3) // at most client.MaxBatch
	for i := range batch {
		batch[i] = event.New()
		batch[i].SetID(fmt.Sprintf("line-%d", i))
		batch[i].SetSource("/shop")
		batch[i].SetType("com.example.order.created")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ack, err := c.PublishBatch(ctx, batch, client.Structured())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(ack.Stream, "sequences", ack.Last-uint64(ack.Count)+1, "to", ack.Last)
	_, err = c.PublishBatch(ctx, batch)
	fmt.Println("again:", errors.Is(err, client.ErrBatchDuplicate))
	// Output:
	// HOOKBUS_EVENTS sequences 1 to 3
	// again: true
}

// Call runs a chain and returns its result; here no dispatcher runs.
func ExampleClient_Call() {
	c, stop := exampleClient()
	defer stop()
	e := event.New()
	e.SetID("auth-1")
	e.SetSource("/login")
	e.SetType("com.example.user.authorise")
	_ = e.SetData(event.ApplicationJSON, map[string]any{"user_id": 7, "allowed": false})
	// Plugins may not change user_id; with no deadline the call ends after
	// the client's timeout.
	res, err := c.Call(context.Background(), e, client.Private("user_id"))
	switch {
	case errors.Is(err, client.ErrNoDispatcher):
		fmt.Println("no dispatcher: start hookbus serve")
	case errors.Is(err, client.ErrPluginFailed):
		fmt.Println("a plugin failed after", len(res.Trace), "steps")
	case err != nil:
		log.Fatal(err)
	default:
		fmt.Println(string(res.State))
	}
	// Output:
	// no dispatcher: start hookbus serve
}

// exampleClient is a Client, with opts, on an exampleServer; stop closes
// both.
func exampleClient(opts ...client.Option) (c *client.Client, stop func()) {
	url, stopServer := exampleServer()
	nc, err := nats.Connect(url)
	if err != nil {
		log.Fatal(err)
	}
	if c, err = client.New(nc, opts...); err != nil {
		log.Fatal(err)
	}
	return c, func() { nc.Close(); stopServer() }
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
