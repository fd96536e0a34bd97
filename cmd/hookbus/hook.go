package main

import (
	"context"
	"errors"
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
		Short: "Bind actions to events without a plugin worker: create, list, delete, enable hooks, rotate secrets",
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

A persistent hook (create -P) is stored until deleted. A temporary hook lives
while the command that created it runs: it is deleted when that command stops,
and within 15 seconds when its process dies.

A hook whose target keeps failing is listed as failing; the dispatcher
disables it once it has failed for HOOKBUS_HOOK_DISABLE_AFTER (24h) with no
success. A disabled hook's events wait (as long as HOOKBUS_EVENTS keeps
them) and are delivered after hookbus hook enable. hookbus hook attempts
shows a hook's latest delivery attempts; hookbus hook rotate-secret gives a
webhook a new secret.

Errors are printed with their code (not_found, invalid) and exit non-zero:
2 for invalid input, 1 otherwise.`,
	}
	cmd.AddCommand(newHookCreateCmd(), newHookListCmd(), newHookDeleteCmd(), newHookRotateCmd(),
		newHookStatusCmd(events.HookEnable), newHookStatusCmd(events.HookDisable), newHookAttemptsCmd())
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
		Use:   "create --node NODE --type webhook|subject|exec [--persistent] ARG",
		Short: "Create a hook; a webhook's signing secret is printed this once",
		Long: `Create a hook on the events of --node and print it; a webhook's signing
secret is printed this once. ARG is the webhook's URL, the NATS subject of a
subject hook, or the path of an exec hook's program relative to the exec
directory. The registry refuses an exec hook while exec hooks are off or when
its program is not an executable file inside the directory.

With --persistent (-P) the hook is stored until deleted, and the command exits.

Without it the hook is temporary: the command stays in the foreground, keeping
the hook alive with a heartbeat (every 2 s) until it gets SIGINT (Ctrl-C) or
SIGTERM; then it deletes the hook and exits 0. If the process dies instead
(kill -9, a crash, a lost connection) the registry removes the hook within
15 seconds. It exits 1 if the session is lost while it runs.`,
		Example: `  hookbus hook create --node com.example.order.created --type webhook --persistent https://shop.example/hooks/orders
  hookbus hook create --node com.example.order.created https://dev.example/tail   # temporary: until Ctrl-C
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
			check := spec
			if !check.Persistent {
				check.Session = client.NewHookID() // the session's, once it exists
			}
			if err := check.Validate(); err != nil {
				return err
			}
			if !spec.Persistent {
				if envErr != nil {
					return usageError{envErr}
				}
				return withClient(cmd.Context(), cfg, func(c *client.Client) error {
					return runTemporaryHook(cmd, c, f, spec)
				})
			}
			return f.run(cmd, cfg, envErr, func(ctx context.Context, c *client.Client) error {
				h, err := c.CreateHook(ctx, spec)
				if err != nil {
					return err
				}
				return printCreated(cmd.OutOrStdout(), f.output, h)
			})
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&spec.Node, "node", "n", "", "event type, or a pattern: * matches one token, a final > the rest")
	fl.StringVarP(&typ, "type", "t", string(events.HookWebhook), "hook type: webhook (POST the event to the URL ARG), subject (publish it to the NATS subject ARG) or exec (run the program ARG of the exec directory)")
	fl.BoolVarP(&spec.Persistent, "persistent", "P", false, "store the hook until deleted, and exit; without it the hook is temporary and lives while this command runs")
	fl.StringVar(&spec.ID, "id", "", "the hook's id (32 lowercase hex characters; default a new one): sending the same create again is then harmless")
	fl.DurationVar(&hookTimeout, "hook-timeout", 0, "bound on one delivery attempt (default: the dispatcher's)")
	fl.IntVar(&spec.Settings.MaxAttempts, "max-attempts", 0, "delivery attempts before the event is dead-lettered (default: the dispatcher's)")
	fl.StringArrayVar(&filters, "filter", nil, "ATTR=OP:VALUE, repeatable, all must match: OP exact, prefix or suffix on source, subject, id, type or an extension (source=prefix:/shop/)")
	fl.BoolVar(&spec.Settings.Structured, "structured", false, "post the event in structured mode (application/cloudevents+json) instead of binary mode")
	fl.Float64Var(&spec.Settings.Rate, "rate", 0, fmt.Sprintf("most delivery attempts per second, per dispatcher replica (0: unlimited; at most %d)", events.MaxHookRate))
	f.bind(cmd, &cfg)
	return cmd
}

// printCreated prints a hook that was just created or given a new secret,
// with the secret this once.
func printCreated(out io.Writer, output string, h events.Hook) error {
	if output == "json" {
		return writeJSON(out, h)
	}
	if err := printHooks(out, []events.Hook{h}); err != nil {
		return err
	}
	if h.Secret == "" {
		return nil
	}
	_, err := fmt.Fprintf(out, "\nsecret: %s\n(shown this once: the receiver needs it to check the webhook-signature header)\n", h.Secret)
	return err
}

// runTemporaryHook creates spec as a temporary hook in a new session,
// prints it, and keeps the session alive until a signal (cmd's context
// ends) or the session is lost; then it deletes the hook.
func runTemporaryHook(cmd *cobra.Command, c *client.Client, f hookFlags, spec events.HookSpec) error {
	ctx, cancel := context.WithTimeout(cmd.Context(), f.timeout)
	s, err := c.HookSession(ctx)
	if err != nil {
		cancel()
		return err
	}
	h, err := s.CreateHook(ctx, spec)
	cancel()
	if err == nil {
		err = printCreated(cmd.OutOrStdout(), f.output, h)
	}
	if err == nil {
		_, _ = fmt.Fprintf(cmd.ErrOrStderr(), "temporary hook %s: live while this command runs; Ctrl-C deletes it\n", h.ID)
		err = waitTemporaryHook(cmd.Context(), cmd.ErrOrStderr(), s)
	}
	closeCtx, cancel := context.WithTimeout(context.Background(), f.timeout)
	defer cancel()
	if cerr := s.Close(closeCtx); cerr != nil {
		return errors.Join(err, fmt.Errorf("delete the temporary hook (the registry removes it within %s): %w", events.HookSessionTTL+5*time.Second, cerr))
	}
	if err == nil {
		_, _ = fmt.Fprintf(cmd.ErrOrStderr(), "temporary hook %s deleted\n", h.ID)
	}
	return err
}

// waitTemporaryHook waits for ctx to end (a signal) or the session to be
// lost, which it returns, and reports each heartbeat failure and recovery
// on w.
func waitTemporaryHook(ctx context.Context, w io.Writer, s *client.HookSession) error {
	t := time.NewTicker(events.HookSessionHeartbeat)
	defer t.Stop()
	var failing error
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.Done():
			return s.Err()
		case <-t.C:
		}
		err := s.Err()
		switch {
		case err != nil && (failing == nil || err.Error() != failing.Error()):
			_, _ = fmt.Fprintf(w, "heartbeat failed, retrying every %s (the hook goes %s after the last success): %v\n", events.HookSessionHeartbeat, events.HookSessionTTL, err)
		case err == nil && failing != nil:
			_, _ = fmt.Fprintln(w, "heartbeat succeeds again")
		}
		failing = err
	}
}

func newHookRotateCmd() *cobra.Command {
	cfg, envErr := loadConfig()
	var (
		f       hookFlags
		overlap time.Duration
	)
	cmd := &cobra.Command{
		Use:   "rotate-secret ID [--overlap 24h]",
		Short: "Give a webhook a new signing secret, printed this once; the old one signs too during the overlap",
		Long: `Give webhook ID a new signing secret, printed this once. For --overlap
(default 24h, at most 168h; 0 ends the old secret at once) each request carries
two signatures, "v1,<new> v1,<old>", so receivers can move to the new secret
without refusing a request.`,
		Example: `  hookbus hook rotate-secret 3f9c2a...
  hookbus hook rotate-secret --overlap 1h 3f9c2a...`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			secs := int64(overlap / time.Second)
			if err := (events.HookCommand{ID: id, OverlapSeconds: &secs}).Validate(events.HookRotate); err != nil {
				return err
			}
			return f.run(cmd, cfg, envErr, func(ctx context.Context, c *client.Client) error {
				h, err := c.RotateHookSecret(ctx, id, overlap)
				if err != nil {
					return err
				}
				if err := printCreated(cmd.OutOrStdout(), f.output, h); err != nil || f.output == "json" {
					return err
				}
				if !h.PreviousExpires.IsZero() {
					_, err = fmt.Fprintf(cmd.OutOrStdout(), "the previous secret signs too until %s\n", h.PreviousExpires.Format(time.RFC3339))
				}
				return err
			})
		},
	}
	cmd.Flags().DurationVar(&overlap, "overlap", events.DefaultSecretOverlap, "how long the previous secret keeps signing (0 to 168h)")
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
		Short: "List hooks (never their secrets), by node and creation time, with their status and pending events",
		Long: `List hooks, by node and creation time: the service (the stream the events
come from), node, type, persistent, id, created, status (active; failing: its
last attempt failed; disabled), pending (events waiting for it), the last
delivery, ARG and the last error. Secrets are never listed.`,
		Args: cobra.NoArgs,
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
	)
	cmd := &cobra.Command{
		Use:   "delete --node NODE [--type TYPE] [ARG] | delete ID",
		Short: "Delete one hook by id, or every hook on a node matching type and ARG",
		Long: `Delete hooks. With --node alone every hook on the node goes, persistent and
temporary; --type and ARG narrow it to the hooks of that type and argument.
Without --node, the argument is the id of the one hook to delete. The hooks are
collected first, then removed. Prints how many hooks were deleted ("3 hooks
deleted"), or with -o json the deleted hooks.`,
		Example: `  hookbus hook delete --node com.example.order.created
  hookbus hook delete --node com.example.order.created --type webhook https://shop.example/hooks/orders
  hookbus hook delete 3f9c2a...`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var id string
			if filter.Node == "" {
				if len(args) != 1 || typ != "" {
					return usageError{fmt.Errorf("give --node NODE (with optional --type and ARG), or the ID of one hook")}
				}
				id = args[0]
			} else if len(args) == 1 {
				filter.Arg = args[0]
			}
			filter.Type = events.HookType(typ)
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

// printHooks prints hooks as a table; the last error, free text, is the
// rest of the line.
func printHooks(w io.Writer, hooks []events.Hook) error {
	t := newTable(w, "ID", "SERVICE", "NODE", "TYPE", "PERSISTENT", "STATUS", "PENDING", "CREATED", "LAST_DELIVERY", "FILTERS", "ARG", "LAST_ERROR")
	for _, h := range hooks {
		filters := make([]string, 0, len(h.Filters))
		for _, m := range h.Filters {
			filters = append(filters, fmt.Sprintf("%s=%s:%s", m.Attr, m.Op, m.Value))
		}
		pending := "-"
		if h.Pending != nil {
			pending = fmt.Sprint(*h.Pending)
		}
		t.row(h.ID, h.Service, h.Node, h.Type, h.Persistent, h.Status, pending, h.Created.Format(time.RFC3339),
			formatTime(h.LastDelivery), strings.Join(filters, ","), h.Arg, h.LastError)
	}
	return t.flush()
}

// formatTime is t in RFC 3339, or "-" for never.
func formatTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Format(time.RFC3339)
}

// newHookStatusCmd is hookbus hook enable or disable.
func newHookStatusCmd(op events.HookOp) *cobra.Command {
	cfg, envErr := loadConfig()
	var (
		f      hookFlags
		reason string
	)
	cmd := &cobra.Command{
		Use:   string(op) + " ID",
		Short: "Enable a disabled hook: the events that waited are delivered, its failing state is reset",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			if err := events.ValidateHookID(id); err != nil {
				return err
			}
			return f.run(cmd, cfg, envErr, func(ctx context.Context, c *client.Client) error {
				var (
					h   events.Hook
					err error
				)
				if op == events.HookDisable {
					h, err = c.DisableHook(ctx, id, reason)
				} else {
					h, err = c.EnableHook(ctx, id)
				}
				if err != nil {
					return err
				}
				if f.output == "json" {
					return writeJSON(cmd.OutOrStdout(), h)
				}
				return printHooks(cmd.OutOrStdout(), []events.Hook{h})
			})
		},
	}
	if op == events.HookDisable {
		cmd.Short = "Disable a hook: nothing is delivered, its events wait (as long as HOOKBUS_EVENTS keeps them) until enabled"
		cmd.Flags().StringVar(&reason, "reason", "", "why, announced with the hookbus.hook.disabled lifecycle event")
	}
	f.bind(cmd, &cfg)
	return cmd
}

// newHookAttemptsCmd is hookbus hook attempts.
func newHookAttemptsCmd() *cobra.Command {
	cfg, envErr := loadConfig()
	var f hookFlags
	cmd := &cobra.Command{
		Use:   "attempts ID",
		Short: fmt.Sprintf("Show a hook's latest %d delivery attempts, newest first: time, status, duration, error", events.HookAttemptsKept),
		Long: fmt.Sprintf(`Show the latest %d delivery attempts of a hook, newest first. STATUS is the
target's HTTP status code, or timeout, refused (connection refused), blocked
(an address webhooks may not reach) or error. -o json prints the hook's whole
delivery state (last delivery, last error, failing since, attempts).`, events.HookAttemptsKept),
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			if err := events.ValidateHookID(id); err != nil {
				return err
			}
			return f.run(cmd, cfg, envErr, func(ctx context.Context, c *client.Client) error {
				st, err := c.HookAttempts(ctx, id)
				if err != nil {
					return err
				}
				if f.output == "json" {
					return writeJSON(cmd.OutOrStdout(), st)
				}
				t := newTable(cmd.OutOrStdout(), "TIME", "STATUS", "DURATION", "ERROR")
				for _, a := range st.Attempts {
					took := time.Duration(a.DurationMS * float64(time.Millisecond)).Round(time.Microsecond)
					t.row(a.Time.Format(time.RFC3339Nano), a.Status, took, a.Error)
				}
				return t.flush()
			})
		},
	}
	f.bind(cmd, &cfg)
	return cmd
}
