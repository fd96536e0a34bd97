package main

import (
	"context"

	"github.com/hookbus/hookbus/internal/natsconn"
	"github.com/hookbus/hookbus/pkg/client"
)

// withClient connects to NATS as the CLI, runs f with a client, and closes
// the connection. Connecting retries until ctx ends.
func withClient(ctx context.Context, cfg Config, f func(*client.Client) error) error {
	nc, err := natsconn.Connect(ctx, cfg.natsConn("hookbus-cli"), nil)
	if err != nil {
		return err
	}
	defer nc.Close()
	c, err := client.New(nc, client.WithMaxEventSize(cfg.MaxEventSize))
	if err != nil {
		return err
	}
	return f(c)
}
