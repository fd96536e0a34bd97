package registry_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/hookbus/hookbus/internal/natstest"
	"github.com/hookbus/hookbus/pkg/client"
	"github.com/hookbus/hookbus/pkg/events"
	"github.com/hookbus/hookbus/services/registry"
)

func webhook(node, url string) events.HookSpec {
	return events.HookSpec{Node: node, Type: events.HookWebhook, Arg: url, Persistent: true}
}

func TestHookCreateListDelete(t *testing.T) {
	srv, c, js := setup(t)
	runRegistry(t, srv)
	ctx := ctxT(t)

	h, err := c.CreateHook(ctx, webhook("com.example.order.created", "https://a.example/hook"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h.Secret, "whsec_") || len(h.Secret) < len("whsec_")+32 {
		t.Errorf("created hook secret %q: want whsec_<base64 of %d bytes>", h.Secret, events.WebhookSecretBytes)
	}
	if h.Status != events.HookActive || h.Created.IsZero() || events.ValidateHookID(h.ID) != nil || h.Node != "com.example.order.created" {
		t.Errorf("created hook = %+v: want active, with a creation time and an id, on its node", h)
	}
	stored, err := js.KeyValue(ctx, events.BucketHooks)
	if err != nil {
		t.Fatal(err)
	}
	entry, err := stored.Get(ctx, h.ID)
	if err != nil {
		t.Fatalf("hook %s not in %s: %v", h.ID, events.BucketHooks, err)
	}
	var rec events.Hook
	if err := json.Unmarshal(entry.Value(), &rec); err != nil || rec.Secret != h.Secret || rec.Arg != h.Arg {
		t.Errorf("stored hook = %+v, %v: want the created hook with its secret", rec, err)
	}

	again, err := c.CreateHook(ctx, h.HookSpec)
	if err != nil || again.ID != h.ID || again.Secret != "" || !again.Created.Equal(h.Created) {
		t.Errorf("create sent again = %+v, %v: want the stored hook, without its secret", again, err)
	}
	other := h.HookSpec
	other.Arg = "https://b.example/hook"
	if _, err := c.CreateHook(ctx, other); !errors.Is(err, events.ErrInvalid) || !strings.Contains(err.Error(), "another declaration") {
		t.Errorf("create of an existing id with another declaration: %v, want invalid", err)
	}

	if _, err := c.CreateHook(ctx, webhook("com.example.*.deleted", "https://a.example/hook")); err != nil {
		t.Fatal(err)
	}
	all, err := c.ListHooks(ctx, events.HookFilter{})
	if err != nil || len(all) != 2 {
		t.Fatalf("list = %+v, %v: want 2 hooks", all, err)
	}
	for _, l := range all {
		if l.Secret != "" {
			t.Errorf("listed hook %s carries its secret", l.ID)
		}
	}
	one, err := c.ListHooks(ctx, events.HookFilter{Node: "com.example.order.created"})
	if err != nil || len(one) != 1 || one[0].ID != h.ID {
		t.Errorf("list by node = %+v, %v: want hook %s only", one, err, h.ID)
	}

	gone, err := c.DeleteHook(ctx, h.ID)
	if err != nil || gone.ID != h.ID || gone.Secret != "" {
		t.Errorf("delete = %+v, %v: want hook %s, without its secret", gone, err, h.ID)
	}
	if _, err := stored.Get(ctx, h.ID); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("hook %s after delete: %v, want not found", h.ID, err)
	}
	if _, err := c.DeleteHook(ctx, h.ID); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("delete again: %v, want not found", err)
	}

	types := hookLifecycle(t, js, h.ID)
	if strings.Join(types, " ") != "hookbus.hook.created hookbus.hook.deleted" {
		t.Errorf("lifecycle of hook %s = %v, want created then deleted", h.ID, types)
	}
}

// hookLifecycle returns the types of the lifecycle events stored about
// hook id, in order, and fails if one carries a secret.
func hookLifecycle(t *testing.T, js jetstream.JetStream, id string) []string {
	t.Helper()
	ctx := ctxT(t)
	subject, err := events.HookLifecycleSubject(id)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := js.OrderedConsumer(ctx, events.StreamLifecycle, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for {
		msg, err := cons.Next(jetstream.FetchMaxWait(time.Second))
		if errors.Is(err, jetstream.ErrNoMessages) || errors.Is(err, nats.ErrTimeout) {
			return types
		}
		if err != nil {
			t.Fatal(err)
		}
		e, err := events.Decode(msg.Headers(), msg.Data())
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(e.Data()), "whsec_") {
			t.Errorf("lifecycle event %s carries the hook's secret: %s", e.Type(), e.Data())
		}
		types = append(types, e.Type())
	}
}

// Libervia's delete: by node alone every hook on the node, with type and
// arg only the matching ones; the answer lists what was removed.
func TestHookBulkDelete(t *testing.T) {
	srv, c, _ := setup(t)
	runRegistry(t, srv)
	ctx := ctxT(t)
	for _, s := range []events.HookSpec{
		webhook("blog", "https://a.example/1"),
		webhook("blog", "https://a.example/2"),
		webhook("blog", "https://a.example/3"),
		webhook("blog.>", "https://a.example/1"),
		webhook("news", "https://a.example/1"),
	} {
		if _, err := c.CreateHook(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	one, err := c.DeleteHooks(ctx, events.HookFilter{Node: "blog", Type: events.HookWebhook, Arg: "https://a.example/2"})
	if err != nil || len(one) != 1 || one[0].Arg != "https://a.example/2" {
		t.Fatalf("delete by node, type and arg = %+v, %v: want the one hook", one, err)
	}
	rest, err := c.DeleteHooks(ctx, events.HookFilter{Node: "blog"})
	if err != nil || len(rest) != 2 {
		t.Fatalf("delete by node = %+v, %v: want the 2 hooks left on blog", rest, err)
	}
	none, err := c.DeleteHooks(ctx, events.HookFilter{Node: "blog"})
	if err != nil || len(none) != 0 {
		t.Fatalf("delete by node again = %+v, %v: want none", none, err)
	}
	left, err := c.ListHooks(ctx, events.HookFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var nodes []string
	for _, h := range left {
		nodes = append(nodes, h.Node)
	}
	if strings.Join(nodes, " ") != "blog.> news" {
		t.Errorf("hooks left = %v, want those on blog.> and news (a pattern is its own node)", nodes)
	}
}

// The registry checks what it is sent, whatever the sender checked: an
// invalid hook command is answered with an invalid error in the one error
// shape, and stores nothing.
func TestInvalidHookCommandsAreAnswered(t *testing.T) {
	srv, _, js := setup(t)
	runRegistry(t, srv)
	nc := natstest.Connect(t, srv)
	id := client.NewHookID()
	valid := webhook("blog", "https://a.example/1")
	valid.ID = id
	with := func(f func(*events.HookSpec)) events.HookCommand {
		s := valid
		f(&s)
		return events.HookCommand{Hook: &s}
	}
	cases := []struct {
		name    string
		subject string
		typ     string
		cmd     any
		want    string
	}{
		{"node with a space", "create." + id, "create", with(func(s *events.HookSpec) { s.Node = "a b" }), "node"},
		{"'>' not last", "create." + id, "create", with(func(s *events.HookSpec) { s.Node = "a.>.b" }), "node"},
		{"unknown type", "create." + id, "create", with(func(s *events.HookSpec) { s.Type = "python_file" }), "type"},
		{"temporary without a session", "create." + id, "create", with(func(s *events.HookSpec) { s.Persistent = false }), "session"},
		{"temporary in a session that is not alive", "create." + id, "create", with(func(s *events.HookSpec) { s.Persistent = false; s.Session = strings.Repeat("cd", 16) }), "session " + strings.Repeat("cd", 16) + " is not alive"},
		{"rotate with an overlap over 7 days", "rotate." + id, "rotate", map[string]any{"id": id, "overlap_seconds": 7*24*3600 + 1}, "overlap_seconds"},
		{"ftp URL", "create." + id, "create", with(func(s *events.HookSpec) { s.Arg = "ftp://a.example/" }), "http or https"},
		{"credentials in URL", "create." + id, "create", with(func(s *events.HookSpec) { s.Arg = "https://u:p@a.example/" }), "credentials"},
		{"negative timeout", "create." + id, "create", with(func(s *events.HookSpec) { s.Settings.TimeoutMS = -1 }), "timeout_ms"},
		{"subject names another hook", "create." + strings.Repeat("0", 32), "create", events.HookCommand{Hook: &valid}, "the subject names hook"},
		{"type does not match the subject", "create." + id, "delete", events.HookCommand{Hook: &valid}, "does not match its subject"},
		{"unknown field", "create." + id, "create", map[string]any{"hook": valid, "run": "rm -rf /"}, "unknown field"},
		{"bulk delete without node", "delete", "delete", events.HookCommand{Match: &events.HookFilter{Type: events.HookWebhook}}, "node"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := ctxT(t)
			named := ""
			if _, after, ok := strings.Cut(tc.subject, "."); ok {
				named = after
			}
			reply, hdr := sendHookCommand(t, ctx, nc, js, "hookbus.cmd.hook."+tc.subject, "hookbus.cmd.hook."+tc.typ, named, tc.cmd)
			if reply.Error == nil || reply.Error.Code != events.CodeInvalid || !strings.Contains(reply.Error.Message, tc.want) {
				t.Errorf("answer = %+v, want invalid mentioning %q", reply.Error, tc.want)
			}
			if hdr.Get(micro.ErrorCodeHeader) == "" {
				t.Errorf("error answer without %s header", micro.ErrorCodeHeader)
			}
		})
	}
	kv, err := js.KeyValue(ctxT(t), events.BucketHooks)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Get(ctxT(t), id); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("hook %s stored after invalid commands: %v", id, err)
	}
}

// sendHookCommand publishes cmd as a command CloudEvent of type typ on
// subject, with an answer subject for hook named, and returns the answer.
func sendHookCommand(t *testing.T, ctx context.Context, nc *nats.Conn, js jetstream.JetStream, subject, typ, named string, cmd any) (events.HookReply, nats.Header) {
	t.Helper()
	e := event.New()
	e.SetID(client.NewHookID())
	e.SetSource("/test")
	e.SetType(typ)
	if err := e.SetData(event.ApplicationJSON, cmd); err != nil {
		t.Fatal(err)
	}
	msg, err := events.Encode(subject, &e)
	if err != nil {
		t.Fatal(err)
	}
	answerTo, err := events.AnswerSubject("hook", named, client.NewHookID())
	if err != nil {
		t.Fatal(err)
	}
	sub, err := nc.SubscribeSync(answerTo)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	// The command goes out on another connection: the subscription must
	// be on the server before the answer can be.
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	msg.Header.Set(events.HeaderReplyTo, answerTo)
	if _, err := js.PublishMsg(ctx, msg); err != nil {
		t.Fatal(err)
	}
	m, err := sub.NextMsgWithContext(ctx)
	if err != nil {
		t.Fatalf("no answer on %s: %v", answerTo, err)
	}
	var r events.HookReply
	if err := json.Unmarshal(m.Data, &r); err != nil {
		t.Fatal(err)
	}
	return r, m.Header
}

// A hook command whose answer subject is not one of its hook's is refused
// unanswered, and the answer subject of another hook hears nothing: the
// secret of a new hook goes only to its creator's subject.
func TestHookCommandWithForeignReplySubjectIsRefused(t *testing.T) {
	srv, c, js := setup(t)
	runRegistry(t, srv)
	ctx := ctxT(t)
	nc := natstest.Connect(t, srv)
	spec := webhook("blog", "https://a.example/1")
	spec.ID = client.NewHookID()
	foreign := "hookbus.answer.hook." + strings.Repeat("a", 32) + ".x"
	sub, err := nc.SubscribeSync(foreign)
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	e := event.New()
	e.SetID(client.NewHookID())
	e.SetSource("/test")
	e.SetType("hookbus.cmd.hook.create")
	if err := e.SetData(event.ApplicationJSON, events.HookCommand{Hook: &spec}); err != nil {
		t.Fatal(err)
	}
	msg, err := events.Encode("hookbus.cmd.hook.create."+spec.ID, &e)
	if err != nil {
		t.Fatal(err)
	}
	msg.Header.Set(events.HeaderReplyTo, foreign)
	if _, err := js.PublishMsg(ctx, msg); err != nil {
		t.Fatal(err)
	}
	// A later command on the same consumer is answered once the refused
	// one is settled (one at a time, in order).
	if _, err := c.CreateHook(ctx, webhook("news", "https://a.example/2")); err != nil {
		t.Fatal(err)
	}
	if m, err := sub.NextMsg(100 * time.Millisecond); err == nil {
		t.Errorf("foreign answer subject got %s", m.Data)
	}
	hooks, err := c.ListHooks(ctx, events.HookFilter{Node: "blog"})
	if err != nil || len(hooks) != 0 {
		t.Errorf("hooks on blog = %+v, %v: want none (the command was refused)", hooks, err)
	}
}

// A webhook whose URL is a literal internal address, or a name resolving
// to one, is refused at create (a name that does not resolve is checked at
// delivery), unless the operator allowed its network.
func TestHookCreateRefusesInternalAddresses(t *testing.T) {
	srv, c, _ := setup(t)
	runRegistry(t, srv)
	ctx := ctxT(t)
	for _, url := range []string{"http://127.0.0.1:8080/", "http://[::1]/", "http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/", "http://[::ffff:127.0.0.1]/"} {
		_, err := c.CreateHook(ctx, webhook("a", url))
		if !errors.Is(err, events.ErrInvalid) || !strings.Contains(err.Error(), "address refused") {
			t.Errorf("create to %s: %v, want invalid, address refused", url, err)
		}
	}
	_, err := c.CreateHook(ctx, webhook("a", "http://localhost:8080/"))
	if !errors.Is(err, events.ErrInvalid) || !strings.Contains(err.Error(), "localhost resolves to") {
		t.Errorf("create to localhost: %v, want invalid, localhost resolves to a refused address", err)
	}
	if _, err := c.CreateHook(ctx, webhook("a", "http://no-such-host.invalid/")); err != nil {
		t.Errorf("create to a name that does not resolve: %v, want it stored (checked at delivery)", err)
	}

	srv2, c2, _ := setup(t)
	cfg := registry.DefaultConfig()
	cfg.ConsumerCheck = 200 * time.Millisecond
	cfg.WebhookAllow = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	allowing, err := registry.New(cfg, natstest.Connect(t, srv2), nil)
	if err != nil {
		t.Fatal(err)
	}
	natstest.RunService(t, allowing)
	if _, err := c2.CreateHook(ctx, webhook("a", "http://10.0.0.1/")); err != nil {
		t.Errorf("create to 10.0.0.1 with 10.0.0.0/8 allowed: %v", err)
	}
	if _, err := c2.CreateHook(ctx, webhook("a", "http://127.0.0.1/")); !errors.Is(err, events.ErrInvalid) {
		t.Errorf("create to 127.0.0.1 with only 10.0.0.0/8 allowed: %v, want invalid", err)
	}
	srv3, c3, _ := setup(t)
	cfg.WebhookAllow = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	loopback, err := registry.New(cfg, natstest.Connect(t, srv3), nil)
	if err != nil {
		t.Fatal(err)
	}
	natstest.RunService(t, loopback)
	if _, err := c3.CreateHook(ctx, webhook("a", "http://localhost:8080/")); err != nil {
		t.Errorf("create to localhost with loopback allowed: %v", err)
	}
}

// A create sent again by a client that writes an empty list of filters
// (as most JSON encoders do) is the same declaration as the stored hook,
// which has none: it is answered the stored hook, not refused.
func TestHookCreateSentAgainWithEmptyFilters(t *testing.T) {
	srv, _, js := setup(t)
	runRegistry(t, srv)
	nc := natstest.Connect(t, srv)
	ctx := ctxT(t)
	id := client.NewHookID()
	raw := map[string]any{"hook": map[string]any{
		"id": id, "node": "blog", "type": "webhook", "arg": "https://a.example/1",
		"persistent": true, "filters": []any{}, "settings": map[string]any{},
	}}
	first, _ := sendHookCommand(t, ctx, nc, js, "hookbus.cmd.hook.create."+id, "hookbus.cmd.hook.create", id, raw)
	if first.Error != nil || len(first.Hooks) != 1 {
		t.Fatalf("create = %+v", first)
	}
	again, _ := sendHookCommand(t, ctx, nc, js, "hookbus.cmd.hook.create."+id, "hookbus.cmd.hook.create", id, raw)
	if again.Error != nil || len(again.Hooks) != 1 || again.Hooks[0].ID != id || again.Hooks[0].Secret != "" {
		t.Errorf("create sent again = %+v, %+v: want the stored hook, without its secret", again.Hooks, again.Error)
	}
}

// A record in hookbus_hooks that is no hook (written by hand) is left out
// of lists and bulk deletes, which still answer for the others.
func TestUnreadableHookRecordIsLeftOut(t *testing.T) {
	srv, c, js := setup(t)
	runRegistry(t, srv)
	ctx := ctxT(t)
	h, err := c.CreateHook(ctx, webhook("blog", "https://a.example/in"))
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, events.BucketHooks)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, strings.Repeat("ee", 16), []byte("not json")); err != nil {
		t.Fatal(err)
	}
	hooks, err := c.ListHooks(ctx, events.HookFilter{})
	if err != nil || len(hooks) != 1 || hooks[0].ID != h.ID {
		t.Fatalf("list = %+v, %v: want the one readable hook", hooks, err)
	}
	deleted, err := c.DeleteHooks(ctx, events.HookFilter{Node: "blog"})
	if err != nil || len(deleted) != 1 {
		t.Fatalf("bulk delete = %+v, %v: want the one hook on blog", deleted, err)
	}
}
