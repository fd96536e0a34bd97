package events_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/hookbus/hookbus/pkg/events"
)

func TestAuthNames(t *testing.T) {
	for _, typ := range events.KeyTypes() {
		if err := events.ValidateKeyType(typ); err != nil {
			t.Errorf("well-known type %s: %v", typ, err)
		}
	}
	tests := []struct {
		name     string
		validate func(string) error
		in       string
		want     string // "" when valid
	}{
		{"custom type", events.ValidateKeyType, "my_type-2", ""},
		{"type with a dot", events.ValidateKeyType, "pre.key", `key type: "pre.key"`},
		{"type wildcard", events.ValidateKeyType, ">", `key type: ">"`},
		{"empty type", events.ValidateKeyType, "", `key type: ""`},
		{"long type", events.ValidateKeyType, strings.Repeat("a", 65), "1 to 64"},
		{"jid id", events.ValidateKeyID, "5511999999999:12@s.whatsapp.net", ""},
		{"id with anything", events.ValidateKeyID, "a/b c.*>ü\t", ""},
		{"empty id", events.ValidateKeyID, "", "key id: required"},
		{"id not UTF-8", events.ValidateKeyID, "\xc3", "not valid UTF-8"},
		{"long id", events.ValidateKeyID, strings.Repeat("a", events.MaxKeyIDLen+1), "the limit is 1024"},
		{"default context", events.ValidateAuthContext, "", ""},
		{"context with anything", events.ValidateAuthContext, "tenant@x:1/ü y", ""},
		{"long context", events.ValidateAuthContext, strings.Repeat("a", events.MaxAuthContextLen+1), "the limit is 256"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.validate(tt.in)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("%v, want valid", err)
				}
				return
			}
			if !errors.Is(err, events.ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("%v, want events.ErrInvalid saying %q", err, tt.want)
			}
		})
	}
}
