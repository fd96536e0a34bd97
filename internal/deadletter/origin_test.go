package deadletter_test

import (
	"testing"

	"github.com/hookbus/hookbus/internal/deadletter"
)

// Subjects match filters as NATS matches them: * one token, a last >
// one or more.
func TestSubjectMatches(t *testing.T) {
	for _, c := range []struct {
		filter, subject string
		want            bool
	}{
		{"hookbus.event.a.b", "hookbus.event.a.b", true},
		{"hookbus.event.a.b", "hookbus.event.a.c", false},
		{"hookbus.event.a.b", "hookbus.event.a.b.c", false},
		{"hookbus.event.a.b", "hookbus.event.a", false},
		{"hookbus.event.*.b", "hookbus.event.x.b", true},
		{"hookbus.event.*.b", "hookbus.event.x.y.b", false},
		{"hookbus.event.*", "hookbus.event", false},
		{"hookbus.event.a.>", "hookbus.event.a.b", true},
		{"hookbus.event.a.>", "hookbus.event.a.b.c", true},
		{"hookbus.event.a.>", "hookbus.event.a", false},
		{"hookbus.event.>", "hookbus.replay.x", false},
		{"hookbus.event.*.>", "hookbus.event.a", false},
		{"hookbus.event.*.>", "hookbus.event.a.b", true},
		{"hookbus.event.a.*", "hookbus.event.a.", false},
	} {
		if got := deadletter.SubjectMatches(c.filter, c.subject); got != c.want {
			t.Errorf("SubjectMatches(%q, %q) = %v, want %v", c.filter, c.subject, got, c.want)
		}
	}
}

// The original of a dead letter by reference is on the subject it
// records, and one its subscriber takes: under its filter, or its own
// replay subject.
func TestCheckReplayOrigin(t *testing.T) {
	for _, c := range []struct {
		subscriber, filter, recorded, actual string
		ok                                   bool
	}{
		{"n", "hookbus.event.t", "hookbus.event.t", "hookbus.event.t", true},
		{"n", "hookbus.event.t", "hookbus.replay.n", "hookbus.replay.n", true},
		{"n", "", "hookbus.replay.n", "hookbus.replay.n", true},
		{"n", "hookbus.event.t", "hookbus.replay.other", "hookbus.replay.other", false},
		{"n", "hookbus.event.t", "hookbus.event.t", "hookbus.event.u", false},
		{"n", "hookbus.event.t", "hookbus.event.u", "hookbus.event.u", false},
		{"hook-x", "hookbus.event.com.*.created", "hookbus.event.com.a.created", "hookbus.event.com.a.created", true},
		{"hook-x", "hookbus.event.com.>", "hookbus.event.com", "hookbus.event.com", false},
		{"hook-x", "hookbus.event.com.>", "hookbus.event.org.a", "hookbus.event.org.a", false},
		{"hook-x", "", "hookbus.event.t", "hookbus.event.t", false},
	} {
		err := deadletter.CheckReplayOrigin(c.subscriber, c.filter, c.recorded, c.actual)
		if (err == nil) != c.ok {
			t.Errorf("CheckReplayOrigin(%q, %q, %q, %q) = %v, want ok %v", c.subscriber, c.filter, c.recorded, c.actual, err, c.ok)
		}
	}
}
