package k8s

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hookbus/hookbus/internal/natstest"
	"github.com/hookbus/hookbus/pkg/events"
)

// exampleEvent is the event type the example workers serve in the run:
// one no other step of TestDevOverlayRuns uses.
const exampleEvent = "com.example.k8s.greeting"

// runExamples runs the repository's two example plugin workers against the
// dev overlay's NATS, as the processes a user would run, with nothing but
// the credentials of NATS user plugin-example in their environment (the
// examples set the inbox prefix _INBOX.plugin-example themselves):
// examples/go-plugin (pkg/client's Serve) and then examples/node-plugin
// (the Node.js SDK's serve), both as plugin example, the only plugin
// that user may serve. Each registers (an upsert) and starts the plugin
// itself, answers a `hookbus call` as plugin-example, and exits cleanly on
// SIGTERM, leaving the plugin as it is; the plugin is unregistered at the
// end if runExamples found it so. TestDevOverlayRuns fails on any
// permission violation the server logs meanwhile.
func runExamples(t *testing.T, url string, users map[string]string, cli func(user string, args ...string) (string, error)) {
	root := filepath.Join("..", "..")
	goPlugin := buildGoPlugin(t, root)
	nodePlugin := nodePluginScript(t, root)
	wasRegistered := prepareExamplePlugin(t, cli)

	env := []string{"PATH=" + os.Getenv("PATH"),
		"HOOKBUS_NATS_USER=" + pluginUser, "HOOKBUS_NATS_PASSWORD=" + users[pluginUser]}
	for _, ex := range []struct {
		name string
		argv []string
		// status finds the worker's ready line in its output and returns
		// the plugin status it names.
		status func(out string) (events.Status, bool)
	}{
		{
			// Serve logs "serving" once the plugin is registered and
			// started, whatever state it started from (the OnStart line
			// "plugin example started" comes only when it starts it):
			// level=INFO msg=serving plugin=example mode=chain event=... status=started
			name: "examples/go-plugin",
			argv: []string{goPlugin, "-nats-url", url, "-name", pluginName, "-event", exampleEvent, "-priority", "10"},
			status: func(out string) (events.Status, bool) {
				line, ok := lineWith(out, "msg=serving", "plugin="+pluginName)
				if !ok {
					return "", false
				}
				for f := range strings.FieldsSeq(line) {
					if s, ok := strings.CutPrefix(f, "status="); ok {
						return events.Status(s), true
					}
				}
				return "", true
			},
		},
		{
			// plugin example ready (started)
			name: "examples/node-plugin",
			argv: []string{"node", nodePlugin, "--nats-url", url, "--name", pluginName, "--event", exampleEvent, "--priority", "10"},
			status: func(out string) (events.Status, bool) {
				line, ok := lineWith(out, "plugin "+pluginName+" ready (")
				if !ok {
					return "", false
				}
				_, s, _ := strings.Cut(line, "(")
				s, _ = strings.CutSuffix(s, ")")
				return events.Status(s), true
			},
		},
	} {
		w := startExample(t, ex.name, env, ex.argv)
		status := w.waitReady(t, ex.status)
		if !status.Running() {
			t.Fatalf("%s is ready but plugin %s does not run (status %q)", ex.name, pluginName, status)
		}
		w.waitCall(t, cli)
		w.stop(t)
		t.Logf("%s: ready as plugin %s (%s), answered a call's step as %s, stopped cleanly", ex.name, pluginName, status, pluginUser)
	}

	if !wasRegistered {
		if out, err := cli(pluginUser, "plugin", "unregister", pluginName); err != nil {
			t.Errorf("%s: hookbus plugin unregister %s: %v\n%s", pluginUser, pluginName, err, out)
		}
	}
}

// buildGoPlugin builds examples/go-plugin as buildHookbus builds the
// hookbus binary (sharing its build cache).
func buildGoPlugin(t *testing.T, root string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "go-plugin")
	build := exec.Command("go", "build", "-trimpath", "-o", bin, "./examples/go-plugin")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build examples/go-plugin: %v\n%s", err, out)
	}
	return bin
}

// nodePluginScript returns the absolute path of examples/node-plugin's
// plugin.mjs, after installing and building the Node.js SDK it runs on
// (sdks/node) and installing its own locked dependencies with npm ci, when
// they are not there (make test builds the SDK and runs this module before
// the end-to-end suite, which installs them too). CI has Node.js and npm:
// a missing one is a failure, never a skip.
func nodePluginScript(t *testing.T, root string) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join(root, "examples", "node-plugin"))
	if err != nil {
		t.Fatal(err)
	}
	sdk, err := filepath.Abs(filepath.Join(root, "sdks", "node"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatalf("node is not installed (the Node.js example plugin needs Node.js 20 or later): %v", err)
	}
	npm := func(dir string, args ...string) {
		t.Helper()
		path, err := exec.LookPath("npm")
		if err != nil {
			t.Fatalf("npm is not installed (the Node.js example plugin's dependencies are installed with npm ci): %v", err)
		}
		cmd := exec.Command(path, args...)
		cmd.Dir = dir
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			t.Fatalf("npm %s in %s: %v\n%s", strings.Join(args, " "), dir, err, out.Bytes())
		}
	}
	if _, err := os.Stat(filepath.Join(sdk, "dist", "index.js")); err != nil {
		npm(sdk, "ci", "--no-audit", "--no-fund")
		npm(sdk, "run", "build")
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "nats", "package.json")); err != nil {
		npm(dir, "ci", "--no-audit", "--no-fund")
	}
	return filepath.Join(dir, "plugin.mjs")
}

// prepareExamplePlugin makes plugin example's state one the examples can
// join: unregistered (as runPlugins leaves it), or any state whose
// register upsert and start bring it to run. A stopped plugin is the
// operator's switch, which a worker leaves alone: the operator (admin)
// enables it. It reports whether the plugin was registered.
func prepareExamplePlugin(t *testing.T, cli func(user string, args ...string) (string, error)) bool {
	t.Helper()
	out, err := cli(pluginUser, "plugin", "list", "-o", "json")
	if err != nil {
		t.Fatalf("%s: hookbus plugin list: %v\n%s", pluginUser, err, out)
	}
	var plugins []events.Plugin
	if err := json.Unmarshal([]byte(out), &plugins); err != nil {
		t.Fatalf("hookbus plugin list -o json: %v\n%s", err, out)
	}
	i := slices.IndexFunc(plugins, func(p events.Plugin) bool { return p.Name == pluginName })
	if i < 0 {
		return false
	}
	switch p := plugins[i]; p.Status {
	case events.StatusStopped:
		if out, err := cli("admin", "plugin", "enable", pluginName); err != nil {
			t.Fatalf("admin: hookbus plugin enable %s: %v\n%s", pluginName, err, out)
		}
	case events.StatusHeld:
		t.Fatalf("plugin %s is held, waiting for %v: the examples cannot run it", pluginName, p.HardDepends())
	}
	return true
}

// exampleWorker is an example plugin worker running as a process.
type exampleWorker struct {
	name   string
	cmd    *exec.Cmd
	out    *natstest.SyncBuffer // stdout and stderr
	exited chan struct{}        // closed when the process has exited, err set
	err    error
}

func startExample(t *testing.T, name string, env, argv []string) *exampleWorker {
	t.Helper()
	w := &exampleWorker{name: name, out: &natstest.SyncBuffer{}, exited: make(chan struct{})}
	w.cmd = exec.Command(argv[0], argv[1:]...)
	w.cmd.Env = env
	w.cmd.Dir = t.TempDir()
	w.cmd.Stdout, w.cmd.Stderr = w.out, w.out
	if err := w.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		w.err = w.cmd.Wait()
		close(w.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-w.exited:
		default:
			_ = w.cmd.Process.Kill()
			<-w.exited
		}
		if t.Failed() { // what the worker said, to see why
			t.Logf("%s output:\n%s", w.name, w.out)
		}
	})
	return w
}

// waitReady waits until status finds the worker's ready line in its
// output, and returns the status it names.
func (w *exampleWorker) waitReady(t *testing.T, status func(out string) (events.Status, bool)) events.Status {
	t.Helper()
	var s events.Status
	w.poll(t, "ready line", func() error {
		var ok bool
		if s, ok = status(w.out.String()); !ok {
			return errors.New("not printed yet")
		}
		return nil
	})
	return s
}

// waitCall runs `hookbus call` as plugin-example until the chain's result
// shows the worker's step: the dispatcher learns of the registration
// through its watch of the plugins bucket, and skips the plugin until then.
func (w *exampleWorker) waitCall(t *testing.T, cli func(user string, args ...string) (string, error)) {
	t.Helper()
	w.poll(t, "a call through plugin "+pluginName, func() error {
		out, err := cli(pluginUser, "call", "--type", exampleEvent, "--data", "{}")
		if err != nil {
			return fmt.Errorf("hookbus call: %v\n%s", err, out)
		}
		if !strings.Contains(out, `"visited":["`+pluginName+`"]`) {
			return fmt.Errorf("hookbus call: not visited by %s:\n%s", pluginName, out)
		}
		if !slices.ContainsFunc(strings.Split(out, "\n"), func(line string) bool {
			f := strings.Fields(line) // STEP PLUGIN OUTCOME DURATION ERROR
			return len(f) >= 3 && f[0] == "1" && f[1] == pluginName && f[2] == string(events.OutcomeContinued)
		}) {
			return fmt.Errorf("hookbus call: no step of %s continued:\n%s", pluginName, out)
		}
		return nil
	})
}

// poll retries f every 100 ms for up to 30 s, failing the test if the
// worker exits first.
func (w *exampleWorker) poll(t *testing.T, what string, f func() error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for {
		err := f()
		if err == nil {
			return
		}
		select {
		case <-w.exited:
			t.Fatalf("%s exited (%v) before %s (last: %v)", w.name, w.err, what, err)
		case <-ctx.Done():
			t.Fatalf("%s: no %s after 30 s (last: %v)", w.name, what, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// stop sends SIGTERM and wants a clean exit (status 0) within 30 s.
func (w *exampleWorker) stop(t *testing.T) {
	t.Helper()
	if err := w.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM %s: %v", w.name, err)
	}
	select {
	case <-w.exited:
		if w.err != nil {
			t.Errorf("%s after SIGTERM: %v, want exit status 0", w.name, w.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("%s still running 30 s after SIGTERM", w.name)
	}
}

// lineWith returns the first line of out that contains every one of
// parts.
func lineWith(out string, parts ...string) (string, bool) {
	for line := range strings.Lines(out) {
		if !slices.ContainsFunc(parts, func(p string) bool { return !strings.Contains(line, p) }) {
			return strings.TrimSpace(line), true
		}
	}
	return "", false
}
