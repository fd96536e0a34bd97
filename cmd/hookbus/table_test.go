package main

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/hookbus/hookbus/pkg/client"
	"github.com/hookbus/hookbus/pkg/events"
)

// Every table reads by eye and by awk: each word of a row starts where
// its header's column starts, but for the words of the last column (which
// may be empty). An empty cell or a cell of two words before it puts a
// word out of its column.
func TestTablesReadByAwk(t *testing.T) {
	e := event.New()
	e.SetType("com.example.order.created")
	e.SetID("an id\twith  spaces")
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var dlq, plugins, trace bytes.Buffer
	if err := printDeadLetters(&dlq, "text", []client.DeadLetter{
		{Seq: 1, Time: at, Subscriber: events.DispatcherConsumer, Reason: "invalid event: id: required"},
		{Seq: 12, Time: at, Subscriber: "mailer", Event: &e, Deliveries: 10, Reason: "smtp:\n 421 try later", Forged: "header names billing"},
	}); err != nil {
		t.Fatal(err)
	}
	if err := printPlugins(&plugins, "text", []events.Plugin{
		{PluginSpec: events.PluginSpec{Name: "acl", Event: "on_user_authorisation", Mode: "chain", Priority: 10}, Status: events.StatusStarted, UpdatedAt: at},
		{PluginSpec: events.PluginSpec{Name: "audit", Event: "on_user_authorisation", Mode: "notify",
			Depends: []events.Dependency{{Name: "acl"}, {Name: "log", Soft: true}}}, Status: events.StatusStopped, UpdatedAt: at},
	}); err != nil {
		t.Fatal(err)
	}
	if err := printCallResult(&trace, "text", events.ChainResult{Trace: []events.TraceStep{
		{Plugin: "a", Outcome: events.OutcomeContinued, DurationMS: 0.5},
		{Plugin: "b", Outcome: events.OutcomeFailed, DurationMS: 2000, Error: "timeout after\n2s"},
	}}); err != nil {
		t.Fatal(err)
	}
	_, traceTable, _ := strings.Cut(trace.String(), "trace:\n")
	config, err := runCLI(t, "config")
	if err != nil {
		t.Fatal(err)
	}
	catalog, err := runCLI(t, "events", "catalog")
	if err != nil {
		t.Fatal(err)
	}
	entry, err := runCLI(t, "events", "catalog", "on_user_authorisation")
	if err != nil {
		t.Fatal(err)
	}
	_, fields, _ := strings.Cut(entry, "\n\n")
	fields, _, _ = strings.Cut(fields, "\n\n")
	for name, table := range map[string]string{
		"dlq list": dlq.String(), "plugin list": plugins.String(), "call's trace": traceTable,
		"config": config, "events catalog": catalog, "events catalog TYPE": fields,
	} {
		lines := strings.Split(strings.TrimRight(table, "\n"), "\n")
		cols := wordStarts(lines[0])
		if len(lines) < 2 || len(cols) < 2 {
			t.Errorf("%s: no table:\n%s", name, table)
			continue
		}
		for _, line := range lines[1:] {
			// The last column may be empty.
			if got := wordStarts(line); len(got) < len(cols)-1 || !slices.Equal(got[:min(len(got), len(cols))], cols[:min(len(got), len(cols))]) {
				t.Errorf("%s: row %q has words at %v, want one at each of %v (then the last column's)", name, line, got, cols)
			}
		}
	}
	if !strings.Contains(dlq.String(), " an_id_with_spaces ") {
		t.Errorf("dlq list: the event id is not one word:\n%s", dlq.String())
	}
}

// wordStarts are the rune offsets where the words of line start.
func wordStarts(line string) []int {
	var starts []int
	space := true
	for i, r := range []rune(line) {
		if r != ' ' && space {
			starts = append(starts, i)
		}
		space = r == ' '
	}
	return starts
}
