package dispatcher

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/nats-io/nats.go"

	"github.com/hookbus/hookbus/internal/deadletter"
	"github.com/hookbus/hookbus/internal/topology"
	"github.com/hookbus/hookbus/pkg/events"
)

// maxDeliveriesSubject carries JetStream's advisory that a message of
// HOOKBUS_EVENTS used up a consumer's deliveries.
var maxDeliveriesSubject = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + events.StreamEvents + ".*"

// maxDeliveries is the part of the advisory the dispatcher reads.
type maxDeliveries struct {
	Stream     string `json:"stream"`
	Consumer   string `json:"consumer"`
	StreamSeq  uint64 `json:"stream_seq"`
	Deliveries uint64 `json:"deliveries"`
}

// watchAdvisories is the backstop of the notify queues: a worker
// dead-letters an event itself after its last failed try, and on the spare
// delivery after a crash; should every delivery go unanswered (workers
// crashing each time), JetStream stops delivering and says so, and the
// dispatcher dead-letters the event. deadletter.MsgID makes a dead letter written
// by both a worker and the dispatcher stored once.
func (s *Service) watchAdvisories(ctx context.Context) error {
	sub, err := s.nc.QueueSubscribe(maxDeliveriesSubject, events.DispatcherQueue, func(m *nats.Msg) {
		var a maxDeliveries
		if err := json.Unmarshal(m.Data, &a); err != nil {
			s.log.Warn("unreadable max deliveries advisory", "err", err)
			return
		}
		plugin, ok := topology.SubscriberOf(a.Consumer)
		if !ok {
			return
		}
		if err := s.deadLetterExhausted(ctx, plugin, a); err != nil {
			s.log.Error("dead-letter an exhausted event", "plugin", plugin, "err", err)
		}
	})
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", maxDeliveriesSubject, err)
	}
	s.advisories.Store(true)
	<-ctx.Done()
	s.advisories.Store(false)
	return sub.Unsubscribe()
}

func (s *Service) deadLetterExhausted(ctx context.Context, plugin string, a maxDeliveries) error {
	stream, err := s.js.Stream(ctx, events.StreamEvents)
	if err != nil {
		return err
	}
	raw, err := stream.GetMsg(ctx, a.StreamSeq)
	if err != nil {
		return fmt.Errorf("read event %d: %w", a.StreamSeq, err)
	}
	o := deadletter.Original{Subject: raw.Subject, Header: raw.Header, Data: raw.Data, Seq: a.StreamSeq, Deliveries: a.Deliveries}
	if err := s.dlq().Write(ctx, plugin, o, deadletter.ExhaustedReason(plugin, a.Deliveries)); err != nil {
		return err
	}
	s.log.Warn("event dead-lettered after its last delivery", "plugin", plugin, "stream_seq", a.StreamSeq)
	return nil
}
