package vmcore

import (
	"debug/elf"
	"fmt"
	"io"
	"os"
	"sort"
)

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
	machine  elf.Machine // e_machine: whose page tables and registers
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
	mapper   *mapper // OpenMapped's; nil for Open and NewCore
}

// pfnRange is a half-open range of page frame numbers.
type pfnRange struct{ start, end uint64 }

// Open opens an ELF vmcore file such as /proc/vmcore, read with pread.
func Open(path string) (*Core, error) { return open(path, false) }

func open(path string, mapped bool) (*Core, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("vmcore: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("vmcore: %w", err)
	}
	var m *mapper
	var r io.ReaderAt = f
	if mapped {
		if m = newMapper(f, fi.Size()); m != nil {
			r = m
		}
	}
	c, err := NewCore(r, fi.Size())
	if err != nil {
		m.close()
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	c.mapper = m
	c.closer = f
	if m != nil {
		c.closer = closeBoth{m, f}
	}
	return c, nil
}

// Close closes the file opened by Open or OpenMapped; for NewCore it does nothing.
func (c *Core) Close() error {
	if c.closer == nil {
		return nil
	}
	return c.closer.Close()
}

// NewCore parses an ELF64 little-endian ET_CORE x86_64 or aarch64 vmcore of the given
// size read through r. Malformed headers are errors (wrapping a
// *FormatError); a missing or malformed VMCOREINFO note is not (see
// Core.VMCOREINFO).
func NewCore(r io.ReaderAt, size int64) (*Core, error) {
	c := &Core{r: r, size: size}
	if err := c.parseELF(); err != nil {
		return nil, fmt.Errorf("vmcore: %w", err)
	}
	c.byPhys = append([]Segment(nil), c.segs...)
	sort.SliceStable(c.byPhys, func(i, j int) bool { return c.byPhys[i].PhysStart < c.byPhys[j].PhysStart })
	c.setPageSize()
	c.ram = ramRanges(c.byPhys, uint64(c.pageSize))
	return c, nil
}

// setPageSize takes the page size from VMCOREINFO (else 4096); a PAGESIZE
// that is not a power of two makes the whole VMCOREINFO unusable.
func (c *Core) setPageSize() {
	c.pageSize = 4096
	if c.info == nil && c.infoErr == nil {
		c.infoErr = ErrNoVMCOREINFO
	}
	if c.info == nil {
		return
	}
	if ps, ok := c.info.PageSize(); ok {
		if ps&(ps-1) != 0 || ps < 512 {
			c.infoErr = fmt.Errorf("vmcore: %w", formatError(-1, "PAGESIZE %d is not a power of two >= 512", ps))
			c.info = nil
		} else {
			c.pageSize = ps
		}
	}
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

// Segments returns the PT_LOAD segments in file order.
func (c *Core) Segments() []Segment { return append([]Segment(nil), c.segs...) }

// NoteData returns the bytes of all PT_NOTE segments, concatenated (for a
// kdump-compressed writer, which stores them whole).
func (c *Core) NoteData() []byte { return c.notes }

// Notes returns the notes found in NoteData.
func (c *Core) Notes() []Note { return append([]Note(nil), c.noteList...) }

// Machine returns the dead kernel's machine, from the ELF header:
// elf.EM_X86_64 or elf.EM_AARCH64.
func (c *Core) Machine() elf.Machine { return c.machine }

// RAMPages returns the number of page frames in PT_LOAD segments, each
// counted once (arm64's and x86_64's cores map the kernel image a second
// time, at its own virtual address).
func (c *Core) RAMPages() uint64 {
	var n uint64
	for _, r := range c.ram {
		n += r.end - r.start
	}
	return n
}

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
