package gateway_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/hookbus/hookbus/internal/natstest"
	"github.com/hookbus/hookbus/pkg/client"
	"github.com/hookbus/hookbus/pkg/events"
	"github.com/hookbus/hookbus/services/gateway"
)

func TestSecondConnectionReplacesTheFirst(t *testing.T) {
	b := newDeviceBus(t, false, nil)
	other := b.replica(t, natstest.Connect(t, b.srv), nil)
	first := b.connectWithToken(t, "d1")
	d2 := b.connectWithToken(t, "d2")
	second := b.connectTo(t, other, "d1") // the same device, on the other replica
	start := time.Now()
	if status, reason := closedWith(t, first); status != gateway.StatusReplaced || time.Since(start) > 5*time.Second {
		t.Fatalf("first session of d1 closed with %d %q after %s, want %d", status, reason, time.Since(start), gateway.StatusReplaced)
	}
	// The newer session stays, and so does the other device.
	seq := b.storePush(t, "d1", `"to the second"`)
	readPush(t, second, `"to the second"`)
	pushAck(t, second, 1)
	b.cursorIs(t, "d1", seq)
	b.storePush(t, "d2", `"still here"`)
	readPush(t, d2, `"still here"`)
	// A third replaces the second, on the same replica this time.
	third := b.connectTo(t, other, "d1")
	if status, _ := closedWith(t, second); status != gateway.StatusReplaced {
		t.Fatalf("second session closed with %d, want %d", status, gateway.StatusReplaced)
	}
	b.storePush(t, "d1", `"to the third"`)
	readPush(t, third, `"to the third"`)
}

func TestStopDeviceClosesItsSocket(t *testing.T) {
	b := newDeviceBus(t, false, nil)
	other := b.replica(t, natstest.Connect(t, b.srv), nil)
	d1 := b.connectTo(t, other, "d1")
	d2 := b.connectWithToken(t, "d2")
	c, err := client.New(natstest.Connect(t, b.srv))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.StopDevice(t.Context(), "d1", "firmware too old"); err != nil {
		t.Fatal(err)
	}
	if status, _ := closedWith(t, d1); status != gateway.StatusStopped {
		t.Fatalf("d1 closed with %d, want %d", status, gateway.StatusStopped)
	}
	b.storePush(t, "d2", `"still here"`)
	readPush(t, d2, `"still here"`)
	if err := c.StopDevice(t.Context(), "_bad", "x"); err == nil {
		t.Fatal("stop of an invalid device id: no error")
	}
}

// stopReason reads until the socket closes and returns the close status
// and reason.
func stopReason(t *testing.T, conn *websocket.Conn) (websocket.StatusCode, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for {
		if _, _, err := conn.Read(ctx); err != nil {
			var ce websocket.CloseError
			if errors.As(err, &ce) {
				return ce.Code, ce.Reason
			}
			return -1, err.Error()
		}
	}
}

// call sends a call frame and reads its reply.
func call(t *testing.T, conn *websocket.Conn, ref string, data string) (reply struct {
	Type  string
	Ref   string
	Data  json.RawMessage
	Error *struct{ Code, Detail string }
}) {
	t.Helper()
	if err := conn.Write(t.Context(), websocket.MessageText, []byte(`{"type":"call","ref":"`+ref+`","data":`+data+`}`)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	typ, b, err := conn.Read(ctx)
	if err != nil {
		t.Fatalf("read the reply to %s: %v", ref, err)
	}
	if typ != websocket.MessageText || json.Unmarshal(b, &reply) != nil || reply.Type != "reply" || reply.Ref != ref {
		t.Fatalf("frame %s %q, want the reply to %s", typ, b, ref)
	}
	return reply
}

func TestDeviceCalls(t *testing.T) {
	b := newDeviceBus(t, false, func(c *gateway.Config) { c.DeviceCallTimeout = 500 * time.Millisecond })
	conn := b.connectWithToken(t, "d1")
	if r := call(t, conn, "r0", `{"op":"echo"}`); r.Error == nil || r.Error.Code != "no_handler" {
		t.Fatalf("call without a plugin: %+v, want error no_handler", r)
	}

	c, err := client.New(natstest.Connect(t, b.srv))
	if err != nil {
		t.Fatal(err)
	}
	cb := &callBus{c: c}
	cb.serve(t, client.Plugin{Spec: events.PluginSpec{Name: "device-handler", Event: events.EventTypeDeviceCall, Priority: 10},
		Chain: func(ctx context.Context, s *client.Step) (client.StepResult, error) {
			var in map[string]any
			if err := s.Event.DataAs(&in); err != nil {
				return client.StepResult{}, err
			}
			switch in["op"] {
			case "echo":
				return client.Continue(map[string]any{"reply": map[string]any{"from": s.Event.Source(), "got": in["n"]}}), nil
			case "stop":
				return client.Continue(map[string]any{"stop": "bye from the plugin"}), nil
			case "slow":
				select {
				case <-ctx.Done():
				case <-time.After(3 * time.Second):
				}
				return client.Continue(map[string]any{"reply": "late"}), nil
			case "none":
				return client.Continue(map[string]any{"other": 1}), nil
			}
			return client.Continue(in), nil // the probe
		}})
	cb.waitChain(t, events.EventTypeDeviceCall, "device-handler")

	r := call(t, conn, "r1", `{"op":"echo","n":7}`)
	if r.Error != nil || string(r.Data) != `{"from":"/devices/d1","got":7}` {
		t.Fatalf("echo: %+v %s, want the plugin's reply with the device's source", r.Error, r.Data)
	}
	if r := call(t, conn, "r2", `{"op":"none"}`); r.Error == nil || r.Error.Code != "call_failed" {
		t.Fatalf("a final state without reply: %+v, want call_failed", r)
	}
	if r := call(t, conn, "r3", `{"op":"slow"}`); r.Error == nil || r.Error.Code != "call_timeout" {
		t.Fatalf("slow plugin: %+v, want call_timeout", r)
	}
	// Data frames go on after calls, acknowledged in order.
	if err := conn.Write(t.Context(), websocket.MessageText, []byte(`{"type":"message","data":1}`)); err != nil {
		t.Fatal(err)
	}
	readAck(t, conn, 1)

	if err := conn.Write(t.Context(), websocket.MessageText, []byte(`{"type":"call","ref":"r4","data":{"op":"stop"}}`)); err != nil {
		t.Fatal(err)
	}
	if status, reason := stopReason(t, conn); status != gateway.StatusStopped || reason != "bye from the plugin" {
		t.Fatalf("stop: closed %d %q, want %d with the plugin's reason", status, reason, gateway.StatusStopped)
	}

	for _, bad := range []string{`{"type":"call","data":1}`, `{"type":"call","ref":"r"}`} {
		conn := b.connectWithToken(t, "d1")
		if err := conn.Write(t.Context(), websocket.MessageText, []byte(bad)); err != nil {
			t.Fatal(err)
		}
		if status, _ := closedWith(t, conn); status != websocket.StatusUnsupportedData {
			t.Fatalf("call frame %s: closed %d, want %d", bad, status, websocket.StatusUnsupportedData)
		}
	}
}
