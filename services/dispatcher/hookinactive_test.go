package dispatcher_test

import (
	"errors"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/hookbus/hookbus/internal/natstest"
	"github.com/hookbus/hookbus/pkg/events"
)

// KNOWN BUG (not fixed here: the hook consumer's configuration in
// startReader is being changed in parallel). A temporary hook's consumer
// carries InactiveThreshold 2 min; while the hook is disabled (or every
// dispatcher is down) nothing reads it, so the server deletes it. The
// reader started at the enable creates it again from the hook's created
// time, and every event the hook already delivered is delivered again.
// The test deletes the consumer as the server does after 2 min unread.
var errNotYet = errors.New("not yet")

func TestTemporaryHookDisabledPastInactivityIsNotReplayed(t *testing.T) {
	if os.Getenv("HOOKBUS_KNOWN_BUGS") == "" {
		t.Skip("known bug, run with HOOKBUS_KNOWN_BUGS=1: a disabled temporary hook's consumer expires and is created again from the hook's created time")
	}
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
	// What the server does to a consumer unread for its InactiveThreshold.
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
