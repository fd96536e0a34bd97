//go:build !unix

package natsembed

import "os"

// LockFileName is the file in the store directory that the running
// embedded server holds a lock on (unix only).
const LockFileName = "hookbus.lock"

// lockStoreDir does nothing where flock is not available.
func lockStoreDir(string) (*os.File, error) { return nil, nil }
