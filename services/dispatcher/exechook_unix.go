//go:build unix

package dispatcher

import (
	"os/exec"
	"syscall"
)

// execSupported: programs run in a process group of their own, killed
// whole.
const execSupported = true

// ownGroup makes cmd's program the leader of a new process group, which
// its children join.
func ownGroup(cmd *exec.Cmd) { cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} }

// killGroup kills the process group of cmd's program.
func killGroup(cmd *exec.Cmd) error {
	if cmd.Process == nil {
		return nil
	}
	return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
}
