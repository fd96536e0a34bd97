package gateway_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/hookbus/hookbus/internal/natstest"
	"github.com/hookbus/hookbus/pkg/events"
	"github.com/hookbus/hookbus/services/gateway"
)

// A revoke notice is a hint anyone allowed may publish: a device whose
// token is of its current generation stays connected, even when it was
// revoked before (generation 1, not 0) and notices keep coming. Each
// notice makes the gateway read the generation (a real revoke on the same
// replica closes its device within a second), so the device is read for
// two seconds after the last forged notice before the check.
func TestForgedRevokeNoticeClosesNoDevice(t *testing.T) {
	b := newDeviceBus(t, false, nil)
	kv, err := b.js.KeyValue(t.Context(), events.BucketDevices)
	if err != nil {
		t.Fatal(err)
	}
	if g, err := gateway.RevokeDevice(t.Context(), kv, "d3"); err != nil || g != 1 {
		t.Fatalf("revoke: generation %d, %v; want 1", g, err)
	}
	// d3 logs in again: its token is of generation 1.
	tok, err := b.sealer.Seal(gateway.DeviceToken{DeviceID: "d3", IssuedAt: time.Now(), Expires: time.Now().Add(time.Hour), Generation: 1})
	if err != nil {
		t.Fatal(err)
	}
	d3, status, p := dial(t, b.url, authHeader(map[string]any{"device_id": "d3", "token": tok}))
	if d3 == nil {
		t.Fatalf("connect d3 with a token of generation 1: %d %+v", status, p)
	}
	readToken(t, d3)
	// A device revoked for real beside it, after the forged notices: its
	// close shows the gateway handles notices.
	d4 := b.connectWithToken(t, "d4")

	nc := natstest.Connect(t, b.srv)
	for _, data := range []string{"99", "1", "0", ""} {
		if err := nc.Publish(events.DeviceRevokedSubject("d3"), []byte(data)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := gateway.Revoke(t.Context(), nc, "d4"); err != nil {
		t.Fatal(err)
	}
	if status, _ := closedWith(t, d4); status != gateway.StatusTokenRevoked {
		t.Fatalf("d4 closed with %d, want %d", status, gateway.StatusTokenRevoked)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	if typ, got, err := d3.Read(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("d3 after forged revoke notices: %s %q, %v (close status %d); want it open and quiet", typ, got, err, websocket.CloseStatus(err))
	}
	// A socket whose read timed out is closed by coder/websocket: check
	// on a new connection of the same token that d3 was not revoked.
	again, status, p := dial(t, b.url, authHeader(map[string]any{"device_id": "d3", "token": tok}))
	if again == nil {
		t.Fatalf("d3's token after forged notices: %d %+v", status, p)
	}
	readToken(t, again)
	if err := again.Write(t.Context(), websocket.MessageText, []byte(`{"type":"message","data":1}`)); err != nil {
		t.Fatal(err)
	}
	readAck(t, again, 1)
}
