package gateway_test

import (
	"strings"
	"testing"

	"github.com/hookbus/hookbus/services/gateway"
)

// Anonymous use is for loopback only: asked for explicitly off loopback,
// the configuration is refused; left unset, any address is fine (tokens
// are then required off loopback).
func TestConfigRefusesAnonymousOffLoopback(t *testing.T) {
	on, off := true, false
	for _, tt := range []struct {
		addr      string
		anonymous *bool
		ok        bool
	}{
		{"127.0.0.1:8080", nil, true}, {"localhost:8080", &on, true}, {"[::1]:8080", &on, true},
		{"0.0.0.0:8080", nil, true}, {":8080", &off, true}, {"10.0.0.5:8080", nil, true},
		{"0.0.0.0:8080", &on, false}, {":8080", &on, false}, {"[::]:8080", &on, false},
		{"10.0.0.5:8080", &on, false}, {"example.com:8080", &on, false},
	} {
		cfg := gateway.DefaultConfig()
		cfg.Addr, cfg.Anonymous = tt.addr, tt.anonymous
		err := cfg.Validate()
		if tt.ok != (err == nil) || (err != nil && !strings.Contains(err.Error(), "loopback")) {
			t.Errorf("Validate with addr %s, anonymous %v = %v, want ok %v", tt.addr, tt.anonymous, err, tt.ok)
		}
	}
}

func TestConfigRefusesBadCORSOrigins(t *testing.T) {
	for origin, ok := range map[string]bool{
		"https://app.example.com": true, "http://localhost:3000": true,
		"https://app.example.com/": false, "app.example.com": false, "*": false, "ftp://x": false,
	} {
		cfg := gateway.DefaultConfig()
		cfg.CORSOrigins = []string{origin}
		if err := cfg.Validate(); ok != (err == nil) {
			t.Errorf("Validate with CORS origin %q = %v, want ok %v", origin, err, ok)
		}
	}
}
