package vmcore

import (
	"testing"

	"github.com/ukdump/ukdump/internal/vmcoretest"
	"github.com/ukdump/ukdump/internal/zeropage"
)

// BenchmarkScan measures classification throughput (struct page reading
// and classification at -d 31) on the real vmcore of UKDUMP_TEST_VMCORE.
func BenchmarkScan(b *testing.B) {
	for _, env := range []string{vmcoretest.Debian61, vmcoretest.Linux73} {
		b.Run(env, func(b *testing.B) {
			c, _ := realCore(b, env)
			var pfns uint64
			b.ResetTimer()
			for b.Loop() {
				s := scanAll(b, c, MaxLevel, nil)
				st := s.Stats()
				for r, n := range st {
					if Reason(r) != NotRAM {
						pfns += n
					}
				}
			}
			b.ReportMetric(float64(pfns)/b.Elapsed().Seconds(), "pages/s")
		})
	}
}

// BenchmarkReadPages measures page data reads with ReadPages (64 pages at
// a time) plus IsZero, as a writer would do.
func BenchmarkReadPages(b *testing.B) {
	c, _ := realCore(b, vmcoretest.Debian61)
	const n = 64
	buf := make([]byte, n*c.PageSize())
	var bytes int64
	for b.Loop() {
		for pfn := uint64(0); pfn+n <= c.MaxPFN(); pfn += n {
			if !c.IsRAM(pfn) {
				continue
			}
			if err := c.ReadPages(pfn, n, buf); err != nil {
				b.Fatal(err)
			}
			for i := 0; i < n; i++ {
				zeropage.Is(buf[i*c.PageSize() : (i+1)*c.PageSize()])
			}
			bytes += int64(len(buf))
		}
	}
	b.ReportMetric(float64(bytes)/b.Elapsed().Seconds()/1e6, "MB/s")
}
