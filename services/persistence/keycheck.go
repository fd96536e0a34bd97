package persistence

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/pkg/events"
)

// keyCheckPlaintext is what every key-check record encrypts. A record
// exists for every key that may have encrypted a stored value: the newest
// key gets one at start, and a rotation removes those of the keys it
// retired.
const keyCheckPlaintext = "hookbus persistence key check v1"

// checkKeys refuses keys that cannot read the bucket: a key-check record
// of a key that is not configured means values encrypted with it may be
// stored, and one that does not decrypt means the configured key under
// that id is not the one that wrote it (or the record was tampered with).
// It then makes sure the newest key has its record.
func (s *Service) checkKeys(ctx context.Context) error {
	keys, err := s.listKeys(ctx, keyCheckFilter)
	if err != nil {
		return err
	}
	var unknown []string
	for _, key := range keys {
		id := strings.TrimPrefix(key, keyCheckRoot)
		if !s.ring.has(id) {
			unknown = append(unknown, id)
			continue
		}
		if err := s.verifyKeyCheck(ctx, id); err != nil {
			return err
		}
	}
	if len(unknown) > 0 {
		return fmt.Errorf("%w: bucket %s holds values encrypted with key id(s) %s, which the configured keys (%s) do not include: "+
			"configure that key again (after the new one), run `hookbus auth rotate`, and only then drop it",
			ErrKeyCheck, events.BucketAuth, strings.Join(unknown, ", "), strings.Join(s.keyIDs(), ", "))
	}
	return s.ensureKeyCheck(ctx)
}

// ensureKeyCheck writes the newest key's record if it has none, and
// verifies it if it has.
func (s *Service) ensureKeyCheck(ctx context.Context) error {
	id := s.ring.current()
	key := keyCheckKey(id)
	_, err := s.kv.Create(ctx, key, s.ring.seal(key, []byte(keyCheckPlaintext)))
	switch {
	case errors.Is(err, jetstream.ErrKeyExists):
		return s.verifyKeyCheck(ctx, id)
	case err != nil:
		return fmt.Errorf("write key-check record %s: %w", key, err)
	}
	s.log.Info("persistence key-check record written", "key_id", id)
	return nil
}

func (s *Service) verifyKeyCheck(ctx context.Context, id string) error {
	key := keyCheckKey(id)
	entry, err := s.kv.Get(ctx, key)
	if err != nil {
		return fmt.Errorf("read key-check record %s: %w", key, err)
	}
	plaintext, err := s.ring.open(key, entry.Value())
	if err == nil && !bytes.Equal(plaintext, []byte(keyCheckPlaintext)) {
		err = errors.New("unexpected content")
	}
	if err != nil {
		return fmt.Errorf("%w: the key-check record of key id %s does not decrypt with the configured key: %w", ErrKeyCheck, id, err)
	}
	return nil
}

// keyIDs lists the configured key ids, newest first.
func (s *Service) keyIDs() []string {
	ids := make([]string, len(s.cfg.Keys))
	for i, k := range s.cfg.Keys {
		ids[i] = k.ID()
	}
	return ids
}

// retireKeyChecks removes the records of every key but the newest, once
// no stored value needs them, and returns their ids.
func (s *Service) retireKeyChecks(ctx context.Context) ([]string, error) {
	keys, err := s.listKeys(ctx, keyCheckFilter)
	if err != nil {
		return nil, err
	}
	retired := []string{}
	for _, key := range keys {
		id := strings.TrimPrefix(key, keyCheckRoot)
		if id == s.ring.current() {
			continue
		}
		if err := s.kv.Delete(ctx, key); err != nil {
			return retired, fmt.Errorf("delete key-check record %s: %w", key, err)
		}
		retired = append(retired, id)
	}
	slices.Sort(retired)
	return retired, nil
}
