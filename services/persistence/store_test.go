package persistence_test

import (
	"errors"
	"maps"
	"reflect"
	"slices"
	"testing"

	"github.com/hookbus/hookbus/pkg/client"
	"github.com/hookbus/hookbus/pkg/events"
	"github.com/hookbus/hookbus/services/persistence"
)

// TestStoreSemantics is the behavioural suite of the auth store: what
// BaileysEx's persistence promises, checked through the Go client against
// a running service. Each row works in its own contexts, named after it.
func TestStoreSemantics(t *testing.T) {
	srv := newBus(t, "")
	startService(t, srv, persistence.NewKey())
	c := newClient(t, srv)

	tests := []struct {
		name string
		run  func(t *testing.T, c *client.Client, store *client.AuthStore)
	}{
		{"credentials not found", func(t *testing.T, _ *client.Client, s *client.AuthStore) {
			_, err := s.LoadCredentials(t.Context())
			var e *client.Error
			if !errors.Is(err, client.ErrNotFound) || !errors.As(err, &e) || e.Code != "not_found" {
				t.Fatalf("LoadCredentials of a new context = %v, want an *Error with code not_found", err)
			}
		}},
		{"credentials round trip with increasing revisions", func(t *testing.T, _ *client.Client, s *client.AuthStore) {
			rev1 := mustSaveCreds(t, s, []byte(`{"me":"1"}`))
			rev2 := mustSaveCreds(t, s, []byte(`{"me":"2"}`))
			if rev2 <= rev1 {
				t.Errorf("revisions %d then %d, want increasing", rev1, rev2)
			}
			got := mustLoadCreds(t, s)
			if want := (client.Credentials{Value: []byte(`{"me":"2"}`), Revision: rev2}); !reflect.DeepEqual(got, want) {
				t.Errorf("LoadCredentials = %+v, want %+v", got, want)
			}
		}},
		{"empty credentials are stored, not missing", func(t *testing.T, _ *client.Client, s *client.AuthStore) {
			mustSaveCreds(t, s, nil)
			if got := mustLoadCreds(t, s); got.Value == nil || len(got.Value) != 0 {
				t.Errorf("LoadCredentials = %#v, want an empty, non-nil value", got.Value)
			}
		}},
		{"conflict on a stale revision", func(t *testing.T, _ *client.Client, s *client.AuthStore) {
			rev := mustSaveCreds(t, s, []byte("v1"))
			newer, err := s.SaveCredentialsIf(t.Context(), []byte("v2"), rev)
			if err != nil {
				t.Fatalf("SaveCredentialsIf at the current revision: %v", err)
			}
			_, err = s.SaveCredentialsIf(t.Context(), []byte("stale"), rev)
			var e *client.Error
			if !errors.Is(err, client.ErrConflict) || !errors.As(err, &e) || e.Code != "conflict" {
				t.Fatalf("SaveCredentialsIf at a stale revision = %v, want ErrConflict", err)
			}
			if got := mustLoadCreds(t, s); string(got.Value) != "v2" || got.Revision != newer {
				t.Errorf("after the conflict: %q at %d, want v2 at %d (the stale save must not be written)", got.Value, got.Revision, newer)
			}
		}},
		{"revision zero saves only when none are stored", func(t *testing.T, _ *client.Client, s *client.AuthStore) {
			if _, err := s.SaveCredentialsIf(t.Context(), []byte("first"), 0); err != nil {
				t.Fatalf("SaveCredentialsIf(0) on a new context: %v", err)
			}
			if _, err := s.SaveCredentialsIf(t.Context(), []byte("second"), 0); !errors.Is(err, client.ErrConflict) {
				t.Fatalf("SaveCredentialsIf(0) with credentials stored = %v, want ErrConflict", err)
			}
			if got := mustLoadCreds(t, s); string(got.Value) != "first" {
				t.Errorf("credentials %q, want first", got.Value)
			}
		}},
		{"missing keys are absent, not an error", func(t *testing.T, _ *client.Client, s *client.AuthStore) {
			mustSaveKeys(t, s, map[string]map[string][]byte{events.KeyTypePreKey: {"1": []byte("one")}})
			got, err := s.LoadKeys(t.Context(), events.KeyTypePreKey, "1", "2", "3")
			if err != nil {
				t.Fatalf("LoadKeys: %v", err)
			}
			if want := map[string][]byte{"1": []byte("one")}; !reflect.DeepEqual(got, want) {
				t.Errorf("LoadKeys = %q, want %q", got, want)
			}
			none, err := s.LoadKeys(t.Context(), events.KeyTypeSession, "nobody")
			if err != nil || none == nil || len(none) != 0 {
				t.Errorf("LoadKeys of nothing stored = %v, %v; want an empty map and no error", none, err)
			}
		}},
		{"batch set across types with deletes", func(t *testing.T, _ *client.Client, s *client.AuthStore) {
			mustSaveKeys(t, s, map[string]map[string][]byte{
				events.KeyTypePreKey:  {"1": []byte("p1"), "2": []byte("p2"), "3": []byte("p3")},
				events.KeyTypeSession: {"alice": []byte("s-a")},
			})
			mustSaveKeys(t, s, map[string]map[string][]byte{
				events.KeyTypePreKey:  {"1": nil, "2": []byte("p2'"), "4": []byte{}},
				events.KeyTypeSession: {"alice": nil, "bob": []byte("s-b")},
			})
			wantPre := map[string][]byte{"2": []byte("p2'"), "3": []byte("p3"), "4": {}}
			if got := mustLoadKeys(t, s, events.KeyTypePreKey, "1", "2", "3", "4"); !reflect.DeepEqual(got, wantPre) {
				t.Errorf("pre-keys = %q, want %q", got, wantPre)
			}
			wantSessions := map[string][]byte{"bob": []byte("s-b")}
			if got := mustLoadKeys(t, s, events.KeyTypeSession, "alice", "bob"); !reflect.DeepEqual(got, wantSessions) {
				t.Errorf("sessions = %q, want %q", got, wantSessions)
			}
		}},
		{"delete keys", func(t *testing.T, _ *client.Client, s *client.AuthStore) {
			mustSaveKeys(t, s, map[string]map[string][]byte{events.KeyTypeSenderKey: {"a": []byte("A"), "b": []byte("B")}})
			if err := s.DeleteKeys(t.Context(), events.KeyTypeSenderKey, "a", "never-stored"); err != nil {
				t.Fatalf("DeleteKeys: %v", err)
			}
			if got := mustLoadKeys(t, s, events.KeyTypeSenderKey, "a", "b"); !slices.Equal(slices.Sorted(maps.Keys(got)), []string{"b"}) {
				t.Errorf("after deleting a: %q, want only b", got)
			}
		}},
		{"list ids of a type", func(t *testing.T, _ *client.Client, s *client.AuthStore) {
			if ids, err := s.ListKeys(t.Context(), events.KeyTypeAppStateSyncKey); err != nil || ids == nil || len(ids) != 0 {
				t.Fatalf("ListKeys of an empty type = %q, %v; want an empty list", ids, err)
			}
			mustSaveKeys(t, s, map[string]map[string][]byte{
				events.KeyTypeAppStateSyncKey: {"c": []byte("3"), "a": []byte("1"), "b": []byte("2")},
				events.KeyTypeTCToken:         {"other-type": []byte("x")},
			})
			mustSaveKeys(t, s, map[string]map[string][]byte{events.KeyTypeAppStateSyncKey: {"b": nil}})
			ids, err := s.ListKeys(t.Context(), events.KeyTypeAppStateSyncKey)
			if err != nil {
				t.Fatal(err)
			}
			if want := []string{"a", "c"}; !slices.Equal(ids, want) {
				t.Errorf("ListKeys = %q, want %q (sorted, without the deleted one or other types)", ids, want)
			}
		}},
		{"contexts are isolated", func(t *testing.T, c *client.Client, s *client.AuthStore) {
			other := c.AuthStore(s.Context() + "-other")
			mustSaveCreds(t, s, []byte("mine"))
			mustSaveKeys(t, s, map[string]map[string][]byte{events.KeyTypeSession: {"x": []byte("mine")}})
			mustSaveKeys(t, other, map[string]map[string][]byte{events.KeyTypeSession: {"y": []byte("theirs")}})
			if _, err := other.LoadCredentials(t.Context()); !errors.Is(err, client.ErrNotFound) {
				t.Errorf("other context's credentials: %v, want ErrNotFound", err)
			}
			if got := mustLoadKeys(t, other, events.KeyTypeSession, "x", "y"); !reflect.DeepEqual(got, map[string][]byte{"y": []byte("theirs")}) {
				t.Errorf("other context's sessions = %q, want only y", got)
			}
			if ids, _ := s.ListKeys(t.Context(), events.KeyTypeSession); !slices.Equal(ids, []string{"x"}) {
				t.Errorf("ListKeys = %q, want only x", ids)
			}
			if _, err := other.Clear(t.Context()); err != nil {
				t.Fatal(err)
			}
			if got := mustLoadCreds(t, s); string(got.Value) != "mine" {
				t.Errorf("credentials after clearing the other context: %q", got.Value)
			}
		}},
		{"clear removes credentials and every key of the context", func(t *testing.T, _ *client.Client, s *client.AuthStore) {
			mustSaveCreds(t, s, []byte("creds"))
			mustSaveKeys(t, s, map[string]map[string][]byte{
				events.KeyTypePreKey:      {"1": []byte("a"), "2": []byte("b")},
				events.KeyTypeIdentityKey: {"me": []byte("c")},
			})
			n, err := s.Clear(t.Context())
			if err != nil || n != 4 {
				t.Fatalf("Clear = %d, %v; want 4 entries removed", n, err)
			}
			if _, err := s.LoadCredentials(t.Context()); !errors.Is(err, client.ErrNotFound) {
				t.Errorf("credentials after Clear: %v, want ErrNotFound", err)
			}
			if got := mustLoadKeys(t, s, events.KeyTypePreKey, "1", "2"); len(got) != 0 {
				t.Errorf("pre-keys after Clear: %q", got)
			}
			if n, err := s.Clear(t.Context()); err != nil || n != 0 {
				t.Errorf("second Clear = %d, %v; want 0", n, err)
			}
			if _, err := s.SaveCredentialsIf(t.Context(), []byte("fresh"), 0); err != nil {
				t.Errorf("SaveCredentialsIf(0) after Clear: %v", err)
			}
		}},
		{"other key types with valid names are accepted", func(t *testing.T, _ *client.Client, s *client.AuthStore) {
			mustSaveKeys(t, s, map[string]map[string][]byte{"my_custom-Type9": {"k": []byte("v")}})
			if got := mustLoadKeys(t, s, "my_custom-Type9", "k"); string(got["k"]) != "v" {
				t.Errorf("custom type: %q", got)
			}
		}},
		{"invalid arguments are refused before sending", func(t *testing.T, _ *client.Client, s *client.AuthStore) {
			for name, err := range map[string]error{
				"type with a dot":   s.SaveKeys(t.Context(), map[string]map[string][]byte{"pre.key": {"1": []byte("x")}}),
				"type with a space": s.DeleteKeys(t.Context(), "pre key", "1"),
				"empty id":          s.DeleteKeys(t.Context(), events.KeyTypeSession, ""),
			} {
				if !errors.Is(err, events.ErrInvalid) {
					t.Errorf("%s: %v, want events.ErrInvalid", name, err)
				}
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.run(t, c, c.AuthStore("suite/"+tt.name))
		})
	}

	t.Run("no context is the default context", func(t *testing.T) {
		mustSaveCreds(t, c.AuthStore(""), []byte("default creds"))
		if got := mustLoadCreds(t, c.AuthStore(events.AuthDefaultContext)); string(got.Value) != "default creds" {
			t.Errorf("credentials of context %q = %q", events.AuthDefaultContext, got.Value)
		}
	})
}

func mustSaveCreds(t *testing.T, s *client.AuthStore, v []byte) uint64 {
	t.Helper()
	rev, err := s.SaveCredentials(t.Context(), v)
	if err != nil {
		t.Fatalf("SaveCredentials: %v", err)
	}
	return rev
}

func mustLoadCreds(t *testing.T, s *client.AuthStore) client.Credentials {
	t.Helper()
	cr, err := s.LoadCredentials(t.Context())
	if err != nil {
		t.Fatalf("LoadCredentials: %v", err)
	}
	return cr
}

func mustSaveKeys(t *testing.T, s *client.AuthStore, keys map[string]map[string][]byte) {
	t.Helper()
	if err := s.SaveKeys(t.Context(), keys); err != nil {
		t.Fatalf("SaveKeys: %v", err)
	}
}

func mustLoadKeys(t *testing.T, s *client.AuthStore, typ string, ids ...string) map[string][]byte {
	t.Helper()
	got, err := s.LoadKeys(t.Context(), typ, ids...)
	if err != nil {
		t.Fatalf("LoadKeys(%s): %v", typ, err)
	}
	return got
}
