package persistence

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/pkg/events"
)

// rotate re-encrypts every stored value that is not under the newest key,
// with compare-and-swap on its revision so that a write made meanwhile is
// never overwritten with the older value. When every value reads, the
// key-check records of the other keys are removed: those keys may then be
// dropped from the configuration. A value that does not decrypt is
// reported (code decrypt) and no record is removed.
func (s *Service) rotate(ctx context.Context, body []byte) (any, error) {
	var req events.AuthRotateRequest
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	s.rotating.Lock()
	defer s.rotating.Unlock()

	keys, err := s.listKeys(ctx, dataFilter)
	if err != nil {
		return nil, err
	}
	var (
		mu     sync.Mutex
		reply  = events.AuthRotateReply{KeyID: s.ring.current()}
		failed []string
	)
	err = forEach(ctx, keys, func(ctx context.Context, key string) error {
		rotated, err := s.rotateOne(ctx, key)
		mu.Lock()
		defer mu.Unlock()
		switch {
		case errors.Is(err, errDecrypt):
			s.log.Error("stored value cannot be read, not rotated", "key", key, "err", err)
			failed = append(failed, key)
			return nil
		case err != nil:
			return err
		case rotated:
			reply.Rotated++
		default:
			reply.Unchanged++
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("rotate: %w", err)
	}
	if len(failed) > 0 {
		return nil, fmt.Errorf("rotate: %w: %d value(s) could not be decrypted and keep their key (%s); %d rotated; no key retired",
			errDecrypt, len(failed), strings.Join(failed[:min(len(failed), 5)], ", "), reply.Rotated)
	}
	if err := s.ensureKeyCheck(ctx); err != nil {
		return nil, fmt.Errorf("rotate: %w", err)
	}
	if reply.RetiredKeyIDs, err = s.retireKeyChecks(ctx); err != nil {
		return nil, fmt.Errorf("rotate: %w", err)
	}
	s.log.Info("persistence keys rotated", "key_id", reply.KeyID, "rotated", reply.Rotated,
		"unchanged", reply.Unchanged, "retired", strings.Join(reply.RetiredKeyIDs, ","))
	return reply, nil
}

// rotateOne re-encrypts one value with the newest key unless it already
// is, and reports whether it did.
func (s *Service) rotateOne(ctx context.Context, key string) (bool, error) {
	for {
		entry, err := s.kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return false, nil // deleted since it was listed
		}
		if err != nil {
			return false, fmt.Errorf("get %s: %w", key, err)
		}
		id, err := envelopeKeyID(entry.Value())
		if err != nil {
			return false, err
		}
		if id == s.ring.current() {
			return false, nil
		}
		plaintext, err := s.ring.open(key, entry.Value())
		if err != nil {
			return false, err
		}
		_, err = s.kv.Update(ctx, key, s.ring.seal(key, plaintext), entry.Revision())
		if isConflict(err) {
			continue // written meanwhile: look again
		}
		if err != nil {
			return false, fmt.Errorf("update %s: %w", key, err)
		}
		return true, nil
	}
}
