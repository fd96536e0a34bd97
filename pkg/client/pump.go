package client

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Timings of the pump.
const (
	// tick is the monitor's period while the pump has events in hand.
	tick = time.Millisecond
	// stallAfter is how long the leader's handler may run before another
	// goroutine takes over pulling. Handlers are timed with the monitor's
	// clock, a tick coarse: the takeover comes between stallAfter-tick and
	// stallAfter after the handler began.
	stallAfter = 2 * tick
	// eagerAfter: when handlers take this long on average, the leader
	// hands pulling over before it runs each handler, rather than after
	// stallAfter. Below it, running the handler in place is cheaper than a
	// hand-off to another goroutine.
	eagerAfter = 20 * time.Microsecond
)

// pump runs a handler for each event of a notify consumer, at most max at
// once, keeping every event it has taken in progress until its handler
// returns.
//
// Handing each event to a goroutine costs more than a fast handler does, so
// the pump works as leader and followers: one goroutine at a time, the
// leader, takes the next event from the consumer and runs the handler
// itself. Another goroutine (up to max) leads instead
//   - at once, before the handler runs, when recent handlers took eagerAfter
//     or more on average;
//   - when the leader's handler has run for stallAfter (the monitor starts
//     one);
//   - when a goroutine finishes its handler while the leader is busy (it
//     takes over).
//
// A goroutine that finishes while another one leads and waits for events
// has nothing to do and ends.
//
// The consumer's iterator prefetches up to max events, which cannot be kept
// in progress until the pump takes them. When every handler has been busy
// for a quarter of the ack wait, the pump therefore stops the iterator and
// takes what it prefetched, keeping those events in progress until handlers
// free up; it pulls again once they have been handled.
type pump struct {
	max     int
	ackWait time.Duration // the shortest wait before JetStream redelivers
	open    func() (jetstream.MessagesContext, error)
	handle  func(jetstream.Msg)
	nak     func(jetstream.Msg)
	clock   func() time.Time

	avg  atomic.Int64 // moving average of handler durations, in ns
	wake chan struct{}
	done chan struct{} // closed when every goroutine of the pump has ended

	mu             sync.Mutex
	it             jetstream.MessagesContext // nil while not pulling
	held           []taken                   // taken from a stopped iterator, waiting for a handler
	runners        []*runner
	leader         *runner
	busySince      time.Time     // when the leader began its handler; zero while it waits for an event
	saturatedSince time.Time     // since when every handler has been busy; zero if not
	now            time.Time     // the monitor's clock, read at each tick
	sleeping       bool          // the monitor waits for wake
	drained        chan struct{} // closed when the monitor has taken what a stopped iterator held
	stopped        bool
	err            error // why the pump stopped by itself
}

// taken is an event the pump holds, with when it last told JetStream so.
type taken struct {
	m       jetstream.Msg
	touched time.Time
}

// runner is one goroutine of the pump and the event its handler runs.
type runner struct {
	taken
	n int // events handled
}

// sampleEvery: one handler in so many is timed for the moving average
// (reading the clock costs about as much as a fast handler's overhead).
const sampleEvery = 16

func newPump(max int, ackWait time.Duration, open func() (jetstream.MessagesContext, error), handle, nak func(jetstream.Msg)) *pump {
	return &pump{
		max: max, ackWait: ackWait, open: open, handle: handle, nak: nak, clock: time.Now,
		wake: make(chan struct{}, 1), done: make(chan struct{}), now: time.Now(),
	}
}

// start runs the pump's first goroutine and its monitor. run starts
// goroutines with it (a sync.WaitGroup's Go, so that Serve can wait for
// handlers).
func (p *pump) start(run func(func())) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.spawn(run)
	run(func() { p.monitor(run) })
}

// spawn starts a goroutine that leads. Called with p.mu held.
func (p *pump) spawn(run func(func())) {
	r := &runner{}
	p.runners = append(p.runners, r)
	p.leader, p.busySince = r, time.Time{}
	run(func() { p.loop(r, run) })
}

func (p *pump) loop(r *runner, run func(func())) {
	for {
		m, ok := p.next(r, run)
		if !ok {
			return
		}
		if r.n++; r.n%sampleEvery != 1 {
			p.handle(m)
			continue
		}
		start := p.clock()
		p.handle(m)
		d := int64(p.clock().Sub(start))
		avg := p.avg.Load()
		p.avg.Store(avg + (d-avg)/4)
	}
}

// next settles r's last event and returns its next one, or false when r is
// to end.
func (p *pump) next(r *runner, run func(func())) (jetstream.Msg, bool) {
	p.mu.Lock()
	r.m = nil
	if p.leader == r {
		p.busySince = time.Time{}
	}
	for {
		if p.stopped && (p.leader != r || p.it == nil) {
			return nil, p.exit(r)
		}
		if !p.stopped && len(p.held) > 0 {
			r.taken, p.held = p.held[0], p.held[1:]
			p.mu.Unlock()
			return r.m, true
		}
		if p.leader != r {
			if p.leader != nil && p.busySince.IsZero() {
				return nil, p.exit(r) // the leader waits for events already
			}
			p.leader, p.busySince = r, time.Time{}
		}
		if p.it == nil && p.drained != nil {
			// The monitor is taking the events of the last iterator.
			ch := p.drained
			p.mu.Unlock()
			<-ch
			p.mu.Lock()
			continue
		}
		if p.it == nil {
			it, err := p.open()
			if err != nil {
				p.fail(err)
				continue
			}
			p.it = it
		}
		it := p.it
		p.mu.Unlock()
		m, err := it.Next()
		p.mu.Lock()
		switch {
		case err != nil:
			if p.it == it {
				p.it = nil
				if !p.stopped {
					// No heartbeat, the consumer deleted, the connection
					// closed: Serve looks the consumer up again.
					it.Stop()
					p.fail(err)
				}
			}
			continue
		case p.stopped:
			p.mu.Unlock()
			p.nak(m)
			p.mu.Lock()
			continue
		}
		// The monitor's clock is at most a tick old while it runs; a
		// sleeping monitor's is older, so read the real one to wake it.
		if p.sleeping {
			p.now = p.clock()
			p.signal()
		}
		r.taken = taken{m, p.now}
		p.busySince = p.now
		if time.Duration(p.avg.Load()) >= eagerAfter && len(p.runners) < p.max {
			p.spawn(run)
		}
		p.mu.Unlock()
		return m, true
	}
}

// exit ends r. Called with p.mu held; unlocks it.
func (p *pump) exit(r *runner) bool {
	for i, x := range p.runners {
		if x == r {
			p.runners = append(p.runners[:i], p.runners[i+1:]...)
			break
		}
	}
	if p.leader == r {
		p.leader = nil
	}
	p.signal()
	p.mu.Unlock()
	return false
}

// fail stops the pump because its iterator failed. Called with p.mu held.
func (p *pump) fail(err error) {
	if !p.stopped {
		p.stopped, p.err = true, err
	}
}

// signal wakes the monitor. Called with p.mu held.
func (p *pump) signal() {
	p.sleeping = false
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// stop makes the pump take no more events: what it prefetched or holds is
// negatively acknowledged, so that it is delivered again at once, to this
// worker or another. Handlers in progress run to their end; done is closed
// after the last one.
func (p *pump) stop() {
	p.mu.Lock()
	if p.stopped && p.it == nil && len(p.held) == 0 {
		p.mu.Unlock()
		return
	}
	p.stopped = true
	held := p.held
	p.held = nil
	it := p.it
	// A leader waiting for an event takes the rest from the iterator
	// itself; otherwise stop does.
	leaderWaits := p.leader != nil && p.busySince.IsZero()
	if !leaderWaits {
		p.it = nil
	}
	p.signal()
	p.mu.Unlock()
	for _, t := range held {
		p.nak(t.m)
	}
	if it == nil {
		return
	}
	it.Drain()
	if !leaderWaits {
		p.takeAll(it, p.nak)
	}
}

// takeAll hands every event left in a drained iterator to f.
func (p *pump) takeAll(it jetstream.MessagesContext, f func(jetstream.Msg)) {
	for {
		m, err := it.Next()
		if err != nil {
			return
		}
		f(m)
	}
}

// Err is why the pump stopped by itself (its iterator failed: the
// consumer was deleted, the connection closed, ...), once done is closed;
// nil if it was stopped.
func (p *pump) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// monitor starts a leader when the leader's handler stalls, stops the
// iterator when every handler is busy, and keeps every event the pump
// holds in progress. It sleeps while the pump has nothing in hand.
func (p *pump) monitor(run func(func())) {
	defer close(p.done)
	ticker := time.NewTicker(tick)
	defer ticker.Stop()
	var lastSweep time.Time
	for {
		p.mu.Lock()
		if p.stopped && len(p.runners) == 0 {
			p.mu.Unlock()
			return
		}
		now := p.clock()
		p.now = now
		busy := !p.busySince.IsZero()
		if busy && now.Sub(p.busySince) >= stallAfter && len(p.runners) < p.max && !p.stopped {
			p.spawn(run)
			busy = false
		}
		// Saturated: every goroutine runs a handler, none pulls.
		if busy && len(p.runners) >= p.max && !p.stopped {
			if p.saturatedSince.IsZero() {
				p.saturatedSince = now
			}
		} else {
			p.saturatedSince = time.Time{}
		}
		var drain jetstream.MessagesContext
		if !p.saturatedSince.IsZero() && now.Sub(p.saturatedSince) >= p.ackWait/4 && p.it != nil {
			drain, p.it = p.it, nil
			p.drained = make(chan struct{})
		}
		var touch []jetstream.Msg
		if now.Sub(lastSweep) >= p.ackWait/4 {
			lastSweep = now
			touch = p.stale(now)
		}
		idle := !busy && len(p.held) == 0 && p.inHand() == 0
		p.mu.Unlock()

		for _, m := range touch {
			_ = m.InProgress()
		}
		if drain != nil {
			run(func() { p.hold(drain) })
		}
		if idle {
			p.mu.Lock()
			p.sleeping = p.inHand() == 0 && !p.stopped
			sleeping := p.sleeping
			p.mu.Unlock()
			if sleeping {
				<-p.wake
				continue
			}
		}
		<-ticker.C
	}
}

// hold takes what the stopped iterator it prefetched and keeps it in
// progress until a handler is free (or stop naks it).
func (p *pump) hold(it jetstream.MessagesContext) {
	it.Drain()
	p.takeAll(it, func(m jetstream.Msg) {
		_ = m.InProgress()
		p.mu.Lock()
		if p.stopped {
			p.mu.Unlock()
			p.nak(m)
			return
		}
		p.held = append(p.held, taken{m, p.clock()})
		p.mu.Unlock()
	})
	p.mu.Lock()
	close(p.drained)
	p.drained = nil
	p.mu.Unlock()
}

// inHand counts the events handlers run. Called with p.mu held.
func (p *pump) inHand() int {
	n := 0
	for _, r := range p.runners {
		if r.m != nil {
			n++
		}
	}
	return n
}

// stale returns the events held for half the ack wait or more since
// JetStream last heard of them, and marks them touched now. Called with
// p.mu held.
func (p *pump) stale(now time.Time) []jetstream.Msg {
	var out []jetstream.Msg
	touch := func(t *taken) {
		if t.m != nil && now.Sub(t.touched) >= p.ackWait/2 {
			t.touched = now
			out = append(out, t.m)
		}
	}
	for _, r := range p.runners {
		touch(&r.taken)
	}
	for i := range p.held {
		touch(&p.held[i])
	}
	return out
}
