package main

import (
	"os"
	"strings"
	"testing"
)

// The plugin worker user in the Kubernetes manifests is what `hookbus
// plugin credentials example --password-env NATS_PLUGIN_EXAMPLE_PASSWORD`
// prints: the documented way to make one is the way the example was made.
func TestExampleWorkerUserIsWhatCredentialsPrints(t *testing.T) {
	b, err := os.ReadFile("../../deployments/k8s/base/nats/accounts.conf")
	if err != nil {
		t.Fatal(err)
	}
	w, err := newWorkerUser("", []string{"example"}, []string{"com.example.>"})
	if err != nil {
		t.Fatal(err)
	}
	var want strings.Builder
	for line := range strings.Lines(w.conf("$NATS_PLUGIN_EXAMPLE_PASSWORD")) {
		want.WriteString("      " + line)
	}
	if !strings.Contains(string(b), want.String()) {
		t.Errorf("accounts.conf has no block equal to the credentials command's output; want:\n%s", want.String())
	}
}

func TestWorkerUserNames(t *testing.T) {
	w, err := newWorkerUser("", []string{"acl", "audit", "acl"}, []string{"on_user_authorisation"})
	if err != nil {
		t.Fatal(err)
	}
	if w.User != "plugin-acl" || strings.Join(w.Plugins, ",") != "acl,audit" {
		t.Errorf("got %+v", w)
	}
	conf := w.conf("$P")
	for _, s := range []string{`"hookbus.cmd.plugin.*.acl"`, `"hookbus.cmd.plugin.*.audit"`, `"hookbus.cmd.plugin.register.audit.on_user_authorisation"`, `"hookbus.plugin.audit.call audit"`, `"_INBOX.plugin-acl.>"`} {
		if !strings.Contains(conf, s) {
			t.Errorf("conf lacks %s", s)
		}
	}
	for _, bad := range [][]string{{"a.b"}, {"*"}, {">"}, {"a b"}} {
		if _, err := newWorkerUser("", bad, nil); err == nil {
			t.Errorf("names %q accepted", bad)
		}
	}
	if _, err := newWorkerUser("u.x", []string{"a"}, nil); err == nil {
		t.Error("user u.x accepted")
	}
	for _, bad := range []string{"*", ">", "com.*.x", "a..b", "com.example.>.x"} {
		if _, err := newWorkerUser("", []string{"a"}, []string{bad}); err == nil {
			t.Errorf("event %q accepted", bad)
		}
	}
}
