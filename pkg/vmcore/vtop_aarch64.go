package vmcore

import (
	"errors"
	"fmt"
)

// arm64 descriptors (VMSAv8-64 stage 1): bit 0 valid; above the last level
// bit 1 set is a table, clear a block; at the last level bits 1:0 = 3 is a
// page. The output address is bits 47 down to the granule; with 64 KiB
// granules and 52-bit physical addresses (FEAT_LPA) bits 15:12 hold address
// bits 51:48. Those bits are RES0 in a 48-bit descriptor, so reading them
// is right for either. 4 and 16 KiB granules with 52-bit addresses (LPA2)
// move address bits into the shareability field; those are refused.
const (
	arm64Valid     = 1 << 0
	arm64Table     = 1 << 1
	arm64OAMask    = 0x0000_ffff_ffff_f000 // bits 47:12
	arm64OAHiMask  = 0xf000                // 64 KiB granule: bits 15:12 = PA 51:48
	arm64MaxBlock  = 30                    // largest block without LPA2: 1 GiB (4 KiB granule level 1)
	arm64MinVABits = 36
)

// arm64Tables reads arm64 descriptors of one granule.
type arm64Tables struct {
	pageShift uint
}

// valid accepts a valid descriptor; a block where the granule allows none
// (above 1 GiB: level 0 of 4 KiB, level 1 of 16 and 64 KiB) is invalid.
func (a arm64Tables) valid(e uint64, shift uint) bool {
	return e&arm64Valid != 0 && (e&arm64Table != 0 || shift <= arm64MaxBlock)
}
func (a arm64Tables) block(e uint64, shift uint) bool { return e&arm64Table == 0 }
func (a arm64Tables) leaf(e uint64) bool              { return e&(arm64Valid|arm64Table) == arm64Valid|arm64Table }
func (a arm64Tables) addr(e uint64) uint64 {
	p := e & arm64OAMask &^ (1<<a.pageShift - 1)
	if a.pageShift == 16 {
		p |= (e & arm64OAHiMask) << 36
	}
	return p
}

// newARM64Translator reads the arm64 page-table geometry from VMCOREINFO,
// as arch/arm64/kernel/vmcore_info.c writes it: the granule from PAGESIZE,
// the levels from NUMBER(VA_BITS) (the kernel's compile-time size, which
// its swapper_pg_dir is laid out for even when the CPU runs with fewer
// bits: NUMBER(TCR_EL1_T1SZ)), and the root SYMBOL(swapper_pg_dir), a
// kernel image address, at that minus NUMBER(kimage_voffset).
// NUMBER(PHYS_OFFSET) is not needed: the walk reaches the linear map and
// the vmemmap through the tables like any other address.
func newARM64Translator(info *VMCOREINFO) (*Translator, error) {
	ps, ok := info.PageSize()
	if !ok {
		return nil, errors.New("VMCOREINFO lacks PAGESIZE (needed for the arm64 granule)")
	}
	var pageShift uint
	switch ps {
	case 4096:
		pageShift = 12
	case 16384:
		pageShift = 14
	case 65536:
		pageShift = 16
	default:
		return nil, formatError(-1, "arm64 PAGESIZE %d: not a granule (4096, 16384, 65536)", ps)
	}
	vaBits, ok := info.Number("VA_BITS")
	if !ok {
		return nil, errors.New("VMCOREINFO lacks NUMBER(VA_BITS) (needed for the arm64 page-table levels)")
	}
	if vaBits < arm64MinVABits || vaBits > 52 {
		return nil, formatError(-1, "arm64 NUMBER(VA_BITS)=%d out of range", vaBits)
	}
	if vaBits > 48 && pageShift != 16 {
		return nil, fmt.Errorf("arm64 kernels with %d-bit virtual addresses and %d KiB pages use LPA2 descriptors, which are not supported (48-bit kernels and 64 KiB pages are)", vaBits, ps>>10)
	}
	if t1sz, ok := info.Number("TCR_EL1_T1SZ"); ok && (t1sz < 64-vaBits || t1sz > 64-arm64MinVABits+4) {
		return nil, formatError(-1, "arm64 NUMBER(TCR_EL1_T1SZ)=%d does not fit NUMBER(VA_BITS)=%d", t1sz, vaBits)
	}
	voff, ok := info.Number("kimage_voffset")
	if !ok {
		return nil, errors.New("VMCOREINFO lacks NUMBER(kimage_voffset) (needed for the arm64 page table root)")
	}
	pgd, ok := info.Symbol("swapper_pg_dir")
	if !ok {
		return nil, errors.New("VMCOREINFO lacks SYMBOL(swapper_pg_dir)")
	}
	levelBits := pageShift - 3
	levels := (uint(vaBits) - 4) / levelBits // ARM64_HW_PGTABLE_LEVELS
	topShift := pageShift + (levels-1)*levelBits
	return &Translator{
		pt:        arm64Tables{pageShift: pageShift},
		root:      pgd - uint64(voff),
		topShift:  topShift,
		topIndex:  1<<(uint(vaBits)-topShift) - 1,
		levelBits: levelBits,
		pageShift: pageShift,
	}, nil
}
