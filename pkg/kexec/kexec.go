// Package kexec loads and inspects the crash kernel of the running system.
//
// u-root's pkg/boot/kexec wraps kexec_file_load without flags, so it cannot
// load a crash kernel (KEXEC_FILE_ON_CRASH); the syscall itself is one line.
package kexec

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// LoadCrash loads kernel and initrd as the crash kernel with cmdline. The
// kernel appends elfcorehdr= (and dmcryptkeys=) to cmdline itself. A crash
// kernel loaded before is replaced.
func LoadCrash(kernel, initrd *os.File, cmdline string) error {
	err := unix.KexecFileLoad(int(kernel.Fd()), int(initrd.Fd()), cmdline, unix.KEXEC_FILE_ON_CRASH)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.ENOMEM):
		return fmt.Errorf("kexec: load crash kernel: %w (is crashkernel= reserved, and large enough for kernel and initramfs?)", err)
	case errors.Is(err, unix.EKEYREJECTED) || errors.Is(err, unix.ENOKEY):
		return fmt.Errorf("kexec: load crash kernel: %w (the kernel requires a signed image)", err)
	case errors.Is(err, unix.ENOSYS):
		// Debian's arm64 kernels (12 and 13) are built so: kexec-tools
		// loads them with the older kexec_load, which ukdump does not use.
		return fmt.Errorf("kexec: load crash kernel: %w (the running kernel has no kexec_file_load: it was built without CONFIG_KEXEC_FILE)", err)
	case errors.Is(err, unix.ENOEXEC):
		return fmt.Errorf("kexec: load crash kernel: %w (the running kernel does not take this kernel image's format)", err)
	case errors.Is(err, unix.EPERM):
		return fmt.Errorf("kexec: load crash kernel: %w (need CAP_SYS_BOOT; lockdown or kexec_load_disabled may forbid it)", err)
	}
	return fmt.Errorf("kexec: load crash kernel: %w", err)
}

// UnloadCrash removes the crash kernel.
func UnloadCrash() error {
	if err := unix.KexecFileLoad(-1, -1, "", unix.KEXEC_FILE_UNLOAD|unix.KEXEC_FILE_ON_CRASH); err != nil {
		return fmt.Errorf("kexec: unload crash kernel: %w", err)
	}
	return nil
}

// Status is what the kernel says about crash kernel support.
type Status struct {
	// Supported is false when the kernel cannot load a crash kernel at
	// all: it was built without CONFIG_KEXEC_CORE / CONFIG_CRASH_DUMP, and
	// sysfs has no kexec_crash_loaded.
	Supported bool
	// Loaded is true when a crash kernel is loaded.
	Loaded bool
	// Reserved is the size of the crashkernel= reservation in bytes.
	Reserved uint64
}

// Unsupported says in plain words why a kernel without Status.Supported
// cannot take a crash kernel.
const Unsupported = "this kernel cannot load a crash kernel: it was built without kexec crash dump support (CONFIG_KEXEC_FILE, CONFIG_CRASH_DUMP)"

// ReadStatus reads the crash kernel state from sysfs below sysDir (/sys).
// A kernel without crash dump support is no error: Supported is false.
func ReadStatus(sysDir string) (Status, error) {
	loaded, err := readUint(filepath.Join(sysDir, "kernel", "kexec_crash_loaded"))
	if errors.Is(err, os.ErrNotExist) {
		return Status{}, nil
	}
	if err != nil {
		return Status{}, err
	}
	size, err := readUint(filepath.Join(sysDir, "kernel", "kexec_crash_size"))
	if err != nil {
		return Status{}, err
	}
	return Status{Supported: true, Loaded: loaded == 1, Reserved: size}, nil
}

func readUint(name string) (uint64, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return 0, fmt.Errorf("kexec: %w", err)
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("kexec: %s: %w", name, err)
	}
	return v, nil
}
