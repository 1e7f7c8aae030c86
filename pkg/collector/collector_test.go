package collector

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ukdump/ukdump/pkg/diskdump"
	"github.com/ukdump/ukdump/pkg/vmcore"
)

// realCore opens the ELF vmcore from a real crash named by env
// (UKDUMP_TEST_VMCORE: Debian 6.1, UKDUMP_TEST_VMCORE_612: Debian 6.12,
// UKDUMP_TEST_VMCORE_73: Linux 7.3); make
// test sets both after the QEMU tests made them.
func realCore(t *testing.T, env string) *vmcore.Core {
	t.Helper()
	path := os.Getenv(env)
	if path == "" {
		t.Skipf("%s not set", env)
	}
	c, err := vmcore.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestWriteRealKeepsPagesExactly converts real vmcores at -d 31 with every
// codec and checks, with the dump reader, that every kept page equals the
// source byte for byte, that the kept set is what the scanner decided
// (zero pages stay in the bitmap, pointing at one shared page, as
// makedumpfile does), and that the kernel log reads back.
func TestWriteRealKeepsPagesExactly(t *testing.T) {
	for _, env := range []string{"UKDUMP_TEST_VMCORE", "UKDUMP_TEST_VMCORE_612", "UKDUMP_TEST_VMCORE_73"} {
		t.Run(env, func(t *testing.T) {
			core := realCore(t, env)
			for _, comp := range []diskdump.Compression{diskdump.Snappy, diskdump.Zstd, diskdump.Zlib, diskdump.None} {
				out := filepath.Join(t.TempDir(), "dump-"+comp.String())
				f, err := os.Create(out)
				if err != nil {
					t.Fatal(err)
				}
				var reports int
				res, err := Write(core, f, Options{Level: 31, Compression: comp, Progress: func(Progress) { reports++ }})
				f.Close()
				if err != nil {
					t.Fatal(err)
				}
				if reports == 0 {
					t.Error("no progress report")
				}
				d, err := diskdump.OpenFile(out)
				if err != nil {
					t.Fatal(err)
				}
				if d.NumDumpable() != res.Stats[vmcore.Kept]+res.Stats[vmcore.NoMemMap] || d.NumDumpable() != res.Writer.Written {
					t.Errorf("%s: %d dumpable, scanner kept %d, written %d", comp, d.NumDumpable(), res.Stats[vmcore.Kept], res.Writer.Written)
				}
				if res.Stats[vmcore.Free] == 0 || res.Stats[vmcore.Cache] == 0 {
					t.Errorf("%s: nothing filtered: %s", comp, res.Stats.String())
				}
				ps := core.PageSize()
				want, got := make([]byte, ps), make([]byte, ps)
				checked := uint64(0)
				for pfn := uint64(0); pfn < core.MaxPFN(); pfn++ {
					if !d.Dumpable(pfn) {
						continue
					}
					if err := core.ReadPage(pfn, want); err != nil {
						t.Fatal(err)
					}
					if err := d.ReadPage(pfn, got); err != nil {
						t.Fatalf("%s: pfn %#x: %v", comp, pfn, err)
					}
					if !bytes.Equal(want, got) {
						t.Fatalf("%s: pfn %#x differs from the source", comp, pfn)
					}
					checked++
				}
				d.Close()
				var b1, b2 strings.Builder
				if err := Dmesg(core, &b1); err != nil {
					t.Fatal(err)
				}
				if err := DmesgFile(out, &b2); err != nil {
					t.Fatal(err)
				}
				if b1.String() != b2.String() || b1.Len() == 0 {
					t.Errorf("%s: kernel log from the dump differs from the source's", comp)
				}
				t.Logf("%s: %d pages checked, %d MiB, %s", comp, checked, res.Writer.DataBytes>>20, res.Stats.String())
			}
		})
	}
}

// TestWriteELFRoundTrip writes ELF output at -d 31 and reads it back as a
// vmcore: kept pages equal the source.
func TestWriteELFRoundTrip(t *testing.T) {
	core := realCore(t, "UKDUMP_TEST_VMCORE")
	out := filepath.Join(t.TempDir(), "dump.elf")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Write(core, f, Options{Level: 31, Format: diskdump.ELFFormat})
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	back, err := vmcore.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer back.Close()
	st, _ := os.Stat(out)
	src, _ := os.Stat(os.Getenv("UKDUMP_TEST_VMCORE"))
	if st.Size() >= src.Size()/2 {
		t.Errorf("ELF at -d 31 is %d bytes, source %d: want excluded pages left out", st.Size(), src.Size())
	}
	i, err := FileInfo(out)
	if err != nil || i.Format != "elf" || i.Release == "" {
		t.Errorf("FileInfo = %+v, %v", i, err)
	}
	t.Logf("ELF -d 31: %d MiB of %d MiB, %s", st.Size()>>20, src.Size()>>20, res.Stats.String())
}

func TestProgressString(t *testing.T) {
	p := Progress{Scanned: 100, Kept: 40, Written: 10, Out: 3 << 20, PageSize: 1 << 20, Elapsed: 2e9}
	if got := p.String(); got != "scanned 100 pages, kept 40, written 10 (25%), 3 MiB out, 5.2 MB/s, ETA 6s" {
		t.Errorf("String = %q", got)
	}
}
