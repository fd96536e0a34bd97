package events_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

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
		{"temporary", func(s *events.HookSpec) { s.Persistent = false; s.Session = strings.Repeat("cd", 16) }, ""},
		{"temporary without a session", func(s *events.HookSpec) { s.Persistent = false }, "session"},
		{"temporary with a bad session", func(s *events.HookSpec) { s.Persistent = false; s.Session = "x" }, "session"},
		{"persistent with a session", func(s *events.HookSpec) { s.Session = strings.Repeat("cd", 16) }, "session"},
		{"timeout too long", func(s *events.HookSpec) { s.Settings.TimeoutMS = 300_001 }, "timeout_ms"},
		{"too many attempts", func(s *events.HookSpec) { s.Settings.MaxAttempts = 101 }, "max_attempts"},
		{"rate", func(s *events.HookSpec) { s.Settings.Rate = 0.5 }, ""},
		{"negative rate", func(s *events.HookSpec) { s.Settings.Rate = -1 }, "settings.rate"},
		{"rate too high", func(s *events.HookSpec) { s.Settings.Rate = events.MaxHookRate + 1 }, "settings.rate"},
		{"NaN rate", func(s *events.HookSpec) { s.Settings.Rate = math.NaN() }, "settings.rate"},
		{"rate too low", func(s *events.HookSpec) { s.Settings.Rate = 1e-300 }, "settings.rate"},
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
		{"rotate", events.HookRotate, events.HookCommand{ID: id}, true},
		{"rotate with overlap 0", events.HookRotate, events.HookCommand{ID: id, OverlapSeconds: ptr(int64(0))}, true},
		{"rotate with overlap 7 days", events.HookRotate, events.HookCommand{ID: id, OverlapSeconds: ptr(int64(7 * 24 * 3600))}, true},
		{"rotate with overlap over 7 days", events.HookRotate, events.HookCommand{ID: id, OverlapSeconds: ptr(int64(7*24*3600 + 1))}, false},
		{"rotate with a negative overlap", events.HookRotate, events.HookCommand{ID: id, OverlapSeconds: ptr(int64(-1))}, false},
		{"rotate without id", events.HookRotate, events.HookCommand{}, false},
		{"rotate with a match", events.HookRotate, events.HookCommand{ID: id, Match: &events.HookFilter{Node: "blog"}}, false},
		{"delete with an overlap", events.HookDelete, events.HookCommand{ID: id, OverlapSeconds: ptr(int64(1))}, false},
		{"rotate with a reason", events.HookRotate, events.HookCommand{ID: id, Reason: "x"}, false},
		{"disable", events.HookDisable, events.HookCommand{ID: id, Reason: "failing since noon"}, true},
		{"disable without id", events.HookDisable, events.HookCommand{Reason: "x"}, false},
		{"disable with a match", events.HookDisable, events.HookCommand{ID: id, Match: &events.HookFilter{Node: "blog"}}, false},
		{"disable with a long reason", events.HookDisable, events.HookCommand{ID: id, Reason: strings.Repeat("x", 1025)}, false},
		{"enable", events.HookEnable, events.HookCommand{ID: id}, true},
		{"enable with a reason", events.HookEnable, events.HookCommand{ID: id, Reason: "x"}, false},
		{"enable a bad id", events.HookEnable, events.HookCommand{ID: "abc"}, false},
		{"create with a reason", events.HookCreate, events.HookCommand{Hook: &spec, Reason: "x"}, false},
		{"unknown op", "pause", events.HookCommand{ID: id}, false},
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

// A hook's dead-letter subscriber hook-<id> names the hook; its replays
// have their own consumer, replay-hook-<id>.
func TestHookOfSubscriber(t *testing.T) {
	id := strings.Repeat("0f", 16)
	if got, ok := events.HookOfSubscriber(events.HookConsumer(id)); !ok || got != id {
		t.Errorf("HookOfSubscriber(hook-%s) = %q, %v", id, got, ok)
	}
	for _, sub := range []string{"n", "hook-", "hook-x", "hook-" + strings.ToUpper(id), "replay-hook-" + id, "hookbus-dispatcher"} {
		if got, ok := events.HookOfSubscriber(sub); ok {
			t.Errorf("HookOfSubscriber(%q) = %q, want no hook", sub, got)
		}
	}
	if got := events.HookReplayConsumer(id); got != "replay-hook-"+id {
		t.Errorf("HookReplayConsumer = %q", got)
	}
	h := events.Hook{HookSpec: events.HookSpec{ID: id, Node: "a", Type: events.HookWebhook}}
	if !(events.HookFilter{ID: id}).Match(h) || (events.HookFilter{ID: strings.Repeat("1", 32)}).Match(h) {
		t.Error("HookFilter.ID does not select by id")
	}
	if err := (events.HookFilter{ID: "x"}).Validate(); err == nil {
		t.Error("HookFilter with an invalid id validated")
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

func ptr[T any](v T) *T { return &v }

// FuzzHookCommand: any command data, decoded as the registry decodes it,
// validates or not without panicking; a valid command keeps the limits
// the registry relies on.
func FuzzHookCommand(f *testing.F) {
	id := strings.Repeat("ab", 16)
	for _, seed := range []string{
		`{"hook":{"id":"` + id + `","node":"blog.*","type":"webhook","arg":"https://a.example/","persistent":false,"session":"` + id + `"}}`,
		`{"id":"` + id + `","overlap_seconds":86400}`,
		`{"id":"` + id + `","overlap_seconds":-1}`,
		`{"match":{"node":"blog","type":"webhook"}}`,
		`{"id":"` + id + `","overlap_seconds":99999999999999999}`,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data string) {
		var cmd events.HookCommand
		dec := json.NewDecoder(strings.NewReader(data))
		dec.DisallowUnknownFields()
		if dec.Decode(&cmd) != nil {
			return
		}
		for _, op := range []events.HookOp{events.HookCreate, events.HookDelete, events.HookRotate} {
			if cmd.Validate(op) != nil {
				continue
			}
			switch op {
			case events.HookRotate:
				if d := cmd.Overlap(); d < 0 || d > events.MaxSecretOverlap {
					t.Errorf("valid rotate with overlap %s", d)
				}
			case events.HookCreate:
				if h := cmd.Hook; h.Persistent == (h.Session != "") {
					t.Errorf("valid create: persistent %v with session %q", h.Persistent, h.Session)
				}
			}
		}
	})
}

func TestHookStateRecord(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var st events.HookState
	fail := func(i int) events.HookAttempt {
		return events.HookAttempt{Time: t0.Add(time.Duration(i) * time.Second), Status: "503", Error: fmt.Sprintf("down %d", i)}
	}
	st.Record(fail(0))
	st.Record(fail(1))
	if !st.FailingSince.Equal(t0) || st.LastError != "down 1" {
		t.Fatalf("after two failures: failing since %v, last error %q; want %v, %q", st.FailingSince, st.LastError, t0, "down 1")
	}
	h := events.Hook{Status: events.HookActive}
	if got := events.HookStatusOf(h, st); got != events.HookFailing {
		t.Errorf("status = %s, want failing", got)
	}
	h.Enabled = t0.Add(2 * time.Second)
	if got := events.HookStatusOf(h, st); got != events.HookActive {
		t.Errorf("status after an enable later than the failures = %s, want active", got)
	}
	st.Record(events.HookAttempt{Time: t0.Add(3 * time.Second), Status: "200", OK: true})
	if !st.FailingSince.IsZero() || !st.LastDelivery.Equal(t0.Add(3*time.Second)) || st.LastError != "down 1" {
		t.Fatalf("after a success: %+v", st)
	}
	for i := range 30 {
		st.Record(fail(10 + i))
	}
	if len(st.Attempts) != events.HookAttemptsKept || st.Attempts[0].Error != "down 39" || st.Attempts[19].Error != "down 20" {
		t.Errorf("attempts: %d kept, newest %q, oldest %q; want %d, newest first", len(st.Attempts), st.Attempts[0].Error, st.Attempts[len(st.Attempts)-1].Error, events.HookAttemptsKept)
	}
	if !st.FailingSince.Equal(t0.Add(10 * time.Second)) {
		t.Errorf("failing since %v, want the first failure after the success", st.FailingSince)
	}
	h.Status = events.HookDisabled
	if got := events.HookStatusOf(h, st); got != events.HookDisabled {
		t.Errorf("status = %s, want disabled", got)
	}
}

// The delivery state, a listed hook and the disable command keep their
// wire form (docs/protocol.md, "Delivery state" and "Hook queries").
func TestHookStateWire(t *testing.T) {
	t0 := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	id := strings.Repeat("3f", 16)
	var st events.HookState
	st.ID = id
	st.Record(events.HookAttempt{Time: t0, Status: "200", OK: true, DurationMS: 3.25})
	st.Record(events.HookAttempt{Time: t0.Add(time.Minute), Status: "503", DurationMS: 12.5, Error: "hook " + id + ": 503 Service Unavailable: busy"})
	pending := uint64(7)
	h := events.Hook{
		HookSpec: events.HookSpec{ID: id, Node: "com.example.order.created", Type: events.HookWebhook, Arg: "https://shop.example/hooks/orders", Persistent: true,
			Settings: events.HookSettings{Rate: 0.5}},
		Created: t0.Add(-time.Hour), Status: events.HookDisabled, Disabled: t0.Add(2 * time.Minute), DisabledReason: "failing since 2026-11-28T12:01:00Z (longer than 1s): 503",
		HookListing: events.HookListing{Service: events.StreamEvents, Pending: &pending, LastDelivery: st.LastDelivery, LastError: st.LastError},
	}
	for name, v := range map[string]any{
		"hook/state.json":   st,
		"hook/listed.json":  h,
		"hook/disable.json": events.HookCommand{ID: id, Reason: h.DisabledReason},
	} {
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		checkGolden(t, name, append(b, '\n'))
	}
}
