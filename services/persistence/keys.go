package persistence

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/hookbus/hookbus/pkg/events"
)

// kvParallel is how many KV operations one request runs at once: a batch
// of pre-keys is written in a few round trips instead of one per key.
const kvParallel = 16

// keysGet answers the stored keys among the requested ids; missing ids are
// left out. A value that cannot be decrypted fails the whole request.
func (s *Service) keysGet(ctx context.Context, body []byte) (any, error) {
	var req events.AuthKeysGetRequest
	name, err := decodeRequest(body, &req, &req.Context)
	if err != nil {
		return nil, err
	}
	if err := checkTypeAndIDs(req.Type, req.IDs); err != nil {
		return nil, err
	}
	var mu sync.Mutex
	found := make(map[string][]byte, len(req.IDs))
	err = forEach(ctx, slices.Compact(slices.Sorted(slices.Values(req.IDs))), func(ctx context.Context, id string) error {
		key := keyKey(name, req.Type, id)
		entry, err := s.kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("get %s: %w", key, err)
		}
		value, err := s.open(key, entry.Value())
		if err != nil {
			return fmt.Errorf("key %s %q of context %q: %w", req.Type, id, name, err)
		}
		mu.Lock()
		found[id] = value
		mu.Unlock()
		return nil
	})
	if err != nil {
		return nil, err
	}
	return events.AuthKeysGetReply{Keys: found}, nil
}

// keysSet writes a batch; a null value deletes. The batch is not atomic:
// on an error, some keys may be written; sending it again is harmless.
func (s *Service) keysSet(ctx context.Context, body []byte) (any, error) {
	var req events.AuthKeysSetRequest
	name, err := decodeRequest(body, &req, &req.Context)
	if err != nil {
		return nil, err
	}
	type write struct {
		typ, id string
		value   []byte // nil deletes
	}
	var writes []write
	var reply events.AuthKeysSetReply
	for _, typ := range slices.Sorted(maps.Keys(req.Keys)) {
		if err := checkTypeAndIDs(typ, slices.Collect(maps.Keys(req.Keys[typ]))); err != nil {
			return nil, err
		}
		for id, value := range req.Keys[typ] {
			if err := s.checkValue(fmt.Sprintf("key %s %q", typ, id), value); err != nil {
				return nil, err
			}
			writes = append(writes, write{typ, id, value})
			if value == nil {
				reply.Deleted++
			} else {
				reply.Written++
			}
		}
	}
	if len(writes) > events.MaxKeyIDsPerRequest {
		return nil, failure(events.CodeInvalid, "%d keys in one set, the limit is %d", len(writes), events.MaxKeyIDsPerRequest)
	}
	err = forEach(ctx, writes, func(ctx context.Context, w write) error {
		key := keyKey(name, w.typ, w.id)
		if w.value == nil {
			return s.deleteKey(ctx, key)
		}
		if _, err := s.kv.Put(ctx, key, s.ring.seal(key, w.value)); err != nil {
			return fmt.Errorf("put %s: %w", key, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return reply, nil
}

// keysDelete deletes keys of one type; absent ids are ignored.
func (s *Service) keysDelete(ctx context.Context, body []byte) (any, error) {
	var req events.AuthKeysDeleteRequest
	name, err := decodeRequest(body, &req, &req.Context)
	if err != nil {
		return nil, err
	}
	if err := checkTypeAndIDs(req.Type, req.IDs); err != nil {
		return nil, err
	}
	ids := slices.Compact(slices.Sorted(slices.Values(req.IDs)))
	err = forEach(ctx, ids, func(ctx context.Context, id string) error {
		return s.deleteKey(ctx, keyKey(name, req.Type, id))
	})
	if err != nil {
		return nil, err
	}
	return events.AuthKeysDeleteReply{Deleted: len(ids)}, nil
}

// keysList answers the ids stored under one type, sorted.
func (s *Service) keysList(ctx context.Context, body []byte) (any, error) {
	var req events.AuthKeysListRequest
	name, err := decodeRequest(body, &req, &req.Context)
	if err != nil {
		return nil, err
	}
	if err := events.ValidateKeyType(req.Type); err != nil {
		return nil, err
	}
	keys, err := s.listKeys(ctx, typeFilter(name, req.Type))
	if err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(keys))
	for _, key := range keys {
		id, err := idFromKey(key)
		if err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return events.AuthKeysListReply{IDs: ids}, nil
}

// contextClear deletes a context's credentials and every key.
func (s *Service) contextClear(ctx context.Context, body []byte) (any, error) {
	var req events.AuthContextClearRequest
	name, err := decodeRequest(body, &req, &req.Context)
	if err != nil {
		return nil, err
	}
	keys, err := s.listKeys(ctx, contextFilter(name))
	if err != nil {
		return nil, err
	}
	err = forEach(ctx, keys, s.deleteKey)
	if err != nil {
		return nil, err
	}
	return events.AuthContextClearReply{Deleted: len(keys)}, nil
}

// deleteKey deletes one KV key (a delete marker; history is one revision).
func (s *Service) deleteKey(ctx context.Context, key string) error {
	if err := s.kv.Delete(ctx, key); err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	return nil
}

// checkTypeAndIDs validates a key type and the ids of one request.
func checkTypeAndIDs(typ string, ids []string) error {
	if err := events.ValidateKeyType(typ); err != nil {
		return err
	}
	if len(ids) > events.MaxKeyIDsPerRequest {
		return failure(events.CodeInvalid, "%d ids in one request, the limit is %d", len(ids), events.MaxKeyIDsPerRequest)
	}
	for _, id := range ids {
		if err := events.ValidateKeyID(id); err != nil {
			return err
		}
	}
	return nil
}

// listKeys returns the KV keys matching filter whose latest revision is a
// value (not a deletion), sorted and without duplicates.
func (s *Service) listKeys(ctx context.Context, filter string) ([]string, error) {
	lister, err := s.kv.ListKeysFiltered(ctx, filter)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", filter, err)
	}
	var keys []string
	// Read to the end: the lister's goroutine only stops once its channel
	// is drained or ctx ends.
	for key := range lister.Keys() {
		keys = append(keys, key)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list %s: %w", filter, err)
	}
	slices.Sort(keys)
	return slices.Compact(keys), nil
}

// forEach runs f for every item, kvParallel at a time, and returns the
// first error.
func forEach[T any](ctx context.Context, items []T, f func(context.Context, T) error) error {
	if len(items) == 1 { // the common case: no goroutine
		return f(ctx, items[0])
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(kvParallel)
	for _, item := range items {
		g.Go(func() error { return f(gctx, item) })
	}
	return g.Wait()
}
