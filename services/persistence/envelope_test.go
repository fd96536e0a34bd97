package persistence

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestEnvelope(t *testing.T) {
	k1, k2 := NewKey(), NewKey()
	old, err := newKeyring([]Key{k1})
	if err != nil {
		t.Fatal(err)
	}
	both, err := newKeyring([]Key{k2, k1})
	if err != nil {
		t.Fatal(err)
	}
	onlyNew, err := newKeyring([]Key{k2})
	if err != nil {
		t.Fatal(err)
	}
	plaintext := []byte("session data")
	sealed := old.seal("ctx.a.creds", plaintext)

	tests := []struct {
		name     string
		ring     *keyring
		kvKey    string
		envelope []byte
		want     string // error text; "" to decrypt
	}{
		{"same key and KV key", old, "ctx.a.creds", sealed, ""},
		{"older key still configured", both, "ctx.a.creds", sealed, ""},
		{"another KV key", old, "ctx.b.creds", sealed, "authentication failed"},
		{"older key dropped", onlyNew, "ctx.a.creds", sealed, "key id " + k1.ID() + ", which is not configured"},
		{"key id relabelled", both, "ctx.a.creds", relabel(sealed, k2), "authentication failed"},
		{"unknown version", old, "ctx.a.creds", append([]byte{2}, sealed[1:]...), "envelope version 2"},
		{"empty", old, "ctx.a.creds", nil, "too short"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.ring.open(tt.kvKey, tt.envelope)
			if tt.want == "" {
				if err != nil || !bytes.Equal(got, plaintext) {
					t.Fatalf("open = %q, %v; want %q", got, err, plaintext)
				}
				return
			}
			if !errors.Is(err, errDecrypt) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("open = %q, %v; want errDecrypt saying %q", got, err, tt.want)
			}
		})
	}

	t.Run("layout", func(t *testing.T) {
		if len(sealed) != len(plaintext)+EnvelopeOverhead {
			t.Errorf("envelope is %d bytes for %d of plaintext, want %d more", len(sealed), len(plaintext), EnvelopeOverhead)
		}
		if sealed[0] != envelopeVersion || fmt.Sprintf("%x", sealed[1:9]) != k1.ID() {
			t.Errorf("header %x, want version 1 and key id %s", sealed[:9], k1.ID())
		}
		if bytes.Equal(sealed, old.seal("ctx.a.creds", plaintext)) {
			t.Error("two seals of the same value are equal: the nonce is not random")
		}
		if bytes.Contains(sealed, plaintext) {
			t.Error("the envelope holds the plaintext")
		}
	})
}

func relabel(envelope []byte, k Key) []byte {
	out := bytes.Clone(envelope)
	copy(out[1:9], k.id())
	return out
}

func TestKeyringRefusesDuplicateKeys(t *testing.T) {
	k := NewKey()
	if _, err := newKeyring([]Key{k, NewKey(), k}); err == nil || !strings.Contains(err.Error(), "configured twice") {
		t.Fatalf("newKeyring with a key twice = %v, want an error", err)
	}
	if _, err := newKeyring(nil); err == nil {
		t.Fatal("newKeyring() = nil error, want one")
	}
}

// FuzzOpen feeds arbitrary bytes to the envelope decoder, as anyone with
// write access to the bucket could: it must never panic, and never accept
// anything it did not seal.
func FuzzOpen(f *testing.F) {
	ring, err := newKeyring([]Key{NewKey()})
	if err != nil {
		f.Fatal(err)
	}
	sealed := ring.seal("ctx.a.creds", []byte("secret"))
	f.Add("ctx.a.creds", sealed)
	f.Add("ctx.a.creds", sealed[:EnvelopeOverhead])
	f.Add("meta.keycheck.00", []byte{1, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add("", []byte{})
	f.Fuzz(func(t *testing.T, kvKey string, envelope []byte) {
		got, err := ring.open(kvKey, envelope)
		if err == nil && !(kvKey == "ctx.a.creds" && bytes.Equal(envelope, sealed)) {
			t.Fatalf("open accepted an envelope it did not seal: %x -> %q", envelope, got)
		}
		if err != nil && !errors.Is(err, errDecrypt) {
			t.Fatalf("open error %v does not match errDecrypt", err)
		}
	})
}
