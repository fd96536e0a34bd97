//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestAuthCLI drives the persistence service inside `hookbus serve` through
// the CLI: keys set, get, list and delete, credentials set and get with a
// revision, not-found and invalid errors with their exit codes, the
// all-in-one's generated key reused after a restart, and a rotation.
func TestAuthCLI(t *testing.T) {
	dataDir := t.TempDir()
	srv := startServer(t, dataDir)

	// The all-in-one made its key, said so, and serves.
	keyFile := filepath.Join(dataDir, "persistence.key")
	if info, err := os.Stat(keyFile); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("%s: %v, mode %v; want a 0600 key file", keyFile, err, info.Mode().Perm())
	}
	if !strings.Contains(srv.stderr.String(), "persistence key generated") || !strings.Contains(srv.stderr.String(), keyFile) {
		t.Errorf("serve did not log that it generated %s", keyFile)
	}
	if code, body, _ := httpGet(srv.OpsURL + "/readyz"); code != http.StatusOK || !slices.Contains(lines(body), "[+]persistence ok") {
		t.Errorf("GET /readyz: %d %q, want the line \"[+]persistence ok\"", code, body)
	}

	auth := func(t *testing.T, args ...string) string {
		t.Helper()
		stdout, stderr, code := run(t, append(append([]string{"auth"}, args...), "--nats-url", srv.NATSURL)...)
		if code != 0 {
			t.Fatalf("hookbus auth %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, stdout, stderr)
		}
		return stdout
	}
	const (
		tenant = "acme corp/ünïcode"
		jid    = "5511999999999:12@s.whatsapp.net"
	)
	session := []byte("session record \x00\x01\x02")
	preKey := []byte{0xff, 0x00, 0xfe, 0x01}
	preKeyFile := filepath.Join(t.TempDir(), "pre-key.bin")
	if err := os.WriteFile(preKeyFile, preKey, 0o600); err != nil {
		t.Fatal(err)
	}

	// Keys: set from base64 and from a file, get, list, delete.
	auth(t, "keys", "set", "session", jid, "--value", base64.StdEncoding.EncodeToString(session), "--context", tenant)
	auth(t, "keys", "set", "pre-key", "1", "--file", preKeyFile, "--context", tenant)
	if got, want := auth(t, "keys", "get", "session", jid, "--context", tenant), jid+"\t"+base64.StdEncoding.EncodeToString(session)+"\n"; got != want {
		t.Errorf("keys get session: %q, want %q", got, want)
	}
	if got := auth(t, "keys", "get", "pre-key", "1", "-o", "raw", "--context", tenant); got != string(preKey) {
		t.Errorf("keys get pre-key -o raw: %x, want %x", got, preKey)
	}
	if got := auth(t, "keys", "list", "session", "--context", tenant); got != jid+"\n" {
		t.Errorf("keys list session: %q, want %q", got, jid+"\n")
	}
	auth(t, "keys", "delete", "session", jid, "--context", tenant)
	if got := auth(t, "keys", "list", "session", "--context", tenant); got != "" {
		t.Errorf("keys list session after delete: %q, want nothing", got)
	}

	// Credentials: set, get with the revision, a refused stale save.
	credsFile := filepath.Join(t.TempDir(), "creds.json")
	if err := os.WriteFile(credsFile, []byte(`{"me":{"id":"`+jid+`"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := auth(t, "creds", "set", "--file", credsFile, "--context", tenant, "--revision", "0"); !strings.HasPrefix(got, `saved credentials of context "`+tenant+`", revision `) {
		t.Errorf("creds set: %q", got)
	}
	var creds struct {
		Context  string `json:"context"`
		Revision uint64 `json:"revision"`
		Value    []byte `json:"value"`
	}
	decodeJSON(t, "hookbus auth creds get", auth(t, "creds", "get", "-o", "json", "--context", tenant), &creds)
	if creds.Context != tenant || creds.Revision == 0 || string(creds.Value) != `{"me":{"id":"`+jid+`"}}` {
		t.Errorf("creds get -o json: %+v", creds)
	}

	errorCases := []struct {
		name       string
		args       []string
		wantCode   int
		wantStderr []string
	}{
		{"key not found", []string{"keys", "get", "session", jid, "--context", tenant}, 1, []string{"not_found", `session "` + jid + `"`}},
		{"no credentials", []string{"creds", "get", "--context", "nobody"}, 1, []string{"not_found", `context "nobody" has no credentials`}},
		{"contexts are apart", []string{"keys", "get", "pre-key", "1"}, 1, []string{"not_found", `context "default"`}},
		{"stale revision", []string{"creds", "set", "--value", "e30=", "--revision", "0", "--context", tenant}, 1, []string{"conflict", "already has credentials"}},
		{"invalid key type", []string{"keys", "get", "pre key", "1"}, 2, []string{`key type: "pre key"`}},
		{"value not base64", []string{"keys", "set", "session", "x", "--value", "%%%"}, 2, []string{"--value is not base64"}},
	}
	for _, tt := range errorCases {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code := run(t, append(append([]string{"auth"}, tt.args...), "--nats-url", srv.NATSURL)...)
			if code != tt.wantCode {
				t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.wantCode, stdout, stderr)
			}
			for _, s := range tt.wantStderr {
				if !strings.Contains(stderr, s) {
					t.Errorf("stderr %q does not say %q", stderr, s)
				}
			}
		})
	}

	// The generated key is reused after a restart: everything still reads.
	srv.stop(t)
	srv = startServer(t, dataDir)
	if !strings.Contains(srv.stderr.String(), "persistence key loaded") {
		t.Errorf("serve did not log that it loaded %s", keyFile)
	}
	if got := auth(t, "keys", "get", "pre-key", "1", "-o", "raw", "--context", tenant); got != string(preKey) {
		t.Errorf("pre-key after a restart: %x, want %x", got, preKey)
	}
	if got := auth(t, "rotate"); !strings.Contains(got, "every value is encrypted with key") {
		t.Errorf("auth rotate: %q", got)
	}

	t.Run("refuses to start", func(t *testing.T) {
		stdout, _, code := run(t, "auth", "keygen")
		otherKey := strings.TrimSpace(stdout)
		if code != 0 || len(otherKey) != 44 {
			t.Fatalf("auth keygen: exit %d, %q", code, stdout)
		}
		tests := []struct {
			name string
			env  []string
			want string
		}{
			{"external NATS without a key", nil, "with an external NATS (HOOKBUS_NATS_URL) set HOOKBUS_PERSISTENCE_KEY"},
			{"the wrong key", []string{"HOOKBUS_PERSISTENCE_KEY=" + otherKey}, "service persistence: key check failed: bucket hookbus_auth holds values encrypted with key id(s)"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				stderr, code := runServeWithEnv(t, tt.env, "serve", "persistence",
					"--nats-url", srv.NATSURL, "--ops-addr", freeAddr(t), "--data-dir", t.TempDir())
				if code != 1 || !strings.Contains(stderr, tt.want) {
					t.Errorf("exit %d, stderr:\n%s\nwant exit 1 saying %q", code, stderr, tt.want)
				}
				if strings.Contains(stderr, otherKey) {
					t.Error("stderr shows the key")
				}
			})
		}
	})
	srv.stop(t)
}

// runServeWithEnv runs the binary with the clean environment plus env,
// until it exits (a refused start exits at once), and returns its stderr
// and exit status.
func runServeWithEnv(t *testing.T, env []string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), runTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = append(cleanEnv(), env...)
	cmd.Dir = t.TempDir()
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("hookbus %s: still running after %s (it should have refused to start)\n%s", strings.Join(args, " "), runTimeout, &stderr)
	}
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatal(err)
	}
	if exit != nil {
		return stderr.String(), exit.ExitCode()
	}
	return stderr.String(), 0
}
