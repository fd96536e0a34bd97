package device_test

// Tests of calls and replies, stored pushes with push_ack, one
// connection per device (4002) and stops by plugins (4003), against the
// real gateway (docs/protocol.md, "Device sessions").

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/hookbus/hookbus/internal/natstest"
	"github.com/hookbus/hookbus/pkg/client"
	"github.com/hookbus/hookbus/pkg/device"
	"github.com/hookbus/hookbus/pkg/events"
)

func TestCallReply(t *testing.T) {
	b := newBus(t, nil)
	b.plugin(t, "thermostat", events.EventTypeDeviceCall, func(state map[string]any) (client.StepResult, error) {
		if state["stop"] == true {
			state["stop"] = "maintenance"
			return client.Continue(state), nil
		}
		state["reply"] = map[string]any{"target": 21, "asked": state["question"]}
		return client.Continue(state), nil
	})
	c, w := b.start(t, device.Config{DeviceID: "d1", Credentials: sesame})
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	reply, err := c.Call(ctx, json.RawMessage(`{"question":"target"}`))
	if err != nil || !jsonEq(reply, []byte(`{"target":21,"asked":"target"}`)) {
		t.Fatalf("Call: %s %v, want the plugin's reply", reply, err)
	}
	// Messages and calls in one order.
	if err := c.Send(ctx, json.RawMessage(`1`)); err != nil {
		t.Fatal(err)
	}
	// A plugin's stop: no reply, the socket closes with 4003.
	_, err = c.Call(ctx, json.RawMessage(`{"stop":true}`))
	var stopped *device.StoppedError
	if !errors.As(err, &stopped) || stopped.Reason != "maintenance" {
		t.Fatalf("Call answered by a stop: %v, want a StoppedError maintenance", err)
	}
	if err := waitDone(t, c); !errors.As(err, &stopped) || c.Status() != device.StatusStopped || w.count(device.StatusConnecting) != 1 {
		t.Fatalf("after the stop: %s %v, %d connecting: want stopped, no reconnection", c.Status(), err, w.count(device.StatusConnecting))
	}
}

func TestCallWithoutPlugin(t *testing.T) {
	b := newBus(t, nil)
	c, _ := b.start(t, device.Config{DeviceID: "d1", Credentials: sesame})
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	_, err := c.Call(ctx, json.RawMessage(`{}`))
	var ce *device.CallError
	if !errors.As(err, &ce) || !errors.Is(err, device.ErrNoHandler) {
		t.Fatalf("Call without a plugin: %v, want a CallError no_handler", err)
	}
	// The session goes on.
	if err := c.Send(ctx, json.RawMessage(`1`)); err != nil {
		t.Fatal(err)
	}
}

// A second connection of the device replaces the first (4002): the first
// stops and does not reconnect.
func TestReplacedStops(t *testing.T) {
	b := newBus(t, nil)
	store := &device.MemoryTokenStore{}
	a, wa := b.start(t, device.Config{DeviceID: "d1", Credentials: sesame, Tokens: store})
	waitConnected(t, a, store)
	c, _ := b.start(t, device.Config{DeviceID: "d1", Credentials: sesame, Tokens: store})
	if err := waitDone(t, a); !errors.Is(err, device.ErrReplaced) || a.Status() != device.StatusReplaced || wa.count(device.StatusConnecting) != 1 {
		t.Fatalf("first connection: %s %v, %d connecting: want replaced, no reconnection", a.Status(), err, wa.count(device.StatusConnecting))
	}
	waitConnected(t, c, store)
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	if err := c.Send(ctx, json.RawMessage(`1`)); err != nil {
		t.Fatal(err)
	}
}

// hookbus.device.<id>.ctl.stop closes the socket with 4003 and its reason.
func TestStopByPlugin(t *testing.T) {
	b := newBus(t, nil)
	store := &device.MemoryTokenStore{}
	c, w := b.start(t, device.Config{DeviceID: "d1", Credentials: sesame, Tokens: store})
	waitConnected(t, c, store)
	if err := b.nc.Publish("hookbus.device.d1.ctl.stop", []byte("firmware update")); err != nil {
		t.Fatal(err)
	}
	var stopped *device.StoppedError
	if err := waitDone(t, c); !errors.As(err, &stopped) || stopped.Reason != "firmware update" || c.Status() != device.StatusStopped || w.count(device.StatusStopped) != 1 {
		t.Fatalf("%s %v, want stopped firmware update", c.Status(), err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	if err := c.Send(ctx, json.RawMessage(`1`)); !errors.As(err, &stopped) {
		t.Fatalf("Send after the stop: %v, want the StoppedError", err)
	}
}

// publishPush stores a push for device id in HOOKBUS_DEVICE_PUSHES.
func (b *bus) publishPush(t *testing.T, id string, data string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	if _, err := b.js.Publish(ctx, "hookbus.device."+id+".out", []byte(data)); err != nil {
		t.Fatalf("store push %s: %v", data, err)
	}
}

// Pushes stored while the device is offline reach it when it connects,
// in order; acknowledged ones are not sent again to the next connection.
func TestOfflinePushesAndPushAck(t *testing.T) {
	b := newBus(t, nil)
	for i := range 3 {
		b.publishPush(t, "d1", fmt.Sprint(i))
	}
	store := &device.MemoryTokenStore{}
	c, w := b.start(t, device.Config{DeviceID: "d1", Credentials: sesame, Tokens: store})
	natstest.Eventually(t, wait, func() error {
		if n := len(w.got()); n < 3 {
			return fmt.Errorf("%d pushes, want 3", n)
		}
		return nil
	})
	for i, p := range w.got()[:3] {
		if !jsonEq(p.Data, []byte(fmt.Sprint(i))) {
			t.Fatalf("push %d: %s, want %d", i, p.Data, i)
		}
	}
	// The gateway keeps the cursor (push_ack) at most a second late, and
	// at the disconnect: close, then connect again.
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	c2, w2 := b.start(t, device.Config{DeviceID: "d1", Credentials: sesame, Tokens: store})
	waitConnected(t, c2, store)
	b.publishPush(t, "d1", `"new"`)
	natstest.Eventually(t, wait, func() error {
		if len(w2.got()) == 0 {
			return errors.New("no push yet")
		}
		return nil
	})
	if got := w2.got(); !jsonEq(got[0].Data, []byte(`"new"`)) {
		t.Fatalf("first push of the second connection: %s, want the new one (the others were acknowledged)", got[0].Data)
	}
}

// A push the device did not acknowledge is sent again to its next
// connection.
func TestUnacknowledgedPushIsRedelivered(t *testing.T) {
	b := newBus(t, nil)
	store := &device.MemoryTokenStore{}
	got := make(chan device.Push, 1)
	release := make(chan struct{})
	a, err := device.New(device.Config{URL: b.url, DeviceID: "d1", Credentials: sesame, Tokens: store,
		OnPush: func(p device.Push) {
			got <- p
			<-release // not acknowledged while it blocks
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	released := false
	unblock := func() {
		if !released {
			released = true
			close(release)
		}
	}
	t.Cleanup(unblock) // before a.Close: a callback that blocks holds Close
	waitConnected(t, a, store)
	b.publishPush(t, "d1", `"once"`)
	<-got
	// A newer connection replaces a: the push comes again.
	c, w := b.start(t, device.Config{DeviceID: "d1", Credentials: sesame, Tokens: store})
	natstest.Eventually(t, wait, func() error {
		if len(w.got()) == 0 {
			return errors.New("push not sent again yet")
		}
		return nil
	})
	if p := w.got()[0]; !jsonEq(p.Data, []byte(`"once"`)) {
		t.Fatalf("push %s, want the unacknowledged one", p.Data)
	}
	unblock()
	if err := waitDone(t, a); !errors.Is(err, device.ErrReplaced) {
		t.Fatalf("first connection: %v, want ErrReplaced", err)
	}
	_ = c
}
