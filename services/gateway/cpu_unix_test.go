//go:build unix

package gateway_test

import (
	"syscall"
	"time"
)

// processCPU is the CPU time the process has used so far, user and
// system: the server, the gateway and the clients all run in it.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
