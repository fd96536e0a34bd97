package durable

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Start runs a service's start-up step f until it succeeds, fails for good
// (an error Transient does not accept), or ctx ends, waiting 100 ms
// doubling to 5 s between tries. A service started while a NATS node
// restarts, or before the one that creates the topology, waits (not
// ready) instead of exiting into a crash loop. what names the step in the
// log.
func Start(ctx context.Context, log *slog.Logger, what string, f func(context.Context) error) error {
	delay := 100 * time.Millisecond
	for {
		err := f(ctx)
		if err == nil || ctx.Err() != nil || !Transient(err) {
			return err
		}
		log.Warn(what+": not possible yet, will retry", "err", err, "delay", delay)
		sleep(ctx, delay)
		delay = min(2*delay, 5*time.Second)
	}
}

// Transient reports whether err is worth trying again: NATS or JetStream
// not answering (a node restarting, a leader election), or a stream or
// bucket not there yet. Errors that say what is wrong, such as a drift from
// the declared topology, are not. A missing resource is transient only
// when the error says so through a Missing method.
func Transient(err error) bool {
	var missing interface{ Missing() bool }
	if errors.As(err, &missing) {
		return missing.Missing()
	}
	var api *jetstream.APIError
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout),
		errors.Is(err, nats.ErrNoResponders), errors.Is(err, jetstream.ErrNoStreamResponse),
		errors.Is(err, nats.ErrDisconnected), errors.Is(err, nats.ErrConnectionReconnecting),
		errors.Is(err, jetstream.ErrStreamNotFound), errors.Is(err, jetstream.ErrBucketNotFound),
		errors.Is(err, jetstream.ErrJetStreamNotEnabled):
		return true
	case errors.As(err, &api):
		return slices.Contains(unavailable, api.ErrorCode)
	}
	return false
}

// unavailable are the JetStream API errors of a cluster that is not all
// there: not available, incomplete, no peers for placement (a node down),
// a stream or consumer offline.
var unavailable = []jetstream.ErrorCode{10008, 10004, 10005, 10118, 10119}
