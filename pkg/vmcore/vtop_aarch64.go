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
// is right for either. 4 and 16 KiB granules with 52-bit addresses (LPA2,
// TCR_EL1.DS=1) keep address bits 49 down to the granule in place and move
// bits 51:50 into bits 9:8, the shareability field of the other format.
const (
	arm64Valid     = 1 << 0
	arm64Table     = 1 << 1
	arm64OAMask    = 0x0000_ffff_ffff_f000 // bits 47:12
	arm64OAHiMask  = 0xf000                // 64 KiB granule: bits 15:12 = PA 51:48
	arm64LPA2Mask  = 0x0003_ffff_ffff_f000 // LPA2: bits 49:12
	arm64LPA2Hi    = 0x300                 // LPA2: bits 9:8 = PA 51:50
	arm64MaxBlock  = 30                    // largest block without LPA2: 1 GiB (4 KiB granule level 1)
	arm64MinVABits = 36
)

// arm64Tables reads arm64 descriptors of one granule.
type arm64Tables struct {
	pageShift uint
	lpa2      bool
	maxBlock  uint // log2 of the largest block the format allows
}

// valid accepts a valid descriptor; a block where the granule allows none
// (without LPA2 above 1 GiB: level 0 of 4 KiB, level 1 of 16 and 64 KiB;
// with it, above level 0 of 4 KiB and level 1 of 16 KiB) is invalid.
func (a arm64Tables) valid(e uint64, shift uint) bool {
	return e&arm64Valid != 0 && (e&arm64Table != 0 || shift <= a.maxBlock)
}
func (a arm64Tables) block(e uint64, shift uint) bool { return e&arm64Table == 0 }
func (a arm64Tables) leaf(e uint64) bool              { return e&(arm64Valid|arm64Table) == arm64Valid|arm64Table }
func (a arm64Tables) addr(e uint64) uint64 {
	if a.lpa2 {
		return e&arm64LPA2Mask&^(1<<a.pageShift-1) | (e&arm64LPA2Hi)<<42
	}
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
	t1sz, haveT1SZ := info.Number("TCR_EL1_T1SZ")
	if haveT1SZ && (t1sz < 64-vaBits || t1sz > 64-arm64MinVABits+4) {
		return nil, formatError(-1, "arm64 NUMBER(TCR_EL1_T1SZ)=%d does not fit NUMBER(VA_BITS)=%d", t1sz, vaBits)
	}
	pt := arm64Tables{pageShift: pageShift, maxBlock: arm64MaxBlock}
	walkBits := uint(vaBits)
	if vaBits > 48 && pageShift != 16 {
		// A 52-bit kernel with 4 or 16 KiB pages (Debian 13's arm64
		// kernels) runs with LPA2 where the CPU has it, and then with
		// 52-bit addresses (TCR_EL1.T1SZ = 12); on a CPU without it the
		// kernel falls back to 48 bits and the usual descriptors.
		if !haveT1SZ {
			return nil, fmt.Errorf("arm64 kernel with %d-bit virtual addresses and %d KiB pages: VMCOREINFO lacks NUMBER(TCR_EL1_T1SZ), needed to tell whether it ran with LPA2", vaBits, ps>>10)
		}
		switch {
		case t1sz == 64-52:
			pt.lpa2 = true
			pt.maxBlock = pageShift + 3*(pageShift-3) // level 0 of 4 KiB (512 GiB), level 1 of 16 KiB (64 GiB)
			if pageShift == 14 {
				pt.maxBlock = pageShift + 2*(pageShift-3)
			}
		case pageShift == 12:
			// The kernel folds its fifth level away: swapper_pg_dir is
			// a 48-bit level 0 table.
			walkBits = 48
		default:
			return nil, fmt.Errorf("arm64 kernel with 52-bit virtual addresses and 16 KiB pages on a CPU without LPA2 (NUMBER(TCR_EL1_T1SZ)=%d) is not supported", t1sz)
		}
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
	levels := (walkBits - 4) / levelBits // ARM64_HW_PGTABLE_LEVELS
	topShift := pageShift + (levels-1)*levelBits
	return &Translator{
		pt:        pt,
		root:      pgd - uint64(voff),
		topShift:  topShift,
		topIndex:  1<<(walkBits-topShift) - 1,
		levelBits: levelBits,
		pageShift: pageShift,
	}, nil
}
