package dispatcher

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"

	"github.com/hookbus/hookbus/internal/execdir"
	"github.com/hookbus/hookbus/pkg/events"
)

// Limits of exec hooks.
const (
	// execOutputMax is how much of a program's output (stdout and stderr
	// together) is kept: the last bytes; the rest is read and dropped.
	execOutputMax = 64 << 10
	// execTailMax is how much of the kept output a failure quotes.
	execTailMax = 300
	// execWaitDelay is how long a killed program's output pipes may stay
	// open before Wait gives up on them.
	execWaitDelay = time.Second
	// execPath is the PATH of every program: nothing of the
	// dispatcher's environment is passed on.
	execPath = "PATH=/usr/local/bin:/usr/bin:/bin"
)

// execRunner runs exec hooks: the program the hook names inside the
// operator's directory (checked again at every run), never through a
// shell, with the event's data on stdin, its attributes in the
// environment, in a process group of its own that is killed when the run
// ends or times out.
type execRunner struct {
	dir            string // "" = exec hooks off
	defaultTimeout time.Duration
	slots          chan struct{} // one per program that may run at once
}

func newExecRunner(dir string, maxRunning int, defaultTimeout time.Duration) *execRunner {
	return &execRunner{dir: dir, defaultTimeout: defaultTimeout, slots: make(chan struct{}, maxRunning)}
}

// send runs h's program on e once: exit 0 delivers; another exit code or
// the timeout is retried; a program that may not run (exec off, outside
// the directory, not an executable file) fails at once.
func (x *execRunner) send(ctx context.Context, h events.Hook, e *event.Event) delivery {
	prog, err := execdir.Resolve(x.dir, h.Arg)
	if err != nil {
		return delivery{err: fmt.Errorf("hook %s: %w", h.ID, err)}
	}
	select {
	case x.slots <- struct{}{}:
		defer func() { <-x.slots }()
	case <-ctx.Done():
		return delivery{retry: true, err: fmt.Errorf("hook %s: %w", h.ID, ctx.Err())}
	}
	timeout := x.defaultTimeout
	if h.Settings.TimeoutMS > 0 {
		timeout = time.Duration(h.Settings.TimeoutMS) * time.Millisecond
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	out := &tailBuffer{max: execOutputMax}
	cmd := exec.CommandContext(rctx, prog.Path)
	cmd.Dir = prog.Dir
	cmd.Env = execEnv(h, e)
	cmd.Stdin = bytes.NewReader(e.Data())
	cmd.Stdout, cmd.Stderr = out, out
	ownGroup(cmd)
	cmd.Cancel = func() error { return killGroup(cmd) }
	cmd.WaitDelay = execWaitDelay
	if err := cmd.Start(); err != nil {
		return delivery{err: fmt.Errorf("hook %s: start %s: %w", h.ID, h.Arg, err)}
	}
	err = cmd.Wait()
	// What the program started goes with it.
	_ = killGroup(cmd)
	switch {
	case err == nil:
		return delivery{} // exit 0, even if the deadline passed while Wait returned
	case errors.Is(err, exec.ErrWaitDelay) && cmd.ProcessState != nil && cmd.ProcessState.Success():
		// Exit 0, with a child still holding the output open (killed
		// above, with the group): delivered.
		return delivery{}
	case ctx.Err() != nil:
		return delivery{retry: true, err: fmt.Errorf("hook %s: %s stopped: %w", h.ID, h.Arg, ctx.Err())}
	case errors.Is(rctx.Err(), context.DeadlineExceeded):
		return delivery{retry: true, err: fmt.Errorf("hook %s: %s timed out after %s, killed: %s", h.ID, h.Arg, timeout, out.tail())}
	}
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return delivery{retry: true, err: fmt.Errorf("hook %s: %s: %s: %s", h.ID, h.Arg, exit.ProcessState, out.tail())}
	}
	return delivery{retry: true, err: fmt.Errorf("hook %s: %s: %w: %s", h.ID, h.Arg, err, out.tail())}
}

// execEnv is the whole environment of a program: PATH, the event's
// attributes as CE_<NAME> (extensions upper-cased), the hook's id.
func execEnv(h events.Hook, e *event.Event) []string {
	env := []string{execPath,
		"CE_ID=" + e.ID(), "CE_SOURCE=" + e.Source(), "CE_TYPE=" + e.Type(), "CE_SPECVERSION=" + e.SpecVersion(),
		"HOOKBUS_HOOK_ID=" + h.ID}
	optional := []struct{ name, value string }{
		{"SUBJECT", e.Subject()},
		{"DATACONTENTTYPE", e.DataContentType()},
		{"DATASCHEMA", e.DataSchema()},
	}
	if !e.Time().IsZero() {
		optional = append(optional, struct{ name, value string }{"TIME", e.Time().UTC().Format(time.RFC3339Nano)})
	}
	for _, o := range optional {
		if o.value != "" {
			env = append(env, "CE_"+o.name+"="+o.value)
		}
	}
	for name, v := range e.Extensions() {
		if s, err := types.Format(v); err == nil {
			env = append(env, "CE_"+strings.ToUpper(name)+"="+s)
		}
	}
	return env
}

// tailBuffer keeps the last max bytes written to it; it never blocks nor
// fails a write.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := len(p)
	if len(p) >= b.max {
		p = p[len(p)-b.max:]
		b.buf = b.buf[:0]
	}
	if drop := len(b.buf) + len(p) - b.max; drop > 0 {
		b.buf = append(b.buf[:0], b.buf[drop:]...)
	}
	b.buf = append(b.buf, p...)
	return n, nil
}

// tail quotes the end of the output on one line.
func (b *tailBuffer) tail() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := oneLine(b.buf)
	if s == "" {
		return "no output"
	}
	if len(s) > execTailMax {
		s = "..." + strings.ToValidUTF8(s[len(s)-execTailMax:], "")
	}
	return "output: " + strconv.Quote(s)
}
