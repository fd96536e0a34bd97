package registry_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/pkg/client"
	"github.com/hookbus/hookbus/pkg/events"
)

// Disable and enable change the stored status once each, announce it with
// the reason, are idempotent, and name an unknown hook not_found.
func TestHookDisableEnable(t *testing.T) {
	srv, c, js := setup(t)
	runRegistry(t, srv)
	ctx := ctxT(t)
	h, err := c.CreateHook(ctx, webhook("com.example.order.created", "https://a.example/hook"))
	if err != nil {
		t.Fatal(err)
	}

	d, err := c.DisableHook(ctx, h.ID, "failing for 24h0m0s: 503 Service Unavailable")
	if err != nil || d.Status != events.HookDisabled || d.DisabledReason != "failing for 24h0m0s: 503 Service Unavailable" || d.Disabled.IsZero() || d.Secret != "" {
		t.Fatalf("disable = %+v, %v: want disabled, with when and why, no secret", d, err)
	}
	again, err := c.DisableHook(ctx, h.ID, "another reason")
	if err != nil || again.Status != events.HookDisabled || again.DisabledReason != d.DisabledReason || !again.Disabled.Equal(d.Disabled) {
		t.Errorf("disable again = %+v, %v: want the hook as it is (first reason and time)", again, err)
	}
	listed, err := c.ListHooks(ctx, events.HookFilter{})
	if err != nil || len(listed) != 1 || listed[0].Status != events.HookDisabled {
		t.Errorf("list = %+v, %v: want the hook disabled", listed, err)
	}

	kv, err := js.KeyValue(ctx, events.BucketHooks)
	if err != nil {
		t.Fatal(err)
	}
	entry, err := kv.Get(ctx, h.ID)
	if err != nil {
		t.Fatal(err)
	}
	var stored events.Hook
	if err := json.Unmarshal(entry.Value(), &stored); err != nil || stored.Secret != h.Secret || stored.Status != events.HookDisabled || stored.Pending != nil || stored.Service != "" {
		t.Errorf("stored hook = %+v, %v: want disabled with its secret, and no listing fields", stored, err)
	}

	e, err := c.EnableHook(ctx, h.ID)
	if err != nil || e.Status != events.HookActive || e.DisabledReason != "" || !e.Disabled.IsZero() || e.Enabled.Before(d.Disabled) {
		t.Fatalf("enable = %+v, %v: want active, enabled after it was disabled", e, err)
	}
	if e2, err := c.EnableHook(ctx, h.ID); err != nil || !e2.Enabled.Equal(e.Enabled) {
		t.Errorf("enable again = %+v, %v: want the hook as it is", e2, err)
	}

	unknown := client.NewHookID()
	if _, err := c.DisableHook(ctx, unknown, ""); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("disable of an unknown hook: %v, want not found", err)
	}
	if _, err := c.EnableHook(ctx, unknown); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("enable of an unknown hook: %v, want not found", err)
	}

	if got := strings.Join(hookLifecycle(t, js, h.ID), " "); got != "hookbus.hook.created hookbus.hook.disabled hookbus.hook.enabled" {
		t.Errorf("lifecycle = %s, want created, disabled, enabled (one each)", got)
	}
	reason := lifecycleData(t, js, h.ID, "hookbus.hook.disabled").DisabledReason
	if reason != d.DisabledReason {
		t.Errorf("disabled event's reason = %q, want %q", reason, d.DisabledReason)
	}
}

// lifecycleData returns the hook carried by the last lifecycle event of
// type typ about hook id.
func lifecycleData(t *testing.T, js jetstream.JetStream, id, typ string) events.Hook {
	t.Helper()
	subject, err := events.HookLifecycleSubject(id)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := js.OrderedConsumer(ctxT(t), events.StreamLifecycle, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		t.Fatal(err)
	}
	var h events.Hook
	found := false
	for {
		m, err := cons.Next(jetstream.FetchMaxWait(500 * time.Millisecond))
		if err != nil {
			break
		}
		e, err := events.Decode(m.Headers(), m.Data())
		if err != nil {
			t.Fatal(err)
		}
		if e.Type() == typ {
			found = true
			if err := json.Unmarshal(e.Data(), &h); err != nil {
				t.Fatal(err)
			}
		}
	}
	if !found {
		t.Fatalf("no %s event about hook %s", typ, id)
	}
	return h
}

// The attempts query answers a hook's delivery state, an empty one before
// any attempt, not_found for an unknown hook; the list shows the state.
func TestHookAttemptsAndListing(t *testing.T) {
	srv, c, js := setup(t)
	runRegistry(t, srv)
	ctx := ctxT(t)
	h, err := c.CreateHook(ctx, webhook("com.example.order.created", "https://a.example/hook"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.HookAttempts(ctx, h.ID)
	if err != nil || st.ID != h.ID || len(st.Attempts) != 0 {
		t.Errorf("attempts before any = %+v, %v: want none", st, err)
	}
	if _, err := c.HookAttempts(ctx, client.NewHookID()); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("attempts of an unknown hook: %v, want not found", err)
	}

	t0 := time.Now().UTC().Add(-time.Minute).Truncate(time.Millisecond)
	var want events.HookState
	want.ID = h.ID
	want.Record(events.HookAttempt{Time: t0, Status: "200", OK: true, DurationMS: 3})
	want.Record(events.HookAttempt{Time: t0.Add(time.Second), Status: "503", DurationMS: 4, Error: "503 Service Unavailable"})
	state, err := js.KeyValue(ctx, events.BucketHookState)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(want)
	if _, err := state.Put(ctx, h.ID, b); err != nil {
		t.Fatal(err)
	}
	st, err = c.HookAttempts(ctx, h.ID)
	if err != nil || len(st.Attempts) != 2 || st.Attempts[0].Status != "503" || st.Attempts[1].Status != "200" || !st.FailingSince.Equal(t0.Add(time.Second)) {
		t.Errorf("attempts = %+v, %v: want the 503 then the 200, failing since the 503", st, err)
	}
	listed, err := c.ListHooks(ctx, events.HookFilter{})
	if err != nil || len(listed) != 1 {
		t.Fatalf("list = %+v, %v", listed, err)
	}
	l := listed[0]
	if l.Status != events.HookFailing || l.Service != events.StreamEvents || !l.LastDelivery.Equal(t0) || l.LastError != "503 Service Unavailable" || l.Secret != "" {
		t.Errorf("listed = %+v: want failing on %s, last delivery %v, the 503 as last error, no secret", l, events.StreamEvents, t0)
	}
	if l.Pending != nil {
		t.Errorf("pending = %d with no consumer yet: want it absent", *l.Pending)
	}
	// An enable after the failure makes it active again in the list.
	if _, err := c.DisableHook(ctx, h.ID, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := c.EnableHook(ctx, h.ID); err != nil {
		t.Fatal(err)
	}
	if listed, err = c.ListHooks(ctx, events.HookFilter{}); err != nil || listed[0].Status != events.HookActive {
		t.Errorf("list after enable = %+v, %v: want active", listed, err)
	}
}
