package topology

import (
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/pkg/events"
)

// SubscriberOf returns the notify plugin whose consumer (notify queue or
// replay consumer) is named consumer.
func SubscriberOf(consumer string) (string, bool) {
	if name, ok := strings.CutPrefix(consumer, events.NotifyConsumer("")); ok {
		return name, true
	}
	return strings.CutPrefix(consumer, events.ReplayConsumer(""))
}

// NotifyConsumerConfig is the durable consumer of notify plugin p on
// HOOKBUS_EVENTS, as the dispatcher creates it (docs/protocol.md, "Notify
// queues"): filtered to the plugin's event subject alone, explicit acks,
// max_deliver + 1 deliveries (the spare lets a worker dead-letter an event
// whose last try died with its worker), the plugin's backoff with its first
// value as the ack wait, delivering from p.UpdatedAt (the start) or, when
// that is zero, from the beginning of the stream.
func NotifyConsumerConfig(p events.Plugin) (jetstream.ConsumerConfig, error) {
	subject, err := events.EventSubject(p.Event)
	if err != nil {
		return jetstream.ConsumerConfig{}, err
	}
	return subscriberConfig(p, events.NotifyConsumer(p.Name), subject, fmt.Sprintf("Notify queue of plugin %s (event %s).", p.Name, p.Event), 1000), nil
}

// ReplayConsumerConfig is the replay consumer of notify plugin p
// (events.ReplayConsumer): as its notify queue, filtered to hookbus.replay.<name>.
// Replays have a consumer of their own so that the notify queue, which
// takes every event, has one filter subject: a consumer with two takes the
// server's slower path for every delivery.
func ReplayConsumerConfig(p events.Plugin) (jetstream.ConsumerConfig, error) {
	subject, err := events.ReplaySubject(p.Name)
	if err != nil {
		return jetstream.ConsumerConfig{}, err
	}
	return subscriberConfig(p, events.ReplayConsumer(p.Name), subject, fmt.Sprintf("Replayed dead letters of plugin %s.", p.Name), 100), nil
}

func subscriberConfig(p events.Plugin, name, subject, description string, maxAckPending int) jetstream.ConsumerConfig {
	st := p.Settings.WithDefaults()
	backoff := st.Backoff()
	cfg := jetstream.ConsumerConfig{
		Durable:       name,
		Description:   description,
		FilterSubject: subject,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       backoff[0],
		MaxDeliver:    st.MaxDeliver + 1,
		BackOff:       backoff,
		MaxAckPending: maxAckPending,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
	if !p.UpdatedAt.IsZero() {
		start := p.UpdatedAt
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &start
	}
	return cfg
}
