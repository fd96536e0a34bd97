package client

import (
	"context"
	"maps"

	"github.com/hookbus/hookbus/pkg/events"
)

// AuthStore reads and writes the auth credentials and keys of one context
// (a tenant, an account) through the persistence service, with BaileysEx's
// semantics: credentials are loaded and saved whole; keys are addressed by
// type and id and read and written in batches; a key that is not stored is
// simply absent. Values are opaque bytes; the service encrypts them at
// rest. An AuthStore is safe for concurrent use.
//
// Every method needs a running persistence service (hookbus serve runs
// one). When ctx has no deadline, each request gets the client's timeout.
// Errors the service answers are *Error values matching (errors.Is)
// ErrNotFound, ErrConflict, ErrDecrypt, ErrInternal or events.ErrInvalid;
// arguments that cannot be valid are refused before sending, matching
// events.ErrInvalid.
type AuthStore struct {
	c    *Client
	name string
}

// AuthStore returns the store of the named context; "" is the default
// context (events.AuthDefaultContext). Any UTF-8 name of up to
// events.MaxAuthContextLen bytes is a valid context.
func (c *Client) AuthStore(name string) *AuthStore { return &AuthStore{c: c, name: name} }

// Context returns the store's context name as given to AuthStore.
func (s *AuthStore) Context() string { return s.name }

// Credentials are a context's stored credentials. Revision identifies the
// stored version (increasing, not consecutive); pass it to
// SaveCredentialsIf to detect a concurrent writer.
type Credentials struct {
	Value    []byte
	Revision uint64
}

// LoadCredentials returns the context's credentials. When none are stored
// the error matches ErrNotFound; a stored value that cannot be decrypted
// matches ErrDecrypt and is never replaced by empty credentials.
func (s *AuthStore) LoadCredentials(ctx context.Context) (Credentials, error) {
	if err := events.ValidateAuthContext(s.name); err != nil {
		return Credentials{}, err
	}
	var reply events.AuthCreds
	if err := s.c.authRequest(ctx, "load credentials", events.AuthCredsGetSubject, events.AuthCredsGetRequest{Context: s.name}, &reply); err != nil {
		return Credentials{}, err
	}
	return Credentials(reply), nil
}

// SaveCredentials replaces the context's credentials, whatever is stored,
// and returns the new revision. A nil value saves an empty one.
func (s *AuthStore) SaveCredentials(ctx context.Context, value []byte) (uint64, error) {
	return s.saveCredentials(ctx, value, nil)
}

// SaveCredentialsIf replaces the context's credentials only if the stored
// revision is revision (0: only if none are stored), and returns the new
// revision. Otherwise the error matches ErrConflict and nothing is
// written: load again, apply the change again, and retry.
func (s *AuthStore) SaveCredentialsIf(ctx context.Context, value []byte, revision uint64) (uint64, error) {
	return s.saveCredentials(ctx, value, &revision)
}

func (s *AuthStore) saveCredentials(ctx context.Context, value []byte, revision *uint64) (uint64, error) {
	if err := events.ValidateAuthContext(s.name); err != nil {
		return 0, err
	}
	if value == nil {
		value = []byte{}
	}
	var reply events.AuthCredsSaveReply
	req := events.AuthCredsSaveRequest{Context: s.name, Value: value, ExpectRevision: revision}
	if err := s.c.authRequest(ctx, "save credentials", events.AuthCredsSaveSubject, req, &reply); err != nil {
		return 0, err
	}
	return reply.Revision, nil
}

// LoadKeys returns the stored keys of type typ among ids, by id. Ids that
// are not stored are absent from the map; that is not an error. A stored
// value that cannot be decrypted fails the whole call (ErrDecrypt).
func (s *AuthStore) LoadKeys(ctx context.Context, typ string, ids ...string) (map[string][]byte, error) {
	if err := s.checkKeys(typ, ids); err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		return map[string][]byte{}, nil
	}
	var reply events.AuthKeysGetReply
	req := events.AuthKeysGetRequest{Context: s.name, Type: typ, IDs: ids}
	if err := s.c.authRequest(ctx, "load keys", events.AuthKeysGetSubject, req, &reply); err != nil {
		return nil, err
	}
	if reply.Keys == nil {
		reply.Keys = map[string][]byte{}
	}
	return reply.Keys, nil
}

// SaveKeys writes a batch of keys, type -> id -> value. A nil value
// deletes the key; an empty, non-nil one ([]byte{}) stores an empty value.
// The batch is not atomic: after an error some keys may be written, and
// saving the same batch again is harmless.
func (s *AuthStore) SaveKeys(ctx context.Context, keys map[string]map[string][]byte) error {
	for typ, byID := range keys {
		if err := s.checkKeys(typ, keysOf(byID)); err != nil {
			return err
		}
	}
	if len(keys) == 0 {
		return nil
	}
	req := events.AuthKeysSetRequest{Context: s.name, Keys: keys}
	return s.c.authRequest(ctx, "save keys", events.AuthKeysSetSubject, req, &events.AuthKeysSetReply{})
}

// DeleteKeys deletes the keys of type typ with the given ids; ids that are
// not stored are ignored.
func (s *AuthStore) DeleteKeys(ctx context.Context, typ string, ids ...string) error {
	if err := s.checkKeys(typ, ids); err != nil {
		return err
	}
	if len(ids) == 0 {
		return nil
	}
	req := events.AuthKeysDeleteRequest{Context: s.name, Type: typ, IDs: ids}
	return s.c.authRequest(ctx, "delete keys", events.AuthKeysDeleteSubject, req, &events.AuthKeysDeleteReply{})
}

// ListKeys returns the ids stored under type typ, sorted bytewise.
func (s *AuthStore) ListKeys(ctx context.Context, typ string) ([]string, error) {
	if err := s.checkKeys(typ, nil); err != nil {
		return nil, err
	}
	var reply events.AuthKeysListReply
	req := events.AuthKeysListRequest{Context: s.name, Type: typ}
	if err := s.c.authRequest(ctx, "list keys", events.AuthKeysListSubject, req, &reply); err != nil {
		return nil, err
	}
	if reply.IDs == nil {
		reply.IDs = []string{}
	}
	return reply.IDs, nil
}

// Clear deletes the context's credentials and every key, and returns how
// many entries it removed.
func (s *AuthStore) Clear(ctx context.Context) (int, error) {
	if err := events.ValidateAuthContext(s.name); err != nil {
		return 0, err
	}
	var reply events.AuthContextClearReply
	if err := s.c.authRequest(ctx, "clear context", events.AuthContextClearSubject, events.AuthContextClearRequest{Context: s.name}, &reply); err != nil {
		return 0, err
	}
	return reply.Deleted, nil
}

// AuthRotation reports a key rotation (Client.RotateAuthKeys).
type AuthRotation struct {
	// KeyID is the id of the key every value is now encrypted with.
	KeyID string
	// Rotated values were re-encrypted; Unchanged ones already were under
	// KeyID.
	Rotated, Unchanged int
	// RetiredKeyIDs are the keys no stored value needs any more: they may
	// be dropped from the service's configuration.
	RetiredKeyIDs []string
}

// RotateAuthKeys asks the persistence service to re-encrypt every stored
// value, of every context, with its newest key. Give ctx a deadline to
// match the store's size (minutes for millions of keys; the client's
// timeout otherwise). A value that
// cannot be decrypted makes it fail with ErrDecrypt; the others are
// rotated and no key is retired.
func (c *Client) RotateAuthKeys(ctx context.Context) (AuthRotation, error) {
	var reply events.AuthRotateReply
	if err := c.authRequest(ctx, "rotate keys", events.AuthRotateSubject, events.AuthRotateRequest{}, &reply); err != nil {
		return AuthRotation{}, err
	}
	return AuthRotation(reply), nil
}

func (s *AuthStore) checkKeys(typ string, ids []string) error {
	if err := events.ValidateAuthContext(s.name); err != nil {
		return err
	}
	if err := events.ValidateKeyType(typ); err != nil {
		return err
	}
	for _, id := range ids {
		if err := events.ValidateKeyID(id); err != nil {
			return err
		}
	}
	return nil
}

func keysOf(m map[string][]byte) []string {
	ids := make([]string, 0, len(m))
	for id := range maps.Keys(m) {
		ids = append(ids, id)
	}
	return ids
}
