package registry

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/hookbus/hookbus/internal/durable"
	"github.com/hookbus/hookbus/internal/execdir"
	"github.com/hookbus/hookbus/internal/lifecycle"
	"github.com/hookbus/hookbus/internal/netguard"
	"github.com/hookbus/hookbus/pkg/events"
)

// hookConsumerSuffix names the registry's durable consumer of hook
// commands: <Consumer>-hooks.
const hookConsumerSuffix = "-hooks"

// hookCommands returns the keeper of the durable consumer of hook commands
// (hookbus.cmd.hook.>), read one at a time like plugin commands.
func (s *Service) hookCommands(kv jetstream.KeyValue) *durable.Keeper {
	return &durable.Keeper{
		Stream: events.StreamCommands,
		Config: jetstream.ConsumerConfig{
			Durable:       s.cfg.Consumer + hookConsumerSuffix,
			Description:   "Hook commands, applied one at a time in stream order.",
			FilterSubject: events.HookCommandTypePrefix + ">",
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       s.cfg.AckWait,
			MaxAckPending: 1,
			MaxDeliver:    -1,
			DeliverPolicy: jetstream.DeliverAllPolicy,
		},
		Read: func(ctx context.Context, cons jetstream.Consumer) error {
			return s.consume(ctx, cons, func(ctx context.Context, msg jetstream.Msg) { s.handleHook(ctx, kv, msg) })
		},
		Ready: s.hooksReady.Store,
		Check: s.cfg.ConsumerCheck,
		Log:   s.log,
	}
}

// handleHook applies one hook command and settles its message (settle).
func (s *Service) handleHook(ctx context.Context, kv jetstream.KeyValue, msg jetstream.Msg) {
	op, named, cmd, cerr := parseHookCommand(msg)
	s.settle(ctx, msg, command{
		kind: "hook", op: string(op), target: cmd.Target(), named: named, invalid: cerr,
		execute: func(ctx context.Context, meta *jetstream.MsgMetadata) (any, *events.Error, error) {
			reply, err := s.executeHookAttempt(ctx, kv, op, cmd, meta.Sequence.Stream, meta.NumDelivered > 1)
			if reply.Hooks == nil && reply.Error == nil {
				reply.Hooks = []events.Hook{}
			}
			return reply, reply.Error, err
		},
		errorReply: func(e *events.Error) any { return events.HookReply{Error: e} },
	})
}

// parseHookCommand reads the op and the hook id from the subject
// (hookbus.cmd.hook.<op>.<id>, or hookbus.cmd.hook.<op> for a bulk delete)
// and the command from the CloudEvent's data, whose type must be
// hookbus.cmd.hook.<op> and which must be about the hook its subject names.
func parseHookCommand(msg jetstream.Msg) (op events.HookOp, named string, cmd events.HookCommand, cerr *events.Error) {
	rest := strings.TrimPrefix(msg.Subject(), events.HookCommandTypePrefix)
	opName, named, _ := strings.Cut(rest, ".")
	op = events.HookOp(opName)
	invalid := func(format string, args ...any) (events.HookOp, string, events.HookCommand, *events.Error) {
		return op, named, cmd, &events.Error{Code: events.CodeInvalid, Message: fmt.Sprintf(format, args...)}
	}
	e, err := events.Decode(msg.Headers(), msg.Data())
	if err != nil {
		return invalid("%v", err)
	}
	if want := events.HookCommandTypePrefix + opName; e.Type() != want {
		return invalid("command type %q does not match its subject %q: want %q", e.Type(), msg.Subject(), want)
	}
	dec := json.NewDecoder(strings.NewReader(string(e.Data())))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cmd); err != nil {
		return invalid("command data: %v", err)
	}
	if err := cmd.Validate(op); err != nil {
		return invalid("%v", err)
	}
	if got := cmd.Target(); got != named {
		return invalid("the subject names hook %q, the command is about %q: a command about one hook goes on %s%s.<id>, a bulk delete on %s%s", named, got, events.HookCommandTypePrefix, op, events.HookCommandTypePrefix, op)
	}
	return op, named, cmd, nil
}

// executeHook applies a valid hook command; it returns an error only for
// passing failures (storage), after which the command is tried again.
func (s *Service) executeHook(ctx context.Context, kv jetstream.KeyValue, op events.HookOp, cmd events.HookCommand, seq uint64) (events.HookReply, error) {
	return s.executeHookAttempt(ctx, kv, op, cmd, seq, false)
}

// executeHookAttempt is executeHook for a command that may be redelivered:
// a delete redelivered after deleting its hook (and failing to announce
// it) answers and announces the hook it deleted.
func (s *Service) executeHookAttempt(ctx context.Context, kv jetstream.KeyValue, op events.HookOp, cmd events.HookCommand, seq uint64, redelivered bool) (events.HookReply, error) {
	for range maxConflicts {
		var (
			reply events.HookReply
			err   error
		)
		switch {
		case op == events.HookCreate:
			if cerr := s.checkTarget(ctx, *cmd.Hook); cerr != nil {
				return events.HookReply{Error: cerr}, nil
			}
			reply, err = s.createHook(ctx, kv, *cmd.Hook, seq)
		case op == events.HookRotate:
			reply, err = s.rotateSecret(ctx, kv, cmd.ID, cmd.Overlap(), seq)
		case op == events.HookDisable || op == events.HookEnable:
			reply, err = s.setHookStatus(ctx, kv, op, cmd, seq)
		case cmd.ID != "":
			reply, err = s.deleteHooks(ctx, kv, seq, func(h events.Hook) bool { return h.ID == cmd.ID }, cmd.ID, redelivered)
		default:
			reply, err = s.deleteHooks(ctx, kv, seq, cmd.Match.Match, "", redelivered)
		}
		if errors.Is(err, errConflict) {
			s.log.Debug("revision conflict, planning again", "op", op)
			continue
		}
		return reply, err
	}
	return events.HookReply{}, fmt.Errorf("%d revision conflicts in a row", maxConflicts)
}

// checkTarget refuses a webhook whose URL is a literal address the
// dispatcher would refuse to dial (a name is checked at each delivery,
// once resolved), and an exec hook while exec hooks are off or whose
// program may not run (the dispatcher checks again at each run).
func (s *Service) checkTarget(ctx context.Context, spec events.HookSpec) *events.Error {
	switch spec.Type {
	case events.HookExec:
		if _, err := execdir.Resolve(s.cfg.HookExecDir, spec.Arg); err != nil {
			return &events.Error{Code: events.CodeInvalid, Message: "invalid hook: arg: " + strings.TrimPrefix(err.Error(), execdir.ErrRefused.Error()+": ")}
		}
		return nil
	case events.HookWebhook:
	default:
		return nil
	}
	u, err := url.Parse(spec.Arg)
	if err != nil {
		return &events.Error{Code: events.CodeInvalid, Message: "invalid hook: arg: " + err.Error()}
	}
	host := u.Hostname()
	if ip, err := netip.ParseAddr(host); err == nil {
		if err := netguard.Check(ip, s.cfg.WebhookAllow); err != nil {
			return &events.Error{Code: events.CodeInvalid, Message: fmt.Sprintf("invalid hook: arg: %s: %v", spec.Arg, err)}
		}
		return nil
	}
	// A name: refused when it resolves, here and now, to an address the
	// dispatcher would refuse. A name that does not resolve is taken (the
	// dispatcher may see other names); the dispatcher checks the address
	// it dials at every delivery anyway.
	rctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	defer cancel()
	ips, err := net.DefaultResolver.LookupNetIP(rctx, "ip", host)
	if err != nil {
		return nil
	}
	for _, ip := range ips {
		if err := netguard.Check(ip, s.cfg.WebhookAllow); err != nil {
			return &events.Error{Code: events.CodeInvalid, Message: fmt.Sprintf("invalid hook: arg: %s: %s resolves to %v", spec.Arg, host, err)}
		}
	}
	return nil
}

// resolveTimeout bounds the name lookup of a webhook's host at create.
const resolveTimeout = 2 * time.Second

// createHook stores a new hook with a fresh secret. A create sent again
// (same id and declaration) answers the stored hook, with its secret only
// for a redelivery of the command that made it: the secret is shown once.
func (s *Service) createHook(ctx context.Context, kv jetstream.KeyValue, spec events.HookSpec, seq uint64) (events.HookReply, error) {
	cur, err := getHook(ctx, kv, spec.ID)
	if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return events.HookReply{}, err
	}
	if err == nil {
		if !sameSpec(cur.HookSpec, spec) {
			return events.HookReply{Error: &events.Error{Code: events.CodeInvalid,
				Message: fmt.Sprintf("hook %s exists with another declaration: delete it first, or create the new one with a new id", spec.ID)}}, nil
		}
		if cur.CommandSeq != seq {
			return events.HookReply{Hooks: []events.Hook{listed(cur)}}, nil
		}
		// A redelivery after a crash that may have come before the
		// announcement; the event id makes JetStream store it once.
		if err := s.publishHookLifecycle(ctx, events.HookCreated, cur, seq, ""); err != nil {
			return events.HookReply{}, err
		}
		return events.HookReply{Hooks: []events.Hook{cur}}, nil
	}
	if !spec.Persistent {
		if cerr, err := s.checkSession(ctx, spec.Session); cerr != nil || err != nil {
			return events.HookReply{Error: cerr}, err
		}
	}
	created, err := s.hookCreated(ctx)
	if err != nil {
		return events.HookReply{}, err
	}
	h := events.Hook{HookSpec: spec, Created: created, Status: events.HookActive, CommandSeq: seq}
	if spec.Type == events.HookWebhook {
		h.Secret = newWebhookSecret()
	}
	b, err := json.Marshal(h)
	if err != nil {
		return events.HookReply{}, fmt.Errorf("encode hook %s: %w", h.ID, err)
	}
	h.Revision, err = kv.Create(ctx, h.ID, b)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return events.HookReply{}, fmt.Errorf("hook %s: %w", h.ID, errConflict)
	}
	if err != nil {
		return events.HookReply{}, fmt.Errorf("write hook %s: %w", h.ID, err)
	}
	if err := s.publishHookLifecycle(ctx, events.HookCreated, h, seq, ""); err != nil {
		return events.HookReply{}, err
	}
	return events.HookReply{Hooks: []events.Hook{h}}, nil
}

// sameSpec reports whether a and b declare the same hook: equal as stored
// (JSON), so that an empty list of filters is no filters, as the stored
// hook has once read back.
func sameSpec(a, b events.HookSpec) bool {
	ja, erra := json.Marshal(a)
	jb, errb := json.Marshal(b)
	return erra == nil && errb == nil && bytes.Equal(ja, jb)
}

// hookCreated is the created time of a new hook, where its consumer
// starts: the registry's clock, or the NATS server's when that is behind
// (the server stamps the events the consumer compares it with), so that a
// registry whose clock runs ahead skips no event published after the
// create. The server's time is that of an info of HOOKBUS_EVENTS.
func (s *Service) hookCreated(ctx context.Context) (time.Time, error) {
	now := s.now().UTC()
	stream, err := s.js.Stream(ctx, events.StreamEvents)
	if err != nil {
		return time.Time{}, fmt.Errorf("the server's time (info of %s): %w", events.StreamEvents, err)
	}
	if ts := stream.CachedInfo().TimeStamp; !ts.IsZero() && ts.Before(now) {
		return ts.UTC(), nil
	}
	return now, nil
}

// deleteHooks collects every hook that match selects, then deletes each
// with compare-and-swap on the revision it was read at, and answers the
// deleted hooks. id, when set, names the one hook the command is about:
// finding none is not_found, unless the command is redelivered and the
// hook's last change is a deletion: this command's, made before its
// announcement failed; it is announced again (the event id makes
// JetStream store it once) and answered. A bulk delete redelivered
// answers and announces only what it still finds.
func (s *Service) deleteHooks(ctx context.Context, kv jetstream.KeyValue, seq uint64, match func(events.Hook) bool, id string, redelivered bool) (events.HookReply, error) {
	var found []events.Hook
	if id != "" {
		h, err := getHook(ctx, kv, id)
		if errors.Is(err, jetstream.ErrKeyNotFound) && redelivered {
			gone, ok, herr := lastDeleted(ctx, kv, id)
			if herr != nil {
				return events.HookReply{}, herr
			}
			if ok {
				if err := s.publishHookLifecycle(ctx, events.HookDeleted, gone, seq, events.HookReasonCommand); err != nil {
					return events.HookReply{}, err
				}
				return events.HookReply{Hooks: []events.Hook{listed(gone)}}, nil
			}
		}
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			return events.HookReply{Error: &events.Error{Code: events.CodeNotFound, Message: fmt.Sprintf("hook %s does not exist", id)}}, nil
		case err != nil:
			return events.HookReply{}, err
		}
		found = []events.Hook{h}
	} else {
		all, err := s.allHooks(ctx, kv)
		if err != nil {
			return events.HookReply{}, err
		}
		for _, h := range all {
			if match(h) {
				found = append(found, h)
			}
		}
	}
	for _, h := range found {
		err := kv.Delete(ctx, h.ID, jetstream.LastRevision(h.Revision))
		if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return events.HookReply{}, fmt.Errorf("hook %s: %w", h.ID, errConflict)
		}
		if err != nil {
			return events.HookReply{}, fmt.Errorf("delete hook %s: %w", h.ID, err)
		}
	}
	out := make([]events.Hook, 0, len(found))
	for _, h := range found {
		if err := s.publishHookLifecycle(ctx, events.HookDeleted, h, seq, events.HookReasonCommand); err != nil {
			return events.HookReply{}, err
		}
		out = append(out, listed(h))
	}
	return events.HookReply{Hooks: out}, nil
}

// lastDeleted returns hook id as stored before its deletion, when its last
// change in the bucket's history is a deletion.
func lastDeleted(ctx context.Context, kv jetstream.KeyValue, id string) (events.Hook, bool, error) {
	hist, err := kv.History(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return events.Hook{}, false, nil
	}
	if err != nil {
		return events.Hook{}, false, fmt.Errorf("history of hook %s: %w", id, err)
	}
	n := len(hist)
	if n < 2 || hist[n-1].Operation() == jetstream.KeyValuePut || hist[n-2].Operation() != jetstream.KeyValuePut {
		return events.Hook{}, false, nil
	}
	var h events.Hook
	if err := json.Unmarshal(hist[n-2].Value(), &h); err != nil {
		return events.Hook{}, false, fmt.Errorf("stored hook %s unreadable: %w", id, err)
	}
	h.Revision = hist[n-2].Revision()
	return h, true, nil
}

// getHook reads one stored hook.
func getHook(ctx context.Context, kv jetstream.KeyValue, id string) (events.Hook, error) {
	entry, err := kv.Get(ctx, id)
	if err != nil {
		return events.Hook{}, err
	}
	return decodeHook(entry)
}

// decodeHook reads a stored hook, with the revision it was read at.
func decodeHook(entry jetstream.KeyValueEntry) (events.Hook, error) {
	var h events.Hook
	if err := json.Unmarshal(entry.Value(), &h); err != nil {
		return events.Hook{}, fmt.Errorf("stored hook %s %w: %w", entry.Key(), errUnreadable, err)
	}
	h.Revision = entry.Revision()
	return h, nil
}

// errUnreadable marks a stored hook that is no JSON hook (written by hand).
var errUnreadable = errors.New("unreadable")

// allHooks reads every stored hook, sorted by node, then creation time. A
// record that is no hook is left out and logged: one bad record does not
// stop lists and bulk deletes.
func (s *Service) allHooks(ctx context.Context, kv jetstream.KeyValue) ([]events.Hook, error) {
	lister, err := kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("list hooks: %w", err)
	}
	defer func() { _ = lister.Stop() }()
	var ids []string
	for id := range lister.Keys() {
		ids = append(ids, id)
	}
	out := make([]events.Hook, 0, len(ids))
	for _, id := range ids {
		h, err := getHook(ctx, kv, id)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // deleted since it was listed
		}
		if errors.Is(err, errUnreadable) {
			s.log.Error("stored hook left out", "err", err)
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, h)
	}
	slices.SortFunc(out, func(a, b events.Hook) int {
		if c := strings.Compare(a.Node, b.Node); c != 0 {
			return c
		}
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

// listed is h as answers other than its creation show it: without its
// secrets.
func listed(h events.Hook) events.Hook {
	h.Secret = ""
	h.PreviousSecret = ""
	return h
}

// newWebhookSecret returns a Standard Webhooks secret: whsec_ and the
// base64 of random bytes.
func newWebhookSecret() string {
	b := make([]byte, events.WebhookSecretBytes)
	_, _ = rand.Read(b)
	return "whsec_" + base64.StdEncoding.EncodeToString(b)
}

// publishHookLifecycle announces what happened to h on
// hookbus.lifecycle.hook.<id>, without its secrets, and waits for
// JetStream to store it. seq makes the event's id, so the same change
// announced twice is stored once; reason, if set, is the event's reason
// extension.
func (s *Service) publishHookLifecycle(ctx context.Context, what string, h events.Hook, seq uint64, reason string) error {
	subject, err := events.HookLifecycleSubject(h.ID)
	if err != nil {
		return err
	}
	e := event.New()
	e.SetID(lifecycle.ID(seq, "hook-"+what+"-"+h.ID))
	e.SetSource(lifecycleSource)
	e.SetType(events.HookLifecycleTypePrefix + what)
	e.SetSubject(h.ID)
	e.SetTime(s.now().UTC())
	if reason != "" {
		e.SetExtension(events.HookReasonExtension, reason)
	}
	h = listed(h)
	h.Revision = 0
	if err := e.SetData(event.ApplicationJSON, h); err != nil {
		return fmt.Errorf("lifecycle event for hook %s: %w", h.ID, err)
	}
	msg, err := s.codec.Encode(subject, &e)
	if err != nil {
		return fmt.Errorf("lifecycle event for hook %s: %w", h.ID, err)
	}
	if _, err := s.js.PublishMsg(ctx, msg); err != nil {
		return fmt.Errorf("publish lifecycle event for hook %s: %w", h.ID, err)
	}
	return nil
}

// serveHookList answers a HookFilter with the matching hooks, without
// their secrets, sorted by node and creation time.
func (s *Service) serveHookList(kv, state jetstream.KeyValue, r micro.Request) {
	var f events.HookFilter
	if len(r.Data()) > 0 {
		if err := json.Unmarshal(r.Data(), &f); err != nil {
			respondError(r, &events.Error{Code: events.CodeInvalid, Message: "list request: " + err.Error()})
			return
		}
	}
	if err := f.Validate(); err != nil {
		respondError(r, &events.Error{Code: events.CodeInvalid, Message: err.Error()})
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.AckWait)
	defer cancel()
	all, err := s.allHooks(ctx, kv)
	if err != nil {
		respondError(r, &events.Error{Code: events.CodeInternal, Message: err.Error()})
		return
	}
	out := []events.Hook{}
	for _, h := range all {
		if f.Match(h) {
			out = append(out, s.withListing(ctx, state, listed(h)))
		}
	}
	_ = r.RespondJSON(events.HookReply{Hooks: out})
}
