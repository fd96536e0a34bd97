package persistence

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/pkg/events"
)

// credsGet answers a context's credentials and their revision, or
// not_found.
func (s *Service) credsGet(ctx context.Context, body []byte) (any, error) {
	var req events.AuthCredsGetRequest
	name, err := decodeRequest(body, &req, &req.Context)
	if err != nil {
		return nil, err
	}
	key := credsKey(name)
	entry, err := s.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, failure(events.CodeNotFound, "context %q has no credentials", name)
	}
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	value, err := s.open(key, entry.Value())
	if err != nil {
		return nil, fmt.Errorf("credentials of context %q: %w", name, err)
	}
	return events.AuthCreds{Value: value, Revision: entry.Revision()}, nil
}

// credsSave replaces a context's credentials, on condition of the stored
// revision when the request carries one.
func (s *Service) credsSave(ctx context.Context, body []byte) (any, error) {
	var req events.AuthCredsSaveRequest
	name, err := decodeRequest(body, &req, &req.Context)
	if err != nil {
		return nil, err
	}
	if req.Value == nil {
		return nil, failure(events.CodeInvalid, "value: required (base64; \"\" for an empty value)")
	}
	if err := s.checkValue("value", req.Value); err != nil {
		return nil, err
	}
	key := credsKey(name)
	envelope := s.ring.seal(key, req.Value)
	var rev uint64
	switch {
	case req.ExpectRevision == nil:
		rev, err = s.kv.Put(ctx, key, envelope)
	case *req.ExpectRevision == 0:
		rev, err = s.kv.Create(ctx, key, envelope)
	default:
		rev, err = s.kv.Update(ctx, key, envelope, *req.ExpectRevision)
	}
	switch {
	case req.ExpectRevision != nil && isConflict(err):
		if *req.ExpectRevision == 0 {
			return nil, failure(events.CodeRevisionConflict, "context %q already has credentials (expected none)", name)
		}
		return nil, failure(events.CodeRevisionConflict, "credentials of context %q are no longer at revision %d", name, *req.ExpectRevision)
	case err != nil:
		return nil, fmt.Errorf("put %s: %w", key, err)
	}
	return events.AuthCredsSaveReply{Revision: rev}, nil
}

// isConflict reports whether a conditional write lost to another writer.
func isConflict(err error) bool {
	return errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch)
}
