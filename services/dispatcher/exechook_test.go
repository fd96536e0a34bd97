//go:build unix

package dispatcher_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hookbus/hookbus/internal/natstest"
	"github.com/hookbus/hookbus/pkg/events"
	"github.com/hookbus/hookbus/services/dispatcher"
)

// execDirs returns an exec directory and a directory outside it where the
// test's programs write what they saw.
func execDirs(t *testing.T) (dir, out string) {
	t.Helper()
	base := t.TempDir()
	dir, out = filepath.Join(base, "exec"), filepath.Join(base, "out")
	for _, d := range []string{dir, out} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir, out
}

// script writes a #!/bin/sh program at path.
func script(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
}

// runExecDispatcher runs a dispatcher whose exec hooks run programs of dir.
func (e *env) runExecDispatcher(dir string) {
	e.t.Helper()
	e.runDispatcherWith(func(c *dispatcher.Config) { c.HookExecDir = dir })
}

// waitFile returns the content of path once it exists and ends with a
// line "end".
func waitFile(t *testing.T, path string) string {
	t.Helper()
	var b []byte
	natstest.Eventually(t, 10*time.Second, func() error {
		var err error
		b, err = os.ReadFile(path)
		if err != nil {
			return err
		}
		if !bytes.HasSuffix(b, []byte("end\n")) {
			return fmt.Errorf("%s not complete: %q", path, b)
		}
		return nil
	})
	return string(b)
}

// An exec hook runs its program with the event's data on stdin, its
// attributes and the hook id as the whole environment, in the exec
// directory; exit 0 delivers.
func TestExecHookRunsTheProgram(t *testing.T) {
	t.Setenv("HOOKBUS_TEST_SECRET", "must-not-leak")
	e := newEnv(t)
	dir, out := execDirs(t)
	if err := os.Mkdir(filepath.Join(dir, "shop"), 0o755); err != nil {
		t.Fatal(err)
	}
	script(t, filepath.Join(dir, "shop", "record"), fmt.Sprintf(`cat > %[1]s/stdin
env | sort > %[1]s/env
pwd > %[1]s/pwd
echo end >> %[1]s/pwd`, out))
	e.runExecDispatcher(dir)
	h := e.putTypedHook(events.HookExec, "shop.order.*", "shop/record", events.HookSettings{})
	e.publish(richEvent(t, "shop.order.created", "o1"))

	if pwd := waitFile(t, filepath.Join(out, "pwd")); pwd != dir+"\nend\n" {
		t.Errorf("working directory %q, want %s", pwd, dir)
	}
	stdin, err := os.ReadFile(filepath.Join(out, "stdin"))
	if err != nil || string(stdin) != `{"total":12}` {
		t.Errorf("stdin %q (%v), want the event's data", stdin, err)
	}
	env, err := os.ReadFile(filepath.Join(out, "env"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"CE_DATACONTENTTYPE=application/json",
		"CE_DATASCHEMA=https://shop.example/order.json",
		"CE_ID=o1",
		"CE_SOURCE=/shop",
		"CE_SPECVERSION=1.0",
		"CE_SUBJECT=order-42",
		"CE_TENANT=acme",
		"CE_TIME=2026-11-28T12:00:00Z",
		"CE_TYPE=shop.order.created",
		"HOOKBUS_HOOK_ID=" + h.ID,
		"PATH=/usr/local/bin:/usr/bin:/bin",
		"PWD=" + dir, // set by the shell itself
	}
	var got []string
	for l := range strings.SplitSeq(strings.TrimSpace(string(env)), "\n") {
		if !strings.HasPrefix(l, "SHLVL=") && !strings.HasPrefix(l, "_=") && !strings.HasPrefix(l, "OLDPWD=") {
			got = append(got, l) // set by some shells themselves
		}
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("environment:\n%s\nwant exactly:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// Delivered: settled, no dead letter.
	natstest.Eventually(t, 10*time.Second, func() error {
		c, err := e.js.Consumer(t.Context(), events.StreamEvents, events.HookConsumer(h.ID))
		if err != nil {
			return err
		}
		info, err := c.Info(t.Context())
		if err != nil {
			return err
		}
		if info.AckFloor.Consumer != 1 || info.NumAckPending != 0 {
			return fmt.Errorf("not acknowledged yet: %+v", info)
		}
		return nil
	})
}

// Programs that may not run are dead-lettered at their first attempt,
// each with its reason, and never run.
func TestExecHookRefusals(t *testing.T) {
	e := newEnv(t)
	dir, out := execDirs(t)
	outside := filepath.Join(out, "outside")
	script(t, outside, fmt.Sprintf("echo ran > %s/ran", out))
	if err := os.Symlink(outside, filepath.Join(dir, "link-out")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "plain"), []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	e.runExecDispatcher(dir)
	cases := []struct{ name, arg, want string }{
		{"symlink out", "link-out", "outside the exec directory"},
		{"parent", "../out/outside", `".." element`},
		{"parent inside", "sub/../../out/outside", `".." element`},
		{"absolute", outside, "absolute"},
		{"missing", "nothing-here", "does not exist"},
		{"not executable", "plain", "not executable"},
		{"a directory", "sub", "not a regular file"},
	}
	for i, tc := range cases {
		typ := fmt.Sprintf("refused.n%d", i)
		h := e.putTypedHook(events.HookExec, typ, tc.arg, events.HookSettings{MaxAttempts: 5})
		e.publishID(typ, fmt.Sprintf("x%d", i))
		if reason := dlReason(e.deadLetter(h)); !strings.Contains(reason, tc.want) || !strings.Contains(reason, "attempt 1 of 5") {
			t.Errorf("%s: dead letter reason %q, want %q at the first attempt", tc.name, reason, tc.want)
		}
	}
	if _, err := os.Stat(filepath.Join(out, "ran")); err == nil {
		t.Error("the program outside the exec directory ran")
	}
}

// Without HOOKBUS_HOOK_EXEC_DIR exec hooks are off: their events are
// dead-lettered with the reason.
func TestExecHookOff(t *testing.T) {
	e := newEnv(t)
	dir, _ := execDirs(t)
	script(t, filepath.Join(dir, "ok"), "exit 0")
	e.runDispatcher()
	h := e.putTypedHook(events.HookExec, "a", "ok", events.HookSettings{})
	e.publishID("a", "a1")
	if reason := dlReason(e.deadLetter(h)); !strings.Contains(reason, "exec hooks are off") {
		t.Errorf("dead letter reason %q, want exec hooks off", reason)
	}
}

// A non-zero exit is retried up to the hook's attempts, then dead-lettered
// with the exit status and the end of the output.
func TestExecHookFailureRetried(t *testing.T) {
	e := newEnv(t)
	dir, out := execDirs(t)
	script(t, filepath.Join(dir, "fail"), fmt.Sprintf("echo try >> %s/tries\necho first line\necho 'it broke' >&2\nexit 3", out))
	e.runExecDispatcher(dir)
	h := e.putTypedHook(events.HookExec, "a", "fail", events.HookSettings{MaxAttempts: 3})
	e.publishID("a", "a1")
	reason := dlReason(e.deadLetter(h))
	if !strings.Contains(reason, "exit status 3") || !strings.Contains(reason, `"first line it broke"`) || !strings.Contains(reason, "attempt 3 of 3") {
		t.Errorf("dead letter reason %q: want the exit status and the output, after 3 attempts", reason)
	}
	if tries, _ := os.ReadFile(filepath.Join(out, "tries")); strings.Count(string(tries), "try") != 3 {
		t.Errorf("the program ran %d times, want 3", strings.Count(string(tries), "try"))
	}
}

// A program past its timeout is killed with everything it started; the
// event is dead-lettered after the hook's attempts with the timeout.
func TestExecHookTimeoutKillsTheGroup(t *testing.T) {
	e := newEnv(t)
	dir, out := execDirs(t)
	script(t, filepath.Join(dir, "slow"), fmt.Sprintf("sleep 60 &\necho $! > %s/child\necho started\nwait", out))
	e.runExecDispatcher(dir)
	h := e.putTypedHook(events.HookExec, "a", "slow", events.HookSettings{MaxAttempts: 1, TimeoutMS: 300})
	start := time.Now()
	e.publishID("a", "a1")
	reason := dlReason(e.deadLetter(h))
	if !strings.Contains(reason, "timed out after 300ms, killed") || !strings.Contains(reason, `"started"`) {
		t.Errorf("dead letter reason %q: want the timeout and the output", reason)
	}
	if d := time.Since(start); d > 8*time.Second {
		t.Errorf("dead-lettered after %s: the timeout did not stop the run", d)
	}
	b, err := os.ReadFile(filepath.Join(out, "child"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 5*time.Second, func() error {
		if alive(pid) {
			return fmt.Errorf("the program's child %d still runs", pid)
		}
		return nil
	})
}

// alive reports whether process pid runs (a zombie waiting for its parent
// to reap it does not).
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) state ...: the state follows the last ')'.
	i := bytes.LastIndexByte(stat, ')')
	return i < 0 || i+2 >= len(stat) || stat[i+2] != 'Z'
}

// Output past the limit is read and dropped: the program is never
// blocked on it, and the failure quotes the end.
func TestExecHookLargeOutput(t *testing.T) {
	e := newEnv(t)
	dir, _ := execDirs(t)
	script(t, filepath.Join(dir, "loud"), "head -c 1000000 /dev/zero | tr '\\0' x\necho\necho the-last-line\nexit 1")
	e.runExecDispatcher(dir)
	h := e.putTypedHook(events.HookExec, "a", "loud", events.HookSettings{MaxAttempts: 1, TimeoutMS: 20000})
	e.publishID("a", "a1")
	reason := dlReason(e.deadLetter(h))
	if !strings.Contains(reason, "exit status 1") || !strings.HasSuffix(reason, `x the-last-line"`) || len(reason) > 1000 {
		t.Errorf("dead letter reason (%d bytes) %q: want exit status 1 and the end of the output, short", len(reason), reason)
	}
}

// A program that exits 0 delivers, even when it left a child holding its
// output open: the run is not failed (nor run again) for the child, which
// is killed with the program's process group.
func TestExecHookExitZeroWithABackgroundChild(t *testing.T) {
	e := newEnv(t)
	dir, out := execDirs(t)
	script(t, filepath.Join(dir, "bg"), fmt.Sprintf("echo try >> %[1]s/tries\nsleep 60 &\necho $! > %[1]s/child\nexit 0", out))
	e.runExecDispatcher(dir)
	h := e.putTypedHook(events.HookExec, "a", "bg", events.HookSettings{MaxAttempts: 3})
	e.publishID("a", "a1")
	natstest.Eventually(t, 15*time.Second, func() error {
		st, _ := e.hookState(h.ID)
		if len(st.Attempts) == 0 {
			return errors.New("no attempt yet")
		}
		if !st.Attempts[0].OK {
			return fmt.Errorf("attempt failed: %s", st.Attempts[0].Error)
		}
		return nil
	})
	time.Sleep(1500 * time.Millisecond) // a retry would have come
	if tries, _ := os.ReadFile(filepath.Join(out, "tries")); strings.Count(string(tries), "try") != 1 {
		t.Errorf("the program ran %d times, want 1", strings.Count(string(tries), "try"))
	}
	b, err := os.ReadFile(filepath.Join(out, "child"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 5*time.Second, func() error {
		if alive(pid) {
			return fmt.Errorf("the program's child %d still runs", pid)
		}
		return nil
	})
}
