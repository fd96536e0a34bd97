package persistence_test

import (
	"context"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/internal/natstest"
	"github.com/hookbus/hookbus/internal/topology"
	"github.com/hookbus/hookbus/pkg/client"
	"github.com/hookbus/hookbus/pkg/events"
	"github.com/hookbus/hookbus/services/persistence"
)

// newBus starts a NATS server with its store in storeDir ("" for a
// temporary one) and the Hookbus topology.
func newBus(t testing.TB, storeDir string) *server.Server {
	t.Helper()
	if storeDir == "" {
		storeDir = t.TempDir()
	}
	srv := natstest.RunServerWithStore(t, storeDir)
	if _, err := topology.Ensure(context.Background(), natstest.JetStream(t, srv), topology.DefaultConfig()); err != nil {
		t.Fatalf("topology: %v", err)
	}
	return srv
}

// newService builds a persistence service with keys (newest first) on its
// own connection to srv.
func newService(t testing.TB, srv *server.Server, keys ...persistence.Key) *persistence.Service {
	t.Helper()
	cfg := persistence.DefaultConfig()
	cfg.Keys = keys
	svc, err := persistence.New(cfg, natstest.Connect(t, srv), nil, nil)
	if err != nil {
		t.Fatalf("persistence.New: %v", err)
	}
	return svc
}

// startService runs a persistence service with keys until the returned
// stop is called or the test ends, and waits until it is ready.
func startService(t testing.TB, srv *server.Server, keys ...persistence.Key) (stop func()) {
	t.Helper()
	return natstest.RunService(t, newService(t, srv, keys...))
}

// newClient returns a Hookbus client on its own connection to srv.
func newClient(t testing.TB, srv *server.Server) *client.Client {
	t.Helper()
	c, err := client.New(natstest.Connect(t, srv))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// rawBucket opens hookbus_auth directly, to look at or tamper with what the
// service stored.
func rawBucket(t testing.TB, srv *server.Server) jetstream.KeyValue {
	t.Helper()
	kv, err := natstest.JetStream(t, srv).KeyValue(context.Background(), events.BucketAuth)
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

// rawEntries returns every stored value of the bucket by KV key.
func rawEntries(t testing.TB, kv jetstream.KeyValue) map[string][]byte {
	t.Helper()
	ctx := context.Background()
	lister, err := kv.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	out := map[string][]byte{}
	for _, k := range keys {
		e, err := kv.Get(ctx, k)
		if err != nil {
			t.Fatalf("get %s: %v", k, err)
		}
		out[k] = e.Value()
	}
	return out
}
