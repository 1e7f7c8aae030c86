package diskdump

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Defaults of Options.
const (
	defaultChunkPFNs  = 1 << 20 // 4 GiB of 4 KiB pages: 128 KiB per bitmap chunk
	defaultDescBuffer = 4096    // page descriptors per write (96 KiB)
	// defaultDataBuffer is the page data per write: 1 MiB. In the
	// benchmark's crash kernel 256 KiB writes made the dump 20% slower
	// (1.87 against 1.57 s, one run: make bench-crash, "-databuf"), for
	// 1.1 MiB less memory.
	defaultDataBuffer = 1 << 20
)

// ErrIncompleteDump is returned by Writer.Close when not every dumpable
// page was written; the file is then marked incomplete.
var ErrIncompleteDump = errors.New("diskdump: dump incomplete")

// Options tunes a Writer or ELFWriter. The zero value is valid.
type Options struct {
	// Compression of the page data (kdump-compressed writer only).
	Compression Compression
	// ChunkPFNs is how many pfns are asked from the BitmapSource at a
	// time (rounded up to a multiple of 64). Default 1<<20.
	ChunkPFNs uint64
	// DescBuffer is how many page descriptors are buffered. Default 4096.
	DescBuffer int
	// DataBuffer is the page data buffer in bytes. Default 1 MiB.
	DataBuffer int
}

func (o *Options) fill() {
	if o.ChunkPFNs == 0 {
		o.ChunkPFNs = defaultChunkPFNs
	}
	if o.DescBuffer <= 0 {
		o.DescBuffer = defaultDescBuffer
	}
	if o.DataBuffer <= 0 {
		o.DataBuffer = defaultDataBuffer
	}
}

// Stats counts what a writer has written so far.
type Stats struct {
	Dumpable   uint64 // pages in the dumpable bitmap
	Written    uint64 // pages written (WritePage calls that succeeded)
	ZeroPages  uint64 // written pages that were all zero
	RawPages   uint64 // non-zero pages stored uncompressed
	InputBytes uint64 // page bytes passed to WritePage
	DataBytes  uint64 // page data bytes stored in the file
	Missing    uint64 // dumpable pages recorded as missing (WriteMissing)
}

// Writer writes a kdump-compressed dump to an io.WriterAt (a file or a
// block device), in three steps: NewWriter writes the headers and notes,
// SetBitmaps the bitmaps, then WritePage is called for every dumpable pfn
// in ascending order and Close finalises the header. Use Abort to stop
// early and leave a dump marked incomplete. A Writer is not safe for
// concurrent use.
//
// Memory use is independent of the machine size: one bitmap chunk
// (ChunkPFNs/4 bytes for both bitmaps), the descriptor and data buffers and
// the codec state.
type Writer struct {
	w     io.WriterAt
	h     Header
	opt   Options
	l     layout
	enc   *PageEncoder
	cur   *bitCursor
	src   BitmapSource // of the pages: src of SetBitmaps, or the file's bitmaps
	data  *atWriter
	desc  *atWriter
	zero  []byte
	pd    [pageDescSize]byte // descriptor scratch
	zoff  int64              // offset of the shared zero page, -1 until written
	next  uint64
	stats Stats
	state int
	err   error // sticky write error
}

const (
	stateHeader = iota
	stateBitmaps
	stateDone
)

// NewWriter validates h and writes the header, the sub-header and the
// notes. The file is marked incomplete until Close succeeds.
func NewWriter(w io.WriterAt, h Header, opt Options) (*Writer, error) {
	if err := h.validate(); err != nil {
		return nil, err
	}
	opt.fill()
	enc, err := NewPageEncoder(opt.Compression, h.PageSize)
	if err != nil {
		return nil, err
	}
	h.Notes = bytes.Clone(h.Notes)
	wr := &Writer{w: w, h: h, opt: opt, enc: enc, zoff: -1,
		l: newLayout(int64(h.PageSize), int64(len(h.Notes)), h.MaxPFN)}
	if err := wr.writeHeader(true); err != nil {
		enc.Close()
		return nil, err
	}
	// Sub-header and notes, padded to whole blocks.
	blk := make([]byte, wr.l.subHdrBlocks*wr.l.blockSize)
	_, sub := encodeHeader(&wr.h, wr.l, 0)
	copy(blk, sub)
	copy(blk[subHeaderSize:], wr.h.Notes)
	if _, err := w.WriteAt(blk, wr.l.blockSize); err != nil {
		enc.Close()
		return nil, fmt.Errorf("diskdump: write sub-header: %w", err)
	}
	return wr, nil
}

// writeHeader writes block 0.
func (w *Writer) writeHeader(incomplete bool) error {
	status := w.enc.c.flag()
	if incomplete {
		status |= FlagIncomplete
	}
	hdr, _ := encodeHeader(&w.h, w.l, status)
	blk := make([]byte, w.l.blockSize)
	copy(blk, hdr)
	if _, err := w.w.WriteAt(blk, 0); err != nil {
		return fmt.Errorf("diskdump: write header: %w", err)
	}
	return nil
}

// SetBitmaps reads both bitmaps from src chunk by chunk, writes them and
// counts the dumpable pages. src is consulted again, chunk by chunk, while
// pages are written.
func (w *Writer) SetBitmaps(src BitmapSource) error {
	if w.state != stateHeader {
		return errors.New("diskdump: SetBitmaps called twice or after Close")
	}
	cur := newBitCursor(src, w.h.MaxPFN, w.opt.ChunkPFNs)
	var n uint64
	for start := uint64(0); start < w.h.MaxPFN; start += cur.chunk {
		if err := cur.load(start); err != nil {
			return err
		}
		span := cur.span()
		if _, err := w.w.WriteAt(cur.ram[:span], w.l.bitmap1Off+int64(start/8)); err != nil {
			return fmt.Errorf("diskdump: write bitmap 1: %w", err)
		}
		if _, err := w.w.WriteAt(cur.dump[:span], w.l.bitmap2Off+int64(start/8)); err != nil {
			return fmt.Errorf("diskdump: write bitmap 2: %w", err)
		}
		n += popcount(cur.dump[:span])
	}
	// Zero the padding up to the block boundary of each bitmap.
	used := int64((w.h.MaxPFN + 7) / 8)
	if pad := w.l.bitmapLen - used; pad > 0 {
		z := make([]byte, pad)
		for _, off := range []int64{w.l.bitmap1Off, w.l.bitmap2Off} {
			if _, err := w.w.WriteAt(z, off+used); err != nil {
				return fmt.Errorf("diskdump: write bitmap padding: %w", err)
			}
		}
	}
	w.stats.Dumpable = n
	if fb := w.readBack(cur); fb != nil {
		src = fb
	}
	w.src = src
	w.cur = newBitCursor(src, w.h.MaxPFN, w.opt.ChunkPFNs)
	next, err := w.cur.nextDumpable(0)
	if err != nil {
		return err
	}
	w.next = next
	w.desc = newAtWriter(w.w, w.l.descOff, w.opt.DescBuffer*pageDescSize)
	w.data = newAtWriter(w.w, w.l.descOff+int64(n)*pageDescSize, w.opt.DataBuffer)
	w.zero = make([]byte, w.h.PageSize)
	w.state = stateBitmaps
	return nil
}

// NextPFN returns the next pfn WritePage expects, and false once every
// dumpable page has been written.
func (w *Writer) NextPFN() (uint64, bool) {
	if w.state != stateBitmaps || w.next >= w.h.MaxPFN {
		return 0, false
	}
	return w.next, true
}

// NextPFNAfter returns the dumpable pfn after NextPFN's, for a caller that
// holds a page back until it has seen the next one; false when NextPFN's
// page is the last (or on an error, which WritePage then returns).
func (w *Writer) NextPFNAfter() (uint64, bool) {
	if w.state != stateBitmaps || w.err != nil || w.next >= w.h.MaxPFN {
		return 0, false
	}
	return pfnAfter(w.cur, w.next, w.h.MaxPFN)
}

// Stats returns the counters so far.
func (w *Writer) Stats() Stats { return w.stats }

// WritePage stores the page of pfn, which must be the next dumpable pfn
// (see NextPFN). data must be exactly one page; it is not retained.
func (w *Writer) WritePage(pfn uint64, data []byte) error {
	if err := w.checkNext(pfn); err != nil {
		return err
	}
	if len(data) != w.h.PageSize {
		return fmt.Errorf("diskdump: page %#x: %d bytes, want %d", pfn, len(data), w.h.PageSize)
	}
	room, err := w.room(w.data, w.enc.Room())
	if err != nil {
		return err
	}
	p, err := w.enc.EncodeInto(data, room)
	if err != nil {
		return fmt.Errorf("diskdump: page %#x: %w", pfn, err)
	}
	return w.writeEncoded(pfn, p)
}

// WriteEncoded stores the page of pfn, the next dumpable pfn, as a
// PageEncoder of the Writer's compression encoded it.
func (w *Writer) WriteEncoded(pfn uint64, p Encoded) error {
	if err := w.checkNext(pfn); err != nil {
		return err
	}
	if !p.Zero && (p.Flags != 0 && p.Flags != w.enc.c.flag() || p.Flags == 0 && len(p.Data) != w.h.PageSize) {
		return fmt.Errorf("diskdump: page %#x: %d bytes with flags %#x for a %v dump", pfn, len(p.Data), p.Flags, w.enc.c)
	}
	return w.writeEncoded(pfn, p)
}

func (w *Writer) writeEncoded(pfn uint64, p Encoded) error {
	d := w.pd[:]
	clear(d)
	le := binary.LittleEndian
	if p.Zero {
		if w.zoff < 0 {
			w.zoff = w.data.pos()
			if err := w.write(w.data, w.zero); err != nil {
				return err
			}
			w.stats.DataBytes += uint64(len(w.zero))
		}
		le.PutUint64(d[0:], uint64(w.zoff))
		le.PutUint32(d[8:], uint32(len(w.zero)))
		w.stats.ZeroPages++
	} else {
		le.PutUint64(d[0:], uint64(w.data.pos()))
		le.PutUint32(d[8:], uint32(len(p.Data)))
		le.PutUint32(d[12:], p.Flags)
		if err := w.write(w.data, p.Data); err != nil {
			return err
		}
		if p.Flags == 0 {
			w.stats.RawPages++
		}
		w.stats.DataBytes += uint64(len(p.Data))
	}
	w.stats.InputBytes += uint64(w.h.PageSize)
	return w.advance(pfn, d)
}

// WriteMissing records that the page of pfn, the next dumpable one, could
// not be read (a memory error in the dead machine, an I/O error of
// /proc/vmcore). Its descriptor gets offset 0, which crash, makedumpfile,
// libkdumpfile and Reader take as a page missing from the dump, never as
// zeros; the header stays marked incomplete; the rest of the dump goes on.
func (w *Writer) WriteMissing(pfn uint64) error {
	if err := w.checkNext(pfn); err != nil {
		return err
	}
	d := w.pd[:]
	clear(d)
	w.stats.Missing++
	return w.advance(pfn, d)
}

// checkNext refuses a page that is not the next dumpable one.
func (w *Writer) checkNext(pfn uint64) error {
	if w.state != stateBitmaps {
		return errors.New("diskdump: WritePage before SetBitmaps or after Close")
	}
	if w.err != nil {
		return w.err
	}
	return checkOrder(pfn, w.next, w.h.MaxPFN, w.stats.Written, w.stats.Dumpable)
}

// checkOrder refuses a page that is not the next dumpable one, next, when
// done pages of dumpable are in: the rule of Writer and Parallel alike.
func checkOrder(pfn, next, maxPFN, done, dumpable uint64) error {
	if next >= maxPFN {
		return fmt.Errorf("diskdump: page %#x: all dumpable pages already written", pfn)
	}
	if pfn != next {
		return fmt.Errorf("diskdump: page %#x written, next dumpable pfn is %#x", pfn, next)
	}
	if done >= dumpable {
		// The descriptor table is full: the source returned more
		// dumpable pages than when SetBitmaps counted them.
		return fmt.Errorf("diskdump: page %#x: bitmap source changed: more than %d dumpable pages",
			pfn, dumpable)
	}
	return nil
}

// advance appends the descriptor d of pfn and moves to the next dumpable pfn.
func (w *Writer) advance(pfn uint64, d []byte) error {
	if w.desc.full(pageDescSize) {
		// Descriptors must never point at data not yet in the file.
		if err := w.flush(w.data); err != nil {
			return err
		}
	}
	if err := w.write(w.desc, d); err != nil {
		return err
	}
	w.stats.Written++
	next, err := w.cur.nextDumpable(pfn + 1)
	if err != nil {
		w.err = err
		return err
	}
	w.next = next
	return nil
}

func (w *Writer) write(a *atWriter, p []byte) error {
	if err := a.write(p); err != nil {
		w.err = fmt.Errorf("diskdump: write: %w", err)
		return w.err
	}
	return nil
}

// room returns a's free buffer when it has n bytes, flushing it first
// when it has not; nil for n 0 or more than the buffer holds.
func (w *Writer) room(a *atWriter, n int) ([]byte, error) {
	if n == 0 || n > cap(a.buf) {
		return nil, nil
	}
	if a.full(n) {
		if err := w.flush(a); err != nil {
			return nil, err
		}
	}
	return a.buf[len(a.buf):cap(a.buf)], nil
}

func (w *Writer) flush(a *atWriter) error {
	if err := a.flush(); err != nil {
		w.err = fmt.Errorf("diskdump: write: %w", err)
		return w.err
	}
	return nil
}

// Close flushes the buffers and marks the dump complete. If some dumpable
// pages were not written it behaves like Abort and returns an error
// wrapping ErrIncompleteDump.
func (w *Writer) Close() error {
	switch w.state {
	case stateDone:
		return errors.New("diskdump: writer already closed")
	case stateHeader:
		if err := w.Abort(); err != nil {
			return err
		}
		return fmt.Errorf("%w: SetBitmaps was not called", ErrIncompleteDump)
	}
	if w.stats.Written < w.stats.Dumpable {
		if err := w.Abort(); err != nil {
			return err
		}
		return fmt.Errorf("%w: %d of %d pages written", ErrIncompleteDump,
			w.stats.Written, w.stats.Dumpable)
	}
	defer w.release()
	if err := w.flush(w.data); err != nil {
		return err
	}
	if err := w.flush(w.desc); err != nil {
		return err
	}
	// Pages recorded as missing keep the dump marked incomplete, as
	// readers expect when a descriptor has offset 0.
	return w.writeHeader(w.stats.Missing > 0)
}

// Abort flushes what was written, zeroes the descriptors of the pages not
// written (offset 0 means "not in the dump" to crash) and leaves the
// header marked incomplete (DUMP_DH_COMPRESSED_INCOMPLETE).
func (w *Writer) Abort() error {
	if w.state == stateDone {
		return nil
	}
	defer w.release()
	if w.state == stateHeader {
		return nil // header already says incomplete; no bitmaps yet
	}
	var errs []error
	if err := w.data.flush(); err != nil {
		errs = append(errs, err)
	}
	if err := w.desc.flush(); err != nil {
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		off := w.desc.pos()
		end := w.l.descOff + int64(w.stats.Dumpable)*pageDescSize
		z := make([]byte, min(end-off, int64(w.opt.DescBuffer*pageDescSize)))
		for off < end {
			n := min(end-off, int64(len(z)))
			if _, err := w.w.WriteAt(z[:n], off); err != nil {
				errs = append(errs, err)
				break
			}
			off += n
		}
	}
	if err := w.writeHeader(true); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("diskdump: abort: %w", err)
	}
	return nil
}

func (w *Writer) release() {
	w.state = stateDone
	w.enc.Close()
}

// atWriter buffers sequential writes to an io.WriterAt.
type atWriter struct {
	w   io.WriterAt
	off int64 // file offset of buf[0]
	buf []byte
}

func newAtWriter(w io.WriterAt, off int64, size int) *atWriter {
	return &atWriter{w: w, off: off, buf: make([]byte, 0, size)}
}

func (a *atWriter) pos() int64 { return a.off + int64(len(a.buf)) }

func (a *atWriter) full(n int) bool { return len(a.buf)+n > cap(a.buf) }

// write appends p, or takes it as written when it is in the buffer's free
// part already (inPlace: compressed there by EncodeInto).
func (a *atWriter) write(p []byte) error {
	if inPlace(a.buf, p) {
		a.buf = a.buf[:len(a.buf)+len(p)]
		return nil
	}
	if a.full(len(p)) {
		if err := a.flush(); err != nil {
			return err
		}
		if len(p) > cap(a.buf) {
			_, err := a.w.WriteAt(p, a.off)
			a.off += int64(len(p))
			return err
		}
	}
	a.buf = append(a.buf, p...)
	return nil
}

func (a *atWriter) flush() error {
	if len(a.buf) == 0 {
		return nil
	}
	_, err := a.w.WriteAt(a.buf, a.off)
	if err != nil {
		return err
	}
	a.off += int64(len(a.buf))
	a.buf = a.buf[:0]
	return nil
}
