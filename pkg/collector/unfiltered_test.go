package collector

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ukdump/ukdump/internal/vmcoretest"
	"github.com/ukdump/ukdump/pkg/diskdump"
	"github.com/ukdump/ukdump/pkg/vmcore"
)

// TestUnfilteredFallback: when the dead kernel's data cannot be used to
// filter (no VMCOREINFO, no struct page layout in it, page tables that
// point nowhere), Write still writes a dump: every RAM page, the level in
// the header saying so, and a first warning, given to Warn before any page
// is written, that says filtering was impossible and why.
func TestUnfilteredFallback(t *testing.T) {
	mem := make([]byte, 4*4096)
	copy(mem, strings.Repeat("first page ", 300))
	// page 1 stays zero
	copy(mem[2*4096:], strings.Repeat("third page ", 300))
	copy(mem[3*4096:], strings.Repeat("fourth page ", 300))
	const layout = "OSRELEASE=6.1.0\nPAGESIZE=4096\nSIZE(page)=64\nOFFSET(page.flags)=0\nOFFSET(page.compound_head)=8\n" +
		"OFFSET(page._mapcount)=48\nNUMBER(PG_hwpoison)=23\nNUMBER(PG_lru)=4\nNUMBER(PG_head_mask)=65536\n" +
		"NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)=-129\nLENGTH(zone.free_area)=11\n"
	for _, tc := range []struct {
		name, info, why string
	}{
		{"no VMCOREINFO note", "", "VMCOREINFO"},
		{"no struct page layout", "OSRELEASE=6.1.0\nPAGESIZE=4096\n", "VMCOREINFO lacks the layout of struct page"},
		{"no page tables", layout, "cannot locate struct pages"},
		{"page table root outside memory", layout + "SYMBOL(init_top_pgt)=ffffffff90000000\nNUMBER(phys_base)=0\nSYMBOL(mem_section)=ffff888000001000\nLENGTH(mem_section)=2048\nSIZE(mem_section)=16\nOFFSET(mem_section.section_mem_map)=0\nNUMBER(SECTION_SIZE_BITS)=27\nNUMBER(MAX_PHYSMEM_BITS)=46\n",
			"cannot locate struct pages"},
	} {
		for _, format := range []diskdump.Format{diskdump.KdumpFormat, diskdump.ELFFormat} {
			img := vmcoretest.Synthetic(tc.info, mem)
			core, err := vmcore.NewCore(bytes.NewReader(img), int64(len(img)))
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			out := filepath.Join(t.TempDir(), "dump")
			f, err := os.Create(out)
			if err != nil {
				t.Fatal(err)
			}
			var warned []string
			res, err := Write(core, f, Options{Level: vmcore.MaxLevel, Format: format, Compression: diskdump.Snappy,
				Warn: func(w string) { warned = append(warned, w) }})
			f.Close()
			if err != nil {
				t.Fatalf("%s, %s: Write: %v", tc.name, format, err)
			}
			if len(res.Warnings) == 0 || !strings.HasPrefix(res.Warnings[0], "filtering impossible: ") ||
				!strings.Contains(res.Warnings[0], tc.why) || !strings.HasSuffix(res.Warnings[0], "; writing an unfiltered dump") {
				t.Errorf("%s, %s: warnings %q, want first \"filtering impossible: ...%s...; writing an unfiltered dump\"", tc.name, format, res.Warnings, tc.why)
			}
			if strings.Join(warned, "\n") != strings.Join(res.Warnings, "\n") {
				t.Errorf("%s, %s: Warn was told %q, the result says %q", tc.name, format, warned, res.Warnings)
			}
			// Every RAM page is in the dump: in the kdump format the zero
			// page too (stored once, read back as zeros); ELF keeps all.
			want := vmcore.Level(1)
			if format == diskdump.ELFFormat {
				want = 0
			}
			if res.Level != want {
				t.Errorf("%s, %s: level %d, want %d", tc.name, format, res.Level, want)
			}
			if format == diskdump.ELFFormat {
				back, err := vmcore.Open(out)
				if err != nil {
					t.Fatalf("%s: ELF dump: %v", tc.name, err)
				}
				page := make([]byte, 4096)
				for pfn := uint64(0); pfn < 4; pfn++ {
					if err := back.ReadPage(pfn, page); err != nil || !bytes.Equal(page, mem[pfn*4096:(pfn+1)*4096]) {
						t.Errorf("%s: ELF pfn %d: %v", tc.name, pfn, err)
					}
				}
				back.Close()
				continue
			}
			d, err := diskdump.OpenFile(out)
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			if d.Header().DumpLevel != 1 {
				t.Errorf("%s: header dump level %d, want 1", tc.name, d.Header().DumpLevel)
			}
			if d.NumDumpable() != 4 {
				t.Errorf("%s: %d pages dumpable, want all 4", tc.name, d.NumDumpable())
			}
			page := make([]byte, 4096)
			for pfn := uint64(0); pfn < 4; pfn++ {
				if err := d.ReadPage(pfn, page); err != nil || !bytes.Equal(page, mem[pfn*4096:(pfn+1)*4096]) {
					t.Errorf("%s: pfn %d: %v", tc.name, pfn, err)
				}
			}
			d.Close()
		}
	}
}

// TestUnfilteredNotWhenAsked: a level that filters nothing by type needs
// no kernel data, so nothing is said to be impossible.
func TestUnfilteredNotWhenAsked(t *testing.T) {
	img := vmcoretest.Synthetic("OSRELEASE=6.1.0\nPAGESIZE=4096\n", make([]byte, 4096))
	core, err := vmcore.NewCore(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(t.TempDir(), "dump"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res, err := Write(core, f, Options{Level: vmcore.LevelZero})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Warnings) != 0 || res.Level != vmcore.LevelZero {
		t.Errorf("level 1: warnings %q, level %d", res.Warnings, res.Level)
	}
}
