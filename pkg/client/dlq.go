package client

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"strconv"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/internal/deadletter"
	"github.com/hookbus/hookbus/pkg/events"
)

// DeadLetter is one message in HOOKBUS_DLQ: an event a subscriber could not
// take, with why.
type DeadLetter struct {
	// Seq is the dead letter's sequence in HOOKBUS_DLQ; Replay takes it.
	Seq uint64
	// Time is when it was dead-lettered.
	Time time.Time
	// Subscriber is the notify plugin that could not take the event,
	// hook-<id> for a hook's failed delivery, or hookbus-dispatcher for an
	// invalid published event: the last token of
	// the dead letter's subject hookbus.dlq.<subscriber>, which NATS
	// permissions bind (not the Hookbus-Dlq-Subscriber header).
	Subscriber string
	// Forged is set when the dead letter is not one Hookbus wrote: its
	// Hookbus-Dlq-Subscriber header names another subscriber than its
	// subject (someone allowed to publish on hookbus.dlq.<subscriber>
	// dressed it up as another's). It says why; Replay refuses it.
	Forged string
	// Reason is the handler's last error, the validation error, or
	// "no worker of <name> answered in N deliveries".
	Reason string
	// Subject is the original's subject: hookbus.event.<type>, or
	// hookbus.replay.<subscriber> for a replayed event.
	Subject string
	// StreamSeq is the original's sequence in HOOKBUS_EVENTS.
	StreamSeq uint64
	// Deliveries is how often the original was delivered.
	Deliveries uint64
	// Event is the original, decoded; nil when it is not a valid
	// CloudEvent (DecodeError says why).
	Event       *event.Event
	DecodeError string
	// Header and Data are the original message's headers (without the
	// dead-letter headers) and data, as stored.
	Header nats.Header
	Data   []byte
	// Omitted is set for a dead letter by reference, whose original was too
	// large to copy: it says what was left out (the data, and perhaps the
	// headers); the original is message StreamSeq of HOOKBUS_EVENTS, where
	// Replay reads it while the stream keeps it.
	Omitted string
}

// ErrNotReplayable is matched by Replay errors for dead letters that
// replaying cannot help: invalid events the dispatcher refused.
var ErrNotReplayable = errors.New("dead letter cannot be replayed")

// dlqPage is the most dead letters DeadLetters holds at once.
const dlqPage = 64

// DeadLetters yields the dead letters of subscriber (every subscriber's
// when it is ""), oldest first, read dlqPage at a time through an
// ephemeral consumer; an error is yielded last.
func (c *Client) DeadLetters(ctx context.Context, subscriber string) iter.Seq2[DeadLetter, error] {
	return func(yield func(DeadLetter, error) bool) {
		if err := c.deadLetters(ctx, subscriber, yield); err != nil {
			yield(DeadLetter{}, fmt.Errorf("dead letters: %w", err))
		}
	}
}

// deadLetters yields the dead letters of DeadLetters until yield returns
// false or the consumer has none pending.
func (c *Client) deadLetters(ctx context.Context, subscriber string, yield func(DeadLetter, error) bool) error {
	filter := events.DLQSubjects
	if subscriber != "" {
		var err error
		if filter, err = events.DLQSubject(subscriber); err != nil {
			return err
		}
	}
	cctx, cancel := c.withTimeout(ctx)
	defer cancel()
	stream, err := c.dlqStream(cctx)
	if err != nil {
		return err
	}
	cons, err := stream.CreateConsumer(cctx, jetstream.ConsumerConfig{
		FilterSubject: filter,
		AckPolicy:     jetstream.AckNonePolicy,
		MemoryStorage: true,
		Replicas:      1,
		// Deleted below; this removes one left by a client that died.
		InactiveThreshold: 5 * time.Minute,
	})
	if err != nil {
		return fmt.Errorf("read %s: %w", events.StreamDLQ, err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = stream.DeleteConsumer(dctx, cons.CachedInfo().Name)
	}()
	for pending := cons.CachedInfo().NumPending; pending > 0; {
		if err := ctx.Err(); err != nil {
			return err
		}
		batch, err := cons.FetchNoWait(int(min(pending, dlqPage)))
		if err != nil {
			return fmt.Errorf("read %s: %w", events.StreamDLQ, err)
		}
		n := 0
		for m := range batch.Messages() {
			meta, err := m.Metadata()
			if err != nil {
				return fmt.Errorf("read %s: %w", events.StreamDLQ, err)
			}
			n++
			pending = meta.NumPending
			raw := &jetstream.RawStreamMsg{Subject: m.Subject(), Sequence: meta.Sequence.Stream, Header: m.Headers(), Data: m.Data(), Time: meta.Timestamp}
			if !yield(c.readDeadLetter(raw), nil) {
				return nil
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return fmt.Errorf("read %s: %w", events.StreamDLQ, err)
		}
		if n == 0 {
			return nil // deleted since the consumer counted them
		}
	}
	return nil
}

// Replay stores the event of dead letter seq again for its subscriber
// alone (on hookbus.replay.<subscriber>, stored once per dead letter; for
// a hook's dead letter, subscriber hook-<id>, the dispatcher delivers it
// to that hook) and then deletes the dead letter. Errors: ErrNotFound,
// ErrNotReplayable (an invalid event the dispatcher refused, a forged dead
// letter, an original that is gone or not the subscriber's, a hook that no
// longer exists), ErrNotStored.
func (c *Client) Replay(ctx context.Context, seq uint64) error {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	stream, err := c.dlqStream(ctx)
	if err != nil {
		return err
	}
	m, err := stream.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("replay: dead letter %d: %w", seq, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("replay: dead letter %d: %w", seq, err)
	}
	dl := c.readDeadLetter(m)
	if dl.Forged != "" {
		return fmt.Errorf("replay: dead letter %d: %w: %s", seq, ErrNotReplayable, dl.Forged)
	}
	if dl.Subscriber == events.DispatcherConsumer {
		return fmt.Errorf("replay: dead letter %d: %w: the dispatcher refused it as invalid (%s); fix the event and publish it again", seq, ErrNotReplayable, dl.Reason)
	}
	subject, err := events.ReplaySubject(dl.Subscriber)
	if err != nil {
		return fmt.Errorf("replay: dead letter %d is not a Hookbus dead letter: %w", seq, err)
	}
	// The subjects the subscriber takes now: a hook's node, or the event
	// type of a plugin (read only for a dead letter by reference).
	var filter string
	if id, ok := events.HookOfSubscriber(dl.Subscriber); ok {
		if filter, err = c.hookFilter(ctx, id); err != nil {
			return fmt.Errorf("replay: dead letter %d: %w", seq, err)
		}
	}
	orig, data := dl.Header, dl.Data
	if dl.Omitted != "" {
		if orig, data, err = c.original(ctx, dl, filter); err != nil {
			return fmt.Errorf("replay: dead letter %d: %w", seq, err)
		}
	}
	h := nats.Header{}
	for k, vs := range orig {
		if !strings.HasPrefix(strings.ToLower(k), "nats-") {
			h[k] = append([]string(nil), vs...)
		}
	}
	h.Set(events.HeaderMsgID, "replay-"+strconv.FormatUint(seq, 10))
	if _, _, err := c.storeOnce(ctx, &nats.Msg{Subject: subject, Header: h, Data: data}, events.StreamEvents); err != nil {
		return fmt.Errorf("replay: dead letter %d: %w", seq, err)
	}
	if err := stream.DeleteMsg(ctx, seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("replay: dead letter %d was replayed but not deleted (replaying it again within the duplicate window stores nothing new): %w", seq, err)
	}
	return nil
}

// storeOnce is deadletter.StoreOnce with the client's publish (retried until
// ctx ends), checking a duplicate acknowledgement by reading stream.
func (c *Client) storeOnce(ctx context.Context, msg *nats.Msg, stream string) (*jetstream.PubAck, error, error) {
	publish := func(ctx context.Context, m *nats.Msg) (*jetstream.PubAck, error) { return c.publish(ctx, m, stream) }
	get := func(ctx context.Context, seq uint64) (*jetstream.RawStreamMsg, error) {
		s, err := c.js.Stream(ctx, stream)
		if err != nil {
			return nil, err
		}
		return s.GetMsg(ctx, seq)
	}
	return deadletter.StoreOnce(ctx, stream, msg, publish, get)
}

// hookFilter returns the subjects hook id takes, hookbus.event.<node>, read
// from the registry; ErrNotReplayable when the hook no longer exists.
func (c *Client) hookFilter(ctx context.Context, id string) (string, error) {
	hooks, err := c.ListHooks(ctx, events.HookFilter{ID: id})
	if err != nil {
		return "", fmt.Errorf("the node of hook %s: %w", id, err)
	}
	if len(hooks) == 0 {
		return "", fmt.Errorf("%w: hook %s no longer exists (its replay would reach no one)", ErrNotReplayable, id)
	}
	return events.HookEventSubject(hooks[0].Node)
}

// original reads the event of a dead letter by reference from
// HOOKBUS_EVENTS, and checks that it is one the dead letter's subscriber
// may be sent (deadletter.CheckReplayOrigin): filter is the subjects a
// hook takes, "" for a plugin (whose event type is read here).
func (c *Client) original(ctx context.Context, dl DeadLetter, filter string) (nats.Header, []byte, error) {
	stream, err := c.js.Stream(ctx, events.StreamEvents)
	if err != nil {
		return nil, nil, fmt.Errorf("stream %s: %w", events.StreamEvents, err)
	}
	m, err := stream.GetMsg(ctx, dl.StreamSeq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil, fmt.Errorf("%w: its event (%s) was message %d of %s, which no longer keeps it", ErrNotReplayable, dl.Omitted, dl.StreamSeq, events.StreamEvents)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read its event, message %d of %s: %w", dl.StreamSeq, events.StreamEvents, err)
	}
	if replay, _ := events.ReplaySubject(dl.Subscriber); filter == "" && (m.Subject != replay || dl.Subject != replay) {
		p, err := c.Get(ctx, dl.Subscriber)
		if err != nil {
			return nil, nil, fmt.Errorf("the event type plugin %s takes: %w", dl.Subscriber, err)
		}
		if filter, err = events.EventSubject(p.Event); err != nil {
			return nil, nil, fmt.Errorf("the event type plugin %s takes: %w", dl.Subscriber, err)
		}
	}
	if err := deadletter.CheckReplayOrigin(dl.Subscriber, filter, dl.Subject, m.Subject); err != nil {
		return nil, nil, fmt.Errorf("%w: by reference to message %d of %s: %w", ErrNotReplayable, dl.StreamSeq, events.StreamEvents, err)
	}
	return m.Header, m.Data, nil
}

func (c *Client) dlqStream(ctx context.Context) (jetstream.Stream, error) {
	s, err := c.js.Stream(ctx, events.StreamDLQ)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w (is Hookbus running and the topology in place?)", events.StreamDLQ, err)
	}
	return s, nil
}

// dlqHeaderPrefix starts every header a dead letter adds to the original.
const dlqHeaderPrefix = "hookbus-dlq-"

// readDeadLetter reads dead letter m, decoding its event with the
// client's size limit.
func (c *Client) readDeadLetter(m *jetstream.RawStreamMsg) DeadLetter {
	dl := DeadLetter{
		Seq:        m.Sequence,
		Time:       m.Time,
		Subscriber: events.HeaderValue(m.Header, events.HeaderDLQSubscriber),
		Forged:     deadletter.Check(m.Subject, m.Header),
		Reason:     events.HeaderValue(m.Header, events.HeaderDLQReason),
		Subject:    events.HeaderValue(m.Header, events.HeaderDLQSubject),
		Header:     nats.Header{},
		Data:       m.Data,
		Omitted:    events.HeaderValue(m.Header, events.HeaderDLQBody),
	}
	if sub, ok := deadletter.SubscriberOf(m.Subject); ok {
		dl.Subscriber = sub
	}
	dl.StreamSeq, _ = strconv.ParseUint(events.HeaderValue(m.Header, events.HeaderDLQStreamSeq), 10, 64)
	dl.Deliveries, _ = strconv.ParseUint(events.HeaderValue(m.Header, events.HeaderDLQDeliveries), 10, 64)
	for k, vs := range m.Header {
		lk := strings.ToLower(k)
		if strings.HasPrefix(lk, dlqHeaderPrefix) || strings.HasPrefix(lk, "nats-") {
			continue
		}
		dl.Header[k] = vs
	}
	if dl.Omitted != "" {
		dl.DecodeError = fmt.Sprintf("not copied into the dead letter (%s): the original is message %d of %s", dl.Omitted, dl.StreamSeq, events.StreamEvents)
	} else if e, err := c.codec.Decode(dl.Header, dl.Data); err != nil {
		dl.DecodeError = err.Error()
	} else {
		dl.Event = e
	}
	return dl
}
