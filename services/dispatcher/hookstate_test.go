package dispatcher_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/internal/natstest"
	"github.com/hookbus/hookbus/pkg/events"
	"github.com/hookbus/hookbus/services/dispatcher"
)

// hookState returns the stored delivery state of hook id (zero if none)
// and its revision.
func (e *env) hookState(id string) (events.HookState, uint64) {
	e.t.Helper()
	kv, err := e.js.KeyValue(e.t.Context(), events.BucketHookState)
	if err != nil {
		e.t.Fatal(err)
	}
	entry, err := kv.Get(e.t.Context(), id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return events.HookState{}, 0
	}
	if err != nil {
		e.t.Fatal(err)
	}
	var st events.HookState
	if err := json.Unmarshal(entry.Value(), &st); err != nil {
		e.t.Fatal(err)
	}
	return st, entry.Revision()
}

// updateHook changes the stored hook as the registry would.
func (e *env) updateHook(id string, edit func(*events.Hook)) {
	e.t.Helper()
	kv, err := e.js.KeyValue(e.t.Context(), events.BucketHooks)
	if err != nil {
		e.t.Fatal(err)
	}
	entry, err := kv.Get(e.t.Context(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	var h events.Hook
	if err := json.Unmarshal(entry.Value(), &h); err != nil {
		e.t.Fatal(err)
	}
	edit(&h)
	b, err := json.Marshal(h)
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := kv.Update(e.t.Context(), id, b, entry.Revision()); err != nil {
		e.t.Fatal(err)
	}
}

// delivered waits until target has taken exactly the events ids, in order
// (one at a time: slow on a loaded machine under -race).
func delivered(t *testing.T, target *hookTarget, ids ...string) {
	t.Helper()
	natstest.Eventually(t, 60*time.Second, func() error {
		if got := strings.Join(target.received(), " "); got != strings.Join(ids, " ") {
			return fmt.Errorf("target got %q, want %q", got, strings.Join(ids, " "))
		}
		return nil
	})
}

// Each attempt is recorded with its status and duration, newest first:
// failures make the hook failing since the first of them, a success
// clears it and is the last delivery, the last error stays.
func TestHookAttemptsAreRecorded(t *testing.T) {
	e := newEnv(t)
	e.runDispatcherWith(allowLoopback)
	target := newHookTarget(t)
	target.status.Store(http.StatusServiceUnavailable)
	h := e.putHook("a", target.srv.URL, 0)
	e.waitConsumer(h)
	e.publishID("a", "a1")
	natstest.Eventually(t, 10*time.Second, func() error {
		st, _ := e.hookState(h.ID)
		if len(st.Attempts) < 3 {
			return fmt.Errorf("%d attempts recorded", len(st.Attempts))
		}
		return nil
	})
	st, _ := e.hookState(h.ID)
	for i, a := range st.Attempts {
		if a.Status != "503" || a.OK || a.DurationMS <= 0 || a.Time.IsZero() || !strings.Contains(a.Error, "503") {
			t.Errorf("attempt %d = %+v: want a failed 503 with a time, duration and error", i, a)
		}
		if i > 0 && a.Time.After(st.Attempts[i-1].Time) {
			t.Errorf("attempt %d is newer than attempt %d: want newest first", i, i-1)
		}
	}
	first := st.Attempts[len(st.Attempts)-1].Time
	if !st.FailingSince.Equal(first) || !st.LastDelivery.IsZero() {
		t.Errorf("failing since %v, last delivery %v: want the first failure %v, no delivery", st.FailingSince, st.LastDelivery, first)
	}

	target.status.Store(http.StatusOK)
	delivered(t, target, "a1")
	natstest.Eventually(t, 10*time.Second, func() error {
		st, _ = e.hookState(h.ID)
		if len(st.Attempts) == 0 || !st.Attempts[0].OK {
			return fmt.Errorf("last attempt %+v, want the success", st.Attempts)
		}
		return nil
	})
	if a := st.Attempts[0]; a.Status != "200" || a.Error != "" || !st.FailingSince.IsZero() || !st.LastDelivery.Equal(a.Time) || !strings.Contains(st.LastError, "503") {
		t.Errorf("after the success: %+v: want 200, not failing, delivered then, the 503 as last error", st)
	}
}

// A target failing longer than HookDisableAfter gets the hook disabled:
// the dispatcher asks the registry with a disable command giving the
// reason. A disabled hook delivers nothing, its consumer stays, and once
// enabled the events that waited are delivered.
func TestFailingHookIsDisabledAndEnabled(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the disable, then for the event held at the disable (up to the pull expiry, 5s)")
	}
	e := newEnv(t)
	e.runDispatcherWith(func(c *dispatcher.Config) {
		allowLoopback(c)
		c.HookDisableAfter = time.Second
	})
	target := newHookTarget(t)
	target.status.Store(http.StatusBadGateway)
	// Enough attempts that a1 is not dead-lettered before the disable.
	h := e.putHook("a", target.srv.URL, 100)
	e.waitConsumer(h)
	start := time.Now()
	e.publishID("a", "a1")

	subject, err := events.HookCommandSubject(events.HookDisable, h.ID)
	if err != nil {
		t.Fatal(err)
	}
	cmds, err := e.js.Stream(t.Context(), events.StreamCommands)
	if err != nil {
		t.Fatal(err)
	}
	var raw *jetstream.RawStreamMsg
	natstest.Eventually(t, 15*time.Second, func() error {
		raw, err = cmds.GetLastMsgForSubject(t.Context(), subject)
		return err
	})
	if took := time.Since(start); took < time.Second {
		t.Errorf("disable asked %s after the first failure, want at least HookDisableAfter (1s)", took)
	}
	ev, err := events.Decode(raw.Header, raw.Data)
	if err != nil {
		t.Fatal(err)
	}
	var cmd events.HookCommand
	if err := json.Unmarshal(ev.Data(), &cmd); err != nil || ev.Type() != "hookbus.cmd.hook.disable" || cmd.ID != h.ID || !strings.Contains(cmd.Reason, "502") || !strings.Contains(cmd.Reason, "failing since") {
		t.Fatalf("disable command %s %+v, %v: want hookbus.cmd.hook.disable for the hook with the reason", ev.Type(), cmd, err)
	}
	if err := cmd.Validate(events.HookDisable); err != nil {
		t.Errorf("the dispatcher's disable command is invalid: %v", err)
	}

	// The registry stores it.
	e.updateHook(h.ID, func(h *events.Hook) {
		h.Status, h.Disabled, h.DisabledReason = events.HookDisabled, time.Now().UTC(), cmd.Reason
	})
	// The reader stops: tries stop growing (one in flight may end).
	var tries int32
	natstest.Eventually(t, 10*time.Second, func() error {
		n := target.tries.Load()
		if n != tries {
			tries = n
			return fmt.Errorf("still trying: %d", n)
		}
		time.Sleep(2 * 200 * time.Millisecond) // longer than MaxRetryDelay
		if target.tries.Load() != n {
			return fmt.Errorf("still trying")
		}
		return nil
	})
	target.status.Store(http.StatusOK)
	e.publishID("a", "a2")
	e.publishID("a", "a3")
	// Nothing is delivered while disabled, for longer than a retry takes.
	deadline := time.Now().Add(1500 * time.Millisecond)
	for time.Now().Before(deadline) {
		if n := target.tries.Load(); n != tries {
			t.Fatalf("a disabled hook's target got a request (%d tries, %d when disabled)", n, tries)
		}
		time.Sleep(50 * time.Millisecond)
	}
	cons, err := e.js.Consumer(t.Context(), events.StreamEvents, events.HookConsumer(h.ID))
	if err != nil {
		t.Fatalf("a disabled hook's consumer: %v, want it kept", err)
	}
	if info, err := cons.Info(t.Context()); err != nil || info.NumPending+uint64(info.NumAckPending) < 2 {
		t.Errorf("consumer info %+v, %v: want the events waiting", info, err)
	}

	e.updateHook(h.ID, func(h *events.Hook) {
		h.Status, h.Disabled, h.DisabledReason, h.Enabled = events.HookActive, time.Time{}, "", time.Now().UTC()
	})
	delivered(t, target, "a1", "a2", "a3")
	natstest.Eventually(t, 10*time.Second, func() error {
		if st, _ := e.hookState(h.ID); !st.FailingSince.IsZero() {
			return fmt.Errorf("still failing since %v", st.FailingSince)
		}
		return nil
	})

	// nextDisable waits for a disable command stored after raw.
	nextDisable := func(missing string) {
		t.Helper()
		natstest.Eventually(t, 15*time.Second, func() error {
			m, err := cmds.GetLastMsgForSubject(t.Context(), subject)
			if err != nil {
				return err
			}
			if m.Sequence == raw.Sequence {
				return errors.New(missing)
			}
			raw = m
			return nil
		})
	}

	// Failing again after the enable: a new spell, disabled again once it
	// lasts HookDisableAfter.
	target.status.Store(http.StatusBadGateway)
	again := time.Now()
	e.publishID("a", "a4")
	nextDisable("no second disable command")
	if took := time.Since(again); took < time.Second {
		t.Errorf("second disable asked %s after the failures began again, want at least 1s", took)
	}

	// Enabled while the target still fails: the failures before the
	// enable no longer count, so the hook gets HookDisableAfter again.
	e.updateHook(h.ID, func(h *events.Hook) { h.Status = events.HookDisabled })
	enabled := time.Now().UTC()
	e.updateHook(h.ID, func(h *events.Hook) { h.Status, h.Enabled = events.HookActive, enabled })
	nextDisable("no disable command after the enable")
	if took := time.Since(enabled); took < time.Second {
		t.Errorf("disable asked %s after the enable, want at least 1s", took)
	}
}

// A hook's rate spaces its deliveries: n events at rate r take at least
// (n-1)/r.
func TestHookRateLimit(t *testing.T) {
	e := newEnv(t)
	e.runDispatcherWith(allowLoopback)
	target := newHookTarget(t)
	const rate, n = 20.0, 21
	h := e.putHookWith("a", target.srv.URL, func(h *events.Hook) { h.Settings.Rate = rate })
	e.waitConsumer(h)
	var ids []string
	for i := range n {
		ids = append(ids, fmt.Sprintf("e%d", i))
	}
	start := time.Now()
	for _, id := range ids {
		e.publishID("a", id)
	}
	delivered(t, target, ids...)
	if took, least := time.Since(start), time.Duration(float64(n-1)/rate*float64(time.Second)); took < least {
		t.Errorf("%d deliveries at %v/s took %s, want at least %s", n, rate, took, least)
	}
}

// Successes are coalesced: many deliveries write the state about once a
// second, not once each; the last one is written all the same.
func TestHookStateWritesAreCoalesced(t *testing.T) {
	e := newEnv(t)
	e.runDispatcherWith(allowLoopback)
	target := newHookTarget(t)
	h := e.putHook("a", target.srv.URL, 0)
	e.waitConsumer(h)
	const n = 100
	var ids []string
	for i := range n {
		ids = append(ids, fmt.Sprintf("e%d", i))
	}
	start := time.Now()
	for _, id := range ids {
		e.publishID("a", id)
	}
	delivered(t, target, ids...)
	t.Logf("%d deliveries in %s", n, time.Since(start))
	var st events.HookState
	natstest.Eventually(t, 10*time.Second, func() error {
		st, _ = e.hookState(h.ID)
		if len(st.Attempts) != events.HookAttemptsKept || !st.LastDelivery.Equal(st.Attempts[0].Time) {
			return fmt.Errorf("state %d attempts, last delivery %v: want the last one flushed", len(st.Attempts), st.LastDelivery)
		}
		return nil
	})
	elapsed := time.Since(start)
	kvStream, err := e.js.Stream(t.Context(), "KV_"+events.BucketHookState)
	if err != nil {
		t.Fatal(err)
	}
	info, err := kvStream.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// The first success is written at once, then at most one write per
	// second of the run, plus the last flush.
	writes, most := info.State.LastSeq, uint64(elapsed/time.Second)+3
	if writes > most {
		t.Errorf("%d state writes for %d deliveries in %s, want at most %d", writes, n, elapsed, most)
	}
	t.Logf("%d deliveries in %s: %d state writes", n, elapsed, writes)
}

// A deleted hook's delivery state goes with it.
func TestDeletedHookStateGoes(t *testing.T) {
	e := newEnv(t)
	e.runDispatcherWith(allowLoopback)
	target := newHookTarget(t)
	h := e.putHook("a", target.srv.URL, 0)
	e.waitConsumer(h)
	e.publishID("a", "a1")
	delivered(t, target, "a1")
	natstest.Eventually(t, 10*time.Second, func() error {
		if _, rev := e.hookState(h.ID); rev == 0 {
			return fmt.Errorf("no state yet")
		}
		return nil
	})
	kv, err := e.js.KeyValue(t.Context(), events.BucketHooks)
	if err != nil {
		t.Fatal(err)
	}
	if err := kv.Delete(t.Context(), h.ID); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 10*time.Second, func() error {
		if _, rev := e.hookState(h.ID); rev != 0 {
			return fmt.Errorf("state still there")
		}
		return nil
	})
}

// An attempt with no HTTP answer is recorded with a word saying why.
func TestHookAttemptStatusWords(t *testing.T) {
	e := newEnv(t)
	e.runDispatcherWith(allowLoopback)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String() + "/"
	_ = ln.Close()
	gone := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-gone:
		}
	}))
	t.Cleanup(slow.Close)
	t.Cleanup(func() { close(gone) }) // before Close, which waits for the handlers
	tests := []struct {
		name, url, want string
		edit            func(*events.Hook)
	}{
		{"connection refused", closed, "refused", func(*events.Hook) {}},
		{"timeout", slow.URL, "timeout", func(h *events.Hook) { h.Settings.TimeoutMS = 100 }},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			node := fmt.Sprintf("w%d", i)
			h := e.putHookWith(node, tt.url, tt.edit)
			e.waitConsumer(h)
			e.publishID(node, "x-"+node)
			natstest.Eventually(t, 15*time.Second, func() error {
				st, _ := e.hookState(h.ID)
				if len(st.Attempts) == 0 {
					return fmt.Errorf("no attempt recorded")
				}
				if a := st.Attempts[0]; a.Status != tt.want || a.OK || a.Error == "" {
					return fmt.Errorf("attempt %+v, want status %s with the error", a, tt.want)
				}
				return nil
			})
		})
	}
}

// Two replicas share a hook's deliveries and its state: each writes with
// compare-and-swap and merges into what the other wrote, so no attempt is
// lost.
func TestHookStateReplicasMerge(t *testing.T) {
	e := newEnv(t)
	e.runDispatcherWith(allowLoopback)
	e.runDispatcherWith(allowLoopback)
	target := newHookTarget(t)
	target.status.Store(http.StatusServiceUnavailable)
	h := e.putHook("a", target.srv.URL, 100)
	e.waitConsumer(h)
	e.publishID("a", "a1")
	natstest.Eventually(t, 30*time.Second, func() error {
		if n := target.tries.Load(); n < 12 {
			return fmt.Errorf("%d tries", n)
		}
		return nil
	})
	target.status.Store(http.StatusOK)
	delivered(t, target, "a1")
	tries := int(target.tries.Load())
	natstest.Eventually(t, 10*time.Second, func() error {
		st, _ := e.hookState(h.ID)
		if want := min(tries, events.HookAttemptsKept); len(st.Attempts) != want || !st.Attempts[0].OK {
			return fmt.Errorf("%d attempts recorded for %d tries (want %d, the success first)", len(st.Attempts), tries, want)
		}
		return nil
	})
}

// Coalesced successes are written when the dispatcher stops.
func TestHookStateFlushedOnStop(t *testing.T) {
	e := newEnv(t)
	stop := e.runDispatcherWith(allowLoopback)
	target := newHookTarget(t)
	h := e.putHook("a", target.srv.URL, 0)
	e.waitConsumer(h)
	e.publishID("a", "a1")
	delivered(t, target, "a1")
	natstest.Eventually(t, 10*time.Second, func() error {
		if st, _ := e.hookState(h.ID); len(st.Attempts) != 1 {
			return fmt.Errorf("%d attempts recorded, want the first success, written at once", len(st.Attempts))
		}
		return nil
	})
	e.publishID("a", "a2")
	e.publishID("a", "a3")
	delivered(t, target, "a1", "a2", "a3")
	e.waitAcked(h) // the last attempt recorded: its ack follows the record
	stop()
	if st, _ := e.hookState(h.ID); len(st.Attempts) != 3 || !st.Attempts[0].OK || !st.LastDelivery.Equal(st.Attempts[0].Time) {
		t.Errorf("state after the stop: %d attempts, last delivery %v: want all 3, the last one delivered", len(st.Attempts), st.LastDelivery)
	}
}
