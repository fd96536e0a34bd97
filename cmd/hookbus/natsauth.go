package main

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"

	"github.com/hookbus/hookbus/internal/natsembed"
)

// The all-in-one's NATS authentication. The embedded server requires a
// user when HOOKBUS_NATS_USER is set or a listener is off loopback
// (natsembed.Config.User); without HOOKBUS_NATS_USER that user is
// natsembed.GeneratedUser with the password `serve` generates into
// <data-dir>/nats.password, which the other commands read when they
// connect to the local default (no HOOKBUS_NATS_URL, no user, no creds):
// Config.natsConn.

// natsPasswordFile is where `serve` keeps the generated NATS password.
func (c Config) natsPasswordFile() string {
	return filepath.Join(c.DataDir, natsembed.PasswordFileName)
}

// websocketOrigins splits HOOKBUS_NATS_WEBSOCKET_ORIGINS.
func (c Config) websocketOrigins() []string {
	var out []string
	for o := range strings.SplitSeq(c.NATSWebsocketOrigins, ",") {
		if o = strings.TrimSpace(o); o != "" {
			out = append(out, o)
		}
	}
	return out
}

// validateNATSUser refuses half a user: a user without a password, or a
// password without a user, is a mistake, not an anonymous connection.
func (c Config) validateNATSUser() error {
	switch {
	case c.NATSUser != "" && c.NATSPassword == "":
		return errors.New("HOOKBUS_NATS_USER is set but HOOKBUS_NATS_PASSWORD is not: set both or neither")
	case c.NATSUser == "" && c.NATSPassword != "":
		return errors.New("HOOKBUS_NATS_PASSWORD is set but HOOKBUS_NATS_USER (--nats-user) is not: set both or neither")
	}
	return nil
}

// validateEmbeddedAuth checks, for `serve`, the user and, when it runs the
// embedded server, the server's settings.
func (c Config) validateEmbeddedAuth() error {
	if err := c.validateNATSUser(); err != nil {
		return err
	}
	if c.NATSURL != "" {
		return nil
	}
	if c.NATSCreds != "" {
		return errors.New("HOOKBUS_NATS_CREDS is for a NATS server of your own (HOOKBUS_NATS_URL): " +
			"the embedded server takes HOOKBUS_NATS_USER and HOOKBUS_NATS_PASSWORD")
	}
	if err := c.embedded().Validate(); err != nil {
		return fmt.Errorf("embedded server: %w", err)
	}
	return nil
}

// checkCLINATSAuth runs before a command connects: half a user is a usage
// error, and a generated password file it would use but cannot read is an
// error (rather than an authorization violation that hides why).
func (c Config) checkCLINATSAuth() error {
	if err := c.validateNATSUser(); err != nil {
		return usageError{err}
	}
	if c.NATSURL != "" || c.NATSUser != "" || c.NATSCreds != "" {
		return nil
	}
	if _, err := natsembed.ReadPasswordFile(c.natsPasswordFile()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
