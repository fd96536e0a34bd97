package registry

import (
	"strings"
	"testing"
	"time"

	"github.com/hookbus/hookbus/pkg/events"
)

// A delete whose announcement failed after the hook was deleted is tried
// again (redelivered): it answers the hook it deleted and announces it,
// not not_found for its own deletion.
func TestDeleteRedeliveredAfterItsAnnouncementFailed(t *testing.T) {
	svc, hooks, _ := hookService(t)
	ctx := t.Context()
	spec := events.HookSpec{ID: strings.Repeat("cd", 16), Node: "blog", Type: events.HookWebhook, Arg: "https://a.example/", Persistent: true}
	if r, err := svc.executeHook(ctx, hooks, events.HookCreate, events.HookCommand{Hook: &spec}, 3001); err != nil || r.Error != nil {
		t.Fatalf("create: %+v, %v", r.Error, err)
	}
	// The lifecycle stream refuses the announcement.
	stream, err := svc.js.Stream(ctx, events.StreamLifecycle)
	if err != nil {
		t.Fatal(err)
	}
	cfg := stream.CachedInfo().Config
	small := cfg
	small.MaxMsgSize = 16
	if _, err := svc.js.UpdateStream(ctx, small); err != nil {
		t.Fatal(err)
	}
	del := events.HookCommand{ID: spec.ID}
	if _, err := svc.executeHookAttempt(ctx, hooks, events.HookDelete, del, 3002, false); err == nil {
		t.Fatal("delete announced although the stream refuses it")
	}
	if _, err := svc.js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	r, err := svc.executeHookAttempt(ctx, hooks, events.HookDelete, del, 3002, true)
	if err != nil || r.Error != nil || len(r.Hooks) != 1 || r.Hooks[0].ID != spec.ID || r.Hooks[0].Secret != "" {
		t.Fatalf("delete redelivered = %+v, %v: want the deleted hook, without its secret", r, err)
	}
	subject, _ := events.HookLifecycleSubject(spec.ID)
	last, err := svc.js.Stream(ctx, events.StreamLifecycle)
	if err != nil {
		t.Fatal(err)
	}
	m, err := last.GetLastMsgForSubject(ctx, subject)
	if err != nil || m.Header.Get("ce-type") != events.HookLifecycleTypePrefix+events.HookDeleted {
		t.Errorf("last lifecycle event of the hook: %v, %v: want hookbus.hook.deleted", m, err)
	}
	// A delete of a hook gone before the command (not redelivered) is
	// not_found still.
	r, err = svc.executeHookAttempt(ctx, hooks, events.HookDelete, del, 3003, false)
	if err != nil || r.Error == nil || r.Error.Code != events.CodeNotFound {
		t.Errorf("delete of a deleted hook = %+v, %v: want not_found", r, err)
	}
}

// A hook's consumer starts at its created time, compared with the times
// the NATS server stamps on events: a registry whose clock runs ahead of
// the server's must not date a hook after the server's now, or the events
// published right after the create answer would be skipped.
func TestHookCreatedIsNoLaterThanTheServersClock(t *testing.T) {
	svc, hooks, _ := hookService(t)
	ctx := t.Context()
	svc.now = func() time.Time { return time.Now().Add(time.Minute) } // a minute ahead
	spec := events.HookSpec{ID: strings.Repeat("ef", 16), Node: "blog", Type: events.HookWebhook, Arg: "https://a.example/", Persistent: true}
	r, err := svc.executeHook(ctx, hooks, events.HookCreate, events.HookCommand{Hook: &spec}, 4001)
	if err != nil || r.Error != nil || len(r.Hooks) != 1 {
		t.Fatalf("create: %+v, %v", r, err)
	}
	if c := r.Hooks[0].Created; c.After(time.Now()) {
		t.Errorf("hook created %s, after the server's now %s: events published now are skipped", c, time.Now())
	}
	stored, err := getHook(ctx, hooks, spec.ID)
	if err != nil || !stored.Created.Equal(r.Hooks[0].Created) {
		t.Errorf("stored created %s, %v: want the answered %s", stored.Created, err, r.Hooks[0].Created)
	}
}
