package main

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
)

// settle waits until the dispatcher has read every stored event and
// collects garbage, so that each measurement starts from the same quiet
// process whatever ran before it.
func (r *runner) settle(ctx context.Context) error {
	if err := r.env.dispatcherIdle(ctx); err != nil {
		return err
	}
	runtime.GC()
	return nil
}

// publishSync publishes n events of typ from publishers goroutines on the
// side's one connection, each waiting for every acknowledgement, and
// returns events/s and the heap allocations of the whole process per
// event (runtime.MemStats.Mallocs, the server and Hookbus's services
// included; counted until the dispatcher has read the events too).
func (r *runner) publishSync(ctx context.Context, s side, typ string, n, publishers int) (rate, allocs float64, err error) {
	if err := s.Setup(ctx, typ); err != nil {
		return 0, 0, err
	}
	// One untimed publish: the first of a subject sets up what later
	// ones reuse on every side.
	if err := s.PublishOne(ctx, typ, idOf(typ, n)); err != nil {
		return 0, 0, err
	}
	if err := r.settle(ctx); err != nil {
		return 0, 0, err
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	var next atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	for range publishers {
		g.Go(func() error {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return nil
				}
				if err := s.PublishOne(gctx, typ, idOf(typ, i)); err != nil {
					return err
				}
			}
		})
	}
	err = g.Wait()
	elapsed := time.Since(start)
	if err != nil {
		return 0, 0, err
	}
	if err := r.env.dispatcherIdle(ctx); err != nil {
		return 0, 0, err
	}
	runtime.ReadMemStats(&after)
	return float64(n) / elapsed.Seconds(), float64(after.Mallocs-before.Mallocs) / float64(n), nil
}

// publishAsync times n asynchronous publishes with window acknowledgements
// outstanding, until the last acknowledgement.
func (r *runner) publishAsync(ctx context.Context, s side, typ string, n, window int) (float64, error) {
	if err := s.Setup(ctx, typ); err != nil {
		return 0, err
	}
	if err := s.PublishOne(ctx, typ, idOf(typ, n)); err != nil {
		return 0, err
	}
	if err := r.settle(ctx); err != nil {
		return 0, err
	}
	start := time.Now()
	if err := s.PublishAsync(ctx, typ, typ, n, window); err != nil {
		return 0, err
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// tally counts the distinct events a subscriber got, closing done when it
// has all n.
type tally struct {
	seen []atomic.Bool
	got  atomic.Int64
	dups atomic.Int64
	n    int64
	done chan struct{}
}

func newTally(n int) *tally {
	return &tally{seen: make([]atomic.Bool, n), n: int64(n), done: make(chan struct{})}
}

func (t *tally) handle(id string) {
	i := indexOf(id)
	if i < 0 || i >= len(t.seen) {
		return
	}
	if !t.seen[i].CompareAndSwap(false, true) {
		t.dups.Add(1)
		return
	}
	if t.got.Add(1) == t.n {
		close(t.done)
	}
}

// deliver makes subs durable queues on typ, stores n events (not timed),
// then times from the start of the subscribers until each of them has
// handled every event. It returns events/s: n over that time (with
// several subscribers, each event reached all of them).
func (r *runner) deliver(ctx context.Context, s side, typ, name string, n, subs int) (float64, error) {
	names := make([]string, subs)
	for i := range names {
		names[i] = fmt.Sprintf("%s-%d", name, i)
		if err := s.Prepare(ctx, typ, names[i]); err != nil {
			return 0, err
		}
	}
	if err := s.Store(ctx, typ, typ, n); err != nil {
		return 0, err
	}
	if err := r.settle(ctx); err != nil {
		return 0, err
	}
	tallies := make([]*tally, subs)
	stops := make([]func(), 0, subs)
	defer func() {
		for _, stop := range stops {
			stop()
		}
	}()
	start := time.Now()
	for i, nm := range names {
		tallies[i] = newTally(n)
		stop, err := s.Subscribe(ctx, typ, nm, r.cfg.window, tallies[i].handle)
		if err != nil {
			return 0, err
		}
		stops = append(stops, stop)
	}
	timeout := time.After(r.cfg.timeout(n * subs))
	for i, t := range tallies {
		select {
		case <-t.done:
		case <-timeout:
			err := fmt.Errorf("subscriber %d got %d of %d events in time", i, t.got.Load(), n)
			if d, ok := s.(diagnoser); ok {
				err = fmt.Errorf("%w (%s)", err, d.diagnose(ctx, names[i]))
			}
			return 0, err
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	elapsed := time.Since(start)
	for i, t := range tallies {
		if d := t.dups.Load(); d > 0 {
			r.logf("  note: %s subscriber %d got %d events twice", s.Name(), i, d)
		}
	}
	return float64(n) / elapsed.Seconds(), nil
}

// latency runs one subscriber and publishes count events, one at a time,
// at rate events/s (each at its slot, or at once when late), and returns
// the 50th and 99th percentiles of the time from just before the publish
// call to the handler, leaving out the first tenth as warm-up.
func (r *runner) latency(ctx context.Context, s side, typ, name string, rate, count int) (p50, p99 time.Duration, err error) {
	if err := s.Prepare(ctx, typ, name); err != nil {
		return 0, 0, err
	}
	if err := r.settle(ctx); err != nil {
		return 0, 0, err
	}
	base := time.Now()
	sent := make([]atomic.Int64, count+1) // ns since base; event count is the readiness probe
	lat := make([]atomic.Int64, count+1)
	seen := make([]atomic.Bool, count+1)
	var got atomic.Int64
	ready, done := make(chan struct{}), make(chan struct{})
	handle := func(id string) {
		now := int64(time.Since(base))
		i := indexOf(id)
		if i < 0 || i > count || !seen[i].CompareAndSwap(false, true) {
			return
		}
		lat[i].Store(now - sent[i].Load())
		if i == count {
			close(ready)
		} else if got.Add(1) == int64(count) {
			close(done)
		}
	}
	stop, err := s.Subscribe(ctx, typ, name, r.cfg.window, handle)
	if err != nil {
		return 0, 0, err
	}
	defer stop()
	// The subscriber is ready once one event went through it.
	sent[count].Store(int64(time.Since(base)))
	if err := s.PublishOne(ctx, typ, idOf(typ, count)); err != nil {
		return 0, 0, err
	}
	select {
	case <-ready:
	case <-time.After(30 * time.Second):
		return 0, 0, fmt.Errorf("subscriber not ready after 30s")
	}
	interval := time.Second / time.Duration(rate)
	t0 := time.Now()
	for i := range count {
		if d := time.Until(t0.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d)
		}
		sent[i].Store(int64(time.Since(base)))
		if err := s.PublishOne(ctx, typ, idOf(typ, i)); err != nil {
			return 0, 0, err
		}
	}
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		return 0, 0, fmt.Errorf("got %d of %d events after 30s", got.Load(), count)
	}
	ds := make([]time.Duration, 0, count)
	for i := count / 10; i < count; i++ {
		ds = append(ds, time.Duration(lat[i].Load()))
	}
	slices.Sort(ds)
	return percentile(ds, 0.50), percentile(ds, 0.99), nil
}

// percentile of sorted ds, nearest rank.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	k := int(p*float64(len(ds))+0.5) - 1
	return ds[min(max(k, 0), len(ds)-1)]
}
