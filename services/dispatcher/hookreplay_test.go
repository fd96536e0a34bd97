package dispatcher_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/internal/natstest"
	"github.com/hookbus/hookbus/pkg/client"
	"github.com/hookbus/hookbus/pkg/events"
	"github.com/hookbus/hookbus/services/registry"
)

// replayTarget is a webhook receiver recording the webhook-id and ce-id
// of each request it answers 2xx, and the webhook-id of every request.
type replayTarget struct {
	srv    *httptest.Server
	status atomic.Int32
	mu     sync.Mutex
	tried  []string // webhook-id of every request
	got    []string // ce-id of every request answered 2xx
}

func newReplayTarget(t *testing.T, status int) *replayTarget {
	t.Helper()
	rt := &replayTarget{}
	rt.status.Store(int32(status))
	rt.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		code := int(rt.status.Load())
		rt.mu.Lock()
		rt.tried = append(rt.tried, r.Header.Get("webhook-id"))
		if code < 300 {
			rt.got = append(rt.got, r.Header.Get("Ce-Id"))
		}
		rt.mu.Unlock()
		w.WriteHeader(code)
	}))
	t.Cleanup(rt.srv.Close)
	return rt
}

func (rt *replayTarget) requests() (tried, got []string) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return append([]string(nil), rt.tried...), append([]string(nil), rt.got...)
}

// hookBus is a dispatcher and a registry on one server, and a client.
func hookBus(t *testing.T) (*env, *client.Client) {
	t.Helper()
	e := newEnv(t)
	e.runDispatcherWith(allowLoopback)
	cfg := registry.DefaultConfig()
	cfg.WebhookAllow = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	reg, err := registry.New(cfg, natstest.Connect(t, e.srv), nil)
	if err != nil {
		t.Fatal(err)
	}
	natstest.RunService(t, reg)
	c, err := client.New(natstest.Connect(t, e.srv))
	if err != nil {
		t.Fatal(err)
	}
	return e, c
}

// createHook creates a persistent webhook hook on node through the
// registry and waits for both its consumers.
func createHook(t *testing.T, e *env, c *client.Client, node, url string) events.Hook {
	t.Helper()
	h, err := c.CreateHook(t.Context(), events.HookSpec{Node: node, Type: events.HookWebhook, Arg: url, Persistent: true})
	if err != nil {
		t.Fatal(err)
	}
	e.waitConsumer(h)
	natstest.Eventually(t, 10*time.Second, func() error {
		_, err := e.js.Consumer(t.Context(), events.StreamEvents, events.HookReplayConsumer(h.ID))
		return err
	})
	return h
}

// hookDeadLetters waits for n dead letters of hook h and returns them.
func hookDeadLetters(t *testing.T, c *client.Client, h events.Hook, n int) []client.DeadLetter {
	t.Helper()
	var dls []client.DeadLetter
	natstest.Eventually(t, 10*time.Second, func() error {
		dls = dls[:0]
		for dl, err := range c.DeadLetters(t.Context(), events.HookConsumer(h.ID)) {
			if err != nil {
				return err
			}
			dls = append(dls, dl)
		}
		if len(dls) != n {
			return fmt.Errorf("%d dead letters of %s, want %d", len(dls), h.ID, n)
		}
		return nil
	})
	return dls
}

// A hook's dead letter, replayed once its receiver is fixed, reaches that
// hook alone, once, with the webhook-id of the failed attempt; another
// hook on the same node is not sent it again.
func TestHookReplay(t *testing.T) {
	e, c := hookBus(t)
	target := newReplayTarget(t, http.StatusNotFound)
	h := createHook(t, e, c, "com.example.*", target.srv.URL)
	other := newReplayTarget(t, http.StatusOK)
	createHook(t, e, c, "com.example.*", other.srv.URL)
	replays, err := e.js.Consumer(t.Context(), events.StreamEvents, events.HookReplayConsumer(h.ID))
	if err != nil {
		t.Fatal(err)
	}
	created := replays.CachedInfo().Created
	e.publishID("com.example.order", "o1")

	dl := hookDeadLetters(t, c, h, 1)[0]
	tried, _ := target.requests()
	if len(tried) != 1 || dl.Event == nil || dl.Event.ID() != "o1" {
		t.Fatalf("before the replay: %d requests, dead letter %+v; want 1 request and o1 dead-lettered", len(tried), dl)
	}
	target.status.Store(http.StatusOK) // the receiver is fixed
	if err := c.Replay(t.Context(), dl.Seq); err != nil {
		t.Fatalf("Replay = %v", err)
	}
	natstest.Eventually(t, 10*time.Second, func() error {
		if _, got := target.requests(); len(got) != 1 {
			return fmt.Errorf("target got %v", got)
		}
		return nil
	})
	time.Sleep(500 * time.Millisecond) // a second delivery would show
	tried, got := target.requests()
	if len(got) != 1 || got[0] != "o1" || len(tried) != 2 || tried[1] != tried[0] {
		t.Errorf("after the replay: requests with webhook-id %v, delivered %v; want o1 delivered once with webhook-id %s", tried, got, tried[0])
	}
	if _, got := other.requests(); len(got) != 1 {
		t.Errorf("the other hook got %v, want o1 once", got)
	}
	hookDeadLetters(t, c, h, 0)
	// The dispatcher's upkeep of notify queues leaves the hook's replay
	// consumer alone (its name starts with replay- too).
	if replays, err = e.js.Consumer(t.Context(), events.StreamEvents, events.HookReplayConsumer(h.ID)); err != nil {
		t.Fatal(err)
	}
	if c := replays.CachedInfo().Created; !c.Equal(created) {
		t.Errorf("%s created again at %s (first at %s)", events.HookReplayConsumer(h.ID), c, created)
	}
}

// A deleted hook's dead letter is not replayed: no one would take it.
// Its replay consumer goes with it.
func TestHookReplayDeletedHook(t *testing.T) {
	e, c := hookBus(t)
	target := newReplayTarget(t, http.StatusNotFound)
	h := createHook(t, e, c, "a", target.srv.URL)
	e.publishID("a", "a1")
	dl := hookDeadLetters(t, c, h, 1)[0]
	if _, err := c.DeleteHook(t.Context(), h.ID); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 10*time.Second, func() error {
		if _, err := e.js.Consumer(t.Context(), events.StreamEvents, events.HookReplayConsumer(h.ID)); err == nil {
			return fmt.Errorf("consumer %s still there", events.HookReplayConsumer(h.ID))
		}
		return nil
	})
	err := c.Replay(t.Context(), dl.Seq)
	if !errors.Is(err, client.ErrNotReplayable) {
		t.Fatalf("Replay for a deleted hook = %v, want ErrNotReplayable", err)
	}
	t.Logf("Replay: %v", err)
	if n := replayCount(t, e.js, h); n != 0 {
		t.Errorf("%d messages replayed, want none", n)
	}
	hookDeadLetters(t, c, h, 1)
}

// replayCount is how many messages HOOKBUS_EVENTS holds on
// hookbus.replay.hook-<id>.
func replayCount(t *testing.T, js jetstream.JetStream, h events.Hook) uint64 {
	t.Helper()
	subject, err := events.ReplaySubject(events.HookConsumer(h.ID))
	if err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(t.Context(), events.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context(), jetstream.WithSubjectFilter(subject))
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Subjects[subject]
}

// byReference is a dead letter by reference for subscriber, published on
// its subject, recording subject and stream sequence seq.
func byReference(subscriber, subject string, seq uint64) *nats.Msg {
	h := nats.Header{}
	h.Set(events.HeaderDLQSubscriber, subscriber)
	h.Set(events.HeaderDLQReason, "by reference")
	h.Set(events.HeaderDLQSubject, subject)
	h.Set(events.HeaderDLQStreamSeq, strconv.FormatUint(seq, 10))
	h.Set(events.HeaderDLQDeliveries, "1")
	h.Set(events.HeaderDLQBody, events.DLQBodyOmitted+": 10 bytes")
	return &nats.Msg{Subject: "hookbus.dlq." + subscriber, Header: h}
}

// A dead letter of a hook by reference is replayed only when the event it
// references is on the hook's node (as NATS matches subjects): one forged
// to reference an event outside it is refused; one referencing an event
// on it is replayed and delivered.
func TestHookReplayByReferenceOrigin(t *testing.T) {
	e, c := hookBus(t)
	target := newReplayTarget(t, http.StatusOK)
	h := createHook(t, e, c, "com.example.>", target.srv.URL)
	e.publishID("com.example.order.created", "mine")
	e.publishID("com.secret.card", "secret")
	e.publishID("com.example", "edge") // not under com.example.>
	natstest.Eventually(t, 10*time.Second, func() error {
		if _, got := target.requests(); len(got) != 1 {
			return fmt.Errorf("target got %v", got)
		}
		return nil
	})
	s, err := e.js.Stream(t.Context(), events.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	mine, err := s.GetLastMsgForSubject(t.Context(), "hookbus.event.com.example.order.created")
	if err != nil {
		t.Fatal(err)
	}
	secret, err := s.GetLastMsgForSubject(t.Context(), "hookbus.event.com.secret.card")
	if err != nil {
		t.Fatal(err)
	}
	edge, err := s.GetLastMsgForSubject(t.Context(), "hookbus.event.com.example")
	if err != nil {
		t.Fatal(err)
	}
	sub := events.HookConsumer(h.ID)
	for _, m := range []*nats.Msg{
		byReference(sub, "hookbus.event.com.secret.card", secret.Sequence),
		byReference(sub, "hookbus.event.com.example.order.created", secret.Sequence),
		byReference(sub, "hookbus.replay."+sub, secret.Sequence),
		byReference(sub, "hookbus.event.com.example", edge.Sequence),
		byReference(sub, "hookbus.event.com.example.order.created", mine.Sequence),
	} {
		if _, err := e.js.PublishMsg(t.Context(), m); err != nil {
			t.Fatal(err)
		}
	}
	dls := hookDeadLetters(t, c, h, 5)
	for _, dl := range dls[:4] {
		err := c.Replay(t.Context(), dl.Seq)
		if !errors.Is(err, client.ErrNotReplayable) {
			t.Errorf("Replay of a dead letter recording %s by reference to %d = %v, want ErrNotReplayable", dl.Subject, dl.StreamSeq, err)
		} else {
			t.Logf("Replay %d: %v", dl.Seq, err)
		}
	}
	if n := replayCount(t, e.js, h); n != 0 {
		t.Errorf("%d messages replayed, want none", n)
	}
	if err := c.Replay(t.Context(), dls[4].Seq); err != nil {
		t.Fatalf("Replay of a dead letter by reference to the hook's event = %v", err)
	}
	natstest.Eventually(t, 10*time.Second, func() error {
		if _, got := target.requests(); len(got) != 2 || got[1] != "mine" {
			return fmt.Errorf("target got %v, want mine twice", got)
		}
		return nil
	})
	hookDeadLetters(t, c, h, 4)
}

// A disabled hook's replays wait, as its events do, and are delivered
// once it is enabled; the hook's filters decide for a replay too.
func TestHookReplayWaitsWhileDisabled(t *testing.T) {
	e, c := hookBus(t)
	target := newReplayTarget(t, http.StatusNotFound)
	h := createHook(t, e, c, "a", target.srv.URL)
	e.publishID("a", "a1")
	dl := hookDeadLetters(t, c, h, 1)[0]
	if _, err := c.DisableHook(t.Context(), h.ID, "test"); err != nil {
		t.Fatal(err)
	}
	target.status.Store(http.StatusOK)
	// The dispatcher stops the hook's readers once it sees the status.
	natstest.Eventually(t, 10*time.Second, func() error {
		info, err := e.js.Consumer(t.Context(), events.StreamEvents, events.HookReplayConsumer(h.ID))
		if err != nil {
			return err
		}
		if n := info.CachedInfo().NumWaiting; n != 0 {
			return fmt.Errorf("%d pulls waiting on %s", n, events.HookReplayConsumer(h.ID))
		}
		return nil
	})
	if err := c.Replay(t.Context(), dl.Seq); err != nil {
		t.Fatalf("Replay = %v", err)
	}
	time.Sleep(time.Second)
	if _, got := target.requests(); len(got) != 0 {
		t.Fatalf("a disabled hook was delivered %v", got)
	}
	if _, err := c.EnableHook(t.Context(), h.ID); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 10*time.Second, func() error {
		if _, got := target.requests(); len(got) != 1 || got[0] != "a1" {
			return fmt.Errorf("target got %v, want a1", got)
		}
		return nil
	})
}
