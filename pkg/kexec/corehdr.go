package kexec

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
)

// Range is a range of physical memory, [Start, Start+Size).
type Range struct {
	Start, Size uint64
}

// End is the first address past r.
func (r Range) End() uint64 { return r.Start + r.Size }

func (r Range) String() string { return fmt.Sprintf("%#x-%#x", r.Start, r.End()-1) }

// minus returns the parts of r outside cut.
func (r Range) minus(cut Range) []Range {
	if cut.End() <= r.Start || cut.Start >= r.End() {
		return []Range{r}
	}
	var out []Range
	if cut.Start > r.Start {
		out = append(out, Range{r.Start, cut.Start - r.Start})
	}
	if cut.End() < r.End() {
		out = append(out, Range{cut.End(), r.End() - cut.End()})
	}
	return out
}

// Load is one PT_LOAD of the crash kernel's ELF core header: physical memory
// of the dead kernel and the virtual address it was mapped at.
type Load struct {
	Range
	Virt uint64
}

// CoreLayout is what /proc/vmcore of the crash kernel is made of: the notes
// of each CPU (filled in by the kernel at the panic) and VMCOREINFO, in the
// dead kernel's memory, and the memory ranges to expose.
type CoreLayout struct {
	Machine elf.Machine
	// Notes are the physical ranges of the per-CPU crash notes and of the
	// VMCOREINFO note.
	Notes []Range
	// Loads are the kernel image mapping first (as the kernel's own
	// kexec_file_load header has it), then the RAM ranges.
	Loads []Load
}

const (
	ehdrSize = 64 // sizeof(Elf64_Ehdr)
	phdrSize = 56 // sizeof(Elf64_Phdr)
)

// CoreHeader builds the ELF core header a crash kernel finds through
// elfcorehdr: the same header kexec_file_load builds in the kernel
// (crash_prepare_elf64_headers) and kexec-tools builds for kexec_load. The
// crash kernel reads it with p_offset taken as the physical address.
//
// Written here rather than with debug/elf, which only reads.
func CoreHeader(l CoreLayout) ([]byte, error) {
	if len(l.Loads) == 0 {
		return nil, errors.New("kexec: ELF core header: no memory to expose")
	}
	n := len(l.Notes) + len(l.Loads)
	if n > 0xffff {
		return nil, fmt.Errorf("kexec: ELF core header: %d program headers, more than ELF's 65535", n)
	}
	var b bytes.Buffer
	ident := [elf.EI_NIDENT]byte{0x7f, 'E', 'L', 'F', byte(elf.ELFCLASS64), byte(elf.ELFDATA2LSB), byte(elf.EV_CURRENT), byte(elf.ELFOSABI_NONE)}
	hdr := elf.Header64{
		Ident:     ident,
		Type:      uint16(elf.ET_CORE),
		Machine:   uint16(l.Machine),
		Version:   uint32(elf.EV_CURRENT),
		Phoff:     ehdrSize,
		Ehsize:    ehdrSize,
		Phentsize: phdrSize,
		Phnum:     uint16(n),
	}
	put := func(v any) {
		// A bytes.Buffer does not fail.
		_ = binary.Write(&b, binary.LittleEndian, v)
	}
	put(hdr)
	for _, r := range l.Notes {
		put(elf.Prog64{Type: uint32(elf.PT_NOTE), Off: r.Start, Paddr: r.Start, Filesz: r.Size, Memsz: r.Size})
	}
	for _, ld := range l.Loads {
		put(elf.Prog64{
			Type: uint32(elf.PT_LOAD), Flags: uint32(elf.PF_R | elf.PF_W | elf.PF_X),
			Off: ld.Start, Paddr: ld.Start, Vaddr: ld.Virt, Filesz: ld.Size, Memsz: ld.Size,
		})
	}
	return b.Bytes(), nil
}
