package main

import (
	"os"
	"strings"
	"testing"
)

// register -f takes the whole declaration, but any connection flag with it
// (--nats-ca, --data-dir, ... added since) is fine.
func TestRegisterFileWithConnectionFlags(t *testing.T) {
	spec := t.TempDir() + "/spec.json"
	if err := os.WriteFile(spec, []byte(`{"name":"a","event":"e"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := runCLI(t, "plugin", "register", "-f", spec, "--priority", "3")
	if err == nil || !strings.Contains(err.Error(), "-f takes the whole declaration") {
		t.Errorf("-f with --priority: %v, want refused", err)
	}
	_, err = runCLI(t, "plugin", "register", "-f", spec, "--nats-ca", t.TempDir()+"/missing.pem", "--timeout", "1s")
	if err == nil || strings.Contains(err.Error(), "-f takes the whole declaration") || !strings.Contains(err.Error(), "missing.pem") {
		t.Errorf("-f with --nats-ca: %v, want the CA file's error", err)
	}
}

// With no server at the address, a command fails after cliConnectTimeout
// with a hint, not after its own (longer) timeout with a bare error; with
// a shorter --timeout, after that, with the same hint.
func TestNoServerHint(t *testing.T) {
	t.Setenv("HOOKBUS_NATS_URL", "nats://127.0.0.1:1") // nothing listens on port 1
	for _, args := range [][]string{{"plugin", "list"}, {"topology", "check"}, {"dlq", "list", "--timeout", "500ms"}} {
		_, err := runCLI(t, args...)
		if err == nil || !strings.Contains(err.Error(), "no Hookbus at nats://127.0.0.1:1: start one with 'hookbus serve' or set HOOKBUS_NATS_URL") {
			t.Errorf("hookbus %s: %v, want the no-server hint", strings.Join(args, " "), err)
		}
	}
}
