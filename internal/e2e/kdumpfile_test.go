package e2e

import (
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/ukdump/ukdump/pkg/diskdump"
)

// libkdumpfile is a dump reader we did not write; Debian's build reads
// dumps of x86_64 and arm64 alike on any host.
const kdumpfilePython = "/usr/bin/python3"

// kdumpfilePy reads pages with libkdumpfile: pfns on stdin, "pfn sha256" out.
const kdumpfilePy = `
import sys, hashlib, kdumpfile
k = kdumpfile.kdumpfile(sys.argv[1])
ps = int(sys.argv[2])
for line in sys.stdin:
    pfn = int(line)
    print(pfn, hashlib.sha256(k.read(kdumpfile.KDUMP_MACHPHYSADDR, pfn * ps, ps)).hexdigest())
`

// kdumpfileReleasePy prints the dump's machine and the kernel release that
// libkdumpfile reads from init_uts_ns through the dump's page tables, with
// its own address translation.
const kdumpfileReleasePy = `
import sys, kdumpfile
k = kdumpfile.kdumpfile(sys.argv[1])
k.attr['addrxlat.ostype'] = 'linux'
print(k.attr['arch.name'], k.attr['linux.uts.release'])
`

// haveLibkdumpfile fails (CI) or skips the test when libkdumpfile's Python
// binding is missing.
func haveLibkdumpfile(t *testing.T) bool {
	t.Helper()
	if err := exec.Command(kdumpfilePython, "-c", "import kdumpfile").Run(); err != nil {
		need(t, "python3-libkdumpfile not installed: %v", err)
		return false
	}
	return true
}

// compareWithLibkdumpfile reads the pages ours names (pfn to the sha256 of
// its page of ps bytes, as another reader found it) with libkdumpfile and
// fails the test where the two disagree.
func compareWithLibkdumpfile(t *testing.T, vmcore string, ps uint64, ours map[uint64]string) {
	t.Helper()
	var in strings.Builder
	for pfn := range ours {
		fmt.Fprintln(&in, pfn)
	}
	cmd := exec.Command(kdumpfilePython, "-c", kdumpfilePy, vmcore, fmt.Sprint(ps))
	cmd.Stdin = strings.NewReader(in.String())
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("libkdumpfile: %v", err)
	}
	got := 0
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var pfn uint64
		var sum string
		fmt.Sscan(l, &pfn, &sum)
		if ours[pfn] != sum {
			t.Fatalf("pfn %#x: libkdumpfile and the other reader disagree", pfn)
		}
		got++
	}
	if got != len(ours) || got == 0 {
		t.Errorf("libkdumpfile read %d of %d pages", got, len(ours))
	}
}

// checkWithLibkdumpfile reads every 7th dumped page of the crash kernel's
// dump with libkdumpfile and compares it with what our reader returns.
func checkWithLibkdumpfile(t *testing.T, vmcore string, d *diskdump.Dump) {
	t.Helper()
	if !haveLibkdumpfile(t) {
		return
	}
	ps := d.Header().PageSize
	ours := map[uint64]string{}
	page := make([]byte, ps)
	n := 0
	for pfn := uint64(0); pfn < d.MaxPFN(); pfn++ {
		if !d.Dumpable(pfn) {
			continue
		}
		if n++; n%7 != 0 {
			continue
		}
		if err := d.ReadPage(pfn, page); err != nil {
			t.Fatalf("our reader, pfn %#x: %v", pfn, err)
		}
		sum := sha256.Sum256(page)
		ours[pfn] = hex.EncodeToString(sum[:])
	}
	compareWithLibkdumpfile(t, vmcore, uint64(ps), ours)
}

// checkELFWithLibkdumpfile reads an ELF dump with libkdumpfile alone: the
// machine, the kernel release the first kernel printed (from init_uts_ns,
// through the dump's page tables, by libkdumpfile's translation, not ours),
// and a sample of pages by physical address, each equal to the bytes Go's
// debug/elf finds for it.
func checkELFWithLibkdumpfile(t *testing.T, vmcore string, c cycle) {
	t.Helper()
	if !haveLibkdumpfile(t) {
		return
	}
	rel := regexp.MustCompile(`Linux version (\S+)`).FindStringSubmatch(c.First)
	if rel == nil {
		t.Fatal("the first kernel printed no release")
	}
	machine := "x86_64"
	if !hostReads(c.Arch) {
		machine = "aarch64"
	}
	out, err := exec.Command(kdumpfilePython, "-c", kdumpfileReleasePy, vmcore).CombinedOutput()
	if want := machine + " " + rel[1]; err != nil || strings.TrimSpace(string(out)) != want {
		t.Errorf("libkdumpfile: machine and release %q, %v; want %q", out, err, want)
	}
	f, err := elf.Open(vmcore)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const ps = 4096 // both test kernels' page size
	ours := map[uint64]string{}
	page := make([]byte, ps)
	n := 0
	for _, p := range f.Progs {
		if p.Type != elf.PT_LOAD || p.Paddr%ps != 0 {
			continue
		}
		for off := uint64(0); off+ps <= p.Filesz; off += ps {
			if n++; n%1009 != 0 {
				continue
			}
			if _, err := p.ReadAt(page, int64(off)); err != nil {
				t.Fatalf("debug/elf: %v", err)
			}
			sum := sha256.Sum256(page)
			ours[(p.Paddr+off)/ps] = hex.EncodeToString(sum[:])
		}
	}
	compareWithLibkdumpfile(t, vmcore, ps, ours)
}
