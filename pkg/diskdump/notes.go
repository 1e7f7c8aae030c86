package diskdump

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// ntPRSTATUS is the ELF note type of a CPU's register state.
const ntPRSTATUS = 1

// NoteInfo summarises an ELF64 note segment.
type NoteInfo struct {
	NrCPUs int // NT_PRSTATUS notes named "CORE"
	// VMCOREINFOOffset and VMCOREINFOSize locate the payload of the
	// "VMCOREINFO" note within the segment (size 0: none).
	VMCOREINFOOffset, VMCOREINFOSize int64
}

// ParseNotes walks an ELF64 PT_NOTE segment (4-byte aligned name and
// descriptor, as written by the kernel). Trailing zero padding is accepted.
func ParseNotes(notes []byte) (NoteInfo, error) {
	var ni NoteInfo
	le := binary.LittleEndian
	for off := 0; off+12 <= len(notes); {
		namesz := int64(le.Uint32(notes[off:]))
		descsz := int64(le.Uint32(notes[off+4:]))
		typ := le.Uint32(notes[off+8:])
		if namesz == 0 && descsz == 0 && typ == 0 {
			break // padding
		}
		nameOff := int64(off) + 12
		descOff := nameOff + (namesz+3)&^3
		end := descOff + (descsz+3)&^3
		if descOff+descsz > int64(len(notes)) || namesz > int64(len(notes)) {
			return ni, fmt.Errorf("%w: note at %d overruns %d bytes", ErrFormat, off, len(notes))
		}
		name := string(bytes.TrimRight(notes[nameOff:nameOff+namesz], "\x00"))
		switch {
		case name == "CORE" && typ == ntPRSTATUS:
			ni.NrCPUs++
		case name == "VMCOREINFO":
			ni.VMCOREINFOOffset, ni.VMCOREINFOSize = descOff, descsz
		}
		off = int(min(end, int64(len(notes))))
	}
	return ni, nil
}
