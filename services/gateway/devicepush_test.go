package gateway_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/internal/natstest"
	"github.com/hookbus/hookbus/pkg/client"
	"github.com/hookbus/hookbus/pkg/events"
	"github.com/hookbus/hookbus/services/gateway"
)

// storePush stores a push to device id and returns its stream sequence.
func (b *deviceBus) storePush(t *testing.T, id, data string) uint64 {
	t.Helper()
	ack, err := b.js.Publish(t.Context(), events.DeviceOutSubject(id), []byte(data))
	if err != nil {
		t.Fatalf("push to %s: %v", id, err)
	}
	return ack.Sequence
}

// readPush reads the next frame, which must be push want: a push text
// frame of JSON, a binary frame of anything else.
func readPush(t *testing.T, conn *websocket.Conn, want string) {
	t.Helper()
	readPushWithin(t, conn, want, 10*time.Second)
}

// readPushWithin is readPush waiting at most d.
func readPushWithin(t *testing.T, conn *websocket.Conn, want string, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	defer cancel()
	typ, got, err := conn.Read(ctx)
	if err != nil {
		t.Fatalf("read push %q: %v", want, err)
	}
	if !json.Valid([]byte(want)) {
		if typ != websocket.MessageBinary || string(got) != want {
			t.Fatalf("got %s %q, want a binary push %q", typ, got, want)
		}
		return
	}
	var f struct {
		Type string          `json:"type"`
		Seq  uint64          `json:"seq"`
		Data json.RawMessage `json:"data"`
	}
	if typ != websocket.MessageText || json.Unmarshal(got, &f) != nil || f.Type != "push" || f.Seq == 0 || string(f.Data) != want {
		t.Fatalf("got %s %q, want a push text frame with its seq and data %s", typ, got, want)
	}
}

// A cursor beyond the stream's last sequence belongs to a stream made
// again since: the device gets what the new stream holds.
func TestDevicePushCursorOfAnOldStream(t *testing.T) {
	b := newDeviceBus(t, false, nil)
	kv, err := b.js.KeyValue(t.Context(), events.BucketDevices)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(t.Context(), "cursor.d1", []byte("5000")); err != nil {
		t.Fatal(err)
	}
	seq := b.storePush(t, "d1", `"after the new stream"`)
	conn := b.connectWithToken(t, "d1")
	readPush(t, conn, `"after the new stream"`)
	pushAck(t, conn, 1)
	b.cursorIs(t, "d1", seq)
}

// pushAck sends push_ack k.
func pushAck(t *testing.T, conn *websocket.Conn, k uint64) {
	t.Helper()
	if err := conn.Write(t.Context(), websocket.MessageText, fmt.Appendf(nil, `{"type":"push_ack","seq":%d}`, k)); err != nil {
		t.Fatal(err)
	}
}

// cursorIs waits until device id's push cursor is seq.
func (b *deviceBus) cursorIs(t *testing.T, id string, seq uint64) {
	t.Helper()
	kv, err := b.js.KeyValue(t.Context(), events.BucketDevices)
	if err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 10*time.Second, func() error {
		e, err := kv.Get(t.Context(), "cursor."+id)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return fmt.Errorf("no cursor, want %d", seq)
		}
		if err != nil {
			return err
		}
		if string(e.Value()) != strconv.FormatUint(seq, 10) {
			return fmt.Errorf("cursor %s, want %d", e.Value(), seq)
		}
		return nil
	})
}

func TestDevicePushesWaitForTheDevice(t *testing.T) {
	b := newDeviceBus(t, false, nil)
	// Stored while d1 is offline, among pushes to d2.
	b.storePush(t, "d1", `{"n":1}`)
	b.storePush(t, "d2", `"for d2"`)
	second := b.storePush(t, "d1", "\x00raw")
	b.storePush(t, "d1", `{"n":3}`)

	conn := b.connectWithToken(t, "d1") // the token frame comes first
	readPush(t, conn, `{"n":1}`)
	readPush(t, conn, "\x00raw")
	readPush(t, conn, `{"n":3}`)
	pushAck(t, conn, 2) // the third is not acknowledged
	b.cursorIs(t, "d1", second)
	_ = conn.Close(websocket.StatusNormalClosure, "")

	// The next session starts after the cursor, then goes live.
	conn = b.connectWithToken(t, "d1")
	readPush(t, conn, `{"n":3}`)
	fourth := b.storePush(t, "d1", `{"n":4}`)
	readPush(t, conn, `{"n":4}`)
	pushAck(t, conn, 1)
	pushAck(t, conn, 2)
	b.cursorIs(t, "d1", fourth)
	_ = conn.Close(websocket.StatusNormalClosure, "")

	conn = b.connectWithToken(t, "d1")
	b.storePush(t, "d1", `{"n":5}`)
	readPush(t, conn, `{"n":5}`) // nothing acknowledged came again before it
}

func TestDevicePushOnCoreNATSIsStored(t *testing.T) {
	b := newDeviceBus(t, false, nil)
	nc := natstest.Connect(t, b.srv)
	if err := nc.Publish("hookbus.device.d1.out", []byte(`{"plain":true}`)); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 10*time.Second, func() error {
		s, err := b.js.Stream(t.Context(), events.StreamDevicePushes)
		if err != nil {
			return err
		}
		if n := s.CachedInfo().State.Msgs; n != 1 {
			return fmt.Errorf("%d pushes stored, want 1", n)
		}
		return nil
	})
	readPush(t, b.connectWithToken(t, "d1"), `{"plain":true}`)
}

func TestDevicePushReachesTheOtherReplica(t *testing.T) {
	b := newDeviceBus(t, false, nil)
	other := b.replica(t, natstest.Connect(t, b.srv), nil)
	conn := b.connectTo(t, other, "d1")
	c, err := client.New(natstest.Connect(t, b.srv))
	if err != nil {
		t.Fatal(err)
	}
	for _, data := range []string{`{"led":"on"}`, "\x01\x02"} {
		if _, err := c.PushDevice(t.Context(), "d1", []byte(data)); err != nil {
			t.Fatal(err)
		}
		readPush(t, conn, data)
	}
}

func TestDevicePushGapIsReadAgain(t *testing.T) {
	b := newDeviceBus(t, false, nil)
	var lose, overflow atomic.Uint64
	gateway.SetPushFault(t, func(seq uint64) (bool, bool) {
		return seq == lose.Load(), seq == overflow.Load()
	})
	conn := b.connectWithToken(t, "d1")
	b.storePush(t, "d1", `1`)
	readPush(t, conn, `1`)

	// The live copy of 2 is lost: 3's Nats-Last-Sequence tells.
	lose.Store(2)
	b.storePush(t, "d1", `2`)
	b.storePush(t, "d1", `3`)
	readPush(t, conn, `2`)
	readPush(t, conn, `3`)

	// The last push is dropped from a full buffer: read from the stream.
	// (Well before the session's one recheck of the stream, 5 s after
	// it started.)
	overflow.Store(4)
	b.storePush(t, "d1", `4`)
	readPushWithin(t, conn, `4`, 3*time.Second)
	b.storePush(t, "d1", `5`)
	readPush(t, conn, `5`)
}

func TestDevicePushesKeepTheLastThousand(t *testing.T) {
	b := newDeviceBus(t, false, nil)
	for i := 1; i <= 1001; i++ {
		b.storePush(t, "d1", strconv.Itoa(i))
	}
	conn := b.connectWithToken(t, "d1")
	for i := 2; i <= 1001; i++ { // the oldest went
		readPush(t, conn, strconv.Itoa(i))
	}
	pushAck(t, conn, 1000)
	b.cursorIs(t, "d1", 1001)
}

func TestBadPushAckClosesThePolicy(t *testing.T) {
	b := newDeviceBus(t, false, nil)
	tests := []struct {
		name  string
		acks  []string
		reads int
	}{
		{"beyond what was sent", []string{`{"type":"push_ack","seq":3}`}, 2},
		{"nothing sent", []string{`{"type":"push_ack","seq":1}`}, 0},
		{"backwards", []string{`{"type":"push_ack","seq":2}`, `{"type":"push_ack","seq":1}`}, 2},
		{"no seq", []string{`{"type":"push_ack"}`}, 2},
		{"negative", []string{`{"type":"push_ack","seq":-1}`}, 2},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := "d" + strconv.Itoa(i)
			for i := range tt.reads {
				b.storePush(t, id, strconv.Itoa(i+1))
			}
			conn := b.connectWithToken(t, id)
			for i := range tt.reads {
				readPush(t, conn, strconv.Itoa(i+1))
			}
			for _, a := range tt.acks {
				if err := conn.Write(t.Context(), websocket.MessageText, []byte(a)); err != nil {
					t.Fatal(err)
				}
			}
			if status, last := closedWith(t, conn); status != websocket.StatusPolicyViolation {
				t.Fatalf("closed with %d after %q, want %d", status, last, websocket.StatusPolicyViolation)
			}
		})
	}
}

// Pushes stored while the session starts (before, during and after its
// catch-up) all arrive once, in order.
func TestDevicePushesDuringConnectArriveInOrder(t *testing.T) {
	b := newDeviceBus(t, false, nil)
	const n = 300
	c, err := client.New(natstest.Connect(t, b.srv))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		for i := 1; i <= n; i++ {
			if _, err := c.PushDevice(t.Context(), "d1", []byte(strconv.Itoa(i))); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	conn := b.connectWithToken(t, "d1")
	for i := 1; i <= n; i++ {
		readPush(t, conn, strconv.Itoa(i))
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
