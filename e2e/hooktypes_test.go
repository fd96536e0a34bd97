//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hookbus/hookbus/pkg/events"
)

// A subject hook and an exec hook through `hookbus serve`: the subject's
// subscriber gets the event in the bus's form, the program gets its data
// on stdin and its id in CE_ID; exec hooks are refused at create outside
// the directory given with --hook-exec-dir.
func TestHookSubjectAndExec(t *testing.T) {
	base := t.TempDir()
	execDir, out := filepath.Join(base, "exec"), filepath.Join(base, "out")
	for _, d := range []string{execDir, out} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	prog := fmt.Sprintf("#!/bin/sh\ncat > %[1]s/stdin.tmp\necho \"$CE_ID\" > %[1]s/id\nmv %[1]s/stdin.tmp %[1]s/stdin\n", out)
	if err := os.WriteFile(filepath.Join(execDir, "record.sh"), []byte(prog), 0o755); err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, t.TempDir(), "--hook-exec-dir", execDir)
	defer srv.stop(t)
	nc, err := nats.Connect(srv.NATSURL, nats.Name("hookbus-e2e-subject-hook"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	sub, err := nc.SubscribeSync("hooks.e2e.orders")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	hook := func(args ...string) (string, string, int) {
		t.Helper()
		return run(t, append([]string{"hook"}, append(args, "--nats-url", srv.NATSURL)...)...)
	}
	for _, args := range [][]string{
		{"create", "-n", "e2e.types.order", "-t", "subject", "-P", "hooks.e2e.orders"},
		{"create", "-n", "e2e.types.order", "-t", "exec", "-P", "--hook-timeout", "10s", "record.sh"},
	} {
		if stdout, stderr, code := hook(args...); code != 0 {
			t.Fatalf("hook %s: exit %d\n%s\n%s", strings.Join(args, " "), code, stdout, stderr)
		}
	}
	for arg, want := range map[string]string{"../record.sh": `".." element`, "missing.sh": "does not exist"} {
		if _, stderr, code := hook("create", "-n", "e2e.types.order", "-t", "exec", "-P", arg); code != 2 || !strings.Contains(stderr, want) {
			t.Errorf("create exec %s: exit %d, stderr %q; want 2 and %q", arg, code, stderr, want)
		}
	}
	if _, stderr, code := hook("create", "-n", "e2e.types.order", "-t", "subject", "-P", "hookbus.event.loop"); code != 2 || !strings.Contains(stderr, "reserved") {
		t.Errorf("create subject hookbus.event.loop: exit %d, stderr %q; want 2, reserved", code, stderr)
	}
	stdout, _, _ := hook("list", "-t", "exec", "-o", "json")
	var listed []events.Hook
	decodeJSON(t, "hook list", stdout, &listed)
	if len(listed) != 1 || listed[0].Arg != "record.sh" {
		t.Errorf("exec hooks listed: %+v, want record.sh", listed)
	}

	if stdout, stderr, code := run(t, "publish", "--nats-url", srv.NATSURL, "--type", "e2e.types.order", "--source", "/e2e", "--id", "t1", "--data", `{"n":7}`); code != 0 {
		t.Fatalf("publish: exit %d\n%s\n%s", code, stdout, stderr)
	}
	m, err := sub.NextMsg(30 * time.Second)
	if err != nil {
		t.Fatalf("the subject hook delivered nothing: %v", err)
	}
	if m.Header.Get("ce-id") != "t1" || m.Header.Get("ce-type") != "e2e.types.order" || m.Header.Get(events.HeaderMsgID) == "" || string(m.Data) != `{"n":7}` {
		t.Errorf("subject hook delivered headers %v, data %s; want event t1 in the bus's form", m.Header, m.Data)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		stdin, err := os.ReadFile(filepath.Join(out, "stdin"))
		if err == nil {
			id, _ := os.ReadFile(filepath.Join(out, "id"))
			if string(stdin) != `{"n":7}` || strings.TrimSpace(string(id)) != "t1" {
				t.Errorf("the exec hook's program got stdin %q, CE_ID %q; want the event t1", stdin, id)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the exec hook's program did not run")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
