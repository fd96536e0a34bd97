package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/hookbus/hookbus/pkg/events"
	"github.com/hookbus/hookbus/services/gateway"
)

func newGatewayCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "gateway",
		Short: "Manage the HTTP gateway's bearer tokens",
		Long: `Bearer tokens of the HTTP gateway (hookbus serve runs it), stored in bucket
` + events.BucketGatewayTokens + ` as the SHA-256 of the token only: a token is
printed once, when it is created, and cannot be shown again. Each allows
actions (publish: POST /events, POST /events/{type}; call: POST /calls/{type})
on the event types its patterns match, as NATS matches subjects: * is one
dot-separated token, a trailing > the rest. The gateways take a new or
revoked token within moments, without a restart.

The commands write the bucket directly: run them as a NATS user that may
(the operators' admin user in Kubernetes).

Exit status: 0 success, 1 failure (a token that exists already: conflict;
one that does not: not_found), 2 invalid input.`,
	}
	tokens := &cobra.Command{Use: "token", Short: "Create, list and revoke gateway tokens"}
	tokens.AddCommand(newGatewayTokenCreateCmd(), newGatewayTokenListCmd(), newGatewayTokenRevokeCmd())
	cmd.AddCommand(tokens)
	return cmd
}

// gatewayTokenFlags are the flags every token subcommand shares.
type gatewayTokenFlags struct {
	cfg     Config
	envErr  error
	output  string
	timeout time.Duration
}

func newGatewayTokenFlags(cmd *cobra.Command, outputs ...string) *gatewayTokenFlags {
	f := &gatewayTokenFlags{}
	f.cfg, f.envErr = loadConfig()
	fl := cmd.Flags()
	addTimeout(fl, &f.timeout, defaultTimeout, "how long to wait for NATS")
	if len(outputs) > 0 {
		addOutput(fl, &f.output, outputs...)
	}
	f.cfg.bindFlags(fl, "nats-url", "nats-creds", "nats-user")
	return f
}

// run connects and runs fn with the tokens' bucket.
func (f *gatewayTokenFlags) run(cmd *cobra.Command, fn func(ctx context.Context, kv jetstream.KeyValue) error) error {
	if f.envErr != nil {
		return usageError{f.envErr}
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), f.timeout)
	defer cancel()
	nc, err := connectCLI(ctx, f.cfg, "hookbus-gateway-token")
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	kv, err := js.KeyValue(ctx, events.BucketGatewayTokens)
	if err != nil {
		return fmt.Errorf("bucket %s: %w", events.BucketGatewayTokens, err)
	}
	return fn(ctx, kv)
}

func newGatewayTokenCreateCmd() *cobra.Command {
	var (
		name  string
		allow []string
		rate  int
	)
	cmd := &cobra.Command{
		Use:   "create --name NAME --allow ACTION:PATTERN[,...] [--rate N]",
		Short: "Create a token and print it (once: only its SHA-256 is stored)",
		Example: `  hookbus gateway token create --name shop --allow publish:com.example.order.>
  hookbus gateway token create --name stripe --allow publish:com.stripe.>,call:com.example.checkout --rate 50
  curl -H "Authorization: Bearer $TOKEN" ...   # the printed token`,
		Args: cobra.NoArgs,
	}
	f := newGatewayTokenFlags(cmd, "text", "json")
	fl := cmd.Flags()
	fl.StringVar(&name, "name", "", "token name, [A-Za-z0-9_-]{1,64}: in logs, metrics and the source (/gateway/NAME) of webhook events")
	fl.StringSliceVar(&allow, "allow", nil, "what the token may do: action:pattern, action publish or call, pattern an event type where * is one token and a trailing > the rest (repeat or comma-separate)")
	fl.IntVar(&rate, "rate", 0, "requests per second (and burst) of this token; 0: the gateway's HOOKBUS_GATEWAY_RATE")
	_ = cmd.MarkFlagRequired("name")
	_ = cmd.MarkFlagRequired("allow")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		perms := make([]gateway.Permission, 0, len(allow))
		for _, a := range allow {
			p, err := gateway.ParsePermission(a)
			if err != nil {
				return err
			}
			perms = append(perms, p)
		}
		token, rec, err := gateway.NewToken(name, perms, rate, time.Now())
		if err != nil {
			return err
		}
		v, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		return f.run(cmd, func(ctx context.Context, kv jetstream.KeyValue) error {
			if _, err := kv.Create(ctx, name, v); errors.Is(err, jetstream.ErrKeyExists) {
				return &events.Error{Code: events.CodeRevisionConflict,
					Message: fmt.Sprintf("gateway token %q exists already: revoke it first, or choose another name", name)}
			} else if err != nil {
				return fmt.Errorf("create gateway token %q: %w", name, err)
			}
			w := cmd.OutOrStdout()
			if f.output == "json" {
				return writeJSON(w, struct {
					Token string `json:"token"`
					tokenJSON
				}{token, newTokenJSON(rec)})
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "created gateway token %q; it is shown only now:\n", name)
			_, err := fmt.Fprintln(w, token)
			return err
		})
	}
	return cmd
}

// tokenJSON is a token as list and create -o json print it: never its
// hash.
type tokenJSON struct {
	Name      string    `json:"name"`
	Allow     []string  `json:"allow"`
	Rate      int       `json:"rate"`
	CreatedAt time.Time `json:"created_at"`
}

func newTokenJSON(t gateway.Token) tokenJSON {
	allow := make([]string, 0, len(t.Allow))
	for _, p := range t.Allow {
		allow = append(allow, p.String())
	}
	return tokenJSON{Name: t.Name, Allow: allow, Rate: t.Rate, CreatedAt: t.CreatedAt}
}

func newGatewayTokenListCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the tokens: name, allowed actions, rate, creation time (never the token or its hash)",
		Args:  cobra.NoArgs,
	}
	f := newGatewayTokenFlags(cmd, "text", "json")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		return f.run(cmd, func(ctx context.Context, kv jetstream.KeyValue) error {
			lister, err := kv.ListKeys(ctx)
			if err != nil {
				return err
			}
			defer func() { _ = lister.Stop() }() // an error once the keys are all read
			var names []string
			for k := range lister.Keys() {
				names = append(names, k)
			}
			slices.Sort(names)
			list := make([]tokenJSON, 0, len(names))
			for _, n := range names {
				e, err := kv.Get(ctx, n)
				if errors.Is(err, jetstream.ErrKeyNotFound) {
					continue // revoked meanwhile
				} else if err != nil {
					return err
				}
				var t gateway.Token
				if err := json.Unmarshal(e.Value(), &t); err != nil {
					return fmt.Errorf("gateway token %q: unreadable record: %w", n, err)
				}
				list = append(list, newTokenJSON(t))
			}
			return printTokens(cmd.OutOrStdout(), f.output, list)
		})
	}
	return cmd
}

func printTokens(w io.Writer, output string, list []tokenJSON) error {
	if output == "json" {
		return writeJSON(w, list)
	}
	t := newTable(w, "NAME", "RATE", "CREATED", "ALLOW")
	for _, tok := range list {
		r := "default"
		if tok.Rate > 0 {
			r = fmt.Sprint(tok.Rate)
		}
		t.row(tok.Name, r, tok.CreatedAt.Format(time.RFC3339), strings.Join(tok.Allow, ","))
	}
	return t.flush()
}

func newGatewayTokenRevokeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "revoke NAME",
		Short: "Revoke a token: the gateways refuse it within moments",
		Args:  cobra.ExactArgs(1),
	}
	f := newGatewayTokenFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		name := args[0]
		// Not ValidateTokenName: a token named before a name was
		// reserved can still be revoked.
		if err := events.ValidateName("gateway token", name); err != nil {
			return err
		}
		return f.run(cmd, func(ctx context.Context, kv jetstream.KeyValue) error {
			if _, err := kv.Get(ctx, name); errors.Is(err, jetstream.ErrKeyNotFound) {
				return fmt.Errorf("%w: gateway token %q", events.ErrNotFound, name)
			} else if err != nil {
				return err
			}
			// Purge, not delete: the record is not kept.
			if err := kv.Purge(ctx, name); err != nil {
				return fmt.Errorf("revoke gateway token %q: %w", name, err)
			}
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "revoked gateway token %q\n", name)
			return err
		})
	}
	return cmd
}
