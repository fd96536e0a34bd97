package gateway_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/coder/websocket"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/internal/natstest"
	"github.com/hookbus/hookbus/pkg/client"
	"github.com/hookbus/hookbus/pkg/events"
	"github.com/hookbus/hookbus/services/dispatcher"
	"github.com/hookbus/hookbus/services/gateway"
)

// deviceBus is a NATS server with the topology, a registry, a dispatcher
// and a gateway serving devices; with a login plugin when asked.
type deviceBus struct {
	srv    *server.Server
	js     jetstream.JetStream
	url    string // ws://…/devices/websocket
	logins atomic.Int32
	sealer *gateway.DeviceSealer
}

func newDeviceBus(t *testing.T, withPlugin bool, set func(*gateway.Config)) *deviceBus {
	t.Helper()
	srv, js := natstest.RunTopology(t)
	dcfg := dispatcher.DefaultConfig()
	dcfg.ConsumerCheck = 200 * time.Millisecond
	runChainServices(t, srv, dcfg)
	b := &deviceBus{srv: srv, js: js, sealer: newSealer(t, testSecret, testSalt)}
	nc := natstest.Connect(t, srv)
	if withPlugin {
		c, err := client.New(natstest.Connect(t, srv))
		if err != nil {
			t.Fatal(err)
		}
		cb := &callBus{c: c}
		// The login plugin allows password "sesame" and tries to change
		// the device id, which the gateway marks private.
		cb.serve(t, client.Plugin{Spec: events.PluginSpec{Name: "login", Event: gateway.EventTypeDeviceAuthenticate, Priority: 10},
			Chain: func(_ context.Context, s *client.Step) (client.StepResult, error) {
				var state map[string]any
				if err := s.Event.DataAs(&state); err != nil {
					return client.StepResult{}, err
				}
				if state["probe"] == true {
					return client.Continue(state), nil
				}
				b.logins.Add(1)
				state["allow"] = state["password"] == "sesame" && state["device_id"] != "forged"
				state["device_id"] = "forged"
				return client.Continue(state), nil
			}})
		cb.waitChain(t, gateway.EventTypeDeviceAuthenticate, "login")
	}
	b.url = b.replica(t, nc, set)
	return b
}

// replica starts a gateway serving devices on nc and returns its device
// URL.
func (b *deviceBus) replica(t *testing.T, nc *nats.Conn, set func(*gateway.Config)) string {
	t.Helper()
	cfg := gateway.DefaultConfig()
	cfg.MaxEventSize = testMaxEventSize
	cfg.DeviceTokens = b.sealer
	if set != nil {
		set(&cfg)
	}
	svc, err := gateway.New(cfg, nc, nil)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(svc.Handler())
	t.Cleanup(hs.Close)
	return "ws" + strings.TrimPrefix(hs.URL, "http") + "/devices/websocket"
}

// authHeader is the device header of obj.
func authHeader(obj map[string]any) string {
	b, _ := json.Marshal(obj)
	return base64.StdEncoding.EncodeToString(b)
}

// dial connects with header h (none when empty); a refused upgrade gives
// its status and problem.
func dial(t *testing.T, url, h string) (*websocket.Conn, int, gateway.Problem) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	opts := &websocket.DialOptions{HTTPHeader: http.Header{}}
	if h != "" {
		opts.HTTPHeader.Set(gateway.HeaderDeviceAuth, h)
	}
	conn, resp, err := websocket.Dial(ctx, url, opts)
	if err == nil {
		t.Cleanup(func() { _ = conn.CloseNow() })
		return conn, http.StatusSwitchingProtocols, gateway.Problem{}
	}
	if resp == nil {
		t.Fatalf("dial: %v", err)
	}
	var p gateway.Problem
	body, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("refusal %d: body %q is not a problem: %v", resp.StatusCode, body, err)
	}
	if p.Status != resp.StatusCode || !strings.HasSuffix(p.Type, "#http-gateway-"+string(p.Code)) || p.Detail == "" {
		t.Fatalf("refusal %d: problem %+v: want its status, a type naming its code and a detail", resp.StatusCode, p)
	}
	return nil, resp.StatusCode, p
}

type tokenFrame struct {
	Type    string    `json:"type"`
	Token   string    `json:"token"`
	Expires time.Time `json:"expires"`
}

// readToken reads the next frame, which must be a token frame.
func readToken(t *testing.T, conn *websocket.Conn) tokenFrame {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	typ, b, err := conn.Read(ctx)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	var f tokenFrame
	if typ != websocket.MessageText || json.Unmarshal(b, &f) != nil || f.Type != "token" || f.Token == "" {
		t.Fatalf("frame %s %q: want a token frame", typ, b)
	}
	return f
}

func TestDeviceHeaderRefusals(t *testing.T) {
	b := newDeviceBus(t, false, nil)
	tests := []struct {
		name   string
		header string
		want   string // in the problem's detail
	}{
		{"no header", "", "missing"},
		{"header of 1 KiB", strings.Repeat("A", 1024), "want fewer than 1024"},
		{"not base64", "not base64!", "not base64"},
		{"not JSON", base64.StdEncoding.EncodeToString([]byte("{device_id")), "not JSON"},
		{"two JSON values", base64.StdEncoding.EncodeToString([]byte(`{"device_id":"d"} {}`)), "not JSON"},
		{"not an object", base64.StdEncoding.EncodeToString([]byte(`["device_id"]`)), "not a JSON object"},
		{"no device id", authHeader(map[string]any{"password": "sesame"}), "no device_id"},
		{"device id not a string", authHeader(map[string]any{"device_id": 7}), "no device_id"},
		{"device id not a subject token", authHeader(map[string]any{"device_id": "a.b"}), "device_id must be"},
		{"device id starting with _", authHeader(map[string]any{"device_id": "_unknown"}), "device_id must be"},
		{"device id starting with -", authHeader(map[string]any{"device_id": "-d"}), "device_id must be"},
		{"device id of 65", authHeader(map[string]any{"device_id": strings.Repeat("d", 65)}), "device_id must be"},
		{"token not a string", authHeader(map[string]any{"device_id": "d", "token": 1}), "token must be a string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, status, p := dial(t, b.url, tt.header)
			if status != http.StatusBadRequest || p.Code != "invalid_auth_header" || !strings.Contains(p.Detail, tt.want) {
				t.Fatalf("got %d %+v, want 400 invalid_auth_header saying %q", status, p, tt.want)
			}
		})
	}
	// Just under the limit is read.
	pad := authHeader(map[string]any{"device_id": "d", "token": strings.Repeat("x", 700)})
	if _, status, p := dial(t, b.url, pad); len(pad) >= 1024 || status == http.StatusBadRequest {
		t.Fatalf("a %d-byte header: %d %+v, want it read", len(pad), status, p)
	}
}

func TestDeviceLoginWithoutPluginIsRefused(t *testing.T) {
	b := newDeviceBus(t, false, nil)
	_, status, p := dial(t, b.url, authHeader(map[string]any{"device_id": "d1", "password": "sesame"}))
	if status != http.StatusForbidden || p.Code != "authentication_failed" {
		t.Fatalf("got %d %+v, want 403 authentication_failed", status, p)
	}
}

func TestDeviceSessionTokens(t *testing.T) {
	b := newDeviceBus(t, true, func(c *gateway.Config) { c.TokenRefresh = 300 * time.Millisecond })
	login := func(id, password string) string {
		return authHeader(map[string]any{"device_id": id, "password": password})
	}
	withToken := func(id, token string) string { return authHeader(map[string]any{"device_id": id, "token": token}) }

	conn, status, p := dial(t, b.url, login("d1", "sesame"))
	if conn == nil {
		t.Fatalf("login: %d %+v", status, p)
	}
	first := readToken(t, conn)
	if b.logins.Load() != 1 {
		t.Fatalf("%d calls of the login plugin, want 1", b.logins.Load())
	}
	if d := time.Until(first.Expires); d < gateway.DefaultTokenExpiry-time.Minute || d > gateway.DefaultTokenExpiry {
		t.Fatalf("token expires in %s, want %s", d, gateway.DefaultTokenExpiry)
	}
	// Pushed every TokenRefresh, and at once on token_please.
	readToken(t, conn)
	if err := conn.Write(t.Context(), websocket.MessageText, []byte(`{"type":"token_please"}`)); err != nil {
		t.Fatal(err)
	}
	readToken(t, conn)
	_ = conn.Close(websocket.StatusNormalClosure, "")

	// The token lets the device in without a login.
	again, status, p := dial(t, b.url, withToken("d1", first.Token))
	if again == nil {
		t.Fatalf("with its token: %d %+v", status, p)
	}
	readToken(t, again)
	if b.logins.Load() != 1 {
		t.Fatalf("%d calls of the login plugin after a token connection, want 1", b.logins.Load())
	}
	_ = again.Close(websocket.StatusNormalClosure, "")

	raw, _ := base64.RawURLEncoding.DecodeString(first.Token)
	raw[len(raw)-1] ^= 1
	tampered := base64.RawURLEncoding.EncodeToString(raw)
	other, _ := newSealer(t, append([]byte("other"), testSecret...), testSalt).Seal(gateway.DeviceToken{DeviceID: "d1", IssuedAt: time.Now(), Expires: time.Now().Add(time.Hour)})
	expired, _ := b.sealer.Seal(gateway.DeviceToken{DeviceID: "d1", IssuedAt: time.Now().Add(-2 * time.Hour), Expires: time.Now().Add(-time.Hour)})

	tests := []struct {
		name   string
		header string
		status int
		code   string
	}{
		{"wrong password", login("d1", "open"), http.StatusForbidden, "authentication_failed"},
		{"token of another device", withToken("d2", first.Token), http.StatusForbidden, "invalid_token"},
		{"tampered token", withToken("d1", tampered), http.StatusForbidden, "invalid_token"},
		{"token made with another secret", withToken("d1", other), http.StatusForbidden, "invalid_token"},
		{"expired token", withToken("d1", expired), http.StatusUnauthorized, "token_expired"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, status, p := dial(t, b.url, tt.header)
			if status != tt.status || string(p.Code) != tt.code {
				t.Fatalf("got %d %+v, want %d %s", status, p, tt.status, tt.code)
			}
			if tt.status == http.StatusUnauthorized && !strings.Contains(p.Detail, "log in again") {
				t.Fatalf("detail %q does not say to log in again", p.Detail)
			}
		})
	}

	t.Run("revoked token", func(t *testing.T) {
		kv, err := b.js.KeyValue(t.Context(), events.BucketDevices)
		if err != nil {
			t.Fatal(err)
		}
		if g, err := gateway.RevokeDevice(t.Context(), kv, "d1"); err != nil || g != 1 {
			t.Fatalf("revoke: generation %d, %v; want 1", g, err)
		}
		_, status, p := dial(t, b.url, withToken("d1", first.Token))
		if status != http.StatusUnauthorized || p.Code != "token_revoked" || !strings.Contains(p.Detail, "log in again") {
			t.Fatalf("got %d %+v, want 401 token_revoked", status, p)
		}
		// A new login gets a token of the new generation, which works.
		conn, status, p := dial(t, b.url, login("d1", "sesame"))
		if conn == nil {
			t.Fatalf("login after revoke: %d %+v", status, p)
		}
		fresh := readToken(t, conn)
		_ = conn.Close(websocket.StatusNormalClosure, "")
		if c, status, p := dial(t, b.url, withToken("d1", fresh.Token)); c == nil {
			t.Fatalf("token issued after the revoke: %d %+v", status, p)
		}
	})
}

func TestRevokeDeviceConcurrently(t *testing.T) {
	_, js := natstest.RunTopology(t)
	kv, err := js.KeyValue(t.Context(), events.BucketDevices)
	if err != nil {
		t.Fatal(err)
	}
	const n = 8
	errs := make(chan error, n)
	for range n {
		go func() {
			_, err := gateway.RevokeDevice(t.Context(), kv, "d1")
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if g, err := gateway.DeviceGeneration(t.Context(), kv, "d1"); err != nil || g != n {
		t.Fatalf("generation %d, %v; want %d (each revoke counted)", g, err, n)
	}
	if _, err := gateway.RevokeDevice(t.Context(), kv, "a.b"); err == nil {
		t.Fatal("a device id with a dot was revoked")
	}
}

// connectWithToken connects device id with a token sealed for it.
func (b *deviceBus) connectWithToken(t *testing.T, id string) *websocket.Conn {
	t.Helper()
	return b.connectTo(t, b.url, id)
}

// connectTo connects device id to the gateway at url with a token.
func (b *deviceBus) connectTo(t *testing.T, url, id string) *websocket.Conn {
	t.Helper()
	tok, err := b.sealer.Seal(gateway.DeviceToken{DeviceID: id, IssuedAt: time.Now(), Expires: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	conn, status, p := dial(t, url, authHeader(map[string]any{"device_id": id, "token": tok}))
	if conn == nil {
		t.Fatalf("connect %s: %d %+v", id, status, p)
	}
	readToken(t, conn)
	return conn
}

// readAck reads the next frame, which must be the ack of seq.
func readAck(t *testing.T, conn *websocket.Conn, seq uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	typ, b, err := conn.Read(ctx)
	if err != nil {
		t.Fatalf("read the ack of %d: %v", seq, err)
	}
	var f struct {
		Type string
		Seq  uint64
	}
	if typ != websocket.MessageText || json.Unmarshal(b, &f) != nil || f.Type != "ack" || f.Seq != seq {
		t.Fatalf("frame %s %q, want the ack of %d", typ, b, seq)
	}
}

// closedWith reads until the socket closes and returns its close status.
func closedWith(t *testing.T, conn *websocket.Conn) (websocket.StatusCode, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var last []byte
	for {
		_, b, err := conn.Read(ctx)
		if err != nil {
			return websocket.CloseStatus(err), last
		}
		last = b
	}
}

func TestDeviceMessagesAreStoredBeforeTheirAck(t *testing.T) {
	b := newDeviceBus(t, false, nil)
	conn := b.connectWithToken(t, "d1")
	stream, err := b.js.Stream(t.Context(), events.StreamDevices)
	if err != nil {
		t.Fatal(err)
	}
	stored := func(t *testing.T, seq uint64) (*event.Event, string) {
		t.Helper()
		m, err := stream.GetMsg(t.Context(), seq)
		if err != nil {
			t.Fatalf("stored message %d: %v", seq, err)
		}
		e, err := events.Codec{}.Decode(m.Header, m.Data)
		if err != nil {
			t.Fatal(err)
		}
		return e, m.Subject
	}

	if err := conn.Write(t.Context(), websocket.MessageText, []byte(`{"type":"message","data":{"temp":21.5}}`)); err != nil {
		t.Fatal(err)
	}
	readAck(t, conn, 1)
	e, subject := stored(t, 1)
	if subject != "hookbus.device.d1.in" || e.Source() != "/devices/d1" || e.Type() != "hookbus.device.message" ||
		e.DataContentType() != "application/json" || string(e.Data()) != `{"temp":21.5}` {
		t.Fatalf("stored on %s: %s", subject, e)
	}

	raw := []byte{0, 1, 2, 0xff}
	if err := conn.Write(t.Context(), websocket.MessageBinary, raw); err != nil {
		t.Fatal(err)
	}
	readAck(t, conn, 2)
	if e, _ := stored(t, 2); e.DataContentType() != "application/octet-stream" || string(e.Data()) != string(raw) {
		t.Fatalf("binary frame stored as %s", e)
	}

	t.Run("a frame of no known type closes the socket", func(t *testing.T) {
		for _, frame := range []string{`{"type":"hello"}`, `not json`, `{"type":"message"}`} {
			c := b.connectWithToken(t, "d2")
			if err := c.Write(t.Context(), websocket.MessageText, []byte(frame)); err != nil {
				t.Fatal(err)
			}
			if status, last := closedWith(t, c); status != websocket.StatusUnsupportedData || last != nil {
				t.Fatalf("%s: closed with %d after %q, want %d and no ack", frame, status, last, websocket.StatusUnsupportedData)
			}
		}
	})

	t.Run("not stored, not acknowledged", func(t *testing.T) {
		if err := b.js.DeleteStream(t.Context(), events.StreamDevices); err != nil {
			t.Fatal(err)
		}
		if err := conn.Write(t.Context(), websocket.MessageText, []byte(`{"type":"message","data":1}`)); err != nil {
			t.Fatal(err)
		}
		if status, last := closedWith(t, conn); status != websocket.StatusTryAgainLater || last != nil {
			t.Fatalf("closed with %d after %q, want %d and no ack", status, last, websocket.StatusTryAgainLater)
		}
	})
}

func TestDevicePushesReachTheReplicaHoldingTheSocket(t *testing.T) {
	b := newDeviceBus(t, false, nil)
	other := b.replica(t, natstest.Connect(t, b.srv), nil)
	d1 := b.connectTo(t, other, "d1") // on the second replica
	d2 := b.connectWithToken(t, "d2") // on the first
	nc := natstest.Connect(t, b.srv)
	for _, p := range []struct{ id, data string }{{"d1", `{"led":"on"}`}, {"d1", "\x00raw"}, {"d2", `"for d2"`}} {
		if err := nc.Publish("hookbus.device."+p.id+".out", []byte(p.data)); err != nil {
			t.Fatal(err)
		}
	}
	readPush(t, d1, `{"led":"on"}`)
	readPush(t, d1, "\x00raw")
	// d2's first frame is its own push: nothing of d1's reached it.
	readPush(t, d2, `"for d2"`)
}

func TestRevokedDeviceIsDisconnectedOnEveryReplica(t *testing.T) {
	b := newDeviceBus(t, false, nil)
	other := b.replica(t, natstest.Connect(t, b.srv), nil)
	d1 := b.connectTo(t, other, "d1")
	d2 := b.connectWithToken(t, "d2")
	start := time.Now()
	if g, err := gateway.Revoke(t.Context(), natstest.Connect(t, b.srv), "d1"); err != nil || g != 1 {
		t.Fatalf("revoke: generation %d, %v", g, err)
	}
	status, _ := closedWith(t, d1)
	if took := time.Since(start); status != gateway.StatusTokenRevoked || took > time.Second {
		t.Fatalf("d1 closed with %d after %s, want %d within 1s", status, took, gateway.StatusTokenRevoked)
	}
	// d2 stays: a push still reaches it.
	if err := natstest.Connect(t, b.srv).Publish("hookbus.device.d2.out", []byte(`1`)); err != nil {
		t.Fatal(err)
	}
	readPush(t, d2, `1`)
	// A forged notice: TestForgedRevokeNoticeClosesNoDevice.
}

func TestDeviceThatDoesNotAnswerPingsIsClosed(t *testing.T) {
	b := newDeviceBus(t, false, func(c *gateway.Config) { c.DeviceIdleTimeout = 300 * time.Millisecond })
	quiet := b.connectWithToken(t, "quiet")
	alive := b.connectWithToken(t, "alive")
	// alive reads (and so answers pings) until quiet is gone; quiet
	// reads nothing, so its pongs never go.
	aliveErr := make(chan error, 1)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() {
		_, _, err := alive.Read(ctx)
		aliveErr <- err
	}()
	natstest.Eventually(t, 10*time.Second, func() error {
		// Writing to a socket the gateway closed fails once the close is
		// seen; a ping of our own needs a reader, which quiet has not.
		pctx, pcancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		defer pcancel()
		if err := quiet.Write(pctx, websocket.MessageText, []byte(`{"type":"token_please"}`)); err == nil {
			return fmt.Errorf("quiet still open")
		}
		return nil
	})
	select {
	case err := <-aliveErr:
		t.Fatalf("the device that answers pings was closed: %v", err)
	default:
	}
}

func TestDeviceFramesAreReadAtTheDeviceRate(t *testing.T) {
	b := newDeviceBus(t, false, func(c *gateway.Config) { c.DeviceRate = 5 })
	conn := b.connectWithToken(t, "d1")
	start := time.Now()
	const n = 15 // 5 at once (the burst), then 5 a second
	for range n {
		if err := conn.Write(t.Context(), websocket.MessageText, []byte(`{"type":"message","data":1}`)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range uint64(n) {
		readAck(t, conn, i+1)
	}
	if took := time.Since(start); took < 1800*time.Millisecond {
		t.Fatalf("%d frames acknowledged in %s, want at least 1.8 s at 5 a second", n, took)
	}
}
