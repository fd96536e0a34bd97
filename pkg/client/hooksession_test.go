package client_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hookbus/hookbus/internal/natstest"
	"github.com/hookbus/hookbus/pkg/client"
	"github.com/hookbus/hookbus/pkg/events"
)

// A heartbeat that cannot reach NATS is reported by Err, and tried again
// at each beat: the session is not given up while its key may still live.
func TestHookSessionReportsHeartbeatFailures(t *testing.T) {
	srv, js := natstest.RunTopology(t)
	nc := natstest.Connect(t, srv)
	c, err := client.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.HookSession(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	sessions, err := js.KeyValue(t.Context(), events.BucketHookSessions)
	if err != nil {
		t.Fatal(err)
	}
	first, err := sessions.Get(t.Context(), s.ID())
	if err != nil {
		t.Fatalf("session key not written: %v", err)
	}
	natstest.Eventually(t, 3*events.HookSessionHeartbeat, func() error {
		e, err := sessions.Get(t.Context(), s.ID())
		if err != nil || e.Revision() == first.Revision() {
			return fmt.Errorf("key not written again yet (%v)", err)
		}
		return nil
	})
	if err := s.Err(); err != nil {
		t.Errorf("Err after a heartbeat = %v, want nil", err)
	}

	nc.Close() // the owner loses NATS
	natstest.Eventually(t, 3*events.HookSessionHeartbeat, func() error {
		if s.Err() == nil {
			return errors.New("no heartbeat failure reported")
		}
		return nil
	})
	if errors.Is(s.Err(), client.ErrSessionLost) {
		t.Errorf("Err = %v: a failing heartbeat is not a lost session", s.Err())
	}
	select {
	case <-s.Done():
		t.Error("session stopped on a failing heartbeat, want it tried again")
	case <-time.After(events.HookSessionHeartbeat + time.Second):
	}
	if err := s.Close(t.Context()); err == nil {
		t.Error("Close without NATS = nil, want the key's delete error")
	}
}
