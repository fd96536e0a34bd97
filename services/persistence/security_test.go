package persistence_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/pkg/client"
	"github.com/hookbus/hookbus/pkg/events"
	"github.com/hookbus/hookbus/services/persistence"
)

// TestCanaryNeverStoredInPlaintext saves a secret as credentials and as
// keys, stops the server so that it flushes its store, and searches every
// file of the store for the secret and its encodings.
func TestCanaryNeverStoredInPlaintext(t *testing.T) {
	storeDir := t.TempDir()
	srv := newBus(t, storeDir)
	stop := startService(t, srv, persistence.NewKey())
	c := newClient(t, srv)

	canary := []byte("canary-" + rand.Text() + rand.Text())
	const contextName = "canary-tenant"
	store := c.AuthStore(contextName)
	mustSaveCreds(t, store, canary)
	mustSaveKeys(t, store, map[string]map[string][]byte{
		events.KeyTypeSession:     {"5511999999999@s.whatsapp.net": canary},
		events.KeyTypeIdentityKey: {"peer:1": canary},
	})
	if got := mustLoadKeys(t, store, events.KeyTypeSession, "5511999999999@s.whatsapp.net"); !bytes.Equal(got["5511999999999@s.whatsapp.net"], canary) {
		t.Fatalf("canary does not read back: %q", got)
	}
	stop()
	srv.Shutdown()
	srv.WaitForShutdown()

	needles := map[string][]byte{"plain": canary}
	for name, enc := range map[string]*base64.Encoding{"base64": base64.StdEncoding, "base64 unpadded": base64.RawStdEncoding, "base64url": base64.RawURLEncoding} {
		needles[name] = []byte(enc.EncodeToString(canary))
	}
	needles["hex"] = []byte(hex.EncodeToString(canary))
	// The context's KV key prefix is stored as it is: finding it proves the
	// search reads the bucket's bytes.
	sawBucket := false
	contextToken := []byte("ctx." + base64.RawURLEncoding.EncodeToString([]byte(contextName)) + ".creds")
	files := 0
	err := filepath.WalkDir(storeDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files++
		sawBucket = sawBucket || bytes.Contains(b, contextToken)
		for name, needle := range needles {
			if bytes.Contains(b, needle) {
				t.Errorf("%s: holds the canary (%s)", path, name)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !sawBucket {
		t.Fatalf("read %d files under %s and none holds the KV key %s: the search did not see the bucket", files, storeDir, contextToken)
	}
}

// TestSwappedCiphertextsFailToDecrypt writes the stored ciphertext of one
// key under another, and the other way round: the KV key is bound to the
// ciphertext, so both reads must fail with code decrypt.
func TestSwappedCiphertextsFailToDecrypt(t *testing.T) {
	srv := newBus(t, "")
	startService(t, srv, persistence.NewKey())
	c := newClient(t, srv)
	kv := rawBucket(t, srv)

	tests := []struct {
		name  string
		save  func(t *testing.T, a, b *client.AuthStore)
		read  func(ctx context.Context, a, b *client.AuthStore) error
		match string // which raw entries to swap
	}{
		{
			name: "two keys of one context",
			save: func(t *testing.T, a, _ *client.AuthStore) {
				mustSaveKeys(t, a, map[string]map[string][]byte{events.KeyTypeSession: {"alice": []byte("secret-a"), "bob": []byte("secret-b")}})
			},
			read: func(ctx context.Context, a, _ *client.AuthStore) error {
				for _, id := range []string{"alice", "bob"} {
					if _, err := a.LoadKeys(ctx, events.KeyTypeSession, id); !errors.Is(err, client.ErrDecrypt) {
						return fmt.Errorf("LoadKeys(%s) = %v, want ErrDecrypt", id, err)
					}
				}
				return nil
			},
			match: ".key.session.",
		},
		{
			name: "credentials of two contexts",
			save: func(t *testing.T, a, b *client.AuthStore) {
				mustSaveCreds(t, a, []byte("creds-a"))
				mustSaveCreds(t, b, []byte("creds-b"))
			},
			read: func(ctx context.Context, a, b *client.AuthStore) error {
				for _, s := range []*client.AuthStore{a, b} {
					if _, err := s.LoadCredentials(ctx); !errors.Is(err, client.ErrDecrypt) {
						return fmt.Errorf("LoadCredentials(%s) = %v, want ErrDecrypt", s.Context(), err)
					}
				}
				return nil
			},
			match: ".creds",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := c.AuthStore("swap-a/"+tt.name), c.AuthStore("swap-b/"+tt.name)
			tt.save(t, a, b)
			var keys []string
			for k := range rawEntries(t, kv) {
				if strings.Contains(k, tt.match) && (strings.Contains(k, token(a.Context())) || strings.Contains(k, token(b.Context()))) {
					keys = append(keys, k)
				}
			}
			if len(keys) != 2 {
				t.Fatalf("found %d stored entries to swap (%q), want 2", len(keys), keys)
			}
			swap(t, kv, keys[0], keys[1])
			if err := tt.read(t.Context(), a, b); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestCorruptValueIsALoudError checks that a value that cannot be decoded
// is reported as such, never as missing or empty credentials.
func TestCorruptValueIsALoudError(t *testing.T) {
	srv := newBus(t, "")
	startService(t, srv, persistence.NewKey())
	c := newClient(t, srv)
	kv := rawBucket(t, srv)
	store := c.AuthStore("corrupt")
	mustSaveCreds(t, store, []byte(`{"noiseKey":"..."}`))
	key := "ctx." + token("corrupt") + ".creds"
	good, err := kv.Get(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	flipped := bytes.Clone(good.Value())
	flipped[len(flipped)-1] ^= 1

	tests := []struct {
		name  string
		value []byte
		want  string
	}{
		{"garbage", []byte("not an envelope at all, just some bytes written by someone"), "envelope version"},
		{"truncated", good.Value()[:10], "too short"},
		{"one bit flipped", flipped, "authentication failed"},
		{"plain JSON", []byte(`{"noiseKey":"plaintext written by someone else"}`), "envelope version"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := kv.Put(t.Context(), key, tt.value); err != nil {
				t.Fatal(err)
			}
			cr, err := store.LoadCredentials(t.Context())
			var e *client.Error
			if !errors.Is(err, client.ErrDecrypt) || !errors.As(err, &e) || e.Code != "decrypt" || !strings.Contains(e.Message, tt.want) {
				t.Fatalf("LoadCredentials = %+v, %v; want code decrypt saying %q", cr, err, tt.want)
			}
		})
	}
}

// TestWrongKeyRefusesToStart checks that the service will not start with
// keys that cannot read what the bucket holds.
func TestWrongKeyRefusesToStart(t *testing.T) {
	k1, k2 := persistence.NewKey(), persistence.NewKey()
	tests := []struct {
		name    string
		prepare func(t *testing.T, srv *server.Server) // with k1's data stored
		keys    []persistence.Key
		want    string // "" when it must start
	}{
		{name: "the same key", keys: []persistence.Key{k1}},
		{name: "a new key first, the old one still configured", keys: []persistence.Key{k2, k1}},
		{name: "another key", keys: []persistence.Key{k2}, want: "key id(s) " + k1.ID()},
		{
			name: "old key dropped without a rotation",
			prepare: func(t *testing.T, srv *server.Server) {
				startService(t, srv, k2, k1)()
			},
			keys: []persistence.Key{k2},
			want: "key id(s) " + k1.ID(),
		},
		{
			name: "tampered key-check record",
			prepare: func(t *testing.T, srv *server.Server) {
				kv := rawBucket(t, srv)
				if _, err := kv.Put(t.Context(), "meta.keycheck."+k1.ID(), []byte("\x01tampered-record-tampered-record-tampered")); err != nil {
					t.Fatal(err)
				}
			},
			keys: []persistence.Key{k1},
			want: "key-check record of key id " + k1.ID() + " does not decrypt",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newBus(t, "")
			stop := startService(t, srv, k1)
			mustSaveCreds(t, newClient(t, srv).AuthStore(""), []byte("written with k1"))
			stop()
			if tt.prepare != nil {
				tt.prepare(t, srv)
			}
			if tt.want == "" {
				startService(t, srv, tt.keys...)
				if got := mustLoadCreds(t, newClient(t, srv).AuthStore("")); string(got.Value) != "written with k1" {
					t.Errorf("credentials = %q", got.Value)
				}
				return
			}
			svc := newService(t, srv, tt.keys...)
			err := svc.Run(t.Context()) // returns at once: it must not start
			if !errors.Is(err, persistence.ErrKeyCheck) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Run = %v, want ErrKeyCheck saying %q", err, tt.want)
			}
			if svc.Ready(t.Context()) == nil {
				t.Error("Ready after a refused start = nil")
			}
		})
	}
}

// TestRotation stores values under one key, rotates to a new one, and
// checks that everything still reads, that every stored value carries the
// new key's id, and that the old key can then be dropped.
func TestRotation(t *testing.T) {
	k1, k2 := persistence.NewKey(), persistence.NewKey()
	srv := newBus(t, "")
	c := newClient(t, srv)
	kv := rawBucket(t, srv)

	stop := startService(t, srv, k1)
	want := map[string]map[string][]byte{}
	for i := range 3 {
		name := fmt.Sprintf("tenant-%d", i)
		mustSaveCreds(t, c.AuthStore(name), []byte("creds of "+name))
		batch := map[string]map[string][]byte{}
		for _, typ := range events.KeyTypes() {
			batch[typ] = map[string][]byte{"id-" + typ: []byte(name + "/" + typ)}
		}
		mustSaveKeys(t, c.AuthStore(name), batch)
		want[name] = flatten(batch)
	}
	const oldValues = 3 * (1 + 10)
	stop()

	stop = startService(t, srv, k2, k1)
	// Written with k2 already: unchanged by the rotation.
	mustSaveKeys(t, c.AuthStore("tenant-0"), map[string]map[string][]byte{events.KeyTypePreKey: {"new": []byte("under k2")}})
	want["tenant-0"][events.KeyTypePreKey+"/new"] = []byte("under k2")
	checkAll(t, c, want)

	rot, err := c.RotateAuthKeys(t.Context())
	if err != nil {
		t.Fatalf("RotateAuthKeys: %v", err)
	}
	if rot.KeyID != k2.ID() || rot.Rotated != oldValues || rot.Unchanged != 1 || !slices.Equal(rot.RetiredKeyIDs, []string{k1.ID()}) {
		t.Errorf("rotation = %+v, want key %s, %d rotated, 1 unchanged, %s retired", rot, k2.ID(), oldValues, k1.ID())
	}
	checkAll(t, c, want)
	entries := rawEntries(t, kv)
	for key, value := range entries {
		if got := hex.EncodeToString(value[1:9]); value[0] != 1 || got != k2.ID() {
			t.Errorf("%s: envelope version %d key id %s, want 1 and %s", key, value[0], got, k2.ID())
		}
	}
	if _, ok := entries["meta.keycheck."+k1.ID()]; ok {
		t.Error("the old key's key-check record is still stored")
	}
	again, err := c.RotateAuthKeys(t.Context())
	if err != nil || again.Rotated != 0 || len(again.RetiredKeyIDs) != 0 {
		t.Errorf("second rotation = %+v, %v; want nothing to do", again, err)
	}
	stop()

	// The old key can go now.
	startService(t, srv, k2)
	checkAll(t, c, want)
}

// TestRotationKeepsConcurrentWrites saves credentials over and over while
// a rotation runs: the rotation's compare-and-swap must never put back an
// older value.
func TestRotationKeepsConcurrentWrites(t *testing.T) {
	k1, k2 := persistence.NewKey(), persistence.NewKey()
	srv := newBus(t, "")
	c := newClient(t, srv)
	stop := startService(t, srv, k1)
	batch := map[string][]byte{}
	for i := range 200 {
		batch[fmt.Sprint(i)] = []byte("pre-key")
	}
	store := c.AuthStore("busy")
	mustSaveKeys(t, store, map[string]map[string][]byte{events.KeyTypePreKey: batch})
	mustSaveCreds(t, store, []byte("0"))
	stop()
	startService(t, srv, k2, k1)

	done := make(chan error, 1)
	go func() {
		_, err := c.RotateAuthKeys(context.Background())
		done <- err
	}()
	last := 0
	for rotating := true; rotating; {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("RotateAuthKeys: %v", err)
			}
			rotating = false
		default:
		}
		last++
		mustSaveCreds(t, store, fmt.Appendf(nil, "%d", last))
	}
	t.Logf("%d saves during the rotation", last)
	if got := mustLoadCreds(t, store); string(got.Value) != fmt.Sprint(last) {
		t.Fatalf("credentials = %s after %d saves during a rotation: a write was lost", got.Value, last)
	}
}

func flatten(batch map[string]map[string][]byte) map[string][]byte {
	out := map[string][]byte{}
	for typ, byID := range batch {
		for id, v := range byID {
			out[typ+"/"+id] = v
		}
	}
	return out
}

// checkAll reads every context's credentials and keys in want (context ->
// "type/id" -> value).
func checkAll(t *testing.T, c *client.Client, want map[string]map[string][]byte) {
	t.Helper()
	for name, keys := range want {
		store := c.AuthStore(name)
		if got := mustLoadCreds(t, store); string(got.Value) != "creds of "+name {
			t.Errorf("%s: credentials %q", name, got.Value)
		}
		for typID, v := range keys {
			typ, id, _ := strings.Cut(typID, "/")
			if got := mustLoadKeys(t, store, typ, id); !bytes.Equal(got[id], v) {
				t.Errorf("%s: %s = %q, want %q", name, typID, got[id], v)
			}
		}
	}
}

// token is how the service encodes a context or id in a KV key.
func token(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func swap(t *testing.T, kv jetstream.KeyValue, a, b string) {
	t.Helper()
	va, err := kv.Get(t.Context(), a)
	if err != nil {
		t.Fatal(err)
	}
	vb, err := kv.Get(t.Context(), b)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(t.Context(), a, vb.Value()); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(t.Context(), b, va.Value()); err != nil {
		t.Fatal(err)
	}
}
