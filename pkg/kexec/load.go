package kexec

import (
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// KexecOnCrash is kexec_load's flag for a crash kernel.
const KexecOnCrash = unix.KEXEC_ON_CRASH

// kexecSegment is struct kexec_segment of <linux/kexec.h>.
type kexecSegment struct {
	buf   unsafe.Pointer
	bufsz uintptr
	mem   uintptr
	memsz uintptr
}

// kexecLoad calls kexec_load(2). u-root's kexec.Load is not used: it
// aligns by copying every buffer into a new one, and the initramfs buffer
// may hold volume keys that must exist only where the caller wipes them.
func kexecLoad(entry uint64, segs []segment, flags uintptr) error {
	ks := make([]kexecSegment, len(segs))
	for i, s := range segs {
		ks[i] = kexecSegment{bufsz: uintptr(len(s.buf)), mem: uintptr(s.mem.Start), memsz: uintptr(s.mem.Size)}
		if len(s.buf) > 0 {
			ks[i].buf = unsafe.Pointer(&s.buf[0])
		}
	}
	var p unsafe.Pointer
	if len(ks) > 0 {
		p = unsafe.Pointer(&ks[0])
	}
	_, _, errno := unix.Syscall6(unix.SYS_KEXEC_LOAD, uintptr(entry), uintptr(len(ks)), uintptr(p), flags, 0, 0)
	runtime.KeepAlive(segs)
	runtime.KeepAlive(ks)
	if errno != 0 {
		if len(segs) == 0 {
			return fmt.Errorf("kexec: kexec_load unload: %w", errno)
		}
		return fmt.Errorf("kexec: kexec_load of %d segments, entry %#x: %w", len(segs), entry, errno)
	}
	return nil
}
