//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/internal/natstest"
	"github.com/hookbus/hookbus/pkg/client"
)

// Deadlines. Generous for a loaded 2-core CI machine; a healthy run takes
// a fraction of each.
const (
	readyTimeout = 20 * time.Second // serve: start until /readyz answers 200
	stopTimeout  = 15 * time.Second // serve: SIGTERM until exit
	runTimeout   = 30 * time.Second // one CLI or Node.js invocation
)

// server is one `hookbus serve` subprocess.
type server struct {
	NATSURL string // nats://host:port of its embedded NATS server
	OpsURL  string // http://host:port of /livez, /readyz, /metrics
	DataDir string
	// GatewayURL is http://host:port of the HTTP gateway. GatewayToken is
	// the bearer token the tests send it (gatewayAuth); "" sends none, as
	// an anonymous client on loopback.
	GatewayURL   string
	GatewayToken string

	cmd    *exec.Cmd
	stderr *natstest.SyncBuffer
	exited chan struct{} // closed once the process has exited
	err    error         // cmd.Wait's result, set before exited is closed
}

// startServer runs `hookbus serve` on free loopback ports with its store in
// dataDir (and more serve flags, if any) and waits until /readyz answers 200. It is killed when the test
// ends if it is still running; its stderr is logged if the test failed.
func startServer(t *testing.T, dataDir string, flags ...string) *server {
	t.Helper()
	return startServerEnv(t, dataDir, nil, flags...)
}

// startServerEnv is startServer with env (NAME=value) added to the
// server's environment.
func startServerEnv(t *testing.T, dataDir string, env []string, flags ...string) *server {
	t.Helper()
	// A free port found here may be taken by someone else before the
	// server binds it; start again on other ports if that happened.
	for attempt := 1; ; attempt++ {
		s := spawnServer(t, dataDir, env, flags...)
		err := s.waitReady(readyTimeout)
		if err == nil {
			return s
		}
		portTaken := strings.Contains(s.stderr.String(), "address already in use")
		s.kill()
		if !portTaken || attempt == 3 {
			t.Fatalf("hookbus serve not ready: %v (its stderr follows)", err)
		}
		t.Logf("hookbus serve attempt %d: a port was taken, trying others", attempt)
	}
}

func spawnServer(t *testing.T, dataDir string, env []string, flags ...string) *server {
	t.Helper()
	natsAddr, opsAddr, gatewayAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	s := &server{
		NATSURL:    "nats://" + natsAddr,
		OpsURL:     "http://" + opsAddr,
		GatewayURL: "http://" + gatewayAddr,
		DataDir:    dataDir,
		stderr:     &natstest.SyncBuffer{},
		exited:     make(chan struct{}),
	}
	s.cmd = exec.Command(binary, append([]string{"serve",
		"--nats-listen", natsAddr,
		"--ops-addr", opsAddr,
		"--gateway-addr", gatewayAddr,
		"--data-dir", dataDir,
		"--log-level", "debug",
	}, flags...)...)
	s.cmd.Env = append(cleanEnv(), env...)
	s.cmd.Stdout = s.stderr
	s.cmd.Stderr = s.stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start hookbus serve: %v", err)
	}
	go func() {
		s.err = s.cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(func() {
		if s.kill() && !t.Failed() {
			t.Errorf("hookbus serve (pid %d) still running at the end of the test: killed", s.cmd.Process.Pid)
		}
		if t.Failed() {
			t.Logf("hookbus serve %s stderr:\n%s", opsAddr, s.stderr)
		}
	})
	return s
}

// waitReady polls /readyz until it answers 200, the process exits, or
// timeout passes.
func (s *server) waitReady(timeout time.Duration) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		code, body, err := httpGet(s.OpsURL + "/readyz")
		switch {
		case err != nil:
			last = err
		case code == http.StatusOK:
			return nil
		default:
			last = errors.New("/readyz " + http.StatusText(code) + ": " + strings.TrimSpace(body))
		}
		select {
		case <-s.exited:
			return errors.New("exited before ready: " + s.exitStatus())
		case <-deadline.C:
			return errors.New("not ready after " + timeout.String() + ": " + last.Error())
		case <-tick.C:
		}
	}
}

// stop sends SIGTERM and requires a clean exit (status 0) within
// stopTimeout.
func (s *server) stop(t *testing.T) {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM hookbus serve: %v", err)
	}
	select {
	case <-s.exited:
	case <-time.After(stopTimeout):
		s.kill()
		t.Fatalf("hookbus serve did not exit within %s of SIGTERM: killed (its stderr follows)", stopTimeout)
	}
	if s.err != nil {
		t.Fatalf("hookbus serve after SIGTERM: %s, want exit status 0 (its stderr follows)", s.exitStatus())
	}
}

// kill kills the process if it is still running, waits for it, and reports
// whether it had to.
func (s *server) kill() bool {
	select {
	case <-s.exited:
		return false
	default:
	}
	_ = s.cmd.Process.Kill()
	<-s.exited
	return true
}

// exitStatus describes how the exited process ended.
func (s *server) exitStatus() string {
	if s.err == nil {
		return "exit status 0"
	}
	return s.err.Error()
}

// run runs the hookbus CLI with args and returns what it wrote and its exit
// status. It fails the test only if the binary could not be run at all.
func run(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return runCommand(t, binary, args...)
}

// runNode runs a script of e2e/node with Node.js, like run.
func runNode(t *testing.T, script string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	requireNode(t)
	return runCommand(t, "node", append([]string{filepath.Join(nodeDir, script)}, args...)...)
}

func runCommand(t *testing.T, name string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), runTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = cleanEnv()
	cmd.Dir = t.TempDir() // so nothing lands in the checkout (./data)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("%s %s: killed after %s\nstdout:\n%s\nstderr:\n%s", filepath.Base(name), strings.Join(args, " "), runTimeout, &out, &errOut)
	}
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		code = exit.ExitCode()
	default:
		t.Fatalf("%s %s: %v", filepath.Base(name), strings.Join(args, " "), err)
	}
	return out.String(), errOut.String(), code
}

// cleanEnv is the test's environment without HOOKBUS_* variables, so a
// developer's settings cannot change what the tests run against.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HOOKBUS_") {
			env = append(env, kv)
		}
	}
	return env
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

var httpClient = &http.Client{Timeout: 5 * time.Second}

// httpGet returns the status and body of a GET.
func httpGet(url string) (int, string, error) {
	resp, err := httpClient.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// connectClient connects to srv's NATS as name and returns the connection,
// its JetStream and a Go client on it, all closed when the test ends.
func connectClient(t *testing.T, srv *server, name string) (*nats.Conn, jetstream.JetStream, *client.Client) {
	t.Helper()
	nc, err := nats.Connect(srv.NATSURL, nats.Name(name), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := client.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js, cl
}
