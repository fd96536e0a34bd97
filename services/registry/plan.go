package registry

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/hookbus/hookbus/pkg/events"
)

// change is one plugin write a command leads to.
type change struct {
	name   string
	before *events.Plugin // nil: the plugin is new
	after  *events.Plugin // nil: the plugin is removed
}

// lifecycleType is the CloudEvents type announcing the change.
func (c change) lifecycleType() string {
	switch {
	case c.after == nil:
		return events.LifecycleTypePrefix + events.LifecycleUnregistered
	case c.before != nil && c.before.Status == c.after.Status:
		// Same status, new declaration: a re-registration.
		return events.LifecycleType(events.StatusRegistered)
	default:
		return events.LifecycleType(c.after.Status)
	}
}

// outcome is what a command does: the writes, in order, and the plugins to
// answer with.
type outcome struct {
	changes []change
	reply   []events.Plugin
}

// plan computes the effect of one command on the current plugins without
// touching storage: every rule of DESIGN §1.1 lives here, so it is tested
// as a pure function. cur is not modified. seq is the command's stream
// sequence, recorded on every plugin it changes.
func plan(op events.PluginOp, cmd events.PluginCommand, cur map[string]events.Plugin, seq uint64, now time.Time) (outcome, *events.Error) {
	if err := cmd.Validate(op); err != nil {
		return outcome{}, &events.Error{Code: events.CodeInvalid, Message: err.Error()}
	}
	next := maps.Clone(cur)
	if next == nil {
		next = map[string]events.Plugin{}
	}
	var targets []string
	if op == events.OpRegister {
		if err := register(next, cmd.Plugin.Normalize(), now); err != nil {
			return outcome{}, err
		}
		targets = []string{cmd.Plugin.Name}
	} else {
		var err *events.Error
		targets, err = resolveTargets(op, cmd, next)
		if err != nil {
			return outcome{}, err
		}
		for _, name := range targets {
			if err := apply(op, name, next); err != nil {
				if cmd.Event != "" {
					err.Message = fmt.Sprintf("%s on event %s: %s", op, cmd.Event, err.Message)
				}
				return outcome{}, err
			}
		}
	}
	settle(next)

	var out outcome
	for _, name := range targets {
		if p, ok := next[name]; ok {
			out.reply = append(out.reply, p)
		} else {
			out.reply = append(out.reply, cur[name]) // unregistered: its last state
		}
	}
	for _, name := range slices.Sorted(maps.Keys(unionKeys(cur, next))) {
		before, had := cur[name]
		after, has := next[name]
		switch {
		case had && !has:
			out.changes = append(out.changes, change{name: name, before: &before})
		case !had && has:
			after.CommandSeq, after.UpdatedAt = seq, now
			next[name] = after
			out.changes = append(out.changes, change{name: name, after: &after})
		case differs(before, after):
			after.CommandSeq, after.UpdatedAt = seq, now
			next[name] = after
			out.changes = append(out.changes, change{name: name, before: &before, after: &after})
		}
	}
	// Answer with the stamped states.
	for i, p := range out.reply {
		if q, ok := next[p.Name]; ok {
			out.reply[i] = q
		}
	}
	return out, nil
}

// register upserts spec: declared fields replaced, status and creation
// time kept. A new plugin whose hard dependencies are not all running is
// held; otherwise registered.
func register(next map[string]events.Plugin, spec events.PluginSpec, now time.Time) *events.Error {
	p, exists := next[spec.Name]
	p.PluginSpec = spec
	if !exists {
		p.CreatedAt = now
		p.Status = events.StatusRegistered
		if len(missingHard(p, next)) > 0 {
			p.Status = events.StatusHeld
		}
	}
	next[spec.Name] = p
	if cycle := findCycle(next, spec.Name); cycle != nil {
		return &events.Error{Code: events.CodeCycle, Message: "dependency cycle: " + strings.Join(cycle, " -> ")}
	}
	return nil
}

// resolveTargets returns the plugins a non-register command acts on: the
// named one, or every plugin of the event in dependency order (dependencies
// first, so a bulk start can start a chain whose members depend on each
// other).
func resolveTargets(op events.PluginOp, cmd events.PluginCommand, next map[string]events.Plugin) ([]string, *events.Error) {
	if cmd.Name != "" {
		if _, ok := next[cmd.Name]; !ok {
			return nil, &events.Error{Code: events.CodeNotFound, Message: fmt.Sprintf("plugin %s is not registered", cmd.Name)}
		}
		return []string{cmd.Name}, nil
	}
	var names []string
	for _, p := range next {
		if p.Event == cmd.Event {
			names = append(names, p.Name)
		}
	}
	if len(names) == 0 {
		return nil, &events.Error{Code: events.CodeNotFound, Message: fmt.Sprintf("no plugin is registered for event %s", cmd.Event)}
	}
	order := topoOrder(next)
	slices.SortFunc(names, func(a, b string) int { return order[a] - order[b] })
	if op == events.OpStop || op == events.OpUnregister || op == events.OpDelete {
		slices.Reverse(names) // dependents first
	}
	return names, nil
}

// apply performs op on the plugin name in next.
func apply(op events.PluginOp, name string, next map[string]events.Plugin) *events.Error {
	p := next[name]
	switch op {
	case events.OpStart, events.OpRestart:
		if p.Status == events.StatusStopped {
			return &events.Error{Code: events.CodeStopped, Message: fmt.Sprintf("plugin %s is stopped: enable it first", name)}
		}
		if missing := missingHard(p, next); len(missing) > 0 {
			return &events.Error{Code: events.CodeDependencyNotRunning, Message: fmt.Sprintf("plugin %s: hard dependencies not running: %s", name, strings.Join(missing, ", "))}
		}
		p.Status = events.StatusStarted
		if op == events.OpRestart {
			p.Status = events.StatusRestarted
		}
	case events.OpStop:
		p.Status = events.StatusStopped
	case events.OpEnable:
		if p.Status != events.StatusStopped {
			return nil // enable only leaves stopped; anything else is already enabled
		}
		p.Status = events.StatusStarted
		if len(missingHard(p, next)) > 0 {
			p.Status = events.StatusHeld
		}
	case events.OpDelete:
		p.Status = events.StatusRegistered
	case events.OpUnregister:
		delete(next, name)
		return nil
	}
	next[name] = p
	return nil
}

// settle holds every running plugin with a hard dependency that is not
// running, and releases (restarted) every held plugin whose hard
// dependencies all run again. One pass in dependency order settles chains
// and diamonds, across events, because a plugin is visited after all of
// its dependencies.
func settle(next map[string]events.Plugin) {
	order := topoOrder(next)
	names := slices.Collect(maps.Keys(next))
	slices.SortFunc(names, func(a, b string) int { return order[a] - order[b] })
	for _, name := range names {
		p := next[name]
		ok := len(missingHard(p, next)) == 0
		switch {
		case p.Status.Running() && !ok:
			p.Status = events.StatusHeld
		case p.Status == events.StatusHeld && ok:
			p.Status = events.StatusRestarted
		default:
			continue
		}
		next[name] = p
	}
}

// missingHard lists p's hard dependencies that are absent or not running.
func missingHard(p events.Plugin, all map[string]events.Plugin) []string {
	var out []string
	for _, d := range p.HardDepends() {
		if dep, ok := all[d]; !ok || !dep.Status.Running() {
			out = append(out, d)
		}
	}
	return out
}

// findCycle returns a dependency cycle (hard or soft) through start, as
// names from start back to start, or nil.
func findCycle(all map[string]events.Plugin, start string) []string {
	path := []string{start}
	onPath := map[string]bool{start: true}
	done := map[string]bool{}
	var visit func(name string) []string
	visit = func(name string) []string {
		for _, d := range all[name].Depends {
			if d.Name == start {
				return append(slices.Clone(path), start)
			}
			if _, ok := all[d.Name]; !ok || done[d.Name] || onPath[d.Name] {
				continue
			}
			path = append(path, d.Name)
			onPath[d.Name] = true
			if c := visit(d.Name); c != nil {
				return c
			}
			path = path[:len(path)-1]
			onPath[d.Name] = false
			done[d.Name] = true
		}
		return nil
	}
	return visit(start)
}

// topoOrder ranks every plugin after all of its dependencies (hard and
// soft), ties broken by name, so the order is deterministic. The graph is
// acyclic (register refuses cycles); a dependency that is not registered
// is ignored.
func topoOrder(all map[string]events.Plugin) map[string]int {
	rank := make(map[string]int, len(all))
	state := map[string]int{} // 0 new, 1 visiting, 2 done
	names := slices.Sorted(maps.Keys(all))
	var visit func(string)
	visit = func(name string) {
		if state[name] != 0 {
			return
		}
		state[name] = 1
		deps := make([]string, 0, len(all[name].Depends))
		for _, d := range all[name].Depends {
			if _, ok := all[d.Name]; ok {
				deps = append(deps, d.Name)
			}
		}
		slices.Sort(deps)
		for _, d := range deps {
			visit(d)
		}
		state[name] = 2
		rank[name] = len(rank)
	}
	for _, n := range names {
		visit(n)
	}
	return rank
}

func unionKeys(a, b map[string]events.Plugin) map[string]struct{} {
	out := make(map[string]struct{}, len(a)+len(b))
	for k := range a {
		out[k] = struct{}{}
	}
	for k := range b {
		out[k] = struct{}{}
	}
	return out
}

// differs reports whether a write is needed: the status or the declaration
// changed.
func differs(a, b events.Plugin) bool {
	if a.Status != b.Status {
		return true
	}
	x, y := a.PluginSpec, b.PluginSpec
	return x.Name != y.Name || x.Event != y.Event || x.Mode != y.Mode || x.Priority != y.Priority ||
		x.Owner != y.Owner || x.Version != y.Version ||
		!slices.Equal(x.Depends, y.Depends) || string(x.Extra) != string(y.Extra) ||
		x.Settings.StepTimeoutMS != y.Settings.StepTimeoutMS || x.Settings.OnError != y.Settings.OnError ||
		x.Settings.MaxDeliver != y.Settings.MaxDeliver || !slices.Equal(x.Settings.BackoffMS, y.Settings.BackoffMS)
}
