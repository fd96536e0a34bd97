package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hookbus/hookbus/internal/natsconn"
	"github.com/hookbus/hookbus/internal/natsembed"
	"github.com/hookbus/hookbus/pkg/client"
)

// cliConnectTimeout bounds how long a CLI command waits for NATS to
// answer: a command run with no server up fails at once with a hint,
// instead of waiting for its own timeout.
const cliConnectTimeout = 2 * time.Second

// withClient connects to NATS as the CLI (connectCLI), runs f with a
// client, and closes the connection.
func withClient(ctx context.Context, cfg Config, f func(*client.Client) error) error {
	nc, err := connectCLI(ctx, cfg, "hookbus-cli")
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

// connectCLI connects a CLI command to NATS, trying for up to
// cliConnectTimeout. Without HOOKBUS_NATS_URL, a user or creds, it
// authenticates with the all-in-one's generated password when
// <data-dir>/nats.password exists (natsConn).
func connectCLI(ctx context.Context, cfg Config, name string) (*nats.Conn, error) {
	if err := cfg.checkCLINATSAuth(); err != nil {
		return nil, err
	}
	ncfg := cfg.natsConn(name)
	cctx, cancel := context.WithTimeout(ctx, cliConnectTimeout)
	defer cancel()
	nc, err := natsconn.Connect(cctx, ncfg, nil)
	if errors.Is(err, nats.ErrAuthorization) && cfg.NATSUser == "" && cfg.NATSCreds == "" {
		if cfg.NATSURL != "" {
			return nil, fmt.Errorf("%w (with HOOKBUS_NATS_URL set, <data-dir>/%s is not used: set HOOKBUS_NATS_USER and HOOKBUS_NATS_PASSWORD, or HOOKBUS_NATS_CREDS)",
				err, natsembed.PasswordFileName)
		}
		if _, ferr := natsembed.ReadPasswordFile(cfg.natsPasswordFile()); ferr != nil {
			return nil, fmt.Errorf("%w (no password in %s: give the data directory of hookbus serve with --data-dir or HOOKBUS_DATA_DIR, or set HOOKBUS_NATS_USER and HOOKBUS_NATS_PASSWORD)",
				err, cfg.natsPasswordFile())
		}
	}
	// Nothing answered within cliConnectTimeout or the command's shorter
	// --timeout (not a signal that cancelled it): say what to do.
	if err != nil && errors.Is(cctx.Err(), context.DeadlineExceeded) && !errors.Is(ctx.Err(), context.Canceled) {
		return nil, fmt.Errorf("no Hookbus at %s: start one with 'hookbus serve' or set HOOKBUS_NATS_URL (%w)", ncfg.URL, err)
	}
	return nc, err
}
