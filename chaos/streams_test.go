//go:build chaos

package chaos

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/pkg/events"
)

// poisonHeader marks the suite's own invalid messages, so the checks tell
// them from valid events without repeating Hookbus's validation.
const poisonHeader = "Chaos-Poison"

// stored is what the streams and the notify workers' files hold at one
// moment.
type stored struct {
	events         map[string]int       // valid event id -> copies in HOOKBUS_EVENTS
	typeOf         map[string]string    // valid event id -> type
	seqOf          map[string]uint64    // valid event id -> its (last) stream sequence
	undecodable    []uint64             // stream sequences of unmarked messages that do not decode
	poison         map[uint64]string    // stream sequence of a poison message -> its kind
	results        map[string]int       // event id -> results in HOOKBUS_RESULTS
	resultsAt      map[string]time.Time // event id -> when its (first) result was stored
	deadLetters    map[uint64]string    // HOOKBUS_EVENTS sequence -> subscriber (not the hook) that dead-lettered it
	hookDead       map[uint64]bool      // HOOKBUS_EVENTS sequences dead-lettered for the hook's subscriber hook-<id>
	onHookNode     map[uint64]bool      // stream sequences of poison messages on the hook's node
	hookDeliveries map[string]int       // event id -> requests the hook's receiver took (2xx, valid signature)
	deliveries     map[string]int       // event id -> deliveries to the notify plugin
	deliveredAt    map[string]time.Time // event id -> first delivery
	consumers      map[string]*jetstream.ConsumerInfo
}

// readState reads HOOKBUS_EVENTS, HOOKBUS_RESULTS and HOOKBUS_DLQ, the
// delivery files, what the hook's receiver took and the consumers' state.
func readState(ctx context.Context, js jetstream.JetStream, deliveryFiles []string, hook *chaosHook) (*stored, error) {
	s := &stored{events: map[string]int{}, typeOf: map[string]string{}, seqOf: map[string]uint64{}, poison: map[uint64]string{},
		results: map[string]int{}, resultsAt: map[string]time.Time{}, deadLetters: map[uint64]string{},
		hookDead: map[uint64]bool{}, onHookNode: map[uint64]bool{}, hookDeliveries: map[string]int{},
		deliveries: map[string]int{}, deliveredAt: map[string]time.Time{}, consumers: map[string]*jetstream.ConsumerInfo{}}
	// What the receiver took before the streams are read: an event
	// delivered meanwhile only makes the reading late, never wrong.
	hook.snapshot(s)
	err := readStream(ctx, js, events.StreamEvents, "hookbus.event.chaos.>", func(m jetstream.Msg, meta *jetstream.MsgMetadata) {
		if kind := m.Headers().Get(poisonHeader); kind != "" {
			s.poison[meta.Sequence.Stream] = kind
			if m.Subject() == "hookbus.event."+notifyType {
				s.onHookNode[meta.Sequence.Stream] = true
			}
			return
		}
		e, err := events.Decode(m.Headers(), m.Data())
		if err != nil {
			s.undecodable = append(s.undecodable, meta.Sequence.Stream)
			return
		}
		s.events[e.ID()]++
		s.typeOf[e.ID()], s.seqOf[e.ID()] = e.Type(), meta.Sequence.Stream
	})
	if err != nil {
		return nil, err
	}
	err = readStream(ctx, js, events.StreamResults, "hookbus.result."+chainType, func(m jetstream.Msg, meta *jetstream.MsgMetadata) {
		var res events.ChainResult
		if err := json.Unmarshal(m.Data(), &res); err != nil {
			res.EventID = "unreadable result " + strconv.FormatUint(meta.Sequence.Stream, 10)
		}
		if s.results[res.EventID]++; s.results[res.EventID] == 1 {
			s.resultsAt[res.EventID] = meta.Timestamp
		}
	})
	if err != nil {
		return nil, err
	}
	err = readStream(ctx, js, events.StreamDLQ, events.DLQSubjects, func(m jetstream.Msg, _ *jetstream.MsgMetadata) {
		seq, _ := strconv.ParseUint(m.Headers().Get("Hookbus-Dlq-Stream-Seq"), 10, 64)
		if sub := m.Headers().Get("Hookbus-Dlq-Subscriber"); sub == events.HookConsumer(hook.id) {
			s.hookDead[seq] = true
		} else {
			s.deadLetters[seq] = sub
		}
	})
	if err != nil {
		return nil, err
	}
	for _, f := range deliveryFiles {
		if err := readDeliveries(f, s); err != nil {
			return nil, err
		}
	}
	for _, name := range []string{events.ChainConsumer(chainType), events.NotifyConsumer(notify), events.HookConsumer(hook.id)} {
		info, err := consumerInfo(ctx, js, name)
		if err != nil {
			return nil, err
		}
		s.consumers[name] = info
	}
	return s, nil
}

// readStream calls f for every message of stream on filter stored now,
// through an ordered consumer. A read cut short (a node or stream leader
// still settling after the kills) goes on after the last message read, a
// few times.
func readStream(ctx context.Context, js jetstream.JetStream, stream, filter string, f func(jetstream.Msg, *jetstream.MsgMetadata)) error {
	str, err := js.Stream(ctx, stream)
	if err != nil {
		return fmt.Errorf("stream %s: %w", stream, err)
	}
	info, err := str.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		return fmt.Errorf("stream %s info: %w", stream, err)
	}
	var want uint64
	for _, n := range info.State.Subjects {
		want += n
	}
	var got, last uint64
	for attempt := 1; got < want; attempt++ {
		done, err := readFrom(ctx, str, filter, last+1, func(m jetstream.Msg, meta *jetstream.MsgMetadata) {
			f(m, meta)
			got++
			last = meta.Sequence.Stream
		})
		if done {
			return nil
		}
		if attempt == 5 {
			return fmt.Errorf("read %s after %d of %d messages: %w", stream, got, want, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("read %s after %d of %d messages: %w", stream, got, want, ctx.Err())
		case <-time.After(time.Second):
		}
	}
	return nil
}

// readFrom reads stream on filter from sequence from until nothing is
// pending (done) or a read fails.
func readFrom(ctx context.Context, str jetstream.Stream, filter string, from uint64, f func(jetstream.Msg, *jetstream.MsgMetadata)) (done bool, err error) {
	cons, err := str.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{filter}, DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: from,
	})
	if err != nil {
		return false, err
	}
	for {
		batch, err := cons.Fetch(256, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return false, err
		}
		n := 0
		for m := range batch.Messages() {
			meta, err := m.Metadata()
			if err != nil {
				return false, err
			}
			f(m, meta)
			n++
			if meta.NumPending == 0 {
				return true, nil
			}
		}
		if err := batch.Error(); err != nil {
			return false, err
		}
		if n == 0 {
			return false, fmt.Errorf("nothing for 5s")
		}
	}
}

// readDeliveries adds a notify worker's delivery file ("<id> <unix ns>"
// lines) to s. A partial last line (a worker killed mid-write) is skipped.
func readDeliveries(path string, s *stored) error {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		id, ns, ok := strings.Cut(sc.Text(), " ")
		at, err := strconv.ParseInt(ns, 10, 64)
		if !ok || err != nil {
			continue
		}
		s.deliveries[id]++
		if first, seen := s.deliveredAt[id]; !seen || time.Unix(0, at).Before(first) {
			s.deliveredAt[id] = time.Unix(0, at)
		}
	}
	return sc.Err()
}

func consumerInfo(ctx context.Context, js jetstream.JetStream, name string) (*jetstream.ConsumerInfo, error) {
	cons, err := js.Consumer(ctx, events.StreamEvents, name)
	if err != nil {
		return nil, fmt.Errorf("consumer %s: %w", name, err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("consumer %s: %w", name, err)
	}
	return info, nil
}
