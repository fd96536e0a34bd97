package persistence

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
)

// The envelope every stored value is kept in:
//
//	version (1 byte, envelopeVersion) | key id (8 bytes) | nonce (12 bytes) | AES-256-GCM ciphertext and tag
//
// The additional data of the AEAD is the envelope's first 9 bytes followed
// by the KV key, so a value moved to another key, or relabelled with
// another key id, fails to decrypt.
const (
	envelopeVersion = 1
	keyIDSize       = 8
	nonceSize       = 12
	tagSize         = 16
	headerSize      = 1 + keyIDSize
	// EnvelopeOverhead is how many bytes encryption adds to a value.
	EnvelopeOverhead = headerSize + nonceSize + tagSize
)

// errDecrypt is matched by every failure to read a stored value.
var errDecrypt = errors.New("cannot decrypt stored value")

// keyring encrypts with its first key and decrypts with any of them.
type keyring struct {
	keys []ringKey // newest first
}

type ringKey struct {
	id   []byte
	aead cipher.AEAD
}

func newKeyring(keys []Key) (*keyring, error) {
	if len(keys) == 0 {
		return nil, errors.New("no encryption key")
	}
	r := &keyring{}
	for i, k := range keys {
		block, err := aes.NewCipher(k.aesKey())
		if err != nil {
			return nil, fmt.Errorf("key %d: %w", i+1, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("key %d: %w", i+1, err)
		}
		id := k.id()
		for _, other := range r.keys {
			if bytes.Equal(other.id, id) {
				return nil, fmt.Errorf("key %d (id %x) is configured twice", i+1, id)
			}
		}
		r.keys = append(r.keys, ringKey{id: id, aead: aead})
	}
	return r, nil
}

// current is the id of the key that encrypts, in hex.
func (r *keyring) current() string { return hex.EncodeToString(r.keys[0].id) }

// has reports whether the ring holds the key with the hex id.
func (r *keyring) has(id string) bool { return r.find(id) != nil }

func (r *keyring) find(id string) *ringKey {
	for i := range r.keys {
		if hex.EncodeToString(r.keys[i].id) == id {
			return &r.keys[i]
		}
	}
	return nil
}

// seal encrypts plaintext for the KV key kvKey with the newest key.
func (r *keyring) seal(kvKey string, plaintext []byte) []byte {
	k := r.keys[0]
	out := make([]byte, headerSize+nonceSize, headerSize+nonceSize+len(plaintext)+tagSize)
	out[0] = envelopeVersion
	copy(out[1:headerSize], k.id)
	_, _ = rand.Read(out[headerSize:]) // never fails (crypto/rand)
	return k.aead.Seal(out, out[headerSize:], plaintext, additionalData(out[:headerSize], kvKey))
}

// open decrypts an envelope read from the KV key kvKey. Every failure
// matches errDecrypt and says why without showing the value.
func (r *keyring) open(kvKey string, envelope []byte) ([]byte, error) {
	id, err := envelopeKeyID(envelope)
	if err != nil {
		return nil, err
	}
	k := r.find(id)
	if k == nil {
		return nil, fmt.Errorf("%w: encrypted with key id %s, which is not configured", errDecrypt, id)
	}
	nonce := envelope[headerSize : headerSize+nonceSize]
	plaintext, err := k.aead.Open(nil, nonce, envelope[headerSize+nonceSize:], additionalData(envelope[:headerSize], kvKey))
	if err != nil {
		return nil, fmt.Errorf("%w: authentication failed with key id %s (the value was changed, moved from another key, or written with another key under this id)", errDecrypt, id)
	}
	return plaintext, nil
}

// envelopeKeyID returns the hex key id of an envelope, checking its
// version and length.
func envelopeKeyID(envelope []byte) (string, error) {
	switch {
	case len(envelope) < EnvelopeOverhead:
		return "", fmt.Errorf("%w: %d bytes is too short for an envelope (at least %d)", errDecrypt, len(envelope), EnvelopeOverhead)
	case envelope[0] != envelopeVersion:
		return "", fmt.Errorf("%w: envelope version %d, want %d", errDecrypt, envelope[0], envelopeVersion)
	}
	return hex.EncodeToString(envelope[1:headerSize]), nil
}

func additionalData(header []byte, kvKey string) []byte {
	ad := make([]byte, 0, len(header)+len(kvKey))
	return append(append(ad, header...), kvKey...)
}
