package dispatcher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/internal/netguard"
	"github.com/hookbus/hookbus/pkg/events"
)

// stateFlushInterval is how often a hook's coalesced successes are
// written, and how often it is checked for being disabled.
const stateFlushInterval = time.Second

// stateWriteTimeout bounds one write of a hook's state.
const stateWriteTimeout = 5 * time.Second

// maxStateConflicts bounds the re-reads of one state write.
const maxStateConflicts = 10

// dispatcherSource is the CloudEvents source of the commands the
// dispatcher sends.
const dispatcherSource = "/hookbus/dispatcher"

// hookState records the delivery attempts of one hook in bucket
// hookbus_hook_state: a failure, and the first success after one, are
// written at once; other successes are coalesced and written at most once
// per stateFlushInterval, and when the hook stops. Writes compare and
// swap: replicas sharing the hook merge their attempts into the latest
// state. It also asks the registry to disable a hook failing longer than
// disableAfter.
type hookState struct {
	kv           jetstream.KeyValue
	id           string
	disableAfter time.Duration
	disable      func(ctx context.Context, id, reason string, since time.Time) error
	log          *slog.Logger

	mu      sync.Mutex
	hook    events.Hook
	loaded  bool
	known   events.HookState // as last read or written
	rev     uint64           // its revision; 0: none stored
	pending []events.HookAttempt
	dirty   bool      // a write is due at the next flush
	dropped bool      // the hook is deleted: write nothing more
	stopped bool      // the flusher has stopped: write every attempt at once
	asked   time.Time // the FailingSince a disable was asked for
}

func newHookState(kv jetstream.KeyValue, h events.Hook, disableAfter time.Duration, disable func(context.Context, string, string, time.Time) error, log *slog.Logger) *hookState {
	return &hookState{kv: kv, id: h.ID, hook: h, disableAfter: disableAfter, disable: disable, log: log.With("hook", h.ID)}
}

// setHook updates the hook the state is about; an enable makes a write
// due, clearing the failures before it.
func (st *hookState) setHook(h events.Hook) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if !h.Enabled.Equal(st.hook.Enabled) {
		st.dirty = true
	}
	st.hook = h
}

// drop stops every later write: the hook is deleted. A write under way
// ends before drop returns.
func (st *hookState) drop() {
	st.mu.Lock()
	st.dropped = true
	st.mu.Unlock()
}

// record adds attempt a: a failure, or a success after a failure or as
// the first attempt seen, is written at once; other successes wait for
// the next flush. The write outlives ctx's end (shutting down), bounded by
// stateWriteTimeout.
func (st *hookState) record(ctx context.Context, a events.HookAttempt) {
	st.mu.Lock()
	defer st.mu.Unlock()
	failing := st.failing()
	st.pending = append(st.pending, a)
	if len(st.pending) > maxPendingAttempts {
		// Writes keep failing: keep what the attempts say, not them all.
		st.pending = compactAttempts(st.pending)
	}
	if a.OK && !failing && st.loaded && !st.stopped {
		st.dirty = true
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stateWriteTimeout)
	defer cancel()
	if err := st.write(ctx); err != nil {
		st.dirty = true
		st.log.Warn("hook delivery state not written; tried again in a second", "err", err)
	}
}

// run flushes coalesced attempts and checks whether the hook fails too
// long, every stateFlushInterval until ctx ends, then flushes once more.
func (st *hookState) run(ctx context.Context) {
	t := time.NewTicker(stateFlushInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			st.mu.Lock()
			st.stopped = true
			st.mu.Unlock()
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stateWriteTimeout)
			defer cancel()
			st.flush(fctx)
			return
		case <-t.C:
			st.flush(ctx)
			st.checkDisable(ctx)
		}
	}
}

// flush writes what is due.
func (st *hookState) flush(ctx context.Context) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if !st.dirty && len(st.pending) == 0 {
		return
	}
	if err := st.write(ctx); err != nil {
		st.log.Warn("hook delivery state not written", "err", err)
	}
}

// failing reports whether the view has failing_since set, without
// building it: whether the last attempt failed; st.mu held.
func (st *hookState) failing() bool {
	if n := len(st.pending); n > 0 {
		return !st.pending[n-1].OK
	}
	return !st.known.FailingSince.IsZero() && st.known.FailingSince.After(st.hook.Enabled)
}

// maxPendingAttempts bounds the attempts waiting for a write; past it they
// are compacted (compactAttempts).
const maxPendingAttempts = 4 * events.HookAttemptsKept

// compactAttempts returns attempts (oldest first) shortened to the last
// events.HookAttemptsKept, preceded by at most three older ones that keep
// what the dropped said once recorded (events.HookState.Record): the last
// success (last delivery), the first failure after it (failing since;
// the first failure when none succeeded), and the last failure (last
// error). Recorded onto any state, the result gives the state all of
// attempts would.
func compactAttempts(attempts []events.HookAttempt) []events.HookAttempt {
	keep := events.HookAttemptsKept
	if len(attempts) <= keep+3 {
		return attempts
	}
	dropped, tail := attempts[:len(attempts)-keep], attempts[len(attempts)-keep:]
	lastOK, firstFail, lastFail := -1, -1, -1
	for i, a := range dropped {
		switch {
		case a.OK:
			lastOK, firstFail = i, -1
		default:
			if firstFail < 0 {
				firstFail = i
			}
			lastFail = i
		}
	}
	out := make([]events.HookAttempt, 0, keep+3)
	for i, a := range dropped {
		if i == lastOK || i == firstFail || i == lastFail {
			out = append(out, a)
		}
	}
	return append(out, tail...)
}

// view is the known state with the pending attempts applied; st.mu held.
func (st *hookState) view() events.HookState {
	v := st.known
	v.ID = st.id
	v.Attempts = slices.Clone(v.Attempts)
	// Failures before the hook was last enabled no longer count.
	if !v.FailingSince.IsZero() && !v.FailingSince.After(st.hook.Enabled) {
		v.FailingSince = time.Time{}
	}
	for _, a := range st.pending {
		v.Record(a)
	}
	if v.Attempts == nil {
		v.Attempts = []events.HookAttempt{}
	}
	return v
}

// write stores the view with compare-and-swap, re-reading and merging on
// a conflict; st.mu held.
func (st *hookState) write(ctx context.Context) error {
	if st.dropped {
		st.pending, st.dirty = nil, false
		return nil
	}
	for range maxStateConflicts {
		if !st.loaded {
			if err := st.load(ctx); err != nil {
				return err
			}
		}
		next := st.view()
		b, err := json.Marshal(next)
		if err != nil {
			return fmt.Errorf("encode the state of hook %s: %w", st.id, err)
		}
		var rev uint64
		if st.rev == 0 {
			rev, err = st.kv.Create(ctx, st.id, b)
		} else {
			rev, err = st.kv.Update(ctx, st.id, b, st.rev)
		}
		if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			st.loaded = false // another replica wrote: merge into its state
			continue
		}
		if err != nil {
			return fmt.Errorf("write the state of hook %s: %w", st.id, err)
		}
		st.known, st.rev, st.pending, st.dirty = next, rev, nil, false
		return nil
	}
	return fmt.Errorf("write the state of hook %s: %d revision conflicts in a row", st.id, maxStateConflicts)
}

// load reads the stored state; st.mu held.
func (st *hookState) load(ctx context.Context) error {
	entry, err := st.kv.Get(ctx, st.id)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		st.known, st.rev = events.HookState{ID: st.id}, 0
	case err != nil:
		return fmt.Errorf("read the state of hook %s: %w", st.id, err)
	default:
		var known events.HookState
		if err := json.Unmarshal(entry.Value(), &known); err != nil {
			// Unreadable: written again from scratch.
			st.log.Warn("stored hook delivery state unreadable: replaced", "err", err)
			known = events.HookState{ID: st.id}
		}
		st.known, st.rev = known, entry.Revision()
	}
	st.loaded = true
	return nil
}

// checkDisable asks the registry to disable the hook once it has failed
// longer than disableAfter; once per failing spell, again after a failed
// request.
func (st *hookState) checkDisable(ctx context.Context) {
	st.mu.Lock()
	if !st.loaded && st.load(ctx) != nil {
		st.mu.Unlock()
		return
	}
	v, h, asked := st.view(), st.hook, st.asked
	st.mu.Unlock()
	since := v.FailingSince
	if h.Status == events.HookDisabled || since.IsZero() || since.Equal(asked) || time.Since(since) < st.disableAfter {
		return
	}
	reason := fmt.Sprintf("failing since %s (longer than %s): %s", since.UTC().Format(time.RFC3339), st.disableAfter, v.LastError)
	if err := st.disable(ctx, st.id, reason, since); err != nil {
		st.log.Warn("ask the registry to disable a failing hook", "err", err)
		return
	}
	st.log.Warn("hook failing too long: disable asked", "since", since)
	st.mu.Lock()
	st.asked = since
	st.mu.Unlock()
}

// requestDisable sends the command hookbus.cmd.hook.disable.<id> through
// HOOKBUS_COMMANDS for the registry, which stores the status and
// announces it; replicas asking for the same failing spell send the same
// event id, stored once.
func (s *Service) requestDisable(ctx context.Context, id, reason string, since time.Time) error {
	subject, err := events.HookCommandSubject(events.HookDisable, id)
	if err != nil {
		return err
	}
	e := event.New()
	e.SetID(fmt.Sprintf("disable-%s-%d", id, since.UnixNano()))
	e.SetSource(dispatcherSource)
	e.SetType(events.HookCommandTypePrefix + string(events.HookDisable))
	e.SetTime(time.Now().UTC())
	if err := e.SetData(event.ApplicationJSON, events.HookCommand{ID: id, Reason: reason}); err != nil {
		return err
	}
	msg, err := s.codec.Encode(subject, &e)
	if err != nil {
		return err
	}
	if _, err := s.js.PublishMsg(ctx, msg); err != nil {
		return fmt.Errorf("publish %s: %w", subject, err)
	}
	return nil
}

// attempt describes the delivery d, started at start and lasting took, as
// a hook attempt: its HTTP status, or a word for what kept it from one.
func (d delivery) attempt(start time.Time, took time.Duration) events.HookAttempt {
	a := events.HookAttempt{Time: start.UTC(), OK: d.err == nil, DurationMS: float64(took.Microseconds()) / 1000}
	if d.err != nil {
		a.Error = d.err.Error()
	}
	var nerr net.Error
	switch {
	case d.status != 0:
		a.Status = events.HTTPAttemptStatus(d.status)
	case errors.Is(d.err, netguard.ErrRefused):
		a.Status = "blocked"
	case errors.Is(d.err, context.DeadlineExceeded), errors.Is(d.err, os.ErrDeadlineExceeded), errors.As(d.err, &nerr) && nerr.Timeout():
		a.Status = "timeout"
	case errors.Is(d.err, syscall.ECONNREFUSED):
		a.Status = "refused"
	default:
		a.Status = "error"
	}
	return a
}
