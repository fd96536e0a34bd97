package dispatcher_test

import (
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/internal/natstest"
	"github.com/hookbus/hookbus/internal/topology"
	"github.com/hookbus/hookbus/pkg/client"
	"github.com/hookbus/hookbus/pkg/events"
	"github.com/hookbus/hookbus/services/dispatcher"
)

// putTypedHook stores a hook of any type as the registry would, created
// now, without the registry's checks (the dispatcher checks again).
func (e *env) putTypedHook(typ events.HookType, node, arg string, settings events.HookSettings) events.Hook {
	e.t.Helper()
	h := events.Hook{
		HookSpec: events.HookSpec{ID: client.NewHookID(), Node: node, Type: typ, Arg: arg, Persistent: true, Settings: settings},
		Created:  time.Now().UTC(),
		Status:   events.HookActive,
	}
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
	e.waitConsumer(h)
	return h
}

// richEvent is an event with every optional attribute and an extension.
func richEvent(t *testing.T, typ, id string) event.Event {
	t.Helper()
	ev := event.New()
	ev.SetID(id)
	ev.SetSource("/shop")
	ev.SetType(typ)
	ev.SetSubject("order-42")
	ev.SetTime(time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC))
	ev.SetDataSchema("https://shop.example/order.json")
	ev.SetExtension("tenant", "acme")
	if err := ev.SetData(event.ApplicationJSON, map[string]int{"total": 12}); err != nil {
		t.Fatal(err)
	}
	return ev
}

// A subject hook on a core subject: a subscriber gets the event in the
// bus's own binary form, the headers it has on hookbus.event.<type>.
func TestSubjectHookPublishesTheBusForm(t *testing.T) {
	e := newEnv(t)
	e.runDispatcher()
	sub, err := e.nc.SubscribeSync("hooks.orders")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	e.putTypedHook(events.HookSubject, "shop.order.*", "hooks.orders", events.HookSettings{})
	ev := richEvent(t, "shop.order.created", "o1")
	e.publish(ev)

	got, err := sub.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatalf("hooks.orders got nothing: %v", err)
	}
	stored, err := e.js.Stream(t.Context(), events.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	want, err := stored.GetLastMsgForSubject(t.Context(), "hookbus.event.shop.order.created")
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Data) != string(want.Data) {
		t.Errorf("data %q, want %q", got.Data, want.Data)
	}
	for name, v := range want.Header {
		if !slices.Equal(got.Header.Values(name), v) {
			t.Errorf("header %s = %q, want %q as on the bus", name, got.Header.Values(name), v)
		}
	}
	if got.Header.Get(events.HeaderMsgID) != events.MsgID("/shop", "o1") || got.Header.Get("ce-tenant") != "acme" {
		t.Errorf("headers %v: want Nats-Msg-Id and the extension", got.Header)
	}
	decoded, err := events.Decode(got.Header, got.Data)
	if err != nil || decoded.ID() != "o1" || decoded.Subject() != "order-42" {
		t.Errorf("decoded %v, %v: want event o1", decoded, err)
	}
}

// A subject a stream captures is published through JetStream: stored,
// once when two hooks deliver the same event (its Nats-Msg-Id); a publish
// the stream refuses is retried, then dead-lettered, not lost.
func TestSubjectHookToAStream(t *testing.T) {
	e := newEnv(t)
	e.runDispatcher()
	legacy, err := e.js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "LEGACY", Subjects: []string{"hooks.legacy.>"}, Duplicates: time.Minute,
		MaxMsgs: 1, Discard: jetstream.DiscardNew})
	if err != nil {
		t.Fatal(err)
	}
	a := e.putTypedHook(events.HookSubject, "shop.>", "hooks.legacy.orders", events.HookSettings{MaxAttempts: 2})
	b := e.putTypedHook(events.HookSubject, "shop.order.created", "hooks.legacy.orders", events.HookSettings{})
	e.publish(richEvent(t, "shop.order.created", "o1"))
	// Both hooks have settled the event: each consumer's ack floor is past it.
	for _, h := range []events.Hook{a, b} {
		natstest.Eventually(t, 10*time.Second, func() error {
			c, err := e.js.Consumer(t.Context(), events.StreamEvents, events.HookConsumer(h.ID))
			if err != nil {
				return err
			}
			info, err := c.Info(t.Context())
			if err != nil {
				return err
			}
			if info.AckFloor.Consumer < 1 {
				return fmt.Errorf("hook %s has not settled the event (%+v)", h.ID, info.AckFloor)
			}
			return nil
		})
	}
	info, err := legacy.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 {
		t.Fatalf("LEGACY holds %d messages, want the event once", info.State.Msgs)
	}
	m, err := legacy.GetLastMsgForSubject(t.Context(), "hooks.legacy.orders")
	if err != nil {
		t.Fatal(err)
	}
	if m.Header.Get("ce-id") != "o1" || m.Header.Get(events.HeaderMsgID) != events.MsgID("/shop", "o1") {
		t.Errorf("stored headers %v: want event o1 with its Nats-Msg-Id", m.Header)
	}
	// No dead letter: both were deliveries.
	for _, h := range []events.Hook{a, b} {
		subject, _ := events.DLQSubject(events.HookConsumer(h.ID))
		dlq, err := e.js.Stream(t.Context(), events.StreamDLQ)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := dlq.GetLastMsgForSubject(t.Context(), subject); err == nil {
			t.Errorf("hook %s dead-lettered the event", h.ID)
		}
	}

	// The stream is full (one message, new ones refused).
	e.publish(richEvent(t, "shop.order.deleted", "o2"))
	if reason := dlReason(e.deadLetter(a)); !strings.Contains(reason, "maximum messages exceeded") || !strings.Contains(reason, "attempt 2 of 2") {
		t.Errorf("dead letter reason %q: want the stream's refusal after 2 attempts", reason)
	}
}

// runUsersServer starts a JetStream server with two users: admin, who may
// do everything, and dispatcher, who may not publish to the subjects deny
// names; allow sets those again (a configuration reload).
func runUsersServer(t *testing.T, deny ...string) (srv *server.Server, allow func(deny ...string)) {
	t.Helper()
	storeDir := t.TempDir()
	opts := func(deny []string) *server.Options {
		return &server.Options{
			ServerName: "users", Host: "127.0.0.1", Port: server.RANDOM_PORT,
			JetStream: true, StoreDir: storeDir, NoSigs: true, NoLog: true,
			Users: []*server.User{
				{Username: "admin", Password: "admin-pw"},
				{Username: "dispatcher", Password: "dispatcher-pw", Permissions: &server.Permissions{
					Publish: &server.SubjectPermission{Allow: []string{">"}, Deny: deny},
				}},
			},
		}
	}
	s, err := server.NewServer(opts(deny))
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s, func(deny ...string) {
		t.Helper()
		o := opts(deny)
		o.Port = s.Addr().(*net.TCPAddr).Port
		if err := s.ReloadOptions(o); err != nil {
			t.Fatal(err)
		}
	}
}

// A subject the dispatcher's NATS user may not publish to: the event is
// dead-lettered at once, the reason saying so; another subject hook on the
// same connection still delivers (the refusal of an earlier attempt is not
// taken for a new one), and so does the first once the operator allows its
// subject.
func TestSubjectHookForbidden(t *testing.T) {
	srv, allow := runUsersServer(t, "hooks.forbidden.>")
	admin := natstest.Connect(t, srv, nats.UserInfo("admin", "admin-pw"))
	js, err := jetstream.New(admin)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := topology.Ensure(t.Context(), js, topology.DefaultConfig()); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, srv: srv, nc: admin, js: js}
	cfg := dispatcher.DefaultConfig()
	cfg.RetryDelay, cfg.MaxRetryDelay, cfg.ConsumerCheck, cfg.AckWait = 50*time.Millisecond, 200*time.Millisecond, 200*time.Millisecond, 2*time.Second
	runDispatcher := func() (stop func()) {
		svc, err := dispatcher.New(cfg, natstest.Connect(t, srv, nats.UserInfo("dispatcher", "dispatcher-pw")), nil)
		if err != nil {
			t.Fatal(err)
		}
		return natstest.RunService(t, svc)
	}
	stop := runDispatcher()
	sub, err := admin.SubscribeSync("hooks.allowed")
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.Flush(); err != nil {
		t.Fatal(err)
	}
	forbidden := e.putTypedHook(events.HookSubject, "shop.order.created", "hooks.forbidden.orders", events.HookSettings{MaxAttempts: 5})
	e.publish(richEvent(t, "shop.order.created", "o1"))
	dl := e.deadLetter(forbidden)
	reason := dlReason(dl)
	if !strings.Contains(reason, "may not publish to hooks.forbidden.orders") || !strings.Contains(reason, "ermissions violation") ||
		!strings.Contains(reason, "attempt 1 of 5") {
		t.Errorf("dead letter reason %q: want the permissions violation, at the first attempt", reason)
	}

	e.putTypedHook(events.HookSubject, "shop.order.paid", "hooks.allowed", events.HookSettings{})
	e.publish(richEvent(t, "shop.order.paid", "p1"))
	if m, err := sub.NextMsg(10 * time.Second); err != nil || m.Header.Get("ce-id") != "p1" {
		t.Errorf("hooks.allowed: %v, %v; want event p1", m, err)
	}

	// The operator allows the subject. nats-server 2.15.2 reads its
	// options without a lock while it serves a direct get, which the
	// dispatcher's watches make all the time, and a reload writes them
	// (a data race under -race): the dispatcher waits out the reload.
	stop()
	allow()
	runDispatcher()
	fixed, err := admin.SubscribeSync("hooks.forbidden.orders")
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.Flush(); err != nil {
		t.Fatal(err)
	}
	e.publish(richEvent(t, "shop.order.created", "o2"))
	if m, err := fixed.NextMsg(10 * time.Second); err != nil || m.Header.Get("ce-id") != "o2" {
		t.Errorf("hooks.forbidden.orders once allowed: %v, %v; want event o2", m, err)
	}
	if dl := e.deadLetter(forbidden); dl.Header.Get("ce-id") == "o2" || strings.Contains(dlReason(dl), "o2") {
		t.Errorf("event o2 dead-lettered once allowed: %v", dl.Header)
	}
}
