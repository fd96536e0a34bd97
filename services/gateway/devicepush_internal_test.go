package gateway

import (
	"log/slog"
	"testing"

	"github.com/hookbus/hookbus/internal/natstest"
	"github.com/hookbus/hookbus/pkg/events"
)

// Two sessions of a device write its cursor: it never goes backwards.
func TestDeviceCursorNeverGoesBackwards(t *testing.T) {
	_, js := natstest.RunTopology(t)
	kv, err := js.KeyValue(t.Context(), events.BucketDevices)
	if err != nil {
		t.Fatal(err)
	}
	s := &Service{log: slog.New(slog.DiscardHandler)}
	session := func() *devicePusher { return &devicePusher{s: s, id: "d1", kv: kv} }
	cursor := func(want uint64) {
		t.Helper()
		got, _, err := readCursor(t.Context(), kv, "d1")
		if err != nil || got != want {
			t.Fatalf("cursor %d, %v; want %d", got, err, want)
		}
	}
	a, b := session(), session()
	a.acked = 5
	a.saveCursor(t.Context())
	cursor(5)
	b.acked = 3 // b never read the cursor: its create loses to a's
	b.saveCursor(t.Context())
	cursor(5)
	b.acked = 7
	b.saveCursor(t.Context())
	cursor(7)
	a.acked = 6 // a's revision is stale: it reads 7 and leaves it
	a.saveCursor(t.Context())
	cursor(7)
	a.acked = 9
	a.saveCursor(t.Context())
	cursor(9)
}
