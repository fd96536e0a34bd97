package persistence

import (
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
)

// KeySize is the size of an encryption key: 32 bytes, for AES-256.
const KeySize = 32

// Key is one encryption key of the service. Its String method prints only
// its id, so a Key logged by accident leaks nothing; Secret returns the
// material.
type Key struct{ material [KeySize]byte }

// NewKey returns a random key from crypto/rand.
func NewKey() Key {
	var k Key
	_, _ = rand.Read(k.material[:]) // never fails (crypto/rand)
	return k
}

// ParseKey reads a key written as base64 of 32 bytes (standard or URL
// alphabet, padding optional), as Secret prints it and as
// `openssl rand -base64 32` makes one.
func ParseKey(s string) (Key, error) {
	s = strings.TrimSpace(s)
	var k Key
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		b, err := enc.DecodeString(s)
		if err != nil {
			continue
		}
		if len(b) != KeySize {
			return k, fmt.Errorf("key is %d bytes, want %d (base64 of 32 random bytes)", len(b), KeySize)
		}
		copy(k.material[:], b)
		return k, nil
	}
	return k, fmt.Errorf("key is not base64 (want base64 of %d random bytes)", KeySize)
}

// ParseKeys reads a list of keys, newest first, separated by commas,
// spaces or newlines; lines starting with # are comments. It is the format
// of HOOKBUS_PERSISTENCE_KEY and of the key file.
func ParseKeys(s string) ([]Key, error) {
	var keys []Key
	for line := range strings.Lines(s) {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		for _, field := range strings.FieldsFunc(line, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' || r == '\r' }) {
			k, err := ParseKey(field)
			if err != nil {
				return nil, fmt.Errorf("key %d: %w", len(keys)+1, err)
			}
			keys = append(keys, k)
		}
	}
	return keys, nil
}

// Secret returns the key material as standard base64, the form ParseKey
// reads. Handle it as the secret it is.
func (k Key) Secret() string { return base64.StdEncoding.EncodeToString(k.material[:]) }

// ID returns the key's id: 16 hex digits derived from the key with HKDF,
// stored in every value it encrypts. It identifies the key without
// revealing anything about it.
func (k Key) ID() string { return hex.EncodeToString(k.id()) }

func (k Key) id() []byte { return k.derive("hookbus persistence key id v1", keyIDSize) }

// aesKey is the AES-256 key derived from the material; the material itself
// never encrypts anything, so the id and the cipher key are independent.
func (k Key) aesKey() []byte { return k.derive("hookbus persistence aes-256-gcm v1", KeySize) }

func (k Key) derive(info string, n int) []byte {
	b, err := hkdf.Key(sha256.New, k.material[:], nil, info, n)
	if err != nil {
		panic("hkdf: " + err.Error()) // only for n beyond 255*32 bytes
	}
	return b
}

// String returns "key <id>", never the material.
func (k Key) String() string { return "key " + k.ID() }

// GoString is String, so %#v masks the key too.
func (k Key) GoString() string { return k.String() }
