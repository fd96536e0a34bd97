package main

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/crypto/bcrypt"

	"github.com/hookbus/hookbus/internal/natsembed"
	"github.com/hookbus/hookbus/pkg/events"
)

// workerUser is the NATS user of a plugin worker serving the plugins
// names: exactly the plugin-example column of docs/security.md's
// permission table, for each of its plugins.
type workerUser struct {
	User    string
	Plugins []string
	// Events are the event types (NATS subject patterns: a trailing >
	// for a namespace) its plugins may be registered on; none: an
	// operator registers them.
	Events []string
}

// publish lists the subjects the worker may publish on.
func (w workerUser) publish() []string {
	out := []string{
		"# As an application: events, calls, plugin state, pushes to devices, stopping devices.",
		events.EventSubjects, events.CallSubjects,
		events.RegistryGetSubject, events.RegistryListSubject,
		events.DeviceOutSubjects, events.DeviceStopSubjects,
	}
	for _, p := range w.Plugins {
		out = append(out,
			"# Plugin "+p+": its commands, dead letters, notify queue and replay consumer (read, acknowledged; never created).",
			events.CommandTypePrefix+"*."+p)
		for _, e := range w.Events {
			out = append(out, events.CommandTypePrefix+"register."+p+"."+e)
		}
		out = append(out, events.SubjectRoot+".dlq."+p)
		for _, consumer := range []string{events.NotifyConsumer(p), events.ReplayConsumer(p)} {
			out = append(out,
				"$JS.API.CONSUMER.INFO."+events.StreamEvents+"."+consumer,
				"$JS.API.CONSUMER.MSG.NEXT."+events.StreamEvents+"."+consumer,
				"$JS.ACK."+events.StreamEvents+"."+consumer+".>",
			)
		}
	}
	return out
}

// subscribe lists the subjects the worker may subscribe to.
func (w workerUser) subscribe() []string {
	out := []string{
		"# Its own inbox (JetStream answers and deliveries), lifecycle events (as HOOKBUS_LIFECYCLE publishes them again).",
		events.InboxPrefix(w.User) + ".>",
		events.SubjectRoot + ".notice.lifecycle.*",
	}
	for _, p := range w.Plugins {
		out = append(out,
			"# Plugin "+p+": chain steps (queue group "+p+" only), command answers.",
			events.SubjectRoot+".plugin."+p+".call "+p,
			events.SubjectRoot+".answer.plugin."+p+".>",
		)
	}
	return out
}

// conf renders the user as a block of the NATS configuration, with
// password the value after "password:" (a $VARIABLE or a quoted bcrypt
// hash).
func (w workerUser) conf(password string) string {
	var b strings.Builder
	list := func(indent string, items []string) {
		for _, s := range items {
			if strings.HasPrefix(s, "#") {
				fmt.Fprintf(&b, "%s%s\n", indent, s)
				continue
			}
			fmt.Fprintf(&b, "%s%q\n", indent, s)
		}
	}
	fmt.Fprintf(&b, "{\n  user: %s\n  password: %s\n  permissions: {\n", w.User, password)
	b.WriteString("    publish: {\n      allow: [\n")
	list("        ", w.publish())
	b.WriteString("      ]\n    }\n    subscribe: {\n      allow: [\n")
	list("        ", w.subscribe())
	b.WriteString("      ]\n    }\n")
	b.WriteString("    # Answers to the chain steps it is sent, for as long as the dispatcher\n")
	b.WriteString("    # may wait for one (step_timeout_ms is at most 5 min).\n")
	b.WriteString("    allow_responses: {max: 1, expires: \"5m\"}\n  }\n}\n")
	return b.String()
}

func newPluginCredentialsCmd() *cobra.Command {
	var (
		user, passwordEnv string
		eventTypes        []string
	)
	cmd := &cobra.Command{
		Use:   "credentials NAME...",
		Short: "Print a NATS user for the worker of these plugins, limited to them",
		Long: `Print a NATS user for a plugin worker, limited to the plugins named
(docs/security.md): the block to add to the users of account HOOKBUS in the
NATS configuration (deployments/k8s/base/nats/accounts.conf; then reload
NATS), a new random password, and what the worker sets to connect. The
worker may send its own plugins' commands (registering them only on the
event types given with --event: which chains a worker may join is the
operator's call), answer their chain steps, read their notify queues, store
their dead letters, publish events and calls like an application, store
pushes to devices and stop devices (close their sockets); nothing of any other plugin, the auth store, the pushes
stored, or any stream, bucket or consumer definition.

The password goes into the block as a bcrypt hash, or, with --password-env
VAR, as $VAR for NATS to read from its environment (the Kubernetes
manifests' way: put the password in Secret hookbus-nats-users under VAR).

Workers in any language connect with the user, the password and the inbox
prefix _INBOX.<user> (Go: nats.UserInfo, nats.CustomInboxPrefix; Node:
user, pass, inboxPrefix).`,
		Example: `  hookbus plugin credentials acl --event on_user_authorisation
  hookbus plugin credentials example --event 'com.example.>' --password-env NATS_PLUGIN_EXAMPLE_PASSWORD`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, names []string) error {
			w, err := newWorkerUser(user, names, eventTypes)
			if err != nil {
				return usageError{err}
			}
			password := natsembed.NewPassword()
			value := ""
			if passwordEnv != "" {
				if err := checkEnvName(passwordEnv); err != nil {
					return usageError{err}
				}
				value = "$" + passwordEnv
			} else {
				hash, err := bcrypt.GenerateFromPassword([]byte(password), 11)
				if err != nil {
					return err
				}
				value = fmt.Sprintf("%q", hash)
			}
			return printCredentials(cmd.OutOrStdout(), w, value, password, passwordEnv)
		},
	}
	cmd.Flags().StringVar(&user, "user", "", "the NATS user name (default plugin-<first NAME>)")
	cmd.Flags().StringSliceVar(&eventTypes, "event", nil, "an event type the plugins may be registered on (repeat or comma-separate; a trailing .> allows a namespace, e.g. com.example.>); none: an operator registers them")
	cmd.Flags().StringVar(&passwordEnv, "password-env", "", "write the password as $VAR (NATS reads it from its environment) instead of a bcrypt hash")
	return cmd
}

func newWorkerUser(user string, names, eventTypes []string) (workerUser, error) {
	for _, n := range names {
		if err := events.ValidatePluginName(n); err != nil {
			return workerUser{}, err
		}
	}
	for _, e := range eventTypes {
		if err := events.ValidateType(strings.TrimSuffix(e, ".>")); err != nil {
			return workerUser{}, fmt.Errorf("--event %q: %w", e, err)
		}
	}
	if user == "" {
		user = "plugin-" + names[0]
	}
	var unique []string
	for _, n := range names {
		if !slices.Contains(unique, n) {
			unique = append(unique, n)
		}
	}
	if err := events.ValidateName("user", user); err != nil {
		return workerUser{}, err
	}
	return workerUser{User: user, Plugins: unique, Events: eventTypes}, nil
}

func checkEnvName(s string) error {
	for i, r := range s {
		if r == '_' || 'A' <= r && r <= 'Z' || i > 0 && '0' <= r && r <= '9' {
			continue
		}
		return fmt.Errorf("--password-env %q: want an environment variable name ([A-Z_][A-Z0-9_]*)", s)
	}
	if s == "" {
		return fmt.Errorf("--password-env: empty")
	}
	return nil
}

func printCredentials(out io.Writer, w workerUser, value, password, passwordEnv string) error {
	_, err := fmt.Fprintf(out, `# NATS user %[1]s for the worker of plugin(s) %[2]s (docs/security.md).
# 1. Add this block to the users of account HOOKBUS in the NATS configuration
#    (deployments/k8s/base/nats/accounts.conf), then reload NATS.
%[3]s`, w.User, strings.Join(w.Plugins, ", "), w.conf(value))
	if err != nil {
		return err
	}
	if passwordEnv != "" {
		if _, err := fmt.Fprintf(out, `# 2. Give NATS the password: key %[1]s of Secret hookbus-nats-users, e.g.
#    kubectl create secret generic hookbus-nats-users --from-literal=%[1]s=%[2]s ... (with the other keys)
`, passwordEnv, password); err != nil {
			return err
		}
	}
	_, err = fmt.Fprintf(out, `# The worker connects with (keep the password secret; it is shown only here):
HOOKBUS_NATS_USER=%s
HOOKBUS_NATS_PASSWORD=%s
# and reads its replies under the inbox prefix %s (Go: nats.CustomInboxPrefix; Node: inboxPrefix).
`, w.User, password, events.InboxPrefix(w.User))
	return err
}
