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
	"strings"
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

Every command exits 0 when it did what was asked, 1 when it failed at run
time (no Hookbus answering, a refused operation), 2 when the command line
or its input is invalid (an unknown command or flag, a missing required
flag, a wrong number of arguments, a missing or bad value): fix it and
retry. -o/--output names the same formats everywhere
(text, json; raw where bytes are printed as stored), and --timeout bounds
every command that talks to a running Hookbus (default 30s).

Every flag that has an environment variable shows it in its help; a flag
given on the command line wins over the environment.`,
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	// Cobra checks required flags after this hook, with a plain error.
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		if err := cmd.ValidateRequiredFlags(); err != nil {
			return usageError{err}
		}
		if err := cmd.ValidateFlagGroups(); err != nil {
			return usageError{err}
		}
		return nil
	}
	root.AddCommand(newServeCmd(), newPublishCmd(), newCallCmd(), newPluginCmd(), newHookCmd(), newDLQCmd(), newAuthCmd(), newEventsCmd(), newConfigCmd(), newTopologyCmd(), newGatewayCmd(), newDeviceCmd())
	refuseBadArgs(root)
	return root
}

// refuseBadArgs makes wrong arguments a usage error everywhere: a
// command's argument check (cobra's errors are plain ones), and, on every
// command that only groups others, an unknown subcommand (cobra prints
// the help and exits 0 for "hookbus plugin frobnicate"); run alone, such
// a command prints its help.
func refuseBadArgs(cmd *cobra.Command) {
	for _, sub := range cmd.Commands() {
		refuseBadArgs(sub)
	}
	if check := cmd.Args; check != nil {
		cmd.Args = func(cmd *cobra.Command, args []string) error {
			if err := check(cmd, args); err != nil {
				return usageError{err}
			}
			return nil
		}
	}
	if !cmd.HasSubCommands() || cmd.Runnable() {
		return
	}
	cmd.Args = cobra.ArbitraryArgs
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return cmd.Help()
		}
		msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
		cmd.SuggestionsMinimumDistance = 2
		if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
			msg += "; did you mean " + strings.Join(s, " or ") + "?"
		}
		return usageError{errors.New(msg)}
	}
}
