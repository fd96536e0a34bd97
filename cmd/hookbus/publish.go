package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/hookbus/hookbus/pkg/client"
	"github.com/hookbus/hookbus/pkg/events"
)

type publishFlags struct {
	typ, source, subject, id, data, contentType, dataSchema, output, file string
	extensions                                                            []string
	structured                                                            bool
	timeout                                                               time.Duration
}

func newPublishCmd() *cobra.Command {
	cfg, envErr := loadConfig()
	var f publishFlags
	cmd := &cobra.Command{
		Use:   "publish --type TYPE --source SOURCE [--data JSON|@FILE|@-] | --file FILE|-",
		Short: "Publish CloudEvents and wait until JetStream has stored them",
		Long: `Publish one CloudEvent on hookbus.event.<type> and wait for the JetStream
acknowledgement, then print the stream and sequence it was stored at.

The id defaults to a new UUID; publishing again with the same --source and
--id within the duplicate window stores nothing new and says "duplicate".
An event of a catalog type (hookbus events catalog) is checked against its
schema first. An invalid event exits with status 2 and the reason.

With --file (- for standard input), publish every line of the file, one
CloudEvent per line in the structured JSON format, up to 256 at a time
without waiting for each acknowledgement; an event whose acknowledgement does
not come is sent again (same id, stored once) three more times at most. A bad
line or an event not stored is reported on stderr with its line number and
does not stop the others; a progress line goes to stderr every second, and
the summary "published N events (M duplicates), F failed" to stdout. The exit
status is 1 if any event failed. --timeout does not apply to --file.`,
		Example: `  hookbus publish --type on_user_login_failure --source /auth \
    --data '{"ip":"203.0.113.7","endpoint":"html","error":"bad password"}'
  hookbus publish --type com.example.order.created --source /shop --id order-42 --data @order.json
  hookbus publish --file events.jsonl`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if envErr != nil {
				return usageError{envErr}
			}
			if err := f.checkMode(cmd.Flags()); err != nil {
				return err
			}
			if f.file != "" {
				return publishFile(cmd, cfg, f)
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
	addTimeout(fl, &f.timeout, defaultTimeout, "how long to keep trying to get the event stored")
	addOutput(fl, &f.output, "text", "json")
	fl.StringVarP(&f.file, "file", "f", "", "publish the events of FILE (- for standard input), one structured-mode JSON CloudEvent per line, instead of one from the flags")
	cfg.bindFlags(fl, "nats-url", "nats-creds", "nats-user", "max-event-size")
	return cmd
}

// checkMode refuses flags of one mode (one event from the flags, or
// --file) given with the other, and a missing --type or --source for one
// event.
func (f publishFlags) checkMode(fl *pflag.FlagSet) error {
	single := []string{"type", "source", "subject", "id", "data", "content-type", "dataschema", "ext"}
	if f.file != "" {
		for _, name := range single {
			if fl.Changed(name) {
				return usageError{fmt.Errorf("--%s: with --file the events come from the file", name)}
			}
		}
		return nil
	}
	var missing []string
	for _, name := range []string{"source", "type"} {
		if !fl.Changed(name) {
			missing = append(missing, strconv.Quote(name))
		}
	}
	if len(missing) > 0 {
		return usageError{fmt.Errorf("required flag(s) %s not set (or give --file)", strings.Join(missing, ", "))}
	}
	return nil
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
	var opts []client.Option
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

// progressEvery is how often publish --file reports progress on stderr.
var progressEvery = time.Second

// publishFile publishes the events of f.file, one structured-mode JSON
// CloudEvent per line, through a client.Publisher.
func publishFile(cmd *cobra.Command, cfg Config, f publishFlags) error {
	in := cmd.InOrStdin()
	if f.file != "-" {
		file, err := os.Open(f.file)
		if err != nil {
			return usageError{fmt.Errorf("--file: %w", err)}
		}
		defer file.Close()
		in = file
	}
	if f.output != "text" && f.output != "json" {
		return usageError{fmt.Errorf("--output %q: want text or json", f.output)}
	}
	var opts []client.Option
	if f.structured {
		opts = append(opts, client.Structured())
	}
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	codec := events.Codec{MaxSize: cfg.MaxEventSize}
	stderr := cmd.ErrOrStderr()
	var (
		mu      sync.Mutex // stderr
		refused atomic.Int64
		waiting sync.WaitGroup
	)
	report := func(line int, err error) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(stderr, "line %d: %v\n", line, err)
	}
	var stats client.PublisherStats
	err := withClient(ctx, cfg, func(c *client.Client) error {
		p, err := c.NewPublisher()
		if err != nil {
			return err
		}
		stop, stopped := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(stopped)
			tick := time.NewTicker(progressEvery)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
					st := p.Stats()
					mu.Lock()
					fmt.Fprintf(stderr, "published %d, failed %d, pending %d\n", st.Published, st.Failed+refused.Load(), p.Pending())
					mu.Unlock()
				}
			}
		}()
		readErr := publishLines(ctx, in, codec, func(line int, e *event.Event, err error) error {
			if err != nil {
				refused.Add(1)
				report(line, err)
				return nil
			}
			a, err := p.Publish(ctx, *e, opts...)
			if err != nil {
				refused.Add(1)
				report(line, err)
				return ctx.Err() // stop reading only when interrupted
			}
			waiting.Go(func() {
				if _, err := a.Wait(context.Background()); err != nil {
					report(line, err)
				}
			})
			return nil
		})
		closeErr := p.Close(ctx)
		waiting.Wait()
		close(stop)
		<-stopped
		stats = p.Stats()
		if readErr != nil {
			return readErr
		}
		return closeErr
	})
	failed := stats.Failed + refused.Load()
	if perr := printFileSummary(cmd.OutOrStdout(), f.output, stats, failed); err == nil {
		err = perr
	}
	if err == nil && failed > 0 {
		err = fmt.Errorf("%d of %d events failed", failed, stats.Published+failed)
	}
	return err
}

// publishLines reads in line by line and calls publish with the line
// number and its event, or the reason it is not one; blank lines are
// skipped. It stops at the end of in, at a read error, or when publish
// returns an error.
func publishLines(ctx context.Context, in io.Reader, codec events.Codec, publish func(line int, e *event.Event, err error) error) error {
	structured := nats.Header{events.HeaderContentType: []string{events.ContentTypeStructured}}
	r := bufio.NewReader(in)
	for line := 1; ; line++ {
		b, rerr := r.ReadBytes('\n')
		if rerr != nil && rerr != io.EOF {
			return fmt.Errorf("--file: line %d: %w", line, rerr)
		}
		if b = bytes.TrimSpace(b); len(b) > 0 {
			// Decode checks a structured event as every reader does:
			// the JSON format, a canonical source, the attributes, the
			// size and a catalog type's schema.
			e, err := codec.Decode(structured, b)
			if err := publish(line, e, err); err != nil {
				return err
			}
		}
		if rerr == io.EOF {
			return ctx.Err()
		}
	}
}

func printFileSummary(w io.Writer, output string, st client.PublisherStats, failed int64) error {
	if output == "json" {
		return json.NewEncoder(w).Encode(map[string]any{"published": st.Published, "duplicates": st.Duplicates, "failed": failed})
	}
	_, err := fmt.Fprintf(w, "published %d events (%d duplicates), %d failed\n", st.Published, st.Duplicates, failed)
	return err
}
