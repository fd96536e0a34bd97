package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/internal/natstest"
	"github.com/hookbus/hookbus/pkg/events"
)

func eventLine(id string) string {
	return fmt.Sprintf(`{"specversion":"1.0","id":%q,"source":"/shop","type":"com.example.order.created","datacontenttype":"application/json","data":{"total":12.5}}`, id)
}

// storedIDs returns the ce-id of every event in HOOKBUS_EVENTS.
func storedIDs(t *testing.T, js jetstream.JetStream) []string {
	t.Helper()
	s, err := js.Stream(t.Context(), events.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(t.Context(), seq)
		if err != nil {
			t.Fatal(err)
		}
		e, err := events.Decode(m.Header, m.Data)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, e.ID())
	}
	return ids
}

func TestPublishFile(t *testing.T) {
	var good []string
	for i := range 300 {
		good = append(good, eventLine(fmt.Sprintf("order-%d", i)))
	}
	tests := []struct {
		name      string
		lines     []string
		stdin     bool
		wantIDs   int
		wantOut   string
		wantErrs  []string // in stderr
		wantError string   // "" for success
	}{
		{
			name:    "good file",
			lines:   good,
			wantIDs: 300,
			wantOut: "published 300 events (0 duplicates), 0 failed\n",
		},
		{
			name:    "stdin, a duplicate and a blank line",
			lines:   []string{eventLine("a"), "", eventLine("b"), eventLine("a")},
			stdin:   true,
			wantIDs: 2,
			wantOut: "published 3 events (1 duplicates), 0 failed\n",
		},
		{
			name: "bad lines",
			lines: []string{
				eventLine("a"),
				`{"specversion":"1.0","source":"/shop","type":"com.example.order.created"}`,
				`not json`,
				eventLine("b"),
				`{"specversion":"1.0","id":"c","source":"/shop","type":"on_user_login_failure","data":{"ip":"192.0.2.1"}}`,
				eventLine("d"),
			},
			wantIDs:   3,
			wantOut:   "published 3 events (0 duplicates), 3 failed\n",
			wantErrs:  []string{"line 2: invalid event: id", "line 3: ", "line 5: invalid event: data"},
			wantError: "3 of 6 events failed",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, js := natstest.RunTopology(t)
			content := strings.Join(tt.lines, "\n") + "\n"
			file := "-"
			var stdin bytes.Buffer
			if tt.stdin {
				stdin.WriteString(content)
			} else {
				file = filepath.Join(t.TempDir(), "events.jsonl")
				if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			var stdout, stderr bytes.Buffer
			root := newRootCmd()
			root.SetArgs([]string{"publish", "--file", file, "--nats-url", srv.ClientURL()})
			root.SetIn(&stdin)
			root.SetOut(&stdout)
			root.SetErr(&stderr)
			err := root.ExecuteContext(context.Background())
			if tt.wantError == "" && err != nil {
				t.Fatalf("publish --file: %v\nstderr:\n%s", err, stderr.String())
			}
			if tt.wantError != "" && (err == nil || !strings.Contains(err.Error(), tt.wantError) || exitCode(err) == 0) {
				t.Errorf("error %v, want one mentioning %q", err, tt.wantError)
			}
			if stdout.String() != tt.wantOut {
				t.Errorf("stdout %q, want %q", stdout.String(), tt.wantOut)
			}
			for _, want := range tt.wantErrs {
				if !strings.Contains(stderr.String(), want) {
					t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
				}
			}
			ids := storedIDs(t, js)
			if len(ids) != tt.wantIDs {
				t.Errorf("%d events stored, want %d: %v", len(ids), tt.wantIDs, ids)
			}
			seen := map[string]bool{}
			for _, id := range ids {
				if seen[id] {
					t.Errorf("event %s stored twice", id)
				}
				seen[id] = true
			}
		})
	}
}

func TestPublishFileRefusesSingleEventFlags(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"publish", "--file", "x.jsonl", "--type", "t"}, "--type: with --file"},
		{[]string{"publish", "--type", "t"}, `required flag(s) "source" not set`},
		{[]string{"publish"}, `required flag(s) "source", "type" not set`},
	}
	for _, tt := range tests {
		root := newRootCmd()
		root.SetArgs(append(tt.args, "--nats-url", "nats://127.0.0.1:1"))
		root.SetOut(&bytes.Buffer{})
		err := root.Execute()
		if err == nil || !strings.Contains(err.Error(), tt.want) || exitCode(err) != exitInvalid {
			t.Errorf("%v: error %v (exit %d), want exit %d mentioning %q", tt.args, err, exitCode(err), exitInvalid, tt.want)
		}
	}
}
