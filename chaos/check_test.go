//go:build chaos

package chaos

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/pkg/events"
)

// settleTimeout bounds the wait, after the kills and the traffic stopped,
// for everything to settle: longer than the dispatcher's 30 s ack wait, after
// which an event held by a killed dispatcher is delivered again.
// A longer run stores more to read: a quarter of CHAOS_TIME is added.
func settleTimeout() time.Duration { return 75*time.Second + chaosTime/4 }

// verdict is what is wrong in one reading of the state; empty when all is
// well.
type verdict struct {
	lost           []string // acknowledged, not stored
	duplicated     []string // stored more than once
	undecodable    []uint64 // stored unmarked messages that are no valid event
	undelivered    []string // stored notify events never delivered
	redeliveries   int      // deliveries beyond the first
	storedNotify   int
	missingResults []string // stored chain events without a result
	extraResults   []string // stored chain events with more than one
	notDead        []string // stored poison messages not dead-lettered: "seq (kind)"
	deadValid      []string // valid events dead-lettered
	consumers      []string // consumers with work left: "name: pending N, ack pending N, redelivered N"
	unanswered     []string // calls never answered
	// The hook on notifyType:
	hookUndelivered []string // stored notify events neither delivered nor dead-lettered for it
	hookDeadValid   []string // valid events dead-lettered for it (allowed; reported)
	hookPoisonLive  []string // poison on its node not dead-lettered for it: "seq (kind)"
	hookDuplicates  int      // deliveries beyond the first
	hookDelivered   int      // stored notify events it delivered
}

// maxRedeliveries bounds the notify plugin's redeliveries: each kill of a
// worker, of NATS or of a dispatcher redelivers at most what was in flight.
func (v verdict) maxRedeliveries() int { return v.storedNotify/2 + 100 }

// settled reports whether waiting longer cannot change the verdict.
func (v verdict) settled() bool {
	return len(v.undelivered) == 0 && len(v.missingResults) == 0 && len(v.notDead) == 0 && len(v.consumers) == 0 &&
		len(v.hookUndelivered) == 0 && len(v.hookPoisonLive) == 0
}

// evaluate compares what traffic sent with what is stored.
func evaluate(tr *traffic, s *stored) verdict {
	var v verdict
	tr.mu.Lock()
	for id := range tr.acked {
		if s.events[id] == 0 {
			v.lost = append(v.lost, id)
		}
	}
	v.unanswered = slices.Clone(tr.unanswered)
	tr.mu.Unlock()
	v.undecodable = s.undecodable
	for id, n := range s.events {
		if n > 1 {
			v.duplicated = append(v.duplicated, id+" ×"+strconv.Itoa(n))
		}
		switch s.typeOf[id] {
		case notifyType:
			v.storedNotify++
			if s.deliveries[id] == 0 {
				v.undelivered = append(v.undelivered, fmt.Sprintf("%s (seq %d)", id, s.seqOf[id]))
			}
			switch hooked := s.hookDeliveries[id]; {
			case s.hookDead[s.seqOf[id]]:
				v.hookDeadValid = append(v.hookDeadValid, fmt.Sprintf("%s (seq %d)", id, s.seqOf[id]))
			case hooked == 0:
				v.hookUndelivered = append(v.hookUndelivered, fmt.Sprintf("%s (seq %d)", id, s.seqOf[id]))
			default:
				v.hookDelivered++
				v.hookDuplicates += hooked - 1
			}
		case chainType:
			switch n := s.results[id]; {
			case n == 0:
				v.missingResults = append(v.missingResults, fmt.Sprintf("%s (seq %d)", id, s.seqOf[id]))
			case n > 1:
				v.extraResults = append(v.extraResults, id+" ×"+strconv.Itoa(n))
			}
		}
	}
	for id, n := range s.deliveries {
		if s.events[id] > 0 {
			v.redeliveries += n - 1
		}
	}
	for seq, kind := range s.poison {
		if s.deadLetters[seq] == "" {
			v.notDead = append(v.notDead, fmt.Sprintf("%d (%s)", seq, kind))
		}
	}
	for seq := range s.onHookNode {
		if !s.hookDead[seq] {
			v.hookPoisonLive = append(v.hookPoisonLive, fmt.Sprintf("%d (%s)", seq, s.poison[seq]))
		}
	}
	for seq, sub := range s.deadLetters {
		if _, ok := s.poison[seq]; !ok && seq != 0 {
			v.deadValid = append(v.deadValid, fmt.Sprintf("%d (by %s)", seq, sub))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(s.consumers)) {
		c := s.consumers[name]
		if c.NumPending != 0 || c.NumAckPending != 0 || c.NumRedelivered != 0 {
			v.consumers = append(v.consumers, fmt.Sprintf("%s: pending %d, ack pending %d, redelivered %d", name, c.NumPending, c.NumAckPending, c.NumRedelivered))
		}
	}
	return v
}

// settle reads the state every second until it has settled or
// settleTimeout has passed, and returns the last reading.
func settle(t *testing.T, js jetstream.JetStream, tr *traffic, deliveryFiles []string, hook *chaosHook) (*stored, verdict) {
	t.Helper()
	start := time.Now()
	deadline := start.Add(settleTimeout())
	for {
		ctx, cancel := context.WithTimeout(t.Context(), settleTimeout())
		s, err := readState(ctx, js, deliveryFiles, hook)
		cancel()
		var v verdict
		if err == nil {
			v = evaluate(tr, s)
			if v.settled() {
				t.Logf("settled in %s", time.Since(start).Round(100*time.Millisecond))
				return s, v
			}
		}
		if time.Now().After(deadline) {
			if err != nil {
				t.Fatalf("read the state: %v", err)
			}
			t.Logf("not settled after %s", settleTimeout())
			return s, v
		}
		select {
		case <-t.Context().Done():
			t.Fatal("test ended while settling")
		case <-time.After(time.Second):
		}
	}
}

// check fails t for every problem in v, naming a few instances of each.
func (v verdict) check(t *testing.T) {
	t.Helper()
	problem := func(what string, items []string) {
		t.Helper()
		if len(items) > 0 {
			slices.Sort(items)
			t.Errorf("%s: %d, e.g. %v", what, len(items), items[:min(len(items), 10)])
		}
	}
	problem("acknowledged events not stored in "+events.StreamEvents+" (lost)", v.lost)
	problem("events stored more than once (duplicated)", v.duplicated)
	problem("stored chain events without a result in "+events.StreamResults, v.missingResults)
	problem("stored chain events with more than one result", v.extraResults)
	problem("stored events of "+notifyType+" never delivered to "+notify, v.undelivered)
	problem("stored poison messages not dead-lettered (stream seq)", v.notDead)
	problem("valid events dead-lettered (stream seq)", v.deadValid)
	problem("stored events of "+notifyType+" neither delivered by the webhook hook with a valid signature nor dead-lettered for it", v.hookUndelivered)
	problem("poison messages on "+notifyType+" not dead-lettered for the webhook hook (stream seq)", v.hookPoisonLive)
	if len(v.hookDeadValid) > 0 {
		// At-least-once allows it (the hook's attempts ran out); the
		// receiver's bounded failures should not get there: reported.
		slices.Sort(v.hookDeadValid)
		t.Logf("valid events dead-lettered for the webhook hook: %d, e.g. %v", len(v.hookDeadValid), v.hookDeadValid[:min(len(v.hookDeadValid), 10)])
	}
	problem("consumers with work left", v.consumers)
	problem("calls never answered within "+callGiveUp.String(), v.unanswered)
	if len(v.undecodable) > 0 {
		t.Errorf("stored messages that are neither valid events nor poison: %d, e.g. seq %v", len(v.undecodable), v.undecodable[:min(len(v.undecodable), 10)])
	}
	if v.redeliveries > v.maxRedeliveries() {
		t.Errorf("%s was redelivered %d times for %d events, more than the bound %d", notify, v.redeliveries, v.storedNotify, v.maxRedeliveries())
	}
}
