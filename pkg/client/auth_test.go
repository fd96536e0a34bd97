package client_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/hookbus/hookbus/pkg/events"
)

// TestAuthStoreWithoutService checks what a caller sees when no
// persistence service runs, and that arguments that cannot be valid are
// refused before anything is sent. The service's own behaviour is tested
// through this client in services/persistence.
func TestAuthStoreWithoutService(t *testing.T) {
	b := newBus(t, true)
	store := b.client.AuthStore("acme")

	// No deadline in ctx: the default timeout applies (nats.go refuses a
	// request without one).
	_, err := store.LoadCredentials(context.Background())
	if !errors.Is(err, nats.ErrNoResponders) || !strings.Contains(err.Error(), "no persistence service is running") {
		t.Errorf("LoadCredentials without a service = %v, want no responders, said plainly", err)
	}

	tests := []struct {
		name string
		call func(ctx context.Context) error
	}{
		{"key type with a dot", func(ctx context.Context) error {
			return store.SaveKeys(ctx, map[string]map[string][]byte{"pre.key": {"1": []byte("x")}})
		}},
		{"key type with a wildcard", func(ctx context.Context) error {
			_, err := store.LoadKeys(ctx, "session.*", "x")
			return err
		}},
		{"empty id", func(ctx context.Context) error { return store.DeleteKeys(ctx, events.KeyTypeSession, "") }},
		{"id not UTF-8", func(ctx context.Context) error {
			_, err := store.LoadKeys(ctx, events.KeyTypeSession, "\xff")
			return err
		}},
		{"context too long", func(ctx context.Context) error {
			_, err := b.client.AuthStore(strings.Repeat("x", events.MaxAuthContextLen+1)).LoadCredentials(ctx)
			return err
		}},
		{"empty list type", func(ctx context.Context) error {
			_, err := store.ListKeys(ctx, "")
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call(t.Context())
			if !errors.Is(err, events.ErrInvalid) || errors.Is(err, nats.ErrNoResponders) {
				t.Errorf("%v, want events.ErrInvalid before sending", err)
			}
		})
	}

	// Nothing to do: no request at all.
	if got, err := store.LoadKeys(t.Context(), events.KeyTypePreKey); err != nil || got == nil || len(got) != 0 {
		t.Errorf("LoadKeys with no ids = %v, %v; want an empty map", got, err)
	}
	if err := store.SaveKeys(t.Context(), nil); err != nil {
		t.Errorf("SaveKeys(nil) = %v, want nil", err)
	}
}
