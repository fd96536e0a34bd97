package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/hookbus/hookbus/pkg/client"
	"github.com/hookbus/hookbus/pkg/events"
)

// callSource is the CloudEvents source of calls from the CLI when --source
// is not given. A call is not stored, so unlike publish it needs no source
// that names a real producer.
const callSource = "/hookbus/cli"

func newCallCmd() *cobra.Command {
	cfg, envErr := loadConfig()
	var (
		typ, source, id, data, output string
		private                       []string
		timeout                       time.Duration
	)
	cmd := &cobra.Command{
		Use:   "call --type TYPE [--data JSON|@FILE|@-] [--private FIELD,...]",
		Short: "Run the chain of an event type now and print the result and trace",
		Long: `Send a synchronous call on hookbus.call.<type>: the dispatcher runs the
chain of running plugins of that type in order, each with the state the
previous one left, and answers with the final state, the plugin that halted
(if one did) and the trace of every step.

Fields named by --private stay as sent, whatever plugins return.

Exit status: 0 the chain ran (skipped steps included), 1 the call failed (a
plugin with error policy fail failed: plugin_failed, or no dispatcher
answered), 2 invalid input. A failed call still prints its state and trace.`,
		Example: `  hookbus call --type com.example.greeting --data '{"name":"ada"}'
  hookbus call --type on_user_authorisation --data @auth.json --private user_id -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if envErr != nil {
				return usageError{envErr}
			}
			if err := events.ValidateSource(source); err != nil {
				return err
			}
			e := event.New()
			e.SetType(typ)
			e.SetSource(source)
			e.SetID(id)
			if id == "" {
				e.SetID(uuid.NewString())
			}
			e.SetTime(time.Now())
			if data != "" {
				b, err := readData(data, cmd.InOrStdin())
				if err != nil {
					return err
				}
				if !json.Valid(b) {
					return usageError{errors.New("--data is not valid JSON")}
				}
				e.SetDataContentType(event.ApplicationJSON)
				e.DataEncoded = b
			}
			for _, f := range private {
				if f = strings.TrimSpace(f); f == "" || strings.Contains(f, ",") {
					return usageError{fmt.Errorf("--private %q: want top-level field names", f)}
				}
			}
			if err := (events.Codec{MaxSize: cfg.MaxEventSize}).Validate(&e); err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			var res events.ChainResult
			err := withClient(ctx, cfg, func(c *client.Client) error {
				var err error
				res, err = c.Call(ctx, e, client.Private(private...))
				return err
			})
			var failed *client.Error
			if err != nil && !errors.As(err, &failed) {
				return err // nothing ran: no result to print
			}
			if perr := printCallResult(cmd.OutOrStdout(), output, res); perr != nil {
				return perr
			}
			return err
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&typ, "type", "", "event type whose chain runs (required)")
	fl.StringVar(&source, "source", callSource, "event source, a URI reference naming the caller")
	fl.StringVar(&id, "id", "", "event id (default: a new UUID); plugins see it")
	fl.StringVar(&data, "data", "", "the initial state, JSON: inline, @FILE, or @- for standard input")
	fl.StringSliceVar(&private, "private", nil, "top-level fields plugins may not change (comma-separated)")
	addTimeout(fl, &timeout, defaultTimeout, "how long to wait for the result")
	addOutput(fl, &output, "text", "json")
	_ = cmd.MarkFlagRequired("type")
	cfg.bindFlags(fl, "nats-url", "nats-creds", "nats-user", "max-event-size")
	return cmd
}

// printCallResult prints a chain result: as JSON, or as the state, who
// halted, the error if the call failed, and a table of the trace.
func printCallResult(w io.Writer, output string, res events.ChainResult) error {
	if output == "json" {
		if res.Trace == nil {
			res.Trace = []events.TraceStep{}
		}
		return writeJSON(w, res)
	}
	state := strings.TrimSpace(string(res.State))
	if state == "" {
		state = "null"
	}
	fmt.Fprintf(w, "state:  %s\n", state)
	switch {
	case res.Halted && res.HaltedBy != "":
		fmt.Fprintf(w, "halted: yes, by %s\n", res.HaltedBy)
	case res.Halted:
		fmt.Fprintln(w, "halted: yes")
	default:
		fmt.Fprintln(w, "halted: no")
	}
	if res.Error != nil {
		fmt.Fprintf(w, "failed: %s: %s\n", res.Error.Code, res.Error.Message)
	}
	if len(res.Trace) == 0 {
		_, err := fmt.Fprintln(w, "trace:  no running plugin")
		return err
	}
	fmt.Fprintln(w, "trace:")
	t := newTable(w, "STEP", "PLUGIN", "OUTCOME", "DURATION", "ERROR")
	for i, s := range res.Trace {
		d := time.Duration(s.DurationMS * float64(time.Millisecond)).Round(10 * time.Microsecond)
		t.row(i+1, s.Plugin, s.Outcome, d, s.Error)
	}
	return t.flush()
}
