package main

import (
	"cmp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/cobra"
)

// serverArgs are, for every command that talks to a running Hookbus,
// arguments that are valid but for the missing server.
var serverArgs = map[string][]string{
	"hookbus publish":              {"--type", "com.example.order.created", "--source", "/shop", "--data", `{}`},
	"hookbus call":                 {"--type", "com.example.order.created", "--data", `{}`},
	"hookbus plugin register":      {"--name", "a", "--event", "com.example.order.created"},
	"hookbus plugin get":           {"a"},
	"hookbus plugin list":          nil,
	"hookbus plugin start":         {"a"},
	"hookbus plugin stop":          {"a"},
	"hookbus plugin enable":        {"a"},
	"hookbus plugin restart":       {"a"},
	"hookbus plugin delete":        {"a"},
	"hookbus plugin unregister":    {"a"},
	"hookbus hook create":          {"--node", "com.example.order.created", "--type", "webhook", "--persistent", "https://a.example/hook"},
	"hookbus hook list":            nil,
	"hookbus hook delete":          {"--node", "com.example.order.created"},
	"hookbus hook rotate-secret":   {"abababababababababababababababab"},
	"hookbus hook enable":          {"0123456789abcdef0123456789abcdef"},
	"hookbus hook disable":         {"0123456789abcdef0123456789abcdef"},
	"hookbus hook attempts":        {"0123456789abcdef0123456789abcdef"},
	"hookbus dlq list":             nil,
	"hookbus dlq replay":           {"1"},
	"hookbus auth creds get":       nil,
	"hookbus auth creds set":       {"--value", "AAAA"},
	"hookbus auth keys get":        {"pre-key", "1"},
	"hookbus auth keys set":        {"pre-key", "1", "--value", "AAAA"},
	"hookbus auth keys delete":     {"pre-key", "1"},
	"hookbus auth keys list":       {"pre-key"},
	"hookbus auth rotate":          nil,
	"hookbus topology check":       nil,
	"hookbus topology ensure":      nil,
	"hookbus gateway token create": {"--name", "a", "--allow", "publish:>"},
	"hookbus gateway token list":   nil,
	"hookbus gateway token revoke": {"a"},
	"hookbus device revoke":        {"d1"},
	"hookbus device push":          {"d1", "--data", "{}"},
	"hookbus device stop":          {"d1", "--reason", "test"},
	"hookbus device list":          {},
}

// localArgs are, for every command that needs no server, arguments it
// runs with.
var localArgs = map[string][]string{
	"hookbus config":             nil,
	"hookbus events catalog":     nil,
	"hookbus auth keygen":        nil,
	"hookbus plugin credentials": {"a"},
}

// timeoutDefaults are the commands whose --timeout is not defaultTimeout.
var timeoutDefaults = map[string]time.Duration{
	"hookbus auth rotate": rotateTimeout, // re-encrypts the whole store
}

// outputFormats are every name -o takes, on any command.
var outputFormats = []string{"text", "json", "raw"}

// notRun are commands the walk does not run with valid arguments.
var notRun = []string{
	"hookbus serve", // starts the bus; its own tests run it
}

// Every command keeps the CLI's conventions: an unknown subcommand or flag
// is a usage error (exit 2); with no server, a command that needs one
// fails at run time (exit 1) at once, saying so. A new command must be
// added to one of the tables above.
func TestEveryCommand(t *testing.T) {
	var noServer sync.WaitGroup
	var walk func(cmd *cobra.Command)
	seen := map[string]bool{}
	walk = func(cmd *cobra.Command) {
		path := cmd.CommandPath()
		seen[path] = true
		args := strings.Fields(path)[1:]
		if cmd.HasSubCommands() {
			_, err := runCLI(t, append(args, "frobnicate")...)
			if code := exitCodeOf(err); code != exitInvalid || !strings.Contains(err.Error(), `unknown command "frobnicate"`) {
				t.Errorf("%s frobnicate: exit %d (%v), want %d and unknown command", path, code, err, exitInvalid)
			}
			for _, sub := range cmd.Commands() {
				walk(sub)
			}
			return
		}
		if _, err := runCLI(t, append(args, "--no-such-flag")...); exitCodeOf(err) != exitInvalid {
			t.Errorf("%s --no-such-flag: exit %d (%v), want %d", path, exitCodeOf(err), err, exitInvalid)
		}
		if o := cmd.Flags().Lookup("output"); o != nil {
			if _, err := runCLI(t, append(args, "-o", "yaml")...); exitCodeOf(err) != exitInvalid {
				t.Errorf("%s -o yaml: exit %d (%v), want %d", path, exitCodeOf(err), err, exitInvalid)
			}
			if f := o.Value.(*outputFormat).formats; !isSubset(f, outputFormats) || f[0] != "text" {
				t.Errorf("%s -o takes %v, want text first, then some of %v", path, f, outputFormats)
			}
		}
		if cmd.Flags().Lookup("timeout") != nil {
			if _, err := runCLI(t, append(args, "--timeout", "0")...); exitCodeOf(err) != exitInvalid {
				t.Errorf("%s --timeout 0: exit %d (%v), want %d", path, exitCodeOf(err), err, exitInvalid)
			}
		}
		sa, server := serverArgs[path]
		la, local := localArgs[path]
		switch {
		case server:
			if to := cmd.Flags().Lookup("timeout"); to == nil {
				t.Errorf("%s talks to a server but has no --timeout", path)
			} else if want := timeoutDefaults[path]; to.DefValue != cmp.Or(want, defaultTimeout).String() {
				t.Errorf("%s --timeout defaults to %s, want %s", path, to.DefValue, cmp.Or(want, defaultTimeout))
			}
			// Each waits for the connect timeout: side by side.
			noServer.Go(func() {
				start := time.Now()
				_, err := runCLI(t, append(append(args, sa...), "--nats-url", "nats://127.0.0.1:1")...) // nothing listens on port 1
				took := time.Since(start)
				if code := exitCodeOf(err); code != exitFailure || !strings.Contains(err.Error(), "no Hookbus at nats://127.0.0.1:1") {
					t.Errorf("%s with no server: exit %d (%v), want %d and the no-server hint", path, code, err, exitFailure)
				}
				if took > 5*time.Second {
					t.Errorf("%s with no server took %s to fail, want about %s", path, took.Round(time.Millisecond), cliConnectTimeout)
				}
			})
			// With nothing else, a command lacks something (exit 2) or,
			// lacking nothing, finds no server (exit 1, saying so).
			noServer.Go(func() {
				_, err := runCLI(t, append(args, "--nats-url", "nats://127.0.0.1:1")...)
				if code := exitCodeOf(err); code != exitInvalid && (code != exitFailure || !strings.Contains(err.Error(), "no Hookbus at")) {
					t.Errorf("%s with no arguments: exit %d (%v), want %d, or %d and the no-server hint", path, code, err, exitInvalid, exitFailure)
				}
			})
		case local:
			if _, err := runCLI(t, append(args, la...)...); err != nil {
				t.Errorf("%s: %v, want it to run without a server", path, err)
			}
			if _, err := runCLI(t, args...); exitCodeOf(err) == exitFailure {
				t.Errorf("%s with no arguments: exit %d (%v), want %d or 0", path, exitFailure, err, exitInvalid)
			}
		case !slices.Contains(notRun, path):
			t.Errorf("%s is in no table of TestEveryCommand: add it to serverArgs, localArgs or notRun", path)
		}
	}
	walk(newRootCmd())
	noServer.Wait()
	for _, table := range []map[string][]string{serverArgs, localArgs} {
		for path := range table {
			if !seen[path] {
				t.Errorf("%s is in a table of TestEveryCommand but is no command", path)
			}
		}
	}
}

func isSubset(sub, of []string) bool {
	for _, s := range sub {
		if !slices.Contains(of, s) {
			return false
		}
	}
	return true
}

// exitCodeOf is the exit status main gives err.
func exitCodeOf(err error) int {
	if err == nil {
		return 0
	}
	return exitCode(err)
}
