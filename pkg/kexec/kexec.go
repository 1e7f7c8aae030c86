// Package kexec loads and inspects the crash kernel of the running system.
//
// u-root's pkg/boot/kexec wraps kexec_file_load without flags, so it cannot
// load a crash kernel (KEXEC_FILE_ON_CRASH); the syscall itself is one line.
// Where the kernel has only kexec_load (arm64 kernels without
// CONFIG_KEXEC_FILE), arm64.go does what kexec_file_load does in the kernel.
package kexec

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ukdump/ukdump/pkg/armimage"
)

// Syscall names the system call that loaded a crash kernel.
type Syscall string

const (
	ViaFileLoad Syscall = "kexec_file_load"
	// ViaLoad is the older kexec_load, for arm64 kernels built without
	// CONFIG_KEXEC_FILE: what the kernel does for kexec_file_load is done
	// in user space (LoadARM64).
	ViaLoad Syscall = "kexec_load"
)

// LoadCrash loads kernel and initrd as the crash kernel with cmdline. The
// kernel appends elfcorehdr= (and dmcryptkeys=) to cmdline itself. A crash
// kernel loaded before is replaced. On arm64 kernels without
// kexec_file_load it uses kexec_load.
func LoadCrash(kernel, initrd *os.File, cmdline string) (Syscall, error) {
	err := unix.KexecFileLoad(int(kernel.Fd()), int(initrd.Fd()), cmdline, unix.KEXEC_FILE_ON_CRASH)
	if errors.Is(err, unix.ENOSYS) && runtime.GOARCH == "arm64" {
		return ViaLoad, loadCrashARM64(kernel, initrd, cmdline)
	}
	return ViaFileLoad, loadError(err)
}

func loadError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.ENOMEM):
		return fmt.Errorf("kexec: load crash kernel: %w (is crashkernel= reserved, and large enough for kernel and initramfs?)", err)
	case errors.Is(err, unix.EKEYREJECTED) || errors.Is(err, unix.ENOKEY):
		return fmt.Errorf("kexec: load crash kernel: %w (the kernel requires a signed image)", err)
	case errors.Is(err, unix.ENOSYS):
		return fmt.Errorf("kexec: load crash kernel: %w (the running kernel has no kexec_file_load: it was built without CONFIG_KEXEC_FILE; ukdump falls back to kexec_load on arm64 only)", err)
	case errors.Is(err, unix.ENOEXEC):
		return fmt.Errorf("kexec: load crash kernel: %w (the running kernel does not take this kernel image's format)", err)
	case errors.Is(err, unix.EPERM):
		return fmt.Errorf("kexec: load crash kernel: %w (%s)", err, permHint)
	}
	return fmt.Errorf("kexec: load crash kernel: %w", err)
}

// loadCrashARM64 reads the kernel and the initramfs into memory for
// kexec_load. The initramfs may hold volume keys: its buffer is read in
// place, handed to the kernel without a copy and wiped on every path.
func loadCrashARM64(kernel, initrd *os.File, cmdline string) (err error) {
	image, err := readAllBounded(kernel, armimage.MaxImage)
	if err != nil {
		return fmt.Errorf("kexec: crash kernel: %w", err)
	}
	buf, err := readAllBounded(initrd, maxInitrd)
	if err != nil {
		return fmt.Errorf("kexec: initramfs: %w", err)
	}
	defer clear(buf)
	if err := Running().LoadARM64(image, buf, cmdline); err != nil {
		if errors.Is(err, unix.EPERM) {
			return fmt.Errorf("%w (%s)", err, permHint)
		}
		return err
	}
	return nil
}

// maxInitrd bounds the crash initramfs read for kexec_load: ukdump's is a
// few MiB.
const maxInitrd = 512 << 20

// permHint says why loading may be refused with EPERM.
const permHint = "need CAP_SYS_BOOT; lockdown or kexec_load_disabled may forbid it"

// readAllBounded reads the whole of f, at most limit bytes, into one
// buffer. What a failed read left in it is wiped: it may be keys.
func readAllBounded(f *os.File, limit int64) ([]byte, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Size() > limit {
		return nil, fmt.Errorf("%s: %d bytes, more than %d", f.Name(), st.Size(), limit)
	}
	b := make([]byte, st.Size())
	if _, err := f.ReadAt(b, 0); err != nil {
		clear(b)
		return nil, fmt.Errorf("%s: %w", f.Name(), err)
	}
	return b, nil
}

// UnloadCrash removes the crash kernel, with the system call that can
// (kexec_file_load, or kexec_load where the kernel has only that).
func UnloadCrash() error {
	err := unix.KexecFileLoad(-1, -1, "", unix.KEXEC_FILE_UNLOAD|unix.KEXEC_FILE_ON_CRASH)
	if errors.Is(err, unix.ENOSYS) {
		return kexecLoad(0, nil, KexecOnCrash)
	}
	if err != nil {
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
