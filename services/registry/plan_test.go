package registry

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hookbus/hookbus/pkg/events"
)

var t0 = time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)

// p builds a plugin state: "name:event:status" plus hard deps "a" and soft
// deps "~b".
func p(spec string, deps ...string) events.Plugin {
	parts := strings.Split(spec, ":")
	pl := events.Plugin{PluginSpec: events.PluginSpec{Name: parts[0], Event: parts[1], Mode: events.ModeChain, Settings: events.Settings{}.WithDefaults()}, Status: events.Status(parts[2]), CreatedAt: t0}
	for _, d := range deps {
		name, soft := strings.CutPrefix(d, "~")
		pl.Depends = append(pl.Depends, events.Dependency{Name: name, Soft: soft})
	}
	return pl
}

func state(ps ...events.Plugin) map[string]events.Plugin {
	m := map[string]events.Plugin{}
	for _, x := range ps {
		m[x.Name] = x
	}
	return m
}

func spec(name, event string, deps ...string) *events.PluginSpec {
	s := p(name+":"+event+":registered", deps...).PluginSpec
	return &s
}

// statuses renders the resulting statuses as "a=started b=held", sorted.
func statuses(cur map[string]events.Plugin, out outcome) string {
	next := map[string]events.Plugin{}
	maps.Copy(next, cur)
	for _, c := range out.changes {
		if c.after == nil {
			delete(next, c.name)
		} else {
			next[c.name] = *c.after
		}
	}
	var parts []string
	for _, n := range slices.Sorted(maps.Keys(next)) {
		parts = append(parts, n+"="+string(next[n].Status))
	}
	return strings.Join(parts, " ")
}

func TestPlanRules(t *testing.T) {
	tests := []struct {
		name     string
		cur      map[string]events.Plugin
		op       events.PluginOp
		cmd      events.PluginCommand
		want     string // resulting statuses
		wantCode events.ErrorCode
	}{
		// register
		{name: "register new without dependencies is registered", op: events.OpRegister,
			cmd: events.PluginCommand{Plugin: spec("a", "e")}, want: "a=registered"},
		{name: "register new with a missing hard dependency is held", op: events.OpRegister,
			cmd: events.PluginCommand{Plugin: spec("b", "e", "a")}, want: "b=held"},
		{name: "register new with a stopped hard dependency is held", cur: state(p("a:e:stopped")), op: events.OpRegister,
			cmd: events.PluginCommand{Plugin: spec("b", "e", "a")}, want: "a=stopped b=held"},
		{name: "register new with a running hard dependency is registered", cur: state(p("a:e:started")), op: events.OpRegister,
			cmd: events.PluginCommand{Plugin: spec("b", "e", "a")}, want: "a=started b=registered"},
		{name: "register new with a missing soft dependency is registered", op: events.OpRegister,
			cmd: events.PluginCommand{Plugin: spec("b", "e", "~a")}, want: "b=registered"},
		{name: "register is an upsert that keeps a running status", cur: state(p("a:e:started")), op: events.OpRegister,
			cmd: events.PluginCommand{Plugin: spec("a", "other")}, want: "a=started"},
		{name: "register keeps stopped", cur: state(p("a:e:stopped")), op: events.OpRegister,
			cmd: events.PluginCommand{Plugin: spec("a", "e")}, want: "a=stopped"},
		{name: "re-register adding a missing hard dependency holds a running plugin", cur: state(p("a:e:started")), op: events.OpRegister,
			cmd: events.PluginCommand{Plugin: spec("a", "e", "x")}, want: "a=held"},
		{name: "direct cycle refused", cur: state(p("a:e:started", "b")), op: events.OpRegister,
			cmd: events.PluginCommand{Plugin: spec("b", "e", "a")}, wantCode: events.CodeCycle},
		{name: "cycle through soft dependency refused", cur: state(p("a:e:started", "~c"), p("c:f:started", "b")), op: events.OpRegister,
			cmd: events.PluginCommand{Plugin: spec("b", "e", "a")}, wantCode: events.CodeCycle},
		{name: "self dependency invalid", op: events.OpRegister,
			cmd: events.PluginCommand{Plugin: spec("a", "e", "a")}, wantCode: events.CodeInvalid},
		{name: "priority out of range invalid", op: events.OpRegister,
			cmd: events.PluginCommand{Plugin: &events.PluginSpec{Name: "a", Event: "e", Priority: 101}}, wantCode: events.CodeInvalid},
		{name: "registering a dependency releases nothing that was never running", cur: state(p("b:e:held", "a")), op: events.OpRegister,
			cmd: events.PluginCommand{Plugin: spec("a", "e")}, want: "a=registered b=held"},

		// start / restart
		{name: "start a registered plugin", cur: state(p("a:e:registered")), op: events.OpStart,
			cmd: events.PluginCommand{Name: "a"}, want: "a=started"},
		{name: "start refused while a hard dependency is not running", cur: state(p("a:e:registered"), p("b:e:held", "a")), op: events.OpStart,
			cmd: events.PluginCommand{Name: "b"}, wantCode: events.CodeDependencyNotRunning},
		{name: "restart refused while a hard dependency is missing", cur: state(p("b:e:registered", "a")), op: events.OpRestart,
			cmd: events.PluginCommand{Name: "b"}, wantCode: events.CodeDependencyNotRunning},
		{name: "start a stopped plugin refused", cur: state(p("a:e:stopped")), op: events.OpStart,
			cmd: events.PluginCommand{Name: "a"}, wantCode: events.CodeStopped},
		{name: "restart a stopped plugin refused", cur: state(p("a:e:stopped")), op: events.OpRestart,
			cmd: events.PluginCommand{Name: "a"}, wantCode: events.CodeStopped},
		{name: "restart a running plugin", cur: state(p("a:e:started")), op: events.OpRestart,
			cmd: events.PluginCommand{Name: "a"}, want: "a=restarted"},
		{name: "start ignores soft dependencies", cur: state(p("b:e:registered", "~a")), op: events.OpStart,
			cmd: events.PluginCommand{Name: "b"}, want: "b=started"},
		{name: "start unknown plugin", op: events.OpStart, cmd: events.PluginCommand{Name: "zz"}, wantCode: events.CodeNotFound},
		{name: "start releases held dependents", cur: state(p("a:e:registered"), p("b:e:held", "a"), p("c:f:held", "b")), op: events.OpStart,
			cmd: events.PluginCommand{Name: "a"}, want: "a=started b=restarted c=restarted"},

		// stop
		{name: "stop from registered", cur: state(p("a:e:registered")), op: events.OpStop, cmd: events.PluginCommand{Name: "a"}, want: "a=stopped"},
		{name: "stop from held", cur: state(p("a:e:held", "x")), op: events.OpStop, cmd: events.PluginCommand{Name: "a"}, want: "a=stopped"},
		{name: "stop from stopped", cur: state(p("a:e:stopped")), op: events.OpStop, cmd: events.PluginCommand{Name: "a"}, want: "a=stopped"},
		{name: "stop holds hard dependents transitively and across events",
			cur: state(p("a:e:started"), p("b:f:started", "a"), p("c:g:restarted", "b"), p("d:e:started", "~a")),
			op:  events.OpStop, cmd: events.PluginCommand{Name: "a"}, want: "a=stopped b=held c=held d=started"},
		{name: "stop leaves stopped and registered dependents alone",
			cur: state(p("a:e:started"), p("b:e:stopped", "a"), p("c:e:registered", "a")),
			op:  events.OpStop, cmd: events.PluginCommand{Name: "a"}, want: "a=stopped b=stopped c=registered"},

		// enable
		{name: "enable leaves stopped", cur: state(p("a:e:stopped")), op: events.OpEnable, cmd: events.PluginCommand{Name: "a"}, want: "a=started"},
		{name: "enable with a dependency down holds", cur: state(p("a:e:stopped", "x")), op: events.OpEnable, cmd: events.PluginCommand{Name: "a"}, want: "a=held"},
		{name: "enable on a running plugin changes nothing", cur: state(p("a:e:restarted")), op: events.OpEnable, cmd: events.PluginCommand{Name: "a"}, want: "a=restarted"},
		{name: "enable releases held dependents", cur: state(p("a:e:stopped"), p("b:e:held", "a")), op: events.OpEnable,
			cmd: events.PluginCommand{Name: "a"}, want: "a=started b=restarted"},
		{name: "stopped dependent stays stopped when its dependency returns", cur: state(p("a:e:stopped"), p("b:e:stopped", "a")), op: events.OpEnable,
			cmd: events.PluginCommand{Name: "a"}, want: "a=started b=stopped"},

		// delete (MishkaInstaller's delete)
		{name: "delete puts a running plugin back to registered and holds dependents", cur: state(p("a:e:started"), p("b:e:started", "a")), op: events.OpDelete,
			cmd: events.PluginCommand{Name: "a"}, want: "a=registered b=held"},
		{name: "delete is not sticky: start brings it back", cur: state(p("a:e:registered")), op: events.OpStart,
			cmd: events.PluginCommand{Name: "a"}, want: "a=started"},

		// unregister
		{name: "unregister deletes and holds dependents", cur: state(p("a:e:started"), p("b:f:started", "a")), op: events.OpUnregister,
			cmd: events.PluginCommand{Name: "a"}, want: "b=held"},
		{name: "unregister unknown plugin", op: events.OpUnregister, cmd: events.PluginCommand{Name: "a"}, wantCode: events.CodeNotFound},
		{name: "re-registering an unregistered dependency then starting it releases", cur: state(p("a:e:registered"), p("b:f:held", "a")), op: events.OpStart,
			cmd: events.PluginCommand{Name: "a"}, want: "a=started b=restarted"},

		// diamonds
		{name: "diamond: stopping the root holds all; one path is enough",
			cur: state(p("r:e:started"), p("l:e:started", "r"), p("m:e:started", "r"), p("t:e:started", "l", "m")),
			op:  events.OpStop, cmd: events.PluginCommand{Name: "r"}, want: "l=held m=held r=stopped t=held"},
		{name: "diamond: the top waits for both sides",
			cur: state(p("r:e:started"), p("l:e:started", "r"), p("m:e:stopped", "r"), p("t:e:held", "l", "m")),
			op:  events.OpStop, cmd: events.PluginCommand{Name: "l"}, want: "l=stopped m=stopped r=started t=held"},
		{name: "diamond: enabling the root releases everything below",
			cur: state(p("r:e:stopped"), p("l:e:held", "r"), p("m:e:held", "r"), p("t:e:held", "l", "m")),
			op:  events.OpEnable, cmd: events.PluginCommand{Name: "r"}, want: "l=restarted m=restarted r=started t=restarted"},

		// bulk by event
		{name: "bulk start starts a chain in dependency order", cur: state(p("b:e:registered", "a"), p("a:e:registered"), p("x:other:registered")), op: events.OpStart,
			cmd: events.PluginCommand{Event: "e"}, want: "a=started b=started x=registered"},
		{name: "bulk stop stops every plugin of the event", cur: state(p("a:e:started"), p("b:e:started", "a"), p("c:f:started", "b")), op: events.OpStop,
			cmd: events.PluginCommand{Event: "e"}, want: "a=stopped b=stopped c=held"},
		{name: "bulk start is all or nothing", cur: state(p("a:e:registered"), p("b:e:stopped")), op: events.OpStart,
			cmd: events.PluginCommand{Event: "e"}, wantCode: events.CodeStopped},
		{name: "bulk unregister", cur: state(p("a:e:started"), p("b:e:started", "a"), p("c:f:registered")), op: events.OpUnregister,
			cmd: events.PluginCommand{Event: "e"}, want: "c=registered"},
		{name: "bulk on an event without plugins", op: events.OpStop, cmd: events.PluginCommand{Event: "e"}, wantCode: events.CodeNotFound},

		// malformed commands
		{name: "name and event together", op: events.OpStop, cmd: events.PluginCommand{Name: "a", Event: "e"}, wantCode: events.CodeInvalid},
		{name: "no target", op: events.OpStop, cmd: events.PluginCommand{}, wantCode: events.CodeInvalid},
		{name: "register without a declaration", op: events.OpRegister, cmd: events.PluginCommand{Name: "a"}, wantCode: events.CodeInvalid},
		{name: "unknown op", op: "explode", cmd: events.PluginCommand{Name: "a"}, wantCode: events.CodeInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := maps.Clone(tt.cur)
			out, err := plan(tt.op, tt.cmd, tt.cur, 7, t0.Add(time.Minute))
			if tt.wantCode != "" {
				if err == nil || err.Code != tt.wantCode {
					t.Fatalf("plan = %v, want code %s", err, tt.wantCode)
				}
				if err.Message == "" {
					t.Error("error without a message")
				}
				return
			}
			if err != nil {
				t.Fatalf("plan: %v", err)
			}
			if got := statuses(tt.cur, out); got != tt.want {
				t.Errorf("statuses = %q, want %q", got, tt.want)
			}
			if !maps.EqualFunc(before, tt.cur, func(a, b events.Plugin) bool { return !differs(a, b) }) {
				t.Error("plan modified its input")
			}
			for _, c := range out.changes {
				if c.after != nil && c.after.CommandSeq != 7 {
					t.Errorf("%s: command seq %d, want 7", c.name, c.after.CommandSeq)
				}
			}
		})
	}
}

func TestPlanUpsertReplacesDeclarationKeepsRuntime(t *testing.T) {
	cur := state(p("a:e:started"))
	extra := json.RawMessage(`{"k":"v"}`)
	s := events.PluginSpec{Name: "a", Event: "f", Priority: 7, Extra: extra, Owner: "team", Version: "2", Depends: []events.Dependency{{Name: "z", Soft: true}}}
	out, err := plan(events.OpRegister, events.PluginCommand{Plugin: &s}, cur, 9, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	got := out.reply[0]
	if got.Event != "f" || got.Priority != 7 || string(got.Extra) != `{"k":"v"}` || got.Owner != "team" || got.Version != "2" || len(got.Depends) != 1 {
		t.Errorf("declared fields not replaced: %+v", got.PluginSpec)
	}
	if got.Mode != events.ModeChain || got.Settings.StepTimeoutMS != 2000 {
		t.Errorf("defaults not applied: mode %q settings %+v", got.Mode, got.Settings)
	}
	if got.Status != events.StatusStarted || !got.CreatedAt.Equal(t0) || !got.UpdatedAt.Equal(t0.Add(time.Hour)) {
		t.Errorf("runtime fields: status %s created %v updated %v", got.Status, got.CreatedAt, got.UpdatedAt)
	}
	if lt := out.changes[0].lifecycleType(); lt != "hookbus.plugin.registered" {
		t.Errorf("lifecycle type %q, want hookbus.plugin.registered", lt)
	}
}

func TestPlanCycleMessageNamesThePath(t *testing.T) {
	cur := state(p("a:e:started", "b"), p("b:e:started", "c"))
	_, err := plan(events.OpRegister, events.PluginCommand{Plugin: spec("c", "e", "a")}, cur, 1, t0)
	if err == nil || err.Message != "dependency cycle: c -> a -> b -> c" {
		t.Fatalf("plan = %v, want the cycle c -> a -> b -> c", err)
	}
}

func TestPlanNoChangeWritesNothing(t *testing.T) {
	cur := state(p("a:e:started"))
	out, err := plan(events.OpEnable, events.PluginCommand{Name: "a"}, cur, 3, t0)
	if err != nil {
		t.Fatal(err)
	}
	if len(out.changes) != 0 || len(out.reply) != 1 || out.reply[0].Status != events.StatusStarted {
		t.Errorf("enable on a running plugin: changes %v reply %v", out.changes, out.reply)
	}
}

func TestLifecycleTypes(t *testing.T) {
	a, held, stopped := p("a:e:started"), p("a:e:held"), p("a:e:stopped")
	tests := []struct {
		name string
		c    change
		want string
	}{
		{"new", change{after: &a}, "hookbus.plugin.started"},
		{"held", change{before: &a, after: &held}, "hookbus.plugin.held"},
		{"stopped", change{before: &a, after: &stopped}, "hookbus.plugin.stopped"},
		{"removed", change{before: &a}, "hookbus.plugin.unregistered"},
		{"re-registered", change{before: &a, after: &a}, "hookbus.plugin.registered"},
	}
	for _, tt := range tests {
		if got := tt.c.lifecycleType(); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
	}
}
