package main

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"
)

func newTopologyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "topology",
		Short: "Create, update or check every stream and bucket (an operator's job)",
		Long: `Streams and buckets, as an operator.

In a deployment with least-privilege NATS users (deployments/k8s,
docs/security.md) only the admin user may change a stream or bucket: the
registry creates the missing ones on its first start and refuses to start
when one differs from what it expects (after an upgrade that changes a
setting). Then run "hookbus topology ensure" with the admin user, with the
same settings (HOOKBUS_STREAM_REPLICAS, HOOKBUS_EVENTS_MAX_AGE, ...) as the
services.`,
	}
	cmd.AddCommand(newTopologyRunCmd("ensure", "Create every missing stream and bucket and update the ones that differ"),
		newTopologyRunCmd("check", "Report every stream and bucket that is missing or differs; change nothing"))
	return cmd
}

func newTopologyRunCmd(mode, short string) *cobra.Command {
	cfg, envErr := loadConfig()
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   mode,
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if envErr != nil {
				return usageError{envErr}
			}
			cfg.Topology = mode
			if err := cfg.Validate(); err != nil {
				return usageError{err}
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			nc, err := connectCLI(ctx, cfg, "hookbus-topology")
			if err != nil {
				return err
			}
			defer nc.Close()
			js, err := jetstream.New(nc)
			if err != nil {
				return err
			}
			results, err := applyTopology(ctx, js, cfg)
			for _, r := range results {
				line := fmt.Sprintf("%s: %s", r.Resource, r.Action)
				if len(r.Changed) > 0 {
					line += fmt.Sprint(" ", r.Changed)
				}
				fmt.Fprintln(cmd.OutOrStdout(), line)
			}
			if err == nil && mode == "check" {
				fmt.Fprintln(cmd.OutOrStdout(), "every stream and bucket is as declared")
			}
			return err
		},
	}
	addTimeout(cmd.Flags(), &timeout, defaultTimeout, "how long to wait for NATS")
	cfg.bindFlags(cmd.Flags(), "nats-url", "nats-creds", "nats-user", "stream-replicas",
		"events-max-age", "events-max-bytes", "dlq-max-age", "duplicate-window", "max-event-size")
	return cmd
}
