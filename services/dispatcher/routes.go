package dispatcher

import (
	"cmp"
	"slices"
	"sync"

	"github.com/hookbus/hookbus/pkg/events"
)

// routes is the route table: per event type, the running chain plugins in
// chain order, rebuilt from every new copy of the plugin state.
type routes struct {
	mu     sync.RWMutex
	chains map[string][]events.Plugin // event type -> chain order
	ready  bool
}

// chain returns the chain of an event type; callers must not modify it.
func (r *routes) chain(typ string) []events.Plugin {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.chains[typ]
}

func (r *routes) isReady() bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.ready
}

// rebuild replaces the table with one built from plugins.
func (r *routes) rebuild(plugins map[string]events.Plugin) {
	chains := buildChains(plugins)
	r.mu.Lock()
	r.chains, r.ready = chains, true
	r.mu.Unlock()
}

// buildChains orders, per event, the running chain plugins: a plugin runs
// after its dependencies (hard or soft) that run on the same event, and
// otherwise by priority, then name.
func buildChains(plugins map[string]events.Plugin) map[string][]events.Plugin {
	byEvent := map[string][]events.Plugin{}
	for _, p := range plugins {
		if p.Mode == events.ModeChain && p.Status.Running() {
			byEvent[p.Event] = append(byEvent[p.Event], p)
		}
	}
	out := make(map[string][]events.Plugin, len(byEvent))
	for ev, ps := range byEvent {
		out[ev] = chainOrder(ps)
	}
	return out
}

func chainOrder(ps []events.Plugin) []events.Plugin {
	in := make(map[string]bool, len(ps))
	for _, p := range ps {
		in[p.Name] = true
	}
	// Kahn's algorithm, always taking the ready plugin with the lowest
	// (priority, name), so the order is total and deterministic.
	waiting := map[string]int{}
	dependents := map[string][]string{}
	byName := map[string]events.Plugin{}
	for _, p := range ps {
		byName[p.Name] = p
		for _, d := range p.Depends {
			if in[d.Name] {
				waiting[p.Name]++
				dependents[d.Name] = append(dependents[d.Name], p.Name)
			}
		}
	}
	less := func(a, b events.Plugin) int {
		return cmp.Or(cmp.Compare(a.Priority, b.Priority), cmp.Compare(a.Name, b.Name))
	}
	var ready []events.Plugin
	for _, p := range ps {
		if waiting[p.Name] == 0 {
			ready = append(ready, p)
		}
	}
	out := make([]events.Plugin, 0, len(ps))
	for len(ready) > 0 {
		slices.SortFunc(ready, less)
		next := ready[0]
		ready = ready[1:]
		out = append(out, next)
		for _, dep := range dependents[next.Name] {
			if waiting[dep]--; waiting[dep] == 0 {
				ready = append(ready, byName[dep])
			}
		}
	}
	// A cycle cannot be stored (the registry refuses them); should one
	// appear anyway, its members still run, by priority, after the rest.
	if len(out) < len(ps) {
		var rest []events.Plugin
		for _, p := range ps {
			if !slices.ContainsFunc(out, func(q events.Plugin) bool { return q.Name == p.Name }) {
				rest = append(rest, p)
			}
		}
		slices.SortFunc(rest, less)
		out = append(out, rest...)
	}
	return out
}
