package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"debug/elf"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/u-root/u-root/pkg/cpio"

	"github.com/ukdump/ukdump/internal/qemu"
	"github.com/ukdump/ukdump/pkg/kmod"
)

// need fails the test when CI runs it and skips it elsewhere: a missing
// tool must never turn CI green.
func need(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") != "" || os.Getenv("UKDUMP_E2E") != "" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}

func requireTools(t *testing.T, tools ...string) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test skipped in -short mode")
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			need(t, "%s not installed (run .ci/deps)", tool)
		}
	}
}

// kernel is an unpacked Debian kernel package, or a kernel built for the
// tests.
type kernel struct {
	Root, Release, Image, ModDir string
	// Arch is the kernel's machine; "" is x86_64.
	Arch qemu.Arch
}

func testKernel(t *testing.T) kernel {
	t.Helper()
	return debianKernel(t, os.Getenv("UKDUMP_KERNEL_ROOT"))
}

// debianKernel unpacks a stock Debian kernel package: Debian 12's 6.1 cloud
// kernel, or with args "trixie" Debian 13's 6.12. root, when set, names an
// unpacked one.
func debianKernel(t *testing.T, root string, args ...string) kernel {
	t.Helper()
	if root == "" {
		cmd := exec.Command("../../testdata/kernel/fetch-debian.sh", args...)
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		if err != nil {
			need(t, "fetching the test kernel %v: %v", args, err)
		}
		root = strings.TrimSpace(string(out))
	}
	images, _ := filepath.Glob(filepath.Join(root, "boot", "vmlinuz-*"))
	if len(images) != 1 {
		need(t, "want one kernel image in %s/boot, have %v", root, images)
	}
	rel := strings.TrimPrefix(filepath.Base(images[0]), "vmlinuz-")
	k := kernel{Root: root, Release: rel, Image: images[0], ModDir: filepath.Join(root, "lib", "modules", rel)}
	if strings.HasSuffix(rel, "-arm64") {
		k.Arch = qemu.ArchARM64
	}
	return k
}

// binaries builds the static programs that run in the guests, once per test
// binary run and guest architecture.
type binaries struct {
	goarch string
	once   sync.Once
	dir    string
	err    error
}

func (b *binaries) get(t *testing.T) string {
	t.Helper()
	b.once.Do(func() {
		b.dir, b.err = os.MkdirTemp("", "ukdump-e2e-bin-")
		if b.err != nil {
			return
		}
		for name, pkg := range map[string]string{
			"ukdump":    "../../cmds/ukdump",
			"kdumpinit": "../../cmds/kdumpinit",
			"firstinit": "./firstinit",
			"keyprobe":  "./keyprobe",
		} {
			cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", filepath.Join(b.dir, name), pkg)
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOARCH="+b.goarch)
			if out, err := cmd.CombinedOutput(); err != nil {
				b.err = fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
				return
			}
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.dir
}

var (
	bins      = binaries{goarch: "amd64"}
	binsARM64 = binaries{goarch: "arm64"}
)

// guestBinaries builds the guest programs for k's machine.
func guestBinaries(t *testing.T, k kernel) string {
	t.Helper()
	if k.Arch == qemu.ArchARM64 {
		return binsARM64.get(t)
	}
	return bins.get(t)
}

// outDir is where a case keeps its artifacts: $UKDUMP_E2E_OUT/<test name>
// when set, so they survive the test, else a temporary directory.
func outDir(t *testing.T) string {
	t.Helper()
	base := os.Getenv("UKDUMP_E2E_OUT")
	if base == "" {
		return t.TempDir()
	}
	dir, err := filepath.Abs(filepath.Join(base, strings.ReplaceAll(t.Name(), "/", "_")))
	if err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func newUUID() string {
	h := randomHex(16)
	return h[0:8] + "-" + h[8:12] + "-4" + h[13:16] + "-8" + h[17:20] + "-" + h[20:32]
}

// makeExt4 makes a sparse ext4 image with the given UUID.
func makeExt4(t *testing.T, name, uuid string, sizeMiB int) {
	t.Helper()
	out, err := exec.Command("mkfs.ext4", "-q", "-F", "-U", uuid, "-L", "ukdump-e2e", name, fmt.Sprintf("%dM", sizeMiB)).CombinedOutput()
	if err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
}

// firstInitramfs packs the first kernel's root: firstinit as /init, ukdump
// and kdumpinit installed, the kernel image, the modules the test needs
// (without modules.dep, as a Debian package ships them) and ukdump.conf.
func firstInitramfs(t *testing.T, k kernel, binDir string, files map[string]string, out string, modules ...string) {
	t.Helper()
	a := newArchive()
	a.addDirs("dev/x")
	a.add(cpio.CharDev("dev/console", 0o600, 5, 1))
	a.addFile(t, "init", filepath.Join(binDir, "firstinit"), 0o755)
	a.addFile(t, "usr/bin/ukdump", filepath.Join(binDir, "ukdump"), 0o755)
	a.addFile(t, "usr/lib/ukdump/kdumpinit", filepath.Join(binDir, "kdumpinit"), 0o755)
	a.addFile(t, "boot/vmlinuz-"+k.Release, k.Image, 0o644)
	if k.ModDir != "" {
		a.addFile(t, "boot/config-"+k.Release, filepath.Join(k.Root, "boot", "config-"+k.Release), 0o644)
		modRoot := "lib/modules/" + k.Release
		a.addFile(t, modRoot+"/modules.builtin", filepath.Join(k.ModDir, "modules.builtin"), 0o644)
		for _, m := range resolveModules(t, k, modules) {
			rel, err := filepath.Rel(k.ModDir, m.Path)
			if err != nil {
				t.Fatal(err)
			}
			a.addFile(t, filepath.Join(modRoot, rel), m.Path, 0o644)
		}
	}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		a.addBytes(name, []byte(files[name]), 0o644)
	}
	a.write(t, out)
}

// resolveModules returns the closure of modules in k's tree, sorted by path.
func resolveModules(t *testing.T, k kernel, modules []string) []kmod.Module {
	t.Helper()
	tree, err := kmod.Open(k.ModDir)
	if err != nil {
		t.Fatal(err)
	}
	mods, err := tree.Resolve(modules...)
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(mods, func(i, j int) bool { return mods[i].Path < mods[j].Path })
	return mods
}

// cycle is one first boot, crash and crash-kernel run.
type cycle struct {
	First, Crash string // the two kernels' console output
	Result       *qemu.Result
	Err          error
	Arch         qemu.Arch
}

type cycleOptions struct {
	Kernel kernel
	Conf   string
	// Files are more files for the first kernel's root, by path.
	Files       map[string]string
	Disks       []string
	MemoryMiB   int
	CPUs        int
	CrashKernel string
	Params      string
	Timeout     time.Duration
	Modules     []string
	// ExtraArgs are more QEMU arguments (drives that Disks cannot
	// describe, a QMP socket).
	ExtraArgs []string
	// Live, when set, runs while the VM does, to watch the console and
	// act on it; runCycle waits for it after QEMU exits.
	Live func(vm *qemu.VM)
	// Ctx, when set, ends the run when done: QEMU is killed.
	Ctx context.Context
}

// runCycle boots the first kernel and lets the whole kdump cycle run until
// QEMU exits. It keeps serial logs in dir.
func runCycle(t *testing.T, dir string, o cycleOptions) cycle {
	t.Helper()
	binDir := guestBinaries(t, o.Kernel)
	initrd := filepath.Join(dir, "first-initramfs.cpio.gz")
	files := map[string]string{"etc/ukdump.conf": o.Conf}
	for k, v := range o.Files {
		files[k] = v
	}
	firstInitramfs(t, o.Kernel, binDir, files, initrd, o.Modules...)
	logf, err := os.Create(filepath.Join(dir, "serial.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	t.Logf("booting %s (serial log: %s)", o.Kernel.Release, logf.Name())
	ctx := o.Ctx
	if ctx == nil {
		ctx = context.Background()
	}
	qo := qemu.Options{
		Arch:      o.Kernel.Arch,
		Kernel:    o.Kernel.Image,
		Initrd:    initrd,
		Cmdline:   "console=" + o.Kernel.Arch.Console() + " panic=5 crashkernel=" + o.CrashKernel + " " + o.Params,
		MemoryMiB: o.MemoryMiB,
		CPUs:      o.CPUs,
		Disks:     o.Disks,
		Timeout:   o.Timeout,
		Console:   logf,
		ExtraArgs: o.ExtraArgs,
	}
	var res *qemu.Result
	vm, err := qemu.Start(ctx, qo)
	if err != nil {
		res = &qemu.Result{ExitErr: err}
	} else {
		live := make(chan struct{})
		go func() {
			defer close(live)
			if o.Live != nil {
				o.Live(vm)
			}
		}()
		res, err = vm.Wait()
		<-live
	}
	c := cycle{Result: res, Err: err, Arch: o.Kernel.Arch}
	c.First, c.Crash = splitBoots(res.Console)
	os.WriteFile(filepath.Join(dir, "serial-first.log"), []byte(c.First), 0o644)
	os.WriteFile(filepath.Join(dir, "serial-crash.log"), []byte(c.Crash), 0o644)
	return c
}

// splitBoots cuts the console at the second kernel banner.
func splitBoots(console string) (first, crash string) {
	const banner = "Linux version "
	i := strings.Index(console, banner)
	if i < 0 {
		return console, ""
	}
	j := strings.Index(console[i+len(banner):], banner)
	if j < 0 {
		return console, ""
	}
	j += i + len(banner)
	if nl := strings.LastIndex(console[:j], "\n"); nl >= 0 {
		j = nl + 1
	}
	return console[:j], console[j:]
}

// extract copies the dump directory out of an ext4 image without mounting
// it (no root needed): debugfs reads the filesystem itself.
func extract(t *testing.T, image, fsPath, out string) {
	t.Helper()
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("debugfs", "-R", fmt.Sprintf("rdump %s %s", fsPath, out), image)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("debugfs rdump: %v\n%s", err, b)
	}
}

// ramRange is an inclusive physical address range.
type ramRange struct{ Start, End uint64 }

var iomemLine = regexp.MustCompile(`FIRSTINIT IOMEM ([0-9a-f]+)-([0-9a-f]+) : (System RAM|Crash kernel)`)

// iomem reads the first kernel's System RAM and crash reservation as it
// printed them.
func iomem(t *testing.T, console string) (ram []ramRange, crash ramRange) {
	t.Helper()
	for _, m := range iomemLine.FindAllStringSubmatch(console, -1) {
		s, _ := strconv.ParseUint(m[1], 16, 64)
		e, _ := strconv.ParseUint(m[2], 16, 64)
		if m[3] == "Crash kernel" {
			crash = ramRange{s, e}
		} else {
			ram = append(ram, ramRange{s, e})
		}
	}
	if len(ram) == 0 || crash.End == 0 {
		t.Fatalf("first kernel printed no System RAM or Crash kernel range")
	}
	return ram, crash
}

// checkELFCore checks the dump with Go's debug/elf, which we did not write:
// an ELF core of the guest's machine whose physical PT_LOAD ranges lie in
// the first kernel's RAM outside the crash reservation, cover that RAM, and
// whose file holds every byte they describe.
func checkELFCore(t *testing.T, arch qemu.Arch, vmcore string, ram []ramRange, crash ramRange) (loaded uint64) {
	t.Helper()
	f, err := elf.Open(vmcore)
	if err != nil {
		t.Fatalf("dump is not ELF: %v", err)
	}
	defer f.Close()
	// The kernel image's own PT_LOAD: x86_64's __START_KERNEL_map, arm64's
	// kimage in the upper half of the 48-bit kernel space (its linear map
	// is the lower half).
	machine, kernelText := elf.EM_X86_64, uint64(0xffffffff80000000)
	if arch == qemu.ArchARM64 {
		machine, kernelText = elf.EM_AARCH64, 0xffff800000000000
	}
	if f.Type != elf.ET_CORE || f.Machine != machine || f.Class != elf.ELFCLASS64 {
		t.Fatalf("dump is %v %v %v, want a 64-bit %v core", f.Class, f.Type, f.Machine, machine)
	}
	st, err := os.Stat(vmcore)
	if err != nil {
		t.Fatal(err)
	}
	var ramTotal uint64
	for _, r := range ram {
		ramTotal += r.End - r.Start + 1
	}
	notes := 0
	for _, p := range f.Progs {
		if p.Type == elf.PT_NOTE {
			notes++
		}
		if p.Type != elf.PT_LOAD {
			continue
		}
		if p.Off+p.Filesz > uint64(st.Size()) {
			t.Errorf("PT_LOAD at paddr %#x runs past the end of the file", p.Paddr)
		}
		// The kernel text segment maps physical memory a second time
		// at a kernel virtual address; it is counted once, below.
		if p.Vaddr >= kernelText {
			continue
		}
		end := p.Paddr + p.Memsz - 1
		inRAM := false
		for _, r := range ram {
			inRAM = inRAM || (p.Paddr >= r.Start && end <= r.End)
		}
		if !inRAM {
			t.Errorf("PT_LOAD %#x-%#x is outside System RAM", p.Paddr, end)
		}
		if p.Paddr <= crash.End && end >= crash.Start {
			t.Errorf("PT_LOAD %#x-%#x overlaps the crash reservation", p.Paddr, end)
		}
		loaded += p.Memsz
	}
	if notes != 1 {
		t.Errorf("dump has %d PT_NOTE segments, want 1", notes)
	}
	want := ramTotal - (crash.End - crash.Start + 1)
	// x86 leaves the first MiB out of the ELF headers (it is always
	// reserved), so up to 1 MiB of RAM may be missing; nothing more.
	if loaded > want || want-loaded > 1<<20 {
		t.Errorf("PT_LOAD segments cover %d bytes, want %d (RAM %d minus crash reservation %d, less at most the first MiB)",
			loaded, want, ramTotal, crash.End-crash.Start+1)
	}
	return loaded
}

var kernelStamp = regexp.MustCompile(`^\[\s*(\d+\.\d+)\]`)

// stamp returns the kernel timestamp of the first console line containing s.
func stamp(console, s string) (float64, bool) {
	for _, l := range strings.Split(console, "\n") {
		if strings.Contains(l, s) {
			if m := kernelStamp.FindStringSubmatch(l); m != nil {
				v, _ := strconv.ParseFloat(m[1], 64)
				return v, true
			}
		}
	}
	return 0, false
}

// crashDMKernel is the small 7.3 kernel with CONFIG_CRASH_DM_CRYPT, built
// (and cached) by testdata/kernel/build-crashdm.sh. Its drivers are all
// built in, so it has no module tree.
func crashDMKernel(t *testing.T) kernel {
	t.Helper()
	image := os.Getenv("UKDUMP_CRASHDM_KERNEL")
	if image == "" {
		cmd := exec.Command("../../testdata/kernel/build-crashdm.sh")
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		if err != nil {
			need(t, "building the CRASH_DM_CRYPT kernel: %v", err)
		}
		image = strings.TrimSpace(string(out))
	}
	rel, err := bzImageRelease(image)
	if err != nil {
		t.Fatal(err)
	}
	return kernel{Root: filepath.Dir(image), Release: rel, Image: image}
}

// bzImageRelease reads the kernel release from a bzImage: the setup header
// holds at 0x20e the offset (from 0x200) of the version string.
func bzImageRelease(image string) (string, error) {
	b, err := os.ReadFile(image)
	if err != nil {
		return "", err
	}
	if len(b) < 0x210 || string(b[0x202:0x206]) != "HdrS" {
		return "", fmt.Errorf("%s is not a bzImage", image)
	}
	off := int(b[0x20e]) | int(b[0x20f])<<8 + 0x200
	if off >= len(b) {
		return "", fmt.Errorf("%s: version string out of range", image)
	}
	v := b[off:]
	if i := bytes.IndexAny(v, " \x00"); i > 0 {
		v = v[:i]
	}
	return string(v), nil
}
