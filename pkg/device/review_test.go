package device_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hookbus/hookbus/internal/natstest"
	"github.com/hookbus/hookbus/pkg/client"
	"github.com/hookbus/hookbus/pkg/device"
	"github.com/hookbus/hookbus/pkg/events"
)

// A stored push bigger than the client's MaxFrameSize must not wedge the
// device: it is skipped (and acknowledged), and the pushes after it
// arrive. Before, the client dropped the socket on reading it, connected
// again (its backoff reset by the token frame), got the same push again,
// and so on forever: no later push ever arrived.
func TestPushOverMaxFrameSizeIsSkipped(t *testing.T) {
	b := newBus(t, nil)
	big := `"` + strings.Repeat("x", 4096) + `"`
	b.publishPush(t, "d1", big)
	b.publishPush(t, "d1", `"small"`)
	store := &device.MemoryTokenStore{}
	_, w := b.start(t, device.Config{DeviceID: "d1", Credentials: sesame, Tokens: store, MaxFrameSize: 1024})
	natstest.Eventually(t, wait, func() error {
		for _, p := range w.got() {
			if jsonEq(p.Data, []byte(`"small"`)) {
				return nil
			}
		}
		return fmt.Errorf("the push after the big one has not arrived; %d connections so far", w.count(device.StatusConnected))
	})
	if n := w.count(device.StatusConnected); n > 1 {
		t.Fatalf("%d connections, want 1: the big push broke the connection", n)
	}
	for _, p := range w.got() {
		if len(p.Data) > 1024 {
			t.Fatalf("a push of %d bytes was delivered over MaxFrameSize", len(p.Data))
		}
	}
}

// A gateway that takes the device, sends its token, then closes at once
// (1013: here it cannot read the pushes, its stream is gone; as well when
// JetStream refuses what the device sends) must not be reconnected to in
// a tight loop: the backoff grows while sessions end that quickly. Before,
// each token frame reset the backoff to MinBackoff: a whole fleet would
// reconnect twice a second to a failing gateway.
func TestShortSessionsDoNotResetTheBackoff(t *testing.T) {
	b := newBus(t, nil)
	if err := b.js.DeleteStream(t.Context(), "HOOKBUS_DEVICE_PUSHES"); err != nil {
		t.Fatal(err)
	}
	store := &device.MemoryTokenStore{}
	start := time.Now()
	_, w := b.start(t, device.Config{DeviceID: "d1", Credentials: sesame, Tokens: store,
		MinBackoff: 50 * time.Millisecond, MaxBackoff: 2 * time.Second})
	// Random waits up to 50, 100, 200, ... ms, at most 2 s: 12
	// connections take about 6 s (under 1 s with a chance below 1 in
	// 1000); with the backoff reset at each, about 0.4 s.
	const n = 12
	natstest.Eventually(t, 60*time.Second, func() error {
		if got := w.count(device.StatusConnected); got < n {
			return fmt.Errorf("%d connections, waiting for %d", got, n)
		}
		return nil
	})
	if took := time.Since(start); took < time.Second {
		t.Fatalf("%d connections in %s to a gateway that closes each at once: the backoff does not grow", n, took)
	}
}

// A reply over the client's MaxFrameSize fails its Call; the connection
// stays, and the next call is answered.
func TestReplyOverMaxFrameSizeFailsItsCall(t *testing.T) {
	b := newBus(t, nil)
	b.plugin(t, "big", events.EventTypeDeviceCall, func(state map[string]any) (client.StepResult, error) {
		if state["big"] == true {
			state["reply"] = strings.Repeat("x", 4096)
		} else {
			state["reply"] = "small"
		}
		return client.Continue(state), nil
	})
	c, w := b.start(t, device.Config{DeviceID: "d1", Credentials: sesame, MaxFrameSize: 1024})
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	if reply, err := c.Call(ctx, json.RawMessage(`{"big":true}`)); err == nil || ctx.Err() != nil {
		t.Fatalf("Call with a reply over MaxFrameSize: %d bytes, %v; want an error", len(reply), err)
	}
	if reply, err := c.Call(ctx, json.RawMessage(`{"big":false}`)); err != nil || !jsonEq(reply, []byte(`"small"`)) {
		t.Fatalf("next Call: %s %v, want small", reply, err)
	}
	if n := w.count(device.StatusConnected); n != 1 {
		t.Fatalf("%d connections, want 1", n)
	}
}

// Calls queued behind slow plugins must not cost the device its
// connection. The gateway answers a call before it reads the next frame,
// and pings and pongs wait in the same byte stream behind the calls: four
// calls of 1.5 s each hold the client's ping (every 2 s, answered within
// 2 s) for about 4 s. Before, the client dropped the connection and the
// last calls failed with ErrDisconnected.
func TestQueuedSlowCallsKeepTheConnection(t *testing.T) {
	b := newBus(t, nil)
	b.plugin(t, "slow", events.EventTypeDeviceCall, func(state map[string]any) (client.StepResult, error) {
		time.Sleep(1500 * time.Millisecond) // a slow plugin
		state["reply"] = state["n"]
		return client.Continue(state), nil
	})
	store := &device.MemoryTokenStore{}
	c, w := b.start(t, device.Config{DeviceID: "d1", Credentials: sesame, Tokens: store, PingInterval: 2 * time.Second})
	waitConnected(t, c, store)
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	errs := make(chan error, 4)
	for i := range 4 {
		go func() {
			reply, err := c.Call(ctx, json.RawMessage(fmt.Sprintf(`{"n":%d}`, i)))
			if err == nil && !jsonEq(reply, []byte(fmt.Sprint(i))) {
				err = fmt.Errorf("reply %s to call %d", reply, i)
			}
			errs <- err
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Errorf("call: %v (%d connections)", err, w.count(device.StatusConnected))
		}
	}
}
