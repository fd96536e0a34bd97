package registry_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hookbus/hookbus/internal/natstest"
	"github.com/hookbus/hookbus/pkg/events"
	"github.com/hookbus/hookbus/services/registry"
)

// Exec hooks are refused at create while the operator has not set an exec
// directory, and for a program that is not an executable regular file
// inside it once every link is resolved; subject hooks need no check.
func TestHookCreateChecksExecPrograms(t *testing.T) {
	srv, c, _ := setup(t)
	runRegistry(t, srv)
	ctx := ctxT(t)
	exec := func(node, arg string) events.HookSpec {
		return events.HookSpec{Node: node, Type: events.HookExec, Arg: arg, Persistent: true}
	}
	if _, err := c.CreateHook(ctx, exec("a", "notify")); !errors.Is(err, events.ErrInvalid) || !strings.Contains(err.Error(), "exec hooks are off") {
		t.Errorf("exec hook with exec off: %v, want invalid, exec hooks are off", err)
	}
	h, err := c.CreateHook(ctx, events.HookSpec{Node: "a", Type: events.HookSubject, Arg: "hooks.a", Persistent: true})
	if err != nil || h.Secret != "" || h.Type != events.HookSubject {
		t.Errorf("subject hook = %+v, %v: want it stored, without a secret", h, err)
	}

	base := t.TempDir()
	dir := filepath.Join(base, "exec")
	for _, d := range []string{dir, filepath.Join(dir, "sub")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(path string, mode os.FileMode) {
		if err := os.WriteFile(path, []byte("#!/bin/sh\n"), mode); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(dir, "notify"), 0o755)
	write(filepath.Join(dir, "sub", "deep"), 0o755)
	write(filepath.Join(dir, "plain"), 0o644)
	write(filepath.Join(base, "outside"), 0o755)
	if err := os.Symlink(filepath.Join(base, "outside"), filepath.Join(dir, "link-out")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("sub/deep", filepath.Join(dir, "link-in")); err != nil {
		t.Fatal(err)
	}
	srv2, c2, _ := setup(t)
	cfg := registry.DefaultConfig()
	cfg.ConsumerCheck = 200 * time.Millisecond
	cfg.HookExecDir = dir
	svc, err := registry.New(cfg, natstest.Connect(t, srv2), nil)
	if err != nil {
		t.Fatal(err)
	}
	natstest.RunService(t, svc)
	for _, arg := range []string{"notify", "sub/deep", "link-in"} {
		if _, err := c2.CreateHook(ctx, exec("a", arg)); err != nil {
			t.Errorf("exec hook %s: %v, want it stored", arg, err)
		}
	}
	for arg, want := range map[string]string{
		"link-out": "outside the exec directory",
		"plain":    "not executable",
		"sub":      "not a regular file",
		"missing":  "does not exist",
	} {
		_, err := c2.CreateHook(ctx, exec("a", arg))
		if !errors.Is(err, events.ErrInvalid) || !strings.Contains(err.Error(), want) {
			t.Errorf("exec hook %s: %v, want invalid, %s", arg, err, want)
		}
	}
	cfg.HookExecDir = "relative/dir"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "want an absolute path") {
		t.Errorf("a relative exec directory: %v, want it refused", err)
	}
}
