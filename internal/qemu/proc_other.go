//go:build !linux

package qemu

import "os/exec"

// setProcAttr does nothing here: the tests that boot guests run on Linux,
// and other systems only need the package to compile.
func setProcAttr(*exec.Cmd) {}

// killProcessGroup kills only QEMU itself where process groups are not set up.
func killProcessGroup(cmd *exec.Cmd) error {
	if cmd.Process == nil {
		return nil
	}
	return cmd.Process.Kill()
}
