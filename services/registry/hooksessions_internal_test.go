package registry

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/internal/natstest"
	"github.com/hookbus/hookbus/pkg/events"
)

// hookService returns a registry that is not running, with its buckets.
func hookService(t *testing.T) (*Service, jetstream.KeyValue, jetstream.KeyValue) {
	t.Helper()
	srv, js := natstest.RunTopology(t)
	svc, err := New(DefaultConfig(), natstest.Connect(t, srv), nil)
	if err != nil {
		t.Fatal(err)
	}
	hooks, err := js.KeyValue(t.Context(), events.BucketHooks)
	if err != nil {
		t.Fatal(err)
	}
	if svc.hookSessions, err = js.KeyValue(t.Context(), events.BucketHookSessions); err != nil {
		t.Fatal(err)
	}
	return svc, hooks, svc.hookSessions
}

// A rotate redelivered (the same command sequence) answers the secret it
// made and writes nothing; the next rotate keeps the one before as the
// previous secret.
func TestRotateRedeliveredAnswersTheSameSecret(t *testing.T) {
	svc, hooks, _ := hookService(t)
	ctx := t.Context()
	spec := events.HookSpec{ID: strings.Repeat("ab", 16), Node: "blog", Type: events.HookWebhook, Arg: "https://a.example/", Persistent: true}
	created, err := svc.executeHook(ctx, hooks, events.HookCreate, events.HookCommand{Hook: &spec}, 2001)
	if err != nil || created.Error != nil {
		t.Fatal(err, created.Error)
	}
	first := created.Hooks[0].Secret
	hour := int64(3600)
	rotate := events.HookCommand{ID: spec.ID, OverlapSeconds: &hour}
	r1, err := svc.executeHook(ctx, hooks, events.HookRotate, rotate, 2002)
	if err != nil || r1.Error != nil {
		t.Fatal(err, r1.Error)
	}
	second := r1.Hooks[0].Secret
	if second == "" || second == first || r1.Hooks[0].PreviousSecret != "" {
		t.Fatalf("rotate answered secret %q (previous %q answered: %q), want a new secret only", second, first, r1.Hooks[0].PreviousSecret)
	}
	before := revision(t, hooks)
	r2, err := svc.executeHook(ctx, hooks, events.HookRotate, rotate, 2002)
	if err != nil || r2.Error != nil || r2.Hooks[0].Secret != second {
		t.Errorf("rotate redelivered = %+v, %v: want the same secret %q", r2, err, second)
	}
	if after := revision(t, hooks); after != before {
		t.Errorf("rotate redelivered wrote to the bucket (revision %d -> %d)", before, after)
	}
	stored, err := getHook(ctx, hooks, spec.ID)
	if err != nil {
		t.Fatal(err)
	}
	if stored.Secret != second || stored.PreviousSecret != first {
		t.Errorf("stored secrets = %q, previous %q; want %q, previous %q", stored.Secret, stored.PreviousSecret, second, first)
	}
	if d := time.Until(stored.PreviousExpires); d < 59*time.Minute || d > time.Hour {
		t.Errorf("previous secret expires in %s, want the overlap, 1h", d)
	}

	zero := int64(0)
	r3, err := svc.executeHook(ctx, hooks, events.HookRotate, events.HookCommand{ID: spec.ID, OverlapSeconds: &zero}, 2003)
	if err != nil || r3.Error != nil {
		t.Fatal(err, r3.Error)
	}
	if stored, _ = getHook(ctx, hooks, spec.ID); stored.PreviousSecret != "" || !stored.PreviousExpires.IsZero() || stored.Secret == second {
		t.Errorf("after a rotate without overlap: previous %q until %v, secret %q; want no previous secret and a new one", stored.PreviousSecret, stored.PreviousExpires, stored.Secret)
	}
}

// Two sweeps that saw the same hook (two registries, or one whose watch
// lags) delete it once: the second's compare-and-swap loses.
func TestSweepDeletesOnce(t *testing.T) {
	svc, hooks, sessions := hookService(t)
	ctx := t.Context()
	session := strings.Repeat("cd", 16)
	if _, err := sessions.Create(ctx, session, []byte("now")); err != nil {
		t.Fatal(err)
	}
	spec := events.HookSpec{ID: strings.Repeat("ab", 16), Node: "blog", Type: events.HookWebhook, Arg: "https://a.example/", Session: session}
	if r, err := svc.executeHook(ctx, hooks, events.HookCreate, events.HookCommand{Hook: &spec}, 3001); err != nil || r.Error != nil {
		t.Fatal(err, r.Error)
	}
	entry, err := hooks.Get(ctx, spec.ID)
	if err != nil {
		t.Fatal(err)
	}
	view := newTemporaryHooks()
	if err := view.apply(entry); err != nil {
		t.Fatal(err)
	}
	if left := svc.sweep(ctx, hooks, view, nil); len(left) != 0 {
		t.Fatalf("sweep with a live session left %d announcements", len(left))
	}
	if _, err := hooks.Get(ctx, spec.ID); err != nil {
		t.Fatalf("hook of a live session swept: %v", err)
	}
	if err := sessions.Delete(ctx, session); err != nil {
		t.Fatal(err)
	}
	svc.sweep(ctx, hooks, view, nil)
	if _, err := hooks.Get(ctx, spec.ID); err == nil {
		t.Fatal("hook of a gone session not swept")
	}
	before := revision(t, hooks)
	svc.sweep(ctx, hooks, view, nil)
	if after := revision(t, hooks); after != before {
		t.Errorf("a second sweep of the same view wrote to the bucket (revision %d -> %d): deleted twice", before, after)
	}
}

// Only a webhook has a secret: rotating another type, or a hook that does
// not exist, is refused with the matching code.
func TestRotateRefused(t *testing.T) {
	svc, hooks, _ := hookService(t)
	ctx := t.Context()
	other := strings.Repeat("ef", 16)
	if _, err := hooks.Create(ctx, other, []byte(`{"id":"`+other+`","node":"blog","type":"subject","arg":"legacy.blog","persistent":true,"status":"active"}`)); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		id   string
		code events.ErrorCode
		want string
	}{
		{"unknown id", strings.Repeat("01", 16), events.CodeNotFound, "does not exist"},
		{"not a webhook", other, events.CodeInvalid, "only a webhook"},
	}
	for _, tc := range cases {
		r, err := svc.executeHook(ctx, hooks, events.HookRotate, events.HookCommand{ID: tc.id}, 4001)
		if err != nil || r.Error == nil || r.Error.Code != tc.code || !strings.Contains(r.Error.Message, tc.want) {
			t.Errorf("%s: rotate = %+v, %v; want %s mentioning %q", tc.name, r, err, tc.code, tc.want)
		}
	}
}
