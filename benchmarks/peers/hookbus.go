package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"

	"github.com/hookbus/hookbus/pkg/client"
	"github.com/hookbus/hookbus/pkg/events"
)

// hookbusSide publishes with pkg/client and subscribes with notify plugin
// workers (client.Serve) on the queues the dispatcher makes.
type hookbusSide struct {
	env     *env
	nc      *nats.Conn // publishing and plugin administration
	c       *client.Client
	plugins []string // registered this round
}

func newHookbusSide(e *env) (*hookbusSide, error) {
	nc, c, err := connectWith(e, "peers-hookbus", newClient)
	if err != nil {
		return nil, err
	}
	return &hookbusSide{env: e, nc: nc, c: c}, nil
}

func (h *hookbusSide) Name() string { return "Hookbus" }

func newEvent(typ, id string) event.Event {
	e := event.New()
	e.SetID(id)
	e.SetSource(eventSource)
	e.SetType(typ)
	_ = e.SetData(event.ApplicationJSON, eventData) // []byte: stored as it is
	return e
}

func (h *hookbusSide) Setup(context.Context, string) error { return nil }

func (h *hookbusSide) PublishOne(ctx context.Context, typ, id string) error {
	_, err := h.c.Publish(ctx, newEvent(typ, id))
	return err
}

func (h *hookbusSide) PublishAsync(ctx context.Context, typ, prefix string, n, window int) error {
	p, err := h.c.NewPublisher(client.WithWindow(window))
	if err != nil {
		return err
	}
	for i := range n {
		if _, err := p.Publish(ctx, newEvent(typ, idOf(prefix, i))); err != nil {
			_ = p.Close(ctx)
			return err
		}
	}
	if err := p.Close(ctx); err != nil {
		return err
	}
	switch st := p.Stats(); {
	case st.Failed > 0:
		return fmt.Errorf("publisher stats %+v", st)
	case st.Duplicates > 0:
		// Every id is new: a duplicate is an event sent again after its
		// acknowledgement did not come in time, and stored once.
		fmt.Fprintf(os.Stderr, "  note: Hookbus publisher of %s: %d events sent again and found stored (%+v)\n", typ, st.Duplicates, st)
	}
	return nil
}

func (h *hookbusSide) Store(ctx context.Context, typ, prefix string, n int) error {
	return h.PublishAsync(ctx, typ, prefix, n, 256)
}

// Prepare registers and starts the notify plugin, as Serve would, and
// waits until the dispatcher has made its queue, so the events published
// next are in it.
func (h *hookbusSide) Prepare(ctx context.Context, typ, name string) error {
	spec := events.PluginSpec{Name: name, Event: typ, Mode: events.ModeNotify}
	if _, err := h.c.Register(ctx, spec); err != nil {
		return err
	}
	h.plugins = append(h.plugins, name)
	if _, err := h.c.Start(ctx, name); err != nil {
		return err
	}
	return eventually(ctx, 30*time.Second, func() error {
		_, err := h.env.js.Consumer(ctx, events.StreamEvents, events.NotifyConsumer(name))
		return err
	})
}

// Subscribe runs client.Serve for the plugin on a connection of its own,
// with WithConcurrency(prefetch): the worker pulls that many events at
// most (its prefetch) and runs that many handlers at most.
func (h *hookbusSide) Subscribe(ctx context.Context, typ, name string, prefetch int, handle func(id string)) (func(), error) {
	nc, c, err := connectWith(h.env, "peers-hookbus-"+name, newClient)
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- c.Serve(wctx, client.Plugin{
			Spec: events.PluginSpec{Name: name, Event: typ, Mode: events.ModeNotify},
			Notify: func(_ context.Context, d *client.Delivery) error {
				handle(d.Event.ID())
				return nil
			},
		}, client.WithConcurrency(prefetch))
	}()
	return func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			fmt.Fprintf(os.Stderr, "hookbus: serve %s: %v\n", name, err)
		}
		nc.Close()
	}, nil
}

// EndRound unregisters the round's plugins (the dispatcher deletes their
// queues) and, once the dispatcher has read every event, purges
// HOOKBUS_EVENTS.
func (h *hookbusSide) EndRound(ctx context.Context) error {
	for _, name := range h.plugins {
		if _, err := h.c.Unregister(ctx, name); err != nil {
			return fmt.Errorf("unregister %s: %w", name, err)
		}
	}
	h.plugins = nil
	if err := h.env.dispatcherIdle(ctx); err != nil {
		return err
	}
	s, err := h.env.js.Stream(ctx, events.StreamEvents)
	if err != nil {
		return err
	}
	return s.Purge(ctx)
}

// diagnoser is a side that can say more about a subscriber that did not
// get its events.
type diagnoser interface {
	diagnose(ctx context.Context, name string) string
}

// diagnose describes the plugin and its notify queue.
func (h *hookbusSide) diagnose(ctx context.Context, name string) string {
	var parts []string
	if p, err := h.c.Get(ctx, name); err != nil {
		parts = append(parts, "plugin: "+err.Error())
	} else {
		parts = append(parts, fmt.Sprintf("plugin %s updated %s", p.Status, p.UpdatedAt.Format(time.RFC3339Nano)))
	}
	c, err := h.env.js.Consumer(ctx, events.StreamEvents, events.NotifyConsumer(name))
	if err != nil {
		return strings.Join(append(parts, "queue: "+err.Error()), "; ")
	}
	info, err := c.Info(ctx)
	if err != nil {
		return strings.Join(append(parts, "queue: "+err.Error()), "; ")
	}
	start := "none"
	if info.Config.OptStartTime != nil {
		start = info.Config.OptStartTime.Format(time.RFC3339Nano)
	}
	parts = append(parts, fmt.Sprintf("queue created %s, deliver %s from %s, pending %d, ack pending %d, delivered stream seq %d, waiting pulls %d",
		info.Created.Format(time.RFC3339Nano), info.Config.DeliverPolicy, start, info.NumPending, info.NumAckPending, info.Delivered.Stream, info.NumWaiting))
	return strings.Join(parts, "; ")
}

func (h *hookbusSide) Close() { h.nc.Close() }

func newClient(nc *nats.Conn) (*client.Client, error) { return client.New(nc) }
