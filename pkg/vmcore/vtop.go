package vmcore

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
)

// pageTables is one architecture's page-table format: how to read an
// entry. The walk itself (Translator.resolve) is shared: both x86_64 and
// arm64 use radix trees of 8-byte entries, one table per page.
type pageTables interface {
	// valid reports whether a table or block entry (above the last level)
	// at a level whose entries each span 1<<shift bytes maps anything.
	valid(e uint64, shift uint) bool
	// block reports whether a valid entry at a level whose entries each
	// span 1<<shift bytes maps a block of that size, not a next table.
	block(e uint64, shift uint) bool
	// leaf reports whether a last-level entry maps a page.
	leaf(e uint64) bool
	// addr returns the physical address an entry holds.
	addr(e uint64) uint64
}

// Translator translates kernel virtual addresses to physical addresses by
// walking the dead kernel's page tables: x86_64 (4 or 5 levels, 1 GiB and
// 2 MiB pages) or arm64 (4, 16 or 64 KiB granules, 2 to 4 levels, block
// mappings). It caches the last region that one last-level table covers
// (2 MiB with 4 KiB pages) and that table, so it is cheap for sequential
// reads such as the vmemmap. A Translator is not safe for concurrent use;
// make one per goroutine.
type Translator struct {
	mem       PhysReader
	pt        pageTables
	root      uint64 // physical address of the top-level table
	topShift  uint   // bytes one top-level entry spans, log2
	topIndex  uint64 // mask of the top-level index
	levelBits uint   // index bits of each lower level
	pageShift uint
	regShift  uint // bytes one last-level table spans, log2

	// cache of the last region resolved
	region   uint64 // vaddr >> regShift, valid if haveReg
	haveReg  bool
	regLarge bool     // region mapped by a block starting at regPhys
	regPhys  uint64   // large: physical address of the region's start
	regPTE   []uint64 // else: the region's last-level table
	tableBuf []byte
}

// NewTranslator builds a translator for the machine of the core's ELF
// header (see NewTranslator).
func (c *Core) NewTranslator() (*Translator, error) {
	info, err := c.VMCOREINFO()
	if err != nil {
		return nil, err
	}
	return NewTranslator(c, info, c.Machine())
}

// PhysReader reads the dead kernel's physical memory: a Core, or a
// kdump-compressed dump.
type PhysReader interface {
	ReadPhys(buf []byte, paddr uint64) error
}

// NewTranslator builds a translator over any physical memory reader, e.g.
// a kdump-compressed dump, with the VMCOREINFO it carries, for the dead
// kernel's machine (the ELF header's e_machine, or the dump header's
// utsname machine: never the machine this program runs on).
func NewTranslator(mem PhysReader, info *VMCOREINFO, m elf.Machine) (*Translator, error) {
	var (
		t   *Translator
		err error
	)
	switch m {
	case elf.EM_X86_64:
		t, err = newX86Translator(info)
	case elf.EM_AARCH64:
		t, err = newARM64Translator(info)
	default:
		return nil, fmt.Errorf("vmcore: page tables of machine %v are not supported (x86_64 and aarch64 are)", m)
	}
	if err != nil {
		return nil, fmt.Errorf("vmcore: %w", err)
	}
	t.mem = mem
	t.regShift = t.pageShift + t.levelBits
	t.regPTE = make([]uint64, 1<<t.levelBits)
	t.tableBuf = make([]byte, 8<<t.levelBits)
	if t.root&(1<<t.pageShift-1) != 0 {
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

// resolve fills the cache for the region holding vaddr: the entries above
// the last level, down to the one that spans a whole region, then that
// region's last-level table.
func (t *Translator) resolve(vaddr uint64) error {
	t.haveReg = false
	table := t.root
	mask := t.topIndex
	for shift := t.topShift; shift >= t.regShift; shift -= t.levelBits {
		e, err := t.entry(table, (vaddr>>shift)&mask)
		if err != nil {
			return tableError(vaddr, table, err)
		}
		if !t.pt.valid(e, shift) {
			return fmt.Errorf("virtual address %#x: %w", vaddr, ErrNotMapped)
		}
		if t.pt.block(e, shift) {
			span := uint64(1) << shift
			t.region, t.haveReg, t.regLarge = vaddr>>t.regShift, true, true
			t.regPhys = t.pt.addr(e)&^(span-1) + vaddr&(span-1)&^(1<<t.regShift-1)
			return nil
		}
		table = t.pt.addr(e)
		mask = 1<<t.levelBits - 1
	}
	if err := t.mem.ReadPhys(t.tableBuf, table); err != nil {
		return tableError(vaddr, table, err)
	}
	for i := range t.regPTE {
		t.regPTE[i] = binary.LittleEndian.Uint64(t.tableBuf[i*8:])
	}
	t.region, t.haveReg, t.regLarge = vaddr>>t.regShift, true, false
	return nil
}

// translate returns the physical address of vaddr and how many bytes from
// it are physically contiguous within the mapping (up to the end of its
// page or region).
func (t *Translator) translate(vaddr uint64) (uint64, uint64, error) {
	if !t.haveReg || t.region != vaddr>>t.regShift {
		if err := t.resolve(vaddr); err != nil {
			return 0, 0, err
		}
	}
	if t.regLarge {
		off := vaddr & (1<<t.regShift - 1)
		return t.regPhys + off, 1<<t.regShift - off, nil
	}
	e := t.regPTE[(vaddr>>t.pageShift)&(1<<t.levelBits-1)]
	if !t.pt.leaf(e) {
		return 0, 0, fmt.Errorf("virtual address %#x: %w", vaddr, ErrNotMapped)
	}
	off := vaddr & (1<<t.pageShift - 1)
	return t.pt.addr(e)&^(1<<t.pageShift-1) + off, 1<<t.pageShift - off, nil
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
		// Merge physically contiguous pages into one read.
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
