package diskdump

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// Errors returned by Dump.ReadPage.
var (
	// ErrExcluded: the pfn is not in the dump (not RAM or filtered out).
	ErrExcluded = errors.New("diskdump: page not in dump")
	// ErrPageIncomplete: the pfn is dumpable but its data was never
	// written (descriptor offset 0 or beyond the end of an incomplete dump).
	ErrPageIncomplete = errors.New("diskdump: page missing from incomplete dump")
)

// sectionPFNs is the granularity of the dumpable-page prefix counts.
const sectionPFNs = 4096

// Dump is an open kdump-compressed file. Its methods are safe for
// concurrent use.
type Dump struct {
	r       io.ReaderAt
	size    int64
	closer  io.Closer
	h       Header
	version int32
	status  uint32
	split   bool
	bs      int64
	descOff int64
	ram     Bitmap
	dump    Bitmap
	sect    []uint64 // dumpable pages in sections before section i
	nDump   uint64
	nRAM    uint64
	vmci    []byte

	mu   sync.Mutex
	dec  pageDecoder
	cbuf []byte
}

// OpenFile opens a dump file by name; Close closes it.
func OpenFile(name string) (*Dump, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("diskdump: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("diskdump: %w", err)
	}
	d, err := Open(f, fi.Size())
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	d.closer = f
	return d, nil
}

// Open parses the headers and bitmaps of a dump of size bytes read through
// r. Allocations are bounded by size. Split dumps are not supported.
func Open(r io.ReaderAt, size int64) (*Dump, error) {
	d := &Dump{r: r, size: size}
	le := binary.LittleEndian
	hdr, err := d.readAt(0, headerSize)
	if err != nil {
		return nil, fmt.Errorf("%w: header: %w", ErrFormat, err)
	}
	if string(hdr[:8]) != signature {
		return nil, fmt.Errorf("%w: bad signature %q", ErrFormat, hdr[:8])
	}
	d.version = int32(le.Uint32(hdr[8:]))
	u := &d.h.UTS
	for i, f := range u.fields() {
		*f = cstring(hdr[12+i*utsFieldLen : 12+(i+1)*utsFieldLen])
	}
	sec, usec := int64(le.Uint64(hdr[offTimestamp:])), int64(le.Uint64(hdr[offTimestamp+8:]))
	if sec != 0 || usec != 0 {
		d.h.CrashTime = time.Unix(sec, 0).Add(time.Duration(usec%1e6) * time.Microsecond)
	}
	d.status = le.Uint32(hdr[offStatus:])
	d.h.ExcludedVmemmap = d.status&FlagExcludedVmemmap != 0
	bs := int64(int32(le.Uint32(hdr[offBlockSize:])))
	if bs < minBlockSize || bs > maxBlockSize || bs&(bs-1) != 0 {
		return nil, fmt.Errorf("%w: block size %d", ErrFormat, bs)
	}
	d.bs = bs
	d.h.PageSize = int(bs)
	subBlocks := int64(le.Uint32(hdr[offSubHdrSize:]))
	bitmapBlocks := int64(le.Uint32(hdr[offBitmapBlock:]))
	d.h.MaxPFN = uint64(le.Uint32(hdr[offMaxMapnr:]))
	d.h.NrCPUs = int(int32(le.Uint32(hdr[offNrCPUs:])))

	if err := d.readSubHeader(subBlocks); err != nil {
		return nil, err
	}
	if err := d.readBitmaps(subBlocks, bitmapBlocks); err != nil {
		return nil, err
	}
	return d, nil
}

// readSubHeader parses the kdump_sub_header and reads the notes.
func (d *Dump) readSubHeader(subBlocks int64) error {
	if d.version < 1 || subBlocks == 0 {
		return nil
	}
	le := binary.LittleEndian
	sub, err := d.readAt(d.bs, subHeaderSize)
	if err != nil {
		return fmt.Errorf("%w: sub-header: %w", ErrFormat, err)
	}
	d.h.PhysBase = le.Uint64(sub[0:])
	d.h.DumpLevel = int(int32(le.Uint32(sub[8:])))
	if d.version >= 2 && le.Uint32(sub[12:]) != 0 {
		d.split = true
	}
	var vOff, vSize, nOff, nSize int64
	if d.version >= 3 {
		vOff, vSize = int64(le.Uint64(sub[32:])), int64(le.Uint64(sub[40:]))
	}
	if d.version >= 4 {
		nOff, nSize = int64(le.Uint64(sub[48:])), int64(le.Uint64(sub[56:]))
	}
	if d.version >= 6 {
		if m := le.Uint64(sub[96:]); m != 0 {
			d.h.MaxPFN = m
		}
	}
	if nSize > 0 {
		if d.h.Notes, err = d.readAt(nOff, nSize); err != nil {
			return fmt.Errorf("%w: notes: %w", ErrFormat, err)
		}
	}
	if vSize > 0 {
		if d.vmci, err = d.readAt(vOff, vSize); err != nil {
			return fmt.Errorf("%w: VMCOREINFO: %w", ErrFormat, err)
		}
		if nSize > 0 && vOff >= nOff && vOff-nOff <= nSize-vSize {
			d.h.VMCOREINFOOffset, d.h.VMCOREINFOSize = vOff-nOff, vSize
		}
	}
	return nil
}

// readBitmaps loads both bitmaps and counts dumpable pages per section.
func (d *Dump) readBitmaps(subBlocks, bitmapBlocks int64) error {
	if d.split {
		return fmt.Errorf("%w: split dumps are not supported", ErrFormat)
	}
	bs := d.bs
	maxBlocks := d.size / bs
	if subBlocks > maxBlocks || bitmapBlocks > maxBlocks {
		return fmt.Errorf("%w: %d sub-header and %d bitmap blocks in a %d-byte file",
			ErrFormat, subBlocks, bitmapBlocks, d.size)
	}
	off := (1 + subBlocks) * bs
	total := bitmapBlocks * bs
	need := divUp(divUp(int64(min(d.h.MaxPFN, 1<<62)), 8), bs) * bs
	var err error
	if total >= 2*need && need > 0 {
		// Two bitmaps of total/2 bytes each.
		half := total / 2
		if d.ram, err = d.readAt(off, half); err != nil {
			return fmt.Errorf("%w: bitmap 1: %w", ErrFormat, err)
		}
		if d.dump, err = d.readAt(off+half, half); err != nil {
			return fmt.Errorf("%w: bitmap 2: %w", ErrFormat, err)
		}
	} else {
		// Old single-bitmap layout: one bitmap serves both purposes.
		if d.dump, err = d.readAt(off, total); err != nil {
			return fmt.Errorf("%w: bitmap: %w", ErrFormat, err)
		}
		d.ram = d.dump
	}
	d.descOff = off + total
	// Bits beyond max_mapnr do not count.
	if bits := uint64(len(d.dump)) * 8; d.h.MaxPFN > bits {
		d.h.MaxPFN = bits
	}
	d.dump = clipBitmap(d.dump, d.h.MaxPFN)
	d.ram = clipBitmap(d.ram, d.h.MaxPFN)
	nsect := (d.h.MaxPFN + sectionPFNs - 1) / sectionPFNs
	d.sect = make([]uint64, nsect+1)
	for i := uint64(0); i < nsect; i++ {
		lo := i * sectionPFNs / 8
		hi := min(lo+sectionPFNs/8, uint64(len(d.dump)))
		d.sect[i+1] = d.sect[i] + popcount(d.dump[lo:hi])
	}
	d.nDump = d.sect[nsect]
	d.nRAM = popcount(d.ram)
	d.cbuf = make([]byte, bs)
	return nil
}

// clipBitmap returns b limited to n bits, with the bits beyond n cleared
// (copying if needed so the caller's data is untouched).
func clipBitmap(b Bitmap, n uint64) Bitmap {
	b = b[:min(uint64(len(b)), (n+7)/8)]
	if n%8 != 0 && len(b) > 0 {
		last := b[len(b)-1] & (1<<(n%8) - 1)
		if last != b[len(b)-1] {
			b = append(Bitmap(nil), b...)
			b[len(b)-1] = last
		}
	}
	return b
}

// readAt reads n bytes at off, refusing ranges outside the file.
func (d *Dump) readAt(off, n int64) ([]byte, error) {
	if off < 0 || n < 0 || off > d.size || n > d.size-off {
		return nil, fmt.Errorf("range [%d,+%d) outside %d-byte file", off, n, d.size)
	}
	b := make([]byte, n)
	if _, err := d.r.ReadAt(b, off); err != nil && !(errors.Is(err, io.EOF) && n == 0) {
		return nil, err
	}
	return b, nil
}

// Close releases the decoders and closes the file opened by OpenFile.
func (d *Dump) Close() error {
	d.mu.Lock()
	d.dec.close()
	d.dec = pageDecoder{}
	d.mu.Unlock()
	if d.closer == nil {
		return nil
	}
	err := d.closer.Close()
	d.closer = nil
	return err
}

// Header returns the header fields (Notes included; do not modify them).
func (d *Dump) Header() Header { return d.h }

// Version is the header_version of the file.
func (d *Dump) Version() int { return int(d.version) }

// Status returns the raw status word of the header.
func (d *Dump) Status() uint32 { return d.status }

// Incomplete reports whether the dump was marked incomplete.
func (d *Dump) Incomplete() bool { return d.status&FlagIncomplete != 0 }

// Compression returns the codec named by the header status.
func (d *Dump) Compression() Compression {
	switch {
	case d.status&FlagZlib != 0:
		return Zlib
	case d.status&FlagLZO != 0:
		return LZO
	case d.status&FlagSnappy != 0:
		return Snappy
	case d.status&FlagZstd != 0:
		return Zstd
	}
	return None
}

// Notes returns the ELF note segment stored in the dump (nil if none).
func (d *Dump) Notes() []byte { return d.h.Notes }

// VMCOREINFO returns the VMCOREINFO text (nil if none).
func (d *Dump) VMCOREINFO() []byte { return d.vmci }

// MaxPFN returns the number of pfns covered by the bitmaps.
func (d *Dump) MaxPFN() uint64 { return d.h.MaxPFN }

// NumDumpable returns how many pages the dumpable bitmap holds.
func (d *Dump) NumDumpable() uint64 { return d.nDump }

// NumRAM returns how many pfns the RAM bitmap holds.
func (d *Dump) NumRAM() uint64 { return d.nRAM }

// RAM reports whether pfn is RAM according to bitmap 1.
func (d *Dump) RAM(pfn uint64) bool { return d.ram.Test(pfn) }

// Dumpable reports whether pfn is in the dump (bitmap 2).
func (d *Dump) Dumpable(pfn uint64) bool { return d.dump.Test(pfn) }

// descIndex returns the position of pfn's descriptor.
func (d *Dump) descIndex(pfn uint64) uint64 {
	s := pfn / sectionPFNs
	return d.sect[s] + popcount(d.dump[s*sectionPFNs/8:pfn/8]) +
		popcount([]byte{d.dump[pfn/8] & (1<<(pfn%8) - 1)})
}

// PageDesc is a raw page descriptor.
type PageDesc struct {
	Offset int64
	Size   uint32
	Flags  uint32
}

// Desc returns the page descriptor of a dumpable pfn.
func (d *Dump) Desc(pfn uint64) (PageDesc, error) {
	if !d.dump.Test(pfn) {
		return PageDesc{}, fmt.Errorf("pfn %#x: %w", pfn, ErrExcluded)
	}
	off := d.descOff + int64(d.descIndex(pfn))*pageDescSize
	if off+pageDescSize > d.size {
		return PageDesc{}, fmt.Errorf("pfn %#x: descriptor beyond end of file: %w", pfn, ErrPageIncomplete)
	}
	var b [pageDescSize]byte
	if _, err := d.r.ReadAt(b[:], off); err != nil {
		return PageDesc{}, fmt.Errorf("diskdump: pfn %#x: read descriptor: %w", pfn, err)
	}
	le := binary.LittleEndian
	return PageDesc{Offset: int64(le.Uint64(b[0:])), Size: le.Uint32(b[8:]), Flags: le.Uint32(b[12:])}, nil
}

// ReadPage reads the page of pfn into buf, which must hold a page
// (Header().PageSize bytes). It returns an error wrapping ErrExcluded or
// ErrPageIncomplete for pages not in the file.
func (d *Dump) ReadPage(pfn uint64, buf []byte) error {
	if len(buf) < int(d.bs) {
		return fmt.Errorf("diskdump: buffer of %d bytes for a %d-byte page", len(buf), d.bs)
	}
	pd, err := d.Desc(pfn)
	if err != nil {
		return err
	}
	if pd.Offset == 0 {
		return fmt.Errorf("pfn %#x: %w", pfn, ErrPageIncomplete)
	}
	if pd.Offset < 0 || int64(pd.Size) > d.bs || pd.Offset > d.size-int64(pd.Size) {
		return fmt.Errorf("%w: pfn %#x: data [%d,+%d) outside the file", ErrFormat, pfn, pd.Offset, pd.Size)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	src := d.cbuf[:pd.Size]
	if _, err := d.r.ReadAt(src, pd.Offset); err != nil {
		return fmt.Errorf("diskdump: pfn %#x: read data: %w", pfn, err)
	}
	if err := d.dec.decode(buf[:d.bs], src, pd.Flags); err != nil {
		return fmt.Errorf("pfn %#x: %w", pfn, err)
	}
	return nil
}
