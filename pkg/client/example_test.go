package client_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/internal/topology"
	"github.com/hookbus/hookbus/pkg/client"
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

// exampleServer starts an in-process JetStream server with Hookbus's
// streams and returns its URL and a function that stops it.
func exampleServer() (url string, stop func()) {
	dir, err := os.MkdirTemp("", "hookbus-example")
	if err != nil {
		log.Fatal(err)
	}
	srv, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true, StoreDir: dir, NoSigs: true, NoLog: true,
	})
	if err != nil {
		log.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		log.Fatal("nats server not ready")
	}
	stop = func() {
		srv.Shutdown()
		srv.WaitForShutdown()
		os.RemoveAll(dir)
	}
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := topology.Ensure(context.Background(), js, topology.DefaultConfig()); err != nil {
		log.Fatal(err)
	}
	return srv.ClientURL(), stop
}
