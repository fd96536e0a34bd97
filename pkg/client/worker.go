package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/internal/durable"
	"github.com/hookbus/hookbus/internal/lifecycle"
	"github.com/hookbus/hookbus/pkg/events"
)

// Plugin is what Serve runs: a declaration (events.Plugin is its stored
// state), one handler, and optional lifecycle callbacks.
type Plugin struct {
	// Spec is registered (an upsert by name) when Serve starts. Mode may
	// be left empty: it follows from the handler that is set.
	Spec events.PluginSpec
	// Chain answers chain steps (mode chain). Set exactly one of Chain
	// and Notify.
	Chain ChainHandler
	// Notify takes deliveries from the plugin's own queue (mode notify).
	Notify NotifyHandler

	// Lifecycle callbacks, each called with the plugin's new state for
	// every lifecycle event the registry announces about the plugin while
	// Serve runs, including those of Serve's own register and start. They
	// are called one at a time, in the order of the changes, and must
	// return quickly. Nil callbacks are skipped.
	OnRegister   func(events.Plugin) // registered or re-registered (also after Delete)
	OnStart      func(events.Plugin) // started (by start or enable)
	OnRestart    func(events.Plugin) // restarted, including a release from held
	OnStop       func(events.Plugin) // stopped by an operator; Serve waits for enable
	OnHeld       func(events.Plugin) // held: a hard dependency is not running
	OnUnregister func(events.Plugin) // removed; Serve keeps running, idle
}

// ExitAction is what Serve does to the plugin's status when it returns.
type ExitAction int

// Exit actions.
const (
	// ExitLeave leaves the status as it is (default).
	ExitLeave ExitAction = iota
	// ExitDeactivate puts the plugin back to registered (Client.Delete):
	// the dispatcher skips it, and the next Serve starts it.
	ExitDeactivate
	// ExitStop stops the plugin: the next Serve waits for Enable.
	ExitStop
	// ExitUnregister removes the plugin and its notify queue.
	ExitUnregister
)

func (a ExitAction) String() string {
	switch a {
	case ExitLeave:
		return "leave"
	case ExitDeactivate:
		return "deactivate"
	case ExitStop:
		return "stop"
	case ExitUnregister:
		return "unregister"
	default:
		return "ExitAction(" + strconv.Itoa(int(a)) + ")"
	}
}

// Timings of Serve.
const (
	// exitTimeout bounds the exit action after ctx ended.
	exitTimeout = 10 * time.Second
	// cancelGrace is how long Serve waits for handlers to return once
	// their contexts are cancelled, before it returns without them.
	cancelGrace = 2 * time.Second
	// maxRetryWait is the longest pause between two attempts to find the
	// notify consumer or to pull again after an error.
	maxRetryWait = 2 * time.Second
	// pullHeartbeat is the idle heartbeat of the notify pull requests:
	// short, as a missed pull request is made again only when a heartbeat
	// is missing (docs/decisions.md).
	pullHeartbeat = time.Second
)

// Serve runs a plugin worker until ctx ends: it registers p.Spec, starts
// the plugin unless it is stopped or held, answers its chain steps or
// notify deliveries with at most WithConcurrency handlers, and at the end
// drains them (WithDrainTimeout) and applies WithExitAction. It returns
// nil after ctx ended, or the error that stopped it: an invalid p
// (events.ErrInvalid), a refused registration or start, handlers that
// ignored their cancelled context (ErrHandlersAbandoned), or a failed exit
// action. It waits out NATS or the registry not answering.
func (c *Client) Serve(ctx context.Context, p Plugin, opts ...Option) error {
	w, err := newWorker(c, p, opts)
	if err != nil {
		return err
	}
	return w.serve(ctx)
}

// worker is one running Serve.
type worker struct {
	c    *Client
	p    Plugin
	o    options
	spec events.PluginSpec // normalized
	name string
	log  *slog.Logger

	// handlerCtx is the parent of every handler's context: it outlives
	// Serve's ctx by the drain.
	handlerCtx context.Context
	slots      chan struct{} // one per handler that may run
	// replaySlots are the handler slots of replayed dead letters: one, of
	// their own, so that the replay consumer's pump, idle nearly always,
	// holds none of slots while its goroutine waits for an event.
	replaySlots chan struct{}
	handlers    sync.WaitGroup
	busy        atomic.Int64 // handlers running now
	// abandoned is closed when Serve returns without the handlers still
	// running: their events are no longer kept in progress.
	abandoned chan struct{}

	mu        sync.Mutex
	state     events.Plugin // the latest known state
	seq       uint64        // the command sequence state comes from
	removed   bool          // unregistered
	wantStart bool          // a start waits for hard dependencies
	changed   chan struct{} // closed and replaced on every change

	startMu sync.Mutex // one start command at a time

	stepsMu     sync.Mutex
	stepsClosed bool // no step handler may start any more
}

func newWorker(c *Client, p Plugin, opts []Option) (*worker, error) {
	o := options{concurrency: 8, drainTimeout: 30 * time.Second}
	if err := o.apply(inServe, opts); err != nil {
		return nil, err
	}
	if o.log == nil {
		o.log = slog.New(slog.DiscardHandler)
	}
	spec := p.Spec
	switch {
	case (p.Chain == nil) == (p.Notify == nil):
		return nil, errors.New("serve: set exactly one of Plugin.Chain and Plugin.Notify")
	case spec.Mode == "" && p.Notify != nil:
		spec.Mode = events.ModeNotify
	case spec.Mode == "":
		spec.Mode = events.ModeChain
	case spec.Mode == events.ModeChain && p.Chain == nil:
		return nil, fmt.Errorf("serve %s: mode chain needs Plugin.Chain", spec.Name)
	case spec.Mode == events.ModeNotify && p.Notify == nil:
		return nil, fmt.Errorf("serve %s: mode notify needs Plugin.Notify", spec.Name)
	}
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	spec = spec.Normalize()
	return &worker{
		c:           c,
		p:           p,
		o:           o,
		spec:        spec,
		name:        spec.Name,
		log:         o.log.With("plugin", spec.Name),
		slots:       make(chan struct{}, o.concurrency),
		replaySlots: make(chan struct{}, 1),
		abandoned:   make(chan struct{}),
		changed:     make(chan struct{}),
	}, nil
}

func (w *worker) serve(ctx context.Context) error {
	hctx, cancelHandlers := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelHandlers()
	w.handlerCtx = hctx

	// Watch before registering, so that no change is missed.
	var stopWatch func()
	err := w.retryStart(ctx, "watch lifecycle", func(ctx context.Context) (err error) {
		stopWatch, err = w.watchLifecycle(ctx)
		return err
	})
	if err != nil {
		return err
	}
	defer stopWatch()

	var sub *nats.Subscription
	if w.spec.Mode == events.ModeChain {
		// Subscribe before starting: a running plugin must have a worker.
		if sub, err = w.subscribeSteps(ctx); err != nil {
			return err
		}
	}
	// A start cut short by ctx ending is a shutdown like any other: the
	// commands sent are stored and applied before the exit action's.
	if err := w.retryStart(ctx, "register and start", w.registerAndStart); err != nil && ctx.Err() == nil {
		if sub != nil {
			_ = sub.Unsubscribe()
			w.closeSteps()
			err = errors.Join(err, w.waitHandlers(time.Now().Add(w.o.drainTimeout), cancelHandlers))
		}
		return err
	}
	w.log.Info("serving", "mode", w.spec.Mode, "event", w.spec.Event, "status", w.status())

	if sub != nil {
		<-ctx.Done()
		// Leave the chain first (the dispatcher stops sending steps), then
		// answer what is still on its way.
		exitErr := w.exit(ctx)
		deadline := time.Now().Add(w.o.drainTimeout)
		w.drainSteps(sub, deadline)
		return errors.Join(w.waitHandlers(deadline, cancelHandlers), exitErr)
	}
	// Events on the notify queue, replayed dead letters on the replay
	// consumer.
	var pulls sync.WaitGroup
	pulls.Go(func() { w.pull(ctx, events.NotifyConsumer(w.name), w.slots) })
	pulls.Go(func() { w.pull(ctx, events.ReplayConsumer(w.name), w.replaySlots) })
	pulls.Wait()
	waitErr := w.waitHandlers(time.Now().Add(w.o.drainTimeout), cancelHandlers)
	return errors.Join(waitErr, w.exit(ctx))
}

// retryStart runs a start-up step until it succeeds, fails for good, or
// ctx ends. NATS not answering (a node restarting), or the topology or the
// registry not there yet (started with the rest of a deployment), is waited out,
// logged at each try, 100 ms doubling to 5 s apart: a worker should not
// exit for what passes on its own.
func (w *worker) retryStart(ctx context.Context, what string, f func(context.Context) error) error {
	b := newBackoff(100*time.Millisecond, 5*time.Second)
	for {
		err := f(ctx)
		if err == nil || ctx.Err() != nil || !durable.Transient(err) && !errors.Is(err, ErrNotApplied) {
			return err
		}
		w.log.Warn(what+": not possible yet, will retry", "err", err)
		if !b.wait(ctx, time.Time{}) {
			return nil
		}
	}
}

// subscribeSteps answers chain steps on the plugin's queue subscription.
func (w *worker) subscribeSteps(ctx context.Context) (*nats.Subscription, error) {
	subject, err := events.PluginCallSubject(w.name)
	if err != nil {
		return nil, err
	}
	sub, err := w.c.nc.QueueSubscribe(subject, w.name, func(m *nats.Msg) {
		if err := events.CheckRequestReply(m.Reply); err != nil {
			// Only the dispatcher sends steps, from its inbox; a JetStream
			// push consumer's delivery ($JS.ACK. reply) is not one.
			w.log.Warn("chain step refused", "err", err)
			return
		}
		// Waits while every handler is busy: later steps wait in the
		// subscription, and time out at the dispatcher if that is too long.
		select {
		case w.slots <- struct{}{}:
		case <-w.handlerCtx.Done():
			w.respond(m, events.StepReply{Error: "plugin worker shutting down"})
			return
		}
		w.stepsMu.Lock()
		defer w.stepsMu.Unlock()
		if w.stepsClosed {
			<-w.slots
			w.respond(m, events.StepReply{Error: "plugin worker shutting down"})
			return
		}
		w.handlers.Go(func() {
			defer func() { <-w.slots }()
			w.respond(m, w.step(m))
		})
	})
	if err != nil {
		return nil, fmt.Errorf("serve %s: subscribe %s: %w", w.name, subject, err)
	}
	fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := w.c.nc.FlushWithContext(fctx); err != nil {
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("serve %s: subscribe %s: %w", w.name, subject, err)
	}
	return sub, nil
}

// closeSteps makes every later step callback refuse the step, so that no
// handler starts once the handlers are being waited for.
func (w *worker) closeSteps() {
	w.stepsMu.Lock()
	w.stepsClosed = true
	w.stepsMu.Unlock()
}

// drainSteps stops taking steps and lets the subscription hand over those
// already received, until deadline.
func (w *worker) drainSteps(sub *nats.Subscription, deadline time.Time) {
	defer w.closeSteps()
	closed := sub.StatusChanged(nats.SubscriptionClosed)
	if err := sub.Drain(); err != nil {
		w.log.Warn("drain chain subscription", "err", err)
		_ = sub.Unsubscribe()
		return
	}
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case <-closed:
	case <-timer.C:
		w.log.Warn("chain steps still arriving after the drain timeout")
		_ = sub.Unsubscribe()
	}
}

// ErrHandlersAbandoned is matched by Serve's error when handlers still ran
// 2 s after the drain timeout cancelled them: Serve returned without them,
// and their events come again (notify) or their steps time out (chain).
var ErrHandlersAbandoned = errors.New("handlers ignored their cancelled context")

// waitHandlers waits for every handler, cancelling their contexts once
// deadline has passed and giving up on them cancelGrace later (returning
// an error matching ErrHandlersAbandoned), then flushes the
// acknowledgements and replies.
func (w *worker) waitHandlers(deadline time.Time, cancelHandlers context.CancelFunc) (err error) {
	done := make(chan struct{})
	go func() {
		w.handlers.Wait()
		close(done)
	}()
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
		w.log.Warn("handlers still running after the drain timeout: cancelling them", "timeout", w.o.drainTimeout, "handlers", w.busy.Load())
		cancelHandlers()
		timer.Reset(cancelGrace)
		select {
		case <-done:
		case <-timer.C:
			// Their events stay unacknowledged: JetStream delivers them
			// again once no one reports them in progress.
			close(w.abandoned)
			n := w.busy.Load()
			w.log.Error("handlers ignore their cancelled context: returning without them, their events will be delivered again", "handlers", n, "grace", cancelGrace)
			err = fmt.Errorf("serve %s: %w: %d still running %s after the drain timeout", w.name, ErrHandlersAbandoned, n, cancelGrace)
		}
	}
	fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = w.c.nc.FlushWithContext(fctx)
	return err
}

// registerAndStart registers the declaration and starts the plugin if it
// is not running, stopped or held.
func (w *worker) registerAndStart(ctx context.Context) error {
	p, err := w.c.Register(ctx, w.spec)
	if err != nil {
		return fmt.Errorf("serve %s: %w", w.name, err)
	}
	w.update(p)
	switch p.Status {
	case events.StatusStarted, events.StatusRestarted:
		return nil
	case events.StatusStopped:
		w.log.Info("plugin is stopped: waiting for an operator to enable it")
		return nil
	case events.StatusHeld:
		w.log.Info("plugin is held: waiting for its hard dependencies", "depends", p.HardDepends())
		return nil
	}
	w.mu.Lock()
	w.wantStart = true
	w.mu.Unlock()
	return w.start(ctx)
}

// start starts the plugin if a start is wanted. A start refused because a
// hard dependency is not running stays wanted: the lifecycle watch tries
// again when a dependency starts.
func (w *worker) start(ctx context.Context) error {
	w.startMu.Lock()
	defer w.startMu.Unlock()
	w.mu.Lock()
	want := w.wantStart
	w.mu.Unlock()
	if !want {
		return nil
	}
	p, err := w.c.Start(ctx, w.name)
	switch {
	case err == nil:
		w.update(p)
		return nil
	case errors.Is(err, ErrDependencyNotRunning):
		w.log.Info("waiting for hard dependencies to start", "err", err)
		return nil
	case errors.Is(err, ErrStopped):
		w.mu.Lock()
		w.wantStart = false
		w.mu.Unlock()
		w.log.Info("plugin is stopped: waiting for an operator to enable it")
		return nil
	default:
		return fmt.Errorf("serve %s: %w", w.name, err)
	}
}

// exit applies the exit action, with its own deadline since ctx has ended.
func (w *worker) exit(ctx context.Context) error {
	if w.o.exit == ExitLeave {
		return nil
	}
	ectx, cancel := context.WithTimeout(context.WithoutCancel(ctx), exitTimeout)
	defer cancel()
	var err error
	switch w.o.exit {
	case ExitDeactivate:
		_, err = w.c.Delete(ectx, w.name)
	case ExitStop:
		_, err = w.c.Stop(ectx, w.name)
	case ExitUnregister:
		_, err = w.c.Unregister(ectx, w.name)
	}
	switch {
	case errors.Is(err, ErrNotFound):
		// Serve ended before its register was stored: nothing to leave.
	case err != nil:
		return fmt.Errorf("serve %s: exit action %s: %w", w.name, w.o.exit, err)
	}
	w.log.Info("plugin left", "action", w.o.exit)
	return nil
}

// update records a state from a command reply, unless a newer one is
// known already.
func (w *worker) update(p events.Plugin) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if p.CommandSeq < w.seq {
		return
	}
	w.setLocked(p, p.CommandSeq, false)
}

func (w *worker) setLocked(p events.Plugin, seq uint64, removed bool) {
	w.state, w.seq, w.removed = p, seq, removed
	if removed || p.Status != events.StatusRegistered {
		w.wantStart = false
	}
	close(w.changed)
	w.changed = make(chan struct{})
}

// status is the plugin's latest known status ("" once unregistered).
func (w *worker) status() events.Status {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.removed {
		return ""
	}
	return w.state.Status
}

// settings are the plugin's settings as the registry stores them, with
// the defaults filled in.
func (w *worker) settings() events.Settings {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.state.Name == "" {
		return w.spec.Settings // normalized: complete
	}
	return w.state.Settings.WithDefaults()
}

// event is the plugin's event type as the registry stores it.
func (w *worker) event() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.state.Name == "" {
		return w.spec.Event
	}
	return w.state.Event
}

// waitRunning blocks until the plugin runs; false once ctx has ended.
func (w *worker) waitRunning(ctx context.Context) bool {
	for ctx.Err() == nil {
		running, changed := w.running()
		if running {
			return true
		}
		select {
		case <-ctx.Done():
		case <-changed:
		}
	}
	return false
}

// running reports whether the plugin runs, and a channel closed at the
// next change of its state.
func (w *worker) running() (bool, <-chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return !w.removed && w.state.Status.Running(), w.changed
}

// watchLifecycle follows the lifecycle events of the plugin and of its
// hard dependencies, from now on, with a core subscription to what
// HOOKBUS_LIFECYCLE publishes again of each stored event
// (hookbus.notice.lifecycle.<name>, no reply subject): a worker's NATS user
// may create no consumer, nor read the originals, whose reply is the
// registry's publish acknowledgement (docs/security.md).
// After a reconnect, what passed meanwhile is read back from the registry
// (resync). The returned function stops it; no callback runs once it has
// returned.
func (w *worker) watchLifecycle(ctx context.Context) (stop func(), err error) {
	own, err := events.LifecycleNoticeSubject(w.name)
	if err != nil {
		return nil, err
	}
	subjects := []string{own}
	for _, d := range w.spec.HardDepends() {
		s, err := events.LifecycleNoticeSubject(d)
		if err != nil {
			return nil, err
		}
		subjects = append(subjects, s)
	}
	var (
		mu      sync.Mutex
		stopped bool
		starts  sync.WaitGroup
		subs    []*nats.Subscription
	)
	startCtx, cancelStarts := context.WithCancel(ctx)
	// Not in the watch's goroutine: the start's answer must not wait
	// behind the lifecycle events it causes. start does nothing unless a
	// start is wanted.
	startAgain := func() {
		starts.Go(func() {
			if err := w.start(startCtx); err != nil && startCtx.Err() == nil {
				w.log.Warn("start after a dependency started or a reconnect", "err", err)
			}
		})
	}
	// One handler for every subject, so events are taken in the order
	// they arrive on the connection.
	handle := func(m *nats.Msg) {
		mu.Lock()
		defer mu.Unlock()
		if stopped {
			return
		}
		if m.Subject == own {
			w.ownLifecycle(m)
			return
		}
		if w.dependencyStarted(m) {
			startAgain()
		}
	}
	stopAll := func() {
		for _, sub := range subs {
			_ = sub.Unsubscribe()
		}
		mu.Lock()
		stopped = true
		mu.Unlock()
		cancelStarts()
		starts.Wait()
	}
	ch := make(chan *nats.Msg, 256)
	for _, subject := range subjects {
		sub, err := w.c.nc.ChanSubscribe(subject, ch)
		if err != nil {
			stopAll()
			return nil, fmt.Errorf("serve %s: watch lifecycle: %w", w.name, err)
		}
		subs = append(subs, sub)
	}
	fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := w.c.nc.FlushWithContext(fctx); err != nil {
		stopAll()
		return nil, fmt.Errorf("serve %s: watch lifecycle: %w", w.name, err)
	}
	reconnected := w.c.nc.StatusChanged(nats.CONNECTED)
	done := make(chan struct{})
	go func(reconnected <-chan nats.Status) {
		defer close(done)
		for {
			select {
			case m := <-ch:
				handle(m)
			case _, ok := <-reconnected:
				if !ok {
					reconnected = nil // closed by stop
					continue
				}
				w.resync(startCtx)
				mu.Lock()
				if !stopped {
					startAgain() // a dependency may have started meanwhile
				}
				mu.Unlock()
			case <-startCtx.Done():
				return
			}
		}
	}(reconnected)
	return func() {
		w.c.nc.RemoveStatusListener(reconnected)
		stopAll()
		<-done
	}, nil
}

// resync reads the plugin's state back from the registry after a
// reconnect: lifecycle events sent meanwhile were not received.
func (w *worker) resync(ctx context.Context) {
	gctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	p, err := w.c.Get(gctx, w.name)
	cancel()
	switch {
	case errors.Is(err, ErrNotFound):
		return // not registered yet, or unregistered: the next command says
	case err != nil:
		w.log.Warn("read the plugin's state after a reconnect", "err", err)
		return
	}
	w.update(p)
}

// ownLifecycle records a lifecycle event of the plugin and calls its
// callback.
func (w *worker) ownLifecycle(m *nats.Msg) {
	kind, p, seq, ok := w.readLifecycle(m)
	if !ok {
		return
	}
	// A command's reply may have told the state already, or a newer one:
	// the state moves only forward, the callbacks see every change.
	w.mu.Lock()
	if seq >= w.seq {
		w.setLocked(p, seq, kind == events.LifecycleUnregistered)
	}
	w.mu.Unlock()
	w.log.Info("lifecycle", "change", kind, "status", p.Status)
	var f func(events.Plugin)
	switch kind {
	case string(events.StatusRegistered):
		f = w.p.OnRegister
	case string(events.StatusStarted):
		f = w.p.OnStart
	case string(events.StatusRestarted):
		f = w.p.OnRestart
	case string(events.StatusStopped):
		f = w.p.OnStop
	case string(events.StatusHeld):
		f = w.p.OnHeld
	case events.LifecycleUnregistered:
		f = w.p.OnUnregister
	}
	if f != nil {
		f(p)
	}
}

// dependencyStarted reports whether m says a hard dependency now runs
// while the plugin waits to be started.
func (w *worker) dependencyStarted(m *nats.Msg) bool {
	kind, p, _, ok := w.readLifecycle(m)
	if !ok || kind == events.LifecycleUnregistered || !p.Status.Running() {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.wantStart
}

// readLifecycle decodes a lifecycle event: the change (the type after
// hookbus.plugin.), the plugin state, and the command sequence from the id
// (<command_seq>-<name>).
func (w *worker) readLifecycle(m *nats.Msg) (kind string, p events.Plugin, seq uint64, ok bool) {
	e, err := events.Decode(m.Header, m.Data)
	if err != nil {
		w.log.Warn("unreadable lifecycle event", "subject", m.Subject, "err", err)
		return "", p, 0, false
	}
	kind, found := strings.CutPrefix(e.Type(), events.LifecycleTypePrefix)
	if err := json.Unmarshal(e.Data(), &p); !found || err != nil {
		w.log.Warn("unreadable lifecycle event", "subject", m.Subject, "event_type", e.Type(), "err", err)
		return "", p, 0, false
	}
	seq, ok = lifecycle.Seq(e.ID())
	if !ok {
		seq = p.CommandSeq
	}
	return kind, p, seq, true
}

// pull runs the deliveries of consumer (the plugin's notify queue or
// replay consumer) until ctx ends: a new pump each time the plugin starts
// running, with a goroutine per slot of slots.
func (w *worker) pull(ctx context.Context, consumer string, slots chan struct{}) {
	retry := newBackoff(50*time.Millisecond, maxRetryWait)
	waiting := false
	for w.waitRunning(ctx) {
		cons, err := w.c.js.Consumer(ctx, events.StreamEvents, consumer)
		if err != nil {
			if errors.Is(err, jetstream.ErrConsumerNotFound) {
				if !waiting {
					w.log.Info("waiting for the dispatcher to create the notify consumer", "consumer", consumer)
					waiting = true
				}
			} else if ctx.Err() == nil {
				w.log.Warn("look up notify consumer", "consumer", consumer, "err", err)
			}
			retry.wait(ctx, time.Time{})
			continue
		}
		waiting = false
		cfg := cons.CachedInfo().Config
		p := newPump(slots, ackWaitOf(cfg),
			func() (jetstream.MessagesContext, error) {
				return cons.Messages(jetstream.PullMaxMessages(cap(slots)), jetstream.PullHeartbeat(pullHeartbeat))
			},
			func(m jetstream.Msg) { w.deliver(m, cfg) },
			func(m jetstream.Msg) { _ = m.Nak() },
			w.handlers.Go, w.abandoned)
		p.start()
		w.whileRunning(ctx, p.stopping)
		// Handlers in progress run on (Serve waits for them, within its
		// drain timeout); they hold their slots, so the next pump runs
		// only as many more as WithConcurrency allows.
		p.stop()
		if ctx.Err() != nil {
			return
		}
		if err := p.Err(); err != nil {
			// The consumer was deleted (unregistered), the connection
			// closed, ...: find the consumer again.
			w.log.Debug("pull notify events", "consumer", consumer, "err", err)
			retry.wait(ctx, time.Time{})
			continue
		}
		retry.reset()
	}
}

// whileRunning blocks while the plugin runs, until ctx ends or stopping
// is closed.
func (w *worker) whileRunning(ctx context.Context, stopping <-chan struct{}) {
	for {
		running, changed := w.running()
		if !running {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-stopping:
			return
		case <-changed:
		}
	}
}
