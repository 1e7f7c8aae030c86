package keys

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// Protect readies this process to hold volume keys: its memory is locked
// out of swap, present and future (mlockall; MCL_ONFAULT, so that only
// the pages it touches are locked, not the address space Go reserves),
// and it is not dumpable (no core file, and no ptrace or /proc/<pid>/mem
// by a process of its uid without CAP_SYS_PTRACE). The key-handling verbs
// call it first; an error means the memory could not be locked (the
// process is undumpable still), which the caller reports and goes on.
func Protect() error {
	errs := []error{}
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		errs = append(errs, fmt.Errorf("keys: not dumpable: %w", err))
	}
	err := unix.Mlockall(unix.MCL_CURRENT | unix.MCL_FUTURE | unix.MCL_ONFAULT)
	if errors.Is(err, unix.EINVAL) {
		// Before Linux 4.4 there is no MCL_ONFAULT; MCL_FUTURE without
		// it would fault in every mapping Go makes.
		err = unix.Mlockall(unix.MCL_CURRENT)
	}
	if err != nil {
		errs = append(errs, fmt.Errorf("keys: locking memory (mlockall): %w", err))
	}
	return errors.Join(errs...)
}
