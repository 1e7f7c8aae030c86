package diskdump

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/ukdump/ukdump/internal/zeropage"
)

// ELF layout constants.
const (
	elfHeaderSize = 64
	elfPhdrSize   = 56
	// elfIncomplete is makedumpfile's DUMP_ELF_INCOMPLETE e_flags bit.
	elfIncomplete = 0x1
	// maxPhnum keeps e_phnum below PN_XNUM (0xffff).
	maxPhnum = 0xfff0
)

// ELFOptions tunes an ELFWriter. The zero value is valid.
type ELFOptions struct {
	// Machine is e_machine. Default: derived from Header.UTS.Machine
	// (x86_64, aarch64, ...).
	Machine elf.Machine
	// PageOffset is added to the physical address to form p_vaddr (the
	// kernel direct map base, e.g. 0xffff888000000000 on x86_64 without
	// KASLR). Default 0: p_vaddr = 0.
	PageOffset uint64
	// MinHole is the shortest run of excluded pages left out of the file
	// (shorter runs are stored as zero pages). Default 256, as makedumpfile.
	MinHole uint64
	// MaxSegments bounds the number of PT_LOAD headers; MinHole is doubled
	// until the dump fits. Default and maximum 65520.
	MaxSegments int
	// ChunkPFNs and DataBuffer: as in Options.
	ChunkPFNs  uint64
	DataBuffer int
}

// ELFWriter writes an ELF64 core (ET_CORE) holding the notes and the
// dumpable pages, with PT_LOAD segments split around excluded pages: the
// makedumpfile -E form, where excluded pages read as zeros (p_memsz >
// p_filesz) or are stored as zero pages. The call sequence is that of
// Writer: NewELFWriter, SetBitmaps, WritePage for each dumpable pfn in
// order, Close (or Abort). Not safe for concurrent use.
type ELFWriter struct {
	w       io.WriterAt
	h       Header
	opt     ELFOptions
	machine elf.Machine
	nseg    int
	dataOff int64
	cur     *bitCursor  // dumpable pfns, for NextPFN
	segs    *segScanner // segments, scanned ahead of the data
	seg     segment     // segment holding the current data, if any
	inSeg   bool
	segOff  int64 // file offset of seg's data
	phdrs   *atWriter
	nphdr   int
	data    *atWriter
	zero    []byte
	next    uint64
	stats   Stats
	state   int
	err     error
}

// NewELFWriter validates h and prepares an ELF writer; nothing is written
// before SetBitmaps.
func NewELFWriter(w io.WriterAt, h Header, opt ELFOptions) (*ELFWriter, error) {
	if err := h.validate(); err != nil {
		return nil, err
	}
	if opt.MinHole == 0 {
		opt.MinHole = 256
	}
	if opt.MaxSegments <= 0 || opt.MaxSegments > maxPhnum-1 {
		opt.MaxSegments = maxPhnum - 1
	}
	if opt.ChunkPFNs == 0 {
		opt.ChunkPFNs = defaultChunkPFNs
	}
	if opt.DataBuffer <= 0 {
		opt.DataBuffer = defaultDataBuffer
	}
	m := opt.Machine
	if m == 0 {
		var ok bool
		if m, ok = h.UTS.ELFMachine(); !ok {
			return nil, fmt.Errorf("diskdump: unknown machine %q: set ELFOptions.Machine", h.UTS.Machine)
		}
	}
	h.Notes = bytes.Clone(h.Notes)
	return &ELFWriter{w: w, h: h, opt: opt, machine: m}, nil
}

// SetBitmaps scans the bitmaps to lay out the segments, then writes the
// ELF header, the program headers' note entry and the notes. The PT_LOAD
// headers are written as their segments are reached.
func (e *ELFWriter) SetBitmaps(src BitmapSource) error {
	if e.state != stateHeader {
		return errors.New("diskdump: SetBitmaps called twice or after Close")
	}
	var n int
	for {
		var err error
		n, err = countSegments(src, e.h.MaxPFN, e.opt.ChunkPFNs, e.opt.MinHole)
		if err != nil {
			return err
		}
		if n <= e.opt.MaxSegments {
			break
		}
		e.opt.MinHole *= 2
	}
	e.nseg = n
	cur := newBitCursor(src, e.h.MaxPFN, e.opt.ChunkPFNs)
	var nd uint64
	for start := uint64(0); start < e.h.MaxPFN; start += cur.chunk {
		if err := cur.load(start); err != nil {
			return err
		}
		nd += popcount(cur.dump[:cur.span()])
	}
	e.stats.Dumpable = nd
	ps := int64(e.h.PageSize)
	phoff := int64(elfHeaderSize)
	noteOff := phoff + int64(1+n)*elfPhdrSize
	e.dataOff = divUp(noteOff+int64(len(e.h.Notes)), ps) * ps
	if err := e.writeEhdr(true); err != nil {
		return err
	}
	// PT_NOTE, then the notes.
	le := binary.LittleEndian
	var ph [elfPhdrSize]byte
	le.PutUint32(ph[0:], uint32(elf.PT_NOTE))
	le.PutUint64(ph[8:], uint64(noteOff))
	le.PutUint64(ph[32:], uint64(len(e.h.Notes)))
	le.PutUint64(ph[40:], uint64(len(e.h.Notes)))
	if _, err := e.w.WriteAt(ph[:], phoff); err != nil {
		return fmt.Errorf("diskdump: write program header: %w", err)
	}
	// Zero the PT_LOAD table (unwritten entries read as PT_NULL) and the
	// padding after the notes.
	blk := make([]byte, e.dataOff-(phoff+elfPhdrSize))
	copy(blk[noteOff-(phoff+elfPhdrSize):], e.h.Notes)
	if _, err := e.w.WriteAt(blk, phoff+elfPhdrSize); err != nil {
		return fmt.Errorf("diskdump: write notes: %w", err)
	}
	e.phdrs = newAtWriter(e.w, phoff+elfPhdrSize, 64*elfPhdrSize)
	e.data = newAtWriter(e.w, e.dataOff, e.opt.DataBuffer)
	e.segs = newSegScanner(src, e.h.MaxPFN, e.opt.ChunkPFNs, e.opt.MinHole)
	e.cur = newBitCursor(src, e.h.MaxPFN, e.opt.ChunkPFNs)
	e.zero = make([]byte, e.h.PageSize)
	next, err := e.cur.nextDumpable(0)
	if err != nil {
		return err
	}
	e.next = next
	e.state = stateBitmaps
	return nil
}

func (e *ELFWriter) writeEhdr(incomplete bool) error {
	le := binary.LittleEndian
	var b [elfHeaderSize]byte
	copy(b[:], elf.ELFMAG)
	b[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	b[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	b[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	le.PutUint16(b[16:], uint16(elf.ET_CORE))
	le.PutUint16(b[18:], uint16(e.machine))
	le.PutUint32(b[20:], uint32(elf.EV_CURRENT))
	le.PutUint64(b[32:], elfHeaderSize) // e_phoff
	if incomplete {
		le.PutUint32(b[48:], elfIncomplete)
	}
	le.PutUint16(b[52:], elfHeaderSize)
	le.PutUint16(b[54:], elfPhdrSize)
	le.PutUint16(b[56:], uint16(1+e.nseg))
	if _, err := e.w.WriteAt(b[:], 0); err != nil {
		return fmt.Errorf("diskdump: write ELF header: %w", err)
	}
	return nil
}

// NextPFN returns the next pfn WritePage expects, and false once every
// dumpable page has been written.
func (e *ELFWriter) NextPFN() (uint64, bool) {
	if e.state != stateBitmaps || e.next >= e.h.MaxPFN {
		return 0, false
	}
	return e.next, true
}

// NextPFNAfter returns the dumpable pfn after NextPFN's; see
// Writer.NextPFNAfter.
func (e *ELFWriter) NextPFNAfter() (uint64, bool) {
	if e.state != stateBitmaps || e.err != nil || e.next >= e.h.MaxPFN {
		return 0, false
	}
	return pfnAfter(e.cur, e.next, e.h.MaxPFN)
}

// Stats returns the counters so far (RawPages counts stored non-zero pages).
func (e *ELFWriter) Stats() Stats { return e.stats }

// nextSegment moves to the next segment and writes its program header.
func (e *ELFWriter) nextSegment() (bool, error) {
	seg, ok, err := e.segs.next()
	if err != nil || !ok {
		return false, err
	}
	if e.nphdr >= e.nseg {
		return false, fmt.Errorf("diskdump: bitmap source changed: more than %d segments", e.nseg)
	}
	off := e.data.pos()
	if err := e.phdrs.write(e.phdr(seg, off)); err != nil {
		return false, fmt.Errorf("diskdump: write program header: %w", err)
	}
	e.nphdr++
	e.seg, e.inSeg, e.segOff = seg, true, off
	return true, nil
}

// phdr encodes the PT_LOAD header of seg with its data at off.
func (e *ELFWriter) phdr(seg segment, off int64) []byte {
	ps := uint64(e.h.PageSize)
	le := binary.LittleEndian
	ph := make([]byte, elfPhdrSize)
	le.PutUint32(ph[0:], uint32(elf.PT_LOAD))
	le.PutUint32(ph[4:], uint32(elf.PF_R|elf.PF_W|elf.PF_X))
	if seg.file > 0 {
		le.PutUint64(ph[8:], uint64(off))
	}
	paddr := seg.start * ps
	if e.opt.PageOffset != 0 {
		le.PutUint64(ph[16:], e.opt.PageOffset+paddr)
	}
	le.PutUint64(ph[24:], paddr)
	le.PutUint64(ph[32:], seg.file*ps)
	le.PutUint64(ph[40:], seg.mem*ps)
	return ph
}

// WritePage stores the page of pfn, which must be the next dumpable pfn.
func (e *ELFWriter) WritePage(pfn uint64, data []byte) error {
	if e.state != stateBitmaps {
		return errors.New("diskdump: WritePage before SetBitmaps or after Close")
	}
	if e.err != nil {
		return e.err
	}
	if len(data) != e.h.PageSize {
		return fmt.Errorf("diskdump: page %#x: %d bytes, want %d", pfn, len(data), e.h.PageSize)
	}
	if e.next >= e.h.MaxPFN || pfn != e.next {
		return fmt.Errorf("diskdump: page %#x written, next dumpable pfn is %#x", pfn, e.next)
	}
	ps := int64(e.h.PageSize)
	for !e.inSeg || pfn >= e.seg.start+e.seg.file {
		ok, err := e.nextSegment()
		if err == nil && !ok {
			err = fmt.Errorf("diskdump: page %#x: no segment holds it", pfn)
		}
		if err != nil {
			e.err = err
			return err
		}
	}
	target := e.segOff + int64(pfn-e.seg.start)*ps
	for e.data.pos() < target { // short excluded run: zero pages
		if err := e.data.write(e.zero); err != nil {
			e.err = fmt.Errorf("diskdump: write: %w", err)
			return e.err
		}
	}
	if err := e.data.write(data); err != nil {
		e.err = fmt.Errorf("diskdump: write: %w", err)
		return e.err
	}
	if zeropage.Is(data) {
		e.stats.ZeroPages++
	} else {
		e.stats.RawPages++
	}
	e.stats.Written++
	e.stats.InputBytes += uint64(len(data))
	e.stats.DataBytes += uint64(len(data))
	next, err := e.cur.nextDumpable(pfn + 1)
	if err != nil {
		e.err = err
		return err
	}
	e.next = next
	return nil
}

// WriteMissing records that the page of pfn, the next dumpable one, could
// not be read. ELF has no way to mark one page missing, so its bytes are
// zeros and the core stays marked incomplete (e_flags
// DUMP_ELF_INCOMPLETE), so no reader takes it for a whole dump.
func (e *ELFWriter) WriteMissing(pfn uint64) error {
	if err := e.WritePage(pfn, e.zero); err != nil {
		return err
	}
	e.stats.ZeroPages--
	e.stats.Missing++
	return nil
}

// Close writes the remaining program headers and marks the core complete.
// If some dumpable pages were not written it behaves like Abort and
// returns an error wrapping ErrIncompleteDump.
func (e *ELFWriter) Close() error {
	switch e.state {
	case stateDone:
		return errors.New("diskdump: writer already closed")
	case stateHeader:
		e.state = stateDone
		return fmt.Errorf("%w: SetBitmaps was not called", ErrIncompleteDump)
	}
	if e.stats.Written < e.stats.Dumpable {
		if err := e.Abort(); err != nil {
			return err
		}
		return fmt.Errorf("%w: %d of %d pages written", ErrIncompleteDump,
			e.stats.Written, e.stats.Dumpable)
	}
	e.state = stateDone
	for {
		ok, err := e.nextSegment()
		if err != nil {
			return err
		}
		if !ok {
			break
		}
	}
	if e.nphdr != e.nseg {
		return fmt.Errorf("diskdump: bitmap source changed: %d segments, expected %d", e.nphdr, e.nseg)
	}
	if err := e.data.flush(); err != nil {
		return fmt.Errorf("diskdump: write: %w", err)
	}
	if err := e.phdrs.flush(); err != nil {
		return fmt.Errorf("diskdump: write program headers: %w", err)
	}
	return e.writeEhdr(e.stats.Missing > 0)
}

// Abort flushes what was written and leaves the core marked incomplete
// (e_flags DUMP_ELF_INCOMPLETE); segments not reached keep PT_NULL headers.
func (e *ELFWriter) Abort() error {
	if e.state != stateBitmaps {
		e.state = stateDone
		return nil
	}
	e.state = stateDone
	err := errors.Join(e.data.flush(), e.phdrs.flush())
	if err == nil && e.inSeg {
		// Shrink the current segment to the pages actually written.
		seg := e.seg
		seg.file = uint64(e.data.pos()-e.segOff) / uint64(e.h.PageSize)
		seg.mem = seg.file
		phoff := int64(elfHeaderSize + e.nphdr*elfPhdrSize) // after PT_NOTE
		if _, werr := e.w.WriteAt(e.phdr(seg, e.segOff), phoff); werr != nil {
			err = werr
		}
	}
	if err != nil {
		return fmt.Errorf("diskdump: abort: %w", err)
	}
	return nil
}
