package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/pkg/events"
)

// rotateSecret gives webhook id a new secret and keeps its current one as
// the previous secret until overlap has passed (none when overlap is 0),
// and answers the hook with its new secret. A redelivery of the command
// that rotated it answers the same secret: the stored state carries the
// command's sequence.
func (s *Service) rotateSecret(ctx context.Context, kv jetstream.KeyValue, id string, overlap time.Duration, seq uint64) (events.HookReply, error) {
	cur, err := getHook(ctx, kv, id)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return events.HookReply{Error: &events.Error{Code: events.CodeNotFound, Message: fmt.Sprintf("hook %s does not exist", id)}}, nil
	case err != nil:
		return events.HookReply{}, err
	case cur.Type != events.HookWebhook:
		return events.HookReply{Error: &events.Error{Code: events.CodeInvalid,
			Message: fmt.Sprintf("hook %s is of type %s: only a webhook has a secret to rotate", id, cur.Type)}}, nil
	}
	if cur.CommandSeq != seq {
		h := cur
		h.PreviousSecret, h.PreviousExpires = "", time.Time{}
		if overlap > 0 {
			h.PreviousSecret, h.PreviousExpires = cur.Secret, s.now().UTC().Add(overlap)
		}
		h.Secret = newWebhookSecret()
		h.CommandSeq = seq
		h.Revision = 0
		b, err := json.Marshal(h)
		if err != nil {
			return events.HookReply{}, fmt.Errorf("encode hook %s: %w", id, err)
		}
		rev, err := kv.Update(ctx, id, b, cur.Revision)
		if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return events.HookReply{}, fmt.Errorf("hook %s: %w", id, errConflict)
		}
		if err != nil {
			return events.HookReply{}, fmt.Errorf("write hook %s: %w", id, err)
		}
		h.Revision = rev
		cur = h
	}
	// Announced again on a redelivery, which may follow a crash before the
	// announcement; the event id makes JetStream store it once.
	if err := s.publishHookLifecycle(ctx, events.HookSecretRotated, cur, seq, ""); err != nil {
		return events.HookReply{}, err
	}
	cur.PreviousSecret = ""
	return events.HookReply{Hooks: []events.Hook{cur}}, nil
}
