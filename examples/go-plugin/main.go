// Command go-plugin is a Hookbus chain plugin written with the Go SDK
// (pkg/client). For every call of its event it appends its name to the
// "visited" list of the state, so a chain's result shows who ran and in
// which order; with -halt it ends the chain there.
//
//	go run ./examples/go-plugin -name greeter-go -event com.example.greeting -priority 10
//	hookbus call --type com.example.greeting --data '{"name":"ada"}'
//
// Against NATS with users (Kubernetes, docs/security.md) it connects as
// HOOKBUS_NATS_USER with HOOKBUS_NATS_PASSWORD, what `hookbus plugin
// credentials NAME` prints.
//
// It registers and starts itself, answers chain steps until SIGINT or
// SIGTERM, then finishes the steps in progress and leaves the plugin as it
// is (-exit deactivate takes it out of the chain).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/nats-io/nats.go"

	"github.com/hookbus/hookbus/pkg/client"
	"github.com/hookbus/hookbus/pkg/events"
)

func main() {
	var (
		url      = flag.String("nats-url", nats.DefaultURL, "NATS server URL")
		name     = flag.String("name", "greeter-go", "plugin name")
		event    = flag.String("event", "com.example.greeting", "event type the plugin handles")
		priority = flag.Int("priority", 10, "chain priority, 0..100, lower runs first")
		halt     = flag.Bool("halt", false, "halt the chain after this plugin")
		exit     = flag.String("exit", "leave", "on shutdown: leave, deactivate, stop or unregister the plugin")
	)
	flag.Parse()
	actions := map[string]client.ExitAction{"leave": client.ExitLeave, "deactivate": client.ExitDeactivate, "stop": client.ExitStop, "unregister": client.ExitUnregister}
	action, ok := actions[*exit]
	if !ok {
		log.Fatalf("-exit %q: want leave, deactivate, stop or unregister", *exit)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	opts := []nats.Option{nats.Name(*name), nats.MaxReconnects(-1)}
	if user := os.Getenv("HOOKBUS_NATS_USER"); user != "" {
		// The user `hookbus plugin credentials NAME` made reads its
		// replies only under its own inbox prefix (docs/security.md).
		opts = append(opts, nats.UserInfo(user, os.Getenv("HOOKBUS_NATS_PASSWORD")),
			nats.CustomInboxPrefix(events.InboxPrefix(user)))
	}
	nc, err := nats.Connect(*url, opts...)
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	c, err := client.New(nc)
	if err != nil {
		log.Fatal(err)
	}

	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	err = c.Serve(ctx, client.Plugin{
		Spec: events.PluginSpec{Name: *name, Event: *event, Priority: *priority, Owner: "examples", Version: "1.0.0"},
		Chain: func(_ context.Context, s *client.Step) (client.StepResult, error) {
			var state map[string]any
			if err := s.Event.DataAs(&state); err != nil {
				return client.StepResult{}, fmt.Errorf("state is not a JSON object: %w", err)
			}
			if state == nil {
				state = map[string]any{}
			}
			visited, _ := state["visited"].([]any)
			state["visited"] = append(visited, *name)
			if *halt {
				return client.Halt(state), nil
			}
			return client.Continue(state), nil
		},
		OnStart:   func(p events.Plugin) { fmt.Printf("plugin %s started\n", p.Name) },
		OnRestart: func(p events.Plugin) { fmt.Printf("plugin %s restarted\n", p.Name) },
		OnStop:    func(p events.Plugin) { fmt.Printf("plugin %s stopped\n", p.Name) },
		OnHeld:    func(p events.Plugin) { fmt.Printf("plugin %s held: waiting for %v\n", p.Name, p.HardDepends()) },
	}, client.WithExitAction(action), client.WithLogger(logger))
	if err != nil && !errors.Is(err, context.Canceled) {
		log.Fatal(err)
	}
}
