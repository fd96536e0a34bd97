package dispatcher_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/internal/natstest"
	"github.com/hookbus/hookbus/pkg/client"
	"github.com/hookbus/hookbus/pkg/events"
	"github.com/hookbus/hookbus/services/dispatcher"
)

// hookTarget is a local webhook receiver: it answers each request with
// the status status() gives and records the ids of the events it took.
type hookTarget struct {
	srv    *httptest.Server
	status atomic.Int32
	tries  atomic.Int32
	mu     sync.Mutex
	got    []string // ce-id of every event answered 2xx
}

func newHookTarget(t *testing.T) *hookTarget {
	t.Helper()
	h := &hookTarget{}
	h.status.Store(http.StatusOK)
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		h.tries.Add(1)
		code := int(h.status.Load())
		if code < 300 {
			h.mu.Lock()
			h.got = append(h.got, r.Header.Get("Ce-Id"))
			h.mu.Unlock()
		}
		w.WriteHeader(code)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hookTarget) received() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.got...)
}

// allowLoopback lets the dispatcher reach the tests' local targets.
func allowLoopback(c *dispatcher.Config) {
	c.WebhookAllow = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
}

// putHook stores a webhook hook as the registry would, created now.
func (e *env) putHook(node, url string, maxAttempts int, filters ...events.HookMatch) events.Hook {
	e.t.Helper()
	return e.putHookWith(node, url, func(h *events.Hook) {
		h.Settings.MaxAttempts, h.Filters = maxAttempts, filters
	})
}

// putTemporaryHook stores a temporary webhook hook, created now.
func (e *env) putTemporaryHook(node, url string) events.Hook {
	e.t.Helper()
	return e.putHookWith(node, url, func(h *events.Hook) {
		h.Persistent, h.Session = false, client.NewHookID()
	})
}

// putHookWith stores a webhook hook as the registry would, created now,
// with the changes edit makes.
func (e *env) putHookWith(node, url string, edit func(*events.Hook)) events.Hook {
	e.t.Helper()
	h := events.Hook{
		HookSpec: events.HookSpec{ID: client.NewHookID(), Node: node, Type: events.HookWebhook, Arg: url, Persistent: true},
		Created:  time.Now().UTC(),
		Status:   events.HookActive,
		Secret:   "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
	}
	edit(&h)
	kv, err := e.js.KeyValue(e.t.Context(), events.BucketHooks)
	if err != nil {
		e.t.Fatal(err)
	}
	b, err := json.Marshal(h)
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := kv.Create(e.t.Context(), h.ID, b); err != nil {
		e.t.Fatal(err)
	}
	return h
}

// publishID stores an event of type typ with id.
func (e *env) publishID(typ, id string) {
	e.t.Helper()
	ev := event.New()
	ev.SetID(id)
	ev.SetSource("/test")
	ev.SetType(typ)
	if err := ev.SetData(event.ApplicationJSON, map[string]int{"n": 1}); err != nil {
		e.t.Fatal(err)
	}
	e.publish(ev)
}

// waitConsumer waits until the dispatcher has the hook's consumer.
func (e *env) waitConsumer(h events.Hook) {
	e.t.Helper()
	natstest.Eventually(e.t, 10*time.Second, func() error {
		_, err := e.js.Consumer(e.t.Context(), events.StreamEvents, events.HookConsumer(h.ID))
		return err
	})
}

// deadLetter returns the dead letter of hook h, waiting for it.
func (e *env) deadLetter(h events.Hook) *jetstream.RawStreamMsg {
	e.t.Helper()
	subject, err := events.DLQSubject(events.HookConsumer(h.ID))
	if err != nil {
		e.t.Fatal(err)
	}
	var m *jetstream.RawStreamMsg
	natstest.Eventually(e.t, 10*time.Second, func() error {
		s, err := e.js.Stream(e.t.Context(), events.StreamDLQ)
		if err != nil {
			return err
		}
		m, err = s.GetLastMsgForSubject(e.t.Context(), subject)
		return err
	})
	return m
}

// A hook gets the events of its node (wildcards as NATS matches them),
// from its creation on; a failing target is retried until it answers.
func TestHookDeliversItsNodesEvents(t *testing.T) {
	e := newEnv(t)
	e.runDispatcherWith(allowLoopback)
	target := newHookTarget(t)
	target.status.Store(http.StatusServiceUnavailable)
	e.publishID("com.example.order.created", "before-the-hook")
	h := e.putHook("com.example.*.created", target.srv.URL, 0)
	e.waitConsumer(h)

	e.publishID("com.example.order.created", "o1")
	e.publishID("com.example.order.deleted", "o2")
	e.publishID("com.example.user.created", "u1")
	natstest.Eventually(t, 10*time.Second, func() error {
		if target.tries.Load() < 2 {
			return fmt.Errorf("%d tries", target.tries.Load())
		}
		return nil
	})
	target.status.Store(http.StatusOK) // the target comes back
	natstest.Eventually(t, 10*time.Second, func() error {
		if got := target.received(); strings.Join(got, " ") != "o1 u1" {
			return fmt.Errorf("target got %v, want o1 u1 in order", got)
		}
		return nil
	})
}

// A 4xx is final: the event is dead-lettered for hook-<id> at once, with
// the reason; 5xx are retried up to the hook's attempts, then
// dead-lettered.
func TestHookDeadLetters(t *testing.T) {
	e := newEnv(t)
	e.runDispatcherWith(allowLoopback)
	gone := newHookTarget(t)
	gone.status.Store(http.StatusNotFound)
	failing := newHookTarget(t)
	failing.status.Store(http.StatusInternalServerError)
	h404 := e.putHook("a", gone.srv.URL, 5)
	h500 := e.putHook("b", failing.srv.URL, 3)
	e.waitConsumer(h404)
	e.waitConsumer(h500)
	e.publishID("a", "a1")
	e.publishID("b", "b1")

	dl := e.deadLetter(h404)
	if n := gone.tries.Load(); n != 1 || !strings.Contains(dlReason(dl), "404") {
		t.Errorf("404: %d tries, dead letter headers %v; want 1 try and the reason", n, dl.Header)
	}
	dl = e.deadLetter(h500)
	if n := failing.tries.Load(); n != 3 || !strings.Contains(dlReason(dl), "500") {
		t.Errorf("500: %d tries, dead letter headers %v; want 3 tries and the reason", n, dl.Header)
	}
}

func dlReason(m *jetstream.RawStreamMsg) string { return m.Header.Get(events.HeaderDLQReason) }

// Without the operator's allow-list, a loopback target is refused at
// delivery: the event is dead-lettered and the target never reached.
func TestHookRefusesLoopbackByDefault(t *testing.T) {
	e := newEnv(t)
	e.runDispatcher()
	target := newHookTarget(t)
	h := e.putHook("a", target.srv.URL, 5)
	e.waitConsumer(h)
	e.publishID("a", "a1")
	if reason := dlReason(e.deadLetter(h)); !strings.Contains(reason, "address refused") {
		t.Errorf("dead letter reason %q, want the refused address", reason)
	}
	if n := target.tries.Load(); n != 0 {
		t.Errorf("the loopback target got %d requests", n)
	}
}

// waitAcked waits until hook h's consumer has every event acknowledged:
// a dispatcher stopped before that delivers the last event again (at
// least once), which a test counting deliveries must not race.
func (e *env) waitAcked(h events.Hook) {
	e.t.Helper()
	natstest.Eventually(e.t, 10*time.Second, func() error {
		info, err := e.consumer(events.HookConsumer(h.ID))
		if err != nil {
			return err
		}
		if info.NumAckPending != 0 || info.NumPending != 0 {
			return fmt.Errorf("hook consumer: %d events in progress, %d waiting", info.NumAckPending, info.NumPending)
		}
		return nil
	})
}

// A persistent hook outlives the dispatcher: events published while it
// and the target were down are delivered once both are back.
func TestHookSurvivesADispatcherRestart(t *testing.T) {
	e := newEnv(t)
	stop := e.runDispatcherWith(allowLoopback)
	target := newHookTarget(t)
	h := e.putHook("a", target.srv.URL, 0)
	e.waitConsumer(h)
	e.publishID("a", "before")
	natstest.Eventually(t, 10*time.Second, func() error {
		if len(target.received()) != 1 {
			return fmt.Errorf("target got %v", target.received())
		}
		return nil
	})
	e.waitAcked(h)
	stop()
	target.status.Store(http.StatusServiceUnavailable)
	e.publishID("a", "while-down")
	e.runDispatcherWith(allowLoopback)
	natstest.Eventually(t, 10*time.Second, func() error {
		if target.tries.Load() < 3 {
			return fmt.Errorf("%d tries", target.tries.Load())
		}
		return nil
	})
	target.status.Store(http.StatusOK)
	natstest.Eventually(t, 10*time.Second, func() error {
		if got := target.received(); strings.Join(got, " ") != "before while-down" {
			return fmt.Errorf("target got %v", got)
		}
		return nil
	})
}

// A deleted hook's consumer goes, and its events stop.
func TestDeletedHookStops(t *testing.T) {
	e := newEnv(t)
	e.runDispatcherWith(allowLoopback)
	target := newHookTarget(t)
	h := e.putHook("a", target.srv.URL, 0)
	other := newHookTarget(t)
	kept := e.putHook("a", other.srv.URL, 0)
	e.waitConsumer(h)
	e.waitConsumer(kept)
	kv, err := e.js.KeyValue(t.Context(), events.BucketHooks)
	if err != nil {
		t.Fatal(err)
	}
	if err := kv.Delete(t.Context(), h.ID); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 10*time.Second, func() error {
		if _, err := e.js.Consumer(t.Context(), events.StreamEvents, events.HookConsumer(h.ID)); err == nil {
			return fmt.Errorf("consumer %s still there", events.HookConsumer(h.ID))
		}
		return nil
	})
	e.publishID("a", "after")
	natstest.Eventually(t, 10*time.Second, func() error {
		if len(other.received()) != 1 {
			return fmt.Errorf("the kept hook got %v", other.received())
		}
		return nil
	})
	if n := target.tries.Load(); n != 0 {
		t.Errorf("a deleted hook's target got %d requests", n)
	}
}

// Which events reach which hooks: the node as NATS matches subjects, then
// the attribute filters.
func TestHookRouting(t *testing.T) {
	e := newEnv(t)
	e.runDispatcherWith(allowLoopback)
	hooks := []struct {
		name    string
		node    string
		filters []events.HookMatch
		want    string // ids of the events it gets, in order
	}{
		{"exact type", "shop.order.created", nil, "1 2"},
		{"one-token wildcard", "shop.*.created", nil, "1 2 3"},
		{"rest wildcard", "shop.>", nil, "1 2 3 4 5"},
		{"source prefix", "shop.>", []events.HookMatch{{Attr: "source", Op: events.MatchPrefix, Value: "/eu/"}}, "2 4"},
		{"subject suffix", "shop.order.*", []events.HookMatch{{Attr: "subject", Op: events.MatchSuffix, Value: "-vip"}}, "1 4"},
		{"extension exact", "shop.>", []events.HookMatch{{Attr: "tenant", Op: events.MatchExact, Value: "acme"}}, "3"},
		{"nothing", "other.>", nil, ""},
	}
	type run struct {
		target *hookTarget
		want   string
	}
	var runs []run
	for _, h := range hooks {
		target := newHookTarget(t)
		e.waitConsumer(e.putHook(h.node, target.srv.URL, 0, h.filters...))
		runs = append(runs, run{target, h.want})
	}
	publish := func(typ, id, source, subject, tenant string) {
		ev := event.New()
		ev.SetID(id)
		ev.SetSource(source)
		ev.SetType(typ)
		ev.SetSubject(subject)
		if tenant != "" {
			ev.SetExtension("tenant", tenant)
		}
		if err := ev.SetData(event.ApplicationJSON, map[string]int{"n": 1}); err != nil {
			t.Fatal(err)
		}
		e.publish(ev)
	}
	publish("shop.order.created", "1", "/us/shop", "o-1-vip", "")
	publish("shop.order.created", "2", "/eu/shop", "o-2", "")
	publish("shop.user.created", "3", "/us/shop", "u-3", "acme")
	publish("shop.order.deleted", "4", "/eu/shop", "o-4-vip", "")
	publish("shop.order.paid.late", "5", "/us/shop", "o-5", "")
	for i, h := range hooks {
		natstest.Eventually(t, 10*time.Second, func() error {
			if got := strings.Join(runs[i].target.received(), " "); got != h.want {
				return fmt.Errorf("hook %s got %q, want %q", h.name, got, h.want)
			}
			return nil
		})
	}
	// Once every hook has had its events, none got more.
	for i, h := range hooks {
		if got := strings.Join(runs[i].target.received(), " "); got != h.want {
			t.Errorf("hook %s got %q in the end, want %q", h.name, got, h.want)
		}
	}
}
