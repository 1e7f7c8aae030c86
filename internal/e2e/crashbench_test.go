package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/u-root/u-root/pkg/cpio"

	"github.com/ukdump/ukdump/internal/crashbench"
	"github.com/ukdump/ukdump/internal/qemu"
	"github.com/ukdump/ukdump/pkg/kmod"
)

// TestBenchCrash is the crash-kernel half of "make bench": one QEMU crash
// of a guest of UKDUMP_BENCH_MEM MiB (default 4096) filled like a working
// server (page cache, anonymous memory of mixed content, free memory), whose
// crash kernel (UKDUMP_BENCH_CPUS CPUs, default 2) runs makedumpfile and
// ukdump's collector on the same /proc/vmcore, alternating, each writing
// to its own virtio disk (internal/e2e/crashinit). It runs only when
// UKDUMP_BENCH_CRASH names a directory, where it leaves the crash kernel's
// console (console.log, read by internal/e2e/bench -crash) and the CPU
// profiles of the collector (prof/). Never part of "make test".
func TestBenchCrash(t *testing.T) {
	dst := os.Getenv("UKDUMP_BENCH_CRASH")
	if dst == "" {
		t.Skip("UKDUMP_BENCH_CRASH not set")
	}
	requireTools(t, hostTools...)
	mem := envInt("UKDUMP_BENCH_MEM", 4096)
	cpus := envInt("UKDUMP_BENCH_CPUS", 2)
	reps := envInt("UKDUMP_BENCH_REPS", 3)
	reserve := os.Getenv("UKDUMP_BENCH_CRASHKERNEL")
	if reserve == "" {
		reserve = "512M"
	}
	k := testKernel(t)
	dir := outDir(t)
	// A third each of page cache and anonymous memory; the rest, less the
	// reservation and the kernel, stays free.
	cacheMiB, anonMiB := mem*3/10, mem*3/10

	disk, uuid := fillDisk(t, dir, cacheMiB, cacheMiB*6/5+64)
	mdfDisk, ukDisk := filepath.Join(dir, "mdf.img"), filepath.Join(dir, "uk.img")
	makeExt4(t, mdfDisk, newUUID(), 2048)
	makeExt4(t, ukDisk, newUUID(), 2048)

	crashImg := filepath.Join(dir, "crash.img")
	crashInitramfs(t, k, benchConfig(cpus, reps), crashImg)
	img, err := os.ReadFile(crashImg)
	if err != nil {
		t.Fatal(err)
	}
	c := runCycle(t, dir, cycleOptions{
		Kernel:      k,
		Conf:        "ext4 UUID=" + uuid + "\n",
		Files:       map[string]string{"bench/crash.img": string(img)},
		Disks:       []string{disk, mdfDisk, ukDisk},
		MemoryMiB:   mem,
		CPUs:        cpus,
		CrashKernel: reserve,
		Params:      fmt.Sprintf("ukdump.scenario=bench ukdump.fill=1 ukdump.anon=%d ukdump.crashcpus=%d", anonMiB, cpus),
		Timeout:     50 * time.Minute,
		Modules:     []string{"virtio_pci", "virtio_blk"},
	})
	// The console is kept first: the runs before a failure are figures too.
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dst, "console.log"), []byte(c.Crash), 0o644); err != nil {
		t.Fatal(err)
	}
	if msg, failed := crashbench.Failed(c.Crash); failed {
		t.Fatalf("crash kernel: %s", msg)
	}
	if c.Err != nil || !strings.Contains(c.Crash, crashbench.Prefix+"done") {
		t.Fatalf("benchmark did not finish: %v\n%s", c.Err, qemu.Tail(c.First+c.Crash, 40))
	}
	fillLine := regexp.MustCompile(`FIRSTINIT filled: .*`).FindString(c.First)
	os.WriteFile(filepath.Join(dst, "guest.txt"), []byte(fmt.Sprintf("guest %d MiB, %d CPUs, crashkernel=%s, %s\n", mem, cpus, reserve, fillLine)), 0o644)
	os.RemoveAll(filepath.Join(dst, "prof"))
	extract(t, ukDisk, "/prof", dst)
	t.Logf("results in %s", dst)
}

// benchConfig lists the runs: makedumpfile -l and ukdump's collector (its
// default compression; lzo, makedumpfile -l's codec; snappy and zstd, the
// other candidates for the default; the default read with pread instead of
// mappings, to weigh the two ways of reading /proc/vmcore; the default
// without writing its page data, to weigh the writes; the default with
// 256 KiB and 4 MiB writes instead of 1 MiB) on one CPU, and the floor of
// a Go program's peak RSS (crashinit idle: the runtime up, nothing done),
// then
// with cpus CPUs makedumpfile -l alone, with --num-threads, and ukdump; a
// CPU profile of ukdump on one CPU and on all comes last, untimed.
func benchConfig(cpus, reps int) crashbench.Config {
	const vmcore, mdfOut, ukOut = "/proc/vmcore", "/mnt/mdf/vmcore", "/mnt/uk/vmcore"
	mdf := func(n int, extra ...string) crashbench.Run {
		argv := append([]string{"/usr/bin/makedumpfile", "-l", "-d", "31"}, extra...)
		return crashbench.Run{Name: strings.Join(append([]string{"makedumpfile -l"}, extra...), " "), CPUs: n,
			Argv: append(argv, vmcore, mdfOut), Out: mdfOut}
	}
	uk := func(n int, comp, profile string, extra ...string) crashbench.Run {
		name, argv := "ukdump", []string{"/init", "collect", "-d", "31", "-cpus", strconv.Itoa(n)}
		if comp != "" {
			name += " -c " + comp
			argv = append(argv, "-c", comp)
		}
		for _, e := range extra {
			name += " " + e
			argv = append(argv, e)
		}
		if profile != "" {
			argv = append(argv, "-profile", profile)
		}
		return crashbench.Run{Name: name, CPUs: n, Argv: append(argv, vmcore, ukOut), Out: ukOut}
	}
	cfg := crashbench.Config{
		Disks: []crashbench.Disk{{Dev: "/dev/vdb", Dir: "/mnt/mdf"}, {Dev: "/dev/vdc", Dir: "/mnt/uk"}},
		Reps:  reps,
		Runs: []crashbench.Run{mdf(1), uk(1, "", ""), uk(1, "lzo", ""), uk(1, "snappy", ""), uk(1, "zstd", ""),
			uk(1, "", "", "-pread"), uk(1, "", "", "-nodata"), uk(1, "", "", "-databuf", "256"),
			uk(1, "", "", "-databuf", "4096"),
			{Name: "Go runtime floor (idle)", CPUs: 1, Argv: []string{"/init", "idle", ukOut}, Out: ukOut}},
		Extra: []crashbench.Run{uk(1, "", "/mnt/uk/prof/cpu1.pprof")},
	}
	if cpus > 1 {
		cfg.Runs = append(cfg.Runs, mdf(cpus), mdf(cpus, "--num-threads", strconv.Itoa(cpus)), uk(cpus, "", ""))
		cfg.Extra = append(cfg.Extra, uk(cpus, "", fmt.Sprintf("/mnt/uk/prof/cpu%d.pprof", cpus)))
	}
	return cfg
}

// crashInitramfs packs the benchmark's crash kernel root: crashinit as
// /init, the virtio modules (decompressed, in load order), makedumpfile
// with the shared libraries and the ELF interpreter ldd names, and the
// configuration.
func crashInitramfs(t *testing.T, k kernel, cfg crashbench.Config, out string) {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "crashinit")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, "./crashinit")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build crashinit: %v\n%s", err, b)
	}
	a := newArchive()
	a.addDirs("dev/x")
	a.addDirs("tmp/x") // makedumpfile writes VMCOREINFO to a temporary file
	a.add(cpio.CharDev("dev/console", 0o600, 5, 1))
	a.addFile(t, "init", bin, 0o755)
	tree, err := kmod.Open(k.ModDir)
	if err != nil {
		t.Fatal(err)
	}
	mods, err := tree.Resolve("virtio_pci", "virtio_blk")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mods {
		b, err := kmod.Decompress(m.Path)
		if err != nil {
			t.Fatal(err)
		}
		name := "lib/modules/" + m.Name + ".ko"
		a.addBytes(name, b, 0o644)
		cfg.Modules = append(cfg.Modules, "/"+name)
	}
	mdf, err := exec.LookPath("makedumpfile")
	if err != nil {
		t.Fatal(err)
	}
	a.addFile(t, "usr/bin/makedumpfile", mdf, 0o755)
	// glibc loads libgcc_s when a thread exits (--num-threads); ldd does
	// not list it.
	libs := append(sharedLibs(t, mdf), "/lib/x86_64-linux-gnu/libgcc_s.so.1")
	for _, lib := range libs {
		a.addFile(t, strings.TrimPrefix(lib, "/"), lib, 0o755)
	}
	js, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	a.addBytes(strings.TrimPrefix(crashbench.ConfigPath, "/"), js, 0o644)
	a.write(t, out)
}

// sharedLibs lists the libraries and the interpreter ldd names for bin,
// by the paths the dynamic linker will look at.
func sharedLibs(t *testing.T, bin string) []string {
	t.Helper()
	out, err := exec.Command("ldd", bin).Output()
	if err != nil {
		t.Fatalf("ldd %s: %v", bin, err)
	}
	var libs []string
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) >= 3 && f[1] == "=>" && strings.HasPrefix(f[2], "/"):
			libs = append(libs, f[2])
		case len(f) >= 1 && strings.HasPrefix(f[0], "/"):
			libs = append(libs, f[0])
		}
	}
	return libs
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}
