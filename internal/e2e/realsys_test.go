package e2e

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ukdump/ukdump/internal/qemu"
)

// debianImage is a real Debian 12 system built by
// testdata/debian/build-image.sh (debootstrap on the host, cached by the
// hash of its recipe).
type debianImage struct {
	Dir, Root, Kernel, Initrd, Release, UUID, KernelDeb string
}

func realDebian(t *testing.T) debianImage {
	t.Helper()
	requireTools(t, "qemu-system-x86_64", "debootstrap", "mkfs.ext4", "debugfs", "dpkg-deb")
	dir, read := imageDir(t, "build-image.sh")
	return debianImage{
		Dir: dir, Root: filepath.Join(dir, "root.img"), Kernel: filepath.Join(dir, "vmlinuz"),
		Initrd: filepath.Join(dir, "initrd.img"), Release: read("release"), UUID: read("uuid"),
		KernelDeb: filepath.Join(dir, "kernel.deb"),
	}
}

// debs builds the ukdump package once per test binary run.
type debs struct {
	once sync.Once
	path string
	err  error
}

var ukdumpDeb debs

func (d *debs) get(t *testing.T) string {
	t.Helper()
	d.once.Do(func() {
		dir, err := os.MkdirTemp("", "ukdump-e2e-deb-")
		if err != nil {
			d.err = err
			return
		}
		cmd := exec.Command("make", "-C", "../..", "deb", "DEB_DIR="+dir)
		if out, err := cmd.CombinedOutput(); err != nil {
			d.err = fmt.Errorf("make deb: %v\n%s", err, out)
			return
		}
		m, _ := filepath.Glob(filepath.Join(dir, "ukdump_*_amd64.deb"))
		if len(m) != 1 {
			d.err = fmt.Errorf("make deb left %v in %s", m, dir)
			return
		}
		d.path = m[0]
	})
	if d.err != nil {
		t.Fatal(d.err)
	}
	return d.path
}

// copyImage makes the test's own sparse copy of a disk image.
func copyImage(t *testing.T, src, dst string) {
	t.Helper()
	if out, err := exec.Command("cp", "--sparse=always", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("copying %s: %v\n%s", src, err, out)
	}
}

// putFiles writes host files into an ext4 image without mounting it:
// debugfs writes the filesystem itself (no root, no loop device).
func putFiles(t *testing.T, image string, files map[string]string) {
	t.Helper()
	var script strings.Builder
	for dst, src := range files {
		fmt.Fprintf(&script, "rm %s\nwrite %s %s\n", dst, src, dst)
	}
	cmd := exec.Command("debugfs", "-w", "-f", "-", image)
	cmd.Stdin = strings.NewReader(script.String())
	out, err := cmd.CombinedOutput()
	if err != nil || strings.Contains(string(out), "Could not allocate") {
		t.Fatalf("debugfs write: %v\n%s", err, out)
	}
}

// system is a real Debian system running in QEMU, driven from its serial
// console. It reboots as a real machine does (after the dump, the crash
// kernel's reboot boots the system again).
type system struct {
	t   *testing.T
	vm  *qemu.VM
	sh  *qemu.Shell
	ctx context.Context
	log *os.File
}

// qemuSystem is how a real system is started: its kernel, initramfs and
// command line (direct kernel boot, as GRUB would boot them), its disks.
type qemuSystem struct {
	Kernel, Initrd, Cmdline string
	Disks                   []string
	MemoryMiB               int
	// LogDir receives serial.log.
	LogDir string
}

// startSystem powers the machine on; it is off again (QEMU gone) when the
// test ends.
func startSystem(t *testing.T, ctx context.Context, q qemuSystem) *system {
	t.Helper()
	logf, err := os.Create(filepath.Join(q.LogDir, "serial.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logf.Close() })
	vm, err := qemu.Start(ctx, qemu.Options{
		Kernel:    q.Kernel,
		Initrd:    q.Initrd,
		Cmdline:   q.Cmdline,
		MemoryMiB: q.MemoryMiB,
		Disks:     q.Disks,
		Reboot:    true,
		Input:     true,
		Timeout:   30 * time.Minute,
		Console:   logf,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		vm.Send("\npoweroff -f\n")
		select {
		case <-vm.Done():
		case <-time.After(30 * time.Second):
		}
	})
	return &system{t: t, vm: vm, ctx: ctx, log: logf}
}

// bootSystem boots the plain Debian image with its root disk and waits for
// the login shell.
func bootSystem(t *testing.T, ctx context.Context, img debianImage, disk, dir, crashkernel string, memMiB int) *system {
	t.Helper()
	s := startSystem(t, ctx, qemuSystem{Kernel: img.Kernel, Initrd: img.Initrd,
		Cmdline: "root=UUID=" + img.UUID + " ro console=ttyS0 crashkernel=" + crashkernel + " panic=10",
		Disks:   []string{disk}, MemoryMiB: memMiB, LogDir: dir})
	s.waitBoot()
	return s
}

// poweroff flushes and powers the machine off, and waits for QEMU to end.
func (s *system) poweroff() {
	s.t.Helper()
	s.run("sync")
	if err := s.sh.Type("poweroff -f"); err != nil {
		s.t.Fatal(err)
	}
	select {
	case <-s.vm.Done():
	case <-time.After(2 * time.Minute):
		s.t.Fatal("the machine did not power off")
	}
}

// waitBoot waits for the login shell of a (re)boot.
func (s *system) waitBoot() {
	s.t.Helper()
	start := time.Now()
	bctx, cancel := context.WithTimeout(s.ctx, 5*time.Minute)
	defer cancel()
	sh, err := s.vm.WaitShell(bctx)
	if err != nil {
		s.t.Fatal(err)
	}
	s.sh = sh
	s.t.Logf("shell after %.0f s", time.Since(start).Seconds())
}

// run runs a command that must succeed and returns its output.
func (s *system) run(cmd string) string {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Minute)
	defer cancel()
	out, err := s.sh.MustRun(ctx, cmd)
	if err != nil {
		s.t.Fatal(err)
	}
	return out
}

// status runs a command that may fail and returns output and exit status.
func (s *system) status(cmd string) (string, int) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Minute)
	defer cancel()
	out, rc, err := s.sh.Run(ctx, cmd)
	if err != nil {
		s.t.Fatal(err)
	}
	return out, rc
}

// waitLine waits for a console line matching re.
func (s *system) waitLine(re string, limit time.Duration) string {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(s.ctx, limit)
	defer cancel()
	line, err := s.vm.WaitFor(ctx, regexp.MustCompile(re))
	if err != nil {
		s.t.Fatal(err)
	}
	return line
}

// crash writes a marker to the kernel log and crashes the machine from the
// console, as an administrator would, and waits for the crash kernel's
// dump; it returns the marker and a line for the report.
func (s *system) crash(name string) (marker, line string) {
	s.t.Helper()
	marker = "ukdump-" + name + "-marker-" + randomHex(8)
	s.run("echo " + marker + " > /dev/kmsg")
	at := time.Now()
	if err := s.sh.Type("echo c > /proc/sysrq-trigger"); err != nil {
		s.t.Fatal(err)
	}
	s.waitLine(`sysrq: Trigger a crash`, 2*time.Minute)
	done := s.waitLine(`kdumpinit: dump complete`, 10*time.Minute)
	return marker, fmt.Sprintf("crash to dump complete: %.0f s (%s)", time.Since(at).Seconds(), done)
}

// requireActive fails the test unless ukdump.service, once no longer
// starting, is active; when says at which point, for the message, which
// holds the service's journal of this boot.
func (s *system) requireActive(when string) {
	s.t.Helper()
	if out := s.run(waitActive); strings.TrimSpace(out) != "active" {
		s.t.Fatalf("ukdump.service %s: %q\n%s", when, out, s.run("journalctl -b -u ukdump.service --no-pager"))
	}
}

// reportLoadTime writes to report when ukdump.service became active.
func (s *system) reportLoadTime(report io.Writer) {
	s.t.Helper()
	loadedAt := s.run("systemctl show -p ActiveEnterTimestampMonotonic --value ukdump.service")
	fmt.Fprintf(report, "service loaded at %.1f s after boot\n", usec(loadedAt))
}

// statusAfterCrash is the check after the crash kernel's dump and the
// reboot: the service has loaded again, and ukdump status says ready and
// lists a complete dump. The status goes to report.
func (s *system) statusAfterCrash(report io.Writer) {
	s.t.Helper()
	if out := s.run(waitActive); strings.TrimSpace(out) != "active" {
		s.t.Errorf("ukdump.service after the crash: %q\n%s", out, s.run("journalctl -b -u ukdump.service --no-pager"))
	}
	st, rc := s.status("ukdump status")
	fmt.Fprintf(report, "\n$ ukdump status   (after the crash and reboot; exit %d)\n%s", rc, st)
	if rc != 0 || !strings.Contains(st, "complete, with vmcore-dmesg.txt") {
		s.t.Errorf("status after the crash: exit %d, want 0 and the dump listed:\n%s", rc, st)
	}
}

// logTexts names what a real system logged, for checkNoKeyIn: its journal
// and the consoles of its first boot and of the two after it (the crash
// kernel's between them).
func logTexts(journal string, consoles []string) map[string][]byte {
	texts := map[string][]byte{"journal": []byte(journal)}
	for i, c := range consoles {
		texts[[]string{"console of boot 1", "console of boots 2 and 3 (the crash kernel's between)"}[i]] = []byte(c)
	}
	return texts
}

// imageDir runs an image recipe of testdata/debian and returns its output
// directory and a reader of the small files in it.
func imageDir(t *testing.T, script string, args ...string) (string, func(name string) string) {
	t.Helper()
	cmd := exec.Command("../../testdata/debian/"+script, args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		need(t, "building the image (%s): %v", script, err)
	}
	dir := strings.TrimSpace(string(out))
	return dir, func(name string) string {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
}

// waitPrompt waits for a prompt (text on a line not yet ended).
func (s *system) waitPrompt(re string, limit time.Duration) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(s.ctx, limit)
	defer cancel()
	if err := s.vm.WaitPrompt(ctx, regexp.MustCompile(re)); err != nil {
		s.t.Fatal(err)
	}
}

// keyWhere is where the tests expect a volume key a load uses to be kept.
type keyWhere int

const (
	// keyInTable: in the live dm-crypt table (the initramfs hook's
	// --disable-keyring, LUKS1): CAP_SYS_ADMIN reads it.
	keyInTable keyWhere = iota
	// keySealed: a user key ukdump sealed: CAP_SYS_ADMIN with CAP_SETUID
	// reads it, ukdump's way.
	keySealed
	// keyLogon: a logon key, which no process reads.
	keyLogon
)

// keyChecks runs keyprobe (at probe in the guest) as a uid-0 process with
// every capability dropped, in the login shell's session keyring and in a
// private one that links root's user keyring, and as the control with the
// capabilities ukdump uses: no key may be readable without CAP_SYS_ADMIN,
// and the control must read it where it is kept (so that the probe could
// have found it). The outputs go to report.
func (s *system) keyChecks(report io.Writer, probe string, where keyWhere) {
	s.t.Helper()
	type probeCase struct {
		name, cmd string
		want      string // a line the output must have; "" for none
		readable  bool
	}
	with := func(caps string) string { return "setpriv --bounding-set=-all" + caps + " --inh-caps=-all " + probe }
	cases := []probeCase{
		{"capabilities dropped, the login shell's session keyring", with(""), "", false},
		{"capabilities dropped, a private session keyring linking @u", with("") + " -new-session -link-user", "", false},
		{"capabilities dropped, ukdump's way for sealed keys", with("") + " -unseal -link-user", "", false},
	}
	switch where {
	case keyInTable:
		cases = append(cases, probeCase{"control: CAP_SYS_ADMIN", with(",+sys_admin"), "table: READ the volume key", true})
	case keySealed:
		cases = append(cases,
			probeCase{"CAP_SETUID without CAP_SYS_ADMIN, ukdump's way", with(",+setuid,+setgid") + " -unseal", "", false},
			probeCase{"control: CAP_SYS_ADMIN and CAP_SETUID, ukdump's way", with(",+sys_admin,+setuid") + " -unseal", "sealed: READ the volume key", true})
	case keyLogon:
		cases = append(cases, probeCase{"control: every capability (a logon key is never read)", probe + " -unseal -link-user", "logon key kdump-cryptsetup:vk-", false})
	}
	fmt.Fprintf(report, "\nkey checks (keyprobe):\n")
	for _, c := range cases {
		out, _ := s.status(c.cmd)
		fmt.Fprintf(report, "$ %s   # %s\n%s", c.cmd, c.name, out)
		ok := strings.Contains(out, "KEYPROBE readable=0 ") != c.readable && strings.Contains(out, "KEYPROBE readable=")
		if !ok || (c.want != "" && !strings.Contains(out, c.want)) {
			s.t.Errorf("keyprobe, %s: want readable=%v%s:\n%s", c.name, c.readable, map[bool]string{true: " and " + c.want}[c.want != ""], out)
		}
	}
}
