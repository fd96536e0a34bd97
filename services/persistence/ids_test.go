package persistence_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/hookbus/hookbus/pkg/events"
	"github.com/hookbus/hookbus/services/persistence"
)

// TestIDsRoundTrip stores keys whose ids and contexts hold characters that
// are not allowed in NATS subjects or KV keys, and reads and lists them
// back exactly.
func TestIDsRoundTrip(t *testing.T) {
	srv := newBus(t, "")
	startService(t, srv, persistence.NewKey())
	c := newClient(t, srv)

	ids := []struct{ name, id string }{
		{"jid", "5511999999999@s.whatsapp.net"},
		{"device jid with colon", "5511999999999:12@s.whatsapp.net"},
		{"lid", "123456789012345@lid"},
		{"slash", "app-state/critical_block"},
		{"spaces", "  two  spaces  "},
		{"non-ASCII", "Zoë-Ünïcødé-日本語-🔑"},
		{"dots and wildcards", "a.b.*.>"},
		{"leading dot and dash", ".-leading"},
		{"percent and quotes", `100% "quoted" 'id'`},
		{"control characters", "tab\there\nnewline"},
		{"base64-looking", "YQ"},
		{"longest", strings.Repeat("é", events.MaxKeyIDLen/2)},
	}
	contexts := []string{"plain", "tenant@example.com:5/x y", "Ünïcødé 🔑", "."}
	for _, name := range contexts {
		store := c.AuthStore(name)
		batch := map[string][]byte{}
		for _, tt := range ids {
			batch[tt.id] = []byte(name + " -> " + tt.id)
		}
		mustSaveKeys(t, store, map[string]map[string][]byte{events.KeyTypeSession: batch})
		mustSaveCreds(t, store, []byte("creds of "+name))

		for _, tt := range ids {
			t.Run(name+"/"+tt.name, func(t *testing.T) {
				got := mustLoadKeys(t, store, events.KeyTypeSession, tt.id)
				if want := name + " -> " + tt.id; string(got[tt.id]) != want || len(got) != 1 {
					t.Errorf("LoadKeys(%q) = %q, want {%q: %q}", tt.id, got, tt.id, want)
				}
			})
		}
		listed, err := store.ListKeys(t.Context(), events.KeyTypeSession)
		if err != nil {
			t.Fatal(err)
		}
		want := make([]string, 0, len(ids))
		for _, tt := range ids {
			want = append(want, tt.id)
		}
		slices.Sort(want)
		if !slices.Equal(listed, want) {
			t.Errorf("context %q: ListKeys = %q, want %q", name, listed, want)
		}
		if got := mustLoadCreds(t, store); string(got.Value) != "creds of "+name {
			t.Errorf("context %q: credentials %q", name, got.Value)
		}
	}
}
