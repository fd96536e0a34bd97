package registry_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/pkg/events"
)

// TestCommandsAfterTheBucketsLastMessageIsPurged: an operator purging the
// last message of the plugin bucket's stream leaves a sequence no watcher
// will see; the registry must not wait for it.
func TestCommandsAfterTheBucketsLastMessageIsPurged(t *testing.T) {
	srv, c, js := setup(t)
	runRegistry(t, srv)
	ctx := ctxT(t)
	for _, name := range []string{"a", "b"} {
		if _, err := c.Register(ctx, events.PluginSpec{Name: name, Event: "ev"}); err != nil {
			t.Fatal(err)
		}
	}
	stream, err := js.Stream(ctx, "KV_"+events.BucketPlugins)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Purge(ctx, jetstream.WithPurgeSubject("$KV."+events.BucketPlugins+".b")); err != nil {
		t.Fatal(err)
	}
	// A registry started now must get ready, and one running must answer.
	runRegistry(t, srv)
	quick, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := c.Register(quick, events.PluginSpec{Name: "c", Event: "ev"}); err != nil {
		t.Fatalf("command after the purge: %v", err)
	}
}

// TestDeletedCommandConsumerIsCreatedAgain: commands are applied again
// once the registry's consumer is back.
func TestDeletedCommandConsumerIsCreatedAgain(t *testing.T) {
	srv, c, js := setup(t)
	runRegistry(t, srv)
	ctx := ctxT(t)
	if _, err := c.Register(ctx, events.PluginSpec{Name: "a", Event: "ev"}); err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteConsumer(ctx, events.StreamCommands, registryConsumer); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Register(ctx, events.PluginSpec{Name: "b", Event: "ev"}); err != nil {
		t.Fatalf("command after the consumer was deleted: %v", err)
	}
}

const registryConsumer = "hookbus-registry"
