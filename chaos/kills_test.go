//go:build chaos

package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"
)

// killLoop is one loop of SIGKILLs: every gap (random in [minGap,
// 2*minGap)) it kills one of targets (the kinds of process in turn, so each
// kind is killed as often; a random one of that kind), leaves it down for up to maxDown,
// starts it again and waits until it is ready, until ctx ends. Loops run
// one target down at a time, so a loop over the NATS nodes only ever takes
// a minority down.
type killLoop struct {
	targets []*proc
	minGap  time.Duration
	maxDown time.Duration
}

// kills records what the loops did.
type kills struct {
	mu       sync.Mutex
	byKind   map[string]int
	restarts []restartAt // restarts of Hookbus and NATS (not of workers)
	errs     []error     // restarts that did not become ready
}

type restartAt struct {
	name string
	at   time.Time
}

func newKills() *kills { return &kills{byKind: map[string]int{}} }

func (l killLoop) run(ctx context.Context, k *kills) {
	byKind := map[string][]*proc{}
	var kinds []string
	for _, p := range l.targets {
		if _, seen := byKind[p.kind]; !seen {
			kinds = append(kinds, p.kind)
		}
		byKind[p.kind] = append(byKind[p.kind], p)
	}
	for turn := 0; ; turn++ {
		select {
		case <-ctx.Done():
			return
		case <-time.After(l.minGap + rand.N(l.minGap)):
		}
		of := byKind[kinds[turn%len(kinds)]]
		p := of[rand.N(len(of))]
		p.kill()
		k.mu.Lock()
		k.byKind[p.kind]++
		k.mu.Unlock()
		if l.maxDown > 0 {
			time.Sleep(rand.N(l.maxDown)) // down for a while, as a real crash is
		}
		at := time.Now()
		// The restart gets its own context: a process must never stay
		// down because the loop's time is up.
		err := restart(context.Background(), p)
		k.mu.Lock()
		if err != nil {
			k.errs = append(k.errs, fmt.Errorf("restart %s: %w", p.name, err))
		}
		if p.kind != "worker" {
			k.restarts = append(k.restarts, restartAt{p.name, at})
		}
		k.mu.Unlock()
	}
}

// recovery is the longest time from a restart of Hookbus or NATS until a
// publish was acknowledged and a call answered again, and that restart;
// never names restarts after which traffic did not flow again.
func (k *kills) recovery(tr *traffic) (longest time.Duration, slowest string, never []string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for _, r := range k.restarts {
		ack, okAck := firstAfter(tr.ackTimes, r.at)
		answer, okAnswer := firstAfter(tr.answerTimes, r.at)
		if !okAck || !okAnswer {
			never = append(never, r.name+" at "+r.at.Format("15:04:05.000"))
			continue
		}
		if d := max(ack.Sub(r.at), answer.Sub(r.at)); d > longest {
			longest, slowest = d, fmt.Sprintf("%s at %s (publish acknowledged after %s, call answered after %s)",
				r.name, r.at.Format("15:04:05.000"), ack.Sub(r.at).Round(10*time.Millisecond), answer.Sub(r.at).Round(10*time.Millisecond))
		}
	}
	return longest, slowest, never
}
