package diskdump

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ukdump/ukdump/internal/vmcoretest"
)

// Paths of the independent readers (Debian packages makedumpfile, crash,
// python3-libkdumpfile, python3-drgn).
const (
	makedumpfileBin = "/usr/bin/makedumpfile"
	crashBin        = "/usr/bin/crash"
	systemPython    = "/usr/bin/python3"
)

// libkdumpfile reader: pfns on stdin, "pfn sha256" (or "pfn ERR msg") out.
const kdumpfilePy = `
import sys, hashlib, kdumpfile
k = kdumpfile.kdumpfile(sys.argv[1])
ps = int(sys.argv[2])
print("format", k.attr['file.format'], flush=True)
for line in sys.stdin:
    pfn = int(line)
    try:
        b = k.read(kdumpfile.KDUMP_MACHPHYSADDR, pfn * ps, ps)
        print(pfn, hashlib.sha256(b).hexdigest())
    except Exception as e:
        print(pfn, "ERR", type(e).__name__)
`

// drgn reader: the same protocol, after "kernel <0|1>" (drgn found a
// Linux kernel core: it read VMCOREINFO from the dump's notes) and
// "arch <name>".
const drgnPy = `
import sys, hashlib, drgn
p = drgn.Program()
p.set_core_dump(sys.argv[1])
ps = int(sys.argv[2])
print("kernel", int(bool(p.flags & drgn.ProgramFlags.IS_LINUX_KERNEL)), flush=True)
print("arch", p.platform.arch.name, flush=True)
for line in sys.stdin:
    pfn = int(line)
    try:
        b = p.read(pfn * ps, ps, True)
        print(pfn, hashlib.sha256(b).hexdigest())
    except Exception as e:
        print(pfn, "ERR", type(e).__name__)
`

// realVMCores are the vmcores of real crashes the tests read. arch is
// drgn's name of the machine; hostReads is false for arm64's, which
// Debian's crash and makedumpfile, built for this x86_64 host only,
// cannot read (libkdumpfile and drgn can).
var realVMCores = []struct {
	name, env, arch string
	hostReads       bool
}{
	{"debian-6.1", vmcoretest.Debian61, "X86_64", true},
	{"debian-6.12", vmcoretest.Debian612, "X86_64", true},
	{"linux-7.3", vmcoretest.Linux73, "X86_64", true},
	{"linux-7.3-arm64", vmcoretest.Linux73ARM64, "AARCH64", false},
}

// dmesgOf runs makedumpfile --dump-dmesg on a dump.
func dmesgOf(t *testing.T, dump string) ([]byte, error) {
	out := filepath.Join(t.TempDir(), "dmesg.txt")
	msg, err := exec.Command(makedumpfileBin, "--dump-dmesg", dump, out).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("makedumpfile --dump-dmesg %s: %v: %s", dump, err, msg)
	}
	return os.ReadFile(out)
}

// crashRelease runs crash --osrelease on a dump.
func crashRelease(dump string) (string, error) {
	out, err := exec.Command(crashBin, "--osrelease", dump).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// kdumpfileHashes reads pfns from a dump with libkdumpfile.
func kdumpfileHashes(t *testing.T, dump string, ps int, pfns []uint64) (string, map[uint64]string) {
	t.Helper()
	head, m := readerHashes(t, "libkdumpfile", kdumpfilePy, dump, ps, pfns)
	return head["format"], m
}

// drgnHashes reads pfns from a dump with drgn, and says what drgn made of
// it ("kernel", "arch").
func drgnHashes(t *testing.T, dump string, ps int, pfns []uint64) (map[string]string, map[uint64]string) {
	t.Helper()
	return readerHashes(t, "drgn", drgnPy, dump, ps, pfns)
}

// readerHashes runs a python reader script: pfns on stdin; "pfn hash"
// lines and "name value" header lines out.
func readerHashes(t *testing.T, reader, py, dump string, ps int, pfns []uint64) (map[string]string, map[uint64]string) {
	t.Helper()
	script := filepath.Join(t.TempDir(), "read.py")
	if err := os.WriteFile(script, []byte(py), 0o644); err != nil {
		t.Fatal(err)
	}
	var in bytes.Buffer
	for _, p := range pfns {
		fmt.Fprintln(&in, p)
	}
	cmd := exec.Command(systemPython, script, dump, fmt.Sprint(ps))
	cmd.Stdin = &in
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s on %s: %v", reader, dump, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	head := make(map[string]string)
	m := make(map[uint64]string)
	for sc.Scan() {
		f := strings.SplitN(sc.Text(), " ", 2)
		if len(f) != 2 {
			t.Fatalf("%s: line %q", reader, sc.Text())
		}
		var pfn uint64
		if _, err := fmt.Sscan(f[0], &pfn); err != nil {
			head[f[0]] = f[1]
			continue
		}
		m[pfn] = f[1]
	}
	return head, m
}

func hashPage(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// haveKdumpfile reports whether the system python has libkdumpfile.
func haveKdumpfile(t *testing.T) bool { return havePython(t, "kdumpfile", "python3-libkdumpfile") }

// haveDrgn reports whether the system python has drgn.
func haveDrgn(t *testing.T) bool { return havePython(t, "drgn", "python3-drgn") }

// havePython reports whether the system python imports module (from the
// Debian package pkg); in CI it must.
func havePython(t *testing.T, module, pkg string) bool {
	needTool(t, systemPython)
	if err := exec.Command(systemPython, "-c", "import "+module).Run(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s required in CI: %v", pkg, err)
		}
		t.Logf("%s missing: its checks skipped", pkg)
		return false
	}
	return true
}

// TestRealVMCoreKdump writes kdump-compressed dumps of real vmcores with
// every codec (all RAM pages dumpable, zero pages shared) and checks them
// with our reader, makedumpfile, crash, libkdumpfile and drgn.
func TestRealVMCoreKdump(t *testing.T) {
	for _, vc := range realVMCores {
		t.Run(vc.name, func(t *testing.T) {
			v := openVMCore(t, vc.env)
			var wantDmesg []byte
			if vc.hostReads {
				needTool(t, makedumpfileBin)
				needTool(t, crashBin)
				var err error
				if wantDmesg, err = dmesgOf(t, v.f.Name()); err != nil {
					t.Fatal(err)
				}
			}
			kdf, dg := haveKdumpfile(t), haveDrgn(t)
			src := &MemBitmaps{RAM: v.ram, Dumpable: v.ram}
			ps := v.h.PageSize
			var ramPFNs []uint64
			want := make(map[uint64]string)
			buf := make([]byte, ps)
			for p := uint64(0); p < v.h.MaxPFN; p++ {
				if v.ram.Test(p) {
					ramPFNs = append(ramPFNs, p)
					if err := v.readPage(p, buf); err != nil {
						t.Fatal(err)
					}
					want[p] = hashPage(buf)
				}
			}
			for _, c := range []Compression{None, Zlib, LZO, Snappy, Zstd} {
				t.Run(c.String(), func(t *testing.T) {
					path := filepath.Join(t.TempDir(), "dump."+c.String())
					f, err := os.Create(path)
					if err != nil {
						t.Fatal(err)
					}
					defer f.Close()
					w, err := NewWriter(f, v.h, Options{Compression: c})
					if err != nil {
						t.Fatal(err)
					}
					writeAll(t, w, src, ps, v.readPage)
					st := w.Stats()
					t.Logf("%v: %d pages, %d zero, %d raw, %d -> %d bytes", c, st.Written, st.ZeroPages,
						st.RawPages, st.InputBytes, st.DataBytes)

					// Our reader: every page.
					d, err := OpenFile(path)
					if err != nil {
						t.Fatal(err)
					}
					defer d.Close()
					for _, p := range ramPFNs {
						if err := d.ReadPage(p, buf); err != nil || hashPage(buf) != want[p] {
							t.Fatalf("our reader: pfn %#x: %v", p, err)
						}
					}
					if vc.hostReads {
						// crash: all codecs.
						if rel, err := crashRelease(path); err != nil || rel != v.vmci.OSRelease() {
							t.Errorf("crash --osrelease: %q, %v; want %q", rel, err, v.vmci.OSRelease())
						}
						// makedumpfile 1.7.2 (Debian 12) reads zlib and lzo only.
						got, err := dmesgOf(t, path)
						switch {
						case err == nil && !bytes.Equal(got, wantDmesg):
							t.Errorf("makedumpfile --dump-dmesg differs from the ELF's (%d vs %d bytes)", len(got), len(wantDmesg))
						case err != nil && (c == None || c == Zlib || c == LZO):
							t.Error(err)
						case err != nil:
							t.Logf("makedumpfile cannot read %v: %v", c, firstLine(err.Error()))
						}
					}
					sample := make([]uint64, 0, len(ramPFNs)/13+1)
					for i := 0; i < len(ramPFNs); i += 13 {
						sample = append(sample, ramPFNs[i])
					}
					// drgn (through its libkdumpfile): a Linux kernel
					// core of the right machine, and the sample's pages.
					if dg {
						head, got := drgnHashes(t, path, ps, sample)
						if head["kernel"] != "1" || head["arch"] != vc.arch {
							t.Errorf("drgn: kernel %q arch %q, want a Linux kernel core of %s", head["kernel"], head["arch"], vc.arch)
						}
						for _, p := range sample {
							if got[p] != want[p] {
								t.Fatalf("drgn: pfn %#x: %s", p, got[p])
							}
						}
					}
					if !kdf {
						return
					}
					// libkdumpfile: all pages for zlib and lzo, a sample otherwise.
					pfns := ramPFNs
					if c != Zlib && c != LZO {
						pfns = sample
					}
					format, got2 := kdumpfileHashes(t, path, ps, pfns)
					if format != "diskdump" {
						t.Errorf("libkdumpfile format %q", format)
					}
					for _, p := range pfns {
						if got2[p] != want[p] {
							t.Fatalf("libkdumpfile: pfn %#x: %s", p, got2[p])
						}
					}
				})
			}
		})
	}
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

// TestRealVMCoreELF writes a filtered ELF core (zero pages excluded) and
// checks it with makedumpfile, crash, libkdumpfile and drgn.
func TestRealVMCoreELF(t *testing.T) {
	for _, vc := range realVMCores {
		t.Run(vc.name, func(t *testing.T) {
			v := openVMCore(t, vc.env)
			if vc.hostReads {
				needTool(t, makedumpfileBin)
				needTool(t, crashBin)
			}
			kdf, dg := haveKdumpfile(t), haveDrgn(t)
			ps := v.h.PageSize
			buf := make([]byte, ps)
			dump := NewBitmap(v.h.MaxPFN)
			want := make(map[uint64]string)
			var pfns []uint64
			for p := uint64(0); p < v.h.MaxPFN; p++ {
				if !v.ram.Test(p) {
					continue
				}
				if err := v.readPage(p, buf); err != nil {
					t.Fatal(err)
				}
				pfns = append(pfns, p)
				want[p] = hashPage(buf)
				if !bytes.Equal(buf, make([]byte, ps)) {
					dump.Set(p)
				}
			}
			path := filepath.Join(t.TempDir(), "dump.elf")
			f, err := os.Create(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			w, err := NewELFWriter(f, v.h, ELFOptions{PageOffset: 0xffff888000000000})
			if err != nil {
				t.Fatal(err)
			}
			writeAll(t, w, &MemBitmaps{RAM: v.ram, Dumpable: dump}, ps, v.readPage)
			fi, _ := f.Stat()
			ef, err := elf.NewFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var filePages uint64
			for _, p := range ef.Progs[1:] {
				filePages += p.Filesz / uint64(ps)
			}
			t.Logf("ELF: %d PT_LOADs, %d bytes, %d file pages for %d dumpable of %d RAM pages",
				len(ef.Progs)-1, fi.Size(), filePages, popcount(dump), len(pfns))
			if filePages >= uint64(len(pfns)) {
				t.Error("no excluded page was left out")
			}
			// Our view: every dumpable page is in the file and excluded
			// pages stored in the file are zero.
			for _, p := range pfns {
				found := false
				for _, ph := range ef.Progs[1:] {
					if a := p * uint64(ps); a >= ph.Paddr && a < ph.Paddr+ph.Filesz {
						found = true
						if _, err := ph.ReadAt(buf, int64(a-ph.Paddr)); err != nil {
							t.Fatal(err)
						}
						if hashPage(buf) != want[p] {
							t.Fatalf("pfn %#x: content differs", p)
						}
					}
				}
				if !found && dump.Test(p) {
					t.Fatalf("dumpable pfn %#x not in the file", p)
				}
			}
			if vc.hostReads {
				wantDmesg, err := dmesgOf(t, v.f.Name())
				if err != nil {
					t.Fatal(err)
				}
				if got, err := dmesgOf(t, path); err != nil || !bytes.Equal(got, wantDmesg) {
					t.Errorf("makedumpfile --dump-dmesg on our ELF: %v (%d vs %d bytes)", err, len(got), len(wantDmesg))
				}
				if rel, err := crashRelease(path); err != nil || rel != v.vmci.OSRelease() {
					t.Errorf("crash --osrelease: %q, %v", rel, err)
				}
			}
			zero := hashPage(make([]byte, ps))
			check := func(reader string, got map[uint64]string) {
				for _, p := range pfns {
					// Excluded pages read as zeros or as missing.
					if !dump.Test(p) && (got[p] == zero || strings.HasPrefix(got[p], "ERR")) {
						continue
					}
					if got[p] != want[p] {
						t.Fatalf("%s: pfn %#x (dumpable %v): %s", reader, p, dump.Test(p), got[p])
					}
				}
			}
			if kdf {
				_, got := kdumpfileHashes(t, path, ps, pfns)
				check("libkdumpfile", got)
			}
			// drgn reads ELF cores with its own code, not libkdumpfile's.
			if dg {
				head, got := drgnHashes(t, path, ps, pfns)
				if head["kernel"] != "1" || head["arch"] != vc.arch {
					t.Errorf("drgn: kernel %q arch %q, want a Linux kernel core of %s", head["kernel"], head["arch"], vc.arch)
				}
				check("drgn", got)
			}
		})
	}
}

// TestReadMakedumpfileOutput reads dumps written by makedumpfile (zlib and
// LZO) with our reader and compares pages with the ELF vmcore.
func TestReadMakedumpfileOutput(t *testing.T) {
	for _, vc := range realVMCores {
		if !vc.hostReads {
			continue
		}
		t.Run(vc.name, func(t *testing.T) {
			v := openVMCore(t, vc.env)
			needTool(t, makedumpfileBin)
			for _, mode := range []struct {
				flag string
				c    Compression
			}{{"-c", Zlib}, {"-l", LZO}} {
				path := filepath.Join(t.TempDir(), "mdf.kdump")
				out, err := exec.Command(makedumpfileBin, mode.flag, "-d", "1", v.f.Name(), path).CombinedOutput()
				if err != nil {
					t.Fatalf("makedumpfile %s: %v: %s", mode.flag, err, out)
				}
				d, err := OpenFile(path)
				if err != nil {
					t.Fatal(err)
				}
				if d.Compression() != mode.c || d.Incomplete() ||
					string(d.VMCOREINFO()) != string(v.h.Notes[v.h.VMCOREINFOOffset:v.h.VMCOREINFOOffset+v.h.VMCOREINFOSize]) {
					t.Fatalf("%s: compression %v incomplete %v", mode.flag, d.Compression(), d.Incomplete())
				}
				ps := v.h.PageSize
				buf, ref := make([]byte, ps), make([]byte, ps)
				var n uint64
				for p := uint64(0); p < d.MaxPFN(); p++ {
					if !d.Dumpable(p) {
						continue
					}
					if err := d.ReadPage(p, buf); err != nil {
						t.Fatalf("%s: %v", mode.flag, err)
					}
					if err := v.readPage(p, ref); err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(buf, ref) {
						t.Fatalf("%s: pfn %#x differs", mode.flag, p)
					}
					n++
				}
				if n == 0 || n != d.NumDumpable() {
					t.Fatalf("%s: %d pages read", mode.flag, n)
				}
				d.Close()
			}
		})
	}
}
