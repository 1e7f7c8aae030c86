package vmcoretest

import "encoding/binary"

// Synthetic returns an ELF vmcore with the VMCOREINFO note info and one
// PT_LOAD holding mem at physical address 0: enough for the collector,
// which without the kernel's symbols leaves out only zero pages. The page
// data starts at file offset SyntheticDataOffset.
func Synthetic(info string, mem []byte) []byte {
	return SyntheticSegments(info, Segment{Mem: mem})
}

// Segment is one PT_LOAD of SyntheticSegments: Mem at physical address Phys.
type Segment struct {
	Phys uint64
	Mem  []byte
}

// SyntheticSegments is Synthetic with several PT_LOADs, so that the memory
// has holes (pfns that are not RAM). The segments' data follow each other
// from file offset SyntheticDataOffset, in the order given.
func SyntheticSegments(info string, segs ...Segment) []byte {
	le := binary.LittleEndian
	note := make([]byte, 12, 12+12+len(info)+3)
	le.PutUint32(note[0:], uint32(len("VMCOREINFO")+1))
	le.PutUint32(note[4:], uint32(len(info)))
	note = append(note, "VMCOREINFO\x00\x00"...)
	note = append(note, info...)
	note = append(note, make([]byte, -len(info)&3)...)
	const phoff = 64
	size := SyntheticDataOffset
	for _, s := range segs {
		size += len(s.Mem)
	}
	b := make([]byte, size)
	copy(b, "\x7fELF\x02\x01\x01")
	le.PutUint16(b[16:], 4)  // ET_CORE
	le.PutUint16(b[18:], 62) // EM_X86_64
	le.PutUint32(b[20:], 1)
	le.PutUint64(b[32:], phoff)
	le.PutUint16(b[52:], 64)
	le.PutUint16(b[54:], 56)
	le.PutUint16(b[56:], uint16(1+len(segs)))
	noteOff := phoff + (1+len(segs))*56
	put := func(i int, typ uint32, off int, phys uint64, size int) {
		p := b[phoff+i*56:]
		le.PutUint32(p[0:], typ)
		le.PutUint64(p[8:], uint64(off))
		le.PutUint64(p[24:], phys)
		le.PutUint64(p[32:], uint64(size))
		le.PutUint64(p[40:], uint64(size))
	}
	put(0, 4, noteOff, 0, len(note))
	off := SyntheticDataOffset
	for i, s := range segs {
		put(1+i, 1, off, s.Phys, len(s.Mem))
		copy(b[off:], s.Mem)
		off += len(s.Mem)
	}
	copy(b[noteOff:], note)
	return b
}

// SyntheticDataOffset is where Synthetic puts the memory in the file.
const SyntheticDataOffset = 4096
