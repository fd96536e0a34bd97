package gateway_test

import (
	"strings"
	"testing"

	"github.com/hookbus/hookbus/services/gateway"
)

// Without authentication, the gateway listens on loopback only.
func TestConfigRefusesAddressesOffLoopback(t *testing.T) {
	for addr, ok := range map[string]bool{
		"127.0.0.1:8080": true, "localhost:8080": true, "[::1]:8080": true,
		"0.0.0.0:8080": false, ":8080": false, "[::]:8080": false, "10.0.0.5:8080": false, "example.com:8080": false,
	} {
		cfg := gateway.DefaultConfig()
		cfg.Addr = addr
		err := cfg.Validate()
		if ok != (err == nil) || (err != nil && !strings.Contains(err.Error(), "no authentication")) {
			t.Errorf("Validate with addr %s = %v, want ok %v", addr, err, ok)
		}
	}
}
