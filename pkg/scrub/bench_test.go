package scrub

import (
	"math/rand/v2"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// BenchmarkStream measures the scrub of a dump's pages with the patterns
// of two volumes (aes-xts-plain64 with a 512-bit key and
// aes-cbc-essiv:sha256: 13 patterns, none shorter than 32 bytes, so the
// scan tests a word every 16 bytes), 4 KiB pages in consecutive pfns, the
// copy of each page the Stream holds back included; "stride8" has a
// 256-bit XTS key instead (16-byte halves: a word every 8 bytes). MB/s is
// of page data.
// Random pages are the filter's worst case; zero and text pages are what
// most of a dump is. Besides MB/s of wall time, cpu-MB/s is of the
// thread's CPU time, which stays meaningful on a loaded machine.
func BenchmarkStream(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	s, err := New(twoVolumes(rng))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Wipe()
	vols := twoVolumes(rng)
	vols[0].Key = vols[0].Key[:32]
	s8, err := New(vols)
	if err != nil {
		b.Fatal(err)
	}
	defer s8.Wipe()
	text := []byte(strings.Repeat("kernel: dm-crypt: a page of ordinary text.\n", testPS)[:testPS])
	for _, kind := range []struct {
		name string
		page func(i int) []byte
		s    *Scrubber
	}{
		{"random", func(int) []byte { return randomKey(rng, testPS) }, s},
		{"zero", func(int) []byte { return make([]byte, testPS) }, s},
		{"text", func(int) []byte { return text }, s},
		{"mix", func(i int) []byte {
			switch i % 4 {
			case 0:
				return randomKey(rng, testPS)
			case 1:
				return text
			}
			return make([]byte, testPS)
		}, s},
		{"random-stride8", func(int) []byte { return randomKey(rng, testPS) }, s8},
		{"text-stride8", func(int) []byte { return text }, s8},
	} {
		pages := make([][]byte, 64)
		for i := range pages {
			pages[i] = kind.page(i)
		}
		b.Run(kind.name, func(b *testing.B) {
			st, err := kind.s.NewStream(testPS, func(uint64, []byte) error { return nil })
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(testPS)
			pfn := uint64(0)
			cpu := threadCPU(b)
			for b.Loop() {
				if err := st.Page(pfn, pages[pfn%64]); err != nil {
					b.Fatal(err)
				}
				pfn++
			}
			cpu(pfn * testPS)
			if c := st.Counts(); c.Total() != 0 {
				b.Errorf("scrubbed %s in pages without secrets", c)
			}
		})
	}
}

// threadCPU locks the benchmark to its thread and returns the function
// that reports the throughput of n bytes over the thread's CPU time since.
func threadCPU(b *testing.B) func(n uint64) {
	runtime.LockOSThread()
	start := threadTime(b)
	return func(n uint64) {
		d := threadTime(b) - start
		runtime.UnlockOSThread()
		if d > 0 {
			b.ReportMetric(float64(n)/d.Seconds()/1e6, "cpu-MB/s")
		}
	}
}

func threadTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(1 /* RUSAGE_THREAD */, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
