//go:build e2e

package e2e

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/internal/natstest"
	"github.com/hookbus/hookbus/pkg/events"
)

// Protection for a failing target through `hookbus serve`: hook list shows
// the hook failing, then disabled once it has failed for
// --hook-disable-after (with the hookbus.hook.disabled lifecycle event);
// hook attempts shows the failed attempts; nothing is delivered while it
// is disabled; hook enable brings the events that waited.
func TestHookFailingDisabledEnabled(t *testing.T) {
	var status atomic.Int32
	status.Store(http.StatusServiceUnavailable)
	var mu sync.Mutex
	var got []string
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		code := int(status.Load())
		if code < 300 {
			mu.Lock()
			got = append(got, r.Header.Get("Ce-Id"))
			mu.Unlock()
		}
		w.WriteHeader(code)
	}))
	defer receiver.Close()
	received := func() string {
		mu.Lock()
		defer mu.Unlock()
		return strings.Join(got, " ")
	}

	srv := startServer(t, t.TempDir(), "--webhook-allow", "127.0.0.0/8", "--hook-disable-after", "2s")
	defer srv.stop(t)
	hook := func(t *testing.T, args ...string) string {
		t.Helper()
		stdout, stderr, code := run(t, append([]string{"hook"}, append(args, "--nats-url", srv.NATSURL)...)...)
		if code != 0 {
			t.Fatalf("hookbus hook %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, stdout, stderr)
		}
		return stdout
	}
	publish := func(id string) {
		t.Helper()
		if stdout, stderr, code := run(t, "publish", "--nats-url", srv.NATSURL, "--type", "e2e.hook.state", "--source", "/e2e", "--id", id, "--data", `{"n":1}`); code != 0 {
			t.Fatalf("publish %s: exit %d\n%s\n%s", id, code, stdout, stderr)
		}
	}
	listed := func(t *testing.T) events.Hook {
		t.Helper()
		var hooks []events.Hook
		decodeJSON(t, "hook list", hook(t, "list", "-n", "e2e.hook.state", "-o", "json"), &hooks)
		if len(hooks) != 1 {
			t.Fatalf("hook list = %+v, want the one hook", hooks)
		}
		return hooks[0]
	}

	var h events.Hook
	decodeJSON(t, "hook create", hook(t, "create", "-n", "e2e.hook.state", "-P", "--max-attempts", "100", receiver.URL, "-o", "json"), &h)
	publish("e1")

	natstest.Eventually(t, 30*time.Second, func() error {
		if l := listed(t); l.Status != events.HookFailing || !strings.Contains(l.LastError, "503") {
			return fmt.Errorf("listed %s, last error %q: want failing with the 503", l.Status, l.LastError)
		}
		return nil
	})
	table := hook(t, "list", "-n", "e2e.hook.state")
	if !strings.Contains(table, "failing") || !strings.Contains(table, "HOOKBUS_EVENTS") || !strings.Contains(table, "PENDING") {
		t.Errorf("list table:\n%s\nwant the hook failing, its service and pending", table)
	}
	natstest.Eventually(t, 30*time.Second, func() error {
		if l := listed(t); l.Status != events.HookDisabled {
			return fmt.Errorf("listed %s, want disabled", l.Status)
		}
		return nil
	})
	l := listed(t)
	if !strings.Contains(l.DisabledReason, "failing since") || !strings.Contains(l.DisabledReason, "503") {
		t.Errorf("disabled reason %q, want how long and the last error", l.DisabledReason)
	}
	attempts := hook(t, "attempts", h.ID)
	lines := strings.Split(strings.TrimSpace(attempts), "\n")
	if len(lines) < 2 || !strings.HasPrefix(lines[0], "TIME") || !strings.Contains(lines[1], " 503 ") {
		t.Errorf("hook attempts:\n%s\nwant a table of 503 attempts", attempts)
	}
	var st events.HookState
	decodeJSON(t, "hook attempts", hook(t, "attempts", h.ID, "-o", "json"), &st)
	if len(st.Attempts) == 0 || st.Attempts[0].Status != "503" || st.FailingSince.IsZero() {
		t.Errorf("hook attempts -o json = %+v, want the 503s, failing", st)
	}
	if lc := lifecycleTypes(t, srv, h.ID); !strings.Contains(lc, "hookbus.hook.disabled") {
		t.Errorf("lifecycle events of the hook: %s, want hookbus.hook.disabled", lc)
	}

	// Disabled: the target is back, but nothing is delivered.
	status.Store(http.StatusOK)
	publish("e2")
	natstest.Eventually(t, 30*time.Second, func() error {
		if l := listed(t); l.Pending == nil || *l.Pending < 2 {
			return fmt.Errorf("pending %v, want the 2 events waiting", l.Pending)
		}
		return nil
	})
	if r := received(); r != "" {
		t.Errorf("a disabled hook delivered %q", r)
	}

	if out := hook(t, "enable", h.ID); !strings.Contains(out, "active") {
		t.Errorf("hook enable printed:\n%s\nwant the hook active", out)
	}
	natstest.Eventually(t, 30*time.Second, func() error {
		if r := received(); r != "e1 e2" {
			return fmt.Errorf("received %q, want e1 e2", r)
		}
		return nil
	})
	natstest.Eventually(t, 30*time.Second, func() error {
		if l := listed(t); l.Status != events.HookActive || l.LastDelivery.IsZero() || l.Pending == nil || *l.Pending != 0 {
			return fmt.Errorf("listed %s, last delivery %v, pending %v: want active, delivered, none pending", l.Status, l.LastDelivery, l.Pending)
		}
		return nil
	})
	if lc := lifecycleTypes(t, srv, h.ID); lc != "hookbus.hook.created hookbus.hook.disabled hookbus.hook.enabled" {
		t.Errorf("lifecycle events of the hook: %s, want created, disabled, enabled", lc)
	}
}

// lifecycleTypes returns the types of the lifecycle events stored about
// hook id, in order.
func lifecycleTypes(t *testing.T, srv *server, id string) string {
	t.Helper()
	nc, err := nats.Connect(srv.NATSURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	subject, err := events.HookLifecycleSubject(id)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := js.OrderedConsumer(t.Context(), events.StreamLifecycle, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for {
		m, err := cons.Next(jetstream.FetchMaxWait(time.Second))
		if err != nil {
			break
		}
		e, err := events.Decode(m.Headers(), m.Data())
		if err != nil {
			t.Fatal(err)
		}
		types = append(types, e.Type())
	}
	return strings.Join(types, " ")
}
