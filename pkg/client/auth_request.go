package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
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
	if err := serviceError(m); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if err := json.Unmarshal(m.Data, reply); err != nil {
		return fmt.Errorf("%s: unreadable reply: %w", op, err)
	}
	return nil
}
