package client_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/pkg/client"
	"github.com/hookbus/hookbus/pkg/events"
)

func batchOf(prefix string, n int) []event.Event {
	evs := make([]event.Event, n)
	for i := range evs {
		evs[i] = orderCreated("/batch", fmt.Sprintf("%s-%d", prefix, i))
	}
	return evs
}

// TestPublishBatchStoresAllInOrder: a batch is stored whole, in order, at
// the sequences its acknowledgement names.
func TestPublishBatchStoresAllInOrder(t *testing.T) {
	b := newBus(t, true)
	evs := batchOf("a", 50)
	ack, err := b.client.PublishBatch(t.Context(), evs)
	if err != nil {
		t.Fatal(err)
	}
	if ack.Stream != events.StreamEvents || ack.Count != 50 || ack.Last != 50 {
		t.Fatalf("ack %+v, want 50 events ending at sequence 50", ack)
	}
	for i := range evs {
		m := b.stored(t, uint64(i+1))
		got, err := events.Decode(m.Header, m.Data)
		if err != nil {
			t.Fatal(err)
		}
		if got.ID() != evs[i].ID() {
			t.Fatalf("sequence %d holds %s, want %s", i+1, got.ID(), evs[i].ID())
		}
		if m.Header.Get("Nats-Batch-Id") == "" || m.Header.Get(events.HeaderMsgID) != events.MsgID("/batch", evs[i].ID()) {
			t.Errorf("sequence %d headers %v", i+1, m.Header)
		}
	}
}

// TestPublishBatchAllOrNothing: a batch with one event already stored is
// refused whole; nothing of it is stored, and the error says why.
func TestPublishBatchAllOrNothing(t *testing.T) {
	b := newBus(t, true)
	evs := batchOf("b", 10)
	if _, err := b.client.Publish(t.Context(), evs[7]); err != nil {
		t.Fatal(err)
	}
	_, err := b.client.PublishBatch(t.Context(), evs)
	if !errors.Is(err, client.ErrBatchDuplicate) || !strings.Contains(err.Error(), "nothing of the batch was stored") {
		t.Fatalf("err = %v, want ErrBatchDuplicate saying nothing was stored", err)
	}
	if got := b.storedCount(t); got != 1 {
		t.Errorf("%d events stored, want only the one published before", got)
	}
}

// TestPublishBatchInvalid: an invalid event, an empty or too large batch
// send nothing and name the problem.
func TestPublishBatchInvalid(t *testing.T) {
	b := newBus(t, true)
	bad := batchOf("c", 3)
	bad[1].SetType("bad type")
	cases := map[string][]event.Event{
		"batch event 1": bad,
		"0 events":      nil,
		"1001 events":   batchOf("d", client.MaxBatch+1),
	}
	for want, evs := range cases {
		_, err := b.client.PublishBatch(t.Context(), evs)
		if !errors.Is(err, events.ErrInvalid) || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want an invalid error naming %q", err, want)
		}
	}
	if got := b.storedCount(t); got != 0 {
		t.Errorf("%d events stored, want 0", got)
	}
}

// TestPublishBatchRefusedByStream: a stream without atomic publish refuses
// the batch (no retry, ErrNotStored).
func TestPublishBatchRefusedByStream(t *testing.T) {
	b := newBus(t, true)
	s, err := b.js.Stream(t.Context(), events.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	cfg.AllowAtomicPublish = false
	if _, err := b.js.UpdateStream(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	_, err = b.client.PublishBatch(ctx, batchOf("e", 3))
	var apiErr *jetstream.APIError
	if !errors.Is(err, client.ErrNotStored) || !errors.As(err, &apiErr) || ctx.Err() != nil {
		t.Fatalf("err = %v, want ErrNotStored with the server's refusal, at once", err)
	}
	if got := b.storedCount(t); got != 0 {
		t.Errorf("%d events stored, want 0", got)
	}
}
