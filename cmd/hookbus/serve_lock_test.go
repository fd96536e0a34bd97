//go:build unix

package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hookbus/hookbus/internal/natstest"
)

// A second `hookbus serve` on the data directory of a running one is
// refused, exit 1, naming the running one's process, and leaves it
// running. Both are processes of their own (this test binary run as
// hookbus, asMain), on free ports, so only the directory is shared.
func TestSecondServeOnDataDirRefused(t *testing.T) {
	dir := t.TempDir()
	serve := func() *exec.Cmd {
		// Killed if still running after a minute (no lock: it serves);
		// not t.Context(), which ends before the first is stopped cleanly.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		t.Cleanup(cancel)
		cmd := exec.CommandContext(ctx, os.Args[0], "serve", "--data-dir", dir, "--nats-listen", "127.0.0.1:-1", "--ops-addr", "127.0.0.1:0", "--log-level", "info")
		cmd.Env = append(os.Environ(), asMainEnv+"=1", "HOOKBUS_NATS_URL=", "HOOKBUS_NATS_USER=", "HOOKBUS_NATS_PASSWORD=")
		return cmd
	}
	first := serve()
	var firstOut natstest.SyncBuffer
	first.Stdout, first.Stderr = &firstOut, &firstOut
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- first.Wait() }()
	t.Cleanup(func() {
		_ = first.Process.Signal(syscall.SIGTERM)
		if err := <-exited; err != nil {
			t.Errorf("first serve: %v\n%s", err, firstOut.String())
		}
	})
	pid := strconv.Itoa(first.Process.Pid)
	natstest.Eventually(t, 30*time.Second, func() error {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("first serve exited: %v\n%s", err, firstOut.String())
		default:
		}
		if !strings.Contains(firstOut.String(), "hookbus serving") {
			return errors.New("the first serve is not serving yet")
		}
		return nil
	})

	out, err := serve().CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != exitFailure || !strings.Contains(string(out), "is in use by process "+pid) {
		t.Errorf("second serve on %s: %v, output:\n%s\nwant exit %d naming process %s", dir, err, out, exitFailure, pid)
	}
	select {
	case err := <-exited:
		exited <- err
		t.Errorf("the first serve stopped with the second: %v\n%s", err, firstOut.String())
	default:
	}
}
