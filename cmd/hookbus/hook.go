package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/hookbus/hookbus/pkg/client"
	"github.com/hookbus/hookbus/pkg/events"
)

func newHookCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "hook",
		Short: "Bind actions to events without a plugin worker: create, list, delete hooks",
		Long: `Hook admin, through the registry (hookbus serve runs it).

A hook is an action on the events of a node: an event type, or a pattern with
* (one token) and > (the rest). Its type says what ARG is:
  webhook  posts each event to the URL ARG, signed as Standard Webhooks do
           with the secret shown once at create
  subject  publishes each event, as the bus stores it, to the NATS subject ARG
           (through JetStream when a stream holds it), as the dispatcher's
           NATS user: not under hookbus., _INBOX. or $
  exec     runs the program ARG, a path relative to the exec directory the
           operator allowed (HOOKBUS_HOOK_EXEC_DIR; off without it), with the
           event's data on stdin and its attributes as CE_* variables; exit 0
           delivers

Errors are printed with their code (not_found, invalid) and exit non-zero:
2 for invalid input, 1 otherwise.`,
	}
	cmd.AddCommand(newHookCreateCmd(), newHookListCmd(), newHookDeleteCmd())
	return cmd
}

// hookFlags are the flags every hook subcommand shares.
type hookFlags struct {
	output  string
	timeout time.Duration
}

func (f *hookFlags) bind(cmd *cobra.Command, cfg *Config) {
	addOutput(cmd.Flags(), &f.output, "text", "json")
	addTimeout(cmd.Flags(), &f.timeout, defaultTimeout, "how long to wait for the registry's answer")
	cfg.bindFlags(cmd.Flags(), "nats-url", "nats-creds", "nats-user")
}

// run connects and runs fn within --timeout.
func (f *hookFlags) run(cmd *cobra.Command, cfg Config, envErr error, fn func(context.Context, *client.Client) error) error {
	if envErr != nil {
		return usageError{envErr}
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), f.timeout)
	defer cancel()
	return withClient(ctx, cfg, func(c *client.Client) error { return fn(ctx, c) })
}

func newHookCreateCmd() *cobra.Command {
	cfg, envErr := loadConfig()
	var (
		f           hookFlags
		spec        events.HookSpec
		typ         string
		hookTimeout time.Duration
		filters     []string
	)
	cmd := &cobra.Command{
		Use:   "create --node NODE --type webhook|subject|exec --persistent ARG",
		Short: "Create a hook; a webhook's signing secret is printed this once",
		Long: `Create a hook on the events of --node. ARG is the webhook's URL, the NATS
subject of a subject hook, or the path of an exec hook's program relative to
the exec directory. The registry refuses an exec hook while exec hooks are off
or when its program is not an executable file inside the directory.`,
		Example: `  hookbus hook create --node com.example.order.created --type webhook --persistent https://shop.example/hooks/orders
  hookbus hook create --node 'com.example.order.*' --type subject -P hooks.orders
  hookbus hook create --node com.example.order.paid --type exec -P --hook-timeout 30s invoices/print.sh
  hookbus hook create --node 'com.example.>' --type webhook --persistent --structured --max-attempts 10 https://audit.example/in
  hookbus hook create --node 'com.example.>' -P --filter source=prefix:/shop/eu/ --filter tenant=exact:acme https://eu.example/in`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec.Type = events.HookType(typ)
			spec.Arg = args[0]
			spec.Settings.TimeoutMS = int(hookTimeout.Milliseconds())
			for _, f := range filters {
				m, err := parseHookFilter(f)
				if err != nil {
					return usageError{err}
				}
				spec.Filters = append(spec.Filters, m)
			}
			if spec.ID == "" {
				spec.ID = client.NewHookID()
			}
			if err := spec.Validate(); err != nil {
				return err
			}
			return f.run(cmd, cfg, envErr, func(ctx context.Context, c *client.Client) error {
				h, err := c.CreateHook(ctx, spec)
				if err != nil {
					return err
				}
				out := cmd.OutOrStdout()
				if f.output == "json" {
					return writeJSON(out, h)
				}
				if err := printHooks(out, []events.Hook{h}); err != nil {
					return err
				}
				if h.Secret != "" {
					_, err = fmt.Fprintf(out, "\nsecret: %s\n(shown this once: the receiver needs it to check the webhook-signature header)\n", h.Secret)
				}
				return err
			})
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&spec.Node, "node", "n", "", "event type, or a pattern: * matches one token, a final > the rest")
	fl.StringVarP(&typ, "type", "t", string(events.HookWebhook), "hook type: webhook (POST the event to the URL ARG), subject (publish it to the NATS subject ARG) or exec (run the program ARG of the exec directory)")
	fl.BoolVarP(&spec.Persistent, "persistent", "P", false, "store the hook: it survives restarts (required for now: temporary hooks are not supported yet)")
	fl.StringVar(&spec.ID, "id", "", "the hook's id (32 lowercase hex characters; default a new one): sending the same create again is then harmless")
	fl.DurationVar(&hookTimeout, "hook-timeout", 0, "bound on one delivery attempt (default: the dispatcher's)")
	fl.IntVar(&spec.Settings.MaxAttempts, "max-attempts", 0, "delivery attempts before the event is dead-lettered (default: the dispatcher's)")
	fl.StringArrayVar(&filters, "filter", nil, "ATTR=OP:VALUE, repeatable, all must match: OP exact, prefix or suffix on source, subject, id, type or an extension (source=prefix:/shop/)")
	fl.BoolVar(&spec.Settings.Structured, "structured", false, "post the event in structured mode (application/cloudevents+json) instead of binary mode")
	f.bind(cmd, &cfg)
	return cmd
}

func newHookListCmd() *cobra.Command {
	cfg, envErr := loadConfig()
	var (
		f      hookFlags
		filter events.HookFilter
		typ    string
	)
	cmd := &cobra.Command{
		Use:   "list [--node NODE] [--type TYPE]",
		Short: "List hooks (never their secrets), by node and creation time",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			filter.Type = events.HookType(typ)
			if err := filter.Validate(); err != nil {
				return err
			}
			return f.run(cmd, cfg, envErr, func(ctx context.Context, c *client.Client) error {
				hooks, err := c.ListHooks(ctx, filter)
				if err != nil {
					return err
				}
				if f.output == "json" {
					if hooks == nil {
						hooks = []events.Hook{}
					}
					return writeJSON(cmd.OutOrStdout(), hooks)
				}
				return printHooks(cmd.OutOrStdout(), hooks)
			})
		},
	}
	cmd.Flags().StringVarP(&filter.Node, "node", "n", "", "only hooks on this node (as written at create: a pattern is its own node)")
	cmd.Flags().StringVarP(&typ, "type", "t", "", "only hooks of this type")
	f.bind(cmd, &cfg)
	return cmd
}

func newHookDeleteCmd() *cobra.Command {
	cfg, envErr := loadConfig()
	var (
		f      hookFlags
		filter events.HookFilter
		typ    string
		id     string
	)
	cmd := &cobra.Command{
		Use:   "delete --node NODE [--type TYPE] [ARG] | --id ID",
		Short: "Delete one hook by id, or every hook on a node matching type and ARG",
		Long: `Delete hooks. With --node alone every hook on the node goes; --type and ARG
narrow it to the hooks of that type and argument. --id deletes one hook.
Prints how many hooks were deleted.`,
		Example: `  hookbus hook delete --node com.example.order.created
  hookbus hook delete --node com.example.order.created --type webhook https://shop.example/hooks/orders
  hookbus hook delete --id 3f9c2a...`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if (id != "") == (filter.Node != "") {
				return usageError{fmt.Errorf("give --node NODE (with optional --type and ARG) or --id ID, not both")}
			}
			if id != "" && (len(args) > 0 || typ != "") {
				return usageError{fmt.Errorf("--id names one hook: give no --type or ARG with it")}
			}
			filter.Type = events.HookType(typ)
			if len(args) == 1 {
				filter.Arg = args[0]
			}
			if err := filter.Validate(); err != nil {
				return err
			}
			if id != "" {
				if err := events.ValidateHookID(id); err != nil {
					return err
				}
			}
			return f.run(cmd, cfg, envErr, func(ctx context.Context, c *client.Client) error {
				var deleted []events.Hook
				if id != "" {
					h, err := c.DeleteHook(ctx, id)
					if err != nil {
						return err
					}
					deleted = []events.Hook{h}
				} else {
					var err error
					if deleted, err = c.DeleteHooks(ctx, filter); err != nil {
						return err
					}
				}
				if f.output == "json" {
					if deleted == nil {
						deleted = []events.Hook{}
					}
					return writeJSON(cmd.OutOrStdout(), deleted)
				}
				noun := "hooks"
				if len(deleted) == 1 {
					noun = "hook"
				}
				_, err := fmt.Fprintf(cmd.OutOrStdout(), "%d %s deleted\n", len(deleted), noun)
				return err
			})
		},
	}
	cmd.Flags().StringVarP(&filter.Node, "node", "n", "", "delete hooks on this node (as written at create)")
	cmd.Flags().StringVarP(&typ, "type", "t", "", "only hooks of this type")
	cmd.Flags().StringVar(&id, "id", "", "delete the hook with this id")
	f.bind(cmd, &cfg)
	return cmd
}

// parseHookFilter reads --filter ATTR=OP:VALUE.
func parseHookFilter(s string) (events.HookMatch, error) {
	attr, rest, ok := strings.Cut(s, "=")
	op, value, ok2 := strings.Cut(rest, ":")
	if !ok || !ok2 {
		return events.HookMatch{}, fmt.Errorf("--filter %q: want ATTR=OP:VALUE, e.g. source=prefix:/shop/", s)
	}
	return events.HookMatch{Attr: attr, Op: events.MatchOp(op), Value: value}, nil
}

// printHooks prints hooks as a table; ARG, the URL, is the rest of the line.
func printHooks(w io.Writer, hooks []events.Hook) error {
	t := newTable(w, "ID", "NODE", "TYPE", "PERSISTENT", "STATUS", "CREATED", "FILTERS", "ARG")
	for _, h := range hooks {
		filters := make([]string, 0, len(h.Filters))
		for _, m := range h.Filters {
			filters = append(filters, fmt.Sprintf("%s=%s:%s", m.Attr, m.Op, m.Value))
		}
		t.row(h.ID, h.Node, h.Type, h.Persistent, h.Status, h.Created.Format(time.RFC3339), strings.Join(filters, ","), h.Arg)
	}
	return t.flush()
}
