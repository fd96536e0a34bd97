package k8s

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// hookbusBin is the hookbus binary the tests build in TestMain, with the
// Dockerfile's flags; binary is what `hookbus config -o json` says of it.
var (
	hookbusBin string
	binary     binaryInfo
)

// binaryInfo is the output of `hookbus config -o json`.
type binaryInfo struct {
	Variables []struct {
		Name        string `json:"name"`
		Flag        string `json:"flag"`
		Default     string `json:"default"`
		Description string `json:"description"`
	} `json:"variables"`
	Services []string `json:"services"`
}

// variable returns the named variable's default and whether the binary
// reads it.
func (b binaryInfo) variable(name string) (def string, ok bool) {
	for _, v := range b.Variables {
		if v.Name == name {
			return v.Default, true
		}
	}
	return "", false
}

func (b binaryInfo) hasFlag(flag string) bool {
	for _, v := range b.Variables {
		if v.Flag != "" && v.Flag == flag {
			return true
		}
	}
	return false
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "hookbus-k8s-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := 1
	if err := buildHookbus(dir); err != nil {
		fmt.Fprintln(os.Stderr, "deployments/k8s:", err)
	} else {
		code = m.Run()
		printAttackSummary() // attack_test.go: the attack suite's one line
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// buildHookbus builds ../../cmd/hookbus as the Dockerfile does (static,
// -trimpath) and reads what it says of its configuration.
func buildHookbus(dir string) error {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return err
	}
	hookbusBin = filepath.Join(dir, "hookbus")
	build := exec.Command(goBin, "build", "-trimpath", "-o", hookbusBin, "./cmd/hookbus")
	build.Dir = filepath.Join("..", "..")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("build hookbus: %v\n%s", err, out)
	}
	var stderr bytes.Buffer
	cfg := exec.Command(hookbusBin, "config", "-o", "json")
	cfg.Stderr = &stderr
	out, err := cfg.Output()
	if err != nil {
		return fmt.Errorf("hookbus config -o json: %v\n%s", err, stderr.Bytes())
	}
	dec := json.NewDecoder(bytes.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&binary); err != nil {
		return fmt.Errorf("hookbus config -o json: %v", err)
	}
	if len(binary.Variables) == 0 || len(binary.Services) == 0 {
		return fmt.Errorf("hookbus config -o json lists no variables or no services:\n%s", out)
	}
	return nil
}
