package main

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hookbus/hookbus/services/persistence"
)

func TestPersistenceKeys(t *testing.T) {
	k1, k2 := persistence.NewKey(), persistence.NewKey()
	keyFile := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(keyFile, []byte("# mounted secret\n"+k2.Secret()+"\n"+k1.Secret()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		cfg     Config
		wantIDs []string
		wantErr string
	}{
		{"environment, newest first", Config{PersistenceKey: secret(k2.Secret() + "," + k1.Secret())}, []string{k2.ID(), k1.ID()}, ""},
		{"file", Config{PersistenceKeyFile: keyFile}, []string{k2.ID(), k1.ID()}, ""},
		{"file with an external NATS", Config{PersistenceKeyFile: keyFile, NATSURL: "nats://nats:4222"}, []string{k2.ID(), k1.ID()}, ""},
		{"both", Config{PersistenceKey: secret(k1.Secret()), PersistenceKeyFile: keyFile}, nil, "not both"},
		{"external NATS without a key", Config{NATSURL: "nats://nats:4222", DataDir: t.TempDir()}, nil, "with an external NATS (HOOKBUS_NATS_URL) set HOOKBUS_PERSISTENCE_KEY"},
		{"not a key", Config{PersistenceKey: "hunter2"}, nil, "HOOKBUS_PERSISTENCE_KEY: key 1: key is"},
		{"empty key list", Config{PersistenceKey: " , "}, nil, "no key in it"},
		{"missing file", Config{PersistenceKeyFile: filepath.Join(t.TempDir(), "none")}, nil, "HOOKBUS_PERSISTENCE_KEY_FILE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keys, err := persistenceKeys(tt.cfg, slog.New(slog.DiscardHandler))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("persistenceKeys = %v, want an error saying %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), k1.Secret()) {
					t.Errorf("the error shows a key: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, k := range keys {
				ids = append(ids, k.ID())
			}
			if strings.Join(ids, ",") != strings.Join(tt.wantIDs, ",") {
				t.Errorf("key ids %v, want %v", ids, tt.wantIDs)
			}
		})
	}
}

// TestAllInOneGeneratesItsKeyOnce checks the all-in-one's key: generated
// into the data directory with mode 0600 on first start, the same one
// reused afterwards, each logged at Info with its path.
func TestAllInOneGeneratesItsKeyOnce(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	cfg := Config{DataDir: dataDir}
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))

	first, err := persistenceKeys(cfg, log)
	if err != nil || len(first) != 1 {
		t.Fatalf("first start: %v, %v", first, err)
	}
	path := filepath.Join(dataDir, "persistence.key")
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm != 0o600 {
		t.Errorf("%s has mode %o, want 600", path, perm)
	}
	if !strings.Contains(logs.String(), "level=INFO msg=\"persistence key generated") || !strings.Contains(logs.String(), path) {
		t.Errorf("first start logged %q, want an Info line saying the key was generated and where", logs.String())
	}
	if strings.Contains(logs.String(), first[0].Secret()) {
		t.Error("the log shows the key")
	}

	logs.Reset()
	again, err := persistenceKeys(cfg, log)
	if err != nil || len(again) != 1 || again[0].ID() != first[0].ID() {
		t.Fatalf("second start: %v, %v; want the same key %s", again, err, first[0].ID())
	}
	if !strings.Contains(logs.String(), "level=INFO msg=\"persistence key loaded") || !strings.Contains(logs.String(), path) {
		t.Errorf("second start logged %q, want an Info line saying the key was loaded and where", logs.String())
	}
}

func TestConfigStringMasksPersistenceKey(t *testing.T) {
	k := persistence.NewKey()
	t.Setenv("HOOKBUS_PERSISTENCE_KEY", k.Secret())
	cfg, err := loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	if string(cfg.PersistenceKey) != k.Secret() {
		t.Fatalf("PersistenceKey not read from the environment")
	}
	if s := cfg.String(); strings.Contains(s, k.Secret()) || !strings.Contains(s, "PersistenceKey:***") {
		t.Errorf("Config.String() = %s, want the persistence key masked", s)
	}
}
