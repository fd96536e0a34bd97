package events

import (
	"slices"
	"unicode/utf8"
)

// The persistence API (docs/protocol.md, "Persistence (hookbus.auth.>)"):
// BaileysEx's auth credentials and keys, served by the NATS micro service
// AuthServiceName over core request/reply. Every request and reply body is
// JSON; byte values travel as standard base64 (Go's encoding of []byte).
const (
	// AuthSubjects matches every subject of the persistence API.
	AuthSubjects = "hookbus.auth.>"
	// AuthServiceName is the micro service's name, as $SRV.PING and
	// $SRV.INFO report it.
	AuthServiceName = "hookbus-persistence"

	// AuthCredsGetSubject loads a context's credentials: AuthCredsGetRequest
	// -> AuthCreds.
	AuthCredsGetSubject = "hookbus.auth.creds.get"
	// AuthCredsSaveSubject saves them: AuthCredsSaveRequest ->
	// AuthCredsSaveReply.
	AuthCredsSaveSubject = "hookbus.auth.creds.save"
	// AuthKeysGetSubject loads keys of one type: AuthKeysGetRequest ->
	// AuthKeysGetReply.
	AuthKeysGetSubject = "hookbus.auth.keys.get"
	// AuthKeysSetSubject writes and deletes a batch of keys:
	// AuthKeysSetRequest -> AuthKeysSetReply.
	AuthKeysSetSubject = "hookbus.auth.keys.set"
	// AuthKeysDeleteSubject deletes keys of one type: AuthKeysDeleteRequest
	// -> AuthKeysDeleteReply.
	AuthKeysDeleteSubject = "hookbus.auth.keys.delete"
	// AuthKeysListSubject lists the ids of one type: AuthKeysListRequest ->
	// AuthKeysListReply.
	AuthKeysListSubject = "hookbus.auth.keys.list"
	// AuthContextClearSubject removes a context's credentials and keys:
	// AuthContextClearRequest -> AuthContextClearReply.
	AuthContextClearSubject = "hookbus.auth.context.clear"
	// AuthRotateSubject re-encrypts every stored value with the newest
	// key: AuthRotateRequest -> AuthRotateReply.
	AuthRotateSubject = "hookbus.auth.rotate"
)

// AuthDefaultContext is the context of a request that names none.
const AuthDefaultContext = "default"

// Error codes of the persistence API, beside CodeInvalid, CodeNotFound and
// CodeInternal.
const (
	// CodeRevisionConflict ("conflict"): a save carried an expected
	// revision that is no longer the stored one; read again and retry.
	CodeRevisionConflict ErrorCode = "conflict"
	// CodeDecrypt ("decrypt"): a stored value could not be decrypted or
	// decoded with the configured keys. It is never replaced by an empty
	// value: an operator has to look.
	CodeDecrypt ErrorCode = "decrypt"
)

// Well-known key types of BaileysEx (and Baileys). Other types are
// accepted when they are valid names (ValidateKeyType).
const (
	KeyTypeSession             = "session"
	KeyTypePreKey              = "pre-key"
	KeyTypeSenderKey           = "sender-key"
	KeyTypeSenderKeyMemory     = "sender-key-memory"
	KeyTypeAppStateSyncKey     = "app-state-sync-key"
	KeyTypeAppStateSyncVersion = "app-state-sync-version"
	KeyTypeLIDMapping          = "lid-mapping"
	KeyTypeDeviceList          = "device-list"
	KeyTypeTCToken             = "tctoken"
	KeyTypeIdentityKey         = "identity-key"
)

// KeyTypes returns the well-known key types, a new slice each call.
func KeyTypes() []string { return slices.Clone(keyTypes) }

var keyTypes = []string{
	KeyTypeSession, KeyTypePreKey, KeyTypeSenderKey, KeyTypeSenderKeyMemory,
	KeyTypeAppStateSyncKey, KeyTypeAppStateSyncVersion, KeyTypeLIDMapping,
	KeyTypeDeviceList, KeyTypeTCToken, KeyTypeIdentityKey,
}

// Limits of the persistence API.
const (
	// MaxAuthContextLen is the longest context, in bytes.
	MaxAuthContextLen = 256
	// MaxKeyIDLen is the longest key id, in bytes.
	MaxKeyIDLen = 1024
	// MaxKeyIDsPerRequest bounds the ids of one get or delete and the keys
	// of one set.
	MaxKeyIDsPerRequest = 10_000
)

// ValidateAuthContext checks a context name: empty (the default context)
// or valid UTF-8 of at most MaxAuthContextLen bytes. Any character is
// allowed; the service encodes names before they reach a subject. The
// error matches ErrInvalid.
func ValidateAuthContext(name string) error {
	if len(name) > MaxAuthContextLen {
		return invalidArgument("context", "%d bytes, the limit is %d", len(name), MaxAuthContextLen)
	}
	if !utf8.ValidString(name) {
		return invalidArgument("context", "%q is not valid UTF-8", name)
	}
	return nil
}

// ValidateKeyType checks a key type: [A-Za-z0-9_-]{1,64}, which every
// well-known type is. The error matches ErrInvalid.
func ValidateKeyType(typ string) error {
	if err := ValidateName("key type", typ); err != nil {
		return invalidArgument("key type", "%q: only letters, digits, '_' and '-', 1 to %d of them", typ, maxNameLen)
	}
	return nil
}

// ValidateKeyID checks a key id: valid UTF-8, 1 to MaxKeyIDLen bytes. Any
// character is allowed (`@`, `:`, `/`, spaces, non-ASCII); the service
// encodes ids before they reach a subject. The error matches ErrInvalid.
func ValidateKeyID(id string) error {
	switch {
	case id == "":
		return invalidArgument("key id", "required")
	case len(id) > MaxKeyIDLen:
		return invalidArgument("key id", "%d bytes, the limit is %d", len(id), MaxKeyIDLen)
	case !utf8.ValidString(id):
		return invalidArgument("key id", "%q is not valid UTF-8", id)
	}
	return nil
}

// argumentError is an invalid argument of a persistence request; its
// message names the argument, and it matches ErrInvalid.
func invalidArgument(field, format string, args ...any) error {
	return invalidIn("auth request", field, format, args...)
}

// AuthCredsGetRequest asks for a context's credentials.
type AuthCredsGetRequest struct {
	Context string `json:"context,omitempty"`
}

// AuthCreds is a context's stored credentials. Revision is the stored
// version (a KV revision: increasing, not consecutive); pass it back in a
// save to detect a concurrent writer.
type AuthCreds struct {
	Value    []byte `json:"value"`
	Revision uint64 `json:"revision"`
}

// AuthCredsSaveRequest replaces a context's credentials. ExpectRevision,
// when set, makes the save conditional: it succeeds only if the stored
// revision is that one (0: only if there are no credentials yet), and
// fails with CodeRevisionConflict otherwise.
type AuthCredsSaveRequest struct {
	Context        string  `json:"context,omitempty"`
	Value          []byte  `json:"value"`
	ExpectRevision *uint64 `json:"expect_revision,omitempty"`
}

// AuthCredsSaveReply carries the revision of the saved credentials.
type AuthCredsSaveReply struct {
	Revision uint64 `json:"revision"`
}

// AuthKeysGetRequest asks for the keys of one type with the given ids.
type AuthKeysGetRequest struct {
	Context string   `json:"context,omitempty"`
	Type    string   `json:"type"`
	IDs     []string `json:"ids"`
}

// AuthKeysGetReply maps each found id to its value; ids that are not
// stored are absent (not an error).
type AuthKeysGetReply struct {
	Keys map[string][]byte `json:"keys"`
}

// AuthKeysSetRequest writes a batch: type -> id -> value. A null value
// deletes the key; an empty one ("") stores an empty value.
type AuthKeysSetRequest struct {
	Context string                       `json:"context,omitempty"`
	Keys    map[string]map[string][]byte `json:"keys"`
}

// AuthKeysSetReply counts the keys written and the ids deleted (including
// those that were already absent).
type AuthKeysSetReply struct {
	Written int `json:"written"`
	Deleted int `json:"deleted"`
}

// AuthKeysDeleteRequest deletes the keys of one type with the given ids;
// ids that are not stored are ignored.
type AuthKeysDeleteRequest struct {
	Context string   `json:"context,omitempty"`
	Type    string   `json:"type"`
	IDs     []string `json:"ids"`
}

// AuthKeysDeleteReply counts the ids processed.
type AuthKeysDeleteReply struct {
	Deleted int `json:"deleted"`
}

// AuthKeysListRequest asks for the ids stored under one type.
type AuthKeysListRequest struct {
	Context string `json:"context,omitempty"`
	Type    string `json:"type"`
}

// AuthKeysListReply lists the ids, sorted bytewise.
type AuthKeysListReply struct {
	IDs []string `json:"ids"`
}

// AuthContextClearRequest removes everything stored for a context.
type AuthContextClearRequest struct {
	Context string `json:"context,omitempty"`
}

// AuthContextClearReply counts the entries removed (credentials and keys).
type AuthContextClearReply struct {
	Deleted int `json:"deleted"`
}

// AuthRotateRequest asks for a rotation; it has no fields.
type AuthRotateRequest struct{}

// AuthRotateReply reports a rotation: the key id everything is now
// encrypted with, how many values were re-encrypted and how many already
// were, and the key ids no stored value needs any more (their key-check
// records are removed; the keys may now be dropped from the
// configuration).
type AuthRotateReply struct {
	KeyID         string   `json:"key_id"`
	Rotated       int      `json:"rotated"`
	Unchanged     int      `json:"unchanged"`
	RetiredKeyIDs []string `json:"retired_key_ids"`
}
