package persistence_test

import (
	"encoding/base64"
	"fmt"
	"strings"
	"testing"

	"github.com/hookbus/hookbus/services/persistence"
)

func TestParseKeys(t *testing.T) {
	k1, k2 := persistence.NewKey(), persistence.NewKey()
	raw := make([]byte, persistence.KeySize)
	tests := []struct {
		name    string
		in      string
		wantIDs []string
		wantErr string
	}{
		{"one", k1.Secret(), []string{k1.ID()}, ""},
		{"comma separated, newest first", k2.Secret() + "," + k1.Secret(), []string{k2.ID(), k1.ID()}, ""},
		{"file with comments and blank lines", "# rotated 2026-01\n" + k2.Secret() + "\n\n# old\n" + k1.Secret() + "\n", []string{k2.ID(), k1.ID()}, ""},
		{"base64url unpadded", base64.RawURLEncoding.EncodeToString(raw), []string{mustParse(t, base64.StdEncoding.EncodeToString(raw)).ID()}, ""},
		{"empty", " \n", nil, ""},
		{"too short", base64.StdEncoding.EncodeToString(raw[:16]), nil, "key 1: key is 16 bytes, want 32"},
		{"not base64", k1.Secret() + ",not-a-key!", nil, "key 2: key is not base64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keys, err := persistence.ParseKeys(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseKeys = %v, want an error saying %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, k := range keys {
				ids = append(ids, k.ID())
			}
			if fmt.Sprint(ids) != fmt.Sprint(tt.wantIDs) {
				t.Errorf("ids %v, want %v", ids, tt.wantIDs)
			}
		})
	}
}

func mustParse(t *testing.T, s string) persistence.Key {
	t.Helper()
	k, err := persistence.ParseKey(s)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestKeysNeverPrinted checks that formatting a key or a Config in any
// usual way shows key ids only.
func TestKeysNeverPrinted(t *testing.T) {
	k := persistence.NewKey()
	cfg := persistence.DefaultConfig()
	cfg.Keys = []persistence.Key{k}
	secret := k.Secret()
	raw, _ := base64.StdEncoding.DecodeString(secret)
	for _, s := range []string{
		fmt.Sprint(k), fmt.Sprintf("%v %+v %#v %s %x %q", k, k, k, k, k, k),
		fmt.Sprint(cfg), fmt.Sprintf("%+v %#v", cfg, cfg), cfg.String(),
		fmt.Sprintf("%v", []persistence.Key{k}),
	} {
		if strings.Contains(s, secret) || strings.Contains(s, fmt.Sprintf("%x", raw)) || strings.Contains(s, string(raw)) {
			t.Errorf("formatted %q shows the key", s)
		}
		if !strings.Contains(s, k.ID()) && !strings.Contains(s, fmt.Sprintf("%x", "key "+k.ID())) && !strings.Contains(s, fmt.Sprintf("%q", "key "+k.ID())) {
			t.Errorf("formatted %q does not name the key id %s", s, k.ID())
		}
	}
}
