package gateway_test

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"regexp"
	"testing"
	"time"

	"github.com/hookbus/hookbus/pkg/events"
	"github.com/hookbus/hookbus/services/gateway"
)

func TestNewToken(t *testing.T) {
	allow := []gateway.Permission{{Action: "publish", Pattern: "com.example.>"}}
	token, rec, err := gateway.NewToken("shop-1", allow, 5, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`^hbgw\.shop-1\.([A-Za-z0-9_-]+)$`).FindStringSubmatch(token)
	if m == nil {
		t.Fatalf("token %q: want hbgw.shop-1.<base64url>", token)
	}
	if secret, err := base64.RawURLEncoding.DecodeString(m[1]); err != nil || len(secret) != 32 {
		t.Errorf("secret %q: %d bytes, %v; want 32 bytes of unpadded base64url", m[1], len(secret), err)
	}
	sum := sha256.Sum256([]byte(token))
	if rec.Name != "shop-1" || rec.SHA256 != hex.EncodeToString(sum[:]) || rec.Rate != 5 || len(rec.Allow) != 1 || rec.CreatedAt.IsZero() {
		t.Errorf("record %+v", rec)
	}
	again, _, _ := gateway.NewToken("shop-1", allow, 0, time.Now())
	if again == token {
		t.Error("two tokens alike")
	}
	for name, tt := range map[string]struct {
		name  string
		allow []gateway.Permission
		rate  int
	}{
		"bad name":      {"a.b", allow, 0},
		"empty name":    {"", allow, 0},
		"no permission": {"x", nil, 0},
		"negative rate": {"x", allow, -1},
		"bad action":    {"x", []gateway.Permission{{Action: "delete", Pattern: ">"}}, 0},
	} {
		if _, _, err := gateway.NewToken(tt.name, tt.allow, tt.rate, time.Now()); !errors.Is(err, events.ErrInvalid) {
			t.Errorf("%s: %v, want an invalid error", name, err)
		}
	}
}

func TestParsePermission(t *testing.T) {
	for s, ok := range map[string]bool{
		"publish:com.example.order.created": true, "call:com.*.order": true, "publish:>": true, "publish:com.example.>": true,
		"publish:*": true, "call:on_user_after_login": true,
		"publish": false, "publish:": false, "delete:x": false, "Publish:x": false, ":x": false,
		"publish:com.>.x": false, "publish:com..x": false, "publish:com.ex*": false, "publish:com.a b": false, "publish:.x": false,
	} {
		_, err := gateway.ParsePermission(s)
		if ok != (err == nil) || (err != nil && !errors.Is(err, events.ErrInvalid)) {
			t.Errorf("ParsePermission(%q) = %v, want ok %v", s, err, ok)
		}
	}
}

func TestPermissionMatchesAsNATS(t *testing.T) {
	for _, tt := range []struct {
		pattern, typ string
		want         bool
	}{
		{"com.example.order.created", "com.example.order.created", true},
		{"com.example.order.created", "com.example.order.create", false},
		{"com.example.order.created", "com.example.order", false},
		{"com.example.order", "com.example.order.created", false},
		{"com.*.order", "com.example.order", true},
		{"com.*.order", "com.example.x.order", false},
		{"com.*", "com", false},
		{"*", "on_user_after_login", true},
		{"*", "a.b", false},
		{"com.example.>", "com.example.order.created", true},
		{"com.example.>", "com.example", false},
		{"com.example.>", "com.examples.x", false},
		{">", "a", true},
		{">", "", false},
		{"*.>", "a", false},
		{"*.>", "a.b.c", true},
	} {
		if got := (gateway.Permission{Action: "publish", Pattern: tt.pattern}).Matches(tt.typ); got != tt.want {
			t.Errorf("%q matches %q = %v, want %v", tt.pattern, tt.typ, got, tt.want)
		}
	}
}
