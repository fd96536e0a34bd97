package events

import (
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
)

// HookOp is an operation on hooks, sent as a command CloudEvent on
// hookbus.cmd.hook.<op>.<id> (hookbus.cmd.hook.<op> for a bulk delete).
type HookOp string

// Hook operations (docs/protocol.md, "Hooks").
const (
	HookCreate HookOp = "create"
	HookDelete HookOp = "delete"
	// HookRotate gives a webhook a new secret, keeping the previous one
	// valid for an overlap.
	HookRotate HookOp = "rotate"
	// HookDisable stops a hook's deliveries; its events wait in its
	// consumer. The dispatcher sends it for a hook failing too long.
	HookDisable HookOp = "disable"
	// HookEnable resumes a disabled hook's deliveries.
	HookEnable HookOp = "enable"
)

// HookCommandTypePrefix starts the CloudEvents type of every hook command:
// hookbus.cmd.hook.<op>, its subject without the hook id.
const HookCommandTypePrefix = "hookbus.cmd.hook."

// HookType is what a hook does with an event.
type HookType string

// Hook types.
const (
	// HookWebhook posts the event to the URL in the hook's arg.
	HookWebhook HookType = "webhook"
	// HookSubject publishes the event, as the bus stores it, to the NATS
	// subject in the hook's arg.
	HookSubject HookType = "subject"
	// HookExec runs the program at the hook's arg, a path relative to
	// the operator's exec directory, with the event on its stdin.
	HookExec HookType = "exec"
)

// hookTypes lists the hook types, in the order error messages name them.
var hookTypes = []HookType{HookWebhook, HookSubject, HookExec}

// validateType reports whether t is a hook type.
func validateType(t HookType) error {
	if slices.Contains(hookTypes, t) {
		return nil
	}
	if t == "" {
		return invalidIn("hook", "type", "required: want %s", typeList())
	}
	return invalidIn("hook", "type", "%q: want %s", t, typeList())
}

func typeList() string {
	q := make([]string, len(hookTypes))
	for i, t := range hookTypes {
		q[i] = strconv.Quote(string(t))
	}
	return strings.Join(q[:len(q)-1], ", ") + " or " + q[len(q)-1]
}

// HookStatus says whether a hook delivers.
type HookStatus string

// Hook statuses.
const (
	// HookActive: the hook delivers its events.
	HookActive HookStatus = "active"
	// HookFailing: its last attempt failed with no success since (never
	// stored: derived from the hook's delivery state when listed).
	HookFailing HookStatus = "failing"
	// HookDisabled: the hook delivers nothing until enabled; its events
	// wait in its consumer.
	HookDisabled HookStatus = "disabled"
)

// HookSettings are the per-hook knobs of deliveries; zero values mean the
// dispatcher's defaults.
type HookSettings struct {
	// TimeoutMS bounds one delivery attempt, in milliseconds.
	TimeoutMS int `json:"timeout_ms,omitempty"`
	// MaxAttempts is how many times a delivery is tried before the event
	// is dead-lettered.
	MaxAttempts int `json:"max_attempts,omitempty"`
	// Structured posts the event in structured mode
	// (application/cloudevents+json) instead of binary mode.
	Structured bool `json:"structured,omitempty"`
	// Rate bounds the delivery attempts per second of each dispatcher
	// replica (0: unlimited; at most MaxHookRate).
	Rate float64 `json:"rate,omitempty"`
}

// Limits on hook settings.
const (
	maxHookTimeout     = 5 * time.Minute
	maxHookReasonLen   = 1024
	maxHookAttempts    = 100
	maxHookArgLen      = 2048
	hookIDLen          = 32
	webhookSecretBytes = 24
)

// Temporary hooks: the owner's session key in BucketHookSessions expires
// HookSessionTTL after its last write; an owner writes it every
// HookSessionHeartbeat.
const (
	HookSessionTTL       = 10 * time.Second
	HookSessionHeartbeat = 2 * time.Second
)

// Secret rotation: the previous secret stays valid for the overlap a
// rotate command asks, DefaultSecretOverlap when it asks none, at most
// MaxSecretOverlap.
const (
	DefaultSecretOverlap = 24 * time.Hour
	MaxSecretOverlap     = 7 * 24 * time.Hour
)

// WebhookSecretBytes is the number of random bytes in a webhook secret
// (whsec_<base64 of them>).
const WebhookSecretBytes = webhookSecretBytes

// HookSpec is what the creator of a hook declares.
type HookSpec struct {
	// ID names the hook: 32 lowercase hex characters, chosen by the sender
	// so that a create sent again is recognised (NewHookID).
	ID string `json:"id"`
	// Node is an event type or a pattern of one: `*` matches one token,
	// a final `>` the rest, as NATS subjects match.
	Node string   `json:"node"`
	Type HookType `json:"type"`
	// Arg is the type's argument: the URL of a webhook, the NATS subject
	// of a subject hook, the program path of an exec hook.
	Arg string `json:"arg"`
	// Persistent hooks survive restarts of everything. A temporary hook
	// (false) lives while its Session's key in BucketHookSessions does.
	Persistent bool `json:"persistent"`
	// Session is the owner of a temporary hook: its key in
	// BucketHookSessions (32 lowercase hex characters). Required when
	// Persistent is false, refused when true.
	Session  string       `json:"session,omitempty"`
	Settings HookSettings `json:"settings,omitzero"`
	// Filters narrow the node's events further: the hook runs for an
	// event only when every filter matches.
	Filters []HookMatch `json:"filters,omitempty"`
}

// MatchOp is how a HookMatch compares an attribute with its value.
type MatchOp string

// Match operations.
const (
	MatchExact  MatchOp = "exact"
	MatchPrefix MatchOp = "prefix"
	MatchSuffix MatchOp = "suffix"
)

// maxHookFilters bounds the filters of one hook.
const maxHookFilters = 16

// HookMatch is one attribute condition of a hook: the event's attribute
// Attr (id, source, subject, type, or an extension) equals, starts with
// or ends with Value. An attribute the event lacks matches nothing.
type HookMatch struct {
	Attr  string  `json:"attr"`
	Op    MatchOp `json:"op"`
	Value string  `json:"value"`
}

// validate checks one filter.
func (m HookMatch) validate(i int) error {
	field := fmt.Sprintf("filters[%d]", i)
	if m.Attr == "" || len(m.Attr) > 20 || strings.IndexFunc(m.Attr, func(r rune) bool { return !('a' <= r && r <= 'z' || '0' <= r && r <= '9') }) >= 0 {
		return invalidIn("hook", field+".attr", "%q: want a CloudEvents attribute name (id, source, subject, type or an extension: [a-z0-9]{1,20})", m.Attr)
	}
	switch m.Op {
	case MatchExact, MatchPrefix, MatchSuffix:
	default:
		return invalidIn("hook", field+".op", "%q: want %q, %q or %q", m.Op, MatchExact, MatchPrefix, MatchSuffix)
	}
	if len(m.Value) > maxHookArgLen {
		return invalidIn("hook", field+".value", "%d bytes long, the limit is %d", len(m.Value), maxHookArgLen)
	}
	return nil
}

// Matches reports whether e passes every filter of the hook.
func (s HookSpec) Matches(e *event.Event) bool {
	for _, m := range s.Filters {
		v, ok := attribute(e, m.Attr)
		if !ok {
			return false
		}
		switch m.Op {
		case MatchExact:
			ok = v == m.Value
		case MatchPrefix:
			ok = strings.HasPrefix(v, m.Value)
		case MatchSuffix:
			ok = strings.HasSuffix(v, m.Value)
		default:
			ok = false
		}
		if !ok {
			return false
		}
	}
	return true
}

// attribute returns e's attribute name as a string, and whether e has it.
func attribute(e *event.Event, name string) (string, bool) {
	switch name {
	case "id":
		return e.ID(), true
	case "source":
		return e.Source(), true
	case "type":
		return e.Type(), true
	case "subject":
		return e.Subject(), e.Subject() != ""
	}
	v, ok := e.Extensions()[name]
	if !ok {
		return "", false
	}
	s, err := types.Format(v)
	return s, err == nil
}

// Hook is a hook as stored in bucket hookbus_hooks.
type Hook struct {
	HookSpec
	Created time.Time  `json:"created"`
	Status  HookStatus `json:"status"`
	// Disabled is when the hook was disabled, and DisabledReason why;
	// set while Status is disabled.
	Disabled       time.Time `json:"disabled,omitzero"`
	DisabledReason string    `json:"disabled_reason,omitempty"`
	// Enabled is when the hook was last enabled after being disabled:
	// failures before it no longer make it failing.
	Enabled time.Time `json:"enabled,omitzero"`
	// Secret signs a webhook's requests (whsec_<base64>). The registry
	// answers it only to the create or rotate that made it; lists and
	// lifecycle events never carry it.
	Secret string `json:"secret,omitempty"`
	// PreviousSecret, the secret before the last rotation, also signs
	// until PreviousExpires. The registry never answers PreviousSecret;
	// PreviousExpires is listed.
	PreviousSecret  string    `json:"previous_secret,omitempty"`
	PreviousExpires time.Time `json:"previous_expires,omitzero"`
	// CommandSeq is the HOOKBUS_COMMANDS sequence of the command that
	// wrote this state.
	CommandSeq uint64 `json:"command_seq,omitempty"`
	// Revision is the bucket revision the state was read at (not stored).
	Revision uint64 `json:"revision,omitempty"`
	HookListing
}

// Validate checks the declaration; the error is a *ValidationError.
func (s HookSpec) Validate() error {
	if err := ValidateHookID(s.ID); err != nil {
		return err
	}
	if err := ValidateNode(s.Node); err != nil {
		return err
	}
	if err := validateType(s.Type); err != nil {
		return err
	}
	if len(s.Arg) > maxHookArgLen {
		return invalidIn("hook", "arg", "%d bytes long, the limit is %d", len(s.Arg), maxHookArgLen)
	}
	var err error
	switch s.Type {
	case HookWebhook:
		err = validateWebhookURL(s.Arg)
	case HookSubject:
		err = ValidateHookSubject(s.Arg)
	case HookExec:
		err = ValidateExecPath(s.Arg)
	}
	if err != nil {
		return err
	}
	if s.Settings.Structured && s.Type != HookWebhook {
		return invalidIn("hook", "settings.structured", "only webhooks have a structured mode: a %s hook sends the bus's own form", s.Type)
	}
	switch {
	case s.Persistent && s.Session != "":
		return invalidIn("hook", "session", "a persistent hook belongs to no session: give no session, or create the hook temporary")
	case !s.Persistent && s.Session == "":
		return invalidIn("hook", "session", "required for a temporary hook: the owner's key in %s (or create the hook persistent)", BucketHookSessions)
	case !s.Persistent:
		if err := ValidateSessionID(s.Session); err != nil {
			return err
		}
	}
	if len(s.Filters) > maxHookFilters {
		return invalidIn("hook", "filters", "%d filters, the limit is %d", len(s.Filters), maxHookFilters)
	}
	for i, m := range s.Filters {
		if err := m.validate(i); err != nil {
			return err
		}
	}
	st := s.Settings
	switch {
	case st.TimeoutMS < 0 || time.Duration(st.TimeoutMS)*time.Millisecond > maxHookTimeout:
		return invalidIn("hook", "settings.timeout_ms", "%d: want 0 (the default) to %d", st.TimeoutMS, maxHookTimeout.Milliseconds())
	case st.MaxAttempts < 0 || st.MaxAttempts > maxHookAttempts:
		return invalidIn("hook", "settings.max_attempts", "%d: want 0 (the default) to %d", st.MaxAttempts, maxHookAttempts)
	case !(st.Rate == 0 || st.Rate >= MinHookRate && st.Rate <= MaxHookRate): // NaN too
		return invalidIn("hook", "settings.rate", "%v: want 0 (unlimited) or %v to %d deliveries per second", st.Rate, MinHookRate, MaxHookRate)
	}
	return nil
}

// ValidateHookID reports whether id is a hook id: 32 lowercase hex
// characters.
func ValidateHookID(id string) error {
	if len(id) != hookIDLen || strings.IndexFunc(id, func(r rune) bool { return !('0' <= r && r <= '9' || 'a' <= r && r <= 'f') }) >= 0 {
		return invalidIn("hook", "id", "%q: want %d lowercase hex characters", id, hookIDLen)
	}
	return nil
}

// ValidateSessionID reports whether id is a hook session id: 32 lowercase
// hex characters.
func ValidateSessionID(id string) error {
	if len(id) != hookIDLen || strings.IndexFunc(id, func(r rune) bool { return !('0' <= r && r <= '9' || 'a' <= r && r <= 'f') }) >= 0 {
		return invalidIn("hook", "session", "%q: want %d lowercase hex characters", id, hookIDLen)
	}
	return nil
}

// ValidateNode reports whether node is an event type or a pattern of one:
// tokens of [A-Za-z0-9_-] or `*`, the last one possibly `>`.
func ValidateNode(node string) error {
	if node == "" {
		return invalidIn("hook", "node", "required")
	}
	if len(node) > maxTypeLen {
		return invalidIn("hook", "node", "%d bytes long, the limit is %d", len(node), maxTypeLen)
	}
	toks := strings.Split(node, ".")
	for i, tok := range toks {
		switch {
		case tok == "*":
			continue
		case tok == ">" && i == len(toks)-1:
			continue
		case tok == ">":
			return invalidIn("hook", "node", "%q: '>' may only be the last token", node)
		case tok == "":
			return invalidIn("hook", "node", "%q has an empty token (at token %d)", node, i+1)
		case strings.IndexFunc(tok, func(r rune) bool { return !isTokenRune(r) }) >= 0:
			return invalidIn("hook", "node", "%q: token %q is neither a name of [A-Za-z0-9_-], '*' nor a final '>'", node, tok)
		}
	}
	return nil
}

// validateWebhookURL checks the form of a webhook target; where it may
// connect is the dispatcher's to decide when it dials.
func validateWebhookURL(arg string) error {
	if arg == "" {
		return invalidIn("hook", "arg", "a webhook needs the URL to post to")
	}
	u, err := url.Parse(arg)
	if err != nil {
		return invalidIn("hook", "arg", "%v", err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return invalidIn("hook", "arg", "%q: want an http or https URL", arg)
	case u.Host == "" || u.Hostname() == "":
		return invalidIn("hook", "arg", "%q has no host", arg)
	case u.User != nil:
		return invalidIn("hook", "arg", "the URL carries credentials: hooks are listed with their URL, so keep secrets out of it")
	case u.Fragment != "":
		return invalidIn("hook", "arg", "%q has a fragment, which is never sent", arg)
	}
	return nil
}

// HookCommand is the data of a hook command: create carries Hook; delete
// names one hook by ID, or every hook matching a HookFilter by Match (a
// bulk delete; Node required); rotate names one webhook by ID, with
// OverlapSeconds (absent: DefaultSecretOverlap; 0: the old secret stops
// at once); disable and enable name one hook by ID, disable with an
// optional Reason.
type HookCommand struct {
	Hook           *HookSpec   `json:"hook,omitempty"`
	ID             string      `json:"id,omitempty"`
	Match          *HookFilter `json:"match,omitempty"`
	OverlapSeconds *int64      `json:"overlap_seconds,omitempty"`
	Reason         string      `json:"reason,omitempty"`
}

// Overlap is how long a rotate keeps the previous secret valid.
func (c HookCommand) Overlap() time.Duration {
	if c.OverlapSeconds == nil {
		return DefaultSecretOverlap
	}
	return time.Duration(*c.OverlapSeconds) * time.Second
}

// Target is the hook the command is about: the declaration's id for
// create, ID for delete, "" for a bulk delete.
func (c HookCommand) Target() string {
	if c.Hook != nil {
		return c.Hook.ID
	}
	return c.ID
}

// Validate checks that the command fits op; the error is a
// *ValidationError.
func (c HookCommand) Validate(op HookOp) error {
	if op != HookRotate && c.OverlapSeconds != nil {
		return invalidIn("command", "overlap_seconds", "only a rotate takes an overlap")
	}
	switch op {
	case HookDisable, HookEnable:
		switch {
		case c.Hook != nil || c.Match != nil:
			return invalidIn("command", "id", "%s takes a hook id only", op)
		case c.ID == "":
			return invalidIn("command", "id", "%s needs a hook id", op)
		case op == HookEnable && c.Reason != "":
			return invalidIn("command", "reason", "enable takes no reason")
		case len(c.Reason) > maxHookReasonLen:
			return invalidIn("command", "reason", "%d bytes long, the limit is %d", len(c.Reason), maxHookReasonLen)
		}
		return ValidateHookID(c.ID)
	case HookCreate:
		if c.Hook == nil {
			return invalidIn("command", "hook", "create needs the hook's declaration")
		}
		if c.ID != "" || c.Match != nil || c.Reason != "" {
			return invalidIn("command", "hook", "create takes only the declaration, not id, match or reason")
		}
		return c.Hook.Validate()
	case HookDelete:
		switch {
		case c.Hook != nil:
			return invalidIn("command", "hook", "delete takes an id or a match, not a declaration")
		case c.Reason != "":
			return invalidIn("command", "reason", "delete takes no reason")
		case c.ID != "" && c.Match != nil:
			return invalidIn("command", "id", "give an id or a match, not both")
		case c.ID != "":
			return ValidateHookID(c.ID)
		case c.Match != nil:
			if c.Match.Node == "" {
				return invalidIn("command", "match.node", "a bulk delete needs the node")
			}
			return c.Match.Validate()
		default:
			return invalidIn("command", "id", "delete needs a hook id or a match (node, and optionally type and arg)")
		}
	case HookRotate:
		if c.Hook != nil || c.Match != nil || c.Reason != "" {
			return invalidIn("command", "id", "rotate takes the hook's id (and an overlap), not a declaration or a match")
		}
		if c.OverlapSeconds != nil && (*c.OverlapSeconds < 0 || *c.OverlapSeconds > int64(MaxSecretOverlap/time.Second)) {
			return invalidIn("command", "overlap_seconds", "%d: want 0 to %d (7 days)", *c.OverlapSeconds, int64(MaxSecretOverlap/time.Second))
		}
		return ValidateHookID(c.ID)
	default:
		return invalidIn("command", "op", "%q: want %q, %q, %q, %q or %q", op, HookCreate, HookDelete, HookRotate, HookDisable, HookEnable)
	}
}

// HookFilter selects hooks; empty fields match all. ID matches the hook's
// id; Node matches the hook's node as written (the pattern, not the
// events it matches).
type HookFilter struct {
	ID   string   `json:"id,omitempty"`
	Node string   `json:"node,omitempty"`
	Type HookType `json:"type,omitempty"`
	Arg  string   `json:"arg,omitempty"`
}

// Validate checks the filter's fields that are set.
func (f HookFilter) Validate() error {
	if f.ID != "" {
		if err := ValidateHookID(f.ID); err != nil {
			return err
		}
	}
	if f.Node != "" {
		if err := ValidateNode(f.Node); err != nil {
			return err
		}
	}
	if f.Type != "" {
		return validateType(f.Type)
	}
	return nil
}

// Match reports whether h passes the filter.
func (f HookFilter) Match(h Hook) bool {
	return (f.ID == "" || f.ID == h.ID) &&
		(f.Node == "" || f.Node == h.Node) &&
		(f.Type == "" || f.Type == h.Type) &&
		(f.Arg == "" || f.Arg == h.Arg)
}

// HookReply is the registry's answer to a hook command or query: the hooks
// it created, deleted or found, or an error.
type HookReply struct {
	Hooks []Hook `json:"hooks"`
	Error *Error `json:"error,omitempty"`
}

// HookLifecycleTypePrefix starts the CloudEvents type of hook lifecycle
// events: hookbus.hook.created, .deleted, .disabled, .enabled.
const HookLifecycleTypePrefix = "hookbus.hook."

// Hook lifecycle event type suffixes.
const (
	HookCreated = "created"
	HookDeleted = "deleted"
	// HookSecretRotated: a webhook got a new secret (neither is in the
	// event).
	HookSecretRotated = "secret_rotated"
	// HookLifecycleDisabled and HookLifecycleEnabled are named apart from
	// the statuses HookDisabled and HookActive.
	HookLifecycleDisabled = "disabled"
	HookLifecycleEnabled  = "enabled"
)

// HookReasonExtension is the CloudEvents extension of a
// hookbus.hook.deleted event that says why: HookReasonCommand or
// HookReasonOwnerGone.
const HookReasonExtension = "reason"

// Reasons a hook was deleted.
const (
	HookReasonCommand   = "deleted by command"
	HookReasonOwnerGone = "owner gone"
)

// HookListSubject answers the hooks matching a HookFilter (micro service
// hookbus-registry); secrets are never in the answer.
const HookListSubject = "hookbus.registry.hook.list"

// HookCommandSubject returns the subject of a hook command about id:
// hookbus.cmd.hook.<op>.<id>, or hookbus.cmd.hook.<op> for a bulk delete
// (id "").
func HookCommandSubject(op HookOp, id string) (string, error) {
	if id != "" {
		if err := ValidateHookID(id); err != nil {
			return "", err
		}
	}
	return CommandSubject("hook", string(op), id)
}

// HookLifecycleSubject returns the subject of lifecycle events about hook
// id: hookbus.lifecycle.hook.<id>.
func HookLifecycleSubject(id string) (string, error) {
	if err := ValidateHookID(id); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s.lifecycle.hook.%s", SubjectRoot, id), nil
}

// HookEventSubject returns the filter of the events a hook on node gets:
// hookbus.event.<node>, wildcards and all.
func HookEventSubject(node string) (string, error) {
	if err := ValidateNode(node); err != nil {
		return "", err
	}
	return SubjectRoot + ".event." + node, nil
}

// HookConsumer returns the name of the durable consumer and dead-letter
// subscriber of hook id: hook-<id>.
func HookConsumer(id string) string { return hookConsumerPrefix + id }

// hookConsumerPrefix starts the name of a hook's consumer and dead-letter
// subscriber; plugin names may not start with it.
const hookConsumerPrefix = "hook-"

// HookReplayConsumer returns the name of the durable consumer that
// delivers hook id's replayed dead letters (hookbus.replay.hook-<id>),
// beside its consumer hook-<id>: replay-hook-<id>.
func HookReplayConsumer(id string) string { return ReplayConsumer(HookConsumer(id)) }

// HookOfSubscriber returns the id of the hook whose dead-letter subscriber
// is subscriber (hook-<id>), or false when subscriber is not a hook's.
func HookOfSubscriber(subscriber string) (string, bool) {
	id, ok := strings.CutPrefix(subscriber, hookConsumerPrefix)
	if !ok || ValidateHookID(id) != nil {
		return "", false
	}
	return id, true
}
