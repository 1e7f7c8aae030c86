package diskdump

import (
	"bytes"
	"debug/elf"
	"errors"
	"io"
	"testing"
)

func writeSynth(t *testing.T, s *synth, c Compression, opt Options) *memFile {
	t.Helper()
	var mf memFile
	opt.Compression = c
	w, err := NewWriter(&mf, s.header(), opt)
	if err != nil {
		t.Fatal(err)
	}
	writeAll(t, w, &s.bm, s.ps, func(pfn uint64, b []byte) error { copy(b, s.page(pfn)); return nil })
	st := w.Stats()
	if st.Written != st.Dumpable || st.ZeroPages == 0 || st.RawPages == 0 {
		t.Errorf("%v: stats %+v", c, st)
	}
	return &mf
}

func TestRoundTrip(t *testing.T) {
	for _, c := range []Compression{None, Zlib, LZO, Snappy, Zstd} {
		t.Run(c.String(), func(t *testing.T) { testRoundTrip(t, newSynth(3000), c) })
	}
	t.Run("odd-end", func(t *testing.T) { testRoundTrip(t, newSynth(2006), Zlib) })
}

func testRoundTrip(t *testing.T, s *synth, c Compression) {
	{
		{
			// Small chunks and buffers exercise the chunk and flush paths.
			mf := writeSynth(t, s, c, Options{ChunkPFNs: 128, DescBuffer: 7, DataBuffer: 5000})
			d, err := Open(mf, int64(len(mf.b)))
			if err != nil {
				t.Fatal(err)
			}
			if d.Compression() != c || d.Incomplete() || d.Version() != 6 {
				t.Fatalf("compression %v incomplete %v version %d", d.Compression(), d.Incomplete(), d.Version())
			}
			h := d.Header()
			want := s.header()
			if h.UTS != want.UTS || !h.CrashTime.Equal(want.CrashTime) || h.MaxPFN != s.maxPFN ||
				h.PhysBase != want.PhysBase || h.DumpLevel != 31 || h.NrCPUs != 2 ||
				!bytes.Equal(h.Notes, want.Notes) || h.VMCOREINFOOffset != want.VMCOREINFOOffset {
				t.Fatalf("header mismatch:\n got %+v\nwant %+v", h, want)
			}
			if string(d.VMCOREINFO()) != "OSRELEASE=6.0.0-test\nPAGESIZE=4096\n" {
				t.Fatalf("VMCOREINFO %q", d.VMCOREINFO())
			}
			checkSynthDump(t, s, d, c)
		}
	}
}

func checkSynthDump(t *testing.T, s *synth, d *Dump, c Compression) {
	t.Helper()
	buf := make([]byte, s.ps)
	zeroOff := int64(-1)
	var nd, compressed uint64
	for pfn := uint64(0); pfn < s.maxPFN+10; pfn++ {
		if d.RAM(pfn) != s.bm.RAM.Test(pfn) || d.Dumpable(pfn) != s.bm.Dumpable.Test(pfn) {
			t.Fatalf("pfn %#x: bitmaps differ", pfn)
		}
		err := d.ReadPage(pfn, buf)
		if !s.bm.Dumpable.Test(pfn) {
			if !errors.Is(err, ErrExcluded) {
				t.Fatalf("pfn %#x: excluded page read: %v", pfn, err)
			}
			continue
		}
		nd++
		if err != nil {
			t.Fatalf("pfn %#x: %v", pfn, err)
		}
		if !bytes.Equal(buf, s.page(pfn)) {
			t.Fatalf("pfn %#x: content differs", pfn)
		}
		pd, _ := d.Desc(pfn)
		switch {
		case pfn%7 == 0: // zero pages share one raw descriptor
			if zeroOff < 0 {
				zeroOff = pd.Offset
			}
			if pd.Offset != zeroOff || pd.Flags != 0 || int(pd.Size) != s.ps {
				t.Fatalf("pfn %#x: zero page desc %+v, shared offset %d", pfn, pd, zeroOff)
			}
		case pfn%11 == 0: // incompressible: raw
			if pd.Flags != 0 || int(pd.Size) != s.ps {
				t.Fatalf("pfn %#x: random page desc %+v", pfn, pd)
			}
		default:
			if pd.Flags != c.flag() || (c != None && int(pd.Size) >= s.ps) {
				t.Fatalf("pfn %#x: text page desc %+v", pfn, pd)
			}
			compressed++
		}
	}
	if nd != d.NumDumpable() || d.NumRAM() != popcount(s.bm.RAM) || compressed == 0 {
		t.Fatalf("counts: %d dumpable read, %d reported, ram %d", nd, d.NumDumpable(), d.NumRAM())
	}
	if bytes.Contains(d.r.(*memFile).b, s.secret) {
		t.Fatal("excluded page content found in the dump")
	}
}

func TestIncomplete(t *testing.T) {
	s := newSynth(2000)
	var mf memFile
	w, err := NewWriter(&mf, s.header(), Options{Compression: Zlib, DescBuffer: 5, ChunkPFNs: 64})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.SetBitmaps(&s.bm); err != nil {
		t.Fatal(err)
	}
	var written []uint64
	for i := 0; i < 300; i++ {
		pfn, ok := w.NextPFN()
		if !ok {
			t.Fatal("ran out of pages")
		}
		if err := w.WritePage(pfn, s.page(pfn)); err != nil {
			t.Fatal(err)
		}
		written = append(written, pfn)
	}
	// Misuse is refused without damage.
	pfn, _ := w.NextPFN()
	if err := w.WritePage(pfn+1, s.page(pfn+1)); err == nil {
		t.Fatal("out-of-order page accepted")
	}
	if err := w.WritePage(pfn, make([]byte, 100)); err == nil {
		t.Fatal("short page accepted")
	}
	if err := w.Close(); !errors.Is(err, ErrIncompleteDump) {
		t.Fatalf("Close of a partial dump: %v", err)
	}
	d, err := Open(&mf, int64(len(mf.b)))
	if err != nil {
		t.Fatal(err)
	}
	if !d.Incomplete() {
		t.Fatal("dump not marked incomplete")
	}
	buf := make([]byte, s.ps)
	for _, p := range written {
		if err := d.ReadPage(p, buf); err != nil || !bytes.Equal(buf, s.page(p)) {
			t.Fatalf("pfn %#x: %v", p, err)
		}
	}
	last := written[len(written)-1]
	var missing int
	for p := last + 1; p < s.maxPFN; p++ {
		if s.bm.Dumpable.Test(p) {
			if err := d.ReadPage(p, buf); !errors.Is(err, ErrPageIncomplete) {
				t.Fatalf("pfn %#x: unwritten page: %v", p, err)
			}
			missing++
		}
	}
	if missing == 0 {
		t.Fatal("no missing pages checked")
	}
	// A dump truncated after its descriptors (e.g. disk full) still opens.
	d, err = Open(&mf, d.descOff+10)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.ReadPage(last, buf); !errors.Is(err, ErrPageIncomplete) {
		t.Fatalf("truncated file: %v", err)
	}
}

func TestELFWriterSynthetic(t *testing.T) {
	for _, minHole := range []uint64{0, 1, 64, 5} {
		s := newSynth(5000)
		if minHole == 5 {
			s = newSynth(2006)
		}
		var mf memFile
		w, err := NewELFWriter(&mf, s.header(), ELFOptions{MinHole: minHole, ChunkPFNs: 128, DataBuffer: 10000,
			PageOffset: 0xffff888000000000})
		if err != nil {
			t.Fatal(err)
		}
		writeAll(t, w, &s.bm, s.ps, func(pfn uint64, b []byte) error { copy(b, s.page(pfn)); return nil })
		if bytes.Contains(mf.b, s.secret) {
			t.Fatal("excluded page content in ELF output")
		}
		ef, err := elf.NewFile(bytes.NewReader(mf.b))
		if err != nil {
			t.Fatal(err)
		}
		if ef.Type != elf.ET_CORE || ef.Machine != elf.EM_X86_64 || ef.Progs[0].Type != elf.PT_NOTE {
			t.Fatalf("ELF header: %+v", ef.FileHeader)
		}
		notes := make([]byte, ef.Progs[0].Filesz)
		if _, err := ef.Progs[0].ReadAt(notes, 0); err != nil || !bytes.Equal(notes, s.header().Notes) {
			t.Fatalf("notes differ: %v", err)
		}
		covered := NewBitmap(s.maxPFN)
		buf := make([]byte, s.ps)
		for _, p := range ef.Progs[1:] {
			if p.Type != elf.PT_LOAD || p.Paddr%4096 != 0 || p.Memsz < p.Filesz || p.Vaddr != p.Paddr+0xffff888000000000 {
				t.Fatalf("bad segment %+v", p.ProgHeader)
			}
			for a := p.Paddr; a < p.Paddr+p.Memsz; a += 4096 {
				pfn := a / 4096
				if covered.Test(pfn) {
					t.Fatalf("pfn %#x in two segments", pfn)
				}
				covered.Set(pfn)
				if a >= p.Paddr+p.Filesz {
					if s.bm.Dumpable.Test(pfn) {
						t.Fatalf("dumpable pfn %#x not in the file", pfn)
					}
					continue
				}
				if _, err := p.ReadAt(buf, int64(a-p.Paddr)); err != nil {
					t.Fatal(err)
				}
				want := s.page(pfn)
				if !s.bm.Dumpable.Test(pfn) {
					want = make([]byte, s.ps)
				}
				if !bytes.Equal(buf, want) {
					t.Fatalf("pfn %#x: content differs", pfn)
				}
			}
		}
		if !bytes.Equal(covered, s.bm.RAM) {
			t.Fatal("segments do not cover exactly the RAM pfns")
		}
		t.Logf("minHole %d: %d segments", minHole, len(ef.Progs)-1)
	}
}

func TestELFWriterMaxSegments(t *testing.T) {
	s := newSynth(5000)
	var mf memFile
	w, err := NewELFWriter(&mf, s.header(), ELFOptions{MinHole: 1, MaxSegments: 10})
	if err != nil {
		t.Fatal(err)
	}
	writeAll(t, w, &s.bm, s.ps, func(pfn uint64, b []byte) error { copy(b, s.page(pfn)); return nil })
	ef, err := elf.NewFile(bytes.NewReader(mf.b))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(ef.Progs) - 1; n > 10 || n == 0 {
		t.Fatalf("%d segments, want 1..10", n)
	}
}

func TestParseCompression(t *testing.T) {
	for c := None; c <= Zstd; c++ {
		if got, err := ParseCompression(c.String()); err != nil || got != c {
			t.Fatalf("%v: %v %v", c, got, err)
		}
	}
	if _, err := ParseCompression("lz4"); err == nil {
		t.Fatal("lz4 accepted")
	}
	if _, err := NewWriter(&memFile{}, newSynth(100).header(), Options{Compression: Compression(9)}); err == nil {
		t.Fatal("unknown compression accepted")
	}
}

func TestELFAbort(t *testing.T) {
	s := newSynth(3000)
	var mf memFile
	w, err := NewELFWriter(&mf, s.header(), ELFOptions{DataBuffer: 8192})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.SetBitmaps(&s.bm); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 500; i++ {
		pfn, _ := w.NextPFN()
		if err := w.WritePage(pfn, s.page(pfn)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Abort(); err != nil {
		t.Fatal(err)
	}
	ef, err := elf.NewFile(bytes.NewReader(mf.b))
	if err != nil {
		t.Fatal(err)
	}
	if ef.Progs[0].Type != elf.PT_NOTE || len(ef.Progs) < 3 {
		t.Fatalf("%d program headers", len(ef.Progs))
	}
	if flags := uint32(mf.b[48]); flags&elfIncomplete == 0 {
		t.Fatal("ELF not marked incomplete")
	}
	buf := make([]byte, s.ps)
	var loads, pages int
	for _, p := range ef.Progs[1:] {
		if p.Type == elf.PT_NULL {
			continue
		}
		loads++
		if p.Filesz > 0 && p.Off+p.Filesz > uint64(len(mf.b)) {
			t.Fatalf("segment %+v beyond the %d-byte file", p.ProgHeader, len(mf.b))
		}
		for a := p.Paddr; a < p.Paddr+p.Filesz; a += uint64(s.ps) {
			if _, err := p.ReadAt(buf, int64(a-p.Paddr)); err != nil {
				t.Fatal(err)
			}
			if s.bm.Dumpable.Test(a/4096) && !bytes.Equal(buf, s.page(a/4096)) {
				t.Fatalf("pfn %#x differs", a/4096)
			}
			pages++
		}
	}
	if loads == 0 || pages < 500 {
		t.Fatalf("%d loads, %d pages", loads, pages)
	}
	var mf2 memFile
	w2, _ := NewWriter(&mf2, s.header(), Options{})
	if err := w2.Close(); !errors.Is(err, ErrIncompleteDump) {
		t.Fatalf("Close before SetBitmaps: %v", err)
	}
}

// writeOnly hides a file's ReadAt, as an *os.File opened O_WRONLY
// refuses it: the writer then asks the source again for the pages.
type writeOnly struct{ w io.WriterAt }

func (o writeOnly) WriteAt(p []byte, off int64) (int, error) { return o.w.WriteAt(p, off) }

// A writer that can read its file back asks the source for each chunk
// once: the pages are written from the bitmaps in the file.
func TestBitmapsReadBack(t *testing.T) {
	s := newSynth(5000)
	for _, tc := range []struct {
		name   string
		w      func(*memFile) io.WriterAt
		passes int
	}{
		{"readable", func(m *memFile) io.WriterAt { return m }, 1},
		{"write-only", func(m *memFile) io.WriterAt { return writeOnly{m} }, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			src := BitmapFunc(func(start uint64, ram, dump []byte) error {
				calls++
				return s.bm.FillBitmaps(start, ram, dump)
			})
			var mf memFile
			const chunk = 1024
			w, err := NewWriter(tc.w(&mf), s.header(), Options{ChunkPFNs: chunk})
			if err != nil {
				t.Fatal(err)
			}
			if err := w.SetBitmaps(src); err != nil {
				t.Fatal(err)
			}
			for {
				pfn, ok := w.NextPFN()
				if !ok {
					break
				}
				if err := w.WritePage(pfn, s.page(pfn)); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			chunks := int((s.maxPFN + chunk - 1) / chunk)
			if calls != tc.passes*chunks {
				t.Errorf("source asked %d times for %d chunks, want %d passes", calls, chunks, tc.passes)
			}
			d, err := Open(&mf, int64(len(mf.b)))
			if err != nil {
				t.Fatal(err)
			}
			checkSynthDump(t, s, d, None)
		})
	}
}

// A source whose second pass differs must not corrupt the file.
func TestChangingSource(t *testing.T) {
	s := newSynth(1000)
	calls := 0
	src := BitmapFunc(func(start uint64, ram, dump []byte) error {
		calls++
		_ = s.bm.FillBitmaps(start, ram, dump)
		if calls > 1 { // second pass: everything RAM is dumpable
			copy(dump, ram)
		}
		return nil
	})
	var mf memFile
	w, err := NewWriter(writeOnly{&mf}, s.header(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.SetBitmaps(src); err != nil {
		t.Fatal(err)
	}
	var werr error
	for i := 0; i < 2000 && werr == nil; i++ {
		pfn, ok := w.NextPFN()
		if !ok {
			break
		}
		werr = w.WritePage(pfn, s.page(pfn))
	}
	if werr == nil {
		t.Fatal("extra dumpable pages accepted")
	}
	if err := w.Abort(); err != nil {
		t.Fatal(err)
	}
}
