package vmcore

import (
	"errors"
)

// startKernelMap is __START_KERNEL_map on x86_64: kernel text addresses are
// physical addresses + startKernelMap - phys_base.
const startKernelMap = 0xffffffff80000000

const (
	x86PTEMask = 0x000ffffffffff000 // physical address bits of a page-table entry
	x86Present = 1 << 0
	x86PSE     = 1 << 7 // large page (in PUD and PMD entries)
)

// x86Tables reads x86_64 entries: bit 0 present, bit 7 a 1 GiB or 2 MiB
// page, the address in bits 12-51 less the memory encryption bit.
type x86Tables struct{ addrMask uint64 }

func (x x86Tables) valid(e uint64, shift uint) bool { return e&x86Present != 0 }
func (x x86Tables) block(e uint64, shift uint) bool {
	return (shift == 30 || shift == 21) && e&x86PSE != 0
}
func (x x86Tables) leaf(e uint64) bool   { return e&x86Present != 0 }
func (x x86Tables) addr(e uint64) uint64 { return e & x.addrMask }

// newX86Translator reads the x86_64 page-table geometry from VMCOREINFO:
// the root is SYMBOL(init_top_pgt) - __START_KERNEL_map + NUMBER(phys_base);
// five levels when NUMBER(pgtable_l5_enabled) is 1; NUMBER(sme_mask) is
// removed from entries.
func newX86Translator(info *VMCOREINFO) (*Translator, error) {
	top, ok := info.Symbol("init_top_pgt")
	if !ok {
		if top, ok = info.Symbol("swapper_pg_dir"); !ok {
			return nil, errors.New("VMCOREINFO lacks SYMBOL(init_top_pgt) and SYMBOL(swapper_pg_dir)")
		}
	}
	physBase, ok := info.PhysBase()
	if !ok {
		return nil, errors.New("VMCOREINFO lacks NUMBER(phys_base)")
	}
	if top < startKernelMap {
		return nil, formatError(-1, "page table root %#x is not a kernel text address", top)
	}
	pt := x86Tables{addrMask: x86PTEMask}
	if sme, ok := info.Number("sme_mask"); ok {
		pt.addrMask &^= uint64(sme)
	}
	t := &Translator{pt: pt, root: top - startKernelMap + physBase, topShift: 39, topIndex: 511, levelBits: 9, pageShift: 12}
	if l5, ok := info.Number("pgtable_l5_enabled"); ok && l5 != 0 {
		t.topShift = 48
	}
	return t, nil
}
