package gateway_test

import (
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/hookbus/hookbus/services/gateway"
)

// Each token_please makes the gateway seal a token and write it: a device
// that sends them without pause must be held to the device rate like its
// data frames and calls, or one socket keeps a core busy sealing tokens.
func TestReviewTokenPleaseIsReadAtTheDeviceRate(t *testing.T) {
	b := newDeviceBus(t, false, func(c *gateway.Config) { c.DeviceRate = 5 })
	conn := b.connectWithToken(t, "d1")
	start := time.Now()
	const n = 15 // 5 at once (the burst), then 5 a second
	for range n {
		if err := conn.Write(t.Context(), websocket.MessageText, []byte(`{"type":"token_please"}`)); err != nil {
			t.Fatal(err)
		}
	}
	for range n {
		readToken(t, conn)
	}
	if took := time.Since(start); took < 1800*time.Millisecond {
		t.Fatalf("%d token_please answered in %s, want at least 1.8 s at 5 a second", n, took)
	}
}
