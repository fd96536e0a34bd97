package gateway

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// Device token defaults (Fedecks' own): a fresh token is pushed to a
// connected device every DefaultTokenRefresh, and a token is good for
// DefaultTokenExpiry after it was issued.
const (
	DefaultTokenRefresh = 3 * time.Hour
	DefaultTokenExpiry  = 4 * 7 * 24 * time.Hour
)

// minDeviceSecret is the fewest bytes a device token secret may have: the
// key is derived from it, so it must carry at least the key's 256 bits.
const minDeviceSecret = 32

// deviceTokenVersion is the first byte of every sealed token; another
// version is refused as tampered.
const deviceTokenVersion byte = 1

// deviceTokenInfo binds the derived key to this one use (HKDF info).
const deviceTokenInfo = "hookbus device token v1"

// Errors of DeviceSealer.Open. ErrTokenExpired and ErrTokenRevoked mean
// "log in again" (401); ErrTokenInvalid means the token was not made by
// this key for this device (403).
var (
	ErrTokenInvalid = errors.New("device token invalid")
	ErrTokenExpired = errors.New("device token expired")
	ErrTokenRevoked = errors.New("device token revoked")
)

// DeviceToken is what a device token carries.
type DeviceToken struct {
	DeviceID   string    `json:"d"`
	IssuedAt   time.Time `json:"iat"`
	Expires    time.Time `json:"exp"`
	Generation uint64    `json:"gen"`
}

// DeviceSealer seals and opens device tokens with AES-256-GCM under a key
// derived (HKDF-SHA256) from a secret and a salt. It is safe for
// concurrent use.
type DeviceSealer struct {
	aead cipher.AEAD
}

// NewDeviceSealer derives the token key from secret (at least 32 bytes)
// and salt (not empty).
func NewDeviceSealer(secret, salt []byte) (*DeviceSealer, error) {
	if len(secret) < minDeviceSecret {
		return nil, fmt.Errorf("device token secret: %d bytes, want at least %d", len(secret), minDeviceSecret)
	}
	if len(salt) == 0 {
		return nil, errors.New("device token salt: empty")
	}
	key, err := hkdf.Key(sha256.New, secret, salt, deviceTokenInfo, 32)
	if err != nil {
		return nil, fmt.Errorf("device token key: %w", err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("device token key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("device token key: %w", err)
	}
	return &DeviceSealer{aead: aead}, nil
}

// DeviceSealerFromEnv builds a sealer from HOOKBUS_DEVICE_TOKEN_SECRET and
// HOOKBUS_DEVICE_TOKEN_SALT, or from the files named by
// HOOKBUS_DEVICE_TOKEN_SECRET_FILE and HOOKBUS_DEVICE_TOKEN_SALT_FILE
// (Kubernetes secrets mounted as files; one trailing newline is dropped).
// Setting both a variable and its _FILE is refused. getenv is os.Getenv
// when nil.
func DeviceSealerFromEnv(getenv func(string) string) (*DeviceSealer, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	secret, err := envOrFile(getenv, "HOOKBUS_DEVICE_TOKEN_SECRET")
	if err != nil {
		return nil, err
	}
	salt, err := envOrFile(getenv, "HOOKBUS_DEVICE_TOKEN_SALT")
	if err != nil {
		return nil, err
	}
	return NewDeviceSealer(secret, salt)
}

// envOrFile is the value of name, or the content of the file named by
// name_FILE.
func envOrFile(getenv func(string) string, name string) ([]byte, error) {
	v, file := getenv(name), getenv(name+"_FILE")
	switch {
	case v != "" && file != "":
		return nil, fmt.Errorf("%s and %s_FILE: set one, not both", name, name)
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("%s_FILE: %w", name, err)
		}
		return []byte(strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")), nil
	case v == "":
		return nil, fmt.Errorf("%s (or %s_FILE): not set", name, name)
	}
	return []byte(v), nil
}

// Seal returns t as an opaque token (URL-safe base64, no padding): a
// version byte, a random nonce and t sealed with the device id as
// additional data.
func (s *DeviceSealer) Seal(t DeviceToken) (string, error) {
	plain, err := json.Marshal(t)
	if err != nil {
		return "", err
	}
	nonce := make([]byte, s.aead.NonceSize(), 1+s.aead.NonceSize()+len(plain)+s.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	out := append([]byte{deviceTokenVersion}, nonce...)
	out = s.aead.Seal(out, nonce, plain, []byte(t.DeviceID))
	return base64.RawURLEncoding.EncodeToString(out), nil
}

// Open checks token for deviceID at now against the device's current
// generation: ErrTokenInvalid when it was not sealed by this key for
// this device (tampered, another secret, another device),
// ErrTokenExpired past its expiry, ErrTokenRevoked when its generation
// is older than generation.
func (s *DeviceSealer) Open(token, deviceID string, now time.Time, generation uint64) (DeviceToken, error) {
	raw, err := base64.RawURLEncoding.DecodeString(token)
	ns := s.aead.NonceSize()
	if err != nil || len(raw) < 1+ns+s.aead.Overhead() || raw[0] != deviceTokenVersion {
		return DeviceToken{}, ErrTokenInvalid
	}
	// The device id is the additional data: a token of another device
	// does not open, whatever it says inside.
	plain, err := s.aead.Open(nil, raw[1:1+ns], raw[1+ns:], []byte(deviceID))
	if err != nil {
		return DeviceToken{}, ErrTokenInvalid
	}
	var t DeviceToken
	if err := json.Unmarshal(plain, &t); err != nil || t.DeviceID != deviceID {
		return DeviceToken{}, ErrTokenInvalid
	}
	switch {
	case !now.Before(t.Expires):
		return t, ErrTokenExpired
	case t.Generation < generation:
		return t, ErrTokenRevoked
	}
	return t, nil
}
