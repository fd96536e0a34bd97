package client

import (
	"errors"
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
	// sampleEvery: one handler in so many is timed for the moving average
	// (reading the clock costs about as much as a fast handler's overhead).
	sampleEvery = 16
	// maxDrainErrors bounds the errors a drained iterator may return
	// before it says it is closed (a late heartbeat error, ...).
	maxDrainErrors = 10
)

// pump runs a handler for each event of a notify consumer, keeping every
// event it has taken in progress until its handler returns. Each of its
// goroutines holds a slot of the worker's (a buffered channel as large as
// WithConcurrency), so that the pumps of a worker, the current one and
// those still finishing handlers, never run more handlers together.
//
// Handing each event to a goroutine costs more than a fast handler does, so
// the pump works as leader and followers: one goroutine at a time, the
// leader, takes the next event and runs the handler itself. Another
// goroutine (while slots are free) leads instead
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
// The consumer's iterator prefetches up to a worker's concurrency of
// events, which cannot be kept in progress until the pump takes them. When
// every slot has been busy for a quarter of the ack wait, the monitor
// therefore stops the iterator and takes what it prefetched into held,
// keeping those events in progress until a goroutine is free; the pump
// pulls again once they have been handled.
type pump struct {
	slots   chan struct{}
	ackWait time.Duration // the shortest wait before JetStream redelivers
	open    func() (jetstream.MessagesContext, error)
	handle  func(jetstream.Msg)
	nak     func(jetstream.Msg)
	run     func(func()) // starts a goroutine (Serve's WaitGroup.Go)
	// abandon is closed when Serve returns without waiting for the
	// handlers: the monitor ends, leaving their events to be delivered
	// again.
	abandon <-chan struct{}

	avg      atomic.Int64  // moving average of handler durations, in ns
	wake     chan struct{} // wakes a sleeping monitor
	stopping chan struct{} // closed when the pump stops taking events
	done     chan struct{} // closed when the last handler has returned

	mu             sync.Mutex
	it             jetstream.MessagesContext // nil while not pulling
	held           []taken                   // taken from a stopped iterator, waiting for a goroutine
	drained        chan struct{}             // closed when the monitor has taken what a stopped iterator held
	runners        []*runner
	leader         *runner
	busySince      time.Time // when the leader began its handler; zero while it pulls
	saturatedSince time.Time // since when every slot has been busy; zero if not
	now            time.Time // the monitor's clock, read at each tick
	sleeping       bool      // the monitor waits for wake
	stopped        bool
	err            error // why the pump stopped by itself
}

// taken is an event the pump holds, with when JetStream last heard of it.
type taken struct {
	m       jetstream.Msg
	touched time.Time
}

// runner is one goroutine of the pump and the event its handler runs.
type runner struct {
	taken
	n int // events handled
}

func newPump(slots chan struct{}, ackWait time.Duration, open func() (jetstream.MessagesContext, error), handle, nak func(jetstream.Msg), run func(func()), abandon <-chan struct{}) *pump {
	return &pump{
		slots: slots, ackWait: ackWait, open: open, handle: handle, nak: nak, run: run, abandon: abandon,
		wake: make(chan struct{}, 1), stopping: make(chan struct{}), done: make(chan struct{}),
		now: time.Now(),
	}
}

// start runs the pump's monitor, which starts the first goroutine as soon
// as a slot is free.
func (p *pump) start() { p.run(p.monitor) }

// spawn starts a goroutine that leads, if a slot is free. Called with p.mu
// held.
func (p *pump) spawn() bool {
	select {
	case p.slots <- struct{}{}:
	default:
		return false
	}
	r := &runner{}
	p.runners = append(p.runners, r)
	p.leader, p.busySince = r, time.Time{}
	p.run(func() { p.loop(r) })
	return true
}

func (p *pump) loop(r *runner) {
	for {
		m, ok := p.next(r)
		if !ok {
			return
		}
		if r.n++; r.n%sampleEvery != 1 {
			p.handle(m)
			continue
		}
		start := time.Now()
		p.handle(m)
		d := int64(time.Since(start))
		avg := p.avg.Load()
		p.avg.Store(avg + (d-avg)/4)
	}
}

// next settles r's last event and returns its next one, or false when r is
// to end.
func (p *pump) next(r *runner) (jetstream.Msg, bool) {
	p.mu.Lock()
	r.m = nil
	if p.leader == r {
		p.busySince = time.Time{}
	}
	drainErrs := 0
	for {
		if p.stopped && (p.leader != r || p.it == nil) {
			return nil, p.exit(r)
		}
		if !p.stopped && len(p.held) > 0 {
			t := p.held[0]
			p.held = p.held[1:]
			p.took(r, t.m, t.touched)
			p.mu.Unlock()
			return t.m, true
		}
		if p.leader != r {
			if p.leader != nil && p.busySince.IsZero() {
				return nil, p.exit(r) // the leader pulls already
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
		case err != nil && p.it == it && p.stopped && !errors.Is(err, jetstream.ErrMsgIteratorClosed) && drainErrs < maxDrainErrors:
			drainErrs++ // a drained iterator ends with ErrMsgIteratorClosed
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
		case p.stopped:
			p.mu.Unlock()
			p.nak(m)
			p.mu.Lock()
		default:
			p.took(r, m, time.Time{})
			p.mu.Unlock()
			return m, true
		}
	}
}

// took gives r the event m to handle, which JetStream last heard of at
// touched (zero for an event just taken from the iterator). Called with
// p.mu held.
func (p *pump) took(r *runner, m jetstream.Msg, touched time.Time) {
	// The monitor's clock is at most a tick old while it runs; a sleeping
	// monitor's is older, so read the real one to wake it.
	if p.sleeping {
		p.now = time.Now()
		p.signal()
	}
	if touched.IsZero() {
		// It may have waited in the iterator for up to a quarter of the
		// ack wait (then the monitor takes it out): count that, so that
		// the first report is due that much earlier.
		touched = p.now.Add(-p.ackWait / 4)
	}
	r.taken = taken{m, touched}
	if p.leader != r {
		return
	}
	p.busySince = p.now
	if time.Duration(p.avg.Load()) >= eagerAfter {
		p.spawn()
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
	<-p.slots
	p.signal()
	p.mu.Unlock()
	return false
}

// fail stops the pump because its iterator failed. Called with p.mu held.
func (p *pump) fail(err error) {
	if !p.stopped {
		p.err = err
		p.halt()
	}
}

// halt marks the pump stopped. Called with p.mu held.
func (p *pump) halt() {
	p.stopped = true
	close(p.stopping)
	p.signal()
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
// worker or another. Handlers in progress run to their end, kept in
// progress; done is closed after the last one.
func (p *pump) stop() {
	p.mu.Lock()
	if !p.stopped {
		p.halt()
	}
	held := p.held
	p.held = nil
	it := p.it
	// A leader pulling takes the rest from the iterator itself;
	// otherwise stop does.
	leaderPulls := p.leader != nil && p.busySince.IsZero()
	if !leaderPulls {
		p.it = nil
	}
	p.mu.Unlock()
	for _, t := range held {
		p.nak(t.m)
	}
	if it == nil {
		return
	}
	it.Drain()
	if !leaderPulls {
		takeAll(it, p.nak)
	}
}

// takeAll hands every event left in a drained iterator to f.
func takeAll(it jetstream.MessagesContext, f func(jetstream.Msg)) {
	for errs := 0; errs < maxDrainErrors; {
		m, err := it.Next()
		switch {
		case errors.Is(err, jetstream.ErrMsgIteratorClosed):
			return
		case err != nil:
			errs++
		default:
			f(m)
		}
	}
}

// Err is why the pump stopped by itself (its iterator failed: the
// consumer was deleted, the connection closed, ...), once stopping is
// closed; nil if it was stopped.
func (p *pump) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// monitor starts the first goroutine and a new leader when the leader's
// handler stalls, stops the iterator when every slot is busy, and keeps
// every event the pump holds in progress. It sleeps while the pump has
// nothing in hand and closes done after the last handler, or once
// abandon is closed.
func (p *pump) monitor() {
	defer close(p.done)
	ticker := time.NewTicker(tick)
	defer ticker.Stop()
	for {
		p.mu.Lock()
		if p.stopped && len(p.runners) == 0 && p.drained == nil {
			p.mu.Unlock()
			return
		}
		now := time.Now()
		p.now = now
		busy := !p.busySince.IsZero()
		switch {
		case p.stopped:
		case p.leader == nil:
			p.spawn() // the first goroutine, or another pump freed a slot
		case busy && now.Sub(p.busySince) >= stallAfter && p.spawn():
			busy = false
		}
		// Saturated: every slot runs a handler, no goroutine pulls.
		if busy && len(p.slots) == cap(p.slots) && !p.stopped {
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
			p.saturatedSince = now // the next iterator gets its own quarter
		}
		touch := p.stale(now)
		p.mu.Unlock()

		for _, m := range touch {
			_ = m.InProgress()
		}
		if drain != nil {
			p.run(func() { p.hold(drain) })
		}
		p.mu.Lock()
		p.sleeping = p.idle()
		sleeping := p.sleeping
		p.mu.Unlock()
		if sleeping {
			select {
			case <-p.wake:
			case <-p.abandon:
				return
			}
			continue
		}
		select {
		case <-ticker.C:
		case <-p.abandon:
			return
		}
	}
}

// idle reports whether the monitor has nothing to watch: no event in hand
// or held, none being taken from a stopped iterator, a leader pulling (or
// the pump stopped). Called with p.mu held.
func (p *pump) idle() bool {
	if !p.busySince.IsZero() || len(p.held) > 0 || p.drained != nil {
		return false
	}
	if p.leader == nil && !p.stopped {
		return false // waiting for a slot to start a goroutine
	}
	for _, r := range p.runners {
		if r.m != nil {
			return false
		}
	}
	return !p.stopped || len(p.runners) > 0
}

// hold takes what the stopped iterator it prefetched and keeps it in
// progress until a goroutine is free (or stop naks it).
func (p *pump) hold(it jetstream.MessagesContext) {
	it.Drain()
	takeAll(it, func(m jetstream.Msg) {
		_ = m.InProgress()
		p.mu.Lock()
		if p.stopped {
			p.mu.Unlock()
			p.nak(m)
			return
		}
		p.held = append(p.held, taken{m, time.Now()})
		p.signal()
		p.mu.Unlock()
	})
	p.mu.Lock()
	close(p.drained)
	p.drained = nil
	p.signal()
	p.mu.Unlock()
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
