//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/internal/natstest"
	"github.com/hookbus/hookbus/pkg/client"
	"github.com/hookbus/hookbus/pkg/device"
	"github.com/hookbus/hookbus/pkg/events"
)

// deviceEnv turns device sessions on in hookbus serve.
var deviceEnv = []string{
	"HOOKBUS_DEVICE_TOKEN_SECRET=e2e-device-token-secret-of-32-bytes-or-more",
	"HOOKBUS_DEVICE_TOKEN_SALT=e2e",
	"HOOKBUS_DEVICE_TOKEN_REFRESH=500ms",
}

// deviceBus is hookbus serve with device sessions and a Go chain plugin on
// hookbus.device.authenticate that allows password "sesame" and counts
// the logins it decided.
type deviceBus struct {
	srv    *server
	nc     *nats.Conn
	js     jetstream.JetStream
	logins atomic.Int32
}

func startDeviceBus(t *testing.T) *deviceBus {
	t.Helper()
	srv := startServerEnv(t, t.TempDir(), deviceEnv)
	nc, err := nats.Connect(srv.NATSURL, nats.Name("hookbus-e2e-devices"), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	b := &deviceBus{srv: srv, nc: nc, js: js}
	serveChain(t, c, "device-login", "hookbus.device.authenticate", func(state map[string]any) {
		b.logins.Add(1)
		state["allow"] = state["password"] == "sesame"
	})
	// Calls: "stop" stops the device, anything else is echoed.
	serveChain(t, c, "device-call", events.EventTypeDeviceCall, func(state map[string]any) {
		if r, ok := state["stop"].(string); ok {
			state["stop"] = r
			return
		}
		state["reply"] = map[string]any{"echo": state["q"]}
	})
	return b
}

// serveChain runs a Go chain plugin name on event type typ until the
// test ends: fn changes the state (a probe {"probe":true} goes through
// as it is), and returns once a probe's trace names it.
func serveChain(t *testing.T, c *client.Client, name, typ string, fn func(state map[string]any)) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- c.Serve(ctx, client.Plugin{
			Spec: events.PluginSpec{Name: name, Event: typ, Priority: 10},
			Chain: func(_ context.Context, s *client.Step) (client.StepResult, error) {
				var state map[string]any
				if err := s.Event.DataAs(&state); err != nil {
					return client.StepResult{}, err
				}
				if state["probe"] != true {
					fn(state)
				}
				return client.Continue(state), nil
			},
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("plugin %s: %v", name, err)
		}
	})
	natstest.Eventually(t, runTimeout, func() error {
		e := event.New()
		e.SetID("probe")
		e.SetSource("/e2e")
		e.SetType(typ)
		_ = e.SetData(event.ApplicationJSON, map[string]any{"probe": true})
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		res, err := c.Call(ctx, e)
		if err != nil {
			return err
		}
		for _, s := range res.Trace {
			if s.Plugin == name {
				return nil
			}
		}
		return fmt.Errorf("plugin %s not in the chain of %s yet", name, typ)
	})
}

// stored reads the first n events device id sent.
func (b *deviceBus) stored(t *testing.T, id string, n int) []event.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), runTimeout)
	defer cancel()
	cons, err := b.js.OrderedConsumer(ctx, events.StreamDevices, jetstream.OrderedConsumerConfig{FilterSubjects: []string{events.DeviceInSubject(id)}})
	if err != nil {
		t.Fatal(err)
	}
	var out []event.Event
	for len(out) < n {
		m, err := cons.Next(jetstream.FetchContext(ctx))
		if err != nil {
			t.Fatalf("%d of %d events of %s read: %v", len(out), n, id, err)
		}
		e, err := events.Decode(m.Headers(), m.Data())
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, *e)
	}
	return out
}

// The Fedecks flow with the Go client: first login by a Go plugin, token
// stored, refreshed and asked for, messages both ways, reconnection with
// the token (no login), revoke then a new login, a call replied by a Go
// plugin and one it answers with a stop, a second connection replacing
// the first, an operator's stop.
func TestDeviceGoClient(t *testing.T) {
	b := startDeviceBus(t)
	store := device.FileTokenStore{Path: filepath.Join(t.TempDir(), "token.json")}
	var (
		mu     sync.Mutex
		pushes []device.Push
	)
	newClient := func() *device.Client {
		c, err := device.New(device.Config{
			URL: b.srv.GatewayURL, DeviceID: "e2e-box", Credentials: map[string]any{"password": "sesame"},
			Tokens: store, MinBackoff: 20 * time.Millisecond, MaxBackoff: time.Second,
			OnPush: func(p device.Push) {
				mu.Lock()
				defer mu.Unlock()
				pushes = append(pushes, p)
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	connected := func(c *device.Client) device.Token {
		t.Helper()
		var tok device.Token
		natstest.Eventually(t, runTimeout, func() error {
			var err error
			if tok, err = store.Load(); err != nil || tok.Token == "" {
				return fmt.Errorf("no token stored (%v)", err)
			}
			if s := c.Status(); s != device.StatusConnected {
				return fmt.Errorf("status %s (%v)", s, c.Err())
			}
			return nil
		})
		return tok
	}
	c := newClient()
	first := connected(c)
	if fi, err := os.Stat(store.Path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v %v, want mode 0600", fi, err)
	}
	if n := b.logins.Load(); n != 1 {
		t.Fatalf("%d logins, want 1", n)
	}

	// The gateway pushes a fresh token every 500 ms, and one on request.
	natstest.Eventually(t, runTimeout, func() error {
		if tok, _ := store.Load(); tok.Token == first.Token {
			return errors.New("token not refreshed yet")
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(t.Context(), runTimeout)
	defer cancel()
	if tok, err := c.RefreshToken(ctx); err != nil || tok.Token == "" {
		t.Fatalf("RefreshToken: %+v %v", tok, err)
	}

	// Device to bus: JSON and binary, stored on hookbus.device.e2e-box.in.
	if err := c.Send(ctx, json.RawMessage(`{"temp":21.5}`)); err != nil {
		t.Fatal(err)
	}
	if err := c.SendRaw(ctx, []byte{0xca, 0xfe}); err != nil {
		t.Fatal(err)
	}
	got := b.stored(t, "e2e-box", 2)
	if got[0].Source() != "/devices/e2e-box" || got[0].Type() != "hookbus.device.message" || string(got[0].Data()) != `{"temp":21.5}` {
		t.Fatalf("stored %s %s %s, want the JSON message", got[0].Source(), got[0].Type(), got[0].Data())
	}
	if got[1].DataContentType() != "application/octet-stream" || string(got[1].Data()) != "\xca\xfe" {
		t.Fatalf("stored %s %q, want the binary frame", got[1].DataContentType(), got[1].Data())
	}

	// Bus to device: JSON and binary pushes.
	pushed := func(n int) []device.Push {
		t.Helper()
		var out []device.Push
		natstest.Eventually(t, runTimeout, func() error {
			mu.Lock()
			defer mu.Unlock()
			if len(pushes) < n {
				return fmt.Errorf("%d pushes, want %d", len(pushes), n)
			}
			out = append([]device.Push(nil), pushes...)
			return nil
		})
		return out
	}
	if err := b.nc.Publish("hookbus.device.e2e-box.out", []byte(`{"led":"on"}`)); err != nil {
		t.Fatal(err)
	}
	pushed(1)
	raw := filepath.Join(t.TempDir(), "raw.bin")
	if err := os.WriteFile(raw, []byte{0xbe, 0xef}, 0o600); err != nil {
		t.Fatal(err)
	}
	if stdout, stderr, code := run(t, "device", "push", "--nats-url", b.srv.NATSURL, "e2e-box", "--file", raw); code != 0 {
		t.Fatalf("hookbus device push: exit %d\n%s%s", code, stdout, stderr)
	}
	ps := pushed(2)
	if ps[0].Binary || string(ps[0].Data) != `{"led":"on"}` || !ps[1].Binary || string(ps[1].Data) != "\xbe\xef" {
		t.Fatalf("pushes %+v, want the JSON then the bytes", ps)
	}

	// A new connection (another process, the same token file): the
	// token, no login.
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	c = newClient()
	before := connected(c)
	if n := b.logins.Load(); n != 1 {
		t.Fatalf("%d logins after the reconnection, want 1 (the token logs in)", n)
	}

	// Revoked: 4001, then a login with the credentials and a new token.
	if stdout, stderr, code := run(t, "device", "revoke", "--nats-url", b.srv.NATSURL, "e2e-box"); code != 0 {
		t.Fatalf("hookbus device revoke: exit %d\n%s%s", code, stdout, stderr)
	}
	natstest.Eventually(t, runTimeout, func() error {
		if n := b.logins.Load(); n != 2 {
			return fmt.Errorf("%d logins, want 2", n)
		}
		return nil
	})
	after := connected(c)
	if after.Token == before.Token {
		t.Fatal("the revoked token is still stored")
	}
	if err := c.Send(ctx, json.RawMessage(`"after revoke"`)); err != nil {
		t.Fatal(err)
	}

	// A call answered by the Go plugin, then one it answers with a stop.
	if reply, err := c.Call(ctx, json.RawMessage(`{"q":"ping"}`)); err != nil || string(reply) != `{"echo":"ping"}` {
		t.Fatalf("call: %s %v, want the plugin's reply", reply, err)
	}
	_, err := c.Call(ctx, json.RawMessage(`{"stop":"maintenance"}`))
	var stopped *device.StoppedError
	if !errors.As(err, &stopped) || stopped.Reason != "maintenance" {
		t.Fatalf("call answered with a stop: %v, want a StoppedError with the reason", err)
	}
	waitDone(t, c)
	if s := c.Status(); s != device.StatusStopped {
		t.Fatalf("status %s after a stop, want %s", s, device.StatusStopped)
	}

	// A second connection of the device replaces the first (4002); an
	// operator's stop ends the second.
	c = newClient()
	connected(c)
	c2 := newClient()
	connected(c2)
	waitDone(t, c)
	if !errors.Is(c.Err(), device.ErrReplaced) {
		t.Fatalf("first connection: %v, want ErrReplaced", c.Err())
	}
	if stdout, stderr, code := run(t, "device", "stop", "--nats-url", b.srv.NATSURL, "e2e-box", "--reason", "bye"); code != 0 {
		t.Fatalf("hookbus device stop: exit %d\n%s%s", code, stdout, stderr)
	}
	waitDone(t, c2)
	if !errors.As(c2.Err(), &stopped) || stopped.Reason != "bye" {
		t.Fatalf("after hookbus device stop: %v, want a StoppedError", c2.Err())
	}
	b.srv.stop(t)
}

// The Node.js example device: first login, token stored, a message and a
// binary frame stored, a push received and acknowledged.
func TestDeviceNodeExample(t *testing.T) {
	requireNode(t)
	b := startDeviceBus(t)
	tokenFile := filepath.Join(t.TempDir(), "token.json")
	url := "ws" + strings.TrimPrefix(b.srv.GatewayURL, "http") + "/devices/websocket"
	w := startWorker(t, "node", filepath.Join(nodeDeviceDir, "device.mjs"),
		"--url", url, "--id", "node-box", "--credentials", `{"password":"sesame"}`,
		"--token-file", tokenFile, "--pushes", "1")
	w.waitOutput(t, "connected credentials")
	w.waitOutput(t, "token stored")
	w.waitOutput(t, "ack 2")
	if fi, err := os.Stat(tokenFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v %v, want mode 0600", fi, err)
	}
	got := b.stored(t, "node-box", 2)
	if string(got[0].Data()) != `{"hello":"from node","device":"node-box"}` || string(got[1].Data()) != "\xca\xfe\x00\x01" {
		t.Fatalf("stored %s and %q, want the Node device's message and bytes", got[0].Data(), got[1].Data())
	}
	if err := b.nc.Publish("hookbus.device.node-box.out", []byte(`{"led":"off"}`)); err != nil {
		t.Fatal(err)
	}
	// --pushes 1: it exits once it has the push.
	select {
	case <-w.exited:
	case <-time.After(runTimeout):
		t.Fatalf("the Node device did not exit after its push")
	}
	if w.err != nil || !strings.Contains(w.out.String(), `push {"led":"off"}`) {
		t.Fatalf("the Node device: %v, want exit status 0 after printing the push", w.err)
	}
	if n := b.logins.Load(); n != 1 {
		t.Fatalf("%d logins, want 1", n)
	}
	b.srv.stop(t)
}

// waitDone waits until client c has stopped.
func waitDone(t *testing.T, c *device.Client) {
	t.Helper()
	select {
	case <-c.Done():
	case <-time.After(runTimeout):
		t.Fatalf("client still running after %s: status %s", runTimeout, c.Status())
	}
}
