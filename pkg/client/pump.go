package client

import (
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// maxDrainErrors bounds the errors a drained iterator may return before it
// says it is closed (a late heartbeat error, ...).
const maxDrainErrors = 10

// pump runs a handler for each event of a notify consumer on as many
// goroutines as the worker's concurrency: each one holds a slot of the
// worker's (a buffered channel as large as WithConcurrency, so that the
// pumps of a worker, the current one and those still finishing handlers,
// never run more handlers together) and loops over the consumer's
// iterator, taking the next event and running its handler in place. One
// goroutine at a time waits in the iterator's Next (it holds turn), the
// others wait for their turn.
//
// One ticker, every eighth of the ack wait, keeps the events the pump has
// taken in progress: each is reported when JetStream may not have heard of
// it for a quarter of the ack wait, so a report is always due more than
// half the ack wait before JetStream would deliver the event again.
//
// The iterator prefetches up to the concurrency of events, which nothing
// reports in progress until a goroutine takes them. While an event waits
// there, no goroutine waits long for its turn or in Next (the event would
// be taken at once), so the iterator was empty at some moment since the
// previous tick when a goroutine has been waiting since before it. When the iterator has not been seen empty for a
// quarter of the ack wait (every goroutine busy with slow handlers, or a
// backlog flowing through), the ticker stops it and takes out what it
// holds, keeping that in progress until a goroutine is free; the next free
// goroutine with nothing held opens a new iterator. An event thus waits
// untracked in an iterator for less than three eighths of the ack wait,
// and the pump counts an event taken from Next as that old.
type pump struct {
	slots   chan struct{}
	ackWait time.Duration // the shortest wait before JetStream redelivers
	open    func() (jetstream.MessagesContext, error)
	handle  func(jetstream.Msg)
	nak     func(jetstream.Msg)
	run     func(func()) // starts a goroutine (Serve's WaitGroup.Go)
	// abandon is closed when Serve returns without waiting for the
	// handlers: the ticker ends, leaving their events to be delivered
	// again.
	abandon <-chan struct{}

	// turn is the right to wait in the iterator's Next, held by one
	// goroutine at a time: a channel, not a mutex, which many waiters
	// make hand over and yield on every event (docs/decisions.md).
	turn     chan struct{}
	stopping chan struct{} // closed when the pump stops taking events
	done     chan struct{} // closed when the last goroutine has ended

	mu       sync.Mutex
	it       jetstream.MessagesContext // nil until opened, and while a stopped one is emptied
	emptying chan struct{}             // closed when the ticker has taken what a stopped iterator held
	held     []taken                   // taken out of a stopped iterator, waiting for a goroutine
	runners  []*runner
	live     int       // goroutines not ended
	ticks    uint64    // the ticker's ticks so far
	lastTick time.Time // when the last one was
	emptyAt  time.Time // when the iterator was last known to hold nothing
	stopped  bool
	err      error // why the pump stopped by itself
}

// taken is an event the pump holds, with when JetStream may last have
// heard of it.
type taken struct {
	m       jetstream.Msg
	touched time.Time
}

// runner is a goroutine of the pump: the event it handles (m nil while it
// has none), and whether it waits in the iterator's Next, since which tick.
type runner struct {
	taken
	pulling bool
	since   uint64
}

func newPump(slots chan struct{}, ackWait time.Duration, open func() (jetstream.MessagesContext, error), handle, nak func(jetstream.Msg), run func(func()), abandon <-chan struct{}) *pump {
	p := &pump{
		slots: slots, ackWait: ackWait, open: open, handle: handle, nak: nak, run: run, abandon: abandon,
		turn: make(chan struct{}, 1), stopping: make(chan struct{}), done: make(chan struct{}),
		live: cap(slots),
	}
	p.turn <- struct{}{}
	return p
}

// start runs the pump's goroutines, each once it has a slot, and its
// ticker.
func (p *pump) start() {
	for range cap(p.slots) {
		p.run(p.loop)
	}
	p.run(p.tick)
}

func (p *pump) loop() {
	defer p.ended()
	select {
	case p.slots <- struct{}{}:
	case <-p.stopping:
		return
	}
	defer func() { <-p.slots }()
	r := &runner{}
	p.mu.Lock()
	p.runners = append(p.runners, r)
	p.mu.Unlock()
	for {
		m, ok := p.next(r)
		if !ok {
			return
		}
		p.handle(m)
	}
}

// next returns the next event for r, or false when the pump stopped.
func (p *pump) next(r *runner) (jetstream.Msg, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	r.m = nil
	for {
		switch {
		case p.stopped:
			p.runners = slices.DeleteFunc(p.runners, func(x *runner) bool { return x == r })
			return nil, false
		case len(p.held) > 0:
			r.taken = p.held[0]
			p.held = p.held[1:]
			return r.m, true
		case p.emptying != nil:
			ch := p.emptying
			p.mu.Unlock()
			<-ch
			p.mu.Lock()
			continue
		case p.it == nil:
			it, err := p.open()
			if err != nil {
				p.fail(err)
				continue
			}
			p.it, p.emptyAt = it, time.Now()
		}
		it := p.it
		r.pulling, r.since = true, p.ticks
		p.mu.Unlock()
		<-p.turn
		m, err := it.Next()
		p.turn <- struct{}{}
		p.mu.Lock()
		r.pulling = false
		switch {
		case err != nil:
			if p.it == it && !p.stopped {
				// No heartbeat, the consumer deleted, the connection
				// closed: Serve looks the consumer up again.
				p.it = nil
				it.Stop()
				p.fail(err)
			}
		case p.stopped:
			p.mu.Unlock()
			p.nak(m)
			p.mu.Lock()
		default:
			r.taken = taken{m, time.Now().Add(-3 * p.ackWait / 8)}
			return m, true
		}
	}
}

// ended counts a goroutine out.
func (p *pump) ended() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.live--; p.live == 0 {
		close(p.done)
	}
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
	held, it := p.held, p.it
	p.held, p.it = nil, nil
	p.mu.Unlock()
	for _, t := range held {
		p.nak(t.m)
	}
	if it != nil {
		// A goroutine waiting in Next takes some of the rest and gives it
		// back too.
		it.Drain()
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

// tick keeps the events the pump holds in progress, and takes the events
// out of an iterator not known to be empty for a quarter of the ack wait,
// until the last goroutine has ended or abandon is closed.
func (p *pump) tick() {
	ticker := time.NewTicker(max(p.ackWait/8, time.Millisecond))
	defer ticker.Stop()
	var touch []jetstream.Msg
	for {
		select {
		case <-p.done:
			return
		case <-p.abandon:
			return
		case <-ticker.C:
		}
		now := time.Now()
		p.mu.Lock()
		touch = touch[:0]
		for _, r := range p.runners {
			touch = p.due(touch, &r.taken, now)
			if r.pulling && r.since < p.ticks {
				// It has waited in Next since before the last tick: the
				// iterator held nothing at some moment since then.
				p.emptyAt = p.lastTick
			}
		}
		for i := range p.held {
			touch = p.due(touch, &p.held[i], now)
		}
		p.ticks++
		p.lastTick = now
		var stale jetstream.MessagesContext
		if p.it != nil && !p.stopped && now.Sub(p.emptyAt) >= p.ackWait/4 {
			stale, p.it = p.it, nil
			p.emptying = make(chan struct{})
		}
		p.mu.Unlock()
		for _, m := range touch {
			_ = m.InProgress()
		}
		if stale != nil {
			p.run(func() { p.empty(stale) })
		}
	}
}

// due appends t's event to touch when JetStream may not have heard of it
// for a quarter of the ack wait, counting it as heard of now. Called with
// p.mu held.
func (p *pump) due(touch []jetstream.Msg, t *taken, now time.Time) []jetstream.Msg {
	if t.m == nil || now.Sub(t.touched) < p.ackWait/4 {
		return touch
	}
	t.touched = now
	return append(touch, t.m)
}

// empty takes what the stopped iterator it prefetched into held, reporting
// each event in progress (or giving it back if the pump stopped
// meanwhile).
func (p *pump) empty(it jetstream.MessagesContext) {
	it.Drain()
	takeAll(it, func(m jetstream.Msg) {
		_ = m.InProgress()
		p.mu.Lock()
		stopped := p.stopped
		if !stopped {
			p.held = append(p.held, taken{m, time.Now()})
		}
		p.mu.Unlock()
		if stopped {
			p.nak(m)
		}
	})
	p.mu.Lock()
	close(p.emptying)
	p.emptying = nil
	p.mu.Unlock()
}
