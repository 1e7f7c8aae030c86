package vmcore

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// flatMem is physical memory starting at 0, for page-table tests.
type flatMem []byte

func (m flatMem) ReadPhys(buf []byte, paddr uint64) error {
	if paddr > uint64(len(m)) || uint64(len(buf)) > uint64(len(m))-paddr {
		return fmt.Errorf("physical %#x: %w", paddr, ErrNotRAM)
	}
	copy(buf, m[paddr:])
	return nil
}

func (m flatMem) put(table, index, e uint64) { binary.LittleEndian.PutUint64(m[table+index*8:], e) }

const (
	testKimageVoffset = 0xffff800000000000 // kernel image virtual = physical + this
	descTable         = 3                  // valid|table
	descPage          = 3 | 1<<10          // valid|page|AF
	descBlock         = 1 | 1<<10          // valid|AF
)

func arm64Info(t *testing.T, pageSize, vaBits int, extra ...string) *VMCOREINFO {
	t.Helper()
	lines := []string{
		fmt.Sprintf("PAGESIZE=%d", pageSize),
		fmt.Sprintf("SYMBOL(swapper_pg_dir)=%x", uint64(testKimageVoffset)), // root at physical 0
		fmt.Sprintf("NUMBER(VA_BITS)=%d", vaBits),
		fmt.Sprintf("NUMBER(kimage_voffset)=%#x", uint64(testKimageVoffset)),
		"NUMBER(PHYS_OFFSET)=0x40000000",
	}
	info, err := ParseVMCOREINFO([]byte(strings.Join(append(lines, extra...), "\n") + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// TestARM64Granules walks hand-made tables of each granule: the levels
// VA_BITS gives, blocks at the levels that allow them, pages, and 64 KiB
// descriptors holding physical address bits 51:48.
func TestARM64Granules(t *testing.T) {
	type want struct{ va, pa uint64 }
	for _, tc := range []struct {
		name   string
		page   int
		vaBits int
		extra  []string        // more VMCOREINFO lines
		build  func(m flatMem) // root at 0, further tables after it
		wants  []want
		absent []uint64
	}{
		{
			name: "4K/39 three levels", page: 4096, vaBits: 39,
			build: func(m flatMem) {
				// VA bits 38:30 index the root: 0xffffff8000000000 is entry 0.
				m.put(0, 0, 0x1000|descTable)
				m.put(0x1000, 1, 0x40200000|descBlock) // 2 MiB block
				m.put(0x1000, 2, 0x2000|descTable)
				m.put(0x2000, 3, 0x7654000|descPage)
			},
			wants: []want{
				{0xffffff8000200000 + 0x1234, 0x40201234},
				{0xffffff8000400000 + 3*4096 + 5, 0x7654005},
			},
			absent: []uint64{0xffffff8000400000, 0xffffff8040000000, 0xffffffc000200000},
		},
		{
			name: "16K/47 three levels", page: 16384, vaBits: 47,
			build: func(m flatMem) {
				// Shifts 36, 25, 14; the root has 2048 entries.
				m.put(0, 2047, 0x4000|descTable)
				m.put(0x4000, 2047, 0x8000|descTable)
				m.put(0x4000, 2046, 0x42000000|descBlock) // 32 MiB block
				m.put(0x8000, 1, 0x123c000|descPage)
			},
			wants: []want{
				{0xfffffffffe000000 + 0x4000 + 7, 0x123c007},
				{0xfffffffffc000000 + 0x1ffffff, 0x43ffffff},
			},
			absent: []uint64{0xfffffffffe000000},
		},
		{
			name: "64K/48 three levels, 52-bit physical", page: 65536, vaBits: 48,
			build: func(m flatMem) {
				// Shifts 42, 29, 16; the root has 64 entries.
				m.put(0, 63, 0x10000|descTable)
				m.put(0x10000, 8191, 0x20000|descTable)
				m.put(0x10000, 0, 0x60000000|descBlock) // 512 MiB block
				// PA 0x000f_0000_1234_0000: bits 51:48 in descriptor bits 15:12.
				m.put(0x20000, 2, 0x0000_0000_1234_0000|0xf000|descPage)
			},
			wants: []want{
				{0xffffffffe0000000 + 2*65536 + 9, 0x000f_0000_1234_0009},
				{0xfffffc0000000000 + 0x1fffffff, 0x7fffffff},
			},
			absent: []uint64{0xfffffc0020000000},
		},
		{
			name: "64K/52 three levels", page: 65536, vaBits: 52,
			build: func(m flatMem) {
				// The root has 1024 entries; a 48-bit kernel address
				// (0xffff8...) indexes entry 992, where the CPU's TTBR1
				// offset points its 48-bit walk.
				m.put(0, 992, 0x10000|descTable)
				m.put(0x10000, 0, 0x40000000|descBlock)
			},
			wants: []want{{0xffff800000000000 + 0x10, 0x40000010}},
		},
		{
			// Debian 13's arm64 kernels on a CPU with LPA2: five levels
			// (shifts 48, 39, 30, 21, 12; 16 root entries), physical
			// address bits 51:50 in descriptor bits 9:8, blocks from
			// level 0.
			name: "4K/52 LPA2 five levels", page: 4096, vaBits: 52, extra: []string{"NUMBER(TCR_EL1_T1SZ)=0xc"},
			build: func(m flatMem) {
				m.put(0, 0, 0x1000|descTable)
				m.put(0x1000, 0, 0x2000|descTable)
				m.put(0x1000, 1, 0x80_0000_0000|descBlock)    // 512 GiB block
				m.put(0x2000, 1, 0x4000_0000|0x300|descBlock) // 1 GiB block at PA 0x000c_0000_4000_0000
				m.put(0x2000, 2, 0x3000|descTable)
				m.put(0x3000, 0, 0x4000|descTable)
				m.put(0x4000, 5, 0x0003_0000_1234_5000|0x100|descPage)
			},
			wants: []want{
				{0xfff0_0000_8000_0000 + 5*4096 + 7, 0x0007_0000_1234_5007},
				{0xfff0_0000_4000_0000 + 0x3fff_ffff, 0x000c_0000_7fff_ffff},
				{0xfff0_0080_0000_0000 + 0x123, 0x80_0000_0123},
			},
			absent: []uint64{0xffff_8000_0000_0000, 0xfff0_0000_8000_0000},
		},
		{
			// The same kernel on a CPU without LPA2: 48 bits, four
			// levels, bits 9:8 are shareability, not address.
			name: "4K/52 kernel, 48-bit CPU", page: 4096, vaBits: 52, extra: []string{"NUMBER(TCR_EL1_T1SZ)=0x10"},
			build: func(m flatMem) {
				m.put(0, 256, 0x1000|descTable)
				m.put(0x1000, 0, 0x40000000|0x300|descBlock)
			},
			wants: []want{{0xffff800000000000 + 0x10, 0x40000010}},
		},
		{
			name: "4K/48 level-0 block is invalid", page: 4096, vaBits: 48,
			build: func(m flatMem) {
				m.put(0, 256, 0x40000000|descBlock)
			},
			absent: []uint64{0xffff800000000000},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := make(flatMem, 1<<20)
			tc.build(m)
			tr, err := NewTranslator(m, arm64Info(t, tc.page, tc.vaBits, tc.extra...), elf.EM_AARCH64)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.wants {
				if pa, err := tr.VirtToPhys(w.va); err != nil || pa != w.pa {
					t.Errorf("VirtToPhys(%#x) = %#x, %v; want %#x", w.va, pa, err, w.pa)
				}
			}
			for _, va := range tc.absent {
				if pa, err := tr.VirtToPhys(va); !errors.Is(err, ErrNotMapped) {
					t.Errorf("VirtToPhys(%#x) = %#x, %v; want not mapped", va, pa, err)
				}
			}
		})
	}
}

// TestARM64Refusals checks that what the walk cannot do is refused with
// the missing or unsupported thing named.
func TestARM64Refusals(t *testing.T) {
	m := make(flatMem, 1<<16)
	for _, tc := range []struct {
		name string
		info *VMCOREINFO
		want string
	}{
		{"52-bit without T1SZ", arm64Info(t, 4096, 52), "NUMBER(TCR_EL1_T1SZ), needed to tell whether it ran with LPA2"},
		{"16K 52-bit without T1SZ", arm64Info(t, 16384, 52), "LPA2"},
		{"16K 52-bit on a 48-bit CPU", arm64Info(t, 16384, 52, "NUMBER(TCR_EL1_T1SZ)=0x10"), "without LPA2"},
		{"granule", arm64Info(t, 8192, 48), "not a granule"},
		{"VA_BITS", mustInfo(t, "PAGESIZE=4096\nNUMBER(kimage_voffset)=0x0\nSYMBOL(swapper_pg_dir)=0\n"), "NUMBER(VA_BITS)"},
		{"kimage_voffset", mustInfo(t, "PAGESIZE=4096\nNUMBER(VA_BITS)=48\nSYMBOL(swapper_pg_dir)=0\n"), "NUMBER(kimage_voffset)"},
		{"swapper_pg_dir", mustInfo(t, "PAGESIZE=4096\nNUMBER(VA_BITS)=48\nNUMBER(kimage_voffset)=0x0\n"), "SYMBOL(swapper_pg_dir)"},
		{"T1SZ", arm64Info(t, 4096, 48, "NUMBER(TCR_EL1_T1SZ)=0xc"), "TCR_EL1_T1SZ"},
		{"root alignment", arm64Info(t, 4096, 48, "SYMBOL(swapper_pg_dir)=ffff800000000008"), "not page aligned"},
	} {
		_, err := NewTranslator(m, tc.info, elf.EM_AARCH64)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error naming %q", tc.name, err, tc.want)
		}
	}
	if _, err := NewTranslator(m, arm64Info(t, 4096, 48), elf.EM_RISCV); err == nil || !strings.Contains(err.Error(), "not supported") {
		t.Errorf("riscv: %v", err)
	}
}

func mustInfo(t *testing.T, s string) *VMCOREINFO {
	t.Helper()
	info, err := ParseVMCOREINFO([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// FuzzARM64Walk walks arbitrary arm64 page tables of every granule: no
// panic, and every failure is ErrNotMapped or a FormatError.
func FuzzARM64Walk(f *testing.F) {
	f.Add([]byte{0x03, 0x10, 0, 0, 0, 0, 0, 0}, uint8(0), uint64(0xffff800000000000))
	f.Add([]byte{0x01, 0x04, 0, 0x40, 0, 0, 0, 0}, uint8(5), uint64(0xffffffc000201234))
	f.Fuzz(func(t *testing.T, tables []byte, geometry uint8, va uint64) {
		geo := []struct {
			page, va int
			extra    string
		}{{4096, 48, ""}, {4096, 39, ""}, {16384, 47, ""}, {16384, 36, ""}, {65536, 42, ""}, {65536, 48, ""}, {65536, 52, ""},
			{4096, 52, "NUMBER(TCR_EL1_T1SZ)=0xc"}, {4096, 52, "NUMBER(TCR_EL1_T1SZ)=0x10"}, {16384, 52, "NUMBER(TCR_EL1_T1SZ)=0xc"}}
		g := geo[int(geometry)%len(geo)]
		m := make(flatMem, 1<<18)
		if len(tables) > 0 {
			for i := range m {
				m[i] = tables[i%len(tables)]
			}
		}
		var extra []string
		if g.extra != "" {
			extra = []string{g.extra}
		}
		tr, err := NewTranslator(m, arm64Info(t, g.page, g.va, extra...), elf.EM_AARCH64)
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 100)
		err = tr.ReadVirt(va, buf)
		var fe *FormatError
		if err != nil && !errors.Is(err, ErrNotMapped) && !errors.As(err, &fe) && !errors.Is(err, ErrNotRAM) {
			t.Fatalf("ReadVirt(%#x): %v", va, err)
		}
	})
}
