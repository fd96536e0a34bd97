//go:build chaos

package chaos

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// Set up once by TestMain.
var (
	hookbusBin string // the hookbus binary built from this checkout
	natsBin    string // nats-server, built from the version in go.mod
	selfBin    string // this test binary, run again as a plugin worker
	chaosTime  time.Duration
)

func TestMain(m *testing.M) {
	if os.Getenv(workerEnv) != "" {
		os.Exit(runWorker())
	}
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	var err error
	if chaosTime, err = chaosDuration(); err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		return 2
	}
	tmp, err := os.MkdirTemp("", "hookbus-chaos-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		return 1
	}
	defer os.RemoveAll(tmp)
	if selfBin, err = os.Executable(); err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		return 1
	}
	hookbusBin, natsBin = filepath.Join(tmp, "hookbus"), filepath.Join(tmp, "nats-server")
	start := time.Now()
	for bin, pkg := range map[string]string{hookbusBin: "./cmd/hookbus", natsBin: "github.com/nats-io/nats-server/v2"} {
		build := exec.Command("go", "build", "-o", bin, pkg)
		build.Dir = ".." // the module root
		if out, err := build.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "chaos: go build %s: %v\n%s", pkg, err, out)
			return 1
		}
	}
	fmt.Printf("chaos: built hookbus and nats-server in %s; CHAOS_TIME=%s\n", time.Since(start).Round(time.Millisecond), chaosTime)
	code := m.Run()
	printSummary(os.Stdout)
	return code
}

// chaosDuration reads CHAOS_TIME, the kill-loop time of each scenario.
func chaosDuration() (time.Duration, error) {
	s := os.Getenv("CHAOS_TIME")
	if s == "" {
		return 20 * time.Second, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("CHAOS_TIME %q: want a positive Go duration such as 3m", s)
	}
	return d, nil
}
