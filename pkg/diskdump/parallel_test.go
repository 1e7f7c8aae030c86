package diskdump

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"testing"
)

// sink is what the Writer and Parallel share for these tests.
type sink interface {
	SetBitmaps(BitmapSource) error
	NextPFN() (uint64, bool)
	NextPFNAfter() (uint64, bool)
	WritePage(uint64, []byte) error
	WriteMissing(uint64) error
	Close() error
}

// writeWith writes s's dump through w, recording every 13th page as
// missing, and checks NextPFNAfter against the NextPFN that follows.
func writeWith(t *testing.T, w sink, s *synth) {
	t.Helper()
	if err := w.SetBitmaps(&s.bm); err != nil {
		t.Fatal(err)
	}
	var after uint64
	haveAfter := false
	for i := 0; ; i++ {
		pfn, ok := w.NextPFN()
		if !ok {
			break
		}
		if haveAfter && pfn != after {
			t.Fatalf("NextPFNAfter said %#x, NextPFN says %#x", after, pfn)
		}
		after, haveAfter = w.NextPFNAfter()
		var err error
		if i%13 == 5 {
			err = w.WriteMissing(pfn)
		} else {
			err = w.WritePage(pfn, s.page(pfn))
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if haveAfter {
		t.Fatalf("NextPFNAfter said %#x after the last page", after)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// serialAndParallel writes s's dump with one Writer into one, and returns
// that Writer and a Parallel of workers on a second Writer, of many, for
// the caller to write the same dump with.
func serialAndParallel(t *testing.T, s *synth, opt Options, workers int) (w *Writer, one, many *memFile, p *Parallel) {
	t.Helper()
	one, many = new(memFile), new(memFile)
	w, err := NewWriter(one, s.header(), opt)
	if err != nil {
		t.Fatal(err)
	}
	writeWith(t, w, s)
	w2, err := NewWriter(many, s.header(), opt)
	if err != nil {
		t.Fatal(err)
	}
	if p, err = NewParallel(w2, workers); err != nil {
		t.Fatal(err)
	}
	return w, one, many, p
}

// TestParallelSameBytes: pages compressed on several goroutines give the
// very file one Writer gives, for every codec, with small chunks and
// buffers and a page count that is not a multiple of a batch.
func TestParallelSameBytes(t *testing.T) {
	for _, c := range []Compression{Zlib, LZO, Snappy, Zstd, None} {
		for _, workers := range []int{2, 3, 8} {
			t.Run(fmt.Sprintf("%v/%d", c, workers), func(t *testing.T) {
				s := newSynth(3001)
				opt := Options{Compression: c, ChunkPFNs: 128, DescBuffer: 7, DataBuffer: 5000}
				w, one, many, p := serialAndParallel(t, s, opt, workers)
				writeWith(t, p, s)
				if !bytes.Equal(one.b, many.b) {
					t.Fatalf("files differ: %d and %d bytes", len(one.b), len(many.b))
				}
				if p.Stats() != w.Stats() {
					t.Errorf("stats %+v, one writer's %+v", p.Stats(), w.Stats())
				}
				d, err := Open(many, int64(len(many.b)))
				if err != nil {
					t.Fatal(err)
				}
				buf := make([]byte, s.ps)
				if err := d.ReadPage(17, buf); err != nil || !bytes.Equal(buf, s.page(17)) {
					t.Errorf("page 17: %v", err)
				}
			})
		}
	}
}

// pageHold is a Holder of one page's copy that spoils the copy when its
// last reference is given back, so that a page read after its Release
// changes the file.
type pageHold struct {
	data []byte
	refs int
	mu   sync.Mutex
}

func (h *pageHold) Hold() {
	h.mu.Lock()
	h.refs++
	h.mu.Unlock()
}

func (h *pageHold) Release() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.refs--; h.refs == 0 {
		for i := range h.data {
			h.data[i] = 0xee
		}
	}
}

// heldWriter hands a Parallel each page with WritePageHeld, held by a
// pageHold of its own, and remembers them.
type heldWriter struct {
	*Parallel
	holds []*pageHold
}

func (h *heldWriter) WritePage(pfn uint64, data []byte) error {
	ph := &pageHold{data: bytes.Clone(data), refs: 1}
	h.holds = append(h.holds, ph)
	err := h.WritePageHeld(pfn, ph.data, ph)
	ph.Release() // the caller's own reference, as the collector releases its window
	return err
}

// unreleased counts the pages still held.
func (h *heldWriter) unreleased() int {
	n := 0
	for _, ph := range h.holds {
		ph.mu.Lock()
		if ph.refs != 0 {
			n++
		}
		ph.mu.Unlock()
	}
	return n
}

// TestParallelHeld: pages handed with WritePageHeld are read where they
// are, before they are released (a page spoilt on its last Release would
// change the file), and every one is released by Close and by Abort.
func TestParallelHeld(t *testing.T) {
	for _, c := range []Compression{Snappy, None} {
		t.Run(c.String(), func(t *testing.T) {
			s := newSynth(3001)
			opt := Options{Compression: c, ChunkPFNs: 128, DataBuffer: 5000}
			_, one, many, p := serialAndParallel(t, s, opt, 3)
			hw := &heldWriter{Parallel: p}
			writeWith(t, hw, s)
			if !bytes.Equal(one.b, many.b) {
				t.Fatalf("files differ: %d and %d bytes", len(one.b), len(many.b))
			}
			if len(hw.holds) == 0 || hw.unreleased() != 0 {
				t.Errorf("%d of %d pages not released after Close", hw.unreleased(), len(hw.holds))
			}
		})
	}
	t.Run("abort", func(t *testing.T) {
		s := newSynth(2000)
		var mf memFile
		w, err := NewWriter(&mf, s.header(), Options{Compression: Snappy, ChunkPFNs: 64})
		if err != nil {
			t.Fatal(err)
		}
		p, err := NewParallel(w, 2)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.SetBitmaps(&s.bm); err != nil {
			t.Fatal(err)
		}
		hw := &heldWriter{Parallel: p}
		for range 2*batchPages + 9 {
			pfn, _ := p.NextPFN()
			if err := hw.WritePage(pfn, s.page(pfn)); err != nil {
				t.Fatal(err)
			}
		}
		if err := p.Abort(); err != nil {
			t.Fatal(err)
		}
		if n := hw.unreleased(); n != 0 {
			t.Errorf("%d of %d pages not released after Abort", n, len(hw.holds))
		}
	})
}

// TestParallelMisuse: the Parallel refuses what the Writer refuses, and
// an abort leaves an incomplete dump with the pages written before it.
func TestParallelMisuse(t *testing.T) {
	s := newSynth(2000)
	var mf memFile
	w, err := NewWriter(&mf, s.header(), Options{Compression: Snappy, ChunkPFNs: 64})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewParallel(w, 1); err == nil {
		t.Error("one worker accepted")
	}
	p, err := NewParallel(w, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.WritePage(16, s.page(16)); err == nil {
		t.Error("page before SetBitmaps accepted")
	}
	if err := p.SetBitmaps(&s.bm); err != nil {
		t.Fatal(err)
	}
	if _, err := NewParallel(w, 2); err == nil {
		t.Error("a Writer with bitmaps accepted")
	}
	for range 3*batchPages + 5 {
		pfn, _ := p.NextPFN()
		if err := p.WritePage(pfn, s.page(pfn)); err != nil {
			t.Fatal(err)
		}
	}
	pfn, _ := p.NextPFN()
	if err := p.WritePage(pfn+1, s.page(pfn+1)); err == nil {
		t.Error("out-of-order page accepted")
	}
	if err := p.WritePage(pfn, make([]byte, 100)); err == nil {
		t.Error("short page accepted")
	}
	if err := p.Abort(); err != nil {
		t.Fatal(err)
	}
	if err := p.WritePage(pfn, s.page(pfn)); err == nil {
		t.Error("page after Abort accepted")
	}
	d, err := Open(&mf, int64(len(mf.b)))
	if err != nil {
		t.Fatal(err)
	}
	if !d.Incomplete() {
		t.Error("aborted dump not marked incomplete")
	}
	buf := make([]byte, s.ps)
	if err := d.ReadPage(pfn, buf); !errors.Is(err, ErrPageIncomplete) {
		t.Errorf("page after the abort: %v, want incomplete", err)
	}
}

// BenchmarkParallel compresses the synthetic machine's pages with 1 and 2
// workers (go test -bench Parallel -cpu 1,2).
func BenchmarkParallel(b *testing.B) {
	s := newSynth(1 << 14)
	pages := make(map[uint64][]byte)
	for pfn := range s.maxPFN {
		if s.bm.Dumpable.Test(pfn) {
			pages[pfn] = s.page(pfn)
		}
	}
	for _, workers := range []int{1, 2, 4} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			b.SetBytes(int64(len(pages) * s.ps))
			for range b.N {
				var mf memFile
				w, err := NewWriter(&mf, s.header(), Options{Compression: Snappy})
				if err != nil {
					b.Fatal(err)
				}
				var sk sink = w
				if workers > 1 {
					if sk, err = NewParallel(w, workers); err != nil {
						b.Fatal(err)
					}
				}
				if err := sk.SetBitmaps(&s.bm); err != nil {
					b.Fatal(err)
				}
				for {
					pfn, ok := sk.NextPFN()
					if !ok {
						break
					}
					if err := sk.WritePage(pfn, pages[pfn]); err != nil {
						b.Fatal(err)
					}
				}
				if err := sk.Close(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestParallelWithoutReadBack: on a file the Writer cannot read its
// bitmaps back from, the source would be read by two goroutines; the
// Parallel is the Writer alone, and the file the same.
func TestParallelWithoutReadBack(t *testing.T) {
	s := newSynth(2000)
	var one, other memFile
	w, err := NewWriter(writeOnly{&one}, s.header(), Options{Compression: Snappy, ChunkPFNs: 128})
	if err != nil {
		t.Fatal(err)
	}
	writeWith(t, w, s)
	w2, err := NewWriter(writeOnly{&other}, s.header(), Options{Compression: Snappy, ChunkPFNs: 128})
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewParallel(w2, 2)
	if err != nil {
		t.Fatal(err)
	}
	writeWith(t, p, s)
	if !p.serial {
		t.Error("Parallel ran its goroutines on a source it cannot share")
	}
	if !bytes.Equal(one.b, other.b) {
		t.Error("files differ")
	}
}

// TestEncodeInPlace: pages compressed into the Writer's data buffer
// (EncodeInto) give the file that pages compressed apart and copied in
// give: a 4 KiB buffer has no room for EncodeInto, so it copies; 1 MiB
// has. Both are read back page by page.
func TestEncodeInPlace(t *testing.T) {
	for _, c := range []Compression{LZO, Snappy, Zstd} {
		t.Run(c.String(), func(t *testing.T) {
			s := newSynth(3001)
			var copied, inPlace memFile
			for _, f := range []struct {
				mf  *memFile
				buf int
			}{{&copied, 4096}, {&inPlace, 1 << 20}} {
				w, err := NewWriter(f.mf, s.header(), Options{Compression: c, ChunkPFNs: 128, DataBuffer: f.buf})
				if err != nil {
					t.Fatal(err)
				}
				writeWith(t, w, s)
			}
			if !bytes.Equal(copied.b, inPlace.b) {
				t.Fatalf("files differ: %d and %d bytes", len(copied.b), len(inPlace.b))
			}
			d, err := Open(&inPlace, int64(len(inPlace.b)))
			if err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, s.ps)
			for pfn := uint64(0); pfn < 3001; pfn++ {
				if s.bm.Dumpable.Test(pfn) {
					err := d.ReadPage(pfn, buf)
					if err == nil && !bytes.Equal(buf, s.page(pfn)) {
						t.Fatalf("page %#x differs", pfn)
					}
				}
			}
		})
	}
}

// TestEncodeInto: EncodeInto stores what Encode stores, in room when the
// codec can and room is large enough, and never writes past Room bytes.
func TestEncodeInto(t *testing.T) {
	s := newSynth(300)
	for _, c := range []Compression{LZO, Snappy, Zstd, Zlib, None} {
		enc, err := NewPageEncoder(c, s.ps)
		if err != nil {
			t.Fatal(err)
		}
		ref, err := NewPageEncoder(c, s.ps)
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 0, enc.Room()+64)
		inRoom := 0
		for pfn := uint64(0); pfn < 300; pfn++ {
			page := s.page(pfn)
			for i := range buf[:cap(buf)] {
				buf[:cap(buf)][i] = 0x5a
			}
			got, err := enc.EncodeInto(page, buf[:cap(buf)][:enc.Room()])
			if err != nil {
				t.Fatal(err)
			}
			want, err := ref.Encode(page)
			if err != nil {
				t.Fatal(err)
			}
			if got.Zero != want.Zero || got.Flags != want.Flags || !bytes.Equal(got.Data, want.Data) {
				t.Fatalf("%v page %#x: EncodeInto %+v, Encode %+v", c, pfn, got.Flags, want.Flags)
			}
			if inPlace(buf, got.Data) {
				inRoom++
			}
			for _, b := range buf[:cap(buf)][enc.Room():] {
				if b != 0x5a {
					t.Fatalf("%v page %#x: written past Room", c, pfn)
				}
			}
		}
		if want := c == LZO || c == Snappy; (inRoom > 0) != want {
			t.Errorf("%v: %d pages compressed in room", c, inRoom)
		}
		enc.Close()
		ref.Close()
	}
}
