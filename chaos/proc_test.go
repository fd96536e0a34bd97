//go:build chaos

package chaos

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// crashRestartDelay is how long a process that exited by itself waits
// before it is started again, as a supervisor such as Kubernetes would.
const crashRestartDelay = time.Second

// proc is one supervised child process: started again when it exits by
// itself (a crash, counted), killed with SIGKILL on purpose by the kill
// loops, and killed for good when the test ends. Its output is appended to
// a log file across restarts.
type proc struct {
	name  string // e.g. dispatcher-1
	kind  string // what the kill table counts it as: hookbus, nats, registry, worker...
	path  string
	args  []string
	env   []string
	log   *os.File
	ready func(ctx context.Context) error // nil: ready once started

	mu        sync.Mutex
	cmd       *exec.Cmd
	done      chan struct{} // closed when cmd has exited
	down      bool          // an exit now is expected (killed, or the test ends)
	closed    bool          // the test ended: never start again
	crashes   int
	lastWords string // the last line logged before the latest crash
}

// procs is every child process of one test, killed when it ends.
type procs struct {
	t       *testing.T
	logDir  string // logs and delivery files, kept when the test fails
	dataDir string // stores, removed once every process is killed
	mu      sync.Mutex
	all     []*proc
}

// newProcs returns the process set of t; logs go to a directory that is
// removed when t passes and named in its log when it fails.
func newProcs(t *testing.T) *procs {
	t.Helper()
	dir, err := os.MkdirTemp("", "hookbus-chaos-"+strings.ReplaceAll(t.Name(), "/", "_")+"-")
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.MkdirTemp(dataRoot(), "hookbus-chaos-data-")
	if err != nil {
		t.Fatal(err)
	}
	ps := &procs{t: t, logDir: dir, dataDir: data}
	t.Cleanup(func() {
		ps.killAll()
		_ = os.RemoveAll(data)
		for _, p := range ps.all {
			_ = p.log.Close()
		}
		if t.Failed() {
			t.Logf("process logs kept in %s", dir)
			return
		}
		_ = os.RemoveAll(dir)
	})
	return ps
}

// dir returns a new directory for a process's store.
func (ps *procs) dir(name string) string {
	ps.t.Helper()
	dir := filepath.Join(ps.dataDir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		ps.t.Fatal(err)
	}
	return dir
}

// add creates a process (not started yet).
func (ps *procs) add(name, kind, path string, args, env []string, ready func(context.Context) error) *proc {
	ps.t.Helper()
	f, err := os.OpenFile(filepath.Join(ps.logDir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		ps.t.Fatal(err)
	}
	p := &proc{name: name, kind: kind, path: path, args: args, env: env, log: f, ready: ready}
	ps.mu.Lock()
	ps.all = append(ps.all, p)
	ps.mu.Unlock()
	return p
}

func (ps *procs) killAll() {
	ps.mu.Lock()
	all := ps.all
	ps.mu.Unlock()
	for _, p := range all {
		p.mu.Lock()
		p.closed = true
		p.mu.Unlock()
		p.kill()
	}
}

// lastLine returns the last line of the file at path, read from its last
// 4 KiB.
func lastLine(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > 4096 {
		_, _ = f.Seek(-4096, io.SeekEnd)
	}
	b, _ := io.ReadAll(f)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}

// crashes is how many times processes exited without being killed.
func (ps *procs) crashes() map[string]int {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	out := map[string]int{}
	for _, p := range ps.all {
		p.mu.Lock()
		if p.crashes > 0 {
			out[p.name] = p.crashes
		}
		p.mu.Unlock()
	}
	return out
}

// start starts the process in a process group of its own.
func (p *proc) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return fmt.Errorf("%s: the test has ended", p.name)
	}
	cmd := exec.Command(p.path, p.args...)
	cmd.Env = p.env
	cmd.Stdout, cmd.Stderr = p.log, p.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	fmt.Fprintf(p.log, "\n=== chaos: start %s at %s\n", p.name, time.Now().Format(time.RFC3339Nano))
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	done := make(chan struct{})
	p.cmd, p.done, p.down = cmd, done, false
	go func() {
		err := cmd.Wait()
		close(done)
		p.exited(cmd, err)
	}()
	return nil
}

// exited restarts a process that exited by itself, counting the crash.
func (p *proc) exited(cmd *exec.Cmd, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != cmd || p.down || p.closed {
		return
	}
	p.crashes++
	p.down = true
	p.lastWords = lastLine(p.log.Name())
	fmt.Fprintf(p.log, "=== chaos: %s exited by itself (%v); restarting in %s\n", p.name, err, crashRestartDelay)
	time.AfterFunc(crashRestartDelay, func() {
		p.mu.Lock()
		again := p.cmd == cmd && !p.closed
		p.mu.Unlock()
		if again {
			_ = p.start()
		}
	})
}

// kill sends SIGKILL to the process group and waits until the process has
// exited.
func (p *proc) kill() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.down = true
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	<-done
	fmt.Fprintf(p.log, "=== chaos: killed %s at %s\n", p.name, time.Now().Format(time.RFC3339Nano))
}

// waitReady polls the readiness probe until it passes or timeout passes.
func (p *proc) waitReady(ctx context.Context, timeout time.Duration) error {
	if p.ready == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		if last = p.ready(ctx); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready after %s: %w", p.name, timeout, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// httpReady is a probe that passes when url answers 200.
func httpReady(url string) func(context.Context) error {
	client := &http.Client{Timeout: 2 * time.Second}
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
		}
		return nil
	}
}

// freeAddr returns 127.0.0.1:<a port that was free a moment ago>.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().String()
}

// cleanEnv is the test's environment without HOOKBUS_* and CHAOS_*
// variables, plus extra.
func cleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HOOKBUS_") && !strings.HasPrefix(kv, "CHAOS_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// dataRoot is where the NATS stores go: CHAOS_DATA_DIR, else /dev/shm when
// the machine has it, so that fsync on every write (sync_interval: always)
// measures the software and not this machine's disk; a kill -9 leaves a
// tmpfs store as it leaves a disk's. Else the system's temporary directory.
func dataRoot() string {
	if d := os.Getenv("CHAOS_DATA_DIR"); d != "" {
		return d
	}
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		return "/dev/shm"
	}
	return ""
}
