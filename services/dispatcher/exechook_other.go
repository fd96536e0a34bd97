//go:build !unix

package dispatcher

import "os/exec"

// execSupported: without process groups a program's children could
// outlive its timeout, so Config.Validate refuses an exec directory.
const execSupported = false

func ownGroup(*exec.Cmd) {}

// killGroup kills cmd's program (its children are not reached).
func killGroup(cmd *exec.Cmd) error {
	if cmd.Process == nil {
		return nil
	}
	return cmd.Process.Kill()
}
