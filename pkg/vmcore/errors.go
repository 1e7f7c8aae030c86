package vmcore

import (
	"errors"
	"fmt"
	"math"
)

// ErrNoVMCOREINFO is returned when the core has no VMCOREINFO note.
var ErrNoVMCOREINFO = errors.New("vmcore: no VMCOREINFO note")

// ErrNotRAM is returned (wrapped) when a physical address is in no PT_LOAD
// segment.
var ErrNotRAM = errors.New("not in any PT_LOAD segment")

// ErrNotMapped is returned (wrapped) when a virtual address has no present
// mapping in the dead kernel's page tables.
var ErrNotMapped = errors.New("not mapped")

// ErrNoMemMap is returned (wrapped) when the struct pages of a page frame
// cannot be read: its memory section is not present or the vmemmap is not
// mapped there.
var ErrNoMemMap = errors.New("no struct page")

// FormatError reports malformed input: an ELF core this package cannot
// read (truncated, inconsistent headers, or not an x86_64 or aarch64 vmcore), a
// VMCOREINFO note with a malformed line or value, or kernel data that no
// kernel writes (page tables pointing outside memory, an impossible
// mem_section geometry). Every such error of the package is or wraps a
// *FormatError, so that callers can tell a corrupt dump from an I/O error
// with errors.As.
//
// What is merely absent is not a FormatError: a core without VMCOREINFO
// (ErrNoVMCOREINFO), a VMCOREINFO without an entry a feature needs, an
// address outside the dump (ErrNotRAM) or unmapped (ErrNotMapped).
type FormatError struct {
	// Off is where the fault is: a file offset in the ELF core, a byte
	// offset in the VMCOREINFO text, or a physical address in the dead
	// kernel's memory; -1 when no one place is at fault.
	Off int64
	// Msg says what failed, e.g. "PT_LOAD 3: filesz 0x2000 > memsz 0x1000".
	Msg string
	// Err is the underlying error, if any (ErrNotRAM for a page table
	// entry that points outside the dump).
	Err error
}

func (e *FormatError) Error() string {
	if e.Err != nil {
		return e.Msg + ": " + e.Err.Error()
	}
	return e.Msg
}

// Unwrap returns Err, so that errors.Is sees the sentinel errors below a
// FormatError.
func (e *FormatError) Unwrap() error { return e.Err }

// formatError returns a *FormatError at off with a formatted message.
func formatError(off int64, format string, args ...any) error {
	return &FormatError{Off: off, Msg: fmt.Sprintf(format, args...)}
}

// offset converts an offset or address read from the input to
// FormatError.Off; values beyond int64 (only malformed inputs have them)
// are no one place: -1.
func offset(u uint64) int64 {
	if u > math.MaxInt64 {
		return -1
	}
	return int64(u)
}
