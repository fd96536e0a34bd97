package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/hookbus/hookbus/pkg/client"
	"github.com/hookbus/hookbus/pkg/events"
)

type publishFlags struct {
	typ, source, subject, id, data, contentType, dataSchema, output string
	extensions                                                      []string
	structured                                                      bool
	timeout                                                         time.Duration
}

func newPublishCmd() *cobra.Command {
	cfg, envErr := loadConfig()
	var f publishFlags
	cmd := &cobra.Command{
		Use:   "publish --type TYPE --source SOURCE [--data JSON|@FILE|@-]",
		Short: "Publish one CloudEvent and wait until JetStream has stored it",
		Long: `Publish one CloudEvent on hookbus.event.<type> and wait for the JetStream
acknowledgement, then print the stream and sequence it was stored at.

The id defaults to a new UUID; publishing again with the same --source and
--id within the duplicate window stores nothing new and says "duplicate".
An event of a catalog type (hookbus events catalog) is checked against its
schema first. An invalid event exits with status 2 and the reason.`,
		Example: `  hookbus publish --type on_user_login_failure --source /auth \
    --data '{"ip":"203.0.113.7","endpoint":"html","error":"bad password"}'
  hookbus publish --type com.example.order.created --source /shop --id order-42 --data @order.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if envErr != nil {
				return usageError{envErr}
			}
			e, err := f.event(cmd.InOrStdin())
			if err != nil {
				return err
			}
			// Refuse a bad event before connecting: with no server in
			// reach, the reason would otherwise wait for the timeout.
			if err := (events.Codec{MaxSize: cfg.MaxEventSize}).Validate(&e); err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), f.timeout)
			defer cancel()
			ack, err := publish(ctx, cfg, e, f.structured)
			if err != nil {
				return err
			}
			return printAck(cmd.OutOrStdout(), f.output, e, ack)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.typ, "type", "", "event type, e.g. on_user_authorisation or com.example.order.created (required)")
	fl.StringVar(&f.source, "source", "", "event source, a URI reference naming the producer, e.g. /auth (required)")
	fl.StringVar(&f.subject, "subject", "", "CloudEvents subject attribute: what the event is about within the source")
	fl.StringVar(&f.id, "id", "", "event id (default: a new UUID)")
	fl.StringVar(&f.data, "data", "", "event data: inline JSON, @FILE, or @- for standard input")
	fl.StringVar(&f.contentType, "content-type", "application/json", "datacontenttype of --data")
	fl.StringVar(&f.dataSchema, "dataschema", "", "dataschema attribute (URI)")
	fl.StringArrayVar(&f.extensions, "ext", nil, "extension attribute NAME=VALUE (repeatable)")
	fl.BoolVar(&f.structured, "structured", false, "send in structured mode instead of binary mode")
	fl.DurationVar(&f.timeout, "timeout", 10*time.Second, "how long to keep trying to get the event stored")
	fl.StringVarP(&f.output, "output", "o", "text", "output format: text or json")
	_ = cmd.MarkFlagRequired("type")
	_ = cmd.MarkFlagRequired("source")
	cfg.bindFlags(fl, "nats-url", "nats-creds", "nats-user", "max-event-size")
	return cmd
}

// event builds the CloudEvent the flags describe. Validation of the event
// itself is left to the client, so the CLI and the SDK refuse the same
// events with the same messages.
func (f publishFlags) event(stdin io.Reader) (event.Event, error) {
	if f.output != "text" && f.output != "json" {
		return event.Event{}, usageError{fmt.Errorf("--output %q: want text or json", f.output)}
	}
	// The CloudEvents library would rewrite a non-canonical source; refuse
	// it as every reader does, naming the canonical form.
	if err := events.ValidateSource(f.source); err != nil {
		return event.Event{}, err
	}
	e := event.New()
	e.SetType(f.typ)
	e.SetSource(f.source)
	e.SetID(f.id)
	if f.id == "" {
		e.SetID(uuid.NewString())
	}
	e.SetTime(time.Now())
	if f.subject != "" {
		e.SetSubject(f.subject)
	}
	if f.dataSchema != "" {
		e.SetDataSchema(f.dataSchema)
	}
	for _, kv := range f.extensions {
		name, value, ok := strings.Cut(kv, "=")
		if !ok {
			return e, usageError{fmt.Errorf("--ext %q: want NAME=VALUE", kv)}
		}
		if err := e.Context.SetExtension(name, value); err != nil {
			return e, usageError{fmt.Errorf("--ext %q: %w", kv, err)}
		}
	}
	if f.data == "" {
		return e, nil
	}
	data, err := readData(f.data, stdin)
	if err != nil {
		return e, err
	}
	if isJSON(f.contentType) && !json.Valid(data) {
		return e, usageError{fmt.Errorf("--data is not valid JSON (content type %s)", f.contentType)}
	}
	e.SetDataContentType(f.contentType)
	e.DataEncoded = data
	return e, nil
}

func readData(arg string, stdin io.Reader) ([]byte, error) {
	switch {
	case arg == "@-":
		return io.ReadAll(stdin)
	case strings.HasPrefix(arg, "@"):
		b, err := os.ReadFile(arg[1:])
		if err != nil {
			return nil, usageError{fmt.Errorf("--data: %w", err)}
		}
		return b, nil
	default:
		return []byte(arg), nil
	}
}

func isJSON(contentType string) bool {
	mt, _, _ := strings.Cut(contentType, ";")
	mt = strings.TrimSpace(strings.ToLower(mt))
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}

func publish(ctx context.Context, cfg Config, e event.Event, structured bool) (ack client.PublishAck, err error) {
	var opts []client.PublishOption
	if structured {
		opts = append(opts, client.Structured())
	}
	err = withClient(ctx, cfg, func(c *client.Client) error {
		ack, err = c.Publish(ctx, e, opts...)
		return err
	})
	return ack, err
}

func printAck(w io.Writer, output string, e event.Event, ack client.PublishAck) error {
	if output == "json" {
		return json.NewEncoder(w).Encode(map[string]any{
			"id": e.ID(), "source": e.Source(), "type": e.Type(),
			"stream": ack.Stream, "seq": ack.Sequence, "duplicate": ack.Duplicate,
		})
	}
	dup := ""
	if ack.Duplicate {
		dup = " (duplicate: already stored, not stored again)"
	}
	_, err := fmt.Fprintf(w, "published %s to %s seq %d%s\n", e.ID(), ack.Stream, ack.Sequence, dup)
	return err
}
