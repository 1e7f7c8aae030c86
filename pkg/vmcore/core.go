package vmcore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
)

// ELF constants used by /proc/vmcore.
const (
	elfHeaderSize  = 64
	elfPhdrSize    = 56
	elfShdrSize    = 64
	etCore         = 4
	emX86_64       = 62
	ptLoad         = 1
	ptNote         = 4
	pnXNum         = 0xffff
	ntPRStatus     = 1
	maxNoteBytes   = 64 << 20 // all PT_NOTE segments together
	maxSegments    = 1 << 20
	vmcoreinfoName = "VMCOREINFO"
)

// ErrNoVMCOREINFO is returned when the core has no VMCOREINFO note.
var ErrNoVMCOREINFO = errors.New("vmcore: no VMCOREINFO note")

// Segment is one PT_LOAD program header: a range of physical memory.
// Bytes [PhysStart, PhysStart+FileSize) are stored in the file at
// FileOffset; bytes [PhysStart+FileSize, PhysStart+MemSize) read as zeros.
type Segment struct {
	PhysStart  uint64 // p_paddr
	VirtStart  uint64 // p_vaddr (a kernel virtual address, informational)
	FileOffset uint64 // p_offset
	FileSize   uint64 // p_filesz
	MemSize    uint64 // p_memsz (>= FileSize)
}

// PhysEnd returns the end (exclusive) of the segment's physical range.
func (s Segment) PhysEnd() uint64 { return s.PhysStart + s.MemSize }

// Note is one ELF note of the PT_NOTE segments.
type Note struct {
	Name   string
	Type   uint32
	Offset int // offset of the descriptor in Core.NoteData()
	Size   int // descriptor size
}

// Core is an opened ELF vmcore. Its methods are safe for concurrent use.
type Core struct {
	r        io.ReaderAt
	size     int64
	closer   io.Closer
	segs     []Segment // PT_LOAD in file order
	byPhys   []Segment // sorted by PhysStart
	ram      []pfnRange
	notes    []byte
	noteList []Note
	nrCPUs   int
	info     *VMCOREINFO
	infoErr  error
	infoOff  int
	infoSize int
	pageSize int
}

// pfnRange is a half-open range of page frame numbers.
type pfnRange struct{ start, end uint64 }

// Open opens an ELF vmcore file such as /proc/vmcore.
func Open(path string) (*Core, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("vmcore: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("vmcore: %w", err)
	}
	c, err := NewCore(f, fi.Size())
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	c.closer = f
	return c, nil
}

// Close closes the file opened by Open; for NewCore it does nothing.
func (c *Core) Close() error {
	if c.closer == nil {
		return nil
	}
	return c.closer.Close()
}

// NewCore parses an ELF64 little-endian ET_CORE x86_64 vmcore of the given
// size read through r. Malformed headers are errors; a missing or malformed
// VMCOREINFO note is not (see Core.VMCOREINFO).
func NewCore(r io.ReaderAt, size int64) (*Core, error) {
	c := &Core{r: r, size: size}
	var eh [elfHeaderSize]byte
	if err := c.readFull(eh[:], 0); err != nil {
		return nil, fmt.Errorf("vmcore: ELF header: %w", err)
	}
	if string(eh[:4]) != "\x7fELF" {
		return nil, errors.New("vmcore: not an ELF file")
	}
	if eh[4] != 2 || eh[5] != 1 {
		return nil, fmt.Errorf("vmcore: ELF class %d data %d: want ELF64 little-endian", eh[4], eh[5])
	}
	le := binary.LittleEndian
	if t := le.Uint16(eh[16:]); t != etCore {
		return nil, fmt.Errorf("vmcore: ELF type %d: not a core file", t)
	}
	if m := le.Uint16(eh[18:]); m != emX86_64 {
		return nil, fmt.Errorf("vmcore: ELF machine %d: only x86_64 (62) is supported", m)
	}
	phoff := le.Uint64(eh[32:])
	shoff := le.Uint64(eh[40:])
	phentsize := le.Uint16(eh[54:])
	phnum := uint64(le.Uint16(eh[56:]))
	if phentsize != elfPhdrSize {
		return nil, fmt.Errorf("vmcore: program header size %d, want %d", phentsize, elfPhdrSize)
	}
	if phnum == pnXNum { // real count in section header 0's sh_info
		var sh [elfShdrSize]byte
		if err := c.readFull(sh[:], shoff); err != nil {
			return nil, fmt.Errorf("vmcore: section header 0 (PN_XNUM): %w", err)
		}
		phnum = uint64(le.Uint32(sh[44:]))
	}
	if phnum == 0 || phnum > maxSegments || phnum*elfPhdrSize > uint64(size) {
		return nil, fmt.Errorf("vmcore: %d program headers: out of range for a %d-byte file", phnum, size)
	}
	ph := make([]byte, phnum*elfPhdrSize)
	if err := c.readFull(ph, phoff); err != nil {
		return nil, fmt.Errorf("vmcore: program headers: %w", err)
	}
	for i := uint64(0); i < phnum; i++ {
		p := ph[i*elfPhdrSize:]
		typ := le.Uint32(p)
		off, vaddr, paddr := le.Uint64(p[8:]), le.Uint64(p[16:]), le.Uint64(p[24:])
		filesz, memsz := le.Uint64(p[32:]), le.Uint64(p[40:])
		switch typ {
		case ptLoad:
			if filesz > memsz {
				return nil, fmt.Errorf("vmcore: PT_LOAD %d: filesz %#x > memsz %#x", i, filesz, memsz)
			}
			if off > uint64(size) || filesz > uint64(size)-off {
				return nil, fmt.Errorf("vmcore: PT_LOAD %d: file range %#x+%#x beyond end of file (%#x)", i, off, filesz, size)
			}
			if paddr+memsz < paddr {
				return nil, fmt.Errorf("vmcore: PT_LOAD %d: physical range %#x+%#x overflows", i, paddr, memsz)
			}
			if memsz == 0 {
				continue
			}
			c.segs = append(c.segs, Segment{PhysStart: paddr, VirtStart: vaddr, FileOffset: off, FileSize: filesz, MemSize: memsz})
		case ptNote:
			if off > uint64(size) || filesz > uint64(size)-off {
				return nil, fmt.Errorf("vmcore: PT_NOTE %d: file range %#x+%#x beyond end of file (%#x)", i, off, filesz, size)
			}
			if uint64(len(c.notes))+filesz > maxNoteBytes {
				return nil, fmt.Errorf("vmcore: PT_NOTE segments larger than %d bytes", maxNoteBytes)
			}
			start := len(c.notes)
			c.notes = append(c.notes, make([]byte, filesz)...)
			if err := c.readFull(c.notes[start:], off); err != nil {
				return nil, fmt.Errorf("vmcore: PT_NOTE %d: %w", i, err)
			}
			if err := c.parseNotes(start); err != nil {
				return nil, fmt.Errorf("vmcore: PT_NOTE %d: %w", i, err)
			}
		}
	}
	if len(c.segs) == 0 {
		return nil, errors.New("vmcore: no PT_LOAD segment")
	}
	c.byPhys = append([]Segment(nil), c.segs...)
	sort.SliceStable(c.byPhys, func(i, j int) bool { return c.byPhys[i].PhysStart < c.byPhys[j].PhysStart })
	c.pageSize = 4096
	if c.info == nil && c.infoErr == nil {
		c.infoErr = ErrNoVMCOREINFO
	}
	if c.info != nil {
		if ps, ok := c.info.PageSize(); ok {
			if ps&(ps-1) != 0 || ps < 512 {
				c.infoErr = fmt.Errorf("vmcore: PAGESIZE %d is not a power of two >= 512", ps)
				c.info = nil
			} else {
				c.pageSize = ps
			}
		}
	}
	c.ram = ramRanges(c.byPhys, uint64(c.pageSize))
	return c, nil
}

// ramRanges merges the segments' page ranges (a page is RAM when any byte of
// it is in a PT_LOAD).
func ramRanges(byPhys []Segment, pageSize uint64) []pfnRange {
	var out []pfnRange
	for _, s := range byPhys {
		r := pfnRange{s.PhysStart / pageSize, (s.PhysEnd() + pageSize - 1) / pageSize}
		if n := len(out); n > 0 && r.start <= out[n-1].end {
			out[n-1].end = max(out[n-1].end, r.end)
			continue
		}
		out = append(out, r)
	}
	return out
}

// parseNotes parses the notes in c.notes[start:].
func (c *Core) parseNotes(start int) error {
	le := binary.LittleEndian
	b := c.notes[start:]
	pos := 0
	for len(b)-pos >= 12 {
		namesz, descsz, typ := le.Uint32(b[pos:]), le.Uint32(b[pos+4:]), le.Uint32(b[pos+8:])
		if namesz == 0 && descsz == 0 && typ == 0 {
			break // zero padding after the last note
		}
		nameOff := pos + 12
		descOff := nameOff + align4(int(namesz))
		end := descOff + align4(int(descsz))
		if namesz > uint32(len(b)) || descsz > uint32(len(b)) || descOff+int(descsz) > len(b) {
			return fmt.Errorf("note at %#x (name %d bytes, desc %d bytes) runs past the segment (%d bytes)", pos, namesz, descsz, len(b))
		}
		name := string(b[nameOff : nameOff+int(namesz)])
		for len(name) > 0 && name[len(name)-1] == 0 {
			name = name[:len(name)-1]
		}
		n := Note{Name: name, Type: typ, Offset: start + descOff, Size: int(descsz)}
		c.noteList = append(c.noteList, n)
		switch {
		case name == "CORE" && typ == ntPRStatus:
			c.nrCPUs++
		case name == vmcoreinfoName && c.info == nil && c.infoErr == nil:
			c.infoOff, c.infoSize = n.Offset, n.Size
			c.info, c.infoErr = ParseVMCOREINFO(c.notes[n.Offset : n.Offset+n.Size])
			if c.infoErr != nil {
				c.infoErr = fmt.Errorf("vmcore: %w", c.infoErr)
			}
		}
		pos = min(end, len(b))
	}
	return nil
}

func align4(n int) int { return (n + 3) &^ 3 }

func (c *Core) readFull(buf []byte, off uint64) error {
	if off > uint64(c.size) || uint64(len(buf)) > uint64(c.size)-off {
		return fmt.Errorf("%d bytes at %#x: beyond end of file (%#x)", len(buf), off, c.size)
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

// Segments returns the PT_LOAD segments in file order.
func (c *Core) Segments() []Segment { return append([]Segment(nil), c.segs...) }

// NoteData returns the bytes of all PT_NOTE segments, concatenated (for a
// kdump-compressed writer, which stores them whole).
func (c *Core) NoteData() []byte { return c.notes }

// Notes returns the notes found in NoteData.
func (c *Core) Notes() []Note { return append([]Note(nil), c.noteList...) }

// NrCPUs returns the number of NT_PRSTATUS notes (CPUs that saved state).
func (c *Core) NrCPUs() int { return c.nrCPUs }

// VMCOREINFO returns the parsed VMCOREINFO note, or ErrNoVMCOREINFO, or the
// error that parsing the note gave.
func (c *Core) VMCOREINFO() (*VMCOREINFO, error) { return c.info, c.infoErr }

// VMCOREINFOLocation returns the offset and size of the VMCOREINFO note's
// payload within NoteData (0, 0 when there is none).
func (c *Core) VMCOREINFOLocation() (offset, size int) { return c.infoOff, c.infoSize }

// PageSize returns the page size: PAGESIZE from VMCOREINFO, else 4096.
func (c *Core) PageSize() int { return c.pageSize }

// MaxPFN returns one more than the highest page frame number in a PT_LOAD.
func (c *Core) MaxPFN() uint64 { return c.ram[len(c.ram)-1].end }

// IsRAM reports whether any byte of page frame pfn is in a PT_LOAD segment.
func (c *Core) IsRAM(pfn uint64) bool {
	i := sort.Search(len(c.ram), func(i int) bool { return c.ram[i].end > pfn })
	return i < len(c.ram) && c.ram[i].start <= pfn
}
