package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/hookbus/hookbus/internal/durable"
	"github.com/hookbus/hookbus/internal/lifecycle"
	"github.com/hookbus/hookbus/internal/microerr"
	"github.com/hookbus/hookbus/pkg/events"
)

// lifecycleSource is the CloudEvents source of every lifecycle event.
const lifecycleSource = "/hookbus/registry"

// maxConflicts bounds how often one command is re-planned after another
// writer changed a plugin under it.
const maxConflicts = 20

// errConflict marks a compare-and-swap that lost: plan again.
var errConflict = errors.New("revision conflict")

// command is one parsed command of a kind ("plugin" or "hook"), as settle
// needs it.
type command struct {
	kind string
	op   string
	// target is what a valid command is about, whose answer subject
	// replies must use; named is what the subject names, whose answer
	// subject an invalid command is answered on.
	target, named string
	// invalid, when set, refuses the command.
	invalid *events.Error
	// execute applies a valid command: the reply and the error it
	// carries, or a passing failure (err) after which it is tried again.
	execute func(ctx context.Context, meta *jetstream.MsgMetadata) (reply any, replyErr *events.Error, err error)
	// errorReply is the kind's reply carrying only e.
	errorReply func(e *events.Error) any
}

// handle applies one plugin command and settles its message (settle).
func (s *Service) handle(ctx context.Context, kv jetstream.KeyValue, msg jetstream.Msg) {
	op, named, cmd, cerr := parseCommand(msg)
	s.settle(ctx, msg, command{
		kind: "plugin", op: string(op), target: cmd.Target(), named: named, invalid: cerr,
		execute: func(ctx context.Context, meta *jetstream.MsgMetadata) (any, *events.Error, error) {
			reply, err := s.execute(ctx, kv, op, cmd, meta.Sequence.Stream, meta.NumDelivered > 1)
			if reply.Plugins == nil && reply.Error == nil {
				reply.Plugins = []events.Plugin{}
			}
			return reply, reply.Error, err
		},
		errorReply: func(e *events.Error) any { return events.CommandReply{Error: e} },
	})
}

// settle settles one command's message: invalid commands are answered and
// terminated (never retried); commands that could not be applied for a
// passing reason are retried after RetryDelay, and answered with an
// internal error and terminated after MaxAttempts; the rest are answered
// and acknowledged. This is the one place that decides, for plugin and
// hook commands alike.
func (s *Service) settle(ctx context.Context, msg jetstream.Msg, c command) {
	meta, err := msg.Metadata()
	if err != nil {
		s.log.Error("command without metadata", "subject", msg.Subject(), "err", err)
		_ = msg.Term()
		return
	}
	replyTo := events.HeaderValue(msg.Headers(), events.HeaderReplyTo)
	log := s.log.With("subject", msg.Subject(), "attempt", meta.NumDelivered)
	if c.invalid == nil && replyTo != "" {
		if err := events.CheckAnswerSubject(c.kind, c.target, replyTo); err != nil {
			// Answering there would publish with the registry's rights
			// where the sender may not: refuse the command, answer nobody.
			log.Warn("command refused: reply subject", "err", err)
			_ = msg.TermWithReason("reply subject refused")
			return
		}
	}
	if c.invalid != nil {
		log.Warn("invalid command refused", "err", c.invalid)
		if events.CheckAnswerSubject(c.kind, c.named, replyTo) == nil {
			s.answer(replyTo, c.errorReply(c.invalid), c.invalid)
		}
		_ = msg.TermWithReason(c.invalid.Message)
		return
	}
	reply, replyErr, err := c.execute(ctx, meta)
	if err != nil && ctx.Err() == nil && meta.NumDelivered >= uint64(s.cfg.MaxAttempts) {
		log.Error("command not applied in its last attempt: dropped", "op", c.op, "err", err)
		e := &events.Error{Code: events.CodeInternal,
			Message: fmt.Sprintf("not applied in %d attempts (%v); a part of it may have been applied: send it again (commands are idempotent)", meta.NumDelivered, err)}
		s.answer(replyTo, c.errorReply(e), e)
		_ = msg.TermWithReason("not applied in its attempts")
		return
	}
	if err != nil {
		delay := durable.RetryDelay(s.cfg.RetryDelay, s.cfg.MaxRetryDelay, meta.NumDelivered)
		log.Error("command not applied, will retry", "op", c.op, "err", err, "delay", delay)
		_ = msg.NakWithDelay(delay)
		return
	}
	s.answer(replyTo, reply, replyErr)
	if err := msg.Ack(); err != nil {
		// The command is applied; if it comes back, it finds nothing to
		// change and answers again.
		log.Warn("ack command", "err", err)
	}
}

// parseCommand reads the op and the plugin from the subject
// (hookbus.cmd.plugin.<op>.<name>; hookbus.cmd.plugin.register.<name>.<event>;
// hookbus.cmd.plugin.<op> for a bulk command) and the command from the CloudEvent's data; the CloudEvent type
// must be hookbus.cmd.plugin.<op>, and the command must be about the plugin
// its subject names: NATS permissions limit who may publish on the
// subject, so the subject, not the body, says which plugin may change.
// named is the plugin the subject names (its token after the op; "" for a
// bulk command), whose answer subject an invalid command is answered on.
func parseCommand(msg jetstream.Msg) (op events.PluginOp, named string, cmd events.PluginCommand, cerr *events.Error) {
	rest := strings.TrimPrefix(msg.Subject(), events.CommandTypePrefix)
	opName, target, _ := strings.Cut(rest, ".")
	op = events.PluginOp(opName)
	named, event, _ := strings.Cut(target, ".")
	if op == events.OpRegister {
		target = named
	}
	e, err := events.Decode(msg.Headers(), msg.Data())
	if err != nil {
		return op, named, cmd, &events.Error{Code: events.CodeInvalid, Message: err.Error()}
	}
	if want := events.CommandTypePrefix + opName; e.Type() != want {
		return op, named, cmd, &events.Error{Code: events.CodeInvalid, Message: fmt.Sprintf("command type %q does not match its subject %q: want %q", e.Type(), msg.Subject(), want)}
	}
	dec := json.NewDecoder(strings.NewReader(string(e.Data())))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cmd); err != nil {
		return op, named, cmd, &events.Error{Code: events.CodeInvalid, Message: "command data: " + err.Error()}
	}
	if err := cmd.Validate(op); err != nil {
		return op, named, cmd, &events.Error{Code: events.CodeInvalid, Message: err.Error()}
	}
	if got := cmd.Target(); got != target {
		msg := fmt.Sprintf("the subject names plugin %q, the command is about %q: a command about one plugin goes on %s%s.<name>, a bulk command (by event) on %s%s", target, got, events.CommandTypePrefix, op, events.CommandTypePrefix, op)
		return op, named, cmd, &events.Error{Code: events.CodeInvalid, Message: msg}
	}
	if op == events.OpRegister && cmd.Plugin.Event != event {
		msg := fmt.Sprintf("the subject names event %q, the declaration %q: a register command goes on %sregister.<name>.<event>", event, cmd.Plugin.Event, events.CommandTypePrefix)
		return op, named, cmd, &events.Error{Code: events.CodeInvalid, Message: msg}
	}
	return op, named, cmd, nil
}

// execute plans the command on a caught-up view and writes the changes
// with compare-and-swap, planning again when another writer got there
// first. It returns an error only for passing failures (storage).
func (s *Service) execute(ctx context.Context, kv jetstream.KeyValue, op events.PluginOp, cmd events.PluginCommand, seq uint64, redelivered bool) (events.CommandReply, error) {
	for range maxConflicts {
		cctx, cancel := context.WithTimeout(ctx, s.cfg.CatchUpTimeout)
		cur, err := s.plugins.CatchUp(cctx)
		cancel()
		if err != nil {
			return events.CommandReply{}, err
		}
		now := s.now().UTC()
		out, cerr := plan(op, cmd, cur, seq, now)
		if cerr != nil {
			if redelivered && op == events.OpUnregister && cerr.Code == events.CodeNotFound && cmd.Name != "" {
				// Applied before a crash that lost the acknowledgement.
				return events.CommandReply{Plugins: []events.Plugin{}}, nil
			}
			return events.CommandReply{Error: cerr}, nil
		}
		if err := s.write(ctx, kv, out.changes); errors.Is(err, errConflict) {
			s.log.Debug("revision conflict, planning again", "op", op)
			continue
		} else if err != nil {
			return events.CommandReply{}, err
		}
		if redelivered {
			// A crash may have come between the writes and their
			// announcements: announce again what this command changed
			// (the event ids make JetStream store each once).
			if err := s.reannounce(ctx, cur, seq); err != nil {
				return events.CommandReply{}, err
			}
		}
		if err := s.announce(ctx, out.changes, seq); err != nil {
			return events.CommandReply{}, err
		}
		for i, p := range out.reply {
			for _, c := range out.changes {
				if c.after != nil && c.name == p.Name {
					out.reply[i] = *c.after
				}
			}
		}
		return events.CommandReply{Plugins: out.reply}, nil
	}
	return events.CommandReply{}, fmt.Errorf("%d revision conflicts in a row", maxConflicts)
}

// write stores the changes in order, each guarded by the revision it was
// planned on; it sets the new revision on each written state.
func (s *Service) write(ctx context.Context, kv jetstream.KeyValue, changes []change) error {
	for _, c := range changes {
		var err error
		switch {
		case c.after == nil:
			err = kv.Delete(ctx, c.name, jetstream.LastRevision(c.before.Revision))
		default:
			c.after.Revision = 0 // not part of the stored value
			var b []byte
			if b, err = json.Marshal(c.after); err != nil {
				return fmt.Errorf("encode plugin %s: %w", c.name, err)
			}
			if c.before == nil {
				c.after.Revision, err = kv.Create(ctx, c.name, b)
			} else {
				c.after.Revision, err = kv.Update(ctx, c.name, b, c.before.Revision)
			}
		}
		if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return fmt.Errorf("plugin %s: %w", c.name, errConflict)
		}
		if err != nil {
			return fmt.Errorf("write plugin %s: %w", c.name, err)
		}
	}
	return nil
}

// announce publishes one lifecycle CloudEvent per change on
// hookbus.lifecycle.<name> and waits for JetStream to store it.
func (s *Service) announce(ctx context.Context, changes []change, seq uint64) error {
	for _, c := range changes {
		state := c.after
		if state == nil {
			state = c.before
		}
		if err := s.publishLifecycle(ctx, c.lifecycleType(), *state, seq); err != nil {
			return err
		}
	}
	return nil
}

// reannounce publishes again the state of every plugin this command had
// already changed before it was redelivered.
func (s *Service) reannounce(ctx context.Context, cur map[string]events.Plugin, seq uint64) error {
	for _, name := range slices.Sorted(maps.Keys(cur)) {
		if p := cur[name]; p.CommandSeq == seq {
			if err := s.publishLifecycle(ctx, events.LifecycleType(p.Status), p, seq); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *Service) publishLifecycle(ctx context.Context, typ string, p events.Plugin, seq uint64) error {
	subject, err := events.LifecycleSubject(p.Name)
	if err != nil {
		return err
	}
	e := event.New()
	e.SetID(lifecycle.ID(seq, p.Name))
	e.SetSource(lifecycleSource)
	e.SetType(typ)
	e.SetSubject(p.Name)
	e.SetTime(p.UpdatedAt)
	if err := e.SetData(event.ApplicationJSON, p); err != nil {
		return fmt.Errorf("lifecycle event for %s: %w", p.Name, err)
	}
	msg, err := s.codec.Encode(subject, &e)
	if err != nil {
		return fmt.Errorf("lifecycle event for %s: %w", p.Name, err)
	}
	if _, err := s.js.PublishMsg(ctx, msg); err != nil {
		return fmt.Errorf("publish lifecycle event for %s: %w", p.Name, err)
	}
	return nil
}

// answer sends reply to the sender's reply subject, if it gave a usable one,
// with micro's error headers when it carries an error e (docs/protocol.md,
// "Errors").
func (s *Service) answer(replyTo string, reply any, e *events.Error) {
	if replyTo == "" {
		return
	}
	b, err := json.Marshal(reply)
	if err != nil {
		s.log.Error("encode command reply", "err", err)
		return
	}
	msg := &nats.Msg{Subject: replyTo, Data: b}
	if e != nil {
		msg.Header = microerr.Header(e)
	}
	if err := s.nc.PublishMsg(msg); err != nil {
		s.log.Warn("send command reply", "subject", replyTo, "err", err)
	}
}

// serveGet answers {"name": "..."} with that plugin's stored state.
func (s *Service) serveGet(kv jetstream.KeyValue, r micro.Request) {
	var req struct {
		Name string `json:"name"`
	}
	if err := json.Unmarshal(r.Data(), &req); err != nil {
		respondError(r, &events.Error{Code: events.CodeInvalid, Message: "get request: " + err.Error()})
		return
	}
	if err := events.ValidateName("plugin", req.Name); err != nil {
		respondError(r, &events.Error{Code: events.CodeInvalid, Message: err.Error()})
		return
	}
	entry, err := kv.Get(context.Background(), req.Name)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		respondError(r, &events.Error{Code: events.CodeNotFound, Message: fmt.Sprintf("plugin %s is not registered", req.Name)})
		return
	case err != nil:
		respondError(r, &events.Error{Code: events.CodeInternal, Message: err.Error()})
		return
	}
	var p events.Plugin
	if err := json.Unmarshal(entry.Value(), &p); err != nil {
		respondError(r, &events.Error{Code: events.CodeInternal, Message: fmt.Sprintf("stored state of %s unreadable: %v", req.Name, err)})
		return
	}
	p.Revision = entry.Revision()
	respond(r, events.CommandReply{Plugins: []events.Plugin{p}})
}

// serveList answers a PluginFilter with the matching plugins, sorted by
// event, then chain position (priority, name).
func (s *Service) serveList(r micro.Request) {
	var f events.PluginFilter
	if len(r.Data()) > 0 {
		if err := json.Unmarshal(r.Data(), &f); err != nil {
			respondError(r, &events.Error{Code: events.CodeInvalid, Message: "list request: " + err.Error()})
			return
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.AckWait)
	defer cancel()
	cur, err := s.plugins.CatchUp(ctx)
	if err != nil {
		respondError(r, &events.Error{Code: events.CodeInternal, Message: err.Error()})
		return
	}
	out := []events.Plugin{}
	for _, p := range cur {
		if f.Match(p) {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b events.Plugin) int {
		if c := strings.Compare(a.Event, b.Event); c != 0 {
			return c
		}
		if a.Priority != b.Priority {
			return a.Priority - b.Priority
		}
		return strings.Compare(a.Name, b.Name)
	})
	respond(r, events.CommandReply{Plugins: out})
}

func respond(r micro.Request, reply events.CommandReply) {
	_ = r.RespondJSON(reply)
}

func respondError(r micro.Request, e *events.Error) {
	_ = microerr.Respond(r, e)
}
