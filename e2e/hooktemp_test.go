//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/internal/natstest"
	"github.com/hookbus/hookbus/pkg/events"
)

// ownerGoneBound is the documented bound (docs/protocol.md, "Temporary
// hooks"): a temporary hook and its consumer are gone within it of their
// owner's death.
const ownerGoneBound = 15 * time.Second

// hookOwner is `hookbus hook create` without -P: the owner of a temporary
// hook, running in the foreground.
type hookOwner struct {
	cmd    *exec.Cmd
	hook   events.Hook
	stderr *natstest.SyncBuffer
	exited chan error
}

// startHookOwner runs `hookbus hook create -o json` for a temporary
// webhook on node and waits for the hook it prints.
func startHookOwner(t *testing.T, srv *server, node, url string) *hookOwner {
	t.Helper()
	o := &hookOwner{stderr: &natstest.SyncBuffer{}, exited: make(chan error, 1)}
	o.cmd = exec.Command(binary, "hook", "create", "-n", node, "-o", "json", url, "--nats-url", srv.NATSURL)
	o.cmd.Env = cleanEnv()
	o.cmd.Dir = t.TempDir()
	o.cmd.Stderr = o.stderr
	stdout, err := o.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := o.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = o.cmd.Process.Kill()
		if t.Failed() {
			t.Logf("hookbus hook create (pid %d) stderr:\n%s", o.cmd.Process.Pid, o.stderr)
		}
	})
	printed := make(chan error, 1)
	go func() { printed <- json.NewDecoder(stdout).Decode(&o.hook) }()
	select {
	case err := <-printed:
		if err != nil {
			t.Fatalf("hookbus hook create printed no hook: %v", err)
		}
	case <-time.After(runTimeout):
		t.Fatalf("hookbus hook create printed no hook in %s", runTimeout)
	}
	go func() {
		_, _ = io.Copy(io.Discard, stdout)
		o.exited <- o.cmd.Wait()
	}()
	if o.hook.Persistent || o.hook.Session == "" || !strings.HasPrefix(o.hook.Secret, "whsec_") {
		t.Fatalf("temporary hook printed = %+v: want persistent false, a session and the secret", o.hook)
	}
	return o
}

// TestTemporaryHookGoesWithItsOwner: the owner killed with SIGKILL, its
// temporary hook and the hook's consumer are gone within the documented
// bound, while a persistent hook on the same node stays; interrupted
// instead, it deletes its hook itself and exits 0; and a delete of every
// hook on a node takes the temporary ones too, with the count.
func TestTemporaryHookGoesWithItsOwner(t *testing.T) {
	srv := startServer(t, t.TempDir())
	const node = "e2e.temp.order"
	stdout, stderr, code := run(t, "hook", "create", "-n", node, "-P", "https://a.example/kept", "-o", "json", "--nats-url", srv.NATSURL)
	if code != 0 {
		t.Fatalf("hook create -P: exit %d\n%s\n%s", code, stdout, stderr)
	}
	var kept events.Hook
	decodeJSON(t, "hook create", stdout, &kept)

	nc, err := nats.Connect(srv.NATSURL, nats.Name("hookbus-e2e"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	hasConsumer := func(id string) bool {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		_, err := js.Consumer(ctx, events.StreamEvents, events.HookConsumer(id))
		if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			t.Fatal(err)
		}
		return err == nil
	}
	listed := func() map[string]bool {
		t.Helper()
		stdout, stderr, code := run(t, "hook", "list", "-n", node, "-o", "json", "--nats-url", srv.NATSURL)
		if code != 0 {
			t.Fatalf("hook list: exit %d\n%s", code, stderr)
		}
		var hooks []events.Hook
		decodeJSON(t, "hook list", stdout, &hooks)
		out := map[string]bool{}
		for _, h := range hooks {
			out[h.ID] = h.Persistent
		}
		return out
	}

	// kill -9: the registry removes the hook once the session expires.
	owner := startHookOwner(t, srv, node, "https://a.example/temp")
	if got := listed(); len(got) != 2 || got[owner.hook.ID] || !got[kept.ID] {
		t.Fatalf("hooks on %s = %v (id: persistent): want %s persistent and %s temporary", node, got, kept.ID, owner.hook.ID)
	}
	natstest.Eventually(t, 10*time.Second, func() error {
		if !hasConsumer(owner.hook.ID) {
			return fmt.Errorf("no consumer for the temporary hook yet")
		}
		return nil
	})
	if err := owner.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	natstest.Eventually(t, ownerGoneBound+10*time.Second, func() error {
		if got := listed(); got[owner.hook.ID] || hasConsumer(owner.hook.ID) {
			return fmt.Errorf("the temporary hook or its consumer is still there")
		}
		return nil
	})
	gone := time.Since(killed)
	t.Logf("temporary hook and its consumer gone %s after its owner was killed (bound %s)", gone.Round(100*time.Millisecond), ownerGoneBound)
	if gone > ownerGoneBound {
		t.Errorf("temporary hook gone %s after its owner's death, over the documented %s", gone, ownerGoneBound)
	}
	if got := listed(); len(got) != 1 || !got[kept.ID] || !hasConsumer(kept.ID) {
		t.Errorf("hooks on %s after the owner's death = %v: want the persistent %s, with its consumer", node, got, kept.ID)
	}

	// SIGINT: the owner deletes its hook and exits 0.
	owner = startHookOwner(t, srv, node, "https://a.example/temp2")
	if err := owner.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-owner.exited:
		if err != nil {
			t.Errorf("owner after SIGINT: %v, want exit 0", err)
		}
	case <-time.After(runTimeout):
		t.Fatal("owner still running after SIGINT")
	}
	if got := listed(); got[owner.hook.ID] {
		t.Errorf("temporary hook %s still listed after its owner stopped", owner.hook.ID)
	}

	// Delete all on the node: persistent and temporary, counted.
	owner = startHookOwner(t, srv, node, "https://a.example/temp3")
	stdout, stderr, code = run(t, "hook", "delete", "-n", node, "--nats-url", srv.NATSURL)
	if code != 0 || strings.TrimSpace(stdout) != "2 hooks deleted" {
		t.Errorf("hook delete -n %s: exit %d, %q (%s); want 2 hooks deleted", node, code, stdout, stderr)
	}
	if err := owner.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-owner.exited:
		if err != nil {
			t.Errorf("owner of a hook deleted under it, after SIGTERM: %v, want exit 0", err)
		}
	case <-time.After(runTimeout):
		t.Fatal("owner still running after SIGTERM")
	}
	srv.stop(t)
}
