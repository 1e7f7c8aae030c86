package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ukdump/ukdump/internal/qemu"
	"github.com/ukdump/ukdump/pkg/capture"
	"github.com/ukdump/ukdump/pkg/collector"
	"github.com/ukdump/ukdump/pkg/diskdump"
)

// Guest sizes for the stock Debian kernel. The reservation can be set with
// UKDUMP_E2E_CRASHKERNEL to find the smallest that still works.
const guestMiB = 512

func crashKernelSize() string {
	if s := os.Getenv("UKDUMP_E2E_CRASHKERNEL"); s != "" {
		return s
	}
	return "160M"
}

var hostTools = []string{"qemu-system-x86_64", "mkfs.ext4", "debugfs", "makedumpfile"}

// plainCase is a cycle on one ext4 virtio disk.
type plainCase struct {
	Kernel      kernel
	DiskMiB     int
	Conf        string // directives after the target line
	CrashKernel string
	Params      string // first-kernel command line additions
	Timeout     time.Duration
	CPUs        int // the guest's; 0: one
}

// plainResult is what a plain case leaves for its checks.
type plainResult struct {
	Dir, Disk, UUID, Marker string
	Cycle                   cycle
}

// runPlain makes the disk, writes ukdump.conf naming it, and runs a cycle.
func runPlain(t *testing.T, pc plainCase) plainResult {
	t.Helper()
	r := plainResult{Dir: outDir(t), UUID: newUUID(), Marker: randomHex(8)}
	r.Disk = filepath.Join(r.Dir, "disk.img")
	makeExt4(t, r.Disk, r.UUID, pc.DiskMiB)
	if pc.CrashKernel == "" {
		pc.CrashKernel = crashKernelSize()
	}
	r.Cycle = runCycle(t, r.Dir, cycleOptions{
		Kernel:      pc.Kernel,
		Conf:        "ext4 UUID=" + r.UUID + "\n" + pc.Conf,
		Disks:       []string{r.Disk},
		MemoryMiB:   guestMiB,
		CrashKernel: pc.CrashKernel,
		Params:      strings.TrimSpace("ukdump.marker=" + r.Marker + " " + pc.Params),
		Timeout:     pc.Timeout,
		CPUs:        pc.CPUs,
		Modules:     []string{"virtio_pci", "virtio_blk"},
	})
	return r
}

// checkPlain verifies a plain case that should have written a dump.
func checkPlain(t *testing.T, r plainResult, target string) string {
	t.Helper()
	vmcore, loaded, dmesg := verifyDump(t, r.Dir, r.Disk, r.Cycle, r.Marker)
	writeReport(t, r.Dir, r.Cycle, vmcore, loaded, dmesg, target)
	return vmcore
}

// TestCrashCycle is the whole product on its default path: a first kernel
// runs the real "ukdump load", crashes, and the crash kernel dumps to an
// ext4 disk. The host checks the dump with tools we did not write. The dump
// is a whole ELF core, as before the core collector, and is kept for the
// real-vmcore tests.
func TestCrashCycle(t *testing.T) {
	t.Parallel()
	requireTools(t, hostTools...)
	r := runPlain(t, plainCase{Kernel: testKernel(t), DiskMiB: 700, Conf: "path /var/crash\nformat elf\ndump_level 0\n", Timeout: 8 * time.Minute})
	saveVmcore(t, checkPlain(t, r, "ext4 on a virtio disk"), "debian-6.1.vmcore")
}

// saveVmcore keeps an ELF vmcore from a real crash where the tests of
// pkg/vmcore and pkg/diskdump look for one (make test sets
// UKDUMP_VMCORE_DIR and runs them after the QEMU tests).
func saveVmcore(t *testing.T, vmcore, name string) {
	dir := os.Getenv("UKDUMP_VMCORE_DIR")
	if dir == "" {
		return
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(vmcore)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestCrashCycleDefault is a plain ext4 target with the default dump
// settings: kdump-compressed, dump level 31, snappy.
func TestCrashCycleDefault(t *testing.T) {
	t.Parallel()
	requireTools(t, hostTools...)
	r := runPlain(t, plainCase{Kernel: testKernel(t), DiskMiB: 200, Timeout: 5 * time.Minute})
	if comp := dumpCompression(t, checkPlain(t, r, "ext4 on a virtio disk, default dump settings")); comp != "snappy" {
		t.Errorf("default compression %q, want snappy", comp)
	}
}

// TestCrashCycleTwoCPUs: crash_cpus 2 brings up two CPUs in the crash
// kernel, whose collector compresses on both (diskdump.Parallel); the dump
// is read by the same readers.
func TestCrashCycleTwoCPUs(t *testing.T) {
	t.Parallel()
	requireTools(t, hostTools...)
	r := runPlain(t, plainCase{Kernel: testKernel(t), DiskMiB: 200, Conf: "crash_cpus 2\n", CPUs: 2, Timeout: 5 * time.Minute})
	wantLines(t, r.Cycle.Crash, "crash kernel", " nr_cpus=2 ", "kdumpinit: compressing pages on 2 CPUs")
	checkPlain(t, r, "ext4 on a virtio disk, crash_cpus 2")
}

// TestCrashCycle612 runs the plain cycle on Debian 13's stock 6.12 cloud
// kernel (modules .ko.xz, struct page types in the top byte of page_type)
// and keeps its ELF vmcore for the real-vmcore tests.
func TestCrashCycle612(t *testing.T) {
	t.Parallel()
	requireTools(t, hostTools...)
	r := runPlain(t, plainCase{Kernel: debianKernel(t, "", "trixie"), DiskMiB: 700, Conf: "format elf\ndump_level 0\n",
		CrashKernel: "192M", Timeout: 8 * time.Minute})
	saveVmcore(t, checkPlain(t, r, "ext4 on a virtio disk, Debian 13 kernel"), "debian-6.12.vmcore")
}

// verifyDump checks a cycle that should have written one dump to the ext4
// image fsImage: the first kernel's checks passed, the crash kernel
// completed, and the dump taken out of the image is a whole ELF core that
// makedumpfile reads and whose kernel log holds the marker.
func verifyDump(t *testing.T, dir, fsImage string, c cycle, marker string) (vmcore string, loaded uint64, dmesg string) {
	t.Helper()
	if c.Err != nil {
		t.Fatalf("kdump cycle: %v", c.Err)
	}
	for _, want := range []string{
		"FIRSTINIT CHECK missing-config PASS",
		"FIRSTINIT CHECK missing-kernel PASS",
		"FIRSTINIT kexec_crash_loaded=1",
		"crash kernel: loaded: ",
		"ready: a crash now writes a dump to ",
	} {
		if !strings.Contains(c.First, want) {
			t.Errorf("first kernel console lacks %q", want)
		}
	}
	if strings.Contains(c.First, "FIRSTINIT CHECK") && strings.Contains(c.First, " FAIL: ") {
		t.Errorf("a first-kernel check failed:\n%s", grepLines(c.First, "FIRSTINIT CHECK"))
	}
	if !strings.Contains(c.Crash, "kdumpinit: dump complete") || strings.Contains(c.Crash, "FAILED") {
		t.Fatalf("crash kernel did not complete the dump:\n%s", qemu.Tail(c.Crash, 40))
	}

	dumpRoot := filepath.Join(dir, "dump")
	extract(t, fsImage, "/var/crash", dumpRoot)
	dumps, _ := filepath.Glob(filepath.Join(dumpRoot, "crash", "*"))
	if len(dumps) != 1 {
		t.Fatalf("want one dump directory, have %v", dumps)
	}
	if !regexp.MustCompile(`/[^/]+-\d{4}-\d\d-\d\d-\d\d:\d\d:\d\d$`).MatchString(dumps[0]) {
		t.Errorf("dump directory %s is not <host>-<YYYY-MM-DD-HH:MM:SS>", dumps[0])
	}
	files, _ := os.ReadDir(dumps[0])
	var names []string
	for _, f := range files {
		// A LUKS target's dump also has the scrub report (pkg/capture).
		if f.Name() == capture.ScrubFile {
			continue
		}
		names = append(names, f.Name())
	}
	if strings.Join(names, " ") != "vmcore vmcore-dmesg.txt" {
		t.Fatalf("dump directory holds %v, want vmcore and vmcore-dmesg.txt", names)
	}
	vmcore = filepath.Join(dumps[0], "vmcore")
	ours, err := os.ReadFile(filepath.Join(dumps[0], "vmcore-dmesg.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(ours), "UKDUMP-MARKER "+marker) {
		t.Errorf("vmcore-dmesg.txt lacks the marker %s", marker)
	}
	ram, crash := iomem(t, c.First)
	kdump, err := collector.IsKdump(vmcore)
	if err != nil {
		t.Fatal(err)
	}
	if kdump {
		loaded = checkKdump(t, vmcore, ram, crash, c)
	} else {
		loaded = checkELFCore(t, c.Arch, vmcore, ram, crash)
		checkELFWithLibkdumpfile(t, vmcore, c)
	}

	// makedumpfile reads ELF and kdump-compressed dumps; Debian 12's build
	// knows zlib and lzo only, so snappy and zstd dumps are read by crash
	// and by our own reader instead.
	dmesg = string(ours)
	if comp := dumpCompression(t, vmcore); !hostReads(c.Arch) {
		t.Logf("makedumpfile --dump-dmesg left out: Debian's makedumpfile reads dumps of the host's machine only (%s dump)", c.Arch)
	} else if comp == "" || comp == "zlib" || comp == "none" {
		dmesgFile := filepath.Join(dir, "makedumpfile-dmesg.txt")
		out, err := exec.Command("makedumpfile", "--dump-dmesg", vmcore, dmesgFile).CombinedOutput()
		if err != nil {
			t.Fatalf("makedumpfile --dump-dmesg: %v\n%s", err, out)
		}
		log, err := os.ReadFile(dmesgFile)
		if err != nil {
			t.Fatal(err)
		}
		if string(log) != string(ours) {
			t.Errorf("vmcore-dmesg.txt differs from makedumpfile --dump-dmesg of the dump")
		}
	}
	return vmcore, loaded, dmesg
}

// dumpCompression is the page compression of a kdump-compressed dump, ""
// for ELF.
func dumpCompression(t *testing.T, vmcore string) string {
	t.Helper()
	i, err := collector.FileInfo(vmcore)
	if err != nil {
		t.Fatal(err)
	}
	if i.Format != diskdump.KdumpFormat {
		return ""
	}
	return i.Compression.String()
}

// checkKdump checks a kdump-compressed dump: crash names the release the
// first kernel ran, the RAM bitmap covers the first kernel's memory but the
// crash reservation, the dump is complete and filtered, and our reader's
// kernel log equals the one written beside it.
func checkKdump(t *testing.T, vmcore string, ram []ramRange, crash ramRange, c cycle) (loaded uint64) {
	t.Helper()
	rel := regexp.MustCompile(`Linux version (\S+)`).FindStringSubmatch(c.First)
	if rel == nil {
		t.Fatal("the first kernel printed no release")
	}
	checkDumpOf(t, c.Arch, vmcore, rel[1], "")
	d, err := diskdump.OpenFile(vmcore)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var ramTotal uint64
	for _, r := range ram {
		ramTotal += r.End - r.Start + 1
	}
	want := ramTotal - (crash.End - crash.Start + 1)
	got := d.NumRAM() * uint64(d.Header().PageSize)
	if got > want || want-got > 1<<20 {
		t.Errorf("RAM bitmap covers %d bytes, want %d (less at most the first MiB)", got, want)
	}
	if d.NumDumpable() == 0 || d.NumDumpable() >= d.NumRAM()/2 {
		t.Errorf("%d of %d RAM pages dumped: want a filtered dump", d.NumDumpable(), d.NumRAM())
	}
	return d.NumDumpable() * uint64(d.Header().PageSize)
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// writeReport leaves the figures a person wants after a demo run.
func writeReport(t *testing.T, dir string, c cycle, vmcore string, loaded uint64, dmesg, target string) {
	st, _ := os.Stat(vmcore)
	var b strings.Builder
	fmt.Fprintf(&b, "target:          %s\n", target)
	if m := regexp.MustCompile(`kdumpinit: dump complete: ([^\s,]+)`).FindStringSubmatch(c.Crash); m != nil {
		fmt.Fprintf(&b, "written to:      %s on the target\n", m[1])
	}
	fmt.Fprintf(&b, "extracted to:    %s (%d MiB file holding %d MiB of memory)\n", vmcore, st.Size()>>20, loaded>>20)
	for _, m := range regexp.MustCompile(`kdumpinit: (digest check .*)`).FindAllStringSubmatch(c.Crash, -1) {
		fmt.Fprintf(&b, "crash kernel:    %s\n", m[1])
	}
	if m := regexp.MustCompile(`initramfs: .*`).FindString(c.First); m != "" {
		fmt.Fprintf(&b, "crash initramfs: %s\n", strings.TrimPrefix(m, "initramfs: "))
	}
	if done, ok := stamp(c.Crash, "kdumpinit: dump complete"); ok {
		start, _ := stamp(c.Crash, "kdumpinit: ukdump crash kernel init starting")
		fmt.Fprintf(&b, "crash kernel:    %.1f s from boot to dump complete (init started at %.1f s)\n", done, start)
	}
	if m := regexp.MustCompile(`peak memory \(VmHWM\) (.*)`).FindStringSubmatch(c.Crash); m != nil {
		fmt.Fprintf(&b, "kdumpinit peak:  %s\n", m[1])
	}
	fmt.Fprintf(&b, "qemu wall time:  %.1f s for the whole cycle\n", c.Result.Duration.Seconds())
	fmt.Fprintf(&b, "last kernel log lines in the dump:\n%s", qemu.Tail(dmesg, 8))
	report := b.String()
	t.Logf("report:\n%s", report)
	if err := os.WriteFile(filepath.Join(dir, "report.txt"), []byte(report), 0o644); err != nil {
		t.Error(err)
	}
}

// TestTargetNeverAppears: the target disk loses its filesystem between load
// and crash. The crash kernel must give up after target_timeout, take the
// failure action (QEMU exits on the reboot) and write nothing.
func TestTargetNeverAppears(t *testing.T) {
	t.Parallel()
	requireTools(t, hostTools...)
	r := runPlain(t, plainCase{Kernel: testKernel(t), DiskMiB: 64, Conf: "target_timeout 10\nfailure_action reboot\n",
		Params: "ukdump.scenario=vanish", Timeout: 5 * time.Minute})
	c, uuid, disk := r.Cycle, r.UUID, r.Disk
	if c.Err != nil {
		t.Fatalf("kdump cycle did not end by itself: %v", c.Err)
	}
	if !strings.Contains(c.First, "FIRSTINIT wiped the target superblock magic") {
		t.Fatalf("first kernel did not get to the crash:\n%s", qemu.Tail(c.First, 30))
	}
	for _, want := range []string{
		"kdumpinit: FAILED at wait for target: ext4 UUID=" + uuid + " did not appear within 10s",
		"kdumpinit: reboot",
	} {
		if !strings.Contains(c.Crash, want) {
			t.Errorf("crash console lacks %q:\n%s", want, qemu.Tail(c.Crash, 20))
		}
	}
	if strings.Contains(c.Crash, "dump complete") {
		t.Error("crash kernel claims a dump")
	}
	failedAt, _ := stamp(c.Crash, "FAILED at wait for target")
	start, _ := stamp(c.Crash, "waiting up to")
	if d := failedAt - start; d < 9.5 || d > 20 {
		t.Errorf("gave up %.1f s after starting to wait, want about 10 s", d)
	}

	// Put the magic back to look inside: nothing may have been written.
	f, err := os.OpenFile(disk, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{0x53, 0xef}, 1024+56); err != nil {
		t.Fatal(err)
	}
	f.Close()
	out, err := exec.Command("debugfs", "-R", "ls -l /", disk).CombinedOutput()
	if err != nil {
		t.Fatalf("debugfs: %v\n%s", err, out)
	}
	if strings.Contains(string(out), "var") {
		t.Errorf("something was written to the target:\n%s", out)
	}
}

// TestDiskFull: the target is too small for the dump. The kernel log,
// written first, survives whole; the dump stays as vmcore-incomplete, marked
// incomplete in its header so readers know; the crash kernel says why and
// takes the failure action.
func TestDiskFull(t *testing.T) {
	t.Parallel()
	requireTools(t, hostTools...)
	r := runPlain(t, plainCase{Kernel: testKernel(t), DiskMiB: 12, Conf: "compression none\nfailure_action reboot\n", Timeout: 5 * time.Minute})
	c, dir, disk, marker := r.Cycle, r.Dir, r.Disk, r.Marker
	if c.Err != nil {
		t.Fatalf("kdump cycle did not end by itself: %v", c.Err)
	}
	wantLines(t, c.Crash, "crash kernel", "kdumpinit: wrote vmcore-dmesg.txt", "kdumpinit: FAILED at write vmcore", "no space left on device", "kdumpinit: reboot")
	extract(t, disk, "/var/crash", filepath.Join(dir, "dump"))
	dumps, _ := filepath.Glob(filepath.Join(dir, "dump", "crash", "*"))
	if len(dumps) != 1 {
		t.Fatalf("want one dump directory, have %v", dumps)
	}
	log, err := os.ReadFile(filepath.Join(dumps[0], "vmcore-dmesg.txt"))
	if err != nil || !strings.Contains(string(log), "UKDUMP-MARKER "+marker) {
		t.Errorf("vmcore-dmesg.txt lost or without the marker: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dumps[0], "vmcore")); err == nil {
		t.Error("a partial dump got the name vmcore")
	}
	d, err := diskdump.OpenFile(filepath.Join(dumps[0], "vmcore-incomplete"))
	if err != nil {
		t.Fatalf("partial dump unreadable: %v", err)
	}
	defer d.Close()
	if !d.Incomplete() {
		t.Error("partial dump not marked incomplete")
	}
}
