package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/hookbus/hookbus/pkg/client"
	"github.com/hookbus/hookbus/pkg/events"
)

func newDLQCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dlq",
		Short: "See and replay dead letters (events a subscriber could not take)",
		Long: `Dead letters are kept in stream HOOKBUS_DLQ (30 days by default): events a
notify plugin failed on its last delivery, or that were not valid CloudEvents,
with the reason. Replay resends one to its subscriber alone and deletes the
dead letter. Invalid events the dispatcher refused (subscriber
hookbus-dispatcher) cannot be replayed: fix them and publish them again.`,
	}
	cmd.AddCommand(newDLQListCmd(), newDLQReplayCmd())
	return cmd
}

func newDLQListCmd() *cobra.Command {
	cfg, envErr := loadConfig()
	var (
		subscriber, output string
		timeout            time.Duration
	)
	cmd := &cobra.Command{
		Use:   "list [--subscriber NAME]",
		Short: "List dead letters, oldest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if envErr != nil {
				return usageError{envErr}
			}
			if subscriber != "" {
				if err := events.ValidateName("subscriber", subscriber); err != nil {
					return err
				}
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			var dls []client.DeadLetter
			err := withClient(ctx, cfg, func(c *client.Client) error {
				for dl, err := range c.DeadLetters(ctx, subscriber) {
					if err != nil {
						return err
					}
					dls = append(dls, dl)
				}
				return nil
			})
			if err != nil {
				return err
			}
			return printDeadLetters(cmd.OutOrStdout(), output, dls)
		},
	}
	cmd.Flags().StringVar(&subscriber, "subscriber", "", "only this subscriber's dead letters (a notify plugin, or hookbus-dispatcher)")
	addOutput(cmd.Flags(), &output, "text", "json")
	addTimeout(cmd.Flags(), &timeout, defaultTimeout, "how long to wait for NATS")
	cfg.bindFlags(cmd.Flags(), "nats-url", "nats-creds", "nats-user")
	return cmd
}

func newDLQReplayCmd() *cobra.Command {
	cfg, envErr := loadConfig()
	var (
		subscriber string
		all        bool
		timeout    time.Duration
	)
	cmd := &cobra.Command{
		Use:   "replay SEQ... | --subscriber NAME --all",
		Short: "Resend dead letters to their subscriber and delete them",
		Long: `Resend each dead letter's event to its subscriber alone (on
hookbus.replay.<subscriber> in HOOKBUS_EVENTS, which only that subscriber's
queue reads), then delete the dead letter. The subscriber gets it as a new
delivery, attempts counted from 1. SEQ is the sequence "hookbus dlq list"
shows.`,
		Example: `  hookbus dlq replay 12 13
  hookbus dlq replay --subscriber mailer --all`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if envErr != nil {
				return usageError{envErr}
			}
			if all == (len(args) > 0) || all != (subscriber != "") {
				return usageError{errors.New("give dead-letter sequences, or --subscriber NAME --all")}
			}
			var seqs []uint64
			for _, a := range args {
				seq, err := strconv.ParseUint(a, 10, 64)
				if err != nil || seq == 0 {
					return usageError{fmt.Errorf("%q is not a dead-letter sequence (a positive number)", a)}
				}
				seqs = append(seqs, seq)
			}
			if all {
				if err := events.ValidateName("subscriber", subscriber); err != nil {
					return err
				}
				if subscriber == events.DispatcherConsumer {
					return usageError{fmt.Errorf("dead letters of %s are invalid events the dispatcher refused: replaying cannot help; fix them and publish them again", subscriber)}
				}
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			w := cmd.OutOrStdout()
			return withClient(ctx, cfg, func(c *client.Client) error {
				if all {
					for dl, err := range c.DeadLetters(ctx, subscriber) {
						if err != nil {
							return err
						}
						seqs = append(seqs, dl.Seq)
					}
					if len(seqs) == 0 {
						fmt.Fprintf(w, "no dead letters for %s\n", subscriber)
						return nil
					}
				}
				var errs []error
				for _, seq := range seqs {
					if err := c.Replay(ctx, seq); err != nil {
						errs = append(errs, err)
						continue
					}
					fmt.Fprintf(w, "replayed dead letter %d\n", seq)
				}
				return errors.Join(errs...)
			})
		},
	}
	cmd.Flags().StringVar(&subscriber, "subscriber", "", "with --all: the subscriber whose dead letters to replay")
	cmd.Flags().BoolVar(&all, "all", false, "replay every dead letter of --subscriber")
	addTimeout(cmd.Flags(), &timeout, defaultTimeout, "how long to keep trying")
	cfg.bindFlags(cmd.Flags(), "nats-url", "nats-creds", "nats-user")
	return cmd
}

// deadLetterJSON is how `dlq list -o json` shows a dead letter: the
// original event in the CloudEvents JSON format, or, when it is not a
// valid event, why and its raw data.
type deadLetterJSON struct {
	Seq         uint64              `json:"seq"`
	Time        time.Time           `json:"time"`
	Subscriber  string              `json:"subscriber"`
	Reason      string              `json:"reason"`
	Forged      string              `json:"forged,omitempty"` // why it is not one Hookbus wrote (never replayed)
	Subject     string              `json:"subject"`
	StreamSeq   uint64              `json:"stream_seq"`
	Deliveries  uint64              `json:"deliveries"`
	Event       json.RawMessage     `json:"event,omitempty"`
	DecodeError string              `json:"decode_error,omitempty"`
	Headers     map[string][]string `json:"headers,omitempty"`
	Data        *string             `json:"data,omitempty"`
	DataBase64  []byte              `json:"data_base64,omitempty"` // standard base64, as in the CloudEvents JSON format
}

func printDeadLetters(w io.Writer, output string, dls []client.DeadLetter) error {
	if output == "json" {
		out := make([]deadLetterJSON, 0, len(dls))
		for _, dl := range dls {
			j := deadLetterJSON{
				Seq: dl.Seq, Time: dl.Time, Subscriber: dl.Subscriber, Reason: dl.Reason, Forged: dl.Forged,
				Subject: dl.Subject, StreamSeq: dl.StreamSeq, Deliveries: dl.Deliveries,
			}
			if dl.Event != nil {
				b, err := json.Marshal(dl.Event)
				if err != nil {
					return err
				}
				j.Event = b
			} else {
				j.DecodeError, j.Headers = dl.DecodeError, dl.Header
				if utf8.Valid(dl.Data) {
					s := string(dl.Data)
					j.Data = &s
				} else {
					j.DataBase64 = dl.Data
				}
			}
			out = append(out, j)
		}
		return writeJSON(w, out)
	}
	// The type and id of what is not a valid event are empty: "-".
	t := newTable(w, "SEQ", "SUBSCRIBER", "TYPE", "ID", "DELIVERIES", "TIME", "REASON")
	for _, dl := range dls {
		var typ, id string
		if dl.Event != nil {
			typ, id = dl.Event.Type(), dl.Event.ID()
		}
		reason := dl.Reason
		if dl.Forged != "" {
			reason = "FORGED (" + dl.Forged + "): " + reason
		}
		t.row(dl.Seq, dl.Subscriber, typ, id, dl.Deliveries, dl.Time.UTC().Format(time.RFC3339), reason)
	}
	return t.flush()
}
