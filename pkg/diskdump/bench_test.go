package diskdump

import (
	"bytes"
	"testing"

	"github.com/ukdump/ukdump/internal/vmcoretest"
)

// benchPages loads up to max non-zero RAM pages of the real vmcore.
func benchPages(b *testing.B, max int) (*elfCore, [][]byte) {
	v := openVMCore(b, vmcoretest.Debian61)
	ps := v.h.PageSize
	zero := make([]byte, ps)
	var pages [][]byte
	for p := uint64(0); p < v.h.MaxPFN && len(pages) < max; p++ {
		if !v.ram.Test(p) {
			continue
		}
		buf := make([]byte, ps)
		if err := v.readPage(p, buf); err != nil {
			b.Fatal(err)
		}
		if !bytes.Equal(buf, zero) {
			pages = append(pages, buf)
		}
	}
	return v, pages
}

// BenchmarkPageCompress measures per-page compression of the non-zero
// pages of a real vmcore, on one goroutine; "ratio" is stored/input bytes
// (pages that do not shrink count as stored raw, as in the dump).
func BenchmarkPageCompress(b *testing.B) {
	v, pages := benchPages(b, 16384)
	for _, c := range []Compression{Zlib, LZO, Snappy, Zstd} {
		b.Run(c.String(), func(b *testing.B) {
			enc, err := NewPageEncoder(c, v.h.PageSize)
			if err != nil {
				b.Fatal(err)
			}
			defer enc.Close()
			b.SetBytes(int64(v.h.PageSize))
			var in, out int64
			i := 0
			for b.Loop() {
				o, _, err := enc.encode(pages[i%len(pages)], enc.out)
				if err != nil {
					b.Fatal(err)
				}
				in += int64(v.h.PageSize)
				out += int64(len(o))
				i++
			}
			b.ReportMetric(float64(out)/float64(in), "ratio")
		})
	}
}

// BenchmarkPageDecompress measures reading pages back.
func BenchmarkPageDecompress(b *testing.B) {
	v, pages := benchPages(b, 4096)
	for _, c := range []Compression{Zlib, LZO, Snappy, Zstd} {
		b.Run(c.String(), func(b *testing.B) {
			enc, err := NewPageEncoder(c, v.h.PageSize)
			if err != nil {
				b.Fatal(err)
			}
			type cp struct {
				data  []byte
				flags uint32
			}
			var comp []cp
			for _, p := range pages {
				o, fl, err := enc.encode(p, enc.out)
				if err != nil {
					b.Fatal(err)
				}
				comp = append(comp, cp{bytes.Clone(o), fl})
			}
			enc.Close()
			var dec pageDecoder
			defer dec.close()
			dst := make([]byte, v.h.PageSize)
			b.SetBytes(int64(v.h.PageSize))
			i := 0
			for b.Loop() {
				x := comp[i%len(comp)]
				if err := dec.decode(dst, x.data, x.flags); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// discardAt is an io.WriterAt that drops data.
type discardAt struct{}

func (discardAt) WriteAt(p []byte, _ int64) (int, error) { return len(p), nil }

// BenchmarkWriter writes the whole vmcore (all RAM pages, zero pages
// included) through a Writer; MB/s is per input byte, pages pre-loaded.
func BenchmarkWriter(b *testing.B) {
	v := openVMCore(b, vmcoretest.Debian61)
	ps := v.h.PageSize
	var pfns []uint64
	var data []byte
	for p := uint64(0); p < v.h.MaxPFN; p++ {
		if v.ram.Test(p) {
			buf := make([]byte, ps)
			if err := v.readPage(p, buf); err != nil {
				b.Fatal(err)
			}
			pfns = append(pfns, p)
			data = append(data, buf...)
		}
	}
	for _, c := range []Compression{None, Zlib, LZO, Snappy, Zstd} {
		b.Run(c.String(), func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			var st Stats
			for b.Loop() {
				w, err := NewWriter(discardAt{}, v.h, Options{Compression: c})
				if err != nil {
					b.Fatal(err)
				}
				if err := w.SetBitmaps(&MemBitmaps{RAM: v.ram, Dumpable: v.ram}); err != nil {
					b.Fatal(err)
				}
				for i, p := range pfns {
					if err := w.WritePage(p, data[i*ps:(i+1)*ps]); err != nil {
						b.Fatal(err)
					}
				}
				if err := w.Close(); err != nil {
					b.Fatal(err)
				}
				st = w.Stats()
			}
			b.ReportMetric(float64(st.DataBytes)/float64(st.InputBytes), "ratio")
		})
	}
}
