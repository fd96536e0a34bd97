package dispatcher_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/internal/natstest"
	"github.com/hookbus/hookbus/pkg/events"
)

// A hook's consumer lost while the hook is disabled (deleted by an
// operator, or by the server had it an inactivity threshold) is made
// again after what the hook delivered, not from its creation: the events
// delivered before the disable do not come again. A temporary hook's
// consumer has no inactivity threshold (it would be deleted while
// disabled).
var errNotYet = errors.New("not yet")

func TestTemporaryHookDisabledPastInactivityIsNotReplayed(t *testing.T) {
	e := newEnv(t)
	e.runDispatcherWith(allowLoopback)
	target := newHookTarget(t)
	h := e.putTemporaryHook("a", target.srv.URL)
	e.waitConsumer(h)
	e.publishID("a", "a1")
	natstest.Eventually(t, 10*time.Second, func() error {
		if !slices.Contains(target.received(), "a1") {
			return errNotYet
		}
		return nil
	})
	e.updateHook(h.ID, func(h *events.Hook) { h.Status, h.Disabled = events.HookDisabled, time.Now().UTC() })
	time.Sleep(time.Second) // the reader stops
	info, err := e.js.Consumer(t.Context(), events.StreamEvents, events.HookConsumer(h.ID))
	if err != nil {
		t.Fatal(err)
	}
	if d := info.CachedInfo().Config.InactiveThreshold; d != 0 {
		t.Errorf("temporary hook's consumer has InactiveThreshold %s: the server deletes it while the hook is disabled", d)
	}
	// What an operator (or an inactivity threshold) does.
	if err := e.js.DeleteConsumer(t.Context(), events.StreamEvents, events.HookConsumer(h.ID)); err != nil {
		t.Fatal(err)
	}
	e.publishID("a", "a2")
	e.updateHook(h.ID, func(h *events.Hook) {
		h.Status, h.Disabled, h.Enabled = events.HookActive, time.Time{}, time.Now().UTC()
	})
	natstest.Eventually(t, 10*time.Second, func() error {
		if !slices.Contains(target.received(), "a2") {
			return errNotYet
		}
		return nil
	})
	time.Sleep(500 * time.Millisecond)
	if got := target.received(); !slices.Equal(got, []string{"a1", "a2"}) {
		t.Errorf("target received %v, want [a1 a2]: events delivered before the disable came again", got)
	}
}

// The consumers and state of a hook deleted while its deletion could not
// remove them (here: made again by hand after it) are collected; those of
// a stored hook are kept.
func TestDeletedHooksConsumersAreCollected(t *testing.T) {
	e := newEnv(t)
	e.runDispatcherWith(allowLoopback)
	kept := e.putHook("a", "http://127.0.0.1:1/", 0)
	e.waitConsumer(kept)
	goneID := strings.Repeat("7e", 16)
	for _, name := range []string{events.HookConsumer(goneID), events.HookReplayConsumer(goneID)} {
		if _, err := e.js.CreateOrUpdateConsumer(t.Context(), events.StreamEvents, jetstream.ConsumerConfig{Durable: name, FilterSubject: "hookbus.event.zz." + name}); err != nil {
			t.Fatal(err)
		}
	}
	state, err := e.js.KeyValue(t.Context(), events.BucketHookState)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := state.Put(t.Context(), goneID, []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 10*time.Second, func() error {
		for _, name := range []string{events.HookConsumer(goneID), events.HookReplayConsumer(goneID)} {
			if _, err := e.consumer(name); err == nil {
				return fmt.Errorf("consumer %s still there", name)
			}
		}
		if _, err := state.Get(t.Context(), goneID); !errors.Is(err, jetstream.ErrKeyNotFound) {
			return fmt.Errorf("state of the deleted hook: %v", err)
		}
		return nil
	})
	for _, name := range []string{events.HookConsumer(kept.ID), events.HookReplayConsumer(kept.ID)} {
		if _, err := e.consumer(name); err != nil {
			t.Errorf("consumer %s of a stored hook: %v", name, err)
		}
	}
}
