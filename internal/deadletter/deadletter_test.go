package deadletter_test

import (
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/hookbus/hookbus/internal/deadletter"
	"github.com/hookbus/hookbus/pkg/events"
)

// TestDeadLetterByReference: a dead letter that would not fit keeps the
// original's headers and its place in the stream, not its data; when the
// headers alone do not fit, it keeps only its own.
func TestDeadLetterByReference(t *testing.T) {
	h := nats.Header{"Ce-Id": {"e1"}, "Nats-Msg-Id": {"abc"}}
	data := []byte(strings.Repeat("x", 4000))

	full, err := deadletter.New("p", "hookbus.event.ev", h, data, 7, 2, "boom", 0)
	if err != nil || len(full.Data) != len(data) || full.Header.Get(events.HeaderDLQBody) != "" {
		t.Fatalf("without a limit: %v, %d bytes, body header %q", err, len(full.Data), full.Header.Get(events.HeaderDLQBody))
	}
	if full.Header.Get("Nats-Msg-Id") != deadletter.MsgID("p", 7) {
		t.Errorf("Nats-Msg-Id %q", full.Header.Get("Nats-Msg-Id"))
	}

	ref, err := deadletter.New("p", "hookbus.event.ev", h, data, 7, 2, "boom", 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(ref.Data) != 0 || ref.Header.Get("Ce-Id") != "e1" || ref.Header.Get(events.HeaderDLQBody) != "omitted: 4000 bytes" ||
		ref.Header.Get(events.HeaderDLQStreamSeq) != "7" || ref.Header.Get(events.HeaderDLQReason) != "boom" {
		t.Fatalf("by reference: %d bytes, headers %v", len(ref.Data), ref.Header)
	}
	if size := events.WireSize(ref.Header, ref.Data); size > 1000 {
		t.Errorf("dead letter by reference is %d bytes, limit 1000", size)
	}

	h.Set("Ce-Big", strings.Repeat("y", 2000))
	bare, err := deadletter.New("p", "hookbus.event.ev", h, data, 7, 2, "boom", 1000)
	if err != nil {
		t.Fatal(err)
	}
	if bare.Header.Get("Ce-Big") != "" || bare.Header.Get(events.HeaderDLQBody) != "omitted: 4000 bytes, headers omitted" || events.WireSize(bare.Header, nil) > 1000 {
		t.Fatalf("headers too large: %v", bare.Header)
	}
}
