package events_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/hookbus/hookbus/pkg/events"
)

func TestValidateNode(t *testing.T) {
	cases := []struct {
		node string
		ok   bool
	}{
		{"on_user_authorisation", true},
		{"com.example.order.created", true},
		{"com.example.*.created", true},
		{"com.example.>", true},
		{"*", true},
		{">", true},
		{"", false},
		{"com..created", false},
		{"com.example.>.created", false},
		{"com.ex*mple", false},
		{"com.example. created", false},
		{"com.example.order.", false},
		{strings.Repeat("a", 201), false},
	}
	for _, tc := range cases {
		err := events.ValidateNode(tc.node)
		if (err == nil) != tc.ok {
			t.Errorf("ValidateNode(%q) = %v, want ok %v", tc.node, err, tc.ok)
		}
		if err != nil && !errors.Is(err, events.ErrInvalid) {
			t.Errorf("ValidateNode(%q) = %v, not an ErrInvalid", tc.node, err)
		}
	}
}

func TestHookSpecValidate(t *testing.T) {
	valid := events.HookSpec{ID: strings.Repeat("ab", 16), Node: "blog", Type: events.HookWebhook, Arg: "https://a.example/hook", Persistent: true}
	cases := []struct {
		name string
		edit func(*events.HookSpec)
		want string // "" for valid
	}{
		{"valid", func(*events.HookSpec) {}, ""},
		{"http", func(s *events.HookSpec) { s.Arg = "http://a.example:8080/x?y=1" }, ""},
		{"settings", func(s *events.HookSpec) {
			s.Settings = events.HookSettings{TimeoutMS: 5000, MaxAttempts: 5, Structured: true}
		}, ""},
		{"short id", func(s *events.HookSpec) { s.ID = "abc" }, "id"},
		{"uppercase id", func(s *events.HookSpec) { s.ID = strings.Repeat("AB", 16) }, "id"},
		{"no node", func(s *events.HookSpec) { s.Node = "" }, "node"},
		{"no type", func(s *events.HookSpec) { s.Type = "" }, "type"},
		{"unknown type", func(s *events.HookSpec) { s.Type = "lambda" }, `"lambda": want "webhook", "subject" or "exec"`},
		{"no URL", func(s *events.HookSpec) { s.Arg = "" }, "URL"},
		{"relative URL", func(s *events.HookSpec) { s.Arg = "/hook" }, "http or https"},
		{"no host", func(s *events.HookSpec) { s.Arg = "https:///hook" }, "no host"},
		{"userinfo", func(s *events.HookSpec) { s.Arg = "https://user@a.example/" }, "credentials"},
		{"fragment", func(s *events.HookSpec) { s.Arg = "https://a.example/#x" }, "fragment"},
		{"temporary", func(s *events.HookSpec) { s.Persistent = false }, "temporary"},
		{"timeout too long", func(s *events.HookSpec) { s.Settings.TimeoutMS = 300_001 }, "timeout_ms"},
		{"too many attempts", func(s *events.HookSpec) { s.Settings.MaxAttempts = 101 }, "max_attempts"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := valid
			tc.edit(&s)
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

func TestHookCommandValidate(t *testing.T) {
	spec := events.HookSpec{ID: strings.Repeat("ab", 16), Node: "blog", Type: events.HookWebhook, Arg: "https://a.example/", Persistent: true}
	id := spec.ID
	cases := []struct {
		name string
		op   events.HookOp
		cmd  events.HookCommand
		ok   bool
	}{
		{"create", events.HookCreate, events.HookCommand{Hook: &spec}, true},
		{"create without hook", events.HookCreate, events.HookCommand{ID: id}, false},
		{"create with id too", events.HookCreate, events.HookCommand{Hook: &spec, ID: id}, false},
		{"delete by id", events.HookDelete, events.HookCommand{ID: id}, true},
		{"delete by node", events.HookDelete, events.HookCommand{Match: &events.HookFilter{Node: "blog"}}, true},
		{"delete by match without node", events.HookDelete, events.HookCommand{Match: &events.HookFilter{Arg: "https://a.example/"}}, false},
		{"delete by id and match", events.HookDelete, events.HookCommand{ID: id, Match: &events.HookFilter{Node: "blog"}}, false},
		{"delete with a declaration", events.HookDelete, events.HookCommand{Hook: &spec}, false},
		{"delete with nothing", events.HookDelete, events.HookCommand{}, false},
		{"unknown op", "enable", events.HookCommand{ID: id}, false},
	}
	for _, tc := range cases {
		if err := tc.cmd.Validate(tc.op); (err == nil) != tc.ok {
			t.Errorf("%s: Validate = %v, want ok %v", tc.name, err, tc.ok)
		}
	}
}

func TestHookFilterMatch(t *testing.T) {
	h := events.Hook{HookSpec: events.HookSpec{Node: "blog.*", Type: events.HookWebhook, Arg: "https://a.example/"}}
	cases := []struct {
		f    events.HookFilter
		want bool
	}{
		{events.HookFilter{}, true},
		{events.HookFilter{Node: "blog.*"}, true},
		{events.HookFilter{Node: "blog.post"}, false}, // a node is matched as written
		{events.HookFilter{Node: "blog.*", Type: events.HookWebhook, Arg: "https://a.example/"}, true},
		{events.HookFilter{Node: "blog.*", Arg: "https://b.example/"}, false},
		{events.HookFilter{Type: "exec"}, false},
	}
	for _, tc := range cases {
		if got := tc.f.Match(h); got != tc.want {
			t.Errorf("%+v.Match = %v, want %v", tc.f, got, tc.want)
		}
	}
}

func TestHookSubjects(t *testing.T) {
	id := strings.Repeat("0f", 16)
	if s, err := events.HookCommandSubject(events.HookCreate, id); err != nil || s != "hookbus.cmd.hook.create."+id {
		t.Errorf("create subject = %q, %v", s, err)
	}
	if s, err := events.HookCommandSubject(events.HookDelete, ""); err != nil || s != "hookbus.cmd.hook.delete" {
		t.Errorf("bulk delete subject = %q, %v", s, err)
	}
	if _, err := events.HookCommandSubject(events.HookDelete, "x.>"); err == nil {
		t.Error("a wildcard id made a subject")
	}
	if s, err := events.HookLifecycleSubject(id); err != nil || s != "hookbus.lifecycle.hook."+id {
		t.Errorf("lifecycle subject = %q, %v", s, err)
	}
	if _, err := events.HookLifecycleSubject("*"); err == nil {
		t.Error("a wildcard id made a lifecycle subject")
	}
}

func TestHookFilters(t *testing.T) {
	e := event.New()
	e.SetID("order-42")
	e.SetSource("/shop/eu")
	e.SetType("com.example.order.created")
	e.SetSubject("orders/42")
	e.SetExtension("tenant", "acme-eu")
	e.SetExtension("priority", 3)
	cases := []struct {
		name    string
		filters []events.HookMatch
		want    bool
	}{
		{"none", nil, true},
		{"source exact", []events.HookMatch{{"source", events.MatchExact, "/shop/eu"}}, true},
		{"source exact other", []events.HookMatch{{"source", events.MatchExact, "/shop"}}, false},
		{"source prefix", []events.HookMatch{{"source", events.MatchPrefix, "/shop/"}}, true},
		{"subject suffix", []events.HookMatch{{"subject", events.MatchSuffix, "/42"}}, true},
		{"subject suffix other", []events.HookMatch{{"subject", events.MatchSuffix, "/43"}}, false},
		{"extension prefix", []events.HookMatch{{"tenant", events.MatchPrefix, "acme"}}, true},
		{"extension integer", []events.HookMatch{{"priority", events.MatchExact, "3"}}, true},
		{"missing extension", []events.HookMatch{{"region", events.MatchExact, ""}}, false},
		{"all must match", []events.HookMatch{{"source", events.MatchPrefix, "/shop"}, {"tenant", events.MatchSuffix, "-us"}}, false},
		{"both match", []events.HookMatch{{"source", events.MatchPrefix, "/shop"}, {"tenant", events.MatchSuffix, "-eu"}}, true},
	}
	for _, tc := range cases {
		s := events.HookSpec{Filters: tc.filters}
		if got := s.Matches(&e); got != tc.want {
			t.Errorf("%s: Matches = %v, want %v", tc.name, got, tc.want)
		}
	}

	noSubject := event.New()
	noSubject.SetID("x")
	noSubject.SetSource("/s")
	noSubject.SetType("t")
	if (events.HookSpec{Filters: []events.HookMatch{{"subject", events.MatchPrefix, ""}}}).Matches(&noSubject) {
		t.Error("a filter on subject matched an event without one")
	}

	valid := events.HookSpec{ID: strings.Repeat("ab", 16), Node: "blog", Type: events.HookWebhook, Arg: "https://a.example/", Persistent: true}
	for _, bad := range [][]events.HookMatch{
		{{"Source", events.MatchExact, "x"}},
		{{"", events.MatchExact, "x"}},
		{{"source", "regex", "x"}},
		make([]events.HookMatch, 17),
	} {
		s := valid
		s.Filters = bad
		if err := s.Validate(); !errors.Is(err, events.ErrInvalid) {
			t.Errorf("filters %v: Validate = %v, want invalid", bad, err)
		}
	}
}
