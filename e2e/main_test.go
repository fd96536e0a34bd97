//go:build e2e

package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Set up once by TestMain.
var (
	// binary is the hookbus binary built from this checkout.
	binary string
	// nodeDir is e2e/node, where the Node.js clients and their
	// node_modules live.
	nodeDir string
	// nodeErr says why the Node.js clients cannot run (npm or node
	// missing, npm ci failed); nil when they can.
	nodeErr error
	// goPlugin is examples/go-plugin, built; nodePluginDir is
	// examples/node-plugin and nodeDeviceDir examples/node-device, with
	// their node_modules.
	goPlugin, nodePluginDir, nodeDeviceDir string
	// goAdapter and rawAdapter are the conformance adapters of the Go SDK
	// and of the raw worker, built; nodeAdapterDir holds the Node.js SDK's
	// (e2e/adapters), which runs on sdks/node, installed and built.
	goAdapter, rawAdapter, nodeAdapterDir string
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	root, err := moduleRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	tmp, err := os.MkdirTemp("", "hookbus-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(tmp)
	binary = filepath.Join(tmp, "hookbus")
	nodeDir = filepath.Join(root, "e2e", "node")
	goPlugin = filepath.Join(tmp, "go-plugin")
	nodePluginDir = filepath.Join(root, "examples", "node-plugin")
	nodeDeviceDir = filepath.Join(root, "examples", "node-device")
	goAdapter = filepath.Join(tmp, "go-adapter")
	rawAdapter = filepath.Join(tmp, "raw-adapter")
	nodeAdapterDir = filepath.Join(root, "e2e", "adapters", "node")
	sdkDir := filepath.Join(root, "sdks", "node")

	// The build and npm ci take about as long as each other: run them
	// side by side.
	var (
		wg       sync.WaitGroup
		buildErr error
	)
	wg.Go(func() {
		buildErr = errors.Join(buildBinary(root, binary, "./cmd/hookbus"), buildBinary(root, goPlugin, "./examples/go-plugin"),
			buildBinary(root, goAdapter, "./e2e/adapters/go"), buildBinary(root, rawAdapter, "./e2e/adapters/raw"))
	})
	wg.Go(func() {
		// The SDK first: the example plugin and the adapter use it built.
		if nodeErr = errors.Join(installNode(sdkDir), runNPM(sdkDir, "run", "build")); nodeErr == nil {
			nodeErr = errors.Join(installNode(nodeDir), installNode(nodePluginDir), installNode(nodeDeviceDir), installNode(nodeAdapterDir))
		}
	})
	wg.Wait()
	if buildErr != nil {
		fmt.Fprintln(os.Stderr, "e2e:", buildErr)
		return 1
	}
	return m.Run()
}

// moduleRoot is the directory of the go.mod this package belongs to.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("go env GOMOD: not inside a module")
	}
	return filepath.Dir(gomod), nil
}

func buildBinary(root, out, pkg string) error {
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return nil
}

// installNode installs the locked dependencies of the Node.js clients into
// dir/node_modules.
func installNode(dir string) error { return runNPM(dir, "ci", "--no-audit", "--no-fund") }

// runNPM runs npm with args in dir.
func runNPM(dir string, args ...string) error {
	if _, err := exec.LookPath("node"); err != nil {
		return fmt.Errorf("node is not installed (the Node.js e2e tests need Node.js 20 or later and npm): %w", err)
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		return fmt.Errorf("npm is not installed (the Node.js e2e tests install their dependencies with npm ci): %w", err)
	}
	cmd := exec.Command(npm, args...)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("npm %s in %s: %w\n%s", strings.Join(args, " "), dir, err, out.Bytes())
	}
	return nil
}

// requireNode fails the test when the Node.js clients cannot run. CI has
// Node.js and npm, so a missing one is a failure, never a skip.
func requireNode(t *testing.T) {
	t.Helper()
	if nodeErr != nil {
		t.Fatalf("cannot run the Node.js client: %v", nodeErr)
	}
}
