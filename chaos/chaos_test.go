//go:build chaos

package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/hookbus/hookbus/pkg/client"
	"github.com/hookbus/hookbus/pkg/events"
)

// seededPlugins is how many plugins of other event types the split
// scenario puts in hookbus_plugins, so every restart reloads a large bucket.
const seededPlugins = 3000

// TestAllInOne kills `hookbus serve` (embedded NATS and every service) and
// the plugin workers while traffic flows.
func TestAllInOne(t *testing.T) {
	ps := newProcs(t)
	d := startAllInOne(t, ps)
	runChaos(t, ps, d, func(workers []*proc) []killLoop {
		// hookbus serve is as likely to be killed as all workers together.
		targets := append(slices.Repeat(d.services, len(workers)), workers...)
		return []killLoop{{targets: targets, minGap: time.Second, maxDown: time.Second}}
	})
}

// TestSplit kills the registry, the dispatchers, the persistence service,
// the plugin workers and, in a loop of its own, one node of the 3-node NATS
// cluster at a time, while traffic flows.
func TestSplit(t *testing.T) {
	ps := newProcs(t)
	d := startSplit(t, ps)
	seedPlugins(t, d, seededPlugins)
	runChaos(t, ps, d, func(workers []*proc) []killLoop {
		return []killLoop{
			// A loop per kind of process, so that each is killed as
			// often whatever the others take to restart.
			{targets: ofKind(d.services, "registry"), minGap: time.Second, maxDown: time.Second},
			{targets: ofKind(d.services, "dispatcher"), minGap: time.Second, maxDown: time.Second},
			{targets: ofKind(d.services, "persistence"), minGap: time.Second, maxDown: time.Second},
			{targets: ofKind(d.services, "gateway"), minGap: time.Second, maxDown: time.Second},
			{targets: workers, minGap: time.Second, maxDown: time.Second},
			{targets: d.nats, minGap: 3 * time.Second, maxDown: 2 * time.Second},
		}
	})
}

// runChaos starts the workers and the traffic, runs the kill loops for
// chaosTime, lets everything settle, then checks and reports. With NATS
// users (split), publisher p1 connects as admin like the state readers, and
// publisher p2 and the caller as the application user d.app; every
// permission violation the NATS nodes logged fails the test.
func runChaos(t *testing.T, ps *procs, d deployment, loops func(workers []*proc) []killLoop) {
	violationsChecked := false
	if d.admin.name != "" {
		// A test that stops early (a plugin that never runs, say) lists
		// the violations too: they are its likely cause.
		t.Cleanup(func() {
			if !violationsChecked {
				checkViolations(t, d)
			}
		})
		probeViolation(t, d)
	}
	workers, deliveryFiles := startWorkers(t, ps, d)
	c, js := connectClient(t, d.natsURL, "chaos-traffic", d.admin)
	app, _ := connectClient(t, d.natsURL, "chaos-app", d.app)
	waitPluginsRunning(t, c, js)
	hook := startHook(t, d)

	tr := newTraffic()
	dt := newDeviceTraffic()
	stopTraffic, stop := context.WithCancel(context.Background())
	defer stop()
	giveUp, cancelGiveUp := context.WithCancel(context.Background())
	defer cancelGiveUp()
	var traffic sync.WaitGroup
	traffic.Go(func() { tr.publishLoop(stopTraffic, giveUp, c, "p1") })
	traffic.Go(func() { tr.publishLoop(stopTraffic, giveUp, app, "p2") })
	traffic.Go(func() { tr.callLoop(stopTraffic, app, "c1") })
	if d.gatewayURL != "" {
		gw := newHTTPPublisher(d.gatewayURL, d.gatewayToken)
		traffic.Go(func() { tr.httpPublishLoop(stopTraffic, giveUp, gw, "h1") })
		traffic.Go(func() { tr.httpBatchLoop(stopTraffic, giveUp, gw, "hb") })
		for i := range chaosDevices {
			traffic.Go(func() { dt.deviceLoop(stopTraffic, giveUp, d.gatewayURL, fmt.Sprintf("chaos-%d", i)) })
		}
	}

	k := newKills()
	killCtx, cancelKills := context.WithTimeout(t.Context(), chaosTime)
	var g errgroup.Group
	for _, l := range loops(workers) {
		g.Go(func() error { l.run(killCtx, k); return nil })
	}
	_ = g.Wait()
	cancelKills()
	t.Logf("kills stopped: %s", counts(k.byKind))
	waitTrafficAfter(t, tr, k)
	stop()
	giveUpTimer := time.AfterFunc(publishGiveUp, cancelGiveUp)
	traffic.Wait()
	giveUpTimer.Stop()

	s, v := settle(t, js, tr, deliveryFiles, hook)
	recovery, slowest, never := k.recovery(tr)
	if slowest != "" {
		t.Logf("longest recovery: %s after the restart of %s", recovery.Round(10*time.Millisecond), slowest)
	}
	r := summarize(t.Name(), tr, s, v)
	r.hookAnswers = hook.summary()
	r.kills, r.crashes, r.recovery = k.byKind, ps.crashes(), recovery
	r.violations, violationsChecked = checkViolations(t, d), true
	if d.gatewayURL != "" {
		dv, err := dt.check(t.Context(), js)
		if err != nil {
			t.Errorf("device messages: %v", err)
		} else {
			r.devices = &dv
		}
	}
	report(t, r)
	v.check(t)
	checkHook(t, hook)
	for _, err := range k.errs {
		t.Error(err)
	}
	if len(never) > 0 {
		t.Errorf("no traffic flowed after restarts %v", never)
	}
	checkCrashes(t, ps)
	if dv := r.devices; dv != nil {
		if dv.lost > 0 {
			t.Errorf("%d device messages acknowledged to their device are not on hookbus.device.<id>.in: %v", dv.lost, dv.lostIDs)
		}
		if dv.acked == 0 {
			t.Errorf("no device message was acknowledged (upgrades: %s)", counts(dv.refused))
		}
		for k, n := range dv.refused {
			if k != "no connection" {
				t.Errorf("a device's upgrade with the token its gateway gave was refused %d times: %s", n, k)
			}
		}
		for _, e := range dv.errs {
			t.Error(e)
		}
	}
	tr.mu.Lock()
	for msg, n := range tr.publishErrs {
		t.Errorf("publish failed for good %d times: %s", n, msg)
	}
	t.Logf("call answers with an error, by code: %v", tr.errAnswers)
	if d.gatewayURL != "" && r.httpAcked == 0 {
		t.Errorf("no event posted to the gateway was answered 202 (requests by outcome: %s)", counts(tr.httpOutcomes))
	}
	tr.mu.Unlock()
}

// summarize counts what traffic sent and what the state holds.
func summarize(scenario string, tr *traffic, s *stored, v verdict) row {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	r := row{scenario: scenario, sent: len(tr.sent), acked: len(tr.acked), lost: len(v.lost), duplicated: len(v.duplicated),
		calls: tr.calls, unanswered: len(tr.unanswered),
		hookDelivered: v.hookDelivered, hookDuplicates: v.hookDuplicates, hookDead: len(v.hookDeadValid), hookUndelivered: len(v.hookUndelivered),
		hookPoison: len(s.onHookNode), hookPoisonDead: len(s.onHookNode) - len(v.hookPoisonLive),
		httpSent: len(tr.overHTTP), httpOutcomes: maps.Clone(tr.httpOutcomes)}
	for id := range tr.overHTTP {
		if tr.acked[id] {
			r.httpAcked++
		}
	}
	for _, id := range v.lost {
		if tr.overHTTP[id] {
			r.httpLost++
		}
	}
	for _, d := range v.duplicated {
		if id, _, _ := strings.Cut(d, " ×"); tr.overHTTP[id] {
			r.httpDuplicated++
		}
	}
	for id := range s.events {
		if _, ours := tr.sent[id]; ours {
			r.stored++
		}
	}
	for id := range s.deliveries {
		if s.events[id] > 0 {
			r.delivered++
		}
	}
	for id := range s.results {
		if s.events[id] > 0 {
			r.results++
		}
	}
	for _, sub := range s.deadLetters {
		if sub != "" {
			r.deadLettered++
		}
	}
	return r
}

// waitTrafficAfter waits until, after the last restart, a publish was
// acknowledged and a call answered, so the recovery of every restart is
// measured.
func waitTrafficAfter(t *testing.T, tr *traffic, k *kills) {
	t.Helper()
	deadline := time.Now().Add(callGiveUp)
	for {
		_, _, never := k.recovery(tr)
		if len(never) == 0 {
			return
		}
		if time.Now().After(deadline) {
			return // reported by the caller
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// connectClient connects the test process to NATS as u.
func connectClient(t *testing.T, url, name string, u natsUser) (*client.Client, jetstream.JetStream) {
	t.Helper()
	nc, err := connect(url, name, u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	c, err := client.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return c, js
}

// waitPluginsRunning waits until a call runs both chain plugins and the
// notify plugin's consumer exists, so every event published afterwards is
// the plugins' to handle.
func waitPluginsRunning(t *testing.T, c *client.Client, js jetstream.JetStream) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), readyTimeout)
	defer cancel()
	var last string
	for {
		callCtx, cancelCall := context.WithTimeout(ctx, attemptTimeout)
		res, err := c.Call(callCtx, newEvent("warm-up-"+time.Now().Format("150405.000000"), chainType, 0))
		cancelCall()
		_, consErr := consumerInfo(ctx, js, events.NotifyConsumer(notify))
		var state map[string]any
		_ = json.Unmarshal(res.State, &state)
		if err == nil && consErr == nil && state[chainA] == true && state[chainB] == true {
			return
		}
		last = fmt.Sprintf("call: %v, state %s; notify consumer: %v; plugins: %s", err, res.State, consErr, pluginStatuses(ctx, c))
		select {
		case <-ctx.Done():
			t.Fatalf("plugins not running after %s: %s", readyTimeout, last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// seedPlugins puts n running chain plugins of other event types into
// hookbus_plugins, as the registry stores them (as admin: no other user
// may write the bucket but the registry).
func seedPlugins(t *testing.T, d deployment, n int) {
	t.Helper()
	_, js := connectClient(t, d.natsURL, "chaos-seed", d.admin)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	kv, err := js.KeyValue(ctx, events.BucketPlugins)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var g errgroup.Group
	g.SetLimit(32)
	for i := range n {
		g.Go(func() error {
			p := events.Plugin{
				PluginSpec: events.PluginSpec{Name: fmt.Sprintf("seed-%04d", i), Event: fmt.Sprintf("chaos.seed.t%03d", i%300),
					Mode: events.ModeChain, Priority: i % 100}.Normalize(),
				Status: events.StatusStarted, CreatedAt: start, UpdatedAt: start,
			}
			b, err := json.Marshal(p)
			if err != nil {
				return err
			}
			_, err = kv.Put(ctx, p.Name, b)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatalf("seed %s: %v", events.BucketPlugins, err)
	}
	t.Logf("seeded %d plugins in %s", n, time.Since(start).Round(time.Millisecond))
}

// checkCrashes fails t for every Hookbus or NATS process that exited by
// itself (a supervisor restarted it), and logs workers that did.
func checkCrashes(t *testing.T, ps *procs) {
	t.Helper()
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for _, p := range ps.all {
		p.mu.Lock()
		if p.crashes > 0 {
			report := t.Errorf
			if p.kind == "worker" {
				report = t.Logf
			}
			report("%s exited by itself %d times; its last line before the latest: %s", p.name, p.crashes, p.lastWords)
		}
		p.mu.Unlock()
	}
}

// pluginStatuses describes the suite's plugins as the registry has them.
func pluginStatuses(ctx context.Context, c *client.Client) string {
	var out []string
	for _, name := range []string{chainA, chainB, notify} {
		getCtx, cancel := context.WithTimeout(ctx, time.Second)
		p, err := c.Get(getCtx, name)
		cancel()
		if err != nil {
			out = append(out, name+": "+err.Error())
			continue
		}
		out = append(out, name+": "+string(p.Status))
	}
	return strings.Join(out, ", ")
}

// ofKind returns the processes of ps of one kind.
func ofKind(ps []*proc, kind string) []*proc {
	var out []*proc
	for _, p := range ps {
		if p.kind == kind {
			out = append(out, p)
		}
	}
	return out
}
