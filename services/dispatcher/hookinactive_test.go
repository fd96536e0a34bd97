package dispatcher_test

import (
	"errors"
	"slices"
	"testing"
	"time"

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
