//go:build chaos

package chaos

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/pkg/events"
)

// Poison flood settings.
const (
	poisonPerTick   = 10 // messages every poisonTick: 1,000 a second
	poisonTick      = 10 * time.Millisecond
	oversizedEvery  = 500 // one event over the size limit every 500 messages: 2 a second
	overPayloadEach = 1000
	poisonCallTick  = 200 * time.Millisecond
	maxPoisonDelay  = time.Second // target p99 of the valid events' delays
)

// poisonKinds are the invalid messages of the flood, sent in turn; the
// oversized ones are mixed in apart (see poison.message).
var poisonKinds = []string{"non-json", "wrong-type", "bad-specversion", "no-source", "bad-time", "non-utf8-id", "non-utf8-id-encoded", "not-a-cloudevent", "not-a-cloudevent-notify"}

// poison floods hookbus.event.<type> with raw invalid messages through
// nats.go, not the SDK, and counts them by kind.
type poison struct {
	nc *nats.Conn

	mu        sync.Mutex
	sent      map[string]int
	refused   map[string]int // refused at publish, by kind
	calls     int
	answered  int
	callFails map[string]int // poison calls never answered, by error
}

// message builds the n-th poison message.
func (p *poison) message(n int) (kind string, msg *nats.Msg) {
	kind = poisonKinds[n%len(poisonKinds)]
	switch {
	case n%overPayloadEach == overPayloadEach-1:
		kind = "over-max-payload"
	case n%oversizedEvery == oversizedEvery-1:
		kind = "oversized"
	}
	msg = nats.NewMsg("hookbus.event." + chainType)
	h := msg.Header
	h.Set(poisonHeader, kind)
	h.Set("ce-specversion", "1.0")
	h.Set("ce-id", "poison-"+strconv.Itoa(n))
	h.Set("ce-source", eventSource)
	h.Set("ce-type", chainType)
	h.Set("content-type", "application/json")
	msg.Data = []byte(`{"n":` + strconv.Itoa(n) + `}`)
	switch kind {
	case "non-json":
		if n%2 == 0 {
			msg.Data = []byte("{not json " + strconv.Itoa(n))
		} else {
			h.Set("content-type", "text/plain")
			msg.Data = []byte("plain text " + strconv.Itoa(n))
		}
	case "wrong-type":
		h.Set("ce-type", notifyType)
	case "bad-specversion":
		h.Set("ce-specversion", "0.3")
	case "no-source":
		h.Del("ce-source")
	case "bad-time":
		h.Set("ce-time", "yesterday")
	case "non-utf8-id":
		h.Set("ce-id", "poison-\xff\xfe-"+strconv.Itoa(n))
	case "non-utf8-id-encoded":
		h.Set("ce-id", "poison-%FF%FE-"+strconv.Itoa(n))
	case "not-a-cloudevent", "not-a-cloudevent-notify":
		if kind == "not-a-cloudevent-notify" {
			msg.Subject = "hookbus.event." + notifyType
		}
		msg.Header = nats.Header{poisonHeader: {kind}}
		msg.Data = []byte{0xde, 0xad, 0xbe, 0xef, '{'}
	case "oversized", "over-max-payload":
		size := 1<<20 + 64<<10 // over the 1 MiB event limit, under the 2 MiB max_payload
		if kind == "over-max-payload" {
			size = 5 << 19 // over max_payload: refused at publish
		}
		msg.Data = []byte(`{"pad":"` + strings.Repeat("x", size) + `"}`)
	}
	return kind, msg
}

// flood publishes poisonPerTick messages every poisonTick until ctx ends.
func (p *poison) flood(ctx context.Context) {
	tick := time.NewTicker(poisonTick)
	defer tick.Stop()
	for n := 0; ; {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		for range poisonPerTick {
			kind, msg := p.message(n)
			n++
			err := p.nc.PublishMsg(msg)
			p.mu.Lock()
			p.sent[kind]++
			if err != nil {
				p.refused[kind]++
			}
			p.mu.Unlock()
		}
	}
}

// callLoop makes raw calls with non-JSON data on the chain type until ctx
// ends; each must be answered (with an error) within callGiveUp.
func (p *poison) callLoop(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	tick := time.NewTicker(poisonCallTick)
	defer tick.Stop()
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		msg := nats.NewMsg("hookbus.call." + chainType)
		msg.Header.Set("ce-specversion", "1.0")
		msg.Header.Set("ce-id", "poison-call-"+strconv.Itoa(n))
		msg.Header.Set("ce-source", eventSource)
		msg.Header.Set("ce-type", chainType)
		msg.Header.Set("content-type", "application/json")
		msg.Data = []byte("{not json")
		wg.Go(func() { p.call(msg) })
	}
}

// call sends one poison call until it is answered or callGiveUp passes.
func (p *poison) call(msg *nats.Msg) {
	p.mu.Lock()
	p.calls++
	p.mu.Unlock()
	first := time.Now()
	for {
		_, err := p.nc.RequestMsg(msg, attemptTimeout)
		if err == nil {
			p.mu.Lock()
			p.answered++
			p.mu.Unlock()
			return
		}
		if time.Since(first) >= callGiveUp || !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, nats.ErrNoResponders) {
			p.mu.Lock()
			p.callFails[err.Error()]++
			p.mu.Unlock()
			return
		}
		time.Sleep(100 * time.Millisecond) // pace attempts after no responders
	}
}

func (p *poison) summary() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(p.sent)) {
		parts = append(parts, fmt.Sprintf("%s=%d", k, p.sent[k]))
	}
	return fmt.Sprintf("sent %s; refused at publish %s; calls %d, answered %d", strings.Join(parts, " "), counts(p.refused), p.calls, p.answered)
}

// TestPoison floods the all-in-one with invalid messages while valid events
// and calls flow, and measures the valid events' delays.
func TestPoison(t *testing.T) {
	ps := newProcs(t)
	d := startAllInOne(t, ps)
	_, deliveryFiles := startWorkers(t, ps, d)
	c, js := connectClient(t, d.natsURL, "chaos-traffic", d.admin)
	waitPluginsRunning(t, c, js)
	hook := startHook(t, d)
	nc, err := connect(d.natsURL, "chaos-poison", d.admin)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	p := &poison{nc: nc, sent: map[string]int{}, refused: map[string]int{}, callFails: map[string]int{}}

	tr := newTraffic()
	stop, cancel := context.WithTimeout(context.Background(), chaosTime)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() { tr.publishLoop(stop, context.Background(), c, "v") })
	wg.Go(func() { tr.callLoop(stop, c, "c") })
	wg.Go(func() { p.flood(stop) })
	wg.Go(func() { p.callLoop(stop) })
	hp := newHTTPPoison(newHTTPPublisher(d.gatewayURL, d.gatewayToken))
	wg.Go(func() { hp.flood(stop) })
	wg.Wait()
	if err := nc.Flush(); err != nil {
		t.Errorf("flush the poison: %v", err)
	}

	s, v := settle(t, js, tr, deliveryFiles, hook)
	toResult, missingResults := delays(tr, chainType, s.resultsAt)
	toNotify, missingDeliveries := delays(tr, notifyType, s.deliveredAt)
	tr.mu.Lock()
	toAck, _ := delaysLocked(tr, chainType, tr.ackedAt)
	tr.mu.Unlock()
	r := summarize(t.Name(), tr, s, v)
	toHook, missingHook := delays(tr, notifyType, hook.deliveredAt())
	r.hookAnswers = hook.summary() + "; valid events' publish-to-delivery p50/p99 " + percentiles(toHook, missingHook)
	r.crashes = ps.crashes()
	r.poisonResult, r.poisonNotify = percentiles(toResult, missingResults), percentiles(toNotify, missingDeliveries)
	r.poisonCounts = fmt.Sprintf("%s; stored %d, not dead-lettered %d; publish-to-ack p50/p99 %s", p.summary(), len(s.poison), len(v.notDead), percentiles(toAck, 0))
	leaked := httpPoisonStored(t, js, tr, s)
	r.httpPoison = fmt.Sprintf("%s; stored %d", hp.summary(), len(leaked))
	report(t, r)
	v.check(t)
	checkHook(t, hook)
	if len(s.onHookNode) == 0 {
		t.Errorf("no poison message stored on %s, the hook's node", notifyType)
	}
	for _, problem := range hp.problems() {
		t.Error(problem)
	}
	if len(leaked) > 0 {
		t.Errorf("events stored that no publisher sent (HTTP poison let through): %d, e.g. %v", len(leaked), leaked[:min(len(leaked), 10)])
	}
	for what, ds := range map[string][]time.Duration{"publish-to-result": toResult, "publish-to-notify": toNotify} {
		if len(ds) > 0 && pct(ds, 99) > maxPoisonDelay {
			t.Errorf("%s p99 %s under the poison flood, want under %s", what, pct(ds, 99).Round(time.Millisecond), maxPoisonDelay)
		}
	}
	p.mu.Lock()
	for msg, n := range p.callFails {
		t.Errorf("poison calls never answered: %d: %s", n, msg)
	}
	p.mu.Unlock()
	checkCrashes(t, ps)
}

// httpPoisonStored lists what the HTTP poison got stored: valid events in
// s that no publisher of tr sent (a refused request carries no poison
// header, so what got through reads as a valid event), and the events on
// the subject of the catalog-schema kind, which nothing else publishes.
func httpPoisonStored(t *testing.T, js jetstream.JetStream, tr *traffic, s *stored) []string {
	t.Helper()
	var leaked []string
	tr.mu.Lock()
	for id := range s.events {
		if _, ours := tr.sent[id]; !ours {
			leaked = append(leaked, fmt.Sprintf("%q", id))
		}
	}
	tr.mu.Unlock()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	str, err := js.Stream(ctx, events.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	subject := "hookbus.event." + httpPoisonCatalogType
	info, err := str.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		t.Fatalf("stream %s info: %v", events.StreamEvents, err)
	}
	if n := info.State.Subjects[subject]; n > 0 {
		leaked = append(leaked, fmt.Sprintf("%d on %s", n, subject))
	}
	slices.Sort(leaked)
	return leaked
}

// delays returns, for every acknowledged event of type typ, the time from
// its first publish attempt to at[id], sorted, and how many have no at.
func delays(tr *traffic, typ string, at map[string]time.Time) (ds []time.Duration, missing int) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return delaysLocked(tr, typ, at)
}

func delaysLocked(tr *traffic, typ string, at map[string]time.Time) (ds []time.Duration, missing int) {
	for id := range tr.acked {
		if tr.typeOf[id] != typ {
			continue
		}
		end, ok := at[id]
		if !ok {
			missing++
			continue
		}
		ds = append(ds, end.Sub(tr.sent[id]))
	}
	slices.Sort(ds)
	return ds, missing
}

// pct is the p-th percentile of sorted ds.
func pct(ds []time.Duration, p int) time.Duration {
	return ds[min(len(ds)-1, len(ds)*p/100)]
}

func percentiles(ds []time.Duration, missing int) string {
	if len(ds) == 0 {
		return fmt.Sprintf("none (%d missing)", missing)
	}
	s := pct(ds, 50).Round(time.Millisecond).String() + "/" + pct(ds, 99).Round(time.Millisecond).String()
	if missing > 0 {
		s += fmt.Sprintf(" (%d missing)", missing)
	}
	return s
}
