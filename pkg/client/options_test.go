package client_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"

	"github.com/hookbus/hookbus/internal/natstest"
	"github.com/hookbus/hookbus/pkg/client"
	"github.com/hookbus/hookbus/pkg/events"
)

// Every option refuses a bad value, and an option given where it does not
// apply, with an error from the constructor or call that names it; that
// call does nothing. The same places take good values.
func TestOptionsRefused(t *testing.T) {
	t.Parallel()
	b := newBus(t, true)
	chain := func(context.Context, *client.Step) (client.StepResult, error) { return client.StepResult{}, nil }
	plugin := client.Plugin{Spec: events.PluginSpec{Name: "p", Event: testType}, Chain: chain}
	// The places an option can be given, each returning its error.
	places := map[string]func(opts ...client.Option) error{
		"New": func(opts ...client.Option) error {
			_, err := client.New(b.nc, opts...)
			return err
		},
		"Publish": func(opts ...client.Option) error {
			_, err := b.client.Publish(t.Context(), orderCreated("/options", "o-1"), opts...)
			return err
		},
		"Call": func(opts ...client.Option) error {
			ctx, cancel := context.WithTimeout(t.Context(), time.Millisecond) // no dispatcher runs
			defer cancel()
			_, err := b.client.Call(ctx, testEvent("c-1", nil), opts...)
			if errors.Is(err, client.ErrNoDispatcher) || errors.Is(err, context.DeadlineExceeded) {
				return nil // the options were taken
			}
			return err
		},
		"NewPublisher": func(opts ...client.Option) error {
			p, err := b.client.NewPublisher(opts...)
			if err == nil {
				_ = p.Close(t.Context())
			}
			return err
		},
		"Serve": func(opts ...client.Option) error {
			ctx, cancel := context.WithCancel(t.Context())
			cancel() // Serve stops at once once it has taken its options
			if err := b.client.Serve(ctx, plugin, opts...); !errors.Is(err, context.Canceled) {
				return err
			}
			return nil
		},
	}
	tests := []struct {
		name   string
		place  string
		option client.Option
		want   string // in the error; "" for an accepted option
	}{
		{"negative max event size", "New", client.WithMaxEventSize(-1), "WithMaxEventSize"},
		{"zero max event size", "New", client.WithMaxEventSize(0), "WithMaxEventSize"},
		{"zero retry wait", "New", client.WithRetryWait(0), "WithRetryWait"},
		{"negative timeout", "New", client.WithTimeout(-time.Second), "WithTimeout"},
		{"empty private field", "Call", client.Private("user_id", ""), "Private"},
		{"private field with a comma", "Call", client.Private("a,b"), "Private"},
		{"private field with surrounding spaces", "Call", client.Private(" a"), "Private"},
		{"zero window", "NewPublisher", client.WithWindow(0), "WithWindow"},
		{"zero ack timeout", "NewPublisher", client.WithAckTimeout(0), "WithAckTimeout"},
		{"nil OnAck", "NewPublisher", client.OnAck(nil), "OnAck"},
		{"zero concurrency", "Serve", client.WithConcurrency(0), "WithConcurrency"},
		{"zero drain timeout", "Serve", client.WithDrainTimeout(0), "WithDrainTimeout"},
		{"unknown exit action", "Serve", client.WithExitAction(client.ExitUnregister + 1), "WithExitAction"},

		{"a Serve option to New", "New", client.WithConcurrency(4), "WithConcurrency does not apply"},
		{"a Publisher option to Publish", "Publish", client.WithWindow(4), "WithWindow does not apply"},
		{"a Publish option to Call", "Call", client.Structured(), "Structured does not apply"},
		{"a Call option to Serve", "Serve", client.Private("a"), "Private does not apply"},
		{"a New option to NewPublisher", "NewPublisher", client.WithTimeout(time.Second), "WithTimeout does not apply"},

		{"max event size", "New", client.WithMaxEventSize(100), ""},
		{"timeout", "New", client.WithTimeout(time.Second), ""},
		{"structured", "Publish", client.Structured(), ""},
		{"private fields", "Call", client.Private("user_id", "token"), ""},
		{"window", "NewPublisher", client.WithWindow(1), ""},
		{"exit action", "Serve", client.WithExitAction(client.ExitUnregister), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := places[tt.place](tt.option)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("%s = %v, want the option accepted", tt.place, err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("%s = %v, want an error with %q", tt.place, err, tt.want)
			}
		})
	}
	// Nothing was published by the Publish that refused its option; the
	// one that took Structured stored its event.
	if n := b.storedCount(t); n != 1 {
		t.Errorf("%d events stored, want 1 (the accepted Publish)", n)
	}
}

// A request-reply call whose ctx has no deadline ends after the client's
// timeout when a service takes the request and never answers.
func TestCallWithoutDeadlineEndsAtTimeout(t *testing.T) {
	t.Parallel()
	const timeout = 200 * time.Millisecond
	srv := natstest.RunServer(t) // no streams: every request goes to the subscriber below
	nc := natstest.Connect(t, srv)
	c, err := client.New(nc, client.WithTimeout(timeout))
	if err != nil {
		t.Fatal(err)
	}
	// A "service" that takes every Hookbus request and answers none.
	sub, err := nc.SubscribeSync("hookbus.>")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tests := []struct {
		name string
		call func() error
	}{
		{"Publish", func() error { _, err := c.Publish(ctx, orderCreated("/timeout", "t-1")); return err }},
		{"PublishBatch", func() error {
			_, err := c.PublishBatch(ctx, []event.Event{orderCreated("/timeout", "t-2")})
			return err
		}},
		{"Call", func() error { _, err := c.Call(ctx, testEvent("t-3", nil)); return err }},
		{"Get", func() error { _, err := c.Get(ctx, "p"); return err }},
		{"List", func() error { _, err := c.List(ctx, events.PluginFilter{}); return err }},
		{"Start", func() error { _, err := c.Start(ctx, "p"); return err }},
		{"AuthStore", func() error { _, err := c.AuthStore("").LoadCredentials(ctx); return err }},
		{"RotateAuthKeys", func() error { _, err := c.RotateAuthKeys(ctx); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			done := make(chan error, 1)
			go func() { done <- tt.call() }()
			// Far longer than the timeout: the call must end, not end on time.
			select {
			case err := <-done:
				if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, nats.ErrTimeout) {
					t.Errorf("%s = %v, want it to end at the client's timeout", tt.name, err)
				}
			case <-time.After(100 * timeout):
				t.Fatalf("%s with no deadline still waits after %s", tt.name, 100*timeout)
			}
		})
	}
}
