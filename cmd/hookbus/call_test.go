package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/hookbus/hookbus/pkg/events"
)

func TestPrintCallResult(t *testing.T) {
	tests := []struct {
		name string
		res  events.ChainResult
		want []string // lines, spaces collapsed
	}{
		{
			name: "continued",
			res: events.ChainResult{State: json.RawMessage(`{"n":2}`), Trace: []events.TraceStep{
				{Plugin: "a", Outcome: events.OutcomeContinued, DurationMS: 1.234},
				{Plugin: "b", Outcome: events.OutcomeSkipped, DurationMS: 2000, Error: "timeout after\n2s"},
			}},
			want: []string{`state: {"n":2}`, "halted: no", "trace:", "STEP PLUGIN OUTCOME DURATION ERROR",
				"1 a continued 1.23ms", "2 b skipped 2s timeout after 2s"},
		},
		{
			name: "halted",
			res: events.ChainResult{State: json.RawMessage(`{}`), Halted: true, HaltedBy: "acl", Trace: []events.TraceStep{
				{Plugin: "acl", Outcome: events.OutcomeHalted, DurationMS: 0.5},
			}},
			want: []string{"state: {}", "halted: yes, by acl", "trace:", "STEP PLUGIN OUTCOME DURATION ERROR", "1 acl halted 500µs"},
		},
		{
			name: "failed",
			res: events.ChainResult{State: json.RawMessage(`{}`), Error: &events.Error{Code: events.CodePluginFailed, Message: "plugin x: boom"},
				Trace: []events.TraceStep{{Plugin: "x", Outcome: events.OutcomeFailed, Error: "boom"}}},
			want: []string{"state: {}", "halted: no", "failed: plugin_failed: plugin x: boom", "trace:", "STEP PLUGIN OUTCOME DURATION ERROR", "1 x failed 0s boom"},
		},
		{
			name: "no plugins",
			res:  events.ChainResult{},
			want: []string{"state: null", "halted: no", "trace: no running plugin"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := printCallResult(&b, "text", tt.res); err != nil {
				t.Fatal(err)
			}
			var got []string
			for line := range strings.Lines(b.String()) {
				got = append(got, strings.Join(strings.Fields(line), " "))
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("printed:\n%s\nwant (spaces collapsed):\n%s", b.String(), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestCallAndDLQRefuseBadInput(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"call output", []string{"call", "--type", "t", "-o", "yaml"}, `invalid argument "yaml" for "-o, --output" flag: want text or json`},
		{"call data", []string{"call", "--type", "t", "--data", "{"}, "not valid JSON"},
		{"call type", []string{"call", "--type", "a b", "--data", "{}"}, "invalid event: type"},
		{"call private", []string{"call", "--type", "t", "--private", "a,,b"}, "--private"},
		{"replay nothing", []string{"dlq", "replay"}, "give dead-letter sequences"},
		{"replay both", []string{"dlq", "replay", "3", "--subscriber", "s", "--all"}, "give dead-letter sequences"},
		{"replay not a number", []string{"dlq", "replay", "x"}, "not a dead-letter sequence"},
		{"replay the dispatcher's", []string{"dlq", "replay", "--subscriber", "hookbus-dispatcher", "--all"}, "replaying cannot help"},
		{"list output", []string{"dlq", "list", "-o", "table"}, `invalid argument "table" for "-o, --output" flag: want text or json`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := newRootCmd()
			root.SetArgs(append(tt.args, "--nats-url", "nats://127.0.0.1:1"))
			root.SetOut(&bytes.Buffer{})
			err := root.Execute()
			if err == nil || !strings.Contains(err.Error(), tt.want) || exitCode(err) != exitInvalid {
				t.Errorf("error %v (exit %d), want exit %d mentioning %q", err, exitCode(err), exitInvalid, tt.want)
			}
		})
	}
}
