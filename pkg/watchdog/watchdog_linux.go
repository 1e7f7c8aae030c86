// Package watchdog drives a hardware watchdog (/dev/watchdog) from the
// crash kernel: armed early and fed while the dump makes progress, it
// resets the machine when init or the whole crash kernel stops, which no
// code in init can do for itself.
package watchdog

import (
	"fmt"
	"os"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ioctls of linux/watchdog.h.
const (
	wdiocKeepalive  = 0x80045705 // _IOR('W', 5, int)
	wdiocSetTimeout = 0xc0045706 // _IOWR('W', 6, int)
)

// Device is an open watchdog. Once opened it must be fed (Ping) within its
// timeout or the machine resets; it is never disarmed, since every way out
// of the crash kernel is a reset anyway.
type Device struct {
	f       *os.File
	Timeout time.Duration
}

// Open arms the watchdog at path with the given timeout (the driver may
// round it; Timeout says what it took). A missing device is reported with
// an error wrapping os.ErrNotExist: most machines have none.
func Open(path string, timeout time.Duration) (*Device, error) {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("watchdog: %w", err)
	}
	secs := int32(timeout / time.Second)
	if err := ioctlInt(f, wdiocSetTimeout, &secs); err != nil {
		// Some drivers have a fixed timeout; the device still works.
		secs = 0
	}
	d := &Device{f: f, Timeout: time.Duration(secs) * time.Second}
	return d, d.Ping()
}

// Ping feeds the watchdog.
func (d *Device) Ping() error {
	var dummy int32
	if err := ioctlInt(d.f, wdiocKeepalive, &dummy); err != nil {
		// The write interface is the fallback every driver has.
		if _, werr := d.f.Write([]byte{0}); werr != nil {
			return fmt.Errorf("watchdog: keepalive: %w", err)
		}
	}
	return nil
}

func ioctlInt(f *os.File, req uintptr, v *int32) error {
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), req, uintptr(unsafe.Pointer(v)))
	if errno != 0 {
		return errno
	}
	return nil
}
