package events

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Subject roots of the wire contract (docs/protocol.md). Every subject
// Hookbus uses is built by the functions below, so that nothing taken from a
// payload can put a wildcard, a space or an empty token into a subject.
const (
	// SubjectRoot is the first token of every Hookbus subject.
	SubjectRoot = "hookbus"
	// EventSubjects captures every published event (stream HOOKBUS_EVENTS).
	EventSubjects = "hookbus.event.>"
	// ResultSubjects captures every chain result (stream HOOKBUS_RESULTS).
	ResultSubjects = "hookbus.result.>"
	// CommandSubjects captures every lifecycle command (stream HOOKBUS_COMMANDS).
	CommandSubjects = "hookbus.cmd.>"
	// LifecycleSubjects captures every lifecycle event (stream HOOKBUS_LIFECYCLE).
	LifecycleSubjects = "hookbus.lifecycle.>"
	// LifecycleNoticeSubjects is where HOOKBUS_LIFECYCLE publishes each
	// stored lifecycle event again, with no reply subject, for workers to
	// follow (hookbus.notice.lifecycle.<name>).
	LifecycleNoticeSubjects = "hookbus.notice.lifecycle.>"
	// DLQSubjects captures every dead letter (stream HOOKBUS_DLQ).
	DLQSubjects = "hookbus.dlq.>"
)

// Limits on names. A type is at most maxTypeLen bytes so that the longest
// subject built from it stays far below NATS' practical subject sizes.
const (
	maxTypeLen = 200
	maxNameLen = 64
)

// ValidateType reports whether s is a valid event type: one or more tokens of
// [A-Za-z0-9_-] joined by single dots, at most maxTypeLen bytes. The error is
// a *ValidationError for field "type".
func ValidateType(s string) error {
	if s == "" {
		return invalid("type", "required")
	}
	if len(s) > maxTypeLen {
		return invalid("type", "%d bytes long, the limit is %d", len(s), maxTypeLen)
	}
	i := 0
	for tok := range strings.SplitSeq(s, ".") {
		i++
		if tok == "" {
			return invalid("type", "%q has an empty token (at token %d): tokens are joined by single dots", s, i)
		}
		if j := strings.IndexFunc(tok, func(r rune) bool { return !isTokenRune(r) }); j >= 0 {
			r, _ := utf8.DecodeRuneInString(tok[j:])
			return invalid("type", "%q contains %q: only letters, digits, '_' and '-' are allowed in a token", s, r)
		}
	}
	return nil
}

// ValidateName reports whether s is a valid plugin, hook or subscriber name:
// [A-Za-z0-9_-]{1,64}. field names the thing in the error ("plugin", "hook").
func ValidateName(field, s string) error {
	if s == "" {
		return invalidIn("name", field, "required")
	}
	if len(s) > maxNameLen {
		return invalidIn("name", field, "%d bytes long, the limit is %d", len(s), maxNameLen)
	}
	if j := strings.IndexFunc(s, func(r rune) bool { return !isTokenRune(r) }); j >= 0 {
		r, _ := utf8.DecodeRuneInString(s[j:])
		return invalidIn("name", field, "%q contains %q: only letters, digits, '_' and '-' are allowed", s, r)
	}
	return nil
}

// ValidatePluginName checks the name a new plugin is declared with: a
// name (ValidateName) that does not start with "hookbus-" or "hook-",
// the prefixes of the dispatcher's and the hooks' subscriber names. A
// plugin's worker may write dead letters on hookbus.dlq.<its name>, so a
// plugin named hook-<id> could forge that hook's dead letters.
func ValidatePluginName(name string) error {
	if err := ValidateName("plugin", name); err != nil {
		return err
	}
	for _, p := range reservedPluginPrefixes {
		if strings.HasPrefix(name, p) {
			return invalidIn("name", "plugin", "%q: names starting with %q are reserved (the dispatcher's and the hooks' dead-letter subscribers)", name, p)
		}
	}
	return nil
}

var reservedPluginPrefixes = []string{"hookbus-", "hook-"}

func isTokenRune(r rune) bool {
	return r == '_' || r == '-' || ('0' <= r && r <= '9') || ('a' <= r && r <= 'z') || ('A' <= r && r <= 'Z')
}

// EventSubject returns the subject an event of type typ is published on:
// hookbus.event.<typ>.
func EventSubject(typ string) (string, error) { return typeSubject("event", typ) }

// CallSubject returns the subject of synchronous chain calls for typ:
// hookbus.call.<typ>.
func CallSubject(typ string) (string, error) { return typeSubject("call", typ) }

// ResultSubject returns the subject chain results for typ are stored on:
// hookbus.result.<typ>.
func ResultSubject(typ string) (string, error) { return typeSubject("result", typ) }

// PluginCallSubject returns the subject one chain step is sent to for plugin
// name: hookbus.plugin.<name>.call.
func PluginCallSubject(name string) (string, error) {
	if err := ValidateName("plugin", name); err != nil {
		return "", err
	}
	return SubjectRoot + ".plugin." + name + ".call", nil
}

// CommandSubject returns the subject of a lifecycle command about the
// plugin or hook name: hookbus.cmd.<kind>.<op>.<name>. With name "" it is
// the subject of a bulk command (every plugin of an event):
// hookbus.cmd.<kind>.<op>. The name in the subject is what NATS
// permissions limit a plugin worker's user to (docs/security.md).
func CommandSubject(kind, op, name string) (string, error) {
	if err := ValidateName("command kind", kind); err != nil {
		return "", err
	}
	if err := ValidateName("command op", op); err != nil {
		return "", err
	}
	s := SubjectRoot + ".cmd." + kind + "." + op
	if name == "" {
		return s, nil
	}
	if err := ValidateName(kind, name); err != nil {
		return "", err
	}
	return s + "." + name, nil
}

// RegisterSubject returns the subject of a register command for plugin
// name on event type event: hookbus.cmd.plugin.register.<name>.<event>.
// The event is in the subject so that NATS permissions can limit which
// events a plugin worker may join (docs/security.md): the registry refuses
// a declaration whose name or event differs from its subject's.
func RegisterSubject(name, event string) (string, error) {
	s, err := CommandSubject("plugin", "register", name)
	if err != nil {
		return "", err
	}
	if err := ValidateType(event); err != nil {
		return "", err
	}
	return s + "." + event, nil
}

// AnswerSubject returns the subject the answer to a command about name is
// sent on: hookbus.answer.<kind>.<name>.<id>, or hookbus.answer.<kind>.<id>
// for a bulk command (name ""). id is the sender's random token. Only the
// users allowed to command name may subscribe there.
func AnswerSubject(kind, name, id string) (string, error) {
	if err := ValidateName("answer id", id); err != nil {
		return "", err
	}
	return answerPrefix(kind, name) + id, nil
}

func answerPrefix(kind, name string) string {
	if name == "" {
		return SubjectRoot + ".answer." + kind + "."
	}
	return SubjectRoot + ".answer." + kind + "." + name + "."
}

// CheckAnswerSubject reports whether replyTo is an answer subject for a
// command about name (AnswerSubject with any id): the registry answers
// nowhere else, so that a command cannot make it publish on a subject its
// sender may not use.
func CheckAnswerSubject(kind, name, replyTo string) error {
	prefix := answerPrefix(kind, name)
	id, ok := strings.CutPrefix(replyTo, prefix)
	if !ok || ValidateName("answer id", id) != nil {
		return invalid(HeaderReplyTo, "%q is not an answer subject of this command: want %s<id>, id of [A-Za-z0-9_-]{1,64}", replyTo, prefix)
	}
	return nil
}

// CheckRequestReply reports whether a request's reply subject is an inbox
// (_INBOX. or a per-user _INBOX.<user>. prefix). Services answer only
// there: a message a JetStream push consumer delivers carries a $JS.ACK.
// reply, so pointing a consumer at a service's subject cannot make it act
// (docs/security.md).
func CheckRequestReply(reply string) error {
	if !strings.HasPrefix(reply, inboxRoot+".") {
		return invalidIn("request", "reply", "%q: requests need an inbox reply subject (%s.…)", reply, inboxRoot)
	}
	return nil
}

// inboxRoot is the first token of every inbox. Each NATS user's inbox
// prefix is InboxPrefix(user).
const inboxRoot = "_INBOX"

// InboxPrefix is the inbox prefix of the NATS user: _INBOX.<user>. Its
// permissions let it subscribe to _INBOX.<user>.> and nothing else of
// _INBOX (nats.CustomInboxPrefix; Node: inboxPrefix).
func InboxPrefix(user string) string {
	if user == "" {
		return inboxRoot
	}
	return inboxRoot + "." + user
}

// LifecycleSubject returns the subject of lifecycle events about the plugin
// or hook name: hookbus.lifecycle.<name>.
func LifecycleSubject(name string) (string, error) {
	if err := ValidateName("name", name); err != nil {
		return "", err
	}
	return SubjectRoot + ".lifecycle." + name, nil
}

// LifecycleNoticeSubject returns the subject a plugin's stored lifecycle
// events are published again on, for workers: hookbus.notice.lifecycle.<name>.
func LifecycleNoticeSubject(name string) (string, error) {
	if err := ValidateName("name", name); err != nil {
		return "", err
	}
	return SubjectRoot + ".notice.lifecycle." + name, nil
}

// DLQSubject returns the subject dead letters of subscriber are stored on:
// hookbus.dlq.<subscriber>.
func DLQSubject(subscriber string) (string, error) {
	if err := ValidateName("subscriber", subscriber); err != nil {
		return "", err
	}
	return SubjectRoot + ".dlq." + subscriber, nil
}

func typeSubject(kind, typ string) (string, error) {
	if err := ValidateType(typ); err != nil {
		return "", err
	}
	return SubjectRoot + "." + kind + "." + typ, nil
}

// checkPublishSubject checks a subject a caller chose to publish on: a
// literal NATS subject (no wildcards, spaces, control characters or empty
// tokens).
func checkPublishSubject(s string) error {
	if s == "" {
		return invalid("subject", "required")
	}
	for i, tok := range strings.Split(s, ".") {
		switch {
		case tok == "":
			return invalid("subject", "%q has an empty token (at token %d)", s, i+1)
		case tok == "*" || tok == ">":
			return invalid("subject", "%q contains the wildcard %q: publish needs a literal subject", s, tok)
		}
		for _, r := range tok {
			if r <= ' ' || r == 0x7f || r == '*' || r == '>' {
				return invalid("subject", "%q contains %s", s, describeRune(r))
			}
		}
	}
	return nil
}

func describeRune(r rune) string {
	switch r {
	case ' ':
		return "a space"
	case '*', '>':
		return fmt.Sprintf("the wildcard character %q", r)
	default:
		return fmt.Sprintf("the control character %U", r)
	}
}
