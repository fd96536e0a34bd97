package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/hookbus/hookbus/pkg/client"
	"github.com/hookbus/hookbus/pkg/events"
	"github.com/hookbus/hookbus/services/persistence"
)

func newAuthCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "auth",
		Short: "Read and write auth credentials and keys in the persistence service",
		Long: `The auth store of the persistence service (hookbus serve runs it): per
context (tenant), one credentials value and keys addressed by type and id,
encrypted at rest by the service. Values are bytes: give them as base64
(--value) or from a file (--file PATH, - for standard input); read them as
base64 (default), JSON (-o json) or raw bytes (-o raw).

Well-known key types: ` + strings.Join(events.KeyTypes(), ", ") + `;
other [A-Za-z0-9_-] names are accepted too. Ids may hold any character.

Exit status: 0 success, 1 failure (including "not found"), 2 invalid input.`,
	}
	creds := &cobra.Command{Use: "creds", Short: "Load and save a context's credentials"}
	creds.AddCommand(newAuthCredsGetCmd(), newAuthCredsSetCmd())
	keys := &cobra.Command{Use: "keys", Short: "Get, set, delete and list a context's keys"}
	keys.AddCommand(newAuthKeysGetCmd(), newAuthKeysSetCmd(), newAuthKeysDeleteCmd(), newAuthKeysListCmd())
	cmd.AddCommand(creds, keys, newAuthRotateCmd(), newAuthKeygenCmd())
	return cmd
}

// authFlags are the flags every auth subcommand shares.
type authFlags struct {
	cfg         Config
	envErr      error
	contextName string
	output      string
	timeout     time.Duration
}

func newAuthFlags(cmd *cobra.Command, timeout time.Duration, outputs ...string) *authFlags {
	f := &authFlags{}
	f.cfg, f.envErr = loadConfig()
	fl := cmd.Flags()
	fl.StringVar(&f.contextName, "context", "", "context (tenant) name; empty for the default context")
	addTimeout(fl, &f.timeout, timeout, "how long to wait for the persistence service")
	if len(outputs) > 0 {
		addOutput(fl, &f.output, outputs...)
	}
	f.cfg.bindFlags(fl, "nats-url", "nats-creds", "nats-user")
	return f
}

// run checks the shared flags, then runs fn with the context's store.
func (f *authFlags) run(cmd *cobra.Command, fn func(ctx context.Context, c *client.Client, store *client.AuthStore) error) error {
	if f.envErr != nil {
		return usageError{f.envErr}
	}
	if err := events.ValidateAuthContext(f.contextName); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), f.timeout)
	defer cancel()
	return withClient(ctx, f.cfg, func(c *client.Client) error {
		return fn(ctx, c, c.AuthStore(f.contextName))
	})
}

// displayContext names the context in messages.
func (f *authFlags) displayContext() string {
	if f.contextName == "" {
		return events.AuthDefaultContext
	}
	return f.contextName
}

// valueFlags read a value from --value (base64) or --file.
type valueFlags struct{ value, file string }

func (v *valueFlags) bind(cmd *cobra.Command) {
	cmd.Flags().StringVar(&v.value, "value", "", "the value, base64 (standard alphabet)")
	cmd.Flags().StringVar(&v.file, "file", "", "read the value's bytes from this file (- for standard input)")
}

func (v *valueFlags) read(stdin io.Reader) ([]byte, error) {
	switch {
	case (v.value == "") == (v.file == ""):
		return nil, usageError{fmt.Errorf("give the value with --value BASE64 or --file PATH (one of them)")}
	case v.file == "-":
		return io.ReadAll(stdin)
	case v.file != "":
		b, err := os.ReadFile(v.file)
		if err != nil {
			return nil, usageError{fmt.Errorf("--file: %w", err)}
		}
		return b, nil
	}
	b, err := base64.StdEncoding.DecodeString(v.value)
	if err != nil {
		b, err = base64.RawStdEncoding.DecodeString(v.value)
	}
	if err != nil {
		return nil, usageError{fmt.Errorf("--value is not base64: %w", err)}
	}
	return b, nil
}

func newAuthCredsGetCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "get [--context NAME]",
		Short: "Print a context's credentials (base64, JSON with the revision, or raw bytes)",
		Args:  cobra.NoArgs,
	}
	f := newAuthFlags(cmd, defaultTimeout, "text", "json", "raw")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		return f.run(cmd, func(ctx context.Context, _ *client.Client, store *client.AuthStore) error {
			cr, err := store.LoadCredentials(ctx)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			switch f.output {
			case "json":
				return json.NewEncoder(w).Encode(map[string]any{"context": f.displayContext(), "revision": cr.Revision, "value": cr.Value})
			case "raw":
				_, err = w.Write(cr.Value)
			default:
				_, err = fmt.Fprintln(w, base64.StdEncoding.EncodeToString(cr.Value))
			}
			return err
		})
	}
	return cmd
}

func newAuthCredsSetCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "set (--value BASE64 | --file PATH) [--context NAME] [--revision N]",
		Short: "Save a context's credentials, optionally only over a given revision",
		Example: `  hookbus auth creds set --context acme --file creds.json
  hookbus auth creds set --context acme --value eyJtZSI6e319 --revision 7   # fails if another writer saved since 7
  hookbus auth creds set --context acme --file creds.json --revision 0      # only if none are stored`,
		Args: cobra.NoArgs,
	}
	f := newAuthFlags(cmd, defaultTimeout)
	var v valueFlags
	v.bind(cmd)
	var revision string
	cmd.Flags().StringVar(&revision, "revision", "", "save only if the stored revision is this one (0: only if none are stored)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		value, err := v.read(cmd.InOrStdin())
		if err != nil {
			return err
		}
		var expect *uint64
		if revision != "" {
			n, err := strconv.ParseUint(revision, 10, 64)
			if err != nil {
				return usageError{fmt.Errorf("--revision %q: want a number", revision)}
			}
			expect = &n
		}
		return f.run(cmd, func(ctx context.Context, _ *client.Client, store *client.AuthStore) error {
			var rev uint64
			if expect != nil {
				rev, err = store.SaveCredentialsIf(ctx, value, *expect)
			} else {
				rev, err = store.SaveCredentials(ctx, value)
			}
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "saved credentials of context %q, revision %d\n", f.displayContext(), rev)
			return err
		})
	}
	return cmd
}

func newAuthKeysGetCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "get TYPE ID... [--context NAME]",
		Short: "Print keys: one line per id, the id, a tab and the value in base64",
		Long: `Print the keys of TYPE with the given ids. Text output has one line per
found id: the id, a tab, the value in base64. -o raw writes one key's bytes
(give exactly one id). An id that is not stored makes it exit with status 1
and "not found" after printing the others.`,
		Example: `  hookbus auth keys get session 5511999999999:12@s.whatsapp.net --context acme
  hookbus auth keys get pre-key 1 2 3 -o json`,
		Args: cobra.MinimumNArgs(2),
	}
	f := newAuthFlags(cmd, defaultTimeout, "text", "json", "raw")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		typ, ids := args[0], args[1:]
		if f.output == "raw" && len(ids) != 1 {
			return usageError{fmt.Errorf("-o raw writes one key: give exactly one id")}
		}
		return f.run(cmd, func(ctx context.Context, _ *client.Client, store *client.AuthStore) error {
			found, err := store.LoadKeys(ctx, typ, ids...)
			if err != nil {
				return err
			}
			if err := printKeys(cmd.OutOrStdout(), f.output, ids, found); err != nil {
				return err
			}
			var missing []string
			for _, id := range ids {
				if _, ok := found[id]; !ok {
					missing = append(missing, strconv.Quote(id))
				}
			}
			if len(missing) > 0 {
				return fmt.Errorf("%w: %s %s in context %q", client.ErrNotFound, typ, strings.Join(missing, ", "), f.displayContext())
			}
			return nil
		})
	}
	return cmd
}

func printKeys(w io.Writer, output string, ids []string, found map[string][]byte) error {
	switch output {
	case "json":
		return json.NewEncoder(w).Encode(map[string]any{"keys": found})
	case "raw":
		_, err := w.Write(found[ids[0]])
		return err
	}
	for _, id := range ids {
		if v, ok := found[id]; ok {
			if _, err := fmt.Fprintf(w, "%s\t%s\n", id, base64.StdEncoding.EncodeToString(v)); err != nil {
				return err
			}
		}
	}
	return nil
}

func newAuthKeysSetCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "set TYPE ID (--value BASE64 | --file PATH) [--context NAME]",
		Short:   "Store one key",
		Example: `  hookbus auth keys set session 5511999999999:12@s.whatsapp.net --file session.bin --context acme`,
		Args:    cobra.ExactArgs(2),
	}
	f := newAuthFlags(cmd, defaultTimeout)
	var v valueFlags
	v.bind(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		value, err := v.read(cmd.InOrStdin())
		if err != nil {
			return err
		}
		typ, id := args[0], args[1]
		return f.run(cmd, func(ctx context.Context, _ *client.Client, store *client.AuthStore) error {
			if err := store.SaveKeys(ctx, map[string]map[string][]byte{typ: {id: value}}); err != nil {
				return err
			}
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "set %s %q in context %q\n", typ, id, f.displayContext())
			return err
		})
	}
	return cmd
}

func newAuthKeysDeleteCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "delete TYPE ID... [--context NAME]",
		Short: "Delete keys (ids that are not stored are ignored)",
		Args:  cobra.MinimumNArgs(2),
	}
	f := newAuthFlags(cmd, defaultTimeout)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		typ, ids := args[0], args[1:]
		return f.run(cmd, func(ctx context.Context, _ *client.Client, store *client.AuthStore) error {
			if err := store.DeleteKeys(ctx, typ, ids...); err != nil {
				return err
			}
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "deleted %d %s key(s) in context %q\n", len(ids), typ, f.displayContext())
			return err
		})
	}
	return cmd
}

func newAuthKeysListCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "list TYPE [--context NAME]",
		Short: "List the ids stored under a type, one per line, sorted",
		Args:  cobra.ExactArgs(1),
	}
	f := newAuthFlags(cmd, defaultTimeout, "text", "json")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		return f.run(cmd, func(ctx context.Context, _ *client.Client, store *client.AuthStore) error {
			ids, err := store.ListKeys(ctx, args[0])
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if f.output == "json" {
				return json.NewEncoder(w).Encode(map[string]any{"ids": ids})
			}
			for _, id := range ids {
				if _, err := fmt.Fprintln(w, id); err != nil {
					return err
				}
			}
			return nil
		})
	}
	return cmd
}

func newAuthRotateCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rotate",
		Short: "Re-encrypt every stored value with the service's newest key",
		Long: `Ask the persistence service to re-encrypt every stored value, of every
context, with the newest of its keys (the first in HOOKBUS_PERSISTENCE_KEY
or the key file). Afterwards the older keys are no longer needed: the
command names them, and they can be dropped from the configuration.

To rotate: put a new key first in the list (hookbus auth keygen makes one)
on every replica and restart them, run this, then remove the old key.
Running it again is harmless.`,
		Args: cobra.NoArgs,
	}
	f := newAuthFlags(cmd, rotateTimeout, "text", "json")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		return f.run(cmd, func(ctx context.Context, c *client.Client, _ *client.AuthStore) error {
			rot, err := c.RotateAuthKeys(ctx)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if f.output == "json" {
				return json.NewEncoder(w).Encode(map[string]any{
					"key_id": rot.KeyID, "rotated": rot.Rotated, "unchanged": rot.Unchanged, "retired_key_ids": rot.RetiredKeyIDs,
				})
			}
			fmt.Fprintf(w, "every value is encrypted with key %s: %d re-encrypted, %d already were\n", rot.KeyID, rot.Rotated, rot.Unchanged)
			if len(rot.RetiredKeyIDs) > 0 {
				fmt.Fprintf(w, "no longer needed, may be dropped from the configuration: key(s) %s\n", strings.Join(rot.RetiredKeyIDs, ", "))
			}
			return nil
		})
	}
	return cmd
}

func newAuthKeygenCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "keygen",
		Short: "Print a new random encryption key for HOOKBUS_PERSISTENCE_KEY (base64 of 32 bytes)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			k := persistence.NewKey()
			fmt.Fprintf(cmd.ErrOrStderr(), "key id %s\n", k.ID())
			_, err := fmt.Fprintln(cmd.OutOrStdout(), k.Secret())
			return err
		},
	}
}
