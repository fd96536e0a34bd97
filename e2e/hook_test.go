//go:build e2e

package e2e

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookbus/hookbus/pkg/events"
)

// TestHookCLI drives the seed's three commands (Libervia's pubsub hook
// create, list, delete) through `hookbus serve`: create with the secret
// shown once, list as a table and as JSON without secrets, delete one by
// node, type and arg, delete every hook on a node with the count, and
// hooks that survive a restart.
func TestHookCLI(t *testing.T) {
	dataDir := t.TempDir()
	srv := startServer(t, dataDir)
	hook := func(t *testing.T, args ...string) string {
		t.Helper()
		stdout, stderr, code := run(t, append([]string{"hook"}, append(args, "--nats-url", srv.NATSURL)...)...)
		if code != 0 {
			t.Fatalf("hookbus hook %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, stdout, stderr)
		}
		return stdout
	}
	const node = "urn.xmpp.microblog.0"

	out := hook(t, "create", "-n", node, "-t", "webhook", "--persistent", "https://a.example/neat")
	if !strings.Contains(out, "secret: whsec_") || !strings.Contains(out, node) {
		t.Errorf("create printed:\n%s\nwant the hook and its secret", out)
	}
	var created events.Hook
	decodeJSON(t, "hook create", hook(t, "create", "-n", node, "-t", "webhook", "-P", "https://a.example/other", "-o", "json"), &created)
	if !strings.HasPrefix(created.Secret, "whsec_") || created.Status != events.HookActive {
		t.Errorf("create -o json = %+v, want an active hook with its secret", created)
	}
	hook(t, "create", "-n", "news.>", "-t", "webhook", "-P", "--filter", "source=prefix:/eu/", "https://a.example/neat")
	_, stderr, code := run(t, "hook", "create", "-n", "news", "-P", "--filter", "source~/eu", "https://a.example/", "--nats-url", srv.NATSURL)
	if code != 2 || !strings.Contains(stderr, "ATTR=OP:VALUE") {
		t.Errorf("create with a bad filter: exit %d, stderr %q; want 2 and the form", code, stderr)
	}

	table := hook(t, "list")
	if lines := strings.Split(strings.TrimSpace(table), "\n"); len(lines) != 4 || !strings.HasPrefix(lines[0], "ID") {
		t.Errorf("list table:\n%s\nwant a header and 3 hooks", table)
	}
	if strings.Contains(table, "whsec_") {
		t.Errorf("list table shows a secret:\n%s", table)
	}
	var listed []events.Hook
	js := hook(t, "list", "-n", node, "-o", "json")
	decodeJSON(t, "hook list", js, &listed)
	if len(listed) != 2 || strings.Contains(js, "whsec_") || strings.Contains(js, `"secret"`) {
		t.Errorf("list -n %s -o json:\n%s\nwant its 2 hooks, no secret", node, js)
	}

	// Invalid input: exit 2, the field named.
	_, stderr, code = run(t, "hook", "create", "-n", "a..b", "-P", "https://a.example/", "--nats-url", srv.NATSURL)
	if code != 2 || !strings.Contains(stderr, "node") {
		t.Errorf("create on a bad node: exit %d, stderr %q; want 2 naming the node", code, stderr)
	}

	if out := hook(t, "delete", "-n", node, "-t", "webhook", "https://a.example/neat"); strings.TrimSpace(out) != "1 hook deleted" {
		t.Errorf("delete one: %q, want 1 hook deleted", out)
	}

	// A restart keeps what is left.
	srv.stop(t)
	srv = startServer(t, dataDir)
	decodeJSON(t, "hook list", hook(t, "list", "-o", "json"), &listed)
	if len(listed) != 2 || listed[0].Node != "news.>" || listed[1].ID != created.ID ||
		len(listed[0].Filters) != 1 || listed[0].Filters[0] != (events.HookMatch{Attr: "source", Op: events.MatchPrefix, Value: "/eu/"}) {
		t.Errorf("hooks after restart = %+v, want %s and the one on news.>", listed, created.ID)
	}

	// Rotate: a new secret shown once, the old one signing for the overlap.
	out = hook(t, "rotate-secret", "--overlap", "1h", created.ID)
	if !strings.Contains(out, "secret: whsec_") || strings.Contains(out, created.Secret) || !strings.Contains(out, "previous secret signs too until") {
		t.Errorf("rotate-secret printed:\n%s\nwant a new secret and the end of the overlap", out)
	}
	_, stderr, code = run(t, "hook", "rotate-secret", "--overlap", "200h", created.ID, "--nats-url", srv.NATSURL)
	if code != 2 || !strings.Contains(stderr, "overlap_seconds") {
		t.Errorf("rotate-secret with an overlap over 7 days: exit %d, stderr %q; want 2 naming the overlap", code, stderr)
	}

	hook(t, "create", "-n", node, "-t", "webhook", "-P", "https://b.example/")
	if out := hook(t, "delete", "-n", node); strings.TrimSpace(out) != "2 hooks deleted" {
		t.Errorf("delete all on %s: %q, want 2 hooks deleted", node, out)
	}
	if out := hook(t, "delete", "-n", node); strings.TrimSpace(out) != "0 hooks deleted" {
		t.Errorf("delete all again: %q, want 0 hooks deleted", out)
	}
	_, stderr, code = run(t, "hook", "delete", created.ID, "--nats-url", srv.NATSURL)
	if code != 1 || !strings.Contains(stderr, "not_found") {
		t.Errorf("delete a deleted hook by id: exit %d, stderr %q; want 1 and not_found", code, stderr)
	}
	srv.stop(t)
}

// A persistent webhook hook through `hookbus serve`: signed deliveries to
// a local receiver (allowed with --webhook-allow), and an event published
// while the receiver is down delivered after a restart of the bus, once
// the receiver is back.
func TestHookWebhookSurvivesARestart(t *testing.T) {
	var status atomic.Int32
	status.Store(http.StatusOK)
	type got struct{ id, sig, wid, ts, body string }
	received := make(chan got, 100)
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		code := int(status.Load())
		if code < 300 {
			received <- got{r.Header.Get("Ce-Id"), r.Header.Get("webhook-signature"), r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp"), string(b)}
		}
		w.WriteHeader(code)
	}))
	defer receiver.Close()

	dataDir := t.TempDir()
	allow := []string{"--webhook-allow", "127.0.0.0/8"}
	srv := startServer(t, dataDir, allow...)
	stdout, stderr, code := run(t, "hook", "create", "-n", "e2e.hook.order", "-P", receiver.URL, "-o", "json", "--nats-url", srv.NATSURL)
	if code != 0 {
		t.Fatalf("hook create: exit %d\n%s\n%s", code, stdout, stderr)
	}
	var h events.Hook
	decodeJSON(t, "hook create", stdout, &h)
	publish := func(id string) {
		t.Helper()
		if stdout, stderr, code := run(t, "publish", "--nats-url", srv.NATSURL, "--type", "e2e.hook.order", "--source", "/e2e", "--id", id, "--data", `{"n":1}`); code != 0 {
			t.Fatalf("publish %s: exit %d\n%s\n%s", id, code, stdout, stderr)
		}
	}
	signedBy := func(g got, secret string) bool {
		key, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
		mac := hmac.New(sha256.New, key)
		mac.Write([]byte(g.wid + "." + g.ts + "." + g.body))
		return slices.Contains(strings.Fields(g.sig), "v1,"+base64.StdEncoding.EncodeToString(mac.Sum(nil)))
	}
	// next checks that the next delivery is event want, and that each of
	// secrets signs it (one of the space-separated v1 signatures).
	next := func(want string, secrets ...string) got {
		t.Helper()
		select {
		case g := <-received:
			if g.id != want {
				t.Errorf("received %+v, want event %s", g, want)
			}
			for _, secret := range secrets {
				if !signedBy(g, secret) {
					t.Errorf("event %s: signature %q, not signed by secret %s...", want, g.sig, secret[:10])
				}
			}
			return g
		case <-time.After(30 * time.Second):
			t.Fatalf("event %s not delivered", want)
			return got{}
		}
	}
	publish("first")
	next("first", h.Secret)

	// A rotation reaches the running hook: both secrets sign.
	stdout, stderr, code = run(t, "hook", "rotate-secret", h.ID, "-o", "json", "--nats-url", srv.NATSURL)
	if code != 0 {
		t.Fatalf("hook rotate-secret: exit %d\n%s\n%s", code, stdout, stderr)
	}
	var rotated events.Hook
	decodeJSON(t, "hook rotate-secret", stdout, &rotated)
	// The dispatcher learns of it through its bucket watch, a moment
	// after the answer: events until then carry the old signature alone.
	for i := 1; ; i++ {
		id := fmt.Sprintf("rotated-%d", i)
		publish(id)
		if g := next(id, h.Secret); signedBy(g, rotated.Secret) {
			break
		}
		if i == 20 {
			t.Fatal("20 events after the rotation, none signed by the new secret")
		}
	}

	status.Store(http.StatusServiceUnavailable) // the receiver goes down
	publish("while-down")
	srv.stop(t)
	srv = startServer(t, dataDir, allow...)
	status.Store(http.StatusOK) // and comes back
	next("while-down", h.Secret, rotated.Secret)
	srv.stop(t)
}
