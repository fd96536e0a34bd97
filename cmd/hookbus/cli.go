package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"

	"github.com/hookbus/hookbus/internal/natsconn"
	"github.com/hookbus/hookbus/internal/natsembed"
	"github.com/hookbus/hookbus/pkg/client"
)

// withClient connects to NATS as the CLI, runs f with a client, and closes
// the connection. Connecting retries until ctx ends. Without
// HOOKBUS_NATS_URL, a user or creds, it authenticates with the all-in-one's
// generated password when <data-dir>/nats.password exists (natsConn).
func withClient(ctx context.Context, cfg Config, f func(*client.Client) error) error {
	if err := cfg.checkCLINATSAuth(); err != nil {
		return err
	}
	nc, err := natsconn.Connect(ctx, cfg.natsConn("hookbus-cli"), nil)
	if errors.Is(err, nats.ErrAuthorization) && cfg.NATSUser == "" && cfg.NATSCreds == "" {
		if cfg.NATSURL != "" {
			return fmt.Errorf("%w (with HOOKBUS_NATS_URL set, <data-dir>/%s is not used: set HOOKBUS_NATS_USER and HOOKBUS_NATS_PASSWORD, or HOOKBUS_NATS_CREDS)",
				err, natsembed.PasswordFileName)
		}
		if _, ferr := natsembed.ReadPasswordFile(cfg.natsPasswordFile()); ferr != nil {
			return fmt.Errorf("%w (no password in %s: give the data directory of hookbus serve with --data-dir or HOOKBUS_DATA_DIR, or set HOOKBUS_NATS_USER and HOOKBUS_NATS_PASSWORD)",
				err, cfg.natsPasswordFile())
		}
	}
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
