package e2e

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ukdump/ukdump/internal/qemu"
	"github.com/ukdump/ukdump/pkg/diskdump"
)

// The fault tests: what the crash kernel does when the target or the
// machine fails under it. Each asserts what happened (the console names
// the failed step), what was kept on the target, and how long after the
// fault the machine reset (QEMU exits on the reset, -no-reboot), and
// records the three in its report.txt. "make faults" runs them.

// faultCase is a plain cycle (one ext4 disk) with a fault.
type faultCase struct {
	DiskMiB     int
	Conf        string // directives after the target line
	CrashKernel string
	Params      string
	Timeout     time.Duration
	// NBD attaches the disk through a faultDisk, for faults injected
	// while the crash kernel runs.
	NBD bool
	// ReadOnly attaches the disk write-protected (readonly=on).
	ReadOnly bool
	// Plant is files made on the target's filesystem before the first
	// boot, by path on the filesystem.
	Plant map[string][]byte
	// Live injects the fault while the VM runs; it calls r.fault when the
	// fault begins.
	Live func(r *faultRun, vm *qemu.VM)
	// Ctx, when set, kills QEMU when done (power loss).
	Ctx context.Context
}

// faultRun is what a fault case leaves for its checks.
type faultRun struct {
	Dir, Disk, UUID, Marker string
	NBD                     *faultDisk
	Cycle                   cycle

	mu      sync.Mutex
	faultAt time.Time // host clock: the fault began
	resetAt time.Time // host clock: the guest reset (QMP SHUTDOWN) or QEMU exited
	reason  string    // QMP's shutdown reason
}

func (r *faultRun) fault(at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.faultAt.IsZero() {
		r.faultAt = at
	}
}

// toReset is the wall time from the fault to the guest's reset.
func (r *faultRun) toReset() (time.Duration, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.faultAt.IsZero() || r.resetAt.IsZero() {
		return 0, false
	}
	return r.resetAt.Sub(r.faultAt), true
}

// runFault makes the disk, boots and lets the cycle run with the fault.
func runFault(t *testing.T, fc faultCase) *faultRun {
	t.Helper()
	requireTools(t, hostTools...)
	r := &faultRun{Dir: outDir(t), UUID: newUUID(), Marker: randomHex(8)}
	r.Disk = filepath.Join(r.Dir, "disk.img")
	makeExt4With(t, r.Disk, r.UUID, fc.DiskMiB, fc.Plant)
	if fc.CrashKernel == "" {
		fc.CrashKernel = crashKernelSize()
	}
	qmpSock := filepath.Join(r.Dir, "qmp.sock")
	args := []string{"-qmp", "unix:" + escapeComma(qmpSock) + ",server=on,wait=off"}
	var disks []string
	switch {
	case fc.NBD:
		d, err := newFaultDisk(r.Disk, filepath.Join(r.Dir, "nbd.sock"))
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		r.NBD = d
		args = append(args, "-drive", d.DriveArg())
	case fc.ReadOnly:
		args = append(args, "-drive", "file="+escapeComma(r.Disk)+",format=raw,if=virtio,readonly=on")
	default:
		disks = []string{r.Disk}
	}
	var exited time.Time
	r.Cycle = runCycle(t, r.Dir, cycleOptions{
		Kernel:      testKernel(t),
		Conf:        "ext4 UUID=" + r.UUID + "\n" + fc.Conf,
		Disks:       disks,
		MemoryMiB:   guestMiB,
		CrashKernel: fc.CrashKernel,
		Params:      strings.TrimSpace("ukdump.marker=" + r.Marker + " " + fc.Params),
		Timeout:     fc.Timeout,
		Modules:     []string{"virtio_pci", "virtio_blk"},
		ExtraArgs:   args,
		Ctx:         fc.Ctx,
		Live: func(vm *qemu.VM) {
			go r.watchQMP(vm, qmpSock)
			if fc.Live != nil {
				fc.Live(r, vm)
			}
			<-vm.Done()
			exited = time.Now()
		},
	})
	r.mu.Lock()
	if r.resetAt.IsZero() && fc.Ctx == nil {
		r.resetAt = exited
	}
	r.mu.Unlock()
	return r
}

// watchQMP records when QEMU reports the guest's reset (with -no-reboot a
// SHUTDOWN event, reason guest-reset or guest-panic), and then releases
// a hung faultDisk: QEMU drains its disks before exiting, which waits on
// the requests that the disk never answers.
func (r *faultRun) watchQMP(vm *qemu.VM, sock string) {
	var c net.Conn
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		var err error
		if c, err = net.Dial("unix", sock); err == nil {
			break
		}
		select {
		case <-vm.Done():
			return
		default:
		}
		if time.Now().After(deadline) {
			return
		}
	}
	defer c.Close()
	go func() { <-vm.Done(); c.Close() }()
	fmt.Fprintln(c, `{"execute":"qmp_capabilities"}`)
	sc := bufio.NewScanner(c)
	for sc.Scan() {
		var ev struct {
			Event string
			Data  struct{ Reason string }
		}
		if json.Unmarshal(sc.Bytes(), &ev) != nil || ev.Event != "SHUTDOWN" {
			continue
		}
		r.mu.Lock()
		if r.resetAt.IsZero() {
			r.resetAt, r.reason = time.Now(), ev.Data.Reason
		}
		r.mu.Unlock()
		if r.NBD != nil {
			r.NBD.Release()
		}
	}
}

// at waits for a console line and returns the host time it was seen.
func at(t *testing.T, vm *qemu.VM, pattern string) (time.Time, bool) {
	if _, err := vm.WaitFor(context.Background(), regexp.MustCompile(pattern)); err != nil {
		t.Logf("console never showed %q", pattern)
		return time.Time{}, false
	}
	return time.Now(), true
}

// makeExt4With makes an ext4 image holding files, by path on the
// filesystem (mkfs.ext4 -d copies a directory tree in).
func makeExt4With(t *testing.T, name, uuid string, sizeMiB int, files map[string][]byte) {
	t.Helper()
	if len(files) == 0 {
		makeExt4(t, name, uuid, sizeMiB)
		return
	}
	root := t.TempDir()
	for p, b := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	out, err := exec.Command("mkfs.ext4", "-q", "-F", "-U", uuid, "-L", "ukdump-e2e", "-d", root, name, fmt.Sprintf("%dM", sizeMiB)).CombinedOutput()
	if err != nil {
		t.Fatalf("mkfs.ext4 -d: %v\n%s", err, out)
	}
}

// wantLinesIn fails for each of want that console lacks.
func wantLinesIn(t *testing.T, console, what string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(console, w) {
			t.Errorf("%s console lacks %q:\n%s", what, w, qemu.Tail(console, 30))
		}
	}
}

// recovered copies the image and lets e2fsck replay its journal, as the
// next boot would, then checks the filesystem read-only: it must be clean.
// It returns the copy and e2fsck's report of the replay.
func recovered(t *testing.T, image string) (string, string) {
	t.Helper()
	cp := image + ".fsck"
	b, err := exec.Command("cp", "--sparse=always", image, cp).CombinedOutput()
	if err != nil {
		t.Fatalf("copy: %v\n%s", err, b)
	}
	replay, err := exec.Command("e2fsck", "-y", "-E", "journal_only", cp).CombinedOutput()
	if code := exitCode(err); code > 1 {
		t.Fatalf("e2fsck journal replay: exit %d\n%s", code, replay)
	}
	check, err := exec.Command("e2fsck", "-f", "-n", cp).CombinedOutput()
	if err != nil {
		t.Errorf("e2fsck -fn after the journal replay is not clean (%v): the filesystem is corrupt beyond recovery:\n%s", err, check)
	}
	return cp, strings.TrimSpace(string(replay))
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return 255
}

// dumpFiles extracts /var/crash from a (recovered) image and returns the
// dump directories with their files, e.g. {"host-date": ["vmcore-dmesg.txt"]}.
func dumpFiles(t *testing.T, image, out string) map[string][]string {
	t.Helper()
	ls, _ := exec.Command("debugfs", "-R", "ls -p /var/crash", image).CombinedOutput()
	if !strings.Contains(string(ls), "/.") {
		return nil // no /var/crash at all
	}
	extract(t, image, "/var/crash", out)
	dirs := map[string][]string{}
	entries, _ := os.ReadDir(filepath.Join(out, "crash"))
	for _, e := range entries {
		files, _ := os.ReadDir(filepath.Join(out, "crash", e.Name()))
		names := []string{}
		for _, f := range files {
			names = append(names, f.Name())
		}
		sort.Strings(names)
		dirs[e.Name()] = names
	}
	return dirs
}

func fileHash(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// faultReport is one row of the fault table.
type faultReport struct {
	Fault, Happened, Kept string
	Reboot                string // seconds from the fault to the reset, or why none
}

func (r *faultRun) report(t *testing.T, fr faultReport) {
	t.Helper()
	if fr.Reboot == "" {
		if d, ok := r.toReset(); ok {
			fr.Reboot = fmt.Sprintf("%.1f s (QMP: %s)", d.Seconds(), r.reason)
		} else {
			fr.Reboot = "not measured"
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "fault:           %s\n", fr.Fault)
	fmt.Fprintf(&b, "what happened:   %s\n", fr.Happened)
	fmt.Fprintf(&b, "kept on target:  %s\n", fr.Kept)
	fmt.Fprintf(&b, "fault to reset:  %s\n", fr.Reboot)
	if r.Cycle.Result != nil {
		fmt.Fprintf(&b, "qemu wall time:  %.1f s for the whole cycle\n", r.Cycle.Result.Duration.Seconds())
	}
	if r.NBD != nil {
		w, fl, failed := r.NBD.Stats()
		fmt.Fprintf(&b, "disk:            %d MiB written, %d flushes, %d requests failed\n", w>>20, fl, failed)
	}
	fmt.Fprintf(&b, "last crash kernel lines:\n%s\n", qemu.Tail(r.Cycle.Crash, 12))
	t.Logf("report:\n%s", b.String())
	if err := os.WriteFile(filepath.Join(r.Dir, "report.txt"), []byte(b.String()), 0o644); err != nil {
		t.Error(err)
	}
}

// crashed fails the test unless the first kernel got to the crash and the
// run ended with the guest's reset.
func (r *faultRun) crashed(t *testing.T) {
	t.Helper()
	if !strings.Contains(r.Cycle.First, "FIRSTINIT crashing") {
		t.Fatalf("first kernel did not get to the crash:\n%s", qemu.Tail(r.Cycle.First, 30))
	}
	if r.Cycle.Err != nil {
		t.Fatalf("the machine did not reset by itself: %v", r.Cycle.Err)
	}
}

// within fails unless the reset came at most limit after the fault. With
// faultLine, the crash kernel's own clock measures it, from the console
// line holding faultLine to "reboot: Restarting system", or to "Rebooting
// in N seconds" plus N after a panic: a failure that ends in milliseconds
// is below what the host sees through two pipes, and panic's delay loop
// runs slow under TCG on a busy host (10 s of it took 27-42 s of wall
// time here), which says nothing about a real machine. Without faultLine
// the host clock measures it.
func (r *faultRun) within(t *testing.T, limit time.Duration, faultLine string) time.Duration {
	t.Helper()
	d, ok := r.toReset()
	if faultLine != "" {
		d, ok = guestSpan(r.Cycle.Crash, faultLine)
	}
	if !ok {
		t.Fatalf("fault or reset time not recorded")
	}
	if d > limit {
		t.Errorf("reset %.1f s after the fault, want at most %s", d.Seconds(), limit)
	}
	return d
}

var panicDelay = regexp.MustCompile(`Rebooting in (\d+) seconds`)

// guestSpan is the crash kernel's time from the line holding from to the
// reset.
func guestSpan(console, from string) (time.Duration, bool) {
	start, ok := stamp(console, from)
	if !ok {
		return 0, false
	}
	// kdumpinit stamps its lines with its own clock, a few milliseconds
	// off the kernel's: the later of its reboot call and the kernel's
	// restart ends the span.
	end, ok := stamp(console, "reboot: Restarting system")
	if e, ok2 := stamp(console, "kdumpinit: reboot"); ok2 && (!ok || e > end) {
		end, ok = e, true
	}
	if !ok {
		m := panicDelay.FindStringSubmatch(console)
		if m == nil {
			return 0, false
		}
		end, _ = stamp(console, m[0])
		n, _ := strconv.Atoi(m[1])
		end += float64(n)
	}
	return time.Duration((end - start) * float64(time.Second)), true
}

// TestFaultTargetReadOnly: the target disk is write-protected. The mount
// fails at once; the crash kernel names the step and takes the failure
// action; nothing is written.
func TestFaultTargetReadOnly(t *testing.T) {
	t.Parallel()
	r := runFault(t, faultCase{DiskMiB: 64, Conf: "failure_action reboot\n", ReadOnly: true, Timeout: 5 * time.Minute,
		Live: func(r *faultRun, vm *qemu.VM) {
			if tm, ok := at(t, vm, `kdumpinit: found target`); ok {
				r.fault(tm)
			}
		}})
	r.crashed(t)
	wantLinesIn(t, r.Cycle.Crash, "crash kernel", "kdumpinit: FAILED at mount target: /dev/vda as ext4", "kdumpinit: reboot")
	if strings.Contains(r.Cycle.Crash, "dump complete") {
		t.Error("crash kernel claims a dump")
	}
	d := r.within(t, 40*time.Second, "kdumpinit: found target")
	if dirs := dumpFiles(t, r.Disk, filepath.Join(r.Dir, "dump")); dirs != nil {
		t.Errorf("a write-protected target has dumps: %v", dirs)
	}
	r.report(t, faultReport{Fault: "target write-protected (readonly=on)", Happened: "FAILED at mount target; failure action reboot",
		Kept: "nothing (disk unchanged)", Reboot: fmt.Sprintf("%.2f s from finding the target (crash kernel clock)", d.Seconds())})
}

// TestFaultTargetUnmountable: the target is found by its UUID but does
// not mount (an incompatible feature flag no kernel knows, set after the
// load, as a newer mkfs or a damaged superblock leaves it).
func TestFaultTargetUnmountable(t *testing.T) {
	t.Parallel()
	r := runFault(t, faultCase{DiskMiB: 64, Conf: "failure_action reboot\n", Params: "ukdump.scenario=badsb", Timeout: 5 * time.Minute,
		Live: func(r *faultRun, vm *qemu.VM) {
			if tm, ok := at(t, vm, `kdumpinit: found target`); ok {
				r.fault(tm)
			}
		}})
	r.crashed(t)
	wantLinesIn(t, r.Cycle.First, "first kernel", "FIRSTINIT set an unknown incompat feature")
	wantLinesIn(t, r.Cycle.Crash, "crash kernel", "kdumpinit: FAILED at mount target: /dev/vda as ext4", "kdumpinit: reboot")
	if strings.Contains(r.Cycle.Crash, "dump complete") {
		t.Error("crash kernel claims a dump")
	}
	d := r.within(t, 40*time.Second, "kdumpinit: found target")
	// Clear the flag again to look inside: nothing may have been written.
	f, err := os.OpenFile(r.Disk, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	f.ReadAt(b, 1024+0x63)
	b[0] &^= 0x80
	f.WriteAt(b, 1024+0x63)
	f.Close()
	if dirs := dumpFiles(t, r.Disk, filepath.Join(r.Dir, "dump")); dirs != nil {
		t.Errorf("an unmountable target has dumps: %v", dirs)
	}
	r.report(t, faultReport{Fault: "target found by UUID but not mountable (unknown incompat feature)",
		Happened: "FAILED at mount target; failure action reboot", Kept: "nothing",
		Reboot: fmt.Sprintf("%.2f s from finding the target (crash kernel clock)", d.Seconds())})
}

// bigDump makes the dump long enough under TCG (all of RAM, uncompressed:
// about 350 MiB of pages, 165 MiB written, zero pages stored once) for a
// fault to land in its middle.
const bigDump = "dump_level 0\ncompression none\nfailure_action reboot\n"

// TestFaultWriteErrors: the target starts failing every write (EIO) in the
// middle of the dump. The crash kernel names the step and takes the
// failure action; vmcore-dmesg.txt, written first, survives whole; the dump
// stays vmcore-incomplete; the filesystem recovers by its journal alone.
func TestFaultWriteErrors(t *testing.T) {
	t.Parallel()
	r := runFault(t, faultCase{DiskMiB: 512, Conf: bigDump, NBD: true, Timeout: 8 * time.Minute,
		Live: func(r *faultRun, vm *qemu.VM) {
			if _, ok := at(t, vm, `kdumpinit: wrote vmcore-dmesg.txt`); ok {
				r.NBD.FailWritesAfter(16 << 20)
			}
			select {
			case tm := <-r.NBD.FirstFailure():
				r.fault(tm)
			case <-vm.Done():
			}
		}})
	r.crashed(t)
	wantLinesIn(t, r.Cycle.Crash, "crash kernel", "kdumpinit: wrote vmcore-dmesg.txt", "kdumpinit: FAILED at write vmcore", "kdumpinit: reboot")
	if strings.Contains(r.Cycle.Crash, "dump complete") {
		t.Error("crash kernel claims a dump")
	}
	d := r.within(t, 90*time.Second, "")
	img, replay := recovered(t, r.Disk)
	kept := checkIncompleteDump(t, img, r)
	failure := regexp.MustCompile(`kdumpinit: FAILED at write vmcore: .*`).FindString(r.Cycle.Crash)
	r.report(t, faultReport{Fault: "every write fails (EIO) after 16 MiB of the dump",
		Happened: failure + "; failure action reboot", Kept: kept + "; e2fsck: " + oneLine(replay) + ", then clean",
		Reboot: fmt.Sprintf("%.1f s from the first failed write", d.Seconds())})
}

// checkIncompleteDump checks a dump cut short: one directory, whose
// vmcore-dmesg.txt is whole (it holds the marker), no file named vmcore,
// and the dump kept as vmcore-incomplete. It returns what was kept.
func checkIncompleteDump(t *testing.T, image string, r *faultRun) string {
	t.Helper()
	out := filepath.Join(r.Dir, "dump")
	dirs := dumpFiles(t, image, out)
	if len(dirs) != 1 {
		t.Fatalf("want one dump directory, have %v", dirs)
	}
	for name, files := range dirs {
		if strings.Join(files, " ") != "vmcore-dmesg.txt vmcore-incomplete" {
			t.Errorf("dump directory holds %v, want vmcore-dmesg.txt and vmcore-incomplete", files)
		}
		log, err := os.ReadFile(filepath.Join(out, "crash", name, "vmcore-dmesg.txt"))
		if err != nil || !strings.Contains(string(log), "UKDUMP-MARKER "+r.Marker) {
			t.Errorf("vmcore-dmesg.txt lost or without the marker: %v", err)
		}
		st, _ := os.Stat(filepath.Join(out, "crash", name, "vmcore-incomplete"))
		size := int64(-1)
		if st != nil {
			size = st.Size()
		}
		return fmt.Sprintf("%s/: %s (vmcore-incomplete %d MiB)", name, strings.Join(files, ", "), size>>20)
	}
	return ""
}

func oneLine(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return strings.Join(out, "; ")
}

// hungTaskSecs is the kernel's hung-task timeout in the crash kernel for
// TestFaultDiskHangs, set through cmdline_append as an administrator would:
// the default (120 s, checked every 120 s) makes the test wait up to four
// minutes. UKDUMP_E2E_HUNG_TASK_SECS=120 measures the default (nothing is
// appended then).
func hungTaskSecs() int {
	if n, err := strconv.Atoi(os.Getenv("UKDUMP_E2E_HUNG_TASK_SECS")); err == nil && n > 0 {
		return n
	}
	return 20
}

// TestFaultDiskHangs: the target stops answering in the middle of the
// dump: no request completes any more. The machine must still reset: the
// crash kernel's hung_task_panic=1 panics on the first task blocked on the
// disk for hung_task_timeout_secs, and panic=10 resets 10 s later. The
// real bound, with the kernel's default 120 s checked every 120 s, is
// about 250 s; behind it the stall watchdog (5 min without progress plus
// target_timeout) and the end deadline (30 s).
func TestFaultDiskHangs(t *testing.T) {
	t.Parallel()
	hungTaskSecs := hungTaskSecs()
	conf, how := bigDump, ", the kernel's default"
	if hungTaskSecs != 120 {
		conf += "cmdline_append sysctl.kernel.hung_task_timeout_secs=" + strconv.Itoa(hungTaskSecs) + "\n"
		how = " via cmdline_append"
	}
	r := runFault(t, faultCase{DiskMiB: 512, NBD: true, Timeout: 8*time.Minute + 2*time.Duration(hungTaskSecs)*time.Second, Conf: conf,
		Live: func(r *faultRun, vm *qemu.VM) {
			if _, ok := at(t, vm, `kdumpinit: wrote vmcore-dmesg.txt`); ok {
				time.Sleep(time.Second)
				r.NBD.Hang()
			}
			select {
			case <-r.NBD.HungRequest():
				r.fault(time.Now())
			case <-vm.Done():
			}
		}})
	r.crashed(t)
	wantLinesIn(t, r.Cycle.Crash, "crash kernel", "kdumpinit: wrote vmcore-dmesg.txt",
		fmt.Sprintf("blocked for more than %d seconds", hungTaskSecs), "Kernel panic - not syncing: hung_task: blocked tasks", "Rebooting in 10 seconds")
	if strings.Contains(r.Cycle.Crash, "dump complete") {
		t.Error("crash kernel claims a dump")
	}
	// Detected between one and two timeouts after the hang (which starts
	// a second after the line), then panic=10.
	d := r.within(t, time.Duration(2*hungTaskSecs+10+5)*time.Second, "kdumpinit: wrote vmcore-dmesg.txt")
	host, _ := r.toReset()
	img, replay := recovered(t, r.Disk)
	kept := checkIncompleteDump(t, img, r)
	blocked := regexp.MustCompile(`INFO: task (\S+) blocked for more than`).FindStringSubmatch(r.Cycle.Crash)
	who := ""
	if blocked != nil {
		who = blocked[1] + " "
	}
	r.report(t, faultReport{Fault: "disk stops answering mid-dump (no request completes)",
		Happened: fmt.Sprintf("task %sblocked > %d s, hung_task_panic, panic=10 reset", who, hungTaskSecs),
		Kept:     kept + "; e2fsck: " + oneLine(replay) + ", then clean",
		Reboot: fmt.Sprintf("%.1f s (crash kernel clock, from the last line before the hang; hung_task_timeout_secs=%d%s); host clock from the first unanswered request %.1f s",
			d.Seconds(), hungTaskSecs, how, host.Seconds())})
}

// powerLossSpan is how far into the dump's writes TestFaultPowerLoss may
// cut the power: short of the ~165 MiB bigDump writes in its 512 MiB
// guest, so that the dump is never over first.
const powerLossSpan = 150 << 20

// TestFaultPowerLoss: the machine loses power at a random point of the
// dump: QEMU is killed, and the disk loses every write it had not been
// told to flush. The filesystem must recover by its journal alone, an
// earlier dump must be intact, and the new one must be recognisable: a
// file named vmcore exists only when whole. UKDUMP_FAULT_SEED repeats a
// run's kill point.
func TestFaultPowerLoss(t *testing.T) {
	t.Parallel()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("UKDUMP_FAULT_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	rng := rand.New(rand.NewPCG(seed, 0))
	// The whole uncompressed dump writes about 165 MiB: the power goes
	// anywhere from the directory's making to near its end, counted in
	// bytes the disk has taken, not in time: a delay of up to 7 s, made
	// when the dump took 8-10 s under TCG, outran it once it took 5.
	after := int64(rng.Float64() * float64(powerLossSpan))
	t.Logf("seed %d: power loss after %.1f MiB of writes from the dump directory's making", seed, float64(after)/(1<<20))
	earlier := map[string][]byte{
		"var/crash/earlier-2024-01-01-00:00:00/vmcore":           []byte(strings.Repeat("an earlier dump\n", 1<<16)),
		"var/crash/earlier-2024-01-01-00:00:00/vmcore-dmesg.txt": []byte("the earlier dump's kernel log\n"),
	}
	ctx, kill := context.WithCancel(context.Background())
	defer kill()
	var lost int
	r := runFault(t, faultCase{DiskMiB: 512, Conf: bigDump, NBD: true, Plant: earlier, Ctx: ctx, Timeout: 6 * time.Minute,
		Live: func(r *faultRun, vm *qemu.VM) {
			if _, ok := at(t, vm, `kdumpinit: writing dump to`); !ok {
				return
			}
			select {
			case tm := <-r.NBD.AfterWrites(after):
				r.fault(tm)
			case <-vm.Done():
				return
			}
			kill()
			<-vm.Done()
			var err error
			if lost, err = r.NBD.PowerLoss(); err != nil {
				t.Error(err)
			}
		}})
	if !strings.Contains(r.Cycle.First, "FIRSTINIT crashing") {
		t.Fatalf("first kernel did not get to the crash:\n%s", qemu.Tail(r.Cycle.First, 30))
	}
	if r.Cycle.Err == nil {
		t.Fatalf("QEMU exited before the power loss (seed %d): the dump must take longer\n%s", seed, qemu.Tail(r.Cycle.Crash, 20))
	}
	done := strings.Contains(r.Cycle.Crash, "kdumpinit: dump complete")
	img, replay := recovered(t, r.Disk)
	out := filepath.Join(r.Dir, "dump")
	dirs := dumpFiles(t, img, out)
	for p, b := range earlier {
		got, err := os.ReadFile(filepath.Join(out, strings.TrimPrefix(p, "var/")))
		if err != nil || string(got) != string(b) {
			t.Errorf("earlier dump file %s damaged: %v", p, err)
		}
	}
	var kept []string
	for name, files := range dirs {
		if strings.HasPrefix(name, "earlier-") {
			continue
		}
		kept = append(kept, name+"/: "+strings.Join(files, ", "))
		for _, f := range files {
			full := filepath.Join(out, "crash", name, f)
			switch f {
			case "vmcore-dmesg.txt":
				if log, _ := os.ReadFile(full); !strings.Contains(string(log), "UKDUMP-MARKER "+r.Marker) {
					t.Errorf("vmcore-dmesg.txt exists but is not whole")
				}
			case "vmcore":
				// Only a whole dump may have this name.
				d, err := diskdump.OpenFile(full)
				if err != nil {
					t.Errorf("a file named vmcore is not a readable dump: %v", err)
					continue
				}
				if d.Incomplete() {
					t.Error("a file named vmcore is marked incomplete")
				}
				d.Close()
			case "vmcore-dmesg.txt-incomplete", "vmcore-incomplete":
			default:
				t.Errorf("unexpected file %s in the dump directory", f)
			}
		}
		if !done && slices.Contains(files, "vmcore") {
			t.Errorf("power lost before \"dump complete\", yet a complete-looking vmcore exists: %v", files)
		}
	}
	if len(kept) == 0 {
		kept = []string{"no new dump directory"}
	}
	r.report(t, faultReport{Fault: fmt.Sprintf("power loss after %.1f MiB of writes from the dump directory's making (seed %d), %d unflushed writes lost", float64(after)/(1<<20), seed, lost),
		Happened: fmt.Sprintf("QEMU killed; dump complete before: %v", done),
		Kept:     strings.Join(kept, "; ") + "; earlier dump intact; e2fsck: " + oneLine(replay) + ", then clean",
		Reboot:   "n/a (power loss)"})
}

// TestFaultOOM: the reservation is too small: the crash kernel starts but
// runs out of memory. The kernel, which never kills init, panics ("System
// is deadlocked on memory") and panic=10 resets the machine. kdumpinit
// itself cannot be starved by the reservation alone: with Debian 12's
// kernel, 64M to 73M run out while the kernel unpacks the initramfs, and
// from 74M, the smallest that reaches init, the dump completes
// (kdumpinit's peak is 7-8 MB, taken early; before the initramfs had a
// 256 KiB zstd window the floor was 81M). 68M lies in the middle of the
// failing range. UKDUMP_E2E_OOM_CRASHKERNEL overrides it.
func TestFaultOOM(t *testing.T) {
	t.Parallel()
	size := os.Getenv("UKDUMP_E2E_OOM_CRASHKERNEL")
	if size == "" {
		size = "68M"
	}
	r := runFault(t, faultCase{DiskMiB: 64, Conf: "failure_action reboot\n", CrashKernel: size, Timeout: 6 * time.Minute,
		Live: func(r *faultRun, vm *qemu.VM) {
			if tm, ok := at(t, vm, `Kernel panic - not syncing`); ok {
				r.fault(tm)
			}
		}})
	r.crashed(t)
	if strings.Contains(r.Cycle.Crash, "dump complete") {
		t.Fatalf("crashkernel=%s is enough for a dump: the case needs a smaller one", size)
	}
	wantLinesIn(t, r.Cycle.Crash, "crash kernel", "Kernel panic - not syncing", "Rebooting in 10 seconds")
	panicLine := regexp.MustCompile(`Kernel panic - not syncing: .*`).FindString(r.Cycle.Crash)
	d := r.within(t, 11*time.Second, "Kernel panic - not syncing")
	host, _ := r.toReset()
	r.report(t, faultReport{Fault: "crashkernel=" + size + ": out of memory in the crash kernel",
		Happened: panicLine + "; panic=10", Kept: "nothing",
		Reboot: fmt.Sprintf("%.1f s from the panic (crash kernel clock; host clock %.1f s)", d.Seconds(), host.Seconds())})
}

// TestFaultSecondCrash: two crashes on one target. The second never
// touches the first dump, and when the directory it would be named after
// exists (here planted, with a file, for every second it could crash in)
// it takes the name with ".2" and leaves that directory alone.
func TestFaultSecondCrash(t *testing.T) {
	t.Parallel()
	requireTools(t, hostTools...)
	dir := outDir(t)
	uuid := newUUID()
	disk := filepath.Join(dir, "disk.img")
	makeExt4(t, disk, uuid, 256)
	k := testKernel(t)
	var markers []string
	cycleIn := func(n int, params string) cycle {
		sub := filepath.Join(dir, fmt.Sprintf("cycle%d", n))
		if err := os.MkdirAll(sub, 0o755); err != nil {
			t.Fatal(err)
		}
		markers = append(markers, randomHex(8))
		c := runCycle(t, sub, cycleOptions{Kernel: k, Conf: "ext4 UUID=" + uuid + "\n", Disks: []string{disk}, MemoryMiB: guestMiB,
			CrashKernel: crashKernelSize(), Params: "ukdump.marker=" + markers[n-1] + " " + params, Timeout: 5 * time.Minute,
			Modules: []string{"virtio_pci", "virtio_blk"}})
		if c.Err != nil || !strings.Contains(c.Crash, "kdumpinit: dump complete") {
			t.Fatalf("cycle %d did not complete its dump (%v):\n%s", n, c.Err, qemu.Tail(c.Crash, 30))
		}
		return c
	}
	cycleIn(1, "")
	first := dumpFiles(t, disk, filepath.Join(dir, "dump1"))
	if len(first) != 1 {
		t.Fatalf("after one crash: %v", first)
	}
	hashes := map[string]string{}
	for name, files := range first {
		for _, f := range files {
			hashes[name+"/"+f] = fileHash(t, filepath.Join(dir, "dump1", "crash", name, f))
		}
	}
	c2 := cycleIn(2, "ukdump.plant=1")
	planted := regexp.MustCompile(`FIRSTINIT planted (\S+)`).FindAllStringSubmatch(c2.First, -1)
	if len(planted) == 0 {
		t.Fatal("the second cycle planted no directories")
	}
	both := dumpFiles(t, disk, filepath.Join(dir, "dump2"))
	for p, h := range hashes {
		if got := fileHash(t, filepath.Join(dir, "dump2", "crash", p)); got != h {
			t.Errorf("the second crash changed the first dump's %s", p)
		}
	}
	plantedNames := map[string]bool{}
	for _, m := range planted {
		plantedNames[m[1]] = true
		if files := both[m[1]]; strings.Join(files, " ") != "planted" {
			t.Errorf("planted directory %s now holds %v", m[1], files)
		}
	}
	var second string
	for name := range both {
		if _, old := first[name]; !old && !plantedNames[name] {
			if second != "" {
				t.Fatalf("two new dump directories: %s and %s", second, name)
			}
			second = name
		}
	}
	base, ok := strings.CutSuffix(second, ".2")
	if !ok || !plantedNames[base] {
		t.Errorf("second dump in %q, want <planted name>.2 (planted %v)", second, planted)
	}
	if strings.Join(both[second], " ") != "vmcore vmcore-dmesg.txt" {
		t.Errorf("second dump directory holds %v", both[second])
	}
	if log, _ := os.ReadFile(filepath.Join(dir, "dump2", "crash", second, "vmcore-dmesg.txt")); !strings.Contains(string(log), "UKDUMP-MARKER "+markers[1]) {
		t.Error("the second dump's log lacks the second crash's marker")
	}
	var firstName string
	for name := range first {
		firstName = name
	}
	r := &faultRun{Dir: dir, Cycle: c2}
	r.report(t, faultReport{Fault: "a second crash on the same target, its directory name taken (planted)",
		Happened: "second dump written beside the first", Kept: fmt.Sprintf("first dump %s unchanged; planted directories unchanged; second dump in %s", firstName, second),
		Reboot: "n/a (normal end)"})
}
