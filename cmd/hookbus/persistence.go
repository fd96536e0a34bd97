package main

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hookbus/hookbus/services/persistence"
)

// persistenceKeyFileName is the all-in-one's generated key, in the data
// directory.
const persistenceKeyFileName = "persistence.key"

// secret is a configuration string that prints masked, so a logged Config
// never shows it.
type secret string

// String returns "***" for a set secret and "" for an unset one.
func (s secret) String() string {
	if s == "" {
		return ""
	}
	return "***"
}

// newPersistenceService builds the persistence service with the keys the
// configuration names (persistenceKeys).
func newPersistenceService(d deps) (service, error) {
	log := d.log.With("service", "persistence")
	keys, err := persistenceKeys(d.cfg, log)
	if err != nil {
		return nil, err
	}
	cfg := persistence.DefaultConfig()
	cfg.Keys = keys
	cfg.Topology = d.cfg.topology()
	log.Debug("persistence configuration", "config", cfg.String())
	return persistence.New(cfg, d.nc, log, d.reg)
}

// persistenceKeys returns the encryption keys, newest first, from
// HOOKBUS_PERSISTENCE_KEY or from HOOKBUS_PERSISTENCE_KEY_FILE. With
// neither, the all-in-one (embedded NATS) uses the key in
// <data-dir>/persistence.key, generating it on first start; with an
// external NATS that is an error, because every replica must share the
// keys and a key made up by one would leave the others unable to read.
func persistenceKeys(cfg Config, log *slog.Logger) ([]persistence.Key, error) {
	switch {
	case cfg.PersistenceKey != "" && cfg.PersistenceKeyFile != "":
		return nil, errors.New("persistence keys: set HOOKBUS_PERSISTENCE_KEY or HOOKBUS_PERSISTENCE_KEY_FILE, not both")
	case cfg.PersistenceKey != "":
		return parseKeys("HOOKBUS_PERSISTENCE_KEY", string(cfg.PersistenceKey))
	case cfg.PersistenceKeyFile != "":
		b, err := os.ReadFile(cfg.PersistenceKeyFile)
		if err != nil {
			return nil, fmt.Errorf("persistence keys: HOOKBUS_PERSISTENCE_KEY_FILE: %w", err)
		}
		return parseKeys("HOOKBUS_PERSISTENCE_KEY_FILE "+cfg.PersistenceKeyFile, string(b))
	case cfg.NATSURL != "":
		return nil, errors.New("persistence keys: none configured: with an external NATS (HOOKBUS_NATS_URL) " +
			"set HOOKBUS_PERSISTENCE_KEY or HOOKBUS_PERSISTENCE_KEY_FILE to the same key(s) on every replica " +
			"(`hookbus auth keygen` makes one)")
	default:
		return localKey(filepath.Join(cfg.DataDir, persistenceKeyFileName), log)
	}
}

func parseKeys(source, s string) ([]persistence.Key, error) {
	keys, err := persistence.ParseKeys(s)
	if err != nil {
		return nil, fmt.Errorf("persistence keys: %s: %w", source, err)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("persistence keys: %s: no key in it", source)
	}
	return keys, nil
}

// localKey reads the all-in-one's key file, or creates it (mode 0600) with
// a new random key if there is none.
func localKey(path string, log *slog.Logger) ([]persistence.Key, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		keys, err := parseKeys(path, string(b))
		if err != nil {
			return nil, err
		}
		if info, err := os.Stat(path); err == nil && info.Mode().Perm()&0o077 != 0 {
			log.Warn("persistence key file is readable by other users: chmod 600 it", "path", path, "mode", info.Mode().Perm().String())
		}
		log.Info("persistence key loaded from the data directory", "path", path, "key_id", keys[0].ID())
		return keys, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("persistence keys: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("persistence keys: %w", err)
	}
	k := persistence.NewKey()
	content := strings.Join([]string{
		"# Hookbus persistence key, generated " + time.Now().UTC().Format(time.RFC3339) + " by hookbus serve.",
		"# The auth store (bucket hookbus_auth) cannot be read without it: back it up apart from the data.",
		"# Newest key first; see the README (Operations) to rotate.",
		k.Secret(),
		"",
	}, "\n")
	// O_EXCL: never overwrite a key that appeared meanwhile.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("persistence keys: %w", err)
	}
	if _, err := f.WriteString(content); err != nil {
		f.Close()
		return nil, fmt.Errorf("persistence keys: write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, fmt.Errorf("persistence keys: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("persistence keys: write %s: %w", path, err)
	}
	log.Info("persistence key generated and stored in the data directory (no HOOKBUS_PERSISTENCE_KEY given)",
		"path", path, "key_id", k.ID())
	return []persistence.Key{k}, nil
}
