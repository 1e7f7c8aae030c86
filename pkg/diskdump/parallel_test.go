package diskdump

import (
	"bytes"
	"errors"
	"fmt"
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

// TestParallelSameBytes: pages compressed on several goroutines give the
// very file one Writer gives, for every codec, with small chunks and
// buffers and a page count that is not a multiple of a batch.
func TestParallelSameBytes(t *testing.T) {
	for _, c := range []Compression{Zlib, LZO, Snappy, Zstd, None} {
		for _, workers := range []int{2, 3, 8} {
			t.Run(fmt.Sprintf("%v/%d", c, workers), func(t *testing.T) {
				s := newSynth(3001)
				opt := Options{Compression: c, ChunkPFNs: 128, DescBuffer: 7, DataBuffer: 5000}
				var one, many memFile
				w, err := NewWriter(&one, s.header(), opt)
				if err != nil {
					t.Fatal(err)
				}
				writeWith(t, w, s)
				w2, err := NewWriter(&many, s.header(), opt)
				if err != nil {
					t.Fatal(err)
				}
				p, err := NewParallel(w2, workers)
				if err != nil {
					t.Fatal(err)
				}
				writeWith(t, p, s)
				if !bytes.Equal(one.b, many.b) {
					t.Fatalf("files differ: %d and %d bytes", len(one.b), len(many.b))
				}
				if p.Stats() != w.Stats() {
					t.Errorf("stats %+v, one writer's %+v", p.Stats(), w.Stats())
				}
				d, err := Open(&many, int64(len(many.b)))
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
