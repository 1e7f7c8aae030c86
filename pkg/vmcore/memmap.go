package vmcore

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Flags in mem_section.section_mem_map.
const (
	sectionMarkedPresent = 1 << 0
	sectionHasMemMap     = 1 << 1
	sectionMapMask       = ^uint64(0x3f) // above SECTION_MAP_LAST_BIT (1<<5) and the 6.x flag bits
	maxSections          = 1 << 24
)

// MemMap locates the kernel's array of struct page (SPARSEMEM, as on every
// x86_64 and arm64 kernel) through mem_section and reads struct pages.
// section_mem_map holds the vmemmap address of the section's first struct
// page less its pfn (sparse_encode_mem_map), so neither SYMBOL(vmemmap)
// nor arm64's NUMBER(VMEMMAP_START) is needed: the page tables map it. It is not safe
// for concurrent use (it owns a Translator).
type MemMap struct {
	c           *Core
	t           *Translator
	pageSize    uint64   // SIZE(page)
	sectionBits uint     // log2(page frames per section)
	memmap      []uint64 // per section: virtual address of its first struct page, 0 if none
}

// NewMemMap reads mem_section (SYMBOL(mem_section), LENGTH(mem_section),
// SIZE(mem_section), OFFSET(mem_section.section_mem_map),
// NUMBER(SECTION_SIZE_BITS), NUMBER(MAX_PHYSMEM_BITS), SIZE(page)) for all
// sections up to Core.MaxPFN, using t to read kernel memory.
func (c *Core) NewMemMap(t *Translator) (*MemMap, error) {
	info, err := c.VMCOREINFO()
	if err != nil {
		return nil, err
	}
	need := func(kind string, v int64, ok bool) error {
		if !ok {
			return fmt.Errorf("vmcore: VMCOREINFO lacks %s", kind)
		}
		if v < 0 || v > 1<<20 {
			return fmt.Errorf("vmcore: %w", formatError(-1, "VMCOREINFO %s=%d out of range", kind, v))
		}
		return nil
	}
	ms, ok := info.Symbol("mem_section")
	if !ok {
		return nil, errors.New("vmcore: VMCOREINFO lacks SYMBOL(mem_section) (FLATMEM kernels are not supported)")
	}
	roots, ok1 := info.Length("mem_section")
	msSize, ok2 := info.Size("mem_section")
	mapOff, ok3 := info.Offset("mem_section.section_mem_map")
	secBits, ok4 := info.Number("SECTION_SIZE_BITS")
	physBits, ok5 := info.Number("MAX_PHYSMEM_BITS")
	pgSize, ok6 := info.Size("page")
	for _, e := range []error{
		need("LENGTH(mem_section)", roots, ok1), need("SIZE(mem_section)", msSize, ok2),
		need("OFFSET(mem_section.section_mem_map)", mapOff, ok3), need("NUMBER(SECTION_SIZE_BITS)", secBits, ok4),
		need("NUMBER(MAX_PHYSMEM_BITS)", physBits, ok5), need("SIZE(page)", pgSize, ok6),
	} {
		if e != nil {
			return nil, e
		}
	}
	pageShift := uint(0)
	for 1<<pageShift < c.pageSize {
		pageShift++
	}
	if pgSize < 8 || msSize < 8 || mapOff+8 > msSize || physBits > 64 || secBits <= int64(pageShift) || secBits > physBits {
		return nil, fmt.Errorf("vmcore: %w", formatError(-1, "inconsistent mem_section geometry: SIZE(page)=%d SIZE(mem_section)=%d OFFSET(section_mem_map)=%d SECTION_SIZE_BITS=%d MAX_PHYSMEM_BITS=%d",
			pgSize, msSize, mapOff, secBits, physBits))
	}
	m := &MemMap{c: c, t: t, pageSize: uint64(pgSize), sectionBits: uint(secBits) - pageShift}
	nrSections := uint64(1) << (uint(physBits) - uint(secBits))
	perRoot := uint64(c.pageSize) / uint64(msSize) // SECTIONS_PER_ROOT with SPARSEMEM_EXTREME
	extreme := true
	switch {
	case uint64(roots)*perRoot == nrSections:
	case uint64(roots) == nrSections:
		extreme, perRoot = false, nrSections
	default:
		return nil, fmt.Errorf("vmcore: %w", formatError(-1, "LENGTH(mem_section)=%d fits neither SPARSEMEM_EXTREME (%d roots) nor a static array (%d sections)",
			roots, nrSections/perRoot, nrSections))
	}
	used := (c.MaxPFN() + (1 << m.sectionBits) - 1) >> m.sectionBits
	used = min(used, nrSections)
	if used > maxSections {
		return nil, fmt.Errorf("vmcore: %w", formatError(-1, "%d memory sections: too many", used))
	}
	m.memmap = make([]uint64, used)
	le := binary.LittleEndian
	rootBuf := make([]byte, perRoot*uint64(msSize))
	for r := uint64(0); r*perRoot < used; r++ {
		base := ms + r*perRoot*uint64(msSize)
		if extreme {
			var p [8]byte
			if err := t.ReadVirt(ms+r*8, p[:]); err != nil {
				return nil, fmt.Errorf("vmcore: mem_section root %d: %w", r, err)
			}
			if base = le.Uint64(p[:]); base == 0 {
				continue
			}
		}
		n := min(perRoot, used-r*perRoot)
		if err := t.ReadVirt(base, rootBuf[:n*uint64(msSize)]); err != nil {
			return nil, fmt.Errorf("vmcore: mem_section root %d: %w", r, err)
		}
		for i := uint64(0); i < n; i++ {
			smm := le.Uint64(rootBuf[i*uint64(msSize)+uint64(mapOff):])
			if smm&sectionMarkedPresent == 0 || smm&sectionHasMemMap == 0 {
				continue
			}
			nr := r*perRoot + i
			m.memmap[nr] = smm&sectionMapMask + (nr<<m.sectionBits)*m.pageSize
		}
	}
	return m, nil
}

// StructPageSize returns SIZE(page).
func (m *MemMap) StructPageSize() int { return int(m.pageSize) }

// SectionPFNs returns the number of page frames per memory section.
func (m *MemMap) SectionPFNs() uint64 { return 1 << m.sectionBits }

// Addr returns the virtual address of the struct page of pfn.
func (m *MemMap) Addr(pfn uint64) (uint64, error) {
	nr := pfn >> m.sectionBits
	if nr >= uint64(len(m.memmap)) || m.memmap[nr] == 0 {
		return 0, fmt.Errorf("vmcore: page frame %#x: section %d: %w", pfn, nr, ErrNoMemMap)
	}
	return m.memmap[nr] + (pfn-nr<<m.sectionBits)*m.pageSize, nil
}

// ReadPageStructs reads the struct pages of page frames startPFN, ...,
// startPFN+n-1 into buf (len(buf) >= n*StructPageSize()). All of them must
// have a struct page (else an error wrapping ErrNoMemMap or ErrNotMapped).
func (m *MemMap) ReadPageStructs(startPFN uint64, n int, buf []byte) error {
	if n < 0 || uint64(len(buf)) < uint64(n)*m.pageSize {
		return fmt.Errorf("vmcore: ReadPageStructs: %d-byte buffer for %d struct pages", len(buf), n)
	}
	for n > 0 {
		nr := startPFN >> m.sectionBits
		k := min(uint64(n), (nr+1)<<m.sectionBits-startPFN)
		addr, err := m.Addr(startPFN)
		if err != nil {
			return err
		}
		if err := m.t.ReadVirt(addr, buf[:k*m.pageSize]); err != nil {
			return fmt.Errorf("vmcore: struct page of page frame %#x: %w", startPFN, err)
		}
		buf, startPFN, n = buf[k*m.pageSize:], startPFN+k, n-int(k)
	}
	return nil
}
