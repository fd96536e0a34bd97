package gateway_test

import (
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/nats-io/nats.go"

	"github.com/hookbus/hookbus/internal/natstest"
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

// Two sessions of one device: A takes its session id, then, before A has
// subscribed to the device's control notices, B (a newer id) connects,
// subscribes and announces itself. A must still go (4002): one connection
// per device. Before, A never heard B's announcement, and B ignored A's
// (an older id): both stayed connected.
func TestReviewSessionSlowToSubscribeIsStillReplaced(t *testing.T) {
	b := newDeviceBus(t, false, nil)
	other := b.replica(t, natstest.Connect(t, b.srv), nil)
	var first atomic.Bool
	taken, release := make(chan struct{}), make(chan struct{})
	gateway.SetSessionFault(t, func(id string) {
		if id == "race" && first.CompareAndSwap(false, true) {
			close(taken)
			<-release
		}
	})
	tok, err := b.sealer.Seal(gateway.DeviceToken{DeviceID: "race", IssuedAt: time.Now(), Expires: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	a, status, p := dial(t, b.url, authHeader(map[string]any{"device_id": "race", "token": tok}))
	if a == nil {
		t.Fatalf("connect A: %d %+v", status, p)
	}
	select {
	case <-taken:
	case <-time.After(10 * time.Second):
		t.Fatal("session A did not take its id")
	}
	bConn := b.connectTo(t, other, "race") // B: subscribed, announced, token sent
	close(release)
	if status, _ := closedWith(t, a); status != gateway.StatusReplaced {
		t.Fatalf("session A (the older) ended with %d, want %d: both sessions of the device are connected", status, gateway.StatusReplaced)
	}
	b.storePush(t, "race", `"to B"`)
	readPush(t, bConn, `"to B"`)
}

// gatedDialer dials NATS at once the first time, then only once open is
// closed: the gateway's connection stays away as long as the test wants.
type gatedDialer struct {
	calls atomic.Int32
	open  chan struct{}
}

func (d *gatedDialer) Dial(network, address string) (net.Conn, error) {
	if d.calls.Add(1) > 1 {
		<-d.open
	}
	return net.Dial(network, address)
}

// A revoke whose notice the gateway missed (its NATS connection was down
// at that moment: a NATS restart, a rolling update) must still close the
// device's socket once the gateway is back. Before, the session stayed
// up for as long as the device held it, storing what it sent.
func TestReviewRevokeMissedWhileDisconnectedStillCloses(t *testing.T) {
	b := newDeviceBus(t, false, nil)
	d := &gatedDialer{open: make(chan struct{})}
	gnc := natstest.Connect(t, b.srv, nats.SetCustomDialer(d), nats.ReconnectWait(50*time.Millisecond), nats.MaxReconnects(-1))
	url := b.replica(t, gnc, nil)
	conn := b.connectTo(t, url, "rv")
	cid, err := gnc.GetClientID()
	if err != nil {
		t.Fatal(err)
	}
	if err := b.srv.DisconnectClientByID(cid); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 10*time.Second, func() error {
		if gnc.IsConnected() {
			return errors.New("the gateway is still connected")
		}
		return nil
	})
	if _, err := gateway.Revoke(t.Context(), natstest.Connect(t, b.srv), "rv"); err != nil {
		t.Fatal(err)
	}
	close(d.open) // the gateway connects again; the notice is gone
	if status, _ := closedWith(t, conn); status != gateway.StatusTokenRevoked {
		t.Fatalf("the revoked device's session ended with %d, want %d", status, gateway.StatusTokenRevoked)
	}
}

// A push stored while the gateway's NATS connection was down never came
// live to the session: it must still reach the connected device once the
// gateway is back, not wait for the device's next push or reconnection.
func TestReviewPushStoredWhileGatewayDisconnectedArrives(t *testing.T) {
	b := newDeviceBus(t, false, nil)
	d := &gatedDialer{open: make(chan struct{})}
	gnc := natstest.Connect(t, b.srv, nats.SetCustomDialer(d), nats.ReconnectWait(50*time.Millisecond), nats.MaxReconnects(-1))
	url := b.replica(t, gnc, nil)
	conn := b.connectTo(t, url, "pd")
	// Past the session's one re-read of the stream after its catch-up.
	time.Sleep(6 * time.Second) // not an assertion: the recheck must be over
	cid, err := gnc.GetClientID()
	if err != nil {
		t.Fatal(err)
	}
	if err := b.srv.DisconnectClientByID(cid); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 10*time.Second, func() error {
		if gnc.IsConnected() {
			return errors.New("the gateway is still connected")
		}
		return nil
	})
	b.storePush(t, "pd", `"while away"`)
	close(d.open)
	readPushWithin(t, conn, `"while away"`, 10*time.Second)
}

// An upgrade with a token that this gateway did not seal (or an expired
// one) is refused on the token alone: anyone who can reach the gateway
// must not make it send NATS requests (the bucket's info, the device's
// generation) for each such upgrade; its socket_error event (rate
// limited) is the one message it may cost.
func TestReviewForgedTokenCostsNoNATSRequest(t *testing.T) {
	b := newDeviceBus(t, false, nil)
	gnc := natstest.Connect(t, b.srv)
	url := b.replica(t, gnc, nil)
	expired, err := b.sealer.Seal(gateway.DeviceToken{DeviceID: "d1", IssuedAt: time.Now().Add(-2 * time.Hour), Expires: time.Now().Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	before := gnc.Stats().OutMsgs
	const n = 20
	for i := range n {
		tok, want := "AQ"+strings.Repeat("A", 60), 403
		if i%2 == 1 {
			tok, want = expired, 401
		}
		if conn, status, _ := dial(t, url, authHeader(map[string]any{"device_id": "d1", "token": tok})); conn != nil || status != want {
			t.Fatalf("upgrade %d: %d, want %d", i, status, want)
		}
	}
	if sent := gnc.Stats().OutMsgs - before; sent > n {
		t.Fatalf("%d refused upgrades made the gateway send %d NATS messages, want at most one each (the socket_error event)", n, sent)
	}
}
