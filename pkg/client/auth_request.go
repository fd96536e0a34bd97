package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/hookbus/hookbus/pkg/events"
)

// authRequest sends one persistence request and decodes the reply into
// reply, or returns the service's error as an *Error.
func (c *Client) authRequest(ctx context.Context, op, subject string, req, reply any) error {
	body, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	m, err := c.nc.RequestWithContext(ctx, subject, body)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return fmt.Errorf("%s: no persistence service is running (%s): %w", op, subject, err)
	case err != nil:
		return fmt.Errorf("%s: %s: %w", op, subject, err)
	}
	if code := m.Header.Get(micro.ErrorCodeHeader); code != "" {
		return fmt.Errorf("%s: %w", op, authError(code, m))
	}
	if err := json.Unmarshal(m.Data, reply); err != nil {
		return fmt.Errorf("%s: unreadable reply: %w", op, err)
	}
	return nil
}

// authError builds the error of a failed reply, from its body when it
// has one and from the micro headers otherwise.
func authError(code string, m *nats.Msg) error {
	e := &Error{Code: code, Message: m.Header.Get(micro.ErrorHeader)}
	var body events.AuthErrorReply
	if json.Unmarshal(m.Data, &body) == nil && body.Error != nil {
		e.Code, e.Message = string(body.Error.Code), body.Error.Message
	}
	return e
}
