package gateway_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hookbus/hookbus/internal/natstest"
	"github.com/hookbus/hookbus/pkg/events"
	"github.com/hookbus/hookbus/services/gateway"
)

// lifecycleEvent is a device lifecycle event as stored.
type lifecycleEvent struct {
	Type, Source string
	Data         map[string]any
}

// lifecycleEvents reads every event stored on subject
// hookbus.lifecycle.device.<id> (id as given: _unknown included).
func lifecycleEvents(t *testing.T, js jetstream.JetStream, id string) []lifecycleEvent {
	t.Helper()
	st, err := js.Stream(t.Context(), events.StreamLifecycle)
	if err != nil {
		t.Fatal(err)
	}
	var out []lifecycleEvent
	for seq := uint64(1); ; {
		m, err := st.GetMsg(t.Context(), seq, jetstream.WithGetMsgSubject("hookbus.lifecycle.device."+id))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		e, err := events.Codec{}.Decode(m.Header, m.Data)
		if err != nil {
			t.Fatalf("lifecycle event %d: %v", m.Sequence, err)
		}
		le := lifecycleEvent{Type: e.Type(), Source: e.Source()}
		if err := e.DataAs(&le.Data); err != nil {
			t.Fatal(err)
		}
		out = append(out, le)
		seq = m.Sequence + 1
	}
}

// waitLifecycle waits for n events about device id and returns them.
func waitLifecycle(t *testing.T, js jetstream.JetStream, id string, n int) []lifecycleEvent {
	t.Helper()
	var got []lifecycleEvent
	natstest.Eventually(t, 10*time.Second, func() error {
		if got = lifecycleEvents(t, js, id); len(got) < n {
			return fmt.Errorf("%d lifecycle events about %s, want %d: %+v", len(got), id, n, got)
		}
		return nil
	})
	return got
}

// presenceOf reads device id's presence key.
func presenceOf(t *testing.T, kv jetstream.KeyValue, id string) (events.DevicePresence, error) {
	t.Helper()
	e, err := kv.Get(t.Context(), id)
	if err != nil {
		return events.DevicePresence{}, err
	}
	var p events.DevicePresence
	if err := json.Unmarshal(e.Value(), &p); err != nil {
		t.Fatalf("presence of %s: %q: %v", id, e.Value(), err)
	}
	return p, nil
}

// readForever reads conn (answering pings) until it fails.
func readForever(conn *websocket.Conn) {
	go func() {
		for {
			if _, _, err := conn.Read(context.Background()); err != nil {
				return
			}
		}
	}()
}

func presenceBucket(t *testing.T, js jetstream.JetStream) jetstream.KeyValue {
	t.Helper()
	kv, err := js.KeyValue(t.Context(), events.BucketDevicePresence)
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

func TestDevicePresenceFollowsTheSession(t *testing.T) {
	b := newDeviceBus(t, false, func(c *gateway.Config) {
		c.DeviceIdleTimeout = 300 * time.Millisecond
		c.Replica = "r1"
	})
	kv := presenceBucket(t, b.js)
	conn := b.connectWithToken(t, "p1")
	first, err := presenceOf(t, kv, "p1")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(first.Session) || first.Replica != "r1" || first.Remote == "" ||
		first.ConnectedSince.IsZero() || first.LastSeen.Before(first.ConnectedSince) {
		t.Fatalf("presence %+v: want a session id, replica r1, the remote address, the times", first)
	}
	readForever(conn) // pongs
	natstest.Eventually(t, 10*time.Second, func() error {
		p, err := presenceOf(t, kv, "p1")
		if err != nil {
			return err
		}
		if !p.LastSeen.After(first.LastSeen) || p.Session != first.Session || !p.ConnectedSince.Equal(first.ConnectedSince) {
			return fmt.Errorf("presence %+v: want last_seen after %s", p, first.LastSeen)
		}
		return nil
	})
	if err := conn.Close(websocket.StatusNormalClosure, "bye"); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 10*time.Second, func() error {
		if _, err := presenceOf(t, kv, "p1"); !errors.Is(err, jetstream.ErrKeyNotFound) {
			return fmt.Errorf("presence after a clean close: %v, want no key", err)
		}
		return nil
	})
	got := waitLifecycle(t, b.js, "p1", 2)
	c, d := got[0], got[1]
	if c.Type != events.EventTypeDeviceConnected || c.Source != "/gateway/r1" || c.Data["session"] != first.Session ||
		c.Data["replica"] != "r1" || c.Data["remote"] != first.Remote || c.Data["login"] != "token" {
		t.Errorf("first event %+v: want connected, with the session, replica, remote, login token", c)
	}
	if d.Type != events.EventTypeDeviceDisconnected || d.Source != "/gateway/r1" || d.Data["session"] != first.Session ||
		d.Data["code"] != float64(websocket.StatusNormalClosure) || d.Data["reason"] != "closed by the device" || d.Data["duration_ms"] == nil {
		t.Errorf("second event %+v: want disconnected, code 1000, closed by the device, a duration", d)
	}
}

func TestDeviceClosedByTheGatewayTellsWhy(t *testing.T) {
	b := newDeviceBus(t, false, nil)
	conn := b.connectWithToken(t, "p3")
	if err := conn.Write(t.Context(), websocket.MessageText, []byte(`{"type":"nonsense"}`)); err != nil {
		t.Fatal(err)
	}
	if code, _ := closedWith(t, conn); code != websocket.StatusUnsupportedData {
		t.Fatalf("closed with %d, want 1003", code)
	}
	got := waitLifecycle(t, b.js, "p3", 2)
	if d := got[1]; d.Type != events.EventTypeDeviceDisconnected || d.Data["code"] != float64(websocket.StatusUnsupportedData) ||
		!strings.Contains(d.Data["reason"].(string), "text frame") {
		t.Fatalf("event %+v: want disconnected, code 1003 and the gateway's reason", d)
	}
}

func TestDevicePresenceOfANewerSessionIsKept(t *testing.T) {
	b := newDeviceBus(t, false, func(c *gateway.Config) { c.DeviceIdleTimeout = 300 * time.Millisecond })
	kv := presenceBucket(t, b.js)
	conn := b.connectWithToken(t, "p2")
	readForever(conn)
	newer, _ := json.Marshal(events.DevicePresence{Session: "newer", Replica: "elsewhere", Remote: "192.0.2.1:1",
		ConnectedSince: time.Now().UTC(), LastSeen: time.Now().UTC()})
	if _, err := kv.Put(t.Context(), "p2", newer); err != nil {
		t.Fatal(err)
	}
	if err := conn.Close(websocket.StatusNormalClosure, "bye"); err != nil {
		t.Fatal(err)
	}
	waitLifecycle(t, b.js, "p2", 2) // disconnected: the session is over
	p, err := presenceOf(t, kv, "p2")
	if err != nil || p.Session != "newer" {
		t.Fatalf("presence after the older session ended: %+v, %v: want the newer session's", p, err)
	}
}

// TestDevicePresenceExpires: a key its gateway no longer refreshes (a
// gateway stopped without closing its sockets) expires with the bucket's
// max age, lowered here from 60 s to 1 s.
func TestDevicePresenceExpires(t *testing.T) {
	b := newDeviceBus(t, false, nil) // pings every 20 s: no refresh within the test
	st, err := b.js.Stream(t.Context(), "KV_"+events.BucketDevicePresence)
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	if cfg.MaxAge != events.DevicePresenceTTL {
		t.Fatalf("presence max age %s, want %s", cfg.MaxAge, events.DevicePresenceTTL)
	}
	cfg.MaxAge, cfg.Duplicates = time.Second, 500*time.Millisecond
	if _, err := b.js.UpdateStream(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	kv := presenceBucket(t, b.js)
	b.connectWithToken(t, "p4")
	if _, err := presenceOf(t, kv, "p4"); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 10*time.Second, func() error {
		if _, err := presenceOf(t, kv, "p4"); !errors.Is(err, jetstream.ErrKeyNotFound) {
			return fmt.Errorf("presence not refreshed: %v, want expired", err)
		}
		return nil
	})
}

func TestDeviceRefusalsAreLifecycleEvents(t *testing.T) {
	b := newDeviceBus(t, true, func(c *gateway.Config) { c.Replica = "r2" })
	seal := func(id string, expires time.Time, gen uint64) string {
		tok, err := b.sealer.Seal(gateway.DeviceToken{DeviceID: id, IssuedAt: time.Now().Add(-2 * time.Hour), Expires: expires, Generation: gen})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	kv, err := b.js.KeyValue(t.Context(), events.BucketDevices)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := gateway.RevokeDevice(t.Context(), kv, "revoked"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ id, header, reason string }{
		{"_unknown", "", "invalid_auth_header"},
		{"wrong", authHeader(map[string]any{"device_id": "wrong", "password": "open"}), "authentication_failed"},
		{"other", authHeader(map[string]any{"device_id": "other", "token": seal("d1", time.Now().Add(time.Hour), 0)}), "invalid_token"},
		{"old", authHeader(map[string]any{"device_id": "old", "token": seal("old", time.Now().Add(-time.Hour), 0)}), "token_expired"},
		{"revoked", authHeader(map[string]any{"device_id": "revoked", "token": seal("revoked", time.Now().Add(time.Hour), 0)}), "token_revoked"},
	} {
		if conn, status, p := dial(t, b.url, c.header); conn != nil || string(p.Code) != c.reason {
			t.Fatalf("%s: %d %+v, want refused with %s", c.reason, status, p, c.reason)
		}
		got := waitLifecycle(t, b.js, c.id, 1)
		e := got[0]
		if len(got) != 1 || e.Type != events.EventTypeDeviceSocketError || e.Source != "/gateway/r2" ||
			e.Data["reason"] != c.reason || e.Data["remote"] == "" || e.Data["detail"] == "" {
			t.Errorf("%s: events %+v: want one socket_error with the reason, remote and detail", c.reason, got)
		}
	}
}

func TestDeviceSocketErrorsAreRateLimited(t *testing.T) {
	b := newDeviceBus(t, false, nil)
	cfg := gateway.DefaultConfig()
	cfg.DeviceTokens = b.sealer
	svc, err := gateway.New(cfg, natstest.Connect(t, b.srv), nil)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(svc.Collector())
	hs := httptest.NewServer(svc.Handler())
	t.Cleanup(hs.Close)
	const flood = 500
	start := time.Now()
	for range flood {
		resp, err := http.Get(hs.URL + "/devices/websocket") // no device header
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("status %d, want 400", resp.StatusCode)
		}
	}
	elapsed := time.Since(start)
	var stored, dropped int
	natstest.Eventually(t, 10*time.Second, func() error {
		stored = len(lifecycleEvents(t, b.js, events.DeviceLifecycleUnknown))
		dropped = int(gathered(t, reg)[`hookbus_gateway_device_lifecycle_dropped_total{reason=rate}`])
		if stored+dropped != flood {
			return fmt.Errorf("%d stored, %d dropped, want %d in all", stored, dropped, flood)
		}
		return nil
	})
	if max := 50 + int(50*elapsed.Seconds()) + 1; stored > max || stored < 50 {
		t.Fatalf("%d socket_error events stored in %s, want 50 to %d", stored, elapsed, max)
	}
}

// A gateway that stops (Run's context ends) deletes the presence of its
// devices and stores their disconnected events (1001) before Run returns.
func TestStoppedGatewayClearsItsDevices(t *testing.T) {
	srv, js := natstest.RunTopology(t)
	url, stop := runDeviceGateway(t, srv)
	conn := connectForToken(t, url, "p5").conn
	readForever(conn)
	kv := presenceBucket(t, js)
	if _, err := presenceOf(t, kv, "p5"); err != nil {
		t.Fatal(err)
	}
	stop()
	if _, err := presenceOf(t, kv, "p5"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("presence after the gateway stopped: %v, want no key", err)
	}
	got := lifecycleEvents(t, js, "p5")
	if len(got) != 2 || got[1].Type != events.EventTypeDeviceDisconnected ||
		got[1].Data["code"] != float64(websocket.StatusGoingAway) || got[1].Data["reason"] != "gateway shutting down" {
		t.Fatalf("events %+v: want connected, then disconnected with 1001", got)
	}
}
