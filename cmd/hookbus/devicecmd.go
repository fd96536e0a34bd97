package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/hookbus/hookbus/pkg/events"
	"github.com/hookbus/hookbus/services/gateway"
)

func newDeviceCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "device",
		Short: "Revoke devices and push to them",
		Long: `Devices hold WebSocket sessions on the gateway (/devices/websocket). Revoking a
device bumps its token generation in bucket ` + events.BucketDevices + `: every
token issued before is refused (401, log in again) and its socket is closed on
whichever gateway replica holds it. A push is published on
hookbus.device.<id>.out and reaches the device if it is connected now (a push
to a device that is not connected is dropped).

Revoke writes the bucket directly: run it as a NATS user that may (the
operators' admin user in Kubernetes).

Exit status: 0 success, 1 failure, 2 invalid input.`,
	}
	cmd.AddCommand(newDeviceRevokeCmd(), newDevicePushCmd())
	return cmd
}

// deviceFlags are the flags every device subcommand shares.
type deviceFlags struct {
	cfg     Config
	envErr  error
	timeout time.Duration
}

func newDeviceFlags(cmd *cobra.Command) *deviceFlags {
	f := &deviceFlags{}
	f.cfg, f.envErr = loadConfig()
	fl := cmd.Flags()
	addTimeout(fl, &f.timeout, defaultTimeout, "how long to wait for NATS")
	f.cfg.bindFlags(fl, "nats-url", "nats-creds", "nats-user")
	return f
}

// run connects and runs fn.
func (f *deviceFlags) run(cmd *cobra.Command, fn func(ctx context.Context, nc *nats.Conn) error) error {
	if f.envErr != nil {
		return usageError{f.envErr}
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), f.timeout)
	defer cancel()
	nc, err := connectCLI(ctx, f.cfg, "hookbus-device")
	if err != nil {
		return err
	}
	defer nc.Close()
	return fn(ctx, nc)
}

// validDeviceID refuses what cannot be a device id (one subject token).
func validDeviceID(id string) error {
	if err := events.ValidateName("device", id); err != nil {
		return usageError{err}
	}
	return nil
}

func newDeviceRevokeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "revoke ID",
		Short:   "Revoke a device's tokens and disconnect it wherever it is connected",
		Example: `  hookbus device revoke thermostat-42`,
		Args:    cobra.ExactArgs(1),
	}
	f := newDeviceFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		id := args[0]
		if err := validDeviceID(id); err != nil {
			return err
		}
		return f.run(cmd, func(ctx context.Context, nc *nats.Conn) error {
			gen, err := gateway.Revoke(ctx, nc, id)
			if err != nil {
				return fmt.Errorf("revoke device %q: %w", id, err)
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "revoked device %q: token generation %d\n", id, gen)
			return err
		})
	}
	return cmd
}

func newDevicePushCmd() *cobra.Command {
	var data string
	cmd := &cobra.Command{
		Use:     "push ID --data JSON",
		Short:   "Push JSON to a device, if it is connected now",
		Example: `  hookbus device push thermostat-42 --data '{"target":21}'`,
		Args:    cobra.ExactArgs(1),
	}
	cmd.Flags().StringVar(&data, "data", "", "the JSON to push")
	f := newDeviceFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		id := args[0]
		if err := validDeviceID(id); err != nil {
			return err
		}
		if !json.Valid([]byte(data)) {
			return usageError{fmt.Errorf("--data %q: not JSON", data)}
		}
		return f.run(cmd, func(ctx context.Context, nc *nats.Conn) error {
			if err := nc.Publish(events.DeviceOutSubject(id), []byte(data)); err != nil {
				return err
			}
			if err := nc.FlushWithContext(ctx); err != nil {
				return err
			}
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "pushed to device %q (delivered only if it is connected)\n", id)
			return err
		})
	}
	return cmd
}
