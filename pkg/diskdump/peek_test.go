package diskdump

import "testing"

// countingSource counts the chunks asked of a BitmapSource.
type countingSource struct {
	src   BitmapSource
	calls int
}

func (c *countingSource) FillBitmaps(start uint64, ram, dumpable []byte) error {
	c.calls++
	return c.src.FillBitmaps(start, ram, dumpable)
}

// TestNextPFNAfter: both writers tell the dumpable pfn after NextPFN's,
// and asking costs no chunk beyond those writing asks for (the collector's
// source starts its scan over for a chunk asked twice).
func TestNextPFNAfter(t *testing.T) {
	s := newSynth(3000)
	want := func(after uint64) (uint64, bool) {
		for p := after + 1; p < s.maxPFN; p++ {
			if s.bm.Dumpable.Test(p) {
				return p, true
			}
		}
		return 0, false
	}
	type peekWriter interface {
		pageSink
		NextPFNAfter() (uint64, bool)
	}
	for _, format := range []string{"kdump", "elf"} {
		calls := map[bool]int{}
		for _, peek := range []bool{false, true} {
			var w peekWriter
			var err error
			if format == "elf" {
				w, err = NewELFWriter(&memFile{}, s.header(), ELFOptions{ChunkPFNs: 128})
			} else {
				w, err = NewWriter(&memFile{}, s.header(), Options{ChunkPFNs: 128})
			}
			if err != nil {
				t.Fatal(err)
			}
			src := &countingSource{src: &s.bm}
			if err := w.SetBitmaps(src); err != nil {
				t.Fatal(err)
			}
			src.calls = 0
			for {
				pfn, ok := w.NextPFN()
				if !ok {
					break
				}
				if peek {
					got, gok := w.NextPFNAfter()
					if wp, wok := want(pfn); got != wp || gok != wok {
						t.Fatalf("%s: after %#x: NextPFNAfter = %#x, %v; want %#x, %v", format, pfn, got, gok, wp, wok)
					}
				}
				if err := w.WritePage(pfn, s.page(pfn)); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if _, ok := w.NextPFNAfter(); ok {
				t.Errorf("%s: NextPFNAfter after Close", format)
			}
			calls[peek] = src.calls
		}
		if calls[true] != calls[false] {
			t.Errorf("%s: %d chunks asked with NextPFNAfter, %d without", format, calls[true], calls[false])
		}
	}
}
