//go:build unix

package natsembed

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// LockFileName is the file in the store directory that the running
// embedded server holds a lock on, with its process id in it.
const LockFileName = "hookbus.lock"

// lockStoreDir takes the store directory for this process: a second
// `hookbus serve` on the same directory would open the running server's
// files (and fail only after its ready timeout, with warnings about
// missing message blocks), so it is refused at once, naming the process
// that holds the lock. The lock goes with the process (flock), so a crash
// leaves nothing to clean up.
func lockStoreDir(dir string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("nats store dir: %w", err)
	}
	path := filepath.Join(dir, LockFileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("nats store dir: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder := "another process"
		if b, rerr := os.ReadFile(path); rerr == nil && strings.TrimSpace(string(b)) != "" {
			holder = "process " + strings.TrimSpace(string(b))
		}
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("nats store dir %s is in use by %s (another hookbus serve?): stop it, or give this one another HOOKBUS_DATA_DIR", dir, holder)
		}
		return nil, fmt.Errorf("nats store dir %s: lock %s: %w", dir, path, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}
