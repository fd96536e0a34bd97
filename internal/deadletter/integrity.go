package deadletter

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/pkg/events"
)

// Integrity of dead letters and replays.
//
// JetStream deduplicates by Nats-Msg-Id across a whole stream, while NATS
// permissions bind only subjects: anyone who may publish one subject of
// HOOKBUS_DLQ (a plugin worker, on its own hookbus.dlq.<name>) or of
// HOOKBUS_EVENTS (anyone who publishes events) can take a deterministic id
// (dlq-<subscriber>-<seq>, replay-<seq>) before Hookbus uses it, so that
// Hookbus' own message is acknowledged as a duplicate and never stored.
// StoreOnce accepts a duplicate only when the message stored under the id
// is the one being published (same subject, same id), and otherwise
// stores it under an id nobody can have taken. Likewise a dead letter's
// subscriber is its subject's last token (the permissions bind it), never
// only what its headers claim.

// ErrDuplicateConflict is matched by a *DuplicateConflictError.
var ErrDuplicateConflict = errors.New("message id taken by another message")

// DuplicateConflictError says that the message JetStream keeps under a
// Nats-Msg-Id is not the one that was published with it: someone else
// took the id.
type DuplicateConflictError struct {
	Stream        string
	ID            string // the Nats-Msg-Id
	Subject       string // where it was published
	Seq           uint64 // the stored message JetStream named
	StoredSubject string // its subject ("" when it could not be read)
	StoredID      string // its Nats-Msg-Id
}

func (e *DuplicateConflictError) Error() string {
	return fmt.Sprintf("Nats-Msg-Id %q of a message on %s was refused as a duplicate of message %d of %s, which is on %s with id %q: the id was taken by another publisher",
		e.ID, e.Subject, e.Seq, e.Stream, e.StoredSubject, e.StoredID)
}

func (e *DuplicateConflictError) Is(target error) bool { return target == ErrDuplicateConflict }

// CheckDuplicate checks that stored, the message JetStream names in a
// duplicate acknowledgement of sent, is sent's: the same subject and the
// same Nats-Msg-Id. Otherwise it returns a *DuplicateConflictError.
func CheckDuplicate(stream string, sent *nats.Msg, seq uint64, stored *jetstream.RawStreamMsg) error {
	id := events.HeaderValue(sent.Header, events.HeaderMsgID)
	if stored != nil && seq != 0 && stored.Sequence == seq && stored.Subject == sent.Subject && events.HeaderValue(stored.Header, events.HeaderMsgID) == id {
		return nil
	}
	err := &DuplicateConflictError{Stream: stream, ID: id, Subject: sent.Subject, Seq: seq}
	if stored != nil {
		err.StoredSubject, err.StoredID = stored.Subject, events.HeaderValue(stored.Header, events.HeaderMsgID)
	}
	return err
}

// uniqueMsgID is id made unique (id-<random>, 128 random bits): nobody can
// have taken it before.
func uniqueMsgID(id string) string { return id + "-" + rand.Text() }

// StoreOnce publishes msg, which carries a deterministic Nats-Msg-Id,
// with publish (a JetStream publish to stream), and makes sure that it is
// stored:
//
//   - acknowledged as new: stored;
//   - acknowledged as a duplicate: stored only if get (a read of stream
//     by sequence) shows that the message kept at the acknowledged
//     sequence is on msg's subject with msg's id (msg written twice, around
//     a crash or a lost acknowledgement). If it is another message (the id
//     was taken: conflict is a *DuplicateConflictError saying by what), or
//     it cannot be read (get nil: the caller may not read the stream, or
//     get failed), msg is published again under uniqueMsgID of its id.
//
// The second publish may store msg a second time when the first copy was
// msg's own and could not be checked: at least once, never lost. conflict
// is informational (the caller logs it); err is set when msg was not
// stored.
func StoreOnce(ctx context.Context, stream string, msg *nats.Msg, publish func(context.Context, *nats.Msg) (*jetstream.PubAck, error), get func(context.Context, uint64) (*jetstream.RawStreamMsg, error)) (ack *jetstream.PubAck, conflict error, err error) {
	ack, err = publish(ctx, msg)
	if err != nil || !ack.Duplicate {
		return ack, nil, err
	}
	var stored *jetstream.RawStreamMsg
	conflict = fmt.Errorf("%s: acknowledged as a duplicate of message %d of %s, which could not be checked", msg.Subject, ack.Sequence, stream)
	if get != nil && ack.Sequence != 0 {
		var gerr error
		if stored, gerr = get(ctx, ack.Sequence); gerr != nil {
			stored = nil
			conflict = fmt.Errorf("message %d of %s, the one a duplicate acknowledgement of %s named, could not be read: %w", ack.Sequence, stream, msg.Subject, gerr)
		}
	}
	if stored != nil {
		if conflict = CheckDuplicate(stream, msg, ack.Sequence, stored); conflict == nil {
			return ack, nil, nil
		}
	}
	again := &nats.Msg{Subject: msg.Subject, Header: nats.Header{}, Data: msg.Data}
	for k, vs := range msg.Header {
		again.Header[k] = vs
	}
	again.Header.Set(events.HeaderMsgID, uniqueMsgID(events.HeaderValue(msg.Header, events.HeaderMsgID)))
	if ack, err = publish(ctx, again); err != nil {
		return nil, conflict, err
	}
	if ack.Duplicate {
		return nil, conflict, fmt.Errorf("%s: a unique Nats-Msg-Id was acknowledged as a duplicate", msg.Subject)
	}
	return ack, conflict, nil
}

// SubscriberOf returns the subscriber of a dead letter on subject
// hookbus.dlq.<subscriber>: NATS permissions bind the subject, not the
// Hookbus-Dlq-Subscriber header.
func SubscriberOf(subject string) (string, bool) {
	name, ok := strings.CutPrefix(subject, events.SubjectRoot+".dlq.")
	if !ok || events.ValidateName("subscriber", name) != nil {
		return "", false
	}
	return name, true
}

// Check returns why the dead letter on subject with headers h is
// not one Hookbus wrote (its Hookbus-Dlq-Subscriber header is not its
// subject's subscriber), or "".
func Check(subject string, h nats.Header) string {
	sub, ok := SubscriberOf(subject)
	if !ok {
		return fmt.Sprintf("its subject %s is not hookbus.dlq.<subscriber>", subject)
	}
	if claimed := events.HeaderValue(h, events.HeaderDLQSubscriber); claimed != sub {
		return fmt.Sprintf("forged: it is on %s but its %s header says %q", subject, events.HeaderDLQSubscriber, claimed)
	}
	return ""
}

// CheckReplayOrigin checks the original of a dead letter by reference of
// subscriber before a replay resends it: recorded is the dead letter's
// Hookbus-Dlq-Subject, actual the subject of the message it references in
// HOOKBUS_EVENTS, filter the subjects subscriber takes now
// (hookbus.event.<type> for a plugin, hookbus.event.<node> with its
// wildcards for a hook). The two subjects must be equal and be
// hookbus.replay.<subscriber> or match filter as NATS matches subjects:
// otherwise a dead letter published on a subscriber's subject could have
// any stored event replayed into its queue.
func CheckReplayOrigin(subscriber, filter, recorded, actual string) error {
	if recorded != actual {
		return fmt.Errorf("it records its original as being on %q, but the message it references is on %s", recorded, actual)
	}
	if replay, err := events.ReplaySubject(subscriber); err == nil && actual == replay {
		return nil
	}
	if filter != "" && SubjectMatches(filter, actual) {
		return nil
	}
	return fmt.Errorf("the message it references is on %s, but %s takes events on %s (or %s.replay.%s)", actual, subscriber, filter, events.SubjectRoot, subscriber)
}

// SubjectMatches reports whether subject matches filter as NATS matches
// them: * is any one token, a last > one or more tokens.
func SubjectMatches(filter, subject string) bool {
	ft, st := strings.Split(filter, "."), strings.Split(subject, ".")
	for i, f := range ft {
		if f == ">" && i == len(ft)-1 {
			return len(st) > i
		}
		if i >= len(st) || st[i] == "" || f != "*" && f != st[i] {
			return false
		}
	}
	return len(ft) == len(st)
}
