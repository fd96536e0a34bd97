package dispatcher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/internal/deadletter"
	"github.com/hookbus/hookbus/internal/durable"
	"github.com/hookbus/hookbus/pkg/events"
)

// pullExpiry bounds how long a pull request of a stopped dispatcher can
// outlive it on the server.
const pullExpiry = 5 * time.Second

// chainConfig is the chain consumer of event type typ
// (events.ChainConsumer), delivering from the start of the stream unless
// told otherwise (consumers.applyChains).
func (s *Service) chainConfig(typ string) jetstream.ConsumerConfig {
	subject, _ := events.EventSubject(typ) // typ is a stored plugin's: valid
	return jetstream.ConsumerConfig{
		Durable:       events.ChainConsumer(typ),
		Description:   fmt.Sprintf("Runs the chain of every %s event; results on hookbus.result.%s.", typ, typ),
		FilterSubject: subject,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       s.cfg.AckWait,
		MaxAckPending: s.cfg.Concurrency * 4,
		// The dispatcher bounds the attempts itself (MaxAttempts) and
		// dead-letters an event past them: a bound kept by JetStream
		// would end in an advisory nobody may be there to read.
		MaxDeliver:    -1,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
}

// chainReaders reads the chain consumers, one reader each, running at
// most Concurrency chains at once between them.
type chainReaders struct {
	s       *Service
	slots   chan struct{}
	changed func() // asks for the consumers to be checked again
	wg      sync.WaitGroup

	mu   sync.Mutex
	live map[string]context.CancelFunc // consumer -> stops its reader
}

func newChainReaders(s *Service, changed func()) *chainReaders {
	return &chainReaders{s: s, slots: make(chan struct{}, s.cfg.Concurrency), changed: changed, live: map[string]context.CancelFunc{}}
}

// keep has exactly the consumers of read read: it starts a reader for each
// that has none (a nil Consumer keeps a running reader but starts none)
// and stops the others. The dispatcher is ready when complete (every
// chain consumer the table wants is in read) and each of them is read.
func (r *chainReaders) keep(ctx context.Context, read map[string]jetstream.Consumer, complete bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for name, stop := range r.live {
		if _, ok := read[name]; !ok {
			stop()
			delete(r.live, name)
		}
	}
	for name, c := range read {
		if _, ok := r.live[name]; ok || c == nil {
			continue
		}
		rctx, stop := context.WithCancel(ctx)
		r.live[name] = stop
		r.wg.Go(func() { r.read(rctx, stop, name, c) })
	}
	r.s.consuming.Store(complete && len(r.live) == len(read))
}

// read reads consumer c until ctx ends or c fails (deleted...); the
// dispatcher is then not ready until c is in place and read again.
func (r *chainReaders) read(ctx context.Context, stop context.CancelFunc, name string, c jetstream.Consumer) {
	err := r.s.readEvents(ctx, c, r.slots)
	if ctx.Err() != nil {
		return
	}
	r.mu.Lock()
	stop()
	delete(r.live, name)
	r.s.consuming.Store(false)
	r.mu.Unlock()
	r.s.log.Warn("chain consumer not readable: checking the consumers again", "consumer", name, "err", err)
	r.changed()
}

// stop stops the reader of consumer name, if one runs.
func (r *chainReaders) stop(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if stop, ok := r.live[name]; ok {
		stop()
		delete(r.live, name)
	}
}

// notReady marks the dispatcher not ready (the consumers could not be
// checked), leaving the readers running.
func (r *chainReaders) notReady() { r.s.consuming.Store(false) }

// wait waits for every reader to return; the dispatcher then reads no
// consumer and is not ready.
func (r *chainReaders) wait() {
	r.wg.Wait()
	r.s.consuming.Store(false)
}

// readEvents handles the consumer's events, holding one of slots for each
// chain it runs, until ctx ends or the consumer fails.
func (s *Service) readEvents(ctx context.Context, cons jetstream.Consumer, slots chan struct{}) error {
	iter, err := cons.Messages(jetstream.PullMaxMessages(s.cfg.Concurrency), jetstream.PullExpiry(pullExpiry))
	if err != nil {
		return fmt.Errorf("consume %s: %w", cons.CachedInfo().Name, err)
	}
	stop := context.AfterFunc(ctx, iter.Drain)
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		msg, err := iter.Next()
		switch {
		case errors.Is(err, jetstream.ErrMsgIteratorClosed):
			return ctx.Err()
		case errors.Is(err, jetstream.ErrConsumerDeleted), errors.Is(err, jetstream.ErrConsumerNotFound):
			iter.Stop()
			return err
		case err != nil:
			s.log.Warn("next published event", "err", err)
			continue
		}
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			s.handleEvent(ctx, msg)
		})
	}
}

// handleEvent settles one published event. This is the one place that
// decides:
//   - an invalid event (for a type with chain plugins, also one whose data
//     is not JSON) is dead-lettered, then acknowledged; never retried,
//     never blocking the events behind it;
//   - an event without chain plugins is acknowledged;
//   - the others are acknowledged once their result is stored, and tried
//     again after a growing delay when it could not be, up to MaxAttempts
//     deliveries; one delivered more often (failures, or dispatchers that
//     died with it) is dead-lettered without running its chain again.
//
// A dead letter is stored before its event is acknowledged; when it cannot
// be, the event comes back.
func (s *Service) handleEvent(ctx context.Context, msg jetstream.Msg) {
	meta, err := msg.Metadata()
	if err != nil {
		s.log.Error("published event without metadata", "subject", msg.Subject(), "err", err)
		_ = msg.Term()
		return
	}
	log := s.log.With("subject", msg.Subject(), "attempt", meta.NumDelivered)
	e, err := s.codec.Decode(msg.Headers(), msg.Data())
	if err == nil && !onSubject(events.EventSubject, e.Type(), msg.Subject()) {
		err = &events.ValidationError{Field: "type", Reason: fmt.Sprintf("%q published on %s: an event of type T belongs on hookbus.event.T", e.Type(), msg.Subject())}
	}
	if err != nil {
		// Counted, not logged above debug: a flood of poison would
		// flood the log too.
		if s.deadLetter(ctx, msg, meta, err.Error()) {
			s.events.WithLabelValues(outcomeInvalid).Inc()
			log.Debug("invalid event dead-lettered", "reason", err)
		}
		return
	}
	// The route table must hold every plugin change stored before this
	// event was: a plugin started, then an event published, runs.
	if err := s.plugins.Fresh(ctx); err != nil {
		if ctx.Err() == nil {
			s.retryLater(msg, meta, "route table not caught up", err)
		}
		return
	}
	chain := s.routes.chain(e.Type())
	if len(chain) == 0 {
		s.events.WithLabelValues(outcomeNoChain).Inc()
		_ = msg.Ack()
		return
	}
	log = log.With("event_id", e.ID(), "event_type", e.Type())
	if meta.NumDelivered > uint64(s.cfg.MaxAttempts) {
		if s.deadLetter(ctx, msg, meta, fmt.Sprintf("no chain result stored in %d deliveries", meta.NumDelivered-1)) {
			s.events.WithLabelValues(outcomeExhausted).Inc()
			log.Error("event dead-lettered: no chain result stored in its attempts")
		}
		return
	}
	done := s.keepAlive(ctx, msg)
	res := s.runChain(ctx, e, chain, meta.NumDelivered)
	close(done)
	if ctx.Err() != nil {
		// Shutting down mid-chain: leave the event to another replica,
		// once this one's last pull requests have expired on the server
		// (one still open there would take the event and hold it until
		// the ack wait ends).
		_ = msg.NakWithDelay(pullExpiry)
		return
	}
	if res.Error != nil && res.Error.Code == events.CodeInvalid {
		// The chain could not run on it (its data is not JSON): a dead
		// letter for operators, and a result saying why for whoever waits.
		if err := s.dlq().Write(ctx, events.DispatcherConsumer, deadletter.OriginalOf(msg, meta), res.Error.Message); err != nil {
			s.retryLater(msg, meta, "dead letter not stored", err)
			return
		}
		s.events.WithLabelValues(outcomeInvalid).Inc()
	}
	if err := s.storeResult(ctx, e, res); err != nil {
		s.retryLater(msg, meta, "chain result not stored", err)
		return
	}
	s.events.WithLabelValues(outcomeResult).Inc()
	if err := msg.Ack(); err != nil {
		log.Warn("ack published event", "err", err)
	}
}

// deadLetter stores msg in HOOKBUS_DLQ with reason, then acknowledges it,
// and reports whether the dead letter was stored. When it was not, msg
// comes back later (retryLater).
func (s *Service) deadLetter(ctx context.Context, msg jetstream.Msg, meta *jetstream.MsgMetadata, reason string) bool {
	if err := s.dlq().Settle(ctx, events.DispatcherConsumer, msg, meta, reason); err != nil {
		s.retryLater(msg, meta, "dead letter not stored", err)
		return false
	}
	return true
}

// dlq writes the dispatcher's dead letters. It may read HOOKBUS_DLQ, so a
// duplicate acknowledgement counts only when the message kept under the id
// is the dead letter's own (deadletter.StoreOnce).
func (s *Service) dlq() deadletter.Writer {
	return deadletter.Writer{JS: s.js, Read: true, MaxSize: int(s.nc.MaxPayload()), Log: s.log}
}

// retryLater negatively acknowledges msg, whose attempt failed with err,
// with a delay growing with its attempts (durable.RetryDelay).
func (s *Service) retryLater(msg jetstream.Msg, meta *jetstream.MsgMetadata, what string, err error) {
	s.events.WithLabelValues(outcomeRetried).Inc()
	delay := durable.RetryDelay(s.cfg.RetryDelay, s.cfg.MaxRetryDelay, meta.NumDelivered)
	s.log.Error(what+", will retry", "subject", msg.Subject(), "stream_seq", meta.Sequence.Stream, "attempt", meta.NumDelivered, "err", err, "delay", delay)
	_ = msg.NakWithDelay(delay)
}

// keepAlive tells JetStream the event is still being worked on, every half
// ack wait, until done is closed.
func (s *Service) keepAlive(ctx context.Context, msg jetstream.Msg) chan struct{} {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(s.cfg.AckWait / 2)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				_ = msg.InProgress()
			}
		}
	}()
	return done
}

// storeResult publishes the result of e's chain on hookbus.result.<type>,
// as a CloudEvent whose id is derived from e's source and id, so a chain
// run again after a crash stores its result once.
func (s *Service) storeResult(ctx context.Context, e *event.Event, res events.ChainResult) error {
	subject, err := events.ResultSubject(e.Type())
	if err != nil {
		return err
	}
	r := event.New()
	r.SetID(events.MsgID(e.Source(), e.ID()))
	r.SetSource(events.ResultSource)
	r.SetType(events.ResultType)
	r.SetSubject(e.Type())
	r.SetTime(time.Now())
	msg, err := s.encodeResult(subject, &r, res)
	if err != nil {
		return err
	}
	_, err = s.js.PublishMsg(ctx, msg, jetstream.WithExpectStream(events.StreamResults))
	return err
}

// encodeResult encodes res as the data of r. A result too large for
// HOOKBUS_RESULTS is stored without its state, with an error saying so:
// retrying cannot make it smaller.
func (s *Service) encodeResult(subject string, r *event.Event, res events.ChainResult) (*nats.Msg, error) {
	codec := events.Codec{MaxSize: s.resultMaxSize()}
	if err := r.SetData(event.ApplicationJSON, res); err != nil {
		return nil, err
	}
	msg, err := codec.Encode(subject, r)
	if err == nil || !errors.Is(err, events.ErrInvalid) {
		return msg, err
	}
	res.Error = &events.Error{Code: events.CodePluginFailed, Message: fmt.Sprintf("the chain's result is too large to store (%v); its state is left out", err)}
	res.State = json.RawMessage("null")
	if err := r.SetData(event.ApplicationJSON, res); err != nil {
		return nil, err
	}
	return codec.Encode(subject, r)
}

// resultMaxSize is the largest result HOOKBUS_RESULTS and the connection
// take: a chain may grow an event's state.
func (s *Service) resultMaxSize() int {
	return min(int(s.cfg.Topology.MaxMsgSize), int(s.nc.MaxPayload()))
}
