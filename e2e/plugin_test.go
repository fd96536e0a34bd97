//go:build e2e

package e2e

import (
	"strings"
	"testing"

	"github.com/hookbus/hookbus/pkg/events"
)

// TestPluginCLI drives the registry inside `hookbus serve` through the CLI:
// register, a refused start, a cascade, list filters, errors with exit
// codes, and state that survives a restart.
func TestPluginCLI(t *testing.T) {
	dataDir := t.TempDir()
	srv := startServer(t, dataDir)

	plugin := func(t *testing.T, args ...string) []events.Plugin {
		t.Helper()
		stdout, stderr, code := run(t, append([]string{"plugin"}, append(args, "--nats-url", srv.NATSURL, "-o", "json")...)...)
		if code != 0 {
			t.Fatalf("hookbus plugin %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, stdout, stderr)
		}
		var ps []events.Plugin
		decodeJSON(t, "hookbus plugin "+args[0], stdout, &ps)
		return ps
	}
	status := func(t *testing.T, name string) events.Status {
		t.Helper()
		return plugin(t, "get", name)[0].Status
	}

	if got := plugin(t, "register", "--name", "acl", "--event", "on_user_authorisation", "--priority", "10"); got[0].Status != events.StatusRegistered {
		t.Fatalf("register acl: %s, want registered", got[0].Status)
	}
	if got := plugin(t, "register", "--name", "audit", "--event", "on_user_after_login", "--mode", "notify", "--depends", "acl", "--max-deliver", "3"); got[0].Status != events.StatusHeld || got[0].Settings.MaxDeliver != 3 {
		t.Fatalf("register audit: %+v, want held with max deliver 3", got[0])
	}

	// A start refused by a dependency: exit 1, the code and the reason.
	stdout, stderr, code := run(t, "plugin", "start", "audit", "--nats-url", srv.NATSURL)
	if code != 1 || !strings.Contains(stderr, "dependency_not_running") || !strings.Contains(stderr, "acl") {
		t.Errorf("start audit before acl: exit %d, stderr %q, stdout %q; want exit 1 naming dependency_not_running and acl", code, stderr, stdout)
	}
	plugin(t, "start", "acl")
	if s := status(t, "audit"); s != events.StatusRestarted {
		t.Errorf("audit after acl started: %s, want restarted", s)
	}
	plugin(t, "stop", "acl")
	if held := plugin(t, "list", "--status", "held"); len(held) != 1 || held[0].Name != "audit" {
		t.Errorf("list --status held = %v, want [audit]", held)
	}

	// Invalid input: exit 2 before anything is sent.
	_, stderr, code = run(t, "plugin", "register", "--name", "bad name", "--event", "e", "--nats-url", srv.NATSURL)
	if code != 2 || !strings.Contains(stderr, `invalid name: plugin: "bad name" contains ' '`) {
		t.Errorf("register with a bad name: exit %d, stderr %q; want exit 2 naming the plugin field", code, stderr)
	}
	_, stderr, code = run(t, "plugin", "get", "nobody", "--nats-url", srv.NATSURL)
	if code != 1 || !strings.Contains(stderr, "not_found: plugin nobody is not registered") {
		t.Errorf("get nobody: exit %d, stderr %q; want exit 1 with not_found", code, stderr)
	}

	// Table output for people.
	stdout, _, code = run(t, "plugin", "list", "--nats-url", srv.NATSURL)
	if code != 0 || !strings.Contains(stdout, "NAME") || !strings.Contains(stdout, "audit") || !strings.Contains(stdout, "acl(") && !strings.Contains(stdout, "acl") {
		t.Errorf("plugin list table:\n%s", stdout)
	}

	// The state is in JetStream: it survives a restart.
	srv.stop(t)
	srv = startServer(t, dataDir)
	if s := status(t, "acl"); s != events.StatusStopped {
		t.Errorf("acl after restart: %s, want stopped", s)
	}
	plugin(t, "enable", "acl")
	if s := status(t, "audit"); s != events.StatusRestarted {
		t.Errorf("audit after acl enabled: %s, want restarted", s)
	}
	srv.stop(t)
}
