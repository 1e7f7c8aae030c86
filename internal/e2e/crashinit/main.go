// Command crashinit is test-only code: PID 1 of the benchmark's crash
// kernel ("make bench", internal/e2e/crashbench_test.go). It times
// makedumpfile and ukdump's collector on the same /proc/vmcore in one
// crash-kernel boot: each run is a child process writing to its own disk,
// timed from CLOCK_MONOTONIC (start to exit, plus syncing the output
// filesystem, since a dump counts once it is on the disk), with the child's
// peak RSS (VmHWM, polled) and the output's size and dumpable pages. The runs
// alternate, so noise hits every tool alike. Results go to the console as
// "CRASHBENCH " lines, which the host test reads; then the machine powers
// off.
//
// The same binary is the ukdump side of the comparison: "crashinit
// collect" (collect.go) runs the collector as kdumpinit does, and
// "crashinit idle" (idle.go) is the floor of a Go program's peak RSS.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ukdump/ukdump/internal/crashbench"
	"github.com/ukdump/ukdump/pkg/diskdump"
	"github.com/ukdump/ukdump/pkg/insmod"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "collect" {
		if err := collect(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "crashinit collect:", err)
			os.Exit(1)
		}
		return
	}
	if len(os.Args) > 1 && os.Args[1] == "idle" {
		if err := idle(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "crashinit idle:", err)
			os.Exit(1)
		}
		return
	}
	err := func() (err error) {
		// Whatever happens, the machine must power off for the host to
		// read the console.
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("panic: %v", r)
			}
		}()
		return orchestrate()
	}()
	if err != nil {
		say("FAILED: %v", err)
	}
	unix.Sync()
	unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	select {}
}

func say(format string, args ...any) {
	fmt.Printf(crashbench.Prefix+format+"\n", args...)
}

func orchestrate() error {
	for _, m := range []struct{ src, dir, fs string }{
		{"proc", "/proc", "proc"}, {"sysfs", "/sys", "sysfs"}, {"devtmpfs", "/dev", "devtmpfs"},
	} {
		os.MkdirAll(m.dir, 0o755)
		if err := unix.Mount(m.src, m.dir, m.fs, 0, ""); err != nil && !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("mount %s: %w", m.dir, err)
		}
	}
	b, err := os.ReadFile(crashbench.ConfigPath)
	if err != nil {
		return err
	}
	var cfg crashbench.Config
	if err := json.Unmarshal(b, &cfg); err != nil {
		return err
	}
	for _, m := range cfg.Modules {
		if err := insmod.File(m, ""); err != nil {
			return err
		}
	}
	for _, d := range cfg.Disks {
		if err := waitFor(d.Dev, 30*time.Second); err != nil {
			return err
		}
		os.MkdirAll(d.Dir, 0o755)
		if err := unix.Mount(d.Dev, d.Dir, "ext4", 0, ""); err != nil {
			return fmt.Errorf("mount %s: %w", d.Dev, err)
		}
	}
	st, err := os.Stat("/proc/vmcore")
	if err != nil {
		return err
	}
	say("start vmcore=%d cpus=%d memtotal_kib=%d", st.Size(), runtime.NumCPU(), memTotal())
	// A run that fails is left out of the later repetitions, and the
	// others go on: their figures still compare.
	failed := map[string]bool{}
	run := func(r crashbench.Run, rep int, kind string) {
		key := fmt.Sprintf("%s/%d", r.Name, r.CPUs)
		if failed[key] {
			return
		}
		if err := timeRun(r, rep, kind); err != nil {
			failed[key] = true
			say("%s %q cpus=%d: %v", crashbench.RunFailed, r.Name, r.CPUs, err)
		}
	}
	for rep := 0; rep < cfg.Reps; rep++ {
		for _, r := range cfg.Runs {
			run(r, rep, "result")
		}
	}
	for _, r := range cfg.Extra {
		run(r, 0, "extra")
	}
	for _, d := range cfg.Disks {
		if err := unix.Unmount(d.Dir, 0); err != nil {
			return fmt.Errorf("unmount %s: %w", d.Dir, err)
		}
	}
	say("done")
	return nil
}

// timeRun runs r once and prints its figures.
func timeRun(r crashbench.Run, rep int, kind string) error {
	os.Remove(r.Out)
	unix.Sync()
	// Old memory is not cached (every read of /proc/vmcore copies from
	// it), but the page cache of the output disks is: drop it, so each
	// run starts with the same free memory.
	os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0)
	out, err := os.Create(filepath.Join(filepath.Dir(r.Out), "log.txt"))
	if err != nil {
		return err
	}
	defer out.Close()
	cmd := exec.Command(r.Argv[0], r.Argv[1:]...)
	cmd.Stdout, cmd.Stderr = out, out
	// glibc dlopens libgcc_s when a thread exits (makedumpfile
	// --num-threads); without an ld.so.cache it looks only where
	// LD_LIBRARY_PATH says.
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LD_LIBRARY_PATH=/lib/x86_64-linux-gnu"}
	start := monotonic()
	err = startPinned(cmd, r.CPUs)
	var hwm, anon int64
	if err == nil {
		stop, watched := make(chan struct{}), make(chan struct{})
		go func() { defer close(watched); hwm, anon = watchRSS(cmd.Process.Pid, stop) }()
		err = cmd.Wait()
		close(stop)
		<-watched
	}
	if err != nil {
		log, _ := os.ReadFile(out.Name())
		return fmt.Errorf("%s: %v\n%s", r.Name, err, tail(string(log), 20))
	}
	ran := monotonic() - start
	if err := syncFS(r.Out); err != nil {
		return err
	}
	wall := monotonic() - start
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	fi, err := os.Stat(r.Out)
	if err != nil {
		return err
	}
	if log, err := os.ReadFile(out.Name()); err == nil {
		say("log %q: %s", r.Name, strings.ReplaceAll(tail(string(log), 2), "\n", " | "))
	}
	kept := uint64(0)
	if d, err := diskdump.OpenFile(r.Out); err == nil {
		kept = d.NumDumpable()
		d.Close()
	}
	say("%s", crashbench.Result{Kind: kind, Name: r.Name, CPUs: r.CPUs, Rep: rep, Wall: wall.Seconds(), Ran: ran.Seconds(),
		User: tv(ru.Utime).Seconds(), Sys: tv(ru.Stime).Seconds(), RSSKiB: hwm, AnonKiB: anon, Size: fi.Size(), Kept: kept}.Line())
	return nil
}

// watchRSS returns the child's peak RSS (VmHWM, KiB) and the peak of its
// anonymous part (RssAnon, KiB), read every 10 ms until stop. Not wait4's
// ru_maxrss: Go starts children with CLONE_VM, so at exec the kernel
// records this process's own peak RSS as the child's, and every tool
// would show at least crashinit's.
func watchRSS(pid int, stop <-chan struct{}) (hwm, anon int64) {
	path := fmt.Sprintf("/proc/%d/status", pid)
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		if b, err := os.ReadFile(path); err == nil {
			hwm = max(hwm, statusKiB(b, "VmHWM:"))
			anon = max(anon, statusKiB(b, "RssAnon:"))
		}
		select {
		case <-stop:
			return hwm, anon
		case <-t.C:
		}
	}
}

// statusKiB is the value of a "Key:   123 kB" line of /proc/PID/status,
// 0 when it is not there.
func statusKiB(status []byte, key string) int64 {
	for _, l := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(l, key); ok {
			var kib int64
			fmt.Sscan(strings.TrimSuffix(strings.TrimSpace(v), "kB"), &kib)
			return kib
		}
	}
	return 0
}

// startPinned starts cmd on CPUs 0..cpus-1, as taskset would: the child
// inherits the affinity of the thread that forks it.
func startPinned(cmd *exec.Cmd, cpus int) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var all, set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &all); err != nil {
		return err
	}
	for i := 0; i < max(cpus, 1); i++ {
		set.Set(i)
	}
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return err
	}
	defer unix.SchedSetaffinity(0, &all)
	return cmd.Start()
}

func syncFS(name string) error {
	f, err := os.Open(filepath.Dir(name))
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Syncfs(int(f.Fd()))
}

func monotonic() time.Duration {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return time.Duration(ts.Nano())
}

func tv(t syscall.Timeval) time.Duration { return time.Duration(t.Nano()) }

func memTotal() int {
	b, _ := os.ReadFile("/proc/meminfo")
	var n int
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "MemTotal:") {
			fmt.Sscan(strings.TrimPrefix(l, "MemTotal:"), &n)
		}
	}
	return n
}

func waitFor(path string, limit time.Duration) error {
	for end := time.Now().Add(limit); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
	}
	return fmt.Errorf("%s did not appear within %s", path, limit)
}

func tail(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}
