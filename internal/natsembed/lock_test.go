//go:build unix

package natsembed_test

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/hookbus/hookbus/internal/natsembed"
)

// A second server on a store directory in use is refused at once, naming
// the process that holds it; once the first has shut down, it may start.
func TestStoreDirLocked(t *testing.T) {
	cfg := natsembed.DefaultConfig()
	cfg.Addr, cfg.StoreDir = "127.0.0.1:-1", t.TempDir()
	first := start(t, cfg)

	_, err := natsembed.New(cfg, nil)
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("is in use by process %d", os.Getpid())) {
		t.Fatalf("second server on %s: %v, want refused naming process %d", cfg.StoreDir, err, os.Getpid())
	}
	first.Shutdown()
	again, err := natsembed.New(cfg, nil)
	if err != nil {
		t.Fatalf("after the first shut down: %v", err)
	}
	again.Shutdown()
}
