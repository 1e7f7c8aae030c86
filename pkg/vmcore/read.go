package vmcore

import (
	"fmt"
	"sort"
)

// ReadPhys reads len(buf) bytes of physical memory at paddr. Bytes in the
// zero-filled tail of a segment (memsz > filesz) read as zeros; a byte in no
// segment is an error wrapping ErrNotRAM.
func (c *Core) ReadPhys(buf []byte, paddr uint64) error {
	return c.readPhys(buf, paddr, false)
}

// readPhys reads physical memory; with lax, bytes in no segment read as zeros.
func (c *Core) readPhys(buf []byte, paddr uint64, lax bool) error {
	for len(buf) > 0 {
		i, seg := c.segment(paddr)
		if seg == nil {
			// Not covered: up to the next segment's start.
			n := uint64(len(buf))
			if i < len(c.byPhys) && c.byPhys[i].PhysStart-paddr < n {
				n = c.byPhys[i].PhysStart - paddr
			}
			if !lax {
				return fmt.Errorf("physical address %#x: %w", paddr, ErrNotRAM)
			}
			clear(buf[:n])
			buf, paddr = buf[n:], paddr+n
			continue
		}
		rel := paddr - seg.PhysStart
		n := min(uint64(len(buf)), seg.MemSize-rel)
		if rel < seg.FileSize {
			m := min(n, seg.FileSize-rel)
			if err := c.readFull(buf[:m], seg.FileOffset+rel); err != nil {
				return fmt.Errorf("physical address %#x: %w", paddr, err)
			}
			clear(buf[m:n])
		} else {
			clear(buf[:n])
		}
		buf, paddr = buf[n:], paddr+n
	}
	return nil
}

// segment returns the last segment starting at or before paddr that
// covers it (segments may overlap: the kernel text segment duplicates the
// direct map), or nil, and the index of the first segment after paddr.
func (c *Core) segment(paddr uint64) (int, *Segment) {
	i := sort.Search(len(c.byPhys), func(i int) bool { return c.byPhys[i].PhysStart > paddr })
	for j := i - 1; j >= 0; j-- {
		if s := &c.byPhys[j]; paddr < s.PhysEnd() {
			return i, s
		}
	}
	return i, nil
}

// segmentAt returns the segment that holds paddr, or nil.
func (c *Core) segmentAt(paddr uint64) *Segment {
	_, s := c.segment(paddr)
	return s
}

// ReadPage reads page frame pfn into buf (len(buf) >= PageSize()). Parts of
// a RAM page outside any segment read as zeros; a page that is not RAM is an
// error wrapping ErrNotRAM.
func (c *Core) ReadPage(pfn uint64, buf []byte) error {
	return c.ReadPages(pfn, 1, buf)
}

// ReadPages reads n consecutive page frames starting at pfn into buf
// (len(buf) >= n*PageSize()); pages that are not RAM read as zeros, but the
// first one must be RAM.
func (c *Core) ReadPages(pfn uint64, n int, buf []byte) error {
	ps := uint64(c.pageSize)
	if n < 0 || uint64(len(buf)) < uint64(n)*ps {
		return fmt.Errorf("vmcore: ReadPages(%#x, %d): buffer of %d bytes too small", pfn, n, len(buf))
	}
	if n == 0 {
		return nil
	}
	if pfn > (1<<64-1)/ps || !c.IsRAM(pfn) {
		return fmt.Errorf("vmcore: page frame %#x: %w", pfn, ErrNotRAM)
	}
	if err := c.readPhys(buf[:uint64(n)*ps], pfn*ps, true); err != nil {
		return fmt.Errorf("vmcore: page frame %#x: %w", pfn, err)
	}
	return nil
}

// RAMBitmap sets bit i of bits (byte i/8, bit i%8) for each page frame
// startPFN+i, i < n, that is RAM, and clears the others: the first bitmap
// of the kdump-compressed format. len(bits) must be >= (n+7)/8.
func (c *Core) RAMBitmap(startPFN uint64, n int, bits []byte) error {
	if n < 0 || len(bits) < (n+7)/8 {
		return fmt.Errorf("vmcore: RAMBitmap: %d-byte bitmap for %d pages", len(bits), n)
	}
	clear(bits[:(n+7)/8])
	end := startPFN + uint64(n)
	if end < startPFN {
		return fmt.Errorf("vmcore: RAMBitmap: page frame range %#x+%d overflows", startPFN, n)
	}
	for _, r := range c.ram {
		lo, hi := max(r.start, startPFN), min(r.end, end)
		for p := lo; p < hi; p++ {
			i := p - startPFN
			bits[i>>3] |= 1 << (i & 7)
		}
	}
	return nil
}
