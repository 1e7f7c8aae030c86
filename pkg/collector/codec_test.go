package collector

import (
	"bytes"
	"runtime"
	"testing"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zlib"
	"github.com/klauspost/compress/zstd"

	"github.com/ukdump/ukdump/internal/vmcoretest"
	"github.com/ukdump/ukdump/internal/zeropage"
	"github.com/ukdump/ukdump/pkg/diskdump"
	"github.com/ukdump/ukdump/pkg/vmcore"
)

// keptPages returns up to max non-zero pages that a dump at level 31
// keeps, from a real vmcore: what the codecs compress in a crash kernel.
func keptPages(b *testing.B, max int) [][]byte {
	core, _ := vmcoretest.Open(b, vmcoretest.Debian61, vmcore.Open)
	s, err := core.NewScanner(31, 0)
	if err != nil {
		b.Fatal(err)
	}
	var pages [][]byte
	var ch vmcore.Chunk
	for len(pages) < max {
		ok, err := s.Next(&ch)
		if err != nil {
			b.Fatal(err)
		}
		if !ok {
			break
		}
		for i := 0; i < ch.N && len(pages) < max; i++ {
			if ch.Dump[i/8]&(1<<(i%8)) == 0 {
				continue
			}
			p := make([]byte, core.PageSize())
			if err := core.ReadPage(ch.StartPFN+uint64(i), p); err != nil {
				b.Fatal(err)
			}
			if !zeropage.Is(p) {
				pages = append(pages, p)
			}
		}
	}
	return pages
}

// BenchmarkCodecs compresses the pages a level 31 dump keeps of a real
// vmcore, one page at a time on one goroutine, with the writer's codecs
// (lzo, snappy, zstd, zlib as the writer sets them) and other settings of
// the same formats, side by side: "ratio" is stored/input bytes (a page
// that does not shrink is stored raw), "cpu-MB/s" input bytes per second of
// the thread's CPU time.
func BenchmarkCodecs(b *testing.B) {
	pages := keptPages(b, 16384)
	ps := len(pages[0])
	writer := func(c diskdump.Compression) func() func([]byte) int {
		return func() func([]byte) int {
			e, err := diskdump.NewPageEncoder(c, ps)
			if err != nil {
				b.Fatal(err)
			}
			return func(p []byte) int {
				enc, err := e.Encode(p)
				if err != nil {
					b.Fatal(err)
				}
				return len(enc.Data)
			}
		}
	}
	zstdLevel := func(l zstd.EncoderLevel) func() func([]byte) int {
		return func() func([]byte) int {
			e, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(l), zstd.WithEncoderConcurrency(1),
				zstd.WithEncoderCRC(false), zstd.WithWindowSize(zstd.MinWindowSize))
			if err != nil {
				b.Fatal(err)
			}
			out := make([]byte, 0, 2*ps)
			return func(p []byte) int { return min(len(e.EncodeAll(p, out[:0])), ps) }
		}
	}
	zlibLevel := func(l int) func() func([]byte) int {
		return func() func([]byte) int {
			var buf bytes.Buffer
			zw, _ := zlib.NewWriterLevel(&buf, l)
			return func(p []byte) int {
				buf.Reset()
				zw.Reset(&buf)
				zw.Write(p)
				zw.Close()
				return min(buf.Len(), ps)
			}
		}
	}
	snappyBetter := func() func([]byte) int {
		out := make([]byte, s2.MaxEncodedLen(ps))
		return func(p []byte) int { return min(len(s2.EncodeSnappyBetter(out, p)), ps) }
	}
	for _, c := range []struct {
		name string
		enc  func() func([]byte) int
	}{
		{"lzo", writer(diskdump.LZO)},
		{"snappy", writer(diskdump.Snappy)},
		{"snappy-better", snappyBetter},
		{"zstd-fastest", writer(diskdump.Zstd)},
		{"zstd-default", zstdLevel(zstd.SpeedDefault)},
		{"zstd-better", zstdLevel(zstd.SpeedBetterCompression)},
		{"zlib-1", writer(diskdump.Zlib)},
		{"zlib-6", zlibLevel(6)},
	} {
		b.Run(c.name, func(b *testing.B) {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			enc := c.enc()
			b.SetBytes(int64(ps))
			var in, out int64
			start := threadCPU(b)
			i := 0
			for b.Loop() {
				out += int64(enc(pages[i%len(pages)]))
				in += int64(ps)
				i++
			}
			cpu := threadCPU(b) - start
			b.ReportMetric(float64(out)/float64(in), "ratio")
			b.ReportMetric(float64(in)/cpu.Seconds()/1e6, "cpu-MB/s")
		})
	}
}
