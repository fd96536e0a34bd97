package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
)

// defaultTimeout bounds a request-reply call (Call, plugin commands, Get,
// List, DeadLetters, Replay, AuthStore, RotateAuthKeys) and a Publish whose
// ctx has no deadline, unless WithTimeout says otherwise.
const defaultTimeout = 30 * time.Second

// Option configures New or one call; one given where it does not apply, or
// with a value it refuses, makes that constructor or call return an error.
type Option func(*options) error

// scope is the set of places an option applies to.
type scope uint8

const (
	inNew scope = 1 << iota
	inPublish
	inCall
	inPublisher
	inServe
)

func (s scope) String() string {
	switch s {
	case inNew:
		return "New"
	case inPublish:
		return "Publish"
	case inCall:
		return "Call"
	case inPublisher:
		return "NewPublisher"
	case inServe:
		return "Serve"
	}
	return fmt.Sprintf("scope(%d)", uint8(s))
}

// options are every setting an Option can make; each place reads its own.
type options struct {
	scope scope // where the options are being applied

	maxEventSize int           // New
	retryWait    time.Duration // New
	timeout      time.Duration // New

	structured bool     // Publish
	private    []string // Call

	window     int                                  // NewPublisher
	onAck      func(event.Event, PublishAck, error) // NewPublisher
	ackTimeout time.Duration                        // NewPublisher

	concurrency  int           // Serve
	exit         ExitAction    // Serve
	drainTimeout time.Duration // Serve
	log          *slog.Logger  // Serve
}

// apply applies opts for the call in scope s, stopping at the first
// refusal.
func (o *options) apply(s scope, opts []Option) error {
	o.scope = s
	for _, opt := range opts {
		if opt == nil {
			continue
		}
		if err := opt(o); err != nil {
			return fmt.Errorf("client: %s: %w", s, err)
		}
	}
	return nil
}

// option is an Option named name, for the places in where, setting its
// value with set (which refuses a bad value).
func option(name string, where scope, set func(*options) error) Option {
	return func(o *options) error {
		if o.scope&where == 0 {
			return fmt.Errorf("option %s does not apply here", name)
		}
		if err := set(o); err != nil {
			return fmt.Errorf("option %s: %w", name, err)
		}
		return nil
	}
}

func positive[T int | time.Duration](v T, set func()) error {
	if v <= 0 {
		return fmt.Errorf("%v: want more than zero", v)
	}
	set()
	return nil
}

// WithMaxEventSize sets the largest encoded event (data plus headers) the
// client publishes or hands to a handler (New; default
// events.DefaultMaxSize).
func WithMaxEventSize(n int) Option {
	return option("WithMaxEventSize", inNew, func(o *options) error { return positive(n, func() { o.maxEventSize = n }) })
}

// WithRetryWait sets the longest pause between two attempts of a publish
// (New; default 2 s).
func WithRetryWait(d time.Duration) Option {
	return option("WithRetryWait", inNew, func(o *options) error { return positive(d, func() { o.retryWait = d }) })
}

// WithTimeout sets the bound of a request or publish whose ctx has no
// deadline (New; default 30 s).
func WithTimeout(d time.Duration) Option {
	return option("WithTimeout", inNew, func(o *options) error { return positive(d, func() { o.timeout = d }) })
}

// Structured publishes in structured mode (one JSON document) instead of
// binary mode (Publish, PublishBatch, Publisher.Publish).
func Structured() Option {
	return option("Structured", inPublish, func(o *options) error { o.structured = true; return nil })
}

// Private names top-level fields of the data that plugins may not change
// (Call): the result has them as sent (extension events.ExtensionPrivate).
func Private(fields ...string) Option {
	return option("Private", inCall, func(o *options) error {
		for _, f := range fields {
			if f == "" || strings.Contains(f, ",") || strings.TrimSpace(f) != f {
				return fmt.Errorf("field %q: want a name without commas or surrounding spaces", f)
			}
		}
		o.private = append(o.private, fields...)
		return nil
	})
}

// WithWindow sets how many events a Publisher has in flight at most
// (NewPublisher; default 256).
func WithWindow(n int) Option {
	return option("WithWindow", inPublisher, func(o *options) error { return positive(n, func() { o.window = n }) })
}

// OnAck sets a function a Publisher calls once per event when it settles,
// before its PendingAck is done; it must not call Publish (NewPublisher).
func OnAck(f func(e event.Event, ack PublishAck, err error)) Option {
	return option("OnAck", inPublisher, func(o *options) error {
		if f == nil {
			return errors.New("nil function")
		}
		o.onAck = f
		return nil
	})
}

// WithAckTimeout sets how long a Publisher waits for one acknowledgement
// before it sends again (NewPublisher; default 5 s).
func WithAckTimeout(d time.Duration) Option {
	return option("WithAckTimeout", inPublisher, func(o *options) error { return positive(d, func() { o.ackTimeout = d }) })
}

// WithConcurrency sets how many handlers a worker runs at once (Serve;
// default 8).
func WithConcurrency(n int) Option {
	return option("WithConcurrency", inServe, func(o *options) error { return positive(n, func() { o.concurrency = n }) })
}

// WithExitAction sets what Serve does to the plugin when ctx ends (Serve;
// default ExitLeave).
func WithExitAction(a ExitAction) Option {
	return option("WithExitAction", inServe, func(o *options) error {
		if a < ExitLeave || a > ExitUnregister {
			return fmt.Errorf("unknown exit action %d", a)
		}
		o.exit = a
		return nil
	})
}

// WithDrainTimeout sets how long Serve waits for handlers once ctx ends
// before it cancels their contexts (Serve; default 30 s).
func WithDrainTimeout(d time.Duration) Option {
	return option("WithDrainTimeout", inServe, func(o *options) error { return positive(d, func() { o.drainTimeout = d }) })
}

// WithLogger sets the logger of Serve (Serve; default and nil: none).
func WithLogger(l *slog.Logger) Option {
	return option("WithLogger", inServe, func(o *options) error { o.log = l; return nil })
}

// withTimeout bounds ctx by the client's timeout unless it has a deadline.
func (c *Client) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, c.timeout)
}

// backoff is a pause between attempts, doubling from first up to max.
type backoff struct{ d, first, max time.Duration }

func newBackoff(first, max time.Duration) backoff { return backoff{d: first, first: first, max: max} }

func (b *backoff) reset() { b.d = b.first }

// next returns the pause before the next attempt and doubles the one after.
func (b *backoff) next() time.Duration {
	d := b.d
	b.d = min(2*b.d, b.max)
	return d
}

// wait pauses for next(), cut short by ctx or by until (when set); false
// if either came first.
func (b *backoff) wait(ctx context.Context, until time.Time) bool {
	d := b.next()
	short := false
	if !until.IsZero() {
		if left := time.Until(until); left < d {
			d, short = max(left, 0), true
		}
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return !short
	}
}
