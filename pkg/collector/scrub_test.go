package collector

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/ukdump/ukdump/internal/vmcoretest"
	"github.com/ukdump/ukdump/pkg/diskdump"
	"github.com/ukdump/ukdump/pkg/scrub"
	"github.com/ukdump/ukdump/pkg/vmcore"
)

// scrubMemory is 12 pages of text with secrets of two volumes planted.
// Pfn 6 will be a hole in the vmcore (not RAM) and pfn 3 unreadable, so
// that the dump has gaps: pfns 2 and 4, 5 and 7 are not neighbours in it.
// It returns the memory, the memory as a correct scrub leaves it (pfn 3
// and 6 zero: not in the dump), the secrets, those planted whole and the
// counts the scrub must report.
func scrubMemory(t *testing.T, vols []scrub.Volume) (mem, want []byte, secrets []scrub.Secret, whole [][]byte, counts scrub.Counts) {
	t.Helper()
	const ps = 4096
	mem = make([]byte, 12*ps)
	for pfn := range 12 {
		for i := 0; i < ps; i += 32 {
			copy(mem[pfn*ps+i:], fmt.Sprintf("pfn %02d line %04d of plain text.", pfn, i/32))
		}
	}
	want = bytes.Clone(mem)
	by := map[string][]byte{}
	for i, v := range vols {
		ss, err := scrub.Derive(v)
		if err != nil {
			t.Fatal(err)
		}
		secrets = append(secrets, ss...)
		// Derive's order: the key, then halves or salt, then for each
		// AES key its encryption and decryption schedules.
		for j, s := range ss {
			by[fmt.Sprintf("%d/%s/%d", i, s.Kind, j)] = s.Bytes
		}
	}
	// plant puts the secret name at byte at: whole (n 0), its first n
	// bytes, or (n < 0) its last -n bytes.
	plant := func(name string, at int, n int, kind scrub.Kind) {
		b, ok := by[name]
		if !ok {
			t.Fatalf("no secret %s", name)
		}
		switch {
		case n == 0:
			n = len(b)
			whole = append(whole, b)
		case n < 0:
			b, n = b[len(b)+n:], -n
		}
		copy(mem[at:], b[:n])
		clear(want[at : at+n])
		counts[kind]++
	}
	plant("0/key/0", 100, 0, scrub.Key)            // in one page
	plant("0/enc/3", 2*ps-37, 0, scrub.Enc)        // across pfns 1 and 2
	plant("1/salt/1", 3*ps-20, 20, scrub.Partial)  // into 3, which is unreadable
	plant("0/dec/6", 5*ps-200, 0, scrub.Dec)       // across 4 and 5
	plant("0/dec/4", 6*ps-120, 120, scrub.Partial) // cut by 5's end: 6 is a hole
	plant("1/enc/2", 7*ps, -50, scrub.Partial)     // cut by 7's start
	plant("1/enc/4", 8*ps-1000, 0, scrub.Enc)      // the salt's schedule, across 7 and 8
	plant("1/salt/1", 8*ps+2000, 0, scrub.Salt)    // in one page
	plant("0/half/2", 9*ps+3, 0, scrub.Half)       // in one page
	plant("1/dec/3", 11*ps-3, 0, scrub.Dec)        // 3 bytes in pfn 10
	plant("1/key/0", 11*ps+ps-32, 0, scrub.Key)    // ends the last page
	clear(want[3*ps : 4*ps])
	clear(want[6*ps : 7*ps])
	return mem, want, secrets, whole, counts
}

// twoVolumes are random keys of an aes-xts-plain64 volume with a 512-bit
// key and an aes-cbc-essiv:sha256 one.
func twoVolumes(seed uint64) []scrub.Volume {
	rng := rand.New(rand.NewPCG(seed, seed))
	key1, key2 := make([]byte, 64), make([]byte, 32)
	for _, k := range [][]byte{key1, key2} {
		for i := range k {
			k[i] = byte(rng.Uint32())
		}
	}
	return []scrub.Volume{{Cipher: "aes-xts-plain64", Key: key1}, {Cipher: "aes-cbc-essiv:sha256", Key: key2}}
}

// TestWriteScrubs writes a synthetic vmcore with planted secrets in both
// formats and reads the dumps back: no secret is left, every other byte is
// the source's, the counts are right. Without Options.Scrub the same
// dumps hold every secret, so the search would have found them.
func TestWriteScrubs(t *testing.T) {
	vols := twoVolumes(31)
	mem, want, secrets, whole, counts := scrubMemory(t, vols)
	const ps = 4096
	img := vmcoretest.SyntheticSegments("OSRELEASE=6.1.0\nPAGESIZE=4096\n",
		vmcoretest.Segment{Mem: mem[:6*ps]}, vmcoretest.Segment{Phys: 7 * ps, Mem: mem[7*ps:]})
	bad := int64(vmcoretest.SyntheticDataOffset + 3*ps)
	core, err := vmcore.NewCore(failingAt{b: img, from: bad, to: bad + ps}, int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	s, err := scrub.New(vols)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Wipe()
	for _, format := range []diskdump.Format{diskdump.KdumpFormat, diskdump.ELFFormat} {
		for i, scrubbing := range []bool{true, false, true} {
			// The third run compresses on two goroutines.
			o := Options{Level: 1, Compression: diskdump.Snappy, Format: format, Workers: 1 + i/2}
			if scrubbing {
				o.Scrub = s
			}
			out := filepath.Join(t.TempDir(), "dump")
			f, err := os.Create(out)
			if err != nil {
				t.Fatal(err)
			}
			res, err := Write(core, f, o)
			f.Close()
			if err != nil {
				t.Fatalf("%s: %v", format, err)
			}
			back := readBack(t, out, format, len(mem)/ps)
			if !scrubbing {
				found := 0
				for _, b := range whole {
					if bytes.Contains(back, b) {
						found++
					}
				}
				if found != len(whole) || res.Scrubbed != (scrub.Counts{}) {
					t.Errorf("%s without scrubbing: %d of %d planted secrets in the dump, counts %s", format, found, len(whole), res.Scrubbed)
				}
				continue
			}
			left := 0
			for _, sec := range secrets {
				if bytes.Contains(back, sec.Bytes) {
					left++
				}
			}
			if left != 0 {
				t.Errorf("%s: %d secrets left in the dump", format, left)
			}
			if i := firstDiff(back, want); i >= 0 {
				t.Errorf("%s: pfn %d byte %d is %#02x, want %#02x", format, i/4096, i%4096, back[i], want[i])
			}
			if res.Scrubbed != counts {
				t.Errorf("%s: scrubbed %s, want %s", format, res.Scrubbed, counts)
			}
			if res.Writer.Written != 11 || res.Writer.Missing != 1 {
				t.Errorf("%s: %d pages written, %d of them missing; want 11 and 1", format, res.Writer.Written, res.Writer.Missing)
			}
			if format == diskdump.ELFFormat {
				raw, err := os.ReadFile(out)
				if err != nil {
					t.Fatal(err)
				}
				for _, sec := range secrets {
					if bytes.Contains(raw, sec.Bytes) {
						t.Errorf("ELF file holds a %s", sec.Kind)
					}
				}
			}
		}
	}
}

// readBack returns the memory of a dump as one image: the pages it holds,
// zeros for the others (not RAM, left out, recorded missing).
func readBack(t *testing.T, name string, format diskdump.Format, pages int) []byte {
	t.Helper()
	img := make([]byte, pages*4096)
	var read func(pfn uint64, b []byte) error
	if format == diskdump.ELFFormat {
		c, err := vmcore.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		read = func(pfn uint64, b []byte) error {
			if err := c.ReadPage(pfn, b); !errors.Is(err, vmcore.ErrNotRAM) {
				return err
			}
			return nil
		}
	} else {
		d, err := diskdump.OpenFile(name)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		read = func(pfn uint64, b []byte) error {
			if err := d.ReadPage(pfn, b); !errors.Is(err, diskdump.ErrPageIncomplete) && !errors.Is(err, diskdump.ErrExcluded) {
				return err
			}
			return nil
		}
	}
	for pfn := range pages {
		if err := read(uint64(pfn), img[pfn*4096:(pfn+1)*4096]); err != nil {
			t.Fatalf("pfn %d: %v", pfn, err)
		}
	}
	return img
}

func firstDiff(a, b []byte) int {
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}

// discard is an io.WriterAt that keeps nothing.
type discard struct{}

func (discard) WriteAt(p []byte, _ int64) (int, error) { return len(p), nil }

// BenchmarkWriteScrub writes the real Debian 6.1 vmcore at -d 31 with
// snappy, without and with a scrubber of two volumes (aes-xts-plain64
// with a 512-bit key and aes-cbc-essiv:sha256), to a writer that keeps
// nothing: the difference is the scrub's cost on a real page mix, the
// held-back copy of each page included. cpu-ms/op is the process's CPU
// time, which a loaded machine disturbs less than the wall time.
func BenchmarkWriteScrub(b *testing.B) {
	core, _ := vmcoretest.Open(b, vmcoretest.Debian61, vmcore.Open)
	s, err := scrub.New(twoVolumes(41))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Wipe()
	for _, tc := range []struct {
		name  string
		scrub *scrub.Scrubber
	}{{"plain", nil}, {"scrub", s}} {
		b.Run(tc.name, func(b *testing.B) {
			var kept uint64
			cpu := processCPU(b)
			for b.Loop() {
				res, err := Write(core, discard{}, Options{Level: 31, Compression: diskdump.Snappy, Scrub: tc.scrub})
				if err != nil {
					b.Fatal(err)
				}
				kept = res.Writer.Written
			}
			b.ReportMetric(float64(cpu().Milliseconds())/float64(b.N), "cpu-ms/op")
			b.ReportMetric(float64(kept*uint64(core.PageSize()))/1e6, "MB-kept")
		})
	}
}

// processCPU returns the function that tells the process's CPU time since.
func processCPU(b *testing.B) func() time.Duration {
	now := func() time.Duration {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			b.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	start := now()
	return func() time.Duration { return now() - start }
}

// BenchmarkScrubRealPages runs the scrub alone over pages of the real
// Debian 6.1 vmcore: runs of 16 consecutive RAM pages spread over all of
// memory (32 MiB of kernel, cache, user, free and zero pages), in pfn
// order, with the patterns of BenchmarkWriteScrub (stride16) and with a
// 256-bit XTS key instead (stride8). cpu-MB/s is of the thread's CPU time.
func BenchmarkScrubRealPages(b *testing.B) {
	core, _ := vmcoretest.Open(b, vmcoretest.Debian61, vmcore.Open)
	ps := core.PageSize()
	const runs, runLen = 512, 16
	var pfns []uint64
	var pages [][]byte
	step := core.MaxPFN() / runs
	for r := range uint64(runs) {
		for p := r * step; p < r*step+runLen; p++ {
			buf := make([]byte, ps)
			if !core.IsRAM(p) || core.ReadPage(p, buf) != nil {
				continue
			}
			pfns, pages = append(pfns, p), append(pages, buf)
		}
	}
	vols := twoVolumes(41)
	short := twoVolumes(41)
	short[0].Key = short[0].Key[:32] // 16-byte halves: a word every 8 bytes
	for name, vols := range map[string][]scrub.Volume{"stride16": vols, "stride8": short} {
		s, err := scrub.New(vols)
		if err != nil {
			b.Fatal(err)
		}
		defer s.Wipe()
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(ps))
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			start := threadCPU(b)
			n := 0
			var st *scrub.Stream
			for b.Loop() {
				i := n % len(pages)
				if i == 0 {
					if st != nil {
						if err := st.Flush(); err != nil {
							b.Fatal(err)
						}
					}
					if st, err = s.NewStream(ps, func(uint64, []byte) error { return nil }); err != nil {
						b.Fatal(err)
					}
				}
				if err := st.Page(pfns[i], pages[i]); err != nil {
					b.Fatal(err)
				}
				n++
			}
			b.ReportMetric(float64(n*ps)/(threadCPU(b)-start).Seconds()/1e6, "cpu-MB/s")
			b.ReportMetric(float64(len(pages)*ps)/(1<<20), "MiB")
		})
	}
}

func threadCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(1 /* RUSAGE_THREAD */, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
