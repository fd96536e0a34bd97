package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/hookbus/hookbus/pkg/client"
	"github.com/hookbus/hookbus/pkg/events"
)

// pluginFlags are the flags every plugin subcommand shares.
type pluginFlags struct {
	output  string
	timeout time.Duration
}

func (f *pluginFlags) bind(cmd *cobra.Command, cfg *Config) {
	addOutput(cmd.Flags(), &f.output, "text", "json")
	addTimeout(cmd.Flags(), &f.timeout, defaultTimeout, "how long to wait for the registry's answer")
	cfg.bindFlags(cmd.Flags(), "nats-url", "nats-creds", "nats-user")
}

// run validates the output flag, connects and runs f, then prints what f
// returned.
func (f *pluginFlags) run(cmd *cobra.Command, cfg Config, envErr error, fn func(context.Context, *client.Client) ([]events.Plugin, error)) error {
	if envErr != nil {
		return usageError{envErr}
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), f.timeout)
	defer cancel()
	var plugins []events.Plugin
	err := withClient(ctx, cfg, func(c *client.Client) error {
		var err error
		plugins, err = fn(ctx, c)
		return err
	})
	if err != nil {
		return err
	}
	return printPlugins(cmd.OutOrStdout(), f.output, plugins)
}

func newPluginCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "plugin",
		Short: "Register plugins and move them through their lifecycle",
		Long: `Plugin admin, through the registry (hookbus serve runs it).

Statuses: registered (stored, not running), started and restarted (running),
stopped (switched off; only enable leaves it), held (a hard dependency is not
running; released automatically). Stop and unregister hold every plugin that
hard-depends on the target; start and enable release them.

Errors are printed with their code (not_found, cycle, dependency_not_running,
stopped, invalid) and exit non-zero: 2 for invalid input, 1 otherwise.`,
	}
	cmd.AddCommand(newPluginRegisterCmd())
	for _, op := range []struct {
		op    events.PluginOp
		short string
	}{
		{events.OpStart, "Start a plugin (its hard dependencies must be running)"},
		{events.OpStop, "Stop a plugin, from any status, until enable; its hard dependents are held"},
		{events.OpRestart, "Restart a plugin (status restarted)"},
		{events.OpEnable, "Take a stopped plugin out of stopped"},
		{events.OpDelete, "Stop running a plugin and put it back to registered (not sticky)"},
		{events.OpUnregister, "Remove a plugin; its hard dependents are held"},
	} {
		cmd.AddCommand(newPluginOpCmd(op.op, op.short))
	}
	cmd.AddCommand(newPluginGetCmd(), newPluginListCmd(), newPluginCredentialsCmd())
	return cmd
}

func newPluginOpCmd(op events.PluginOp, short string) *cobra.Command {
	cfg, envErr := loadConfig()
	var f pluginFlags
	var event string
	cmd := &cobra.Command{
		Use:   string(op) + " NAME | --event EVENT",
		Short: short,
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if (len(args) == 1) == (event != "") {
				return usageError{fmt.Errorf("give a plugin NAME or --event EVENT (every plugin of the event), not both")}
			}
			return f.run(cmd, cfg, envErr, func(ctx context.Context, c *client.Client) ([]events.Plugin, error) {
				if event != "" {
					return c.Apply(ctx, op, event)
				}
				p, err := pluginOp(c, op)(ctx, args[0])
				return []events.Plugin{p}, err
			})
		},
	}
	cmd.Flags().StringVar(&event, "event", "", "apply to every plugin of this event, in dependency order, all or nothing")
	f.bind(cmd, &cfg)
	return cmd
}

func pluginOp(c *client.Client, op events.PluginOp) func(context.Context, string) (events.Plugin, error) {
	switch op {
	case events.OpStart:
		return c.Start
	case events.OpStop:
		return c.Stop
	case events.OpRestart:
		return c.Restart
	case events.OpEnable:
		return c.Enable
	case events.OpDelete:
		return c.Delete
	default:
		return c.Unregister
	}
}

func newPluginRegisterCmd() *cobra.Command {
	cfg, envErr := loadConfig()
	var f pluginFlags
	var (
		spec                 events.PluginSpec
		mode, onError, extra string
		file                 string
		hard, soft           []string
		stepTimeout          time.Duration
		backoff              []time.Duration
		declarationFlags     []string
	)
	cmd := &cobra.Command{
		Use:   "register --name NAME --event EVENT [flags] | -f SPEC.json",
		Short: "Register a plugin, or update its declaration (status is kept)",
		Example: `  hookbus plugin register --name acl --event on_user_authorisation --priority 10
  hookbus plugin register --name audit --event on_user_after_login --mode notify --depends acl --max-deliver 3
  hookbus plugin register -f plugin.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file != "" {
				if countSet(cmd, declarationFlags...) > 0 {
					return usageError{fmt.Errorf("-f takes the whole declaration: give no other plugin flags")}
				}
				b, err := os.ReadFile(file)
				if err != nil {
					return usageError{err}
				}
				dec := json.NewDecoder(strings.NewReader(string(b)))
				dec.DisallowUnknownFields()
				if err := dec.Decode(&spec); err != nil {
					return usageError{fmt.Errorf("%s: %w", file, err)}
				}
			} else {
				spec.Mode = events.Mode(mode)
				spec.Settings.OnError = events.OnError(onError)
				spec.Settings.StepTimeoutMS = int(stepTimeout.Milliseconds())
				for _, d := range backoff {
					spec.Settings.BackoffMS = append(spec.Settings.BackoffMS, int(d.Milliseconds()))
				}
				for _, n := range hard {
					spec.Depends = append(spec.Depends, events.Dependency{Name: n})
				}
				for _, n := range soft {
					spec.Depends = append(spec.Depends, events.Dependency{Name: n, Soft: true})
				}
				if extra != "" {
					spec.Extra = json.RawMessage(extra)
				}
			}
			if err := spec.Validate(); err != nil {
				return err
			}
			return f.run(cmd, cfg, envErr, func(ctx context.Context, c *client.Client) ([]events.Plugin, error) {
				p, err := c.Register(ctx, spec)
				return []events.Plugin{p}, err
			})
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&file, "file", "f", "", "read the declaration (JSON, as in docs/protocol.md) from this file")
	fl.StringVar(&spec.Name, "name", "", "plugin name, [A-Za-z0-9_-]{1,64}")
	fl.StringVar(&spec.Event, "event", "", "the event type the plugin handles")
	fl.StringVar(&mode, "mode", "chain", "chain (runs in order, may change or halt the event) or notify (gets every event on its own queue)")
	fl.IntVar(&spec.Priority, "priority", 0, "0..100, lower runs first in the chain")
	fl.StringSliceVar(&hard, "depends", nil, "hard dependencies: must be running for this plugin to run (comma-separated)")
	fl.StringSliceVar(&soft, "soft-depends", nil, "soft dependencies: only order the chain (comma-separated)")
	fl.StringVar(&extra, "extra", "", "free JSON object stored with the plugin")
	fl.StringVar(&spec.Owner, "owner", "", "who runs the plugin")
	fl.StringVar(&spec.Version, "plugin-version", "", "the plugin's version")
	fl.DurationVar(&stepTimeout, "step-timeout", 0, "chain step timeout (default 2s)")
	fl.StringVar(&onError, "on-error", "", "chain step error policy: skip (default), halt or fail")
	fl.IntVar(&spec.Settings.MaxDeliver, "max-deliver", 0, "notify deliveries before dead-lettering (default 5)")
	fl.DurationSliceVar(&backoff, "backoff", nil, "notify redelivery waits, e.g. 1s,5s,30s (default)")
	// Every flag so far but -f is a part of the declaration; connection
	// and output flags come next.
	fl.VisitAll(func(fl *pflag.Flag) {
		if fl.Name != "file" {
			declarationFlags = append(declarationFlags, fl.Name)
		}
	})
	f.bind(cmd, &cfg)
	return cmd
}

// countSet counts how many of the named flags were set on the command line.
func countSet(cmd *cobra.Command, names ...string) int {
	n := 0
	for _, name := range names {
		if fl := cmd.Flags().Lookup(name); fl != nil && fl.Changed {
			n++
		}
	}
	return n
}

func newPluginGetCmd() *cobra.Command {
	cfg, envErr := loadConfig()
	var f pluginFlags
	cmd := &cobra.Command{
		Use:   "get NAME",
		Short: "Show one plugin's state",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.run(cmd, cfg, envErr, func(ctx context.Context, c *client.Client) ([]events.Plugin, error) {
				p, err := c.Get(ctx, args[0])
				return []events.Plugin{p}, err
			})
		},
	}
	f.bind(cmd, &cfg)
	return cmd
}

func newPluginListCmd() *cobra.Command {
	cfg, envErr := loadConfig()
	var f pluginFlags
	var filter events.PluginFilter
	var status, mode string
	cmd := &cobra.Command{
		Use:   "list [--event EVENT] [--status STATUS] [--mode MODE]",
		Short: "List plugins, by event and chain order",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			filter.Status, filter.Mode = events.Status(status), events.Mode(mode)
			return f.run(cmd, cfg, envErr, func(ctx context.Context, c *client.Client) ([]events.Plugin, error) {
				return c.List(ctx, filter)
			})
		},
	}
	cmd.Flags().StringVar(&filter.Event, "event", "", "only plugins of this event")
	cmd.Flags().StringVar(&status, "status", "", "only plugins in this status")
	cmd.Flags().StringVar(&mode, "mode", "", "only chain or notify plugins")
	f.bind(cmd, &cfg)
	return cmd
}

func printPlugins(w io.Writer, output string, plugins []events.Plugin) error {
	if output == "json" {
		if plugins == nil {
			plugins = []events.Plugin{}
		}
		return writeJSON(w, plugins)
	}
	t := newTable(w, "NAME", "EVENT", "MODE", "PRIORITY", "STATUS", "DEPENDS", "UPDATED")
	for _, p := range plugins {
		deps := make([]string, 0, len(p.Depends))
		for _, d := range p.Depends {
			if d.Soft {
				deps = append(deps, d.Name+"(soft)")
			} else {
				deps = append(deps, d.Name)
			}
		}
		t.row(p.Name, p.Event, p.Mode, p.Priority, p.Status, strings.Join(deps, ","), p.UpdatedAt.Format(time.RFC3339))
	}
	return t.flush()
}
