package collector

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/ukdump/ukdump/internal/vmcoretest"
	"github.com/ukdump/ukdump/pkg/diskdump"
	"github.com/ukdump/ukdump/pkg/vmcore"
)

// TestWriteRealKeepsPagesExactly converts real vmcores at -d 31 with every
// codec and checks, with the dump reader, that every kept page equals the
// source byte for byte, that the kept set is what the scanner decided
// (zero pages stay in the bitmap, pointing at one shared page, as
// makedumpfile does), and that the kernel log reads back.
func TestWriteRealKeepsPagesExactly(t *testing.T) {
	for _, env := range vmcoretest.All() {
		t.Run(env, func(t *testing.T) {
			core, _ := vmcoretest.Open(t, env, vmcore.Open)
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
				if err := Dmesg(core, &b1, DmesgOptions{}); err != nil {
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
	core, path := vmcoretest.Open(t, vmcoretest.Debian61, vmcore.Open)
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
	src, _ := os.Stat(path)
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

// failingAt is a vmcore whose bytes in [from, to) cannot be read, as a
// page of /proc/vmcore over a memory error.
type failingAt struct {
	b        []byte
	from, to int64
}

func (f failingAt) ReadAt(p []byte, off int64) (int, error) {
	if off < f.to && off+int64(len(p)) > f.from {
		return 0, syscall.EIO
	}
	return bytes.NewReader(f.b).ReadAt(p, off)
}

// TestUnreadablePage: a page that cannot be read is recorded as missing
// (readers report it missing, not as zeros), the pages after it are still
// dumped, and the dump is marked incomplete; it once aborted the whole dump.
func TestUnreadablePage(t *testing.T) {
	mem := make([]byte, 3*4096)
	copy(mem, strings.Repeat("first page ", 300))
	copy(mem[4096:], strings.Repeat("second page ", 300))
	copy(mem[2*4096:], strings.Repeat("third page ", 300))
	img := vmcoretest.Synthetic("OSRELEASE=6.1.0\nPAGESIZE=4096\n", mem)
	src := failingAt{b: img, from: vmcoretest.SyntheticDataOffset + 4096, to: vmcoretest.SyntheticDataOffset + 8192}
	core, err := vmcore.NewCore(src, int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	for _, elf := range []bool{false, true} {
		out := filepath.Join(t.TempDir(), "dump")
		f, err := os.Create(out)
		if err != nil {
			t.Fatal(err)
		}
		var bad []uint64
		format := diskdump.KdumpFormat
		if elf {
			format = diskdump.ELFFormat
		}
		res, err := Write(core, f, Options{Level: 0, Compression: diskdump.Snappy, Format: format,
			Unreadable: func(pfn uint64, err error) { bad = append(bad, pfn) }})
		f.Close()
		if err != nil {
			t.Fatalf("elf=%v: Write: %v", elf, err)
		}
		if res.Writer.Missing != 1 || len(bad) != 1 || bad[0] != 1 || res.Writer.Written != 3 {
			t.Fatalf("elf=%v: missing %d, reported %v, written %d; want pfn 1 missing, 3 written", elf, res.Writer.Missing, bad, res.Writer.Written)
		}
		if elf {
			ef, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			if flags := binary.LittleEndian.Uint32(ef[48:]); flags&1 == 0 {
				t.Errorf("ELF core with a missing page not marked incomplete (e_flags %#x)", flags)
			}
			continue
		}
		d, err := diskdump.OpenFile(out)
		if err != nil {
			t.Fatal(err)
		}
		if !d.Incomplete() {
			t.Error("dump with a missing page not marked incomplete")
		}
		page := make([]byte, 4096)
		if err := d.ReadPage(1, page); !errors.Is(err, diskdump.ErrPageIncomplete) {
			t.Errorf("missing page reads as %v, want ErrPageIncomplete", err)
		}
		for _, pfn := range []uint64{0, 2} {
			if err := d.ReadPage(pfn, page); err != nil || !bytes.Equal(page, mem[pfn*4096:(pfn+1)*4096]) {
				t.Errorf("pfn %d after the missing page: %v", pfn, err)
			}
		}
		d.Close()
	}
}

// TestWriteMapped: a core read through mappings (OpenMapped, as kdumpinit
// reads /proc/vmcore) gives the same dump file, byte for byte, as one read
// with pread, in both formats; and so does one compressed on three
// goroutines (Workers).
func TestWriteMapped(t *testing.T) {
	for _, env := range vmcoretest.All() {
		t.Run(env, func(t *testing.T) {
			path := vmcoretest.Path(t, env)
			for _, format := range []diskdump.Format{diskdump.KdumpFormat, diskdump.ELFFormat} {
				var outs [3][]byte
				for i, open := range []func(string) (*vmcore.Core, error){vmcore.Open, vmcore.OpenMapped, vmcore.OpenMapped} {
					workers := 1
					if i == 2 {
						workers = 3
					}
					core, err := open(path)
					if err != nil {
						t.Fatal(err)
					}
					out := filepath.Join(t.TempDir(), "dump")
					f, err := os.OpenFile(out, os.O_RDWR|os.O_CREATE, 0o600)
					if err != nil {
						t.Fatal(err)
					}
					_, err = Write(core, f, Options{Level: 31, Compression: diskdump.LZO, Format: format, Workers: workers})
					f.Close()
					core.Close()
					if err != nil {
						t.Fatal(err)
					}
					if outs[i], err = os.ReadFile(out); err != nil {
						t.Fatal(err)
					}
				}
				if !bytes.Equal(outs[0], outs[1]) {
					t.Errorf("%s: the dump of the mapped core differs (%d bytes, %d with pread)", format, len(outs[1]), len(outs[0]))
				}
				if !bytes.Equal(outs[1], outs[2]) {
					t.Errorf("%s: the dump compressed by 3 workers differs (%d bytes, %d with one)", format, len(outs[2]), len(outs[1]))
				}
			}
		})
	}
}

// TestUnreadableMappedPage: a mapped page the kernel cannot read raises
// SIGBUS (a mapping of a file past its end does the same), which must cost
// that page, not the process: the page is read again with pread, recorded
// as missing when that fails too, and the dump goes on.
func TestUnreadableMappedPage(t *testing.T) {
	const pages = 8
	mem := make([]byte, pages*4096)
	for i := range pages {
		copy(mem[i*4096:], strings.Repeat(fmt.Sprintf("page %d ", i), 400))
	}
	img := vmcoretest.Synthetic("OSRELEASE=6.1.0\nPAGESIZE=4096\n", mem)
	path := filepath.Join(t.TempDir(), "vmcore")
	if err := os.WriteFile(path, img, 0o600); err != nil {
		t.Fatal(err)
	}
	core, err := vmcore.OpenMapped(path)
	if err != nil {
		t.Fatal(err)
	}
	defer core.Close()
	// The last three pages go away under the mapping.
	if err := os.Truncate(path, int64(vmcoretest.SyntheticDataOffset+5*4096)); err != nil {
		t.Fatal(err)
	}
	var bad []uint64
	f, err := os.Create(filepath.Join(t.TempDir(), "dump"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res, err := Write(core, f, Options{Level: 0, Compression: diskdump.Snappy,
		Unreadable: func(pfn uint64, err error) { bad = append(bad, pfn) }})
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	if fmt.Sprint(bad) != "[5 6 7]" || res.Writer.Missing != 3 || res.Writer.Written != pages {
		t.Errorf("missing %d, reported %v, written %d; want pfns 5-7 missing, %d written", res.Writer.Missing, bad, res.Writer.Written, pages)
	}
}

// TestCompressors: only a compressed kdump file is compressed on several
// goroutines.
func TestCompressors(t *testing.T) {
	for _, tc := range []struct {
		o    Options
		want int
	}{
		{Options{Workers: 3, Compression: diskdump.Snappy}, 3},
		{Options{Workers: 0, Compression: diskdump.Snappy}, 1},
		{Options{Workers: 3, Compression: diskdump.None}, 1},
		{Options{Workers: 3, Compression: diskdump.Snappy, Format: diskdump.ELFFormat}, 1},
	} {
		if got := tc.o.Compressors(); got != tc.want {
			t.Errorf("%+v: Compressors() = %d, want %d", tc.o, got, tc.want)
		}
	}
}
