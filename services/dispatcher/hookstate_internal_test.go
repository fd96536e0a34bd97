package dispatcher

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/internal/natstest"
	"github.com/hookbus/hookbus/pkg/events"
)

// While the state cannot be written (here every write is too large for
// the bucket), the attempts waiting for a write stay bounded, and what
// they say (the latest attempts, last delivery, last error, failing
// since) is what all of them would have said.
func TestHookStatePendingIsBoundedWhileWritesFail(t *testing.T) {
	srv := natstest.RunServer(t)
	js, err := jetstream.New(natstest.Connect(t, srv))
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: "state_test", MaxValueSize: 8})
	if err != nil {
		t.Fatal(err)
	}
	id := strings.Repeat("ab", 16)
	h := events.Hook{HookSpec: events.HookSpec{ID: id}}
	never := func(context.Context, string, string, time.Time) error { return nil }
	st := newHookState(kv, h, time.Hour, never, slog.New(slog.DiscardHandler))
	want := events.HookState{ID: id}
	rng := rand.New(rand.NewPCG(1, 2))
	start := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	for i := range 2000 {
		a := events.HookAttempt{Time: start.Add(time.Duration(i) * time.Millisecond), OK: rng.IntN(3) == 0, Status: "200"}
		if !a.OK {
			a.Status, a.Error = "503", "attempt "+time.Duration(i).String()
		}
		st.record(t.Context(), a)
		want.Record(a)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if n := len(st.pending); n > maxPendingAttempts {
		t.Errorf("%d attempts pending after 2000 failed writes, want at most %d", n, maxPendingAttempts)
	}
	if got := st.view(); !reflect.DeepEqual(got, want) {
		t.Errorf("view = %+v\nwant %+v", got, want)
	}
}

// Compacting keeps what every sequence of attempts says.
func TestCompactAttempts(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	start := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	for range 500 {
		base := events.HookState{ID: "x"}
		if rng.IntN(2) == 0 {
			base.FailingSince = start.Add(-time.Hour)
			base.LastError = "before"
		}
		var all []events.HookAttempt
		for i := range rng.IntN(80) {
			a := events.HookAttempt{Time: start.Add(time.Duration(i) * time.Second), OK: rng.IntN(4) == 0}
			if !a.OK {
				a.Error = "e" + time.Duration(i).String()
			}
			all = append(all, a)
		}
		full, compacted := base, base
		for _, a := range all {
			full.Record(a)
		}
		for _, a := range compactAttempts(all) {
			compacted.Record(a)
		}
		if !reflect.DeepEqual(full, compacted) {
			t.Fatalf("attempts %+v:\ncompacted %+v\nwant      %+v", all, compacted, full)
		}
	}
}
