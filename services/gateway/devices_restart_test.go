package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/internal/natstest"
	"github.com/hookbus/hookbus/internal/topology"
	"github.com/hookbus/hookbus/pkg/events"
	"github.com/hookbus/hookbus/services/gateway"
)

// runDeviceGateway runs a gateway serving devices (the tests' secret) on
// srv by Run on a free loopback port, and returns its device URL and
// what stops it.
func runDeviceGateway(t *testing.T, srv *server.Server) (string, func()) {
	t.Helper()
	cfg := gateway.DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.MaxEventSize = testMaxEventSize
	cfg.DeviceTokens = newSealer(t, testSecret, testSalt)
	svc, err := gateway.New(cfg, natstest.Connect(t, srv), nil)
	if err != nil {
		t.Fatal(err)
	}
	stop := natstest.RunService(t, svc)
	return "ws://" + svc.Addr() + "/devices/websocket", stop
}

// Messages a gateway acknowledged to a device are in HOOKBUS_DEVICES
// after the gateway and NATS restart, each once; the device connects to
// the new gateway with the token the old one gave it.
func TestAcknowledgedDeviceMessagesSurviveARestart(t *testing.T) {
	store := t.TempDir()
	srv := natstest.RunServerWithStore(t, store)
	if _, err := topology.Ensure(t.Context(), natstest.JetStream(t, srv), topology.DefaultConfig()); err != nil {
		t.Fatal(err)
	}
	url, stop := runDeviceGateway(t, srv)
	first := connectForToken(t, url, "d1")
	conn, token := first.conn, first.token
	const n = 20
	for i := range n {
		if err := conn.Write(t.Context(), websocket.MessageText, fmt.Appendf(nil, `{"type":"message","data":{"n":%d}}`, i)); err != nil {
			t.Fatal(err)
		}
		readAck(t, conn, uint64(i+1))
	}
	stop() // the gateway goes: the device's socket closes with 1001
	if status, _ := closedWith(t, conn); status != websocket.StatusGoingAway {
		t.Fatalf("socket closed with %d when the gateway stopped, want %d", status, websocket.StatusGoingAway)
	}
	srv.Shutdown()
	srv.WaitForShutdown()

	srv = natstest.RunServerWithStore(t, store)
	url, _ = runDeviceGateway(t, srv)
	again, status, p := dial(t, url, authHeader(map[string]any{"device_id": "d1", "token": token}))
	if again == nil {
		t.Fatalf("the old gateway's token on the new one: %d %+v", status, p)
	}
	readToken(t, again)
	if err := again.Write(t.Context(), websocket.MessageText, fmt.Appendf(nil, `{"type":"message","data":{"n":%d}}`, n)); err != nil {
		t.Fatal(err)
	}
	readAck(t, again, 1)

	js := natstest.JetStream(t, srv)
	stream, err := js.Stream(t.Context(), events.StreamDevices)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := stream.OrderedConsumer(t.Context(), jetstream.OrderedConsumerConfig{FilterSubjects: []string{events.DeviceInSubject("d1")}})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]int{}
	for len(seen) < n+1 {
		m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatalf("after %d of %d messages: %v", len(seen), n+1, err)
		}
		e, err := events.Codec{}.Decode(m.Headers(), m.Data())
		if err != nil {
			t.Fatal(err)
		}
		var d struct{ N int }
		if err := json.Unmarshal(e.Data(), &d); err != nil {
			t.Fatal(err)
		}
		if seen[d.N]++; seen[d.N] > 1 {
			t.Fatalf("message %d stored twice", d.N)
		}
	}
	if info, err := stream.Info(t.Context()); err != nil || info.State.Msgs != n+1 {
		t.Fatalf("stream holds %+v, %v; want %d messages", info.State, err, n+1)
	}
}

// deviceWithToken is a connected device and the token it was given.
type deviceWithToken struct {
	conn  *websocket.Conn
	token string
}

// b0 connects device id to url with a token sealed for it and returns the
// socket and the token of the gateway's first frame.
func connectForToken(t *testing.T, url, id string) deviceWithToken {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	tok, err := deviceToken(id)
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	h.Set(gateway.HeaderDeviceAuth, authHeader(map[string]any{"device_id": id, "token": tok}))
	conn, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: h})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.CloseNow() })
	return deviceWithToken{conn: conn, token: readToken(t, conn).Token}
}
