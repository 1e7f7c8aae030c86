//go:build linux

package qemu

import (
	"errors"
	"os"
	"os/exec"
	"syscall"
)

// setProcAttr puts QEMU in a process group of its own, so that a kill
// reaches any helper it forks, and asks the kernel to kill it if the test
// binary dies first (best effort: Pdeathsig fires when the forking thread
// exits, which the Go runtime does only rarely).
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// killProcessGroup sends SIGKILL to QEMU's whole process group. SIGKILL,
// not SIGTERM: a guest that is being killed has already failed, and QEMU
// must not get a chance to linger flushing anything.
func killProcessGroup(cmd *exec.Cmd) error {
	if cmd.Process == nil {
		return nil
	}
	err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	if errors.Is(err, syscall.ESRCH) {
		return os.ErrProcessDone
	}
	return err
}
