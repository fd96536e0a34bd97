package persistence_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hookbus/hookbus/internal/natstest"
	"github.com/hookbus/hookbus/pkg/client"
	"github.com/hookbus/hookbus/pkg/events"
	"github.com/hookbus/hookbus/services/persistence"
)

// Run the service (hookbus serve does this) and use it through the Go
// client as BaileysEx uses its auth state: credentials loaded and saved
// whole, keys read and written in batches by type and id.
func Example() {
	url, stop := exampleServer()
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// The service: one key here; in production from HOOKBUS_PERSISTENCE_KEY.
	svcConn, err := nats.Connect(url)
	if err != nil {
		log.Fatal(err)
	}
	defer svcConn.Close()
	cfg := persistence.DefaultConfig()
	cfg.Keys = []persistence.Key{persistence.NewKey()}
	svc, err := persistence.New(cfg, svcConn, nil, nil)
	if err != nil {
		log.Fatal(err)
	}
	svcCtx, stopService := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- svc.Run(svcCtx) }()
	defer func() { stopService(); <-done }()
	for svc.Ready(ctx) != nil {
		time.Sleep(10 * time.Millisecond)
	}

	// A client, for the context (tenant) "acme".
	nc, err := nats.Connect(url)
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	c, err := client.New(nc)
	if err != nil {
		log.Fatal(err)
	}
	store := c.AuthStore("acme")

	if _, err := store.LoadCredentials(ctx); errors.Is(err, client.ErrNotFound) {
		fmt.Println("no credentials yet")
	}
	rev, err := store.SaveCredentialsIf(ctx, []byte(`{"me":{"id":"5511999999999@s.whatsapp.net"}}`), 0)
	if err != nil {
		log.Fatal(err)
	}
	// A writer holding an older revision loses, and nothing is overwritten.
	if _, err := store.SaveCredentialsIf(ctx, []byte(`{}`), rev-1); errors.Is(err, client.ErrConflict) {
		fmt.Println("stale save refused")
	}

	err = store.SaveKeys(ctx, map[string]map[string][]byte{
		events.KeyTypePreKey:  {"1": []byte{1}, "2": []byte{2}},
		events.KeyTypeSession: {"5511999999999:12@s.whatsapp.net": []byte("session")},
	})
	if err != nil {
		log.Fatal(err)
	}
	// nil deletes.
	if err := store.SaveKeys(ctx, map[string]map[string][]byte{events.KeyTypePreKey: {"1": nil}}); err != nil {
		log.Fatal(err)
	}
	preKeys, err := store.LoadKeys(ctx, events.KeyTypePreKey, "1", "2", "3")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("pre-keys found:", len(preKeys), preKeys["2"])
	ids, err := store.ListKeys(ctx, events.KeyTypeSession)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("sessions:", ids)
	// Output:
	// no credentials yet
	// stale save refused
	// pre-keys found: 1 [2]
	// sessions: [5511999999999:12@s.whatsapp.net]
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
