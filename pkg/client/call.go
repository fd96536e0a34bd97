package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"

	"github.com/hookbus/hookbus/pkg/events"
)

// ErrNoDispatcher is matched by Call errors when no dispatcher answers on
// hookbus.call.<type> (hookbus serve runs one).
var ErrNoDispatcher = errors.New("no dispatcher is running")

// Call runs the chain of e's type now, with e's data as the initial
// state, and returns the result (final state, who halted, the trace); it
// waits until ctx ends or, without a deadline, the client's timeout. An
// invalid event matches events.ErrInvalid, no dispatcher ErrNoDispatcher;
// a chain that failed returns its result so far and a *Error with the code.
func (c *Client) Call(ctx context.Context, e event.Event, opts ...Option) (events.ChainResult, error) {
	var o options
	if err := o.apply(inCall, opts); err != nil {
		return events.ChainResult{}, err
	}
	if len(o.private) > 0 {
		e = e.Clone() // options must not change the caller's event
		if err := e.Context.SetExtension(events.ExtensionPrivate, strings.Join(o.private, ",")); err != nil {
			return events.ChainResult{}, err
		}
	}
	subject, err := events.CallSubject(e.Type())
	if err != nil {
		return events.ChainResult{}, err
	}
	msg, err := c.codec.Encode(subject, &e)
	if err != nil {
		return events.ChainResult{}, err
	}
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	answer, err := c.nc.RequestMsgWithContext(ctx, msg)
	if errors.Is(err, nats.ErrNoResponders) {
		return events.ChainResult{}, fmt.Errorf("call %s: %w (hookbus serve runs one): %w", e.Type(), ErrNoDispatcher, err)
	}
	if err != nil {
		return events.ChainResult{}, fmt.Errorf("call %s %s: %w", e.Type(), e.ID(), err)
	}
	var res events.ChainResult
	if err := json.Unmarshal(answer.Data, &res); err != nil {
		return events.ChainResult{}, fmt.Errorf("call %s %s: unreadable answer: %w", e.Type(), e.ID(), err)
	}
	return res, serviceError(answer)
}
