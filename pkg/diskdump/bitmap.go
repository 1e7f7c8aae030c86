package diskdump

import (
	"fmt"
	"math/bits"
)

// BitmapSource supplies the RAM and dumpable bitmaps one chunk of pfns at a
// time. Bit i of a chunk (byte i/8, bit i%8) describes pfn start+i.
//
// FillBitmaps sets the bit of each RAM pfn in ram and of each pfn to dump in
// dumpable, for pfns in [start, start+8*len(ram)). start is a multiple of 64,
// both slices have the same length and are zeroed by the caller. Pfns at or
// beyond Header.MaxPFN must stay clear. A dumpable pfn must also be RAM (the
// writers clear dumpable bits of non-RAM pfns). The writers call
// FillBitmaps more than once for the same range; it must return the same
// bits each time.
type BitmapSource interface {
	FillBitmaps(start uint64, ram, dumpable []byte) error
}

// BitmapFunc adapts a function to a BitmapSource.
type BitmapFunc func(start uint64, ram, dumpable []byte) error

// FillBitmaps calls f.
func (f BitmapFunc) FillBitmaps(start uint64, ram, dumpable []byte) error {
	return f(start, ram, dumpable)
}

// Bitmap is an in-memory pfn bitmap in the on-disk bit order.
type Bitmap []byte

// NewBitmap returns a cleared bitmap for pfns 0..n-1.
func NewBitmap(n uint64) Bitmap { return make(Bitmap, (n+7)/8) }

// Set sets the bit of pfn; pfns beyond the bitmap are ignored.
func (b Bitmap) Set(pfn uint64) {
	if pfn/8 < uint64(len(b)) {
		b[pfn/8] |= 1 << (pfn % 8)
	}
}

// Clear clears the bit of pfn.
func (b Bitmap) Clear(pfn uint64) {
	if pfn/8 < uint64(len(b)) {
		b[pfn/8] &^= 1 << (pfn % 8)
	}
}

// Test reports whether the bit of pfn is set.
func (b Bitmap) Test(pfn uint64) bool {
	return pfn/8 < uint64(len(b)) && b[pfn/8]&(1<<(pfn%8)) != 0
}

// SetRange sets the bits of pfns [start, end).
func (b Bitmap) SetRange(start, end uint64) {
	for p := start; p < end; p++ {
		b.Set(p)
	}
}

// MemBitmaps is a BitmapSource backed by two in-memory bitmaps (2 bits per
// pfn: 64 KiB per GiB of 4 KiB pages). Use it when computing the bitmaps
// twice would be costly.
type MemBitmaps struct {
	RAM, Dumpable Bitmap
}

// FillBitmaps copies the requested chunk.
func (m *MemBitmaps) FillBitmaps(start uint64, ram, dumpable []byte) error {
	off := start / 8
	if off < uint64(len(m.RAM)) {
		copy(ram, m.RAM[off:])
	}
	if off < uint64(len(m.Dumpable)) {
		copy(dumpable, m.Dumpable[off:])
	}
	return nil
}

// bitCursor walks a BitmapSource chunk by chunk, keeping one chunk.
type bitCursor struct {
	src    BitmapSource
	maxPFN uint64
	chunk  uint64 // pfns per chunk, multiple of 64
	start  uint64 // first pfn of the loaded chunk
	loaded bool
	ram    []byte
	dump   []byte
	// The last answer of nextDumpable, so that asking again (a writer's
	// NextPFNAfter, then its WritePage) does not load an earlier chunk:
	// a BitmapSource that computes chunks in order starts over for one.
	memoFrom, memo uint64
	memoOK         bool
}

func newBitCursor(src BitmapSource, maxPFN, chunkPFNs uint64) *bitCursor {
	chunkPFNs = (chunkPFNs + 63) &^ 63
	if chunkPFNs == 0 {
		chunkPFNs = defaultChunkPFNs
	}
	n := min(chunkPFNs, (maxPFN+63)&^63)
	return &bitCursor{src: src, maxPFN: maxPFN, chunk: n,
		ram: make([]byte, n/8), dump: make([]byte, n/8)}
}

// load makes the chunk containing pfn current.
func (c *bitCursor) load(pfn uint64) error {
	start := pfn - pfn%c.chunk
	if c.loaded && start == c.start {
		return nil
	}
	clear(c.ram)
	clear(c.dump)
	c.loaded = false
	if err := c.src.FillBitmaps(start, c.ram, c.dump); err != nil {
		return fmt.Errorf("diskdump: bitmaps at pfn %#x: %w", start, err)
	}
	// Enforce dumpable ⊆ RAM and nothing at or beyond maxPFN.
	for i := range c.dump {
		c.dump[i] &= c.ram[i]
	}
	if end := start + c.chunk; end > c.maxPFN {
		for p := c.maxPFN; p < end; p++ {
			i := p - start
			c.ram[i/8] &^= 1 << (i % 8)
			c.dump[i/8] &^= 1 << (i % 8)
		}
	}
	c.start, c.loaded = start, true
	return nil
}

// span returns the valid length in bytes of the current chunk.
func (c *bitCursor) span() int {
	return int((min(c.start+c.chunk, c.maxPFN) - c.start + 7) / 8)
}

// test reports whether pfn is RAM and dumpable.
func (c *bitCursor) test(pfn uint64) (ram, dump bool, err error) {
	if pfn >= c.maxPFN {
		return false, false, nil
	}
	if err := c.load(pfn); err != nil {
		return false, false, err
	}
	i := pfn - c.start
	m := byte(1) << (i % 8)
	return c.ram[i/8]&m != 0, c.dump[i/8]&m != 0, nil
}

// nextDumpable returns the first dumpable pfn >= from, or maxPFN if none.
func (c *bitCursor) nextDumpable(from uint64) (uint64, error) {
	if c.memoOK && c.memoFrom == from {
		return c.memo, nil
	}
	next, err := c.scanDumpable(from)
	if err != nil {
		return 0, err
	}
	c.memoFrom, c.memo, c.memoOK = from, next, true
	return next, nil
}

func (c *bitCursor) scanDumpable(from uint64) (uint64, error) {
	for from < c.maxPFN {
		if err := c.load(from); err != nil {
			return 0, err
		}
		i := from - c.start
		// Finish the partial byte, then scan whole bytes.
		for ; i%8 != 0 && c.start+i < c.maxPFN; i++ {
			if c.dump[i/8]&(1<<(i%8)) != 0 {
				return c.start + i, nil
			}
		}
		// Whole bytes from the next byte boundary (a partial byte stopped
		// at maxPFN is done).
		for b := (i + 7) / 8; b < uint64(len(c.dump)); b++ {
			if v := c.dump[b]; v != 0 {
				p := c.start + b*8 + uint64(bits.TrailingZeros8(v))
				return min(p, c.maxPFN), nil
			}
		}
		from = c.start + c.chunk
	}
	return c.maxPFN, nil
}

// pfnAfter is NextPFNAfter of a writer at next. An error is dropped here:
// the writer meets it again, from the memo-less call, when next is
// written.
func pfnAfter(c *bitCursor, next, maxPFN uint64) (uint64, bool) {
	p, err := c.nextDumpable(next + 1)
	if err != nil || p >= maxPFN {
		return 0, false
	}
	return p, true
}

// popcount returns the number of set bits in b.
func popcount(b []byte) uint64 {
	var n int
	for len(b) >= 8 {
		n += bits.OnesCount64(uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
			uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56)
		b = b[8:]
	}
	for _, v := range b {
		n += bits.OnesCount8(v)
	}
	return uint64(n)
}
