package registry_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/internal/natstest"
	"github.com/hookbus/hookbus/pkg/client"
	"github.com/hookbus/hookbus/pkg/events"
)

// A temporary hook lives while its session's key does: once the key is
// gone the sweep removes the hook and announces it deleted with reason
// "owner gone"; a persistent hook on the same node stays.
func TestTemporaryHookGoesWithItsSession(t *testing.T) {
	srv, c, js := setup(t)
	runRegistry(t, srv)
	ctx := ctxT(t)
	s, err := c.HookSession(ctx)
	if err != nil {
		t.Fatal(err)
	}
	temp, err := s.CreateHook(ctx, webhook("blog", "https://a.example/temp"))
	if err != nil {
		t.Fatal(err)
	}
	if temp.Persistent || temp.Session != s.ID() || !strings.HasPrefix(temp.Secret, "whsec_") {
		t.Errorf("temporary hook = %+v: want persistent false, session %s, a secret", temp, s.ID())
	}
	kept, err := c.CreateHook(ctx, webhook("blog", "https://a.example/kept"))
	if err != nil {
		t.Fatal(err)
	}
	listed, err := c.ListHooks(ctx, events.HookFilter{Node: "blog"})
	if err != nil || len(listed) != 2 {
		t.Fatalf("list = %+v, %v: want both hooks", listed, err)
	}

	// The owner dies: its key goes (here deleted; a dead owner's expires).
	sessions, err := js.KeyValue(ctx, events.BucketHookSessions)
	if err != nil {
		t.Fatal(err)
	}
	if err := sessions.Delete(ctx, s.ID()); err != nil {
		t.Fatal(err)
	}
	hooks, err := js.KeyValue(ctx, events.BucketHooks)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := hooks.Get(ctx, temp.ID)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("temporary hook still stored 5 s after its session's key was deleted: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := hooks.Get(ctx, kept.ID); err != nil {
		t.Errorf("persistent hook gone with the session: %v", err)
	}
	reasons := deletedReasons(t, js, temp.ID)
	if len(reasons) != 1 || reasons[0] != events.HookReasonOwnerGone {
		t.Errorf("deleted events of the temporary hook: reasons %q, want one %q", reasons, events.HookReasonOwnerGone)
	}

	// The heartbeat finds the key gone: the session is lost, and says so.
	select {
	case <-s.Done():
	case <-time.After(2 * events.HookSessionHeartbeat):
		t.Fatal("session not stopped two heartbeats after its key was deleted")
	}
	if !errors.Is(s.Err(), client.ErrSessionLost) {
		t.Errorf("session Err = %v, want lost", s.Err())
	}
	if _, err := s.CreateHook(ctx, webhook("blog", "https://a.example/late")); !errors.Is(err, client.ErrSessionLost) {
		t.Errorf("create in a lost session: %v, want lost", err)
	}
}

// Close deletes the session's hooks at once, then its key.
func TestHookSessionClose(t *testing.T) {
	srv, c, js := setup(t)
	runRegistry(t, srv)
	ctx := ctxT(t)
	s, err := c.HookSession(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, u := range []string{"https://a.example/1", "https://a.example/2"} {
		h, err := s.CreateHook(ctx, webhook("blog", u))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, h.ID)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if left, err := c.ListHooks(ctx, events.HookFilter{}); err != nil || len(left) != 0 {
		t.Errorf("hooks after Close = %+v, %v: want none", left, err)
	}
	for _, id := range ids {
		if reasons := deletedReasons(t, js, id); len(reasons) != 1 || reasons[0] != events.HookReasonCommand {
			t.Errorf("hook %s deleted with reasons %q, want one %q", id, reasons, events.HookReasonCommand)
		}
	}
	sessions, err := js.KeyValue(ctx, events.BucketHookSessions)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sessions.Get(ctx, s.ID()); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("session key after Close: %v, want not found", err)
	}
	if _, err := s.CreateHook(ctx, webhook("blog", "https://a.example/3")); err == nil {
		t.Error("create after Close succeeded")
	}
}

// A secret rotated through the client: answered once, never listed.
func TestRotateHookSecret(t *testing.T) {
	srv, c, js := setup(t)
	runRegistry(t, srv)
	ctx := ctxT(t)
	h, err := c.CreateHook(ctx, webhook("blog", "https://a.example/"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := c.RotateHookSecret(ctx, h.ID, events.DefaultSecretOverlap)
	if err != nil {
		t.Fatal(err)
	}
	if r.Secret == "" || r.Secret == h.Secret || r.PreviousSecret != "" {
		t.Errorf("rotate answered secret %q, previous %q; want a new secret and not the old one", r.Secret, r.PreviousSecret)
	}
	if d := time.Until(r.PreviousExpires); d < 23*time.Hour || d > 24*time.Hour {
		t.Errorf("previous secret expires in %s, want 24h", d)
	}
	listed, err := c.ListHooks(ctx, events.HookFilter{})
	if err != nil || len(listed) != 1 || listed[0].Secret != "" || listed[0].PreviousSecret != "" {
		t.Errorf("list after rotate = %+v, %v: want the hook without secrets", listed, err)
	}
	if types := hookLifecycle(t, js, h.ID); strings.Join(types, " ") != "hookbus.hook.created hookbus.hook.secret_rotated" {
		t.Errorf("lifecycle = %v, want created then secret_rotated", types)
	}
	if _, err := c.RotateHookSecret(ctx, strings.Repeat("01", 16), time.Hour); !errors.Is(err, events.ErrNotFound) {
		t.Errorf("rotate of an unknown hook: %v, want not found", err)
	}
}

// deletedReasons returns the reason of each hookbus.hook.deleted event
// stored about hook id.
func deletedReasons(t *testing.T, js jetstream.JetStream, id string) []string {
	t.Helper()
	subject, err := events.HookLifecycleSubject(id)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := js.OrderedConsumer(ctxT(t), events.StreamLifecycle, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		t.Fatal(err)
	}
	var reasons []string
	for {
		msg, err := cons.Next(jetstream.FetchMaxWait(time.Second))
		if errors.Is(err, jetstream.ErrNoMessages) || errors.Is(err, nats.ErrTimeout) {
			return reasons
		}
		if err != nil {
			t.Fatal(err)
		}
		e, err := events.Decode(msg.Headers(), msg.Data())
		if err != nil {
			t.Fatal(err)
		}
		if e.Type() == events.HookLifecycleTypePrefix+events.HookDeleted {
			r, _ := e.Extensions()[events.HookReasonExtension].(string)
			reasons = append(reasons, r)
		}
	}
}

// A heartbeating owner keeps its hook past the session TTL.
func TestHeartbeatKeepsTheHookPastTheTTL(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the session TTL and more")
	}
	srv, c, js := setup(t)
	runRegistry(t, srv)
	ctx := t.Context()
	s, err := c.HookSession(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close(ctx) }()
	h, err := s.CreateHook(ctx, webhook("blog", "https://a.example/temp"))
	if err != nil {
		t.Fatal(err)
	}
	hooks, err := js.KeyValue(ctx, events.BucketHooks)
	if err != nil {
		t.Fatal(err)
	}
	end := time.Now().Add(events.HookSessionTTL + 3*time.Second)
	for time.Now().Before(end) {
		if _, err := hooks.Get(ctx, h.ID); err != nil {
			t.Fatalf("hook of a heartbeating session gone after %s: %v", time.Since(end.Add(-events.HookSessionTTL-3*time.Second)), err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if err := s.Err(); err != nil {
		t.Errorf("session Err = %v, want nil", err)
	}
}

// Two registries sweep the same hooks: each hook is deleted once (one
// delete marker in the bucket) and announced once.
func TestTwoRegistriesSweepOnce(t *testing.T) {
	srv, c, js := setup(t)
	runRegistry(t, srv)
	runRegistry(t, srv)
	ctx := ctxT(t)
	s, err := c.HookSession(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i := range 3 {
		h, err := s.CreateHook(ctx, webhook("blog", "https://a.example/"+strings.Repeat("x", i+1)))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, h.ID)
	}
	hooks, err := js.KeyValue(ctx, events.BucketHooks)
	if err != nil {
		t.Fatal(err)
	}
	before := bucketLastSeq(t, hooks)
	sessions, err := js.KeyValue(ctx, events.BucketHookSessions)
	if err != nil {
		t.Fatal(err)
	}
	if err := sessions.Delete(ctx, s.ID()); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 5*time.Second, func() error {
		if left, err := c.ListHooks(ctx, events.HookFilter{}); err != nil || len(left) != 0 {
			return fmt.Errorf("hooks left: %d, %v", len(left), err)
		}
		return nil
	})
	// Two more sweeps of each registry: nothing more is written.
	time.Sleep(2500 * time.Millisecond)
	if writes := bucketLastSeq(t, hooks) - before; writes != 3 {
		t.Errorf("%d writes to %s for 3 swept hooks, want 3 (one delete each)", writes, events.BucketHooks)
	}
	for _, id := range ids {
		if reasons := deletedReasons(t, js, id); len(reasons) != 1 {
			t.Errorf("hook %s announced deleted %d times, want once", id, len(reasons))
		}
	}
}

func bucketLastSeq(t *testing.T, kv jetstream.KeyValue) uint64 {
	t.Helper()
	st, err := kv.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return st.(*jetstream.KeyValueBucketStatus).StreamInfo().State.LastSeq
}
