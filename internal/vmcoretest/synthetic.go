package vmcoretest

import "encoding/binary"

// Synthetic returns an ELF vmcore with the VMCOREINFO note info and one
// PT_LOAD holding mem at physical address 0: enough for the collector,
// which without the kernel's symbols leaves out only zero pages. The page
// data starts at file offset SyntheticDataOffset.
func Synthetic(info string, mem []byte) []byte {
	le := binary.LittleEndian
	note := make([]byte, 12, 12+12+len(info)+3)
	le.PutUint32(note[0:], uint32(len("VMCOREINFO")+1))
	le.PutUint32(note[4:], uint32(len(info)))
	note = append(note, "VMCOREINFO\x00\x00"...)
	note = append(note, info...)
	note = append(note, make([]byte, -len(info)&3)...)
	const phoff, memOff = 64, SyntheticDataOffset
	b := make([]byte, memOff+len(mem))
	copy(b, "\x7fELF\x02\x01\x01")
	le.PutUint16(b[16:], 4)  // ET_CORE
	le.PutUint16(b[18:], 62) // EM_X86_64
	le.PutUint32(b[20:], 1)
	le.PutUint64(b[32:], phoff)
	le.PutUint16(b[52:], 64)
	le.PutUint16(b[54:], 56)
	le.PutUint16(b[56:], 2)
	noteOff := phoff + 2*56
	for i, ph := range []struct {
		typ       uint32
		off, size int
	}{{4, noteOff, len(note)}, {1, memOff, len(mem)}} {
		p := b[phoff+i*56:]
		le.PutUint32(p[0:], ph.typ)
		le.PutUint64(p[8:], uint64(ph.off))
		le.PutUint64(p[32:], uint64(ph.size))
		le.PutUint64(p[40:], uint64(ph.size))
	}
	copy(b[noteOff:], note)
	copy(b[memOff:], mem)
	return b
}

// SyntheticDataOffset is where Synthetic puts the memory in the file.
const SyntheticDataOffset = 4096
