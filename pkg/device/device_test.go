package device_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hookbus/hookbus/internal/natstest"
	"github.com/hookbus/hookbus/pkg/device"
	"github.com/hookbus/hookbus/pkg/events"
	"github.com/hookbus/hookbus/services/gateway"
)

var sesame = map[string]any{"password": "sesame"}

func TestConfigRefusals(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  device.Config
		want string
	}{
		{"no URL", device.Config{DeviceID: "d"}, "want ws, wss, http or https"},
		{"bad scheme", device.Config{URL: "ftp://h", DeviceID: "d"}, "want ws, wss, http or https"},
		{"no host", device.Config{URL: "ws://", DeviceID: "d"}, "no host"},
		{"bad id", device.Config{URL: "ws://h", DeviceID: "_d"}, "not starting with _ or -"},
		{"id with a dot", device.Config{URL: "ws://h", DeviceID: "a.b"}, "must be 1 to 64"},
		{"token in credentials", device.Config{URL: "ws://h", DeviceID: "d", Credentials: map[string]any{"token": "x"}}, "key token"},
		{"another device id", device.Config{URL: "ws://h", DeviceID: "d", Credentials: map[string]any{"device_id": "e"}}, "is not the device id"},
		{"credentials too long", device.Config{URL: "ws://h", DeviceID: "d", Credentials: map[string]any{"p": strings.Repeat("x", 800)}}, "1024 or more"},
		{"backoff", device.Config{URL: "ws://h", DeviceID: "d", MinBackoff: time.Second, MaxBackoff: time.Millisecond}, "min <= max"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := device.New(tt.cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New: %v, want an error saying %q", err, tt.want)
			}
		})
	}
}

func TestFileTokenStore(t *testing.T) {
	dir := t.TempDir()
	s := device.FileTokenStore{Path: filepath.Join(dir, "token.json")}
	if tok, err := s.Load(); err != nil || tok.Token != "" {
		t.Fatalf("Load of no file: %+v %v, want no token", tok, err)
	}
	want := device.Token{Token: "abc", Expires: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
	if err := s.Save(want); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(s.Path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v %v, want mode 0600", fi, err)
	}
	if got, err := s.Load(); err != nil || got.Token != want.Token || !got.Expires.Equal(want.Expires) {
		t.Fatalf("Load: %+v %v, want %+v", got, err, want)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("%d files in the directory, want the token file only (no temporary file left)", len(ents))
	}
	if err := s.Delete(); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(); err != nil {
		t.Fatalf("Delete of no file: %v", err)
	}
	if err := os.WriteFile(s.Path, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(); err == nil || !strings.Contains(err.Error(), "not a token") {
		t.Fatalf("Load of a broken file: %v, want not a token", err)
	}
}

// A first login runs the login chain once; the token it stored logs the
// next connection in without it.
func TestLoginThenToken(t *testing.T) {
	b := newBus(t, nil)
	store := device.FileTokenStore{Path: filepath.Join(t.TempDir(), "token.json")}
	c, w := b.start(t, device.Config{DeviceID: "d1", Credentials: sesame, Tokens: store})
	tok := waitConnected(t, c, store)
	if fi, err := os.Stat(store.Path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v %v, want mode 0600", fi, err)
	}
	if !tok.Expires.After(time.Now().Add(24 * time.Hour)) {
		t.Fatalf("token expires %s, want weeks ahead", tok.Expires)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(c.Err(), device.ErrClosed) || c.Status() != device.StatusClosed || w.count(device.StatusClosed) != 1 {
		t.Fatalf("after Close: %s %v, want closed ErrClosed", c.Status(), c.Err())
	}
	if err := c.Send(t.Context(), json.RawMessage(`1`)); !errors.Is(err, device.ErrClosed) {
		t.Fatalf("Send after Close: %v, want ErrClosed", err)
	}
	// Credentials given, but the token is good: it is used.
	c2, _ := b.start(t, device.Config{DeviceID: "d1", Credentials: sesame, Tokens: store})
	waitConnected(t, c2, store)
	if n := b.logins.Load(); n != 1 {
		t.Fatalf("login chain ran %d times, want once (the reconnection used the token)", n)
	}
	// No credentials at all: the token alone.
	c2.Close()
	c3, _ := b.start(t, device.Config{DeviceID: "d1", Tokens: store})
	waitConnected(t, c3, store)
	if n := b.logins.Load(); n != 1 {
		t.Fatalf("login chain ran %d times, want once", n)
	}
}

func TestTokenRefreshAndTokenPlease(t *testing.T) {
	b := newBus(t, func(c *gateway.Config) { c.TokenRefresh = 300 * time.Millisecond })
	store := &device.MemoryTokenStore{}
	c, _ := b.start(t, device.Config{DeviceID: "d1", Credentials: sesame, Tokens: store})
	first := waitConnected(t, c, store)
	natstest.Eventually(t, wait, func() error {
		if tok, _ := store.Load(); tok.Token == first.Token {
			return errors.New("token not refreshed yet")
		}
		return nil
	})
	before, _ := store.Load()
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	tok, err := c.RefreshToken(ctx)
	if err != nil || tok.Token == "" || tok.Token == before.Token {
		t.Fatalf("RefreshToken: %+v %v, want a fresh token", tok, err)
	}
	if n := b.logins.Load(); n != 1 {
		t.Fatalf("login chain ran %d times, want once", n)
	}
}

func TestSendAndSendRaw(t *testing.T) {
	b := newBus(t, nil)
	c, _ := b.start(t, device.Config{DeviceID: "d1", Credentials: sesame})
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	// Sent before the connection is up: queued, then acknowledged.
	if err := c.Send(ctx, json.RawMessage(`{"temp":21.5}`)); err != nil {
		t.Fatal(err)
	}
	if err := c.SendRaw(ctx, []byte{0, 1, 2, 0xff}); err != nil {
		t.Fatal(err)
	}
	if err := c.Send(ctx, json.RawMessage(`not json`)); err == nil {
		t.Fatal("Send of not JSON: no error")
	}
	got := b.stored(t, "d1", 2)
	if got[0].Source() != "/devices/d1" || got[0].Type() != events.EventTypeDeviceMessage || !jsonEq(got[0].Data(), []byte(`{"temp":21.5}`)) {
		t.Fatalf("first event %s %s %s, want the JSON message", got[0].Source(), got[0].Type(), got[0].Data())
	}
	if got[1].DataContentType() != "application/octet-stream" || string(got[1].Data()) != "\x00\x01\x02\xff" {
		t.Fatalf("second event %s %q, want the binary frame", got[1].DataContentType(), got[1].Data())
	}
}

// Frames sent while the connection keeps breaking are all stored (at
// least once), each Send returning once its frame is.
func TestSendAtLeastOnceAcrossReconnections(t *testing.T) {
	b := newBus(t, nil)
	c, _ := b.start(t, device.Config{DeviceID: "d1", Credentials: sesame})
	const n = 60
	errc := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*wait)
		defer cancel()
		for i := range n {
			if err := c.Send(ctx, json.RawMessage(fmt.Sprint(i))); err != nil {
				errc <- fmt.Errorf("send %d: %w", i, err)
				return
			}
		}
		errc <- nil
	}()
	breaks := 0
	for done := false; !done; {
		select {
		case err := <-errc:
			if err != nil {
				t.Fatal(err)
			}
			done = true
		default:
			if c.Status() == device.StatusConnected && breaks < 5 {
				b.hs.CloseClientConnections()
				breaks++
			}
			time.Sleep(5 * time.Millisecond) // pace the breaks, not an assertion
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	info, err := b.js.Stream(ctx, events.StreamDevices)
	if err != nil {
		t.Fatal(err)
	}
	total := int(info.CachedInfo().State.Msgs)
	seen := map[string]bool{}
	last := -1
	for _, e := range b.stored(t, "d1", total) {
		var i int
		if err := json.Unmarshal(e.Data(), &i); err != nil {
			t.Fatal(err)
		}
		seen[fmt.Sprint(i)] = true
		if i > last+1 {
			t.Fatalf("message %d stored after %d: out of order", i, last)
		}
		last = max(last, i)
	}
	if len(seen) != n {
		t.Fatalf("%d distinct messages stored, want %d", len(seen), n)
	}
	t.Logf("%d messages, %d stored, %d connections broken", n, total, breaks)
}

// A frame the gateway refuses as too big fails its Send, and is not sent
// again; the next one goes through.
func TestTooBigFrameFailsItsSend(t *testing.T) {
	b := newBus(t, func(c *gateway.Config) { c.MaxEventSize = 4096 })
	c, _ := b.start(t, device.Config{DeviceID: "d1", Credentials: sesame})
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	var fe *device.FrameError
	if err := c.SendRaw(ctx, make([]byte, 8192)); !errors.As(err, &fe) || fe.Code != 1009 {
		t.Fatalf("SendRaw of 8 KiB: %v, want a FrameError 1009", err)
	}
	if err := c.Send(ctx, json.RawMessage(`"small"`)); err != nil {
		t.Fatal(err)
	}
	if got := b.stored(t, "d1", 1); !jsonEq(got[0].Data(), []byte(`"small"`)) {
		t.Fatalf("stored %s, want the small message", got[0].Data())
	}
}

// Pushes published on hookbus.device.<id>.out reach OnPush: JSON as JSON,
// other bytes as binary.
func TestPushes(t *testing.T) {
	b := newBus(t, nil)
	store := &device.MemoryTokenStore{}
	c, w := b.start(t, device.Config{DeviceID: "d1", Credentials: sesame, Tokens: store})
	waitConnected(t, c, store)
	if err := b.nc.Publish(events.DeviceOutSubject("d1"), []byte(`{"led":"on"}`)); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, wait, func() error {
		if len(w.got()) < 1 {
			return errors.New("no push yet")
		}
		return nil
	})
	// Published again until it arrives: a gateway without push_ack
	// closes the socket after the first push (1003), and a push published
	// while the client reconnects is lost on a gateway without stored
	// pushes.
	natstest.Eventually(t, wait, func() error {
		if err := b.nc.Publish(events.DeviceOutSubject("d1"), []byte{0xde, 0xad}); err != nil {
			return err
		}
		if len(w.got()) < 2 {
			return errors.New("no binary push yet")
		}
		return nil
	})
	got := w.got()
	if got[0].Binary || !jsonEq(got[0].Data, []byte(`{"led":"on"}`)) {
		t.Fatalf("first push %+v, want the JSON", got[0])
	}
	if !got[1].Binary || string(got[1].Data) != "\xde\xad" {
		t.Fatalf("second push %+v, want the bytes", got[1])
	}
}

// A revoked device (close 4001) logs in again with its credentials and
// stores the new token.
func TestRevokeLogsInAgain(t *testing.T) {
	b := newBus(t, nil)
	store := &device.MemoryTokenStore{}
	c, w := b.start(t, device.Config{DeviceID: "d1", Credentials: sesame, Tokens: store})
	first := waitConnected(t, c, store)
	if _, err := gateway.Revoke(t.Context(), b.nc, "d1"); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, wait, func() error {
		tok, _ := store.Load()
		switch {
		case b.logins.Load() != 2:
			return fmt.Errorf("%d logins, want 2", b.logins.Load())
		case tok.Token == "" || tok.Token == first.Token:
			return errors.New("no new token stored")
		case c.Status() != device.StatusConnected:
			return fmt.Errorf("status %s", c.Status())
		}
		return nil
	})
	if w.count(device.StatusConnected) != 2 {
		t.Fatalf("connected %d times, want 2", w.count(device.StatusConnected))
	}
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	if err := c.Send(ctx, json.RawMessage(`"after revoke"`)); err != nil {
		t.Fatal(err)
	}
}

// A token the gateway answers 401 or 403 invalid_token for is dropped
// and the device logs in with its credentials, once.
func TestDeadTokenLogsInAgain(t *testing.T) {
	b := newBus(t, nil)
	kv, err := b.js.KeyValue(t.Context(), events.BucketDevices)
	if err != nil {
		t.Fatal(err)
	}
	seal := func(id string, exp time.Time, gen uint64) string {
		tok, err := b.sealer.Seal(gateway.DeviceToken{DeviceID: id, IssuedAt: time.Now(), Expires: exp, Generation: gen})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	if _, err := gateway.RevokeDevice(t.Context(), kv, "revoked"); err != nil {
		t.Fatal(err)
	}
	future := time.Now().Add(time.Hour)
	for i, tt := range []struct {
		id, token string
	}{
		{"expired", seal("expired", time.Now().Add(-time.Minute), 0)}, // 401 token_expired
		{"revoked", seal("revoked", future, 0)},                       // 401 token_revoked
		{"tampered", "not-a-token"},                                   // 403 invalid_token
		{"long", strings.Repeat("x", 1000)},                           // 400 invalid_auth_header
	} {
		t.Run(tt.id, func(t *testing.T) {
			store := &device.MemoryTokenStore{}
			// The store believes the token is good for an hour.
			_ = store.Save(device.Token{Token: tt.token, Expires: future})
			c, _ := b.start(t, device.Config{DeviceID: tt.id, Credentials: sesame, Tokens: store})
			tok := waitConnected(t, c, store)
			if tok.Token == tt.token {
				t.Fatal("the dead token is still stored")
			}
			if n := b.logins.Load(); n != int32(i+1) {
				t.Fatalf("%d logins, want %d", n, i+1)
			}
		})
	}
}

// Without credentials, a dead token leaves the device unregistered.
func TestDeadTokenWithoutCredentials(t *testing.T) {
	b := newBus(t, nil)
	store := &device.MemoryTokenStore{}
	_ = store.Save(device.Token{Token: "not-a-token", Expires: time.Now().Add(time.Hour)})
	c, w := b.start(t, device.Config{DeviceID: "d1", Tokens: store})
	if err := waitDone(t, c); !errors.Is(err, device.ErrNeedsLogin) || c.Status() != device.StatusUnregistered || w.count(device.StatusUnregistered) != 1 {
		t.Fatalf("%s %v, want unregistered ErrNeedsLogin", c.Status(), err)
	}
	if tok, _ := store.Load(); tok.Token != "" {
		t.Fatal("the dead token is still stored")
	}
	// No token and no credentials at all: the same.
	c2, _ := b.start(t, device.Config{DeviceID: "d2"})
	if err := waitDone(t, c2); !errors.Is(err, device.ErrNeedsLogin) {
		t.Fatalf("no token nor credentials: %v, want ErrNeedsLogin", err)
	}
}

// Refused credentials stop the client: one login attempt, no loop.
func TestRefusedLoginStops(t *testing.T) {
	b := newBus(t, nil)
	c, w := b.start(t, device.Config{DeviceID: "d1", Credentials: map[string]any{"password": "wrong"}})
	err := waitDone(t, c)
	var re *device.RefusedError
	if !errors.As(err, &re) || re.Status != http.StatusForbidden || !errors.Is(err, device.ErrAuthenticationFailed) {
		t.Fatalf("err %v, want a 403 authentication_failed RefusedError", err)
	}
	if c.Status() != device.StatusFailed || w.count(device.StatusFailed) != 1 || w.count(device.StatusConnecting) != 1 {
		t.Fatalf("status %s, %d connecting, %d failed: want one connecting then failed", c.Status(), w.count(device.StatusConnecting), w.count(device.StatusFailed))
	}
	if n := b.logins.Load(); n != 1 {
		t.Fatalf("%d logins, want 1", n)
	}
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	if err := c.Send(ctx, json.RawMessage(`1`)); !errors.As(err, &re) {
		t.Fatalf("Send on a failed client: %v, want its RefusedError", err)
	}
}

// A gateway without device sessions (404 devices_off) stops the client.
func TestDevicesOffStops(t *testing.T) {
	b := newBus(t, func(c *gateway.Config) { c.DeviceTokens = nil })
	c, _ := b.start(t, device.Config{DeviceID: "d1", Credentials: sesame})
	if err := waitDone(t, c); !errors.Is(err, device.ErrDevicesOff) || c.Status() != device.StatusFailed {
		t.Fatalf("%s %v, want failed devices_off", c.Status(), err)
	}
}

// A gateway that is not there is retried with backoff until Close.
func TestUnreachableGatewayIsRetried(t *testing.T) {
	b := newBus(t, nil)
	b.hs.Close()
	c, w := b.start(t, device.Config{DeviceID: "d1", Credentials: sesame})
	natstest.Eventually(t, wait, func() error {
		if n := w.count(device.StatusDisconnected); n < 3 {
			return fmt.Errorf("%d disconnected statuses, want 3", n)
		}
		return nil
	})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := c.Send(ctx, json.RawMessage(`1`)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Send with a cancelled context: %v", err)
	}
	c.Close()
	if !errors.Is(c.Err(), device.ErrClosed) {
		t.Fatalf("after Close: %v", c.Err())
	}
}
