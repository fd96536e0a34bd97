// Command hookbus is the one Hookbus binary: `hookbus serve` runs the bus
// (by default on an embedded NATS server), the other subcommands are the
// CLI. Configuration comes from HOOKBUS_* environment variables and flags;
// this package is the only one that reads the environment.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/hookbus/hookbus/pkg/events"
)

// Exit codes.
const (
	exitFailure = 1 // something went wrong at run time
	exitInvalid = 2 // the input (flags, event) is invalid: fix it and retry
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCmd().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "hookbus:", err)
		os.Exit(exitCode(err))
	}
}

func exitCode(err error) int {
	var u usageError
	if errors.Is(err, events.ErrInvalid) || errors.As(err, &u) {
		return exitInvalid
	}
	return exitFailure
}

// usageError marks a mistake in the command line.
type usageError struct{ error }

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "hookbus",
		Short: "Hookbus: an event bus for plugins on NATS JetStream",
		Long: `Hookbus publishes lifecycle events as CloudEvents on NATS JetStream and runs
plugins for them. "hookbus serve" starts it all on an embedded NATS server;
the other commands talk to a running Hookbus.

Every flag that has an environment variable shows it in its help; a flag
given on the command line wins over the environment.`,
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(newServeCmd(), newPublishCmd(), newCallCmd(), newPluginCmd(), newDLQCmd(), newAuthCmd(), newEventsCmd(), newConfigCmd(), newTopologyCmd())
	return root
}
