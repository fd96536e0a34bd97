package client_test

import (
	"context"
	"errors"
	"log"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hookbus/hookbus/pkg/client"
	"github.com/hookbus/hookbus/pkg/events"
)

// An auth state for one WhatsApp account, kept by the persistence service
// that hookbus serve runs (services/persistence has a runnable example).
func ExampleClient_AuthStore() {
	nc, err := nats.Connect("nats://127.0.0.1:4222")
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	c, err := client.New(nc)
	if err != nil {
		log.Fatal(err)
	}
	store := c.AuthStore("5511999999999") // the context: one per account
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	creds, err := store.LoadCredentials(ctx)
	switch {
	case errors.Is(err, client.ErrNotFound):
		// A new account: create its credentials, only if nobody did meanwhile.
		_, err = store.SaveCredentialsIf(ctx, []byte(`{"registered":false}`), 0)
	case errors.Is(err, client.ErrDecrypt):
		log.Fatal("the stored credentials cannot be read: never start over silently: ", err)
	case err == nil:
		// Change creds.Value, then save it only over what was read: a
		// concurrent writer makes this fail with ErrConflict (load again).
		_, err = store.SaveCredentialsIf(ctx, creds.Value, creds.Revision)
	}
	if err != nil {
		log.Fatal(err)
	}

	// Keys: batches by type and id; nil deletes; missing ids are absent.
	err = store.SaveKeys(ctx, map[string]map[string][]byte{
		events.KeyTypePreKey:    {"1": []byte("...")},
		events.KeyTypeSenderKey: {"group@g.us::5511999999999:12": nil},
	})
	if err != nil {
		log.Fatal(err)
	}
	sessions, err := store.LoadKeys(ctx, events.KeyTypeSession, "5511888888888:3@s.whatsapp.net")
	if err != nil {
		log.Fatal(err)
	}
	_ = sessions
}
