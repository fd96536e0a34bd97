package persistence_test

import (
	"context"
	"crypto/rand"
	"testing"

	"github.com/hookbus/hookbus/pkg/events"
	"github.com/hookbus/hookbus/services/persistence"
)

// BenchmarkAuthKeys measures one key's get and set through the service
// (client request, JSON, AES-GCM, KV) beside a raw KV get and put of a
// value of the same size on the same server, in the same run: the
// difference is what the service costs. Read service-get beside raw-get
// and service-set beside raw-put.
func BenchmarkAuthKeys(b *testing.B) {
	const valueSize = 1024 // a Signal session record is of this order
	srv := newBus(b, "")
	startService(b, srv, persistence.NewKey())
	store := newClient(b, srv).AuthStore("bench")
	kv := rawBucket(b, srv)
	ctx := context.Background()
	value := make([]byte, valueSize)
	_, _ = rand.Read(value)
	const id = "5511999999999:12@s.whatsapp.net"
	const rawKey = "bench.raw"
	if err := store.SaveKeys(ctx, map[string]map[string][]byte{events.KeyTypeSession: {id: value}}); err != nil {
		b.Fatal(err)
	}
	if _, err := kv.Put(ctx, rawKey, value); err != nil {
		b.Fatal(err)
	}

	b.Run("service-get", func(b *testing.B) {
		b.SetBytes(valueSize)
		for b.Loop() {
			got, err := store.LoadKeys(ctx, events.KeyTypeSession, id)
			if err != nil || len(got[id]) != valueSize {
				b.Fatalf("LoadKeys = %d bytes, %v", len(got[id]), err)
			}
		}
	})
	b.Run("raw-get", func(b *testing.B) {
		b.SetBytes(valueSize)
		for b.Loop() {
			e, err := kv.Get(ctx, rawKey)
			if err != nil || len(e.Value()) != valueSize {
				b.Fatalf("kv.Get: %v", err)
			}
		}
	})
	b.Run("service-set", func(b *testing.B) {
		b.SetBytes(valueSize)
		batch := map[string]map[string][]byte{events.KeyTypeSession: {id: value}}
		for b.Loop() {
			if err := store.SaveKeys(ctx, batch); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("raw-put", func(b *testing.B) {
		b.SetBytes(valueSize)
		for b.Loop() {
			if _, err := kv.Put(ctx, rawKey, value); err != nil {
				b.Fatal(err)
			}
		}
	})
}
