package vmcore_test

import (
	"bytes"
	"debug/elf"
	"errors"
	"testing"

	"github.com/ukdump/ukdump/internal/zeropage"
	"github.com/ukdump/ukdump/pkg/vmcore"
	"github.com/ukdump/ukdump/pkg/vmcore/internal/synth"
)

// allLayouts are the synthetic kernels: x86_64 with 4 and 5 levels, and
// arm64.
var allLayouts = []synth.Layout{synth.Layout61, synth.Layout73, synth.Layout73L5, synth.Layout61ARM64, synth.Layout73ARM64}

func openSynth(t testing.TB, l synth.Layout) (*synth.Kernel, *vmcore.Core) {
	t.Helper()
	k := synth.New(l)
	b := k.ELF()
	c, err := vmcore.NewCore(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	return k, c
}

func TestSyntheticCore(t *testing.T) {
	for _, l := range allLayouts {
		t.Run(l.Name(), func(t *testing.T) {
			_, c := openSynth(t, l)
			if c.NrCPUs() != 2 {
				t.Errorf("NrCPUs %d, want 2", c.NrCPUs())
			}
			if c.MaxPFN() != synth.MaxPFN {
				t.Errorf("MaxPFN %#x, want %#x", c.MaxPFN(), synth.MaxPFN)
			}
			info, err := c.VMCOREINFO()
			if err != nil {
				t.Fatal(err)
			}
			off, size := c.VMCOREINFOLocation()
			if string(c.NoteData()[off:off+size]) != l.VMCOREINFO() {
				t.Errorf("VMCOREINFO location does not hold the note")
			}
			if want := map[bool]elf.Machine{false: elf.EM_X86_64, true: elf.EM_AARCH64}[l.ARM64()]; c.Machine() != want {
				t.Errorf("Machine %v, want %v", c.Machine(), want)
			}
			if pb, _ := info.PhysBase(); !l.ARM64() && pb != uint64(0xffffffffffe00000) {
				t.Errorf("PhysBase %#x", pb)
			}
			for pfn, want := range map[uint64]bool{0: true, 0x7ff: true, 0x800: false, 0x8ff: false, 0x900: true, 0x9ff: true, 0xa00: false} {
				if c.IsRAM(pfn) != want {
					t.Errorf("IsRAM(%#x) = %v", pfn, !want)
				}
			}
			page := make([]byte, 4096)
			if err := c.ReadPage(0x780, page); err != nil || !zeropage.Is(page) { // zero-filled tail
				t.Errorf("ReadPage in memsz > filesz tail: %v, zero %v", err, zeropage.Is(page))
			}
			if err := c.ReadPage(0x850, page); !errors.Is(err, vmcore.ErrNotRAM) {
				t.Errorf("ReadPage of a hole: %v", err)
			}
			if err := c.ReadPage(0x100, page); err != nil || zeropage.Is(page) { // PML4
				t.Errorf("ReadPage(PML4): %v", err)
			}
			tr, err := c.NewTranslator()
			if err != nil {
				t.Fatal(err)
			}
			for v, want := range map[uint64]uint64{
				0xffffffff80200000 + 0x1234:   0x1234,   // 2 MiB page
				0xffff888000000000 + 0x654321: 0x654321, // 1 GiB page
				0xffffea0000000000 + 0x1040:   0x401040, // 4 KiB page
				0xffffea0000000000 + 17*4096:  0x411000,
			} {
				if p, err := tr.VirtToPhys(v); err != nil || p != want {
					t.Errorf("VirtToPhys(%#x) = %#x, %v; want %#x", v, p, err, want)
				}
			}
			if _, err := tr.VirtToPhys(0xffffea0000000000 + 16*4096); !errors.Is(err, vmcore.ErrNotMapped) {
				t.Errorf("unmapped vmemmap page: %v", err)
			}
			if _, err := tr.VirtToPhys(0xffffc90000000000); !errors.Is(err, vmcore.ErrNotMapped) {
				t.Errorf("unmapped address: %v", err)
			}
		})
	}
}

func TestSyntheticScan(t *testing.T) {
	for _, l := range allLayouts {
		t.Run(l.Name(), func(t *testing.T) {
			k, c := openSynth(t, l)
			s, err := c.NewScanner(vmcore.MaxLevel, 0)
			if err != nil {
				t.Fatal(err)
			}
			if w := s.Warnings(); len(w) > 0 {
				t.Errorf("warnings: %q", w)
			}
			var ch vmcore.Chunk
			chunks := 0
			for {
				ok, err := s.Next(&ch)
				if err != nil {
					t.Fatal(err)
				}
				if !ok {
					break
				}
				chunks++
				for i := 0; i < ch.N; i++ {
					pfn := ch.StartPFN + uint64(i)
					want := k.Want(pfn)
					if ch.Reasons[i] != want {
						t.Errorf("pfn %d: %v, want %v", pfn, ch.Reasons[i], want)
					}
					ram := ch.RAM[i/8]&(1<<(i%8)) != 0
					dump := ch.Dump[i/8]&(1<<(i%8)) != 0
					if ram != (want != vmcore.NotRAM) || dump != !want.Excluded() {
						t.Errorf("pfn %d: bitmaps ram %v dump %v for %v", pfn, ram, dump, want)
					}
				}
			}
			if chunks != 1 {
				t.Errorf("%d chunks", chunks)
			}
			st := s.Stats()
			t.Logf("%s", st.String())

			// Lower levels exclude subsets.
			for _, lv := range []vmcore.Level{0, 1, 2, 4, 8, 16} {
				s, err := c.NewScanner(lv, 0)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := s.Next(&ch); err != nil {
					t.Fatal(err)
				}
				for i := 0; i < ch.N; i++ {
					pfn := ch.StartPFN + uint64(i)
					want := k.Want(pfn)
					switch {
					case want == vmcore.CachePrivate && lv&4 == 0, want == vmcore.Cache && lv&6 == 0,
						want == vmcore.User && lv&8 == 0, (want == vmcore.Free || want == vmcore.Unaccepted) && lv&16 == 0:
						want = vmcore.Kept
					case lv <= 1 && want.Excluded() && want != vmcore.NotRAM:
						want = vmcore.Kept
					case lv <= 1 && want == vmcore.NoMemMap:
						want = vmcore.Kept // struct pages are not read
					}
					if ch.Reasons[i] != want {
						t.Errorf("level %d pfn %d: %v, want %v", lv, pfn, ch.Reasons[i], want)
					}
				}
			}
		})
	}
}

// TestClassifyBatchSizes checks that the result does not depend on how the
// struct pages are cut into batches (pending ranges carry across).
func TestClassifyBatchSizes(t *testing.T) {
	for _, l := range allLayouts {
		k, c := openSynth(t, l)
		info, _ := c.VMCOREINFO()
		cl, err := vmcore.NewClassifier(info, vmcore.MaxLevel)
		if err != nil {
			t.Fatal(err)
		}
		tr, _ := c.NewTranslator()
		mm, err := c.NewMemMap(tr)
		if err != nil {
			t.Fatal(err)
		}
		const start, n = 1280, 128
		pages := make([]byte, n*mm.StructPageSize())
		if err := mm.ReadPageStructs(start, n, pages); err != nil {
			t.Fatal(err)
		}
		if err := mm.ReadPageStructs(1024, 1, pages[:64]); !errors.Is(err, vmcore.ErrNotMapped) {
			t.Errorf("struct page in unmapped vmemmap: %v", err)
		}
		for batch := 2; batch <= n; batch *= 2 {
			reasons := make([]vmcore.Reason, n)
			var pending vmcore.Range
			for off := 0; off < n; off += batch {
				sz := cl.StructPageSize()
				if err := cl.Classify(start+uint64(off), pages[off*sz:(off+batch)*sz], reasons[off:off+batch], &pending); err != nil {
					t.Fatal(err)
				}
			}
			for i, r := range reasons {
				if want := k.Want(start + uint64(i)); r != want {
					t.Errorf("%s batch %d pfn %d: %v, want %v", l.Name(), batch, start+i, r, want)
				}
			}
		}
	}
}
