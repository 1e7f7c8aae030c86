// Package qemuuser lets unit tests skip what the emulator of make
// test-arm64-unit does not emulate: the arm64 test binaries run on the
// x86_64 host under Debian 12's qemu-aarch64-static (QEMU 7.2), whose
// system call translation lacks some calls the real kernels have.
package qemuuser

import (
	"errors"
	"testing"

	"golang.org/x/sys/unix"
)

// SkipWithoutOpenat2 skips t when openat2(2) is not implemented: QEMU 7.2's
// user mode answers ENOSYS, while every kernel ukdump runs on (5.6 and
// later) has it.
func SkipWithoutOpenat2(t testing.TB) {
	t.Helper()
	fd, err := unix.Openat2(unix.AT_FDCWD, "/", &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC})
	if errors.Is(err, unix.ENOSYS) {
		t.Skip("openat2 is not implemented here (QEMU 7.2's user-mode emulation lacks it; real kernels since 5.6 have it)")
	}
	if err == nil {
		unix.Close(fd)
	}
}
