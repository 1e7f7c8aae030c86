package vmcore

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// startKernelMap is __START_KERNEL_map on x86_64: kernel text addresses are
// physical addresses + startKernelMap - phys_base.
const startKernelMap = 0xffffffff80000000

const (
	pteMask    = 0x000ffffffffff000 // physical address bits of a page-table entry
	ptePresent = 1 << 0
	ptePSE     = 1 << 7 // large page (in PUD and PMD entries)
	size2M     = 1 << 21
	size1G     = 1 << 30
)

// Translator translates x86_64 kernel virtual addresses to physical
// addresses by walking the dead kernel's page tables (4 or 5 levels, 1 GiB
// and 2 MiB pages). It caches the last 2 MiB translation and page table, so
// it is cheap for sequential reads such as the vmemmap. A Translator is not
// safe for concurrent use; make one per goroutine.
type Translator struct {
	mem      PhysReader
	root     uint64 // physical address of the top-level page table
	levels   int
	addrMask uint64 // entry bits that hold a physical address

	// cache of the last 2 MiB region resolved
	region    uint64 // vaddr >> 21, valid if haveReg
	haveReg   bool
	regLarge  bool   // region mapped by a large page starting at regPhys
	regPhys   uint64 // large: physical address of the region's start
	regPTE    [512]uint64
	regPTEPhy uint64
}

// NewTranslator builds a translator from VMCOREINFO: the page table root is
// SYMBOL(init_top_pgt) - __START_KERNEL_map + NUMBER(phys_base); five
// levels when NUMBER(pgtable_l5_enabled) is 1; NUMBER(sme_mask) is removed
// from entries.
func (c *Core) NewTranslator() (*Translator, error) {
	info, err := c.VMCOREINFO()
	if err != nil {
		return nil, err
	}
	return NewTranslator(c, info)
}

// PhysReader reads the dead kernel's physical memory: a Core, or a
// kdump-compressed dump.
type PhysReader interface {
	ReadPhys(buf []byte, paddr uint64) error
}

// NewTranslator builds a translator over any physical memory reader, e.g.
// a kdump-compressed dump, with the VMCOREINFO it carries.
func NewTranslator(mem PhysReader, info *VMCOREINFO) (*Translator, error) {
	top, ok := info.Symbol("init_top_pgt")
	if !ok {
		if top, ok = info.Symbol("swapper_pg_dir"); !ok {
			return nil, errors.New("vmcore: VMCOREINFO lacks SYMBOL(init_top_pgt) and SYMBOL(swapper_pg_dir)")
		}
	}
	physBase, ok := info.PhysBase()
	if !ok {
		return nil, errors.New("vmcore: VMCOREINFO lacks NUMBER(phys_base)")
	}
	if top < startKernelMap {
		return nil, fmt.Errorf("vmcore: %w", formatError(-1, "page table root %#x is not a kernel text address", top))
	}
	t := &Translator{mem: mem, root: top - startKernelMap + physBase, levels: 4, addrMask: pteMask}
	if l5, ok := info.Number("pgtable_l5_enabled"); ok && l5 != 0 {
		t.levels = 5
	}
	if sme, ok := info.Number("sme_mask"); ok {
		t.addrMask &^= uint64(sme)
	}
	if t.root&0xfff != 0 {
		return nil, fmt.Errorf("vmcore: %w", formatError(offset(t.root), "page table root %#x is not page aligned", t.root))
	}
	return t, nil
}

func (t *Translator) entry(table uint64, index uint64) (uint64, error) {
	var b [8]byte
	if err := t.mem.ReadPhys(b[:], table+index*8); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(b[:]), nil
}

// tableError wraps the error of reading a page table at paddr for vaddr:
// a table outside the dump's memory (ErrNotRAM) means a corrupt entry or
// root, a FormatError; other errors (I/O) stay as they are.
func tableError(vaddr, paddr uint64, err error) error {
	msg := fmt.Sprintf("virtual address %#x: page table", vaddr)
	if errors.Is(err, ErrNotRAM) {
		return &FormatError{Off: offset(paddr), Msg: msg, Err: err}
	}
	return fmt.Errorf("%s: %w", msg, err)
}

// resolve fills the cache for the 2 MiB region holding vaddr.
func (t *Translator) resolve(vaddr uint64) error {
	t.haveReg = false
	table := t.root
	shift := uint(39)
	if t.levels == 5 {
		shift = 48
	}
	for ; shift > 21; shift -= 9 {
		e, err := t.entry(table, (vaddr>>shift)&511)
		if err != nil {
			return tableError(vaddr, table, err)
		}
		if e&ptePresent == 0 {
			return fmt.Errorf("virtual address %#x: %w", vaddr, ErrNotMapped)
		}
		if shift == 30 && e&ptePSE != 0 { // 1 GiB page
			t.region, t.haveReg, t.regLarge = vaddr>>21, true, true
			t.regPhys = e&t.addrMask&^(size1G-1) + vaddr&(size1G-1)&^(size2M-1)
			return nil
		}
		table = e & t.addrMask
	}
	e, err := t.entry(table, (vaddr>>21)&511) // PMD
	if err != nil {
		return tableError(vaddr, table, err)
	}
	if e&ptePresent == 0 {
		return fmt.Errorf("virtual address %#x: %w", vaddr, ErrNotMapped)
	}
	if e&ptePSE != 0 {
		t.region, t.haveReg, t.regLarge = vaddr>>21, true, true
		t.regPhys = e & t.addrMask &^ (size2M - 1)
		return nil
	}
	pt := e & t.addrMask
	var b [4096]byte
	if err := t.mem.ReadPhys(b[:], pt); err != nil {
		return tableError(vaddr, pt, err)
	}
	for i := range t.regPTE {
		t.regPTE[i] = binary.LittleEndian.Uint64(b[i*8:])
	}
	t.region, t.haveReg, t.regLarge, t.regPTEPhy = vaddr>>21, true, false, pt
	return nil
}

// translate returns the physical address of vaddr and how many bytes from
// it are physically contiguous within the mapping (up to the end of its
// 4 KiB page or 2 MiB region).
func (t *Translator) translate(vaddr uint64) (uint64, uint64, error) {
	if !t.haveReg || t.region != vaddr>>21 {
		if err := t.resolve(vaddr); err != nil {
			return 0, 0, err
		}
	}
	if t.regLarge {
		off := vaddr & (size2M - 1)
		return t.regPhys + off, size2M - off, nil
	}
	e := t.regPTE[(vaddr>>12)&511]
	if e&ptePresent == 0 {
		return 0, 0, fmt.Errorf("virtual address %#x: %w", vaddr, ErrNotMapped)
	}
	off := vaddr & 0xfff
	return e&t.addrMask + off, 0x1000 - off, nil
}

// VirtToPhys translates a kernel virtual address.
func (t *Translator) VirtToPhys(vaddr uint64) (uint64, error) {
	p, _, err := t.translate(vaddr)
	if err != nil {
		return 0, fmt.Errorf("vmcore: %w", err)
	}
	return p, nil
}

// ReadVirt reads len(buf) bytes of kernel virtual memory at vaddr.
func (t *Translator) ReadVirt(vaddr uint64, buf []byte) error {
	for len(buf) > 0 {
		p, n, err := t.translate(vaddr)
		if err != nil {
			return fmt.Errorf("vmcore: %w", err)
		}
		n = min(n, uint64(len(buf)))
		// Merge physically contiguous 4 KiB pages into one read.
		for n < uint64(len(buf)) {
			p2, n2, err := t.translate(vaddr + n)
			if err != nil || p2 != p+n {
				break
			}
			n = min(n+n2, uint64(len(buf)))
		}
		if err := t.mem.ReadPhys(buf[:n], p); err != nil {
			return fmt.Errorf("vmcore: virtual address %#x: %w", vaddr, err)
		}
		buf, vaddr = buf[n:], vaddr+n
	}
	return nil
}
