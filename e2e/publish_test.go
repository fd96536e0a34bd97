//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/pkg/events"
)

const orderCreated = "com.example.order.created"

// TestPublishAndRestart is the acceptance test of publishing: an event
// published with the CLI (binary mode) and one published from Node.js
// (structured mode) are stored once each, read back and decoded by a Go
// client, and still there after the server restarts on the same data.
func TestPublishAndRestart(t *testing.T) {
	requireNode(t)
	dataDir := t.TempDir()
	srv := startServer(t, dataDir)

	// CLI, binary mode.
	cliAck := publishCLI(t, srv, "--type", orderCreated, "--source", "/e2e", "--id", "cli-1", "--data", `{"n":1}`)
	if want := (ackJSON{ID: "cli-1", Source: "/e2e", Type: orderCreated, Stream: events.StreamEvents, Seq: 1}); cliAck != want {
		t.Fatalf("publish cli-1: got %+v, want %+v", cliAck, want)
	}

	// Node.js, structured mode, its own Nats-Msg-Id.
	stdout, stderr, code := runNode(t, "publish.mjs", "--server", srv.NATSURL,
		"--type", orderCreated, "--source", "/e2e/node", "--id", "node-1", "--data", `{"n":2}`)
	if code != 0 {
		t.Fatalf("node publish.mjs: exit status %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	var nodeAck struct {
		Stream    string `json:"stream"`
		Seq       uint64 `json:"seq"`
		Duplicate bool   `json:"duplicate"`
		MsgID     string `json:"msgId"`
	}
	decodeJSON(t, "node publish.mjs", stdout, &nodeAck)
	if nodeAck.Stream != events.StreamEvents || nodeAck.Seq != 2 || nodeAck.Duplicate {
		t.Fatalf("node publish.mjs ack: got %+v, want stream %s seq 2, not a duplicate", nodeAck, events.StreamEvents)
	}
	if want := events.MsgID("/e2e/node", "node-1"); nodeAck.MsgID != want {
		t.Fatalf("node publish.mjs sent Nats-Msg-Id %s, events.MsgID gives %s", nodeAck.MsgID, want)
	}

	// A retried publish is stored once: the same CLI event again, and the
	// Node.js event's source and id from the CLI (both languages derive the
	// same Nats-Msg-Id).
	if n := streamMsgs(t, srv); n != 2 {
		t.Fatalf("HOOKBUS_EVENTS holds %d messages after two publishes, want 2", n)
	}
	retries := []struct {
		name    string
		args    []string
		wantSeq uint64
	}{
		{"cli-1 again", []string{"--source", "/e2e", "--id", "cli-1", "--data", `{"n":1}`}, 1},
		{"node-1 from the CLI", []string{"--source", "/e2e/node", "--id", "node-1", "--data", `{"n":2}`}, 2},
	}
	for _, r := range retries {
		ack := publishCLI(t, srv, append([]string{"--type", orderCreated}, r.args...)...)
		if !ack.Duplicate || ack.Seq != r.wantSeq || ack.Stream != events.StreamEvents {
			t.Errorf("publish %s: got %+v, want duplicate of seq %d", r.name, ack, r.wantSeq)
		}
	}
	if n := streamMsgs(t, srv); n != 2 {
		t.Fatalf("HOOKBUS_EVENTS holds %d messages after the retries, want still 2", n)
	}

	want := []storedEvent{
		{Seq: 1, ID: "cli-1", Source: "/e2e", Type: orderCreated, DataContentType: "application/json", Data: `{"n":1}`, Mode: "binary", MsgID: events.MsgID("/e2e", "cli-1")},
		{Seq: 2, ID: "node-1", Source: "/e2e/node", Type: orderCreated, DataContentType: "application/json", Data: `{"n":2}`, Mode: "structured", MsgID: events.MsgID("/e2e/node", "node-1")},
	}
	if got := readEvents(t, srv); !slices.Equal(got, want) {
		t.Fatalf("HOOKBUS_EVENTS:\ngot  %+v\nwant %+v", got, want)
	}

	// Restart on the same data directory (new ports).
	srv.stop(t)
	srv = startServer(t, dataDir)
	if got := readEvents(t, srv); !slices.Equal(got, want) {
		t.Fatalf("HOOKBUS_EVENTS after a restart:\ngot  %+v\nwant %+v", got, want)
	}
	// The duplicate window survives the restart too.
	ack := publishCLI(t, srv, "--type", orderCreated, "--source", "/e2e", "--id", "cli-1", "--data", `{"n":1}`)
	if !ack.Duplicate || ack.Seq != 1 {
		t.Errorf("publish cli-1 after a restart: got %+v, want duplicate of seq 1", ack)
	}
	if n := streamMsgs(t, srv); n != uint64(len(want)) {
		t.Errorf("HOOKBUS_EVENTS holds %d messages after the retry, want %d", n, len(want))
	}
	srv.stop(t)
}

// TestPublishInvalid checks that the CLI refuses invalid events with exit
// status 2 and the reason, and that none of them is stored.
func TestPublishInvalid(t *testing.T) {
	srv := startServer(t, t.TempDir())
	tests := []struct {
		name       string
		args       []string
		wantStderr []string
	}{
		{
			name:       "type with a space",
			args:       []string{"--type", "com.example order.created", "--source", "/e2e", "--data", `{"n":1}`},
			wantStderr: []string{"invalid event: type:", "com.example order.created", "only letters, digits"},
		},
		{
			name:       "catalog data failing its schema",
			args:       []string{"--type", "on_user_login_failure", "--source", "/e2e", "--data", `{"ip":"1.2.3.4","endpoint":"web","error":"x"}`},
			wantStderr: []string{"invalid event: data.endpoint:", `"web"`},
		},
		{
			name:       "data not JSON",
			args:       []string{"--type", orderCreated, "--source", "/e2e", "--data", `{"n":`},
			wantStderr: []string{"--data is not valid JSON"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"publish", "--nats-url", srv.NATSURL, "--timeout", "5s", "-o", "json"}, tt.args...)
			stdout, stderr, code := run(t, args...)
			if code != 2 {
				t.Errorf("exit status %d, want 2\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
			}
			if stdout != "" {
				t.Errorf("stdout %q, want nothing", stdout)
			}
			for _, s := range tt.wantStderr {
				if !strings.Contains(stderr, s) {
					t.Errorf("stderr %q does not contain %q", stderr, s)
				}
			}
		})
	}
	if n := streamMsgs(t, srv); n != 0 {
		t.Errorf("HOOKBUS_EVENTS holds %d messages, want none", n)
	}
	srv.stop(t)
}

// ackJSON is what `hookbus publish -o json` prints.
type ackJSON struct {
	ID        string `json:"id"`
	Source    string `json:"source"`
	Type      string `json:"type"`
	Stream    string `json:"stream"`
	Seq       uint64 `json:"seq"`
	Duplicate bool   `json:"duplicate"`
}

// publishCLI runs `hookbus publish -o json` against srv with args and
// returns the acknowledgement it printed.
func publishCLI(t *testing.T, srv *server, args ...string) ackJSON {
	t.Helper()
	stdout, stderr, code := run(t, append([]string{"publish", "--nats-url", srv.NATSURL, "-o", "json"}, args...)...)
	if code != 0 {
		t.Fatalf("hookbus publish %s: exit status %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, stdout, stderr)
	}
	var ack ackJSON
	decodeJSON(t, "hookbus publish", stdout, &ack)
	return ack
}

func decodeJSON(t *testing.T, what, s string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(s), v); err != nil {
		t.Fatalf("%s printed %q: %v", what, s, err)
	}
}

// storedEvent is what the tests check of one message of HOOKBUS_EVENTS.
type storedEvent struct {
	Seq                               uint64
	ID, Source, Type, DataContentType string
	Data                              string // compacted JSON
	Mode                              string // "binary" or "structured", from the headers
	MsgID                             string // the Nats-Msg-Id header
}

// readEvents reads every message of HOOKBUS_EVENTS with a Go JetStream
// client, by sequence, and decodes each with events.Decode.
func readEvents(t *testing.T, srv *server) []storedEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	stream, closeConn := eventsStream(ctx, t, srv)
	defer closeConn()
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatalf("stream info: %v", err)
	}
	var out []storedEvent
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := stream.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatalf("get message %d: %v", seq, err)
		}
		e, err := events.Decode(m.Header, m.Data)
		if err != nil {
			t.Fatalf("decode message %d (headers %v, data %q): %v", seq, m.Header, m.Data, err)
		}
		var data bytes.Buffer
		if err := json.Compact(&data, e.Data()); err != nil {
			t.Fatalf("message %d: data %q is not JSON: %v", seq, e.Data(), err)
		}
		out = append(out, storedEvent{
			Seq: m.Sequence, ID: e.ID(), Source: e.Source(), Type: e.Type(), DataContentType: e.DataContentType(),
			Data: data.String(), Mode: wireMode(m.Header), MsgID: header(m.Header, events.HeaderMsgID),
		})
	}
	return out
}

// streamMsgs is the number of messages in HOOKBUS_EVENTS.
func streamMsgs(t *testing.T, srv *server) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	stream, closeConn := eventsStream(ctx, t, srv)
	defer closeConn()
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatalf("stream info: %v", err)
	}
	return info.State.Msgs
}

// eventsStream opens HOOKBUS_EVENTS on a new connection to srv; the caller
// closes it with the returned function.
func eventsStream(ctx context.Context, t *testing.T, srv *server) (jetstream.Stream, func()) {
	t.Helper()
	nc, err := nats.Connect(srv.NATSURL, nats.Name("hookbus-e2e"))
	if err != nil {
		t.Fatalf("connect %s: %v", srv.NATSURL, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		t.Fatal(err)
	}
	stream, err := js.Stream(ctx, events.StreamEvents)
	if err != nil {
		nc.Close()
		t.Fatalf("stream %s: %v", events.StreamEvents, err)
	}
	return stream, nc.Close
}

// wireMode tells the CloudEvents mode of a message from its headers.
func wireMode(h nats.Header) string {
	ct := header(h, events.HeaderContentType)
	binary := header(h, events.HeaderPrefix+"specversion") != ""
	switch {
	case strings.HasPrefix(ct, events.ContentTypeStructured) && !binary:
		return "structured"
	case binary:
		return "binary"
	default:
		return fmt.Sprintf("unknown (headers %v)", h)
	}
}

// header returns the first value of the header name, compared without
// regard to case as the wire contract says.
func header(h nats.Header, name string) string {
	for k, vs := range h {
		if strings.EqualFold(k, name) && len(vs) > 0 {
			return vs[0]
		}
	}
	return ""
}
