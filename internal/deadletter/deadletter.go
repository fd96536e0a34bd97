// Package deadletter writes and checks dead letters, the one way the
// dispatcher and the SDK's workers do (docs/protocol.md, "Dead letters"):
// how one is built, its deduplication id, the reason of an exhausted
// event, and the checks that keep a forged dead letter or a taken
// Nats-Msg-Id from hiding or replaying an event.
package deadletter

import (
	"fmt"
	"maps"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/hookbus/hookbus/pkg/events"
)

// ExhaustedReason is the dead-letter reason of an event no worker of
// subscriber answered in n deliveries (a worker crashing on it each time).
// Workers and the dispatcher's backstop both use it.
func ExhaustedReason(subscriber string, n uint64) string {
	return fmt.Sprintf("no worker of %s answered in %d deliveries", subscriber, n)
}

// MsgID is the deduplication id of the dead letter of stream sequence
// seq for subscriber: a dead letter written twice (around a crash) is stored
// once.
func MsgID(subscriber string, seq uint64) string {
	return fmt.Sprintf("dlq-%s-%d", subscriber, seq)
}

// New builds the dead letter of a message a subscriber could not
// take: the original headers and data, the original's own deduplication
// and expectation headers removed, the Hookbus-Dlq-* headers added, on
// hookbus.dlq.<subscriber>, with Nats-Msg-Id MsgID(subscriber, seq).
// When that would be more than maxSize bytes on the wire (0: no limit; pass
// the connection's MaxPayload), the dead letter is by reference: it keeps
// the headers but not the data, and Hookbus-Dlq-Body says so; the original
// stays message seq of HOOKBUS_EVENTS. Publish it with a JetStream publish
// and acknowledge the original only once that publish is acknowledged.
func New(subscriber string, subject string, h nats.Header, data []byte, seq uint64, deliveries uint64, reason string, maxSize int) (*nats.Msg, error) {
	dlq, err := events.DLQSubject(subscriber)
	if err != nil {
		return nil, err
	}
	out := nats.Header{}
	for k, vs := range h {
		if strings.HasPrefix(strings.ToLower(k), "nats-") || strings.EqualFold(k, events.HeaderDLQBody) {
			continue
		}
		out[k] = append([]string(nil), vs...)
	}
	reason = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(reason, "?"))
	if len(reason) > 1024 {
		reason = strings.ToValidUTF8(reason[:1024], "")
	}
	own := nats.Header{}
	own.Set(events.HeaderDLQReason, reason)
	own.Set(events.HeaderDLQSubscriber, subscriber)
	own.Set(events.HeaderDLQSubject, subject)
	own.Set(events.HeaderDLQStreamSeq, strconv.FormatUint(seq, 10))
	own.Set(events.HeaderDLQDeliveries, strconv.FormatUint(deliveries, 10))
	own.Set(events.HeaderMsgID, MsgID(subscriber, seq))
	maps.Copy(out, own)
	if maxSize > 0 && events.WireSize(out, data) > maxSize {
		// By reference: without the data, and without the original
		// headers too when they alone are too large.
		omitted := fmt.Sprintf("%s: %d bytes", events.DLQBodyOmitted, len(data))
		if data = nil; events.WireSize(out, nil)+len(events.HeaderDLQBody)+len(omitted)+4 > maxSize {
			out = own
			omitted += ", headers omitted"
		}
		out.Set(events.HeaderDLQBody, omitted)
	}
	return &nats.Msg{Subject: dlq, Header: out, Data: data}, nil
}
