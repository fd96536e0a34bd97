package events_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/hookbus/hookbus/pkg/events"
)

// The arg of each hook type: what a subject hook may publish to and which
// program paths an exec hook may name.
func TestHookTypeArgs(t *testing.T) {
	cases := []struct {
		name string
		typ  events.HookType
		arg  string
		want string // "" for valid, else a part of the error
	}{
		{"subject", events.HookSubject, "hooks.orders", ""},
		{"subject one token", events.HookSubject, "orders", ""},
		{"subject punctuation", events.HookSubject, "legacy.ORDERS_v2.a-b.c:d", ""},
		{"subject empty", events.HookSubject, "", "needs the NATS subject"},
		{"subject empty token", events.HookSubject, "hooks..orders", "empty token"},
		{"subject leading dot", events.HookSubject, ".hooks", "empty token"},
		{"subject trailing dot", events.HookSubject, "hooks.", "empty token"},
		{"subject star", events.HookSubject, "hooks.*", "wildcard"},
		{"subject gt", events.HookSubject, "hooks.>", "wildcard"},
		{"subject star in token", events.HookSubject, "hooks.a*b", "wildcard"},
		{"subject space", events.HookSubject, "hooks.a b", "space"},
		{"subject tab", events.HookSubject, "hooks.a\tb", "space"},
		{"subject non-ASCII", events.HookSubject, "hooks.é", "non-ASCII"},
		{"subject bus event", events.HookSubject, "hookbus.event.com.example.x", "the bus's own subjects"},
		{"subject bus command", events.HookSubject, "hookbus.cmd.hook.create.x", "reserved"},
		{"subject bus answer", events.HookSubject, "hookbus.answer.hook.x", "reserved"},
		{"subject bus root", events.HookSubject, "hookbus", "reserved"},
		{"subject JetStream API", events.HookSubject, "$JS.API.STREAM.DELETE.HOOKBUS_EVENTS", "NATS server's APIs"},
		{"subject KV", events.HookSubject, "$KV.hookbus_hooks.x", "reserved"},
		{"subject object store", events.HookSubject, "$O.store.x", "reserved"},
		{"subject system", events.HookSubject, "$SYS.REQ.SERVER.PING", "reserved"},
		{"subject MQTT", events.HookSubject, "$MQTT.sess.x", "reserved"},
		{"subject other dollar", events.HookSubject, "$SRV.PING", "reserved"},
		{"subject inbox", events.HookSubject, "_INBOX.abc", "inboxes"},
		{"subject hookbus-like but other", events.HookSubject, "hookbusx.orders", ""},
		{"exec", events.HookExec, "notify.sh", ""},
		{"exec nested", events.HookExec, "shop/orders/notify", ""},
		{"exec empty", events.HookExec, "", "needs the path"},
		{"exec parent", events.HookExec, "../x", `".." element`},
		{"exec parent inside", events.HookExec, "a/../../x", `".." element`},
		{"exec parent at end", events.HookExec, "a/..", `".." element`},
		{"exec dot", events.HookExec, "./x", `"." element`},
		{"exec absolute", events.HookExec, "/usr/bin/env", "absolute"},
		{"exec empty element", events.HookExec, "a//b", "empty path element"},
		{"exec trailing slash", events.HookExec, "a/", "empty path element"},
		{"exec backslash", events.HookExec, `a\..\b`, "backslash"},
		{"exec newline", events.HookExec, "a\nb", "control character"},
		{"exec too long", events.HookExec, strings.Repeat("a", 2049), "limit is 2048"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := events.HookSpec{ID: strings.Repeat("ab", 16), Node: "blog", Type: tc.typ, Arg: tc.arg, Persistent: true}
			err := s.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Validate = %v, want valid", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, events.ErrInvalid)):
				t.Errorf("Validate = %v, want invalid mentioning %q", err, tc.want)
			}
		})
	}
}

// Structured mode is a webhook's.
func TestHookStructuredIsForWebhooks(t *testing.T) {
	s := events.HookSpec{ID: strings.Repeat("ab", 16), Node: "blog", Type: events.HookSubject, Arg: "hooks.blog", Persistent: true,
		Settings: events.HookSettings{Structured: true}}
	if err := s.Validate(); err == nil || !strings.Contains(err.Error(), "settings.structured") {
		t.Errorf("structured subject hook: %v, want invalid settings.structured", err)
	}
}

// Listing and bulk deletes by type know every type.
func TestHookFilterTypes(t *testing.T) {
	for _, typ := range []events.HookType{events.HookWebhook, events.HookSubject, events.HookExec} {
		if err := (events.HookFilter{Type: typ}).Validate(); err != nil {
			t.Errorf("filter type %q: %v", typ, err)
		}
	}
	if err := (events.HookFilter{Type: "shell"}).Validate(); err == nil || !strings.Contains(err.Error(), `want "webhook", "subject" or "exec"`) {
		t.Errorf("filter type shell: %v, want the types listed", err)
	}
}
