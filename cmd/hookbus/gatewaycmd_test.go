package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/hookbus/hookbus/internal/natstest"
	"github.com/hookbus/hookbus/pkg/events"
	"github.com/hookbus/hookbus/services/gateway"
)

func TestGatewayTokens(t *testing.T) {
	srv, js := natstest.RunTopology(t)
	url := []string{"--nats-url", srv.ClientURL()}
	cli := func(args ...string) (string, error) {
		t.Helper()
		return runCLI(t, append(args, url...)...)
	}
	kv, err := js.KeyValue(t.Context(), events.BucketGatewayTokens)
	if err != nil {
		t.Fatal(err)
	}
	stored := func(name string) (gateway.Token, bool) {
		t.Helper()
		e, err := kv.Get(t.Context(), name)
		if err != nil {
			return gateway.Token{}, false
		}
		var tok gateway.Token
		if err := json.Unmarshal(e.Value(), &tok); err != nil {
			t.Fatal(err)
		}
		return tok, true
	}

	if out, err := cli("gateway", "token", "list"); err != nil || strings.TrimSpace(out) != "NAME  RATE  CREATED  ALLOW" {
		t.Errorf("list of no tokens: %v %q", err, out)
	}
	if out, err := cli("gateway", "token", "list", "-o", "json"); err != nil || strings.TrimSpace(out) != "[]" {
		t.Errorf("list -o json of no tokens: %v %q", err, out)
	}

	out, err := cli("gateway", "token", "create", "--name", "shop", "--allow", "publish:com.example.order.>,call:com.example.*", "--rate", "50")
	if err != nil {
		t.Fatalf("create: %v\n%s", err, out)
	}
	token := regexp.MustCompile(`hbgw\.shop\.[A-Za-z0-9_-]{43}`).FindString(out)
	if token == "" {
		t.Fatalf("create printed %q: want the token", out)
	}
	rec, ok := stored("shop")
	sum := sha256.Sum256([]byte(token))
	if !ok || rec.SHA256 != hex.EncodeToString(sum[:]) || rec.Rate != 50 || len(rec.Allow) != 2 ||
		rec.Allow[0] != (gateway.Permission{Action: "publish", Pattern: "com.example.order.>"}) ||
		rec.Allow[1] != (gateway.Permission{Action: "call", Pattern: "com.example.*"}) {
		t.Errorf("stored %+v: want the token's SHA-256, its permissions and rate", rec)
	}
	if e, _ := kv.Get(t.Context(), "shop"); strings.Contains(string(e.Value()), token[len("hbgw.shop."):]) {
		t.Errorf("the bucket holds the token: %s", e.Value())
	}

	out, err = cli("gateway", "token", "create", "--name", "ci", "--allow", "publish:>", "-o", "json")
	var created struct{ Token, Name string }
	if err != nil || json.Unmarshal([]byte(out), &created) != nil || !strings.HasPrefix(created.Token, "hbgw.ci.") || created.Name != "ci" {
		t.Errorf("create -o json: %v, %q", err, out)
	}

	// An existing name is refused, and the stored token kept.
	out, err = cli("gateway", "token", "create", "--name", "shop", "--allow", "publish:>")
	if exitCodeOf(err) != exitFailure || !strings.Contains(err.Error(), "conflict") || strings.Contains(out, "hbgw.") {
		t.Errorf("create an existing name: exit %d (%v) %q, want 1 and conflict", exitCodeOf(err), err, out)
	}
	if again, _ := stored("shop"); again.SHA256 != rec.SHA256 {
		t.Error("create of an existing name replaced the token")
	}

	for _, args := range [][]string{
		{"--name", "x", "--allow", "publish:com.>.x"},
		{"--name", "x", "--allow", "publish:com..x"},
		{"--name", "x", "--allow", "delete:>"},
		{"--name", "x", "--allow", "com.example"},
		{"--name", "a.b", "--allow", "publish:>"},
		{"--name", "x", "--allow", "publish:>", "--rate", "-1"},
		{"--name", "x"},
	} {
		out, err := cli(append([]string{"gateway", "token", "create"}, args...)...)
		if exitCodeOf(err) != exitInvalid {
			t.Errorf("create %v: exit %d (%v) %q, want 2", args, exitCodeOf(err), err, out)
		}
	}
	if _, ok := stored("x"); ok {
		t.Error("a refused token was stored")
	}

	out, err = cli("gateway", "token", "list")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || strings.Join(strings.Fields(lines[0]), " ") != "NAME RATE CREATED ALLOW" ||
		!regexp.MustCompile(`^ci +default +\S+ +publish:>$`).MatchString(lines[1]) ||
		!regexp.MustCompile(`^shop +50 +\S+ +publish:com.example.order.>,call:com.example.\*$`).MatchString(lines[2]) {
		t.Errorf("list:\n%s", out)
	}
	jout, err := cli("gateway", "token", "list", "-o", "json")
	var list []map[string]any
	if err != nil || json.Unmarshal([]byte(jout), &list) != nil || len(list) != 2 || list[1]["name"] != "shop" {
		t.Errorf("list -o json: %v %s", err, jout)
	}
	for _, o := range []string{out, jout} {
		if strings.Contains(o, rec.SHA256) || strings.Contains(o, "hbgw.") || strings.Contains(o, "sha256") {
			t.Errorf("list shows a token or its hash:\n%s", o)
		}
	}

	if out, err := cli("gateway", "token", "revoke", "shop"); err != nil || !strings.Contains(out, "revoked") {
		t.Fatalf("revoke: %v %q", err, out)
	}
	if _, ok := stored("shop"); ok {
		t.Error("revoked token still stored")
	}
	_, err = cli("gateway", "token", "revoke", "shop")
	if exitCodeOf(err) != exitFailure || !strings.Contains(err.Error(), "not_found") {
		t.Errorf("revoke a revoked token: exit %d (%v), want 1 and not_found", exitCodeOf(err), err)
	}
	if _, err := cli("gateway", "token", "revoke", "a.b"); exitCodeOf(err) != exitInvalid {
		t.Errorf("revoke a bad name: exit %d (%v), want 2", exitCodeOf(err), err)
	}
	// The name is free again.
	if _, err := cli("gateway", "token", "create", "--name", "shop", "--allow", "publish:>"); err != nil {
		t.Errorf("create after revoke: %v", err)
	}
}
