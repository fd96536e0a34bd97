package client_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"

	"github.com/hookbus/hookbus/pkg/client"
	"github.com/hookbus/hookbus/pkg/events"
	"github.com/hookbus/hookbus/services/dispatcher"
	"github.com/hookbus/hookbus/services/registry"
)

// Publish an event, serve a chain plugin and run its chain (the README's
// example, on an in-process Hookbus).
func Example() {
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

	// A chain plugin. Serve registers and starts it, answers its steps
	// until its ctx ends, then drains: it blocks, so it runs in a
	// goroutine here (in a worker, it is main's last call).
	serveCtx, stopServe := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() {
		served <- c.Serve(serveCtx, client.Plugin{
			Spec: events.PluginSpec{Name: "tax", Event: "com.example.order.created", Priority: 10},
			Chain: func(ctx context.Context, s *client.Step) (client.StepResult, error) {
				var order map[string]any
				if err := s.Event.DataAs(&order); err != nil {
					return client.StepResult{}, err // the plugin's error policy decides: skip, halt or fail
				}
				order["tax"] = 0.2
				return client.Continue(order), nil // or client.Halt(order)
			},
		})
	}()
	waitRunning(ctx, c, "tax")

	e := event.New()
	e.SetID("order-42") // keep the id when you retry: (source, id) is stored once
	e.SetSource("/shop")
	e.SetType("com.example.order.created")
	_ = e.SetData(event.ApplicationJSON, map[string]any{"total": 12.5})
	ack, err := c.Publish(ctx, e) // waits until JetStream has stored it
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("stored in", ack.Stream, "at", ack.Sequence)

	res, err := c.Call(ctx, e) // runs the chain now and returns its result
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(res.State), "after", len(res.Trace), "step")

	stopServe()
	if err := <-served; err != nil {
		log.Fatal(err)
	}
	// Output:
	// stored in HOOKBUS_EVENTS at 1
	// {"tax":0.2,"total":12.5} after 1 step
}

// waitRunning polls until plugin name runs.
func waitRunning(ctx context.Context, c *client.Client, name string) {
	for {
		p, err := c.Get(ctx, name)
		if err == nil && p.Status.Running() {
			return
		}
		select {
		case <-ctx.Done():
			log.Fatalf("plugin %s not running: %v", name, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// service is what registry.New and dispatcher.New return.
type service interface {
	Run(context.Context) error
	Ready(context.Context) error
}

// exampleBus starts an exampleServer with the registry and the dispatcher
// running on it, and returns its URL and a function that stops them all.
func exampleBus() (url string, stop func()) {
	url, stopServer := exampleServer()
	ctx, cancel := context.WithCancel(context.Background())
	var conns []*nats.Conn
	var done []chan error
	start := func(newSvc func(*nats.Conn) (service, error)) {
		nc, err := nats.Connect(url)
		if err != nil {
			log.Fatal(err)
		}
		conns = append(conns, nc)
		svc, err := newSvc(nc)
		if err != nil {
			log.Fatal(err)
		}
		ch := make(chan error, 1)
		done = append(done, ch)
		go func() { ch <- svc.Run(ctx) }()
		rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
		defer rcancel()
		for svc.Ready(rctx) != nil {
			if rctx.Err() != nil {
				log.Fatal("service not ready")
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	start(func(nc *nats.Conn) (service, error) {
		return registry.New(registry.DefaultConfig(), nc, nil)
	})
	start(func(nc *nats.Conn) (service, error) {
		return dispatcher.New(dispatcher.DefaultConfig(), nc, nil)
	})
	return url, func() {
		cancel()
		for _, ch := range done {
			<-ch
		}
		for _, nc := range conns {
			nc.Close()
		}
		stopServer()
	}
}
