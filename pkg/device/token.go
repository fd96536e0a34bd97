package device

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Token is a token the gateway issued to the device: opaque to the
// device, good until Expires.
type Token struct {
	Token   string    `json:"token"`
	Expires time.Time `json:"expires"`
}

// TokenStore keeps the device's token between connections and between
// runs of the process. The client calls it from one goroutine at a time.
type TokenStore interface {
	// Load returns the stored token, or a zero Token (and no error) when
	// there is none.
	Load() (Token, error)
	// Save replaces the stored token.
	Save(Token) error
	// Delete forgets the stored token (it is dead: expired or revoked).
	Delete() error
}

// MemoryTokenStore keeps the token in memory only: a new process logs in
// again with credentials. It is the client's store when Config.Tokens is
// nil.
type MemoryTokenStore struct {
	mu sync.Mutex
	t  Token
}

// Load returns the token held.
func (m *MemoryTokenStore) Load() (Token, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.t, nil
}

// Save holds t.
func (m *MemoryTokenStore) Save(t Token) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.t = t
	return nil
}

// Delete forgets the token.
func (m *MemoryTokenStore) Delete() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.t = Token{}
	return nil
}

// FileTokenStore keeps the token in the file Path as JSON
// {"token":"…","expires":"<RFC 3339>"}, readable by its owner only (0600).
// Save writes a temporary file in the same directory, syncs it and renames
// it over Path, so a crash leaves either the old token or the new one,
// never half of one.
type FileTokenStore struct {
	Path string
}

// Load reads the token in Path; no file is no token.
func (f FileTokenStore) Load() (Token, error) {
	b, err := os.ReadFile(f.Path)
	if errors.Is(err, os.ErrNotExist) {
		return Token{}, nil
	}
	if err != nil {
		return Token{}, fmt.Errorf("token file: %w", err)
	}
	var t Token
	if err := json.Unmarshal(b, &t); err != nil {
		return Token{}, fmt.Errorf("token file %s: not a token: %w", f.Path, err)
	}
	return t, nil
}

// Save writes t to Path atomically (temporary file, fsync, rename, fsync
// of the directory), mode 0600.
func (f FileTokenStore) Save(t Token) error {
	b, err := json.Marshal(t)
	if err != nil {
		return err
	}
	dir := filepath.Dir(f.Path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(f.Path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("token file: %w", err)
	}
	defer os.Remove(tmp.Name()) // after the rename, there is nothing to remove
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("token file: %w", err)
	}
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("token file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("token file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("token file: %w", err)
	}
	if err := os.Rename(tmp.Name(), f.Path); err != nil {
		return fmt.Errorf("token file: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // the rename itself, where the platform allows it
		d.Close()
	}
	return nil
}

// Delete removes Path; no file is not an error.
func (f FileTokenStore) Delete() error {
	if err := os.Remove(f.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("token file: %w", err)
	}
	return nil
}
