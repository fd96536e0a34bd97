package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/hookbus/hookbus/pkg/client"
	"github.com/hookbus/hookbus/pkg/events"
	"github.com/hookbus/hookbus/services/gateway"
)

func newDeviceCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "device",
		Short: "List devices, revoke them, push to them, stop them",
		Long: `Devices hold WebSocket sessions on the gateway (/devices/websocket). Revoking a
device bumps its token generation in bucket ` + events.BucketDevices + `: every
token issued before is refused (401, log in again) and its socket is closed on
whichever gateway replica holds it. A push is stored (hookbus.device.<id>.out,
stream ` + events.StreamDevicePushes + `) and reaches the device when it is
connected: at once, or at its next connection within a day.

List reads bucket ` + events.BucketDevicePresence + ` (one key per connected device,
written by the gateway replica holding its socket) and the token generations.

Revoke writes the bucket directly: run it as a NATS user that may (the
operators' admin user in Kubernetes).

Exit status: 0 success, 1 failure, 2 invalid input.`,
	}
	cmd.AddCommand(newDeviceListCmd(), newDeviceRevokeCmd(), newDevicePushCmd(), newDeviceStopCmd())
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
	if err := events.ValidateDeviceID(id); err != nil {
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
	var data, file string
	cmd := &cobra.Command{
		Use:   "push ID --data JSON | --file F",
		Short: "Store a push to a device, delivered when it is connected",
		Long: `Store a push to a device in stream ` + events.StreamDevicePushes + `: the device gets it
at once if it is connected, else at its next connection within a day (the
stream keeps the last 1000 pushes of each device). --data is JSON, which the
device gets in a push text frame; --file sends the file's bytes (- for
standard input): JSON as with --data, anything else as a binary frame.`,
		Example: `  hookbus device push thermostat-42 --data '{"target":21}'
  hookbus device push thermostat-42 --file firmware-chunk.bin`,
		Args: cobra.ExactArgs(1),
	}
	cmd.Flags().StringVar(&data, "data", "", "the JSON to push")
	cmd.Flags().StringVar(&file, "file", "", "push the bytes of this file (- for standard input)")
	f := newDeviceFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		id := args[0]
		if err := validDeviceID(id); err != nil {
			return err
		}
		var push []byte
		switch {
		case (data == "") == (file == ""):
			return usageError{fmt.Errorf("give the push with --data JSON or --file PATH (one of them)")}
		case file == "-":
			b, err := io.ReadAll(cmd.InOrStdin())
			if err != nil {
				return fmt.Errorf("--file -: %w", err)
			}
			push = b
		case file != "":
			b, err := os.ReadFile(file)
			if err != nil {
				return usageError{fmt.Errorf("--file: %w", err)}
			}
			push = b
		case !json.Valid([]byte(data)):
			return usageError{fmt.Errorf("--data %q: not JSON", data)}
		default:
			push = []byte(data)
		}
		return f.run(cmd, func(ctx context.Context, nc *nats.Conn) error {
			c, err := client.New(nc)
			if err != nil {
				return err
			}
			ack, err := c.PushDevice(ctx, id, push)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "push %d to device %q stored; delivered when the device is connected\n", ack.Sequence, id)
			return err
		})
	}
	return cmd
}

func newDeviceStopCmd() *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   "stop ID [--reason R]",
		Short: "Close a device's socket (4003) wherever it is connected",
		Long: `Close the socket of a connected device with status 4003 and the reason, on
whichever gateway replica holds it, as a plugin's stop: the device does not
connect again by itself. Nothing happens to a device that is not connected;
its tokens stay good (revoke does that).`,
		Example: `  hookbus device stop thermostat-42 --reason "firmware too old"`,
		Args:    cobra.ExactArgs(1),
	}
	cmd.Flags().StringVar(&reason, "reason", "stopped by an operator", "the close reason the device gets (at most 120 bytes are sent)")
	f := newDeviceFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		id := args[0]
		if err := validDeviceID(id); err != nil {
			return err
		}
		return f.run(cmd, func(ctx context.Context, nc *nats.Conn) error {
			c, err := client.New(nc)
			if err != nil {
				return err
			}
			if err := c.StopDevice(ctx, id, reason); err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "stop sent to device %q (closed if connected)\n", id)
			return err
		})
	}
	return cmd
}

func newDeviceListCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "list [-o json]",
		Short: "List the connected devices and those with a token generation",
		Long: `List devices, by id: those connected (a key in bucket ` + events.BucketDevicePresence + `)
and those revoked at least once (a token generation in ` + events.BucketDevices + `). A
connected device shows the gateway replica holding its socket, when its session
started and when the gateway last heard from it (a frame or a pong, refreshed
every third of the idle timeout: 20 s by default); the key of a device whose
gateway died expires within a minute. GENERATION is the token generation (0:
never revoked).`,
		Example: `  hookbus device list
  hookbus device list -o json`,
		Args: cobra.NoArgs,
	}
	addOutput(cmd.Flags(), &output, "text", "json")
	f := newDeviceFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		return f.run(cmd, func(ctx context.Context, nc *nats.Conn) error {
			js, err := jetstream.New(nc)
			if err != nil {
				return err
			}
			devices, err := gateway.ListDevices(ctx, js)
			if err != nil {
				return err
			}
			if output == "json" {
				return writeJSON(cmd.OutOrStdout(), devices)
			}
			t := newTable(cmd.OutOrStdout(), "DEVICE", "CONNECTED", "REPLICA", "SINCE", "LAST-SEEN", "GENERATION")
			for _, d := range devices {
				since, seen := "-", "-"
				if d.Connected {
					since, seen = d.ConnectedSince.Format(time.RFC3339), d.LastSeen.Format(time.RFC3339)
				}
				t.row(d.Device, d.Connected, d.Replica, since, seen, d.Generation)
			}
			return t.flush()
		})
	}
	return cmd
}
