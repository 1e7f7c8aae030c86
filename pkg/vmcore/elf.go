package vmcore

import (
	"bufio"
	"bytes"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"io"
)

// The ELF core is read here rather than with debug/elf's NewFile: a vmcore
// with more than 65534 program headers says so with PN_XNUM (the real count
// is in section header 0), which NewFile does not follow, and NewFile would
// hold every program header and section of a file that may have a million
// PT_LOADs. The on-disk structures are debug/elf's (Header64, Prog64,
// Section64), read with encoding/binary.

// ELF sizes and limits used by /proc/vmcore. The sizes are constants for
// bounds arithmetic; TestELFSizes checks them against binary.Size.
const (
	elfPhdrSize    = 56               // binary.Size(elf.Prog64{})
	noteHeaderSize = 12               // binary.Size(noteHeader{})
	pnXNum         = 0xffff           // e_phnum when the count is in section header 0
	maxNoteBytes   = 64 << 20         // all PT_NOTE segments together
	maxSegments    = 1 << 20          // program headers
	vmcoreinfoName = "VMCOREINFO"     // name of the VMCOREINFO note
	coreNoteName   = "CORE"           // name of the NT_PRSTATUS notes
	phdrBufSize    = 64 * elfPhdrSize // program headers read at once
)

// noteHeader is Elf64_Nhdr, the header of one ELF note (debug/elf has no
// type for it). The name and then the descriptor follow, each padded to 4
// bytes.
type noteHeader struct {
	Namesz, Descsz, Type uint32
}

// parseELF reads the ELF header and program headers: the PT_LOAD segments
// into c.segs and the PT_NOTE segments into c.notes and c.noteList.
func (c *Core) parseELF() error {
	var h elf.Header64
	if err := c.readStruct(0, &h, "ELF header"); err != nil {
		return err
	}
	if err := checkHeader(&h); err != nil {
		return err
	}
	c.machine = elf.Machine(h.Machine)
	phnum, err := c.progCount(&h)
	if err != nil {
		return err
	}
	if h.Phoff > uint64(c.size) || phnum*elfPhdrSize > uint64(c.size)-h.Phoff {
		return formatError(offset(h.Phoff), "program headers: %d bytes at %#x: beyond end of file (%#x)", phnum*elfPhdrSize, h.Phoff, c.size)
	}
	progs := bufio.NewReaderSize(io.NewSectionReader(c.r, int64(h.Phoff), int64(phnum*elfPhdrSize)), phdrBufSize)
	for i := range phnum {
		var p elf.Prog64
		if err := binary.Read(progs, binary.LittleEndian, &p); err != nil {
			return fmt.Errorf("program header %d: %w", i, err)
		}
		at := int64(h.Phoff + i*elfPhdrSize)
		switch elf.ProgType(p.Type) {
		case elf.PT_LOAD:
			err = c.addLoad(i, at, &p)
		case elf.PT_NOTE:
			err = c.addNotes(i, at, &p)
		}
		if err != nil {
			return err
		}
	}
	if len(c.segs) == 0 {
		return formatError(-1, "no PT_LOAD segment")
	}
	return nil
}

// checkHeader accepts ELF64 little-endian ET_CORE files of x86_64 and
// aarch64. Its errors are at offset 0: the ELF header.
func checkHeader(h *elf.Header64) error {
	if string(h.Ident[:4]) != elf.ELFMAG {
		return formatError(0, "not an ELF file")
	}
	class, data := elf.Class(h.Ident[elf.EI_CLASS]), elf.Data(h.Ident[elf.EI_DATA])
	if class != elf.ELFCLASS64 || data != elf.ELFDATA2LSB {
		return formatError(0, "ELF class %d data %d: want ELF64 little-endian", class, data)
	}
	if t := elf.Type(h.Type); t != elf.ET_CORE {
		return formatError(0, "ELF type %d: not a core file", h.Type)
	}
	if m := elf.Machine(h.Machine); m != elf.EM_X86_64 && m != elf.EM_AARCH64 {
		return formatError(0, "ELF machine %d: only x86_64 (62) and aarch64 (183) are supported", h.Machine)
	}
	if h.Phentsize != elfPhdrSize {
		return formatError(0, "program header size %d, want %d", h.Phentsize, elfPhdrSize)
	}
	return nil
}

// progCount returns the number of program headers: e_phnum, or with
// PN_XNUM the sh_info of section header 0.
func (c *Core) progCount(h *elf.Header64) (uint64, error) {
	phnum := uint64(h.Phnum)
	if phnum == pnXNum {
		var sh elf.Section64
		if err := c.readStruct(h.Shoff, &sh, "section header 0 (PN_XNUM)"); err != nil {
			return 0, err
		}
		phnum = uint64(sh.Info)
	}
	if phnum == 0 || phnum > maxSegments || phnum*elfPhdrSize > uint64(c.size) {
		return 0, formatError(0, "%d program headers: out of range for a %d-byte file", phnum, c.size)
	}
	return phnum, nil
}

// addLoad checks PT_LOAD i (at file offset at) and adds it to c.segs
// unless it is empty.
func (c *Core) addLoad(i uint64, at int64, p *elf.Prog64) error {
	if p.Filesz > p.Memsz {
		return formatError(at, "PT_LOAD %d: filesz %#x > memsz %#x", i, p.Filesz, p.Memsz)
	}
	if p.Off > uint64(c.size) || p.Filesz > uint64(c.size)-p.Off {
		return formatError(at, "PT_LOAD %d: file range %#x+%#x beyond end of file (%#x)", i, p.Off, p.Filesz, c.size)
	}
	if p.Paddr+p.Memsz < p.Paddr {
		return formatError(at, "PT_LOAD %d: physical range %#x+%#x overflows", i, p.Paddr, p.Memsz)
	}
	if p.Memsz > 0 {
		c.segs = append(c.segs, Segment{PhysStart: p.Paddr, VirtStart: p.Vaddr, FileOffset: p.Off, FileSize: p.Filesz, MemSize: p.Memsz})
	}
	return nil
}

// addNotes reads PT_NOTE i (its header at file offset at) onto c.notes and
// parses its notes.
func (c *Core) addNotes(i uint64, at int64, p *elf.Prog64) error {
	if p.Off > uint64(c.size) || p.Filesz > uint64(c.size)-p.Off {
		return formatError(at, "PT_NOTE %d: file range %#x+%#x beyond end of file (%#x)", i, p.Off, p.Filesz, c.size)
	}
	if uint64(len(c.notes))+p.Filesz > maxNoteBytes {
		return formatError(at, "PT_NOTE segments larger than %d bytes", maxNoteBytes)
	}
	start := len(c.notes)
	c.notes = append(c.notes, make([]byte, p.Filesz)...)
	if err := c.readFull(c.notes[start:], p.Off); err != nil {
		return fmt.Errorf("PT_NOTE %d: %w", i, err)
	}
	if err := c.parseNotes(start, p.Off); err != nil {
		return fmt.Errorf("PT_NOTE %d: %w", i, err)
	}
	return nil
}

// parseNotes parses the notes in c.notes[start:], read from file offset
// fileOff.
func (c *Core) parseNotes(start int, fileOff uint64) error {
	b := c.notes[start:]
	pos := 0
	for len(b)-pos >= noteHeaderSize {
		var nh noteHeader
		if _, err := binary.Decode(b[pos:], binary.LittleEndian, &nh); err != nil {
			return fmt.Errorf("note at %#x: %w", pos, err)
		}
		if nh == (noteHeader{}) {
			break // zero padding after the last note
		}
		nameOff := pos + noteHeaderSize
		descOff := nameOff + align4(int(nh.Namesz))
		end := descOff + align4(int(nh.Descsz))
		if nh.Namesz > uint32(len(b)) || nh.Descsz > uint32(len(b)) || descOff+int(nh.Descsz) > len(b) {
			return formatError(offset(fileOff+uint64(pos)), "note at %#x (name %d bytes, desc %d bytes) runs past the segment (%d bytes)", pos, nh.Namesz, nh.Descsz, len(b))
		}
		name := string(bytes.TrimRight(b[nameOff:nameOff+int(nh.Namesz)], "\x00"))
		n := Note{Name: name, Type: nh.Type, Offset: start + descOff, Size: int(nh.Descsz)}
		c.noteList = append(c.noteList, n)
		c.useNote(n)
		pos = min(end, len(b))
	}
	return nil
}

// useNote counts NT_PRSTATUS notes and parses the first VMCOREINFO note.
func (c *Core) useNote(n Note) {
	switch {
	case n.Name == coreNoteName && elf.NType(n.Type) == elf.NT_PRSTATUS:
		c.nrCPUs++
	case n.Name == vmcoreinfoName && c.info == nil && c.infoErr == nil:
		c.infoOff, c.infoSize = n.Offset, n.Size
		c.info, c.infoErr = ParseVMCOREINFO(c.notes[n.Offset : n.Offset+n.Size])
		if c.infoErr != nil {
			c.infoErr = fmt.Errorf("vmcore: %w", c.infoErr)
		}
	}
}

func align4(n int) int { return (n + 3) &^ 3 }

// readStruct reads the fixed-size value v at off; what names v in errors.
func (c *Core) readStruct(off uint64, v any, what string) error {
	buf := make([]byte, binary.Size(v))
	if err := c.readFull(buf, off); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if _, err := binary.Decode(buf, binary.LittleEndian, v); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// readFull reads len(buf) bytes at off; a range beyond the file's size is
// a FormatError, a short read io.ErrUnexpectedEOF.
func (c *Core) readFull(buf []byte, off uint64) error {
	if off > uint64(c.size) || uint64(len(buf)) > uint64(c.size)-off {
		return formatError(offset(off), "%d bytes at %#x: beyond end of file (%#x)", len(buf), off, c.size)
	}
	n, err := c.r.ReadAt(buf, int64(off))
	if n == len(buf) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}
