package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestInstallDebian is the installation proof on a real Debian 12 system:
// systemd, initramfs-tools and Debian's stock kernel, booted in QEMU with
// crashkernel= as a machine would be, and nothing of ours in it but the
// package. An administrator at the serial console installs the .deb, the
// service loads the crash kernel, the machine crashes, the crash kernel
// writes the dump to /var/crash on the root filesystem (no target line in
// the configuration), the system boots again and the service loads by
// itself; reinstalling the kernel that ukdump loads reloads it, and a kernel
// package it does not load leaves it alone.
func TestInstallDebian(t *testing.T) {
	t.Parallel()
	img := realDebian(t)
	deb := ukdumpDeb.get(t)
	dir := outDir(t)
	disk := filepath.Join(dir, "disk.img")
	copyImage(t, img.Root, disk)
	other := otherKernelPackage(t, dir)
	putFiles(t, disk, map[string]string{
		"/root/ukdump.deb":       deb,
		"/root/kernel.deb":       img.KernelDeb,
		"/root/other-kernel.deb": other,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	report := &strings.Builder{}
	start := time.Now()
	s := bootSystem(t, ctx, img, disk, dir, realsysCrashkernel(), 1024)
	fmt.Fprintf(report, "first boot to shell: %.0f s\n", time.Since(start).Seconds())

	// 1. Install as an administrator would.
	s.run("dpkg -i /root/ukdump.deb")
	s.run("systemctl is-enabled ukdump.service")
	s.requireActive("after dpkg -i")
	before := s.run("ukdump status")
	fmt.Fprintf(report, "\n$ ukdump status   (after dpkg -i)\n%s", before)
	if !strings.Contains(before, img.Release) {
		t.Errorf("status does not name the loaded kernel %s:\n%s", img.Release, before)
	}
	estimate, _ := s.status("ukdump estimate")
	fmt.Fprintf(report, "\n$ ukdump estimate\n%s", estimate)

	// 2. Crash from the console, as an administrator would.
	marker, line := s.crash("install")
	fmt.Fprintf(report, "\n%s\n", line)

	// 3. The machine boots again, and the service loads by itself.
	rebootAt := time.Now()
	s.waitLine(`Linux version `+regexp.QuoteMeta(img.Release), 3*time.Minute)
	s.waitBoot()
	fmt.Fprintf(report, "second boot to shell: %.0f s\n", time.Since(rebootAt).Seconds())
	// The service may still be loading when the login shell comes up.
	s.requireActive("after the reboot")
	s.reportLoadTime(report)
	after := s.run("ukdump status")
	fmt.Fprintf(report, "\n$ ukdump status   (after the crash and reboot)\n%s", after)
	if !regexp.MustCompile(`ukdump-test-\d{4}-\d\d-\d\d-\d\d:\d\d:\d\d`).MatchString(after) {
		t.Errorf("status lists no dump:\n%s", after)
	}

	// 4. Kernel hooks: reinstalling the kernel ukdump loads reloads it;
	// another kernel package leaves it loaded as it was.
	stateTime := func() string { return s.run("stat -c %Y /run/ukdump/state.json") }
	t0 := stateTime()
	s.run("dpkg -i /root/other-kernel.deb")
	if t1 := stateTime(); t1 != t0 {
		t.Errorf("installing a kernel ukdump does not load reloaded it (state %s -> %s)", t0, t1)
	}
	time.Sleep(1100 * time.Millisecond)
	s.run("dpkg -i /root/kernel.deb")
	t2 := stateTime()
	if t2 == t0 {
		t.Errorf("reinstalling the loaded kernel %s did not reload ukdump\n%s", img.Release,
			s.run("journalctl -u ukdump.service --no-pager | tail -20"))
	}
	s.run("systemctl is-active ukdump.service")

	// 5. CPU hotplug: udev's rule reloads (Linux 6.1 has no crash_hotplug,
	// so the crash kernel's headers must be made again). udevadm trigger
	// sends the "add" events a hot-added CPU would.
	time.Sleep(1100 * time.Millisecond)
	s.run("udevadm trigger --subsystem-match=cpu --action=add --settle")
	// The reload is queued (--no-block): give it a minute.
	s.run(`for i in $(seq 60); do [ "$(stat -c %Y /run/ukdump/state.json)" = "` + strings.TrimSpace(t2) + `" ] || break; sleep 1; done`)
	if t3 := stateTime(); t3 == t2 {
		t.Errorf("a CPU add event did not reload ukdump\n%s", s.run("journalctl -u ukdump.service --no-pager | tail -20"))
	}
	s.poweroff()

	// 6. The host takes the image apart and checks the dump.
	out := filepath.Join(dir, "dump")
	extract(t, disk, "/var/crash", out)
	dumps, _ := filepath.Glob(filepath.Join(out, "crash", "ukdump-test-*", "vmcore"))
	if len(dumps) != 1 {
		t.Fatalf("want one complete dump under /var/crash, have %v", dumps)
	}
	checkRealDump(t, dumps[0], img.Release, marker)
	os.WriteFile(filepath.Join(dir, "report.txt"), []byte(report.String()), 0o644)
	t.Logf("report:\n%s", report)
}

// realsysCrashkernel is the reservation of the real-system tests: 256M, or
// UKDUMP_E2E_REALSYS_CRASHKERNEL, to find the smallest that works for each
// layout and compare it with ukdump estimate.
func realsysCrashkernel() string {
	if v := os.Getenv("UKDUMP_E2E_REALSYS_CRASHKERNEL"); v != "" {
		return v
	}
	return "256M"
}

// waitActive prints ukdump.service's state once it is no longer starting
// (up to two minutes: the load runs kexec_file_load under emulation).
const waitActive = `for i in $(seq 120); do [ "$(systemctl is-active ukdump.service)" = activating ] || break; sleep 1; done; systemctl is-active ukdump.service || true`

// usec reads a systemd microsecond value as seconds.
func usec(s string) float64 {
	var v float64
	fmt.Sscan(strings.TrimSpace(s), &v)
	return v / 1e6
}

// otherKernelPackage builds a kernel package that ukdump does not load: it
// installs a kernel image under another release and runs the kernel hooks
// as Debian's linux-image postinst does (run-parts /etc/kernel/postinst.d
// with the release and the image path), as a kernel that needs no
// initramfs (INITRD=No, which initramfs-tools' hook honours: this image is
// no kernel to build one for).
func otherKernelPackage(t *testing.T, dir string) string {
	t.Helper()
	const rel = "6.99.0-ukdump-other"
	root := filepath.Join(dir, "other-kernel")
	for _, d := range []string{"DEBIAN", "boot"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{
		"DEBIAN/control": "Package: linux-image-" + rel + "\nVersion: 1\nArchitecture: amd64\nMaintainer: ukdump tests <tests@localhost>\nDescription: a kernel ukdump does not load\n",
		"DEBIAN/postinst": "#!/bin/sh\nset -e\n[ \"$1\" = configure ] || exit 0\n" +
			"INITRD=No run-parts --report --exit-on-error --arg=" + rel + " --arg=/boot/vmlinuz-" + rel + " /etc/kernel/postinst.d\n",
		"boot/vmlinuz-" + rel: "not a kernel\n",
	}
	for name, body := range files {
		mode := os.FileMode(0o644)
		if strings.HasSuffix(name, "postinst") {
			mode = 0o755
		}
		if err := os.WriteFile(filepath.Join(root, name), []byte(body), mode); err != nil {
			t.Fatal(err)
		}
	}
	deb := filepath.Join(dir, "other-kernel.deb")
	if out, err := exec.Command("dpkg-deb", "--root-owner-group", "-b", root, deb).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb: %v\n%s", err, out)
	}
	return deb
}

// TestInstallBackportsKernel: Debian 13 running Debian's own 7.3 kernel
// from trixie-backports, installed as a user installs it (its packages,
// see testdata/debian/build-backports.sh). Those ship the image and config
// in /usr/lib/modules/<release>/; linux-base's postinst links them into
// /boot as well. ukdump loads that kernel, the crash kernel dumps; with
// the /boot links gone (as where nothing puts them there: a kernel-install
// layout) a reload and estimate take the kernel beside its modules; and
// reinstalling the kernel's packages runs ukdump's kernel hook, which
// reloads.
func TestInstallBackportsKernel(t *testing.T) {
	t.Parallel()
	requireTools(t, "qemu-system-x86_64", "debootstrap", "debugfs")
	dir0, read := imageDir(t, "build-backports.sh")
	release, uuid := read("release"), read("uuid")
	deb := ukdumpDeb.get(t)
	dir := outDir(t)
	disk := filepath.Join(dir, "disk.img")
	copyImage(t, filepath.Join(dir0, "root.img"), disk)
	putFiles(t, disk, map[string]string{"/root/ukdump.deb": deb})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	report := &strings.Builder{}
	start := time.Now()
	s := startSystem(t, ctx, qemuSystem{Kernel: filepath.Join(dir0, "vmlinuz"), Initrd: filepath.Join(dir0, "initrd.img"),
		Cmdline: "root=UUID=" + uuid + " ro console=ttyS0 crashkernel=" + realsysCrashkernel() + " panic=10 systemd.default_device_timeout_sec=600",
		Disks:   []string{disk}, MemoryMiB: 1024, LogDir: dir})
	s.waitBoot()
	fmt.Fprintf(report, "boot to shell (kernel %s): %.0f s\n", release, time.Since(start).Seconds())
	where := s.run("uname -r; dpkg -S /usr/lib/modules/$(uname -r)/vmlinuz /usr/lib/modules/$(uname -r)/config")
	fmt.Fprintf(report, "\n$ uname -r; dpkg -S /usr/lib/modules/$(uname -r)/{vmlinuz,config}\n%s", where)
	if !strings.HasPrefix(where, release+"\n") || !strings.Contains(where, "linux-binary-"+release+": /usr/lib/modules/"+release+"/vmlinuz") {
		t.Fatalf("not the layout of the 7.x packages (the image beside the modules):\n%s", where)
	}

	s.run("dpkg -i /root/ukdump.deb")
	s.requireActive("after dpkg -i")
	st := s.run("ukdump status")
	fmt.Fprintf(report, "\n$ ukdump status   (after dpkg -i)\n%s", st)
	if !strings.Contains(st, release) {
		t.Errorf("status does not name the loaded kernel %s:\n%s", release, st)
	}
	marker, line := s.crash("backports")
	fmt.Fprintf(report, "\n%s\n", line)
	s.waitLine(`Linux version `+regexp.QuoteMeta(release), 3*time.Minute)
	s.waitBoot()
	s.statusAfterCrash(report)

	// Only the packages' own files: the kernel beside its modules.
	s.run("rm -f /boot/vmlinuz-" + release + " /boot/config-" + release)
	out, rc := s.status("ukdump reload")
	fmt.Fprintf(report, "\n$ rm /boot/{vmlinuz,config}-%s; ukdump reload   (exit %d)\n%s", release, rc, out)
	if state := s.run("cat /run/ukdump/state.json"); rc != 0 || !strings.Contains(state, `"kernel": "/usr/lib/modules/`+release+`/vmlinuz"`) {
		t.Errorf("without /boot/vmlinuz-%s the reload did not take the kernel beside its modules (exit %d):\n%s", release, rc, state)
	}
	estimate, rc := s.status("ukdump estimate")
	fmt.Fprintf(report, "\n$ ukdump estimate   (exit %d)\n%s", rc, estimate)
	if !strings.Contains(estimate, "bzImage init_size") {
		t.Errorf("estimate without /boot/vmlinuz-%s:\n%s", release, estimate)
	}

	// Reinstalling the kernel's packages, as an update of the same release
	// does, runs the kernel hooks with the image where these packages
	// keep it: ukdump reloads.
	t0 := s.run("stat -c %Y /run/ukdump/state.json")
	time.Sleep(1100 * time.Millisecond)
	out = s.run("dpkg -i /root/backports/*.deb 2>&1 | grep -i ukdump || true")
	fmt.Fprintf(report, "\n$ dpkg -i /root/backports/*.deb   (ukdump's lines)\n%s", out)
	if t1 := s.run("stat -c %Y /run/ukdump/state.json"); t1 == t0 {
		t.Errorf("reinstalling the loaded kernel %s did not reload ukdump\n%s", release, s.run("journalctl -u ukdump.service --no-pager | tail -20"))
	}
	s.run("systemctl is-active ukdump.service")
	s.poweroff()

	dumpDir := filepath.Join(dir, "dump")
	extract(t, disk, "/var/crash", dumpDir)
	dumps, _ := filepath.Glob(filepath.Join(dumpDir, "crash", "ukdump-test-*", "vmcore"))
	if len(dumps) != 1 {
		t.Fatalf("want one complete dump under /var/crash, have %v", dumps)
	}
	checkRealDump(t, dumps[0], release, marker)
	os.WriteFile(filepath.Join(dir, "report.txt"), []byte(report.String()), 0o644)
	t.Logf("report:\n%s", report)
}
