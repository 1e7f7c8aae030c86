package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ukdump/ukdump/internal/qemu"
	"github.com/ukdump/ukdump/pkg/collector"
	"github.com/ukdump/ukdump/pkg/diskdump"
	"github.com/ukdump/ukdump/pkg/luks"
	"github.com/ukdump/ukdump/pkg/luks/lukstest"
)

// encryptedImage is the Debian 12 "guided, encrypted LVM" system of
// testdata/debian/build-encrypted.sh.
type encryptedImage struct {
	Dir, Disk, Boot, Kernel, Initrd, Release, LUKSUUID, Passphrase string
}

func realDebianEncrypted(t *testing.T) encryptedImage {
	t.Helper()
	requireTools(t, "qemu-system-x86_64", "debootstrap", "cryptsetup", "pvcreate", "debugfs")
	dir, read := imageDir(t, "build-encrypted.sh")
	return encryptedImage{Dir: dir, Disk: filepath.Join(dir, "disk.img"), Boot: filepath.Join(dir, "boot.img"),
		Kernel: filepath.Join(dir, "vmlinuz"), Initrd: filepath.Join(dir, "initrd.img"),
		Release: read("release"), LUKSUUID: read("luks-uuid"), Passphrase: read("passphrase")}
}

// TestInstallEncryptedLVM is the proof on the most common encrypted layout:
// Debian 12's "guided, encrypted LVM" (root and swap logical volumes in a
// LUKS2 volume that cryptroot opens at boot with a typed passphrase). The
// package is installed on the running system; at the next boot its
// initramfs hook leaves the volume key where ukdump load reaches it, with
// no second passphrase; the crash kernel unlocks the volume, activates the
// volume group and dumps to /var/crash on the root logical volume.
func TestInstallEncryptedLVM(t *testing.T) {
	t.Parallel()
	img := realDebianEncrypted(t)
	deb := ukdumpDeb.get(t)
	dir := outDir(t)
	disk, boot := filepath.Join(dir, "disk.img"), filepath.Join(dir, "boot.img")
	copyImage(t, img.Disk, disk)
	copyImage(t, img.Boot, boot)
	putFiles(t, boot, map[string]string{"/ukdump.deb": deb})
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	report := &strings.Builder{}
	boots := 0
	start := func(initrd string) *system {
		boots++
		logDir := filepath.Join(dir, fmt.Sprintf("boot%d", boots))
		if err := os.MkdirAll(logDir, 0o755); err != nil {
			t.Fatal(err)
		}
		return startSystem(t, ctx, qemuSystem{Kernel: img.Kernel, Initrd: initrd,
			Cmdline: "root=/dev/mapper/vg0-root ro console=ttyS0 crashkernel=" + realsysCrashkernel() + " panic=10",
			Disks:   []string{disk, boot}, MemoryMiB: 1024, LogDir: logDir})
	}
	unlock := func(s *system) {
		t0 := time.Now()
		s.waitPrompt(`Please unlock disk vda_crypt: `, 5*time.Minute)
		if err := s.vm.Send(img.Passphrase + "\n"); err != nil {
			t.Fatal(err)
		}
		// What the initramfs hook costs at boot: the time from the
		// passphrase to the opened volume, without the hook (boot 1)
		// and with it (2, 3). A second KDF run would add the first's.
		t1 := time.Now()
		s.waitLine(`vda_crypt:? set up successfully`, 5*time.Minute)
		open := time.Since(t1).Seconds()
		s.waitBoot()
		fmt.Fprintf(report, "boot %d: passphrase to volume open %.1f s, passphrase prompt to shell %.0f s\n", boots, open, time.Since(t0).Seconds())
	}

	// 1. The package on a system that was booted without it: the key is
	// unreachable (cryptsetup dropped it), and status says what to do.
	s := start(img.Initrd)
	unlock(s)
	s.run("dpkg -i /boot/ukdump.deb")
	st, rc := s.status("ukdump status")
	fmt.Fprintf(report, "\n$ ukdump status   (installed, not rebooted yet; exit %d)\n%s", rc, st)
	if rc == 0 {
		t.Errorf("status says ready before the key is reachable:\n%s", st)
	}
	initrd := "initrd.img-" + img.Release
	if !strings.Contains(s.run("lsinitramfs /boot/"+initrd+" | grep -cx etc/ukdump-initramfs || true"), "1") {
		t.Fatalf("the regenerated initramfs lacks the ukdump hook's change")
	}
	consoles := []string{s.vm.Console()}
	s.poweroff()

	// 2. The next boot, with the initramfs the package regenerated.
	newInitrd := filepath.Join(dir, initrd)
	getFile(t, boot, "/"+initrd, newInitrd)
	s = start(newInitrd)
	unlock(s)
	s.requireActive("after the reboot")
	s.reportLoadTime(report)
	journal := s.run("journalctl -b --no-pager -o cat")
	st = s.run("ukdump status")
	fmt.Fprintf(report, "\n$ ukdump status   (after the reboot)\n%s", st)
	if !strings.Contains(st, img.LUKSUUID) {
		t.Errorf("status does not list the LUKS volume %s:\n%s", img.LUKSUUID, st)
	}

	// 3. Crash; the crash kernel unlocks, activates vg0, dumps to root.
	marker, line := s.crash("encrypted")
	fmt.Fprintf(report, "\n%s\n", line)
	boots++ // the crash kernel's reboot
	unlock(s)
	s.statusAfterCrash(report)
	consoles = append(consoles, s.vm.Console())
	s.poweroff()

	// 4. The host decrypts the volume with the key cryptsetup gives for
	// the passphrase, finds the root LV with lvm2, and checks the dump.
	plain, vol := decryptImage(t, disk, img.Passphrase, filepath.Join(dir, "pv.img"))
	rootfs := extractLV(t, plain, "vg0", "root", filepath.Join(dir, "root.img"))
	out := filepath.Join(dir, "dump")
	extract(t, rootfs, "/var/crash", out)
	dumps, _ := filepath.Glob(filepath.Join(out, "crash", "ukdump-test-*", "vmcore"))
	if len(dumps) != 1 {
		t.Fatalf("want one complete dump under /var/crash on vg0/root, have %v", dumps)
	}
	checkRealDump(t, dumps[0], img.Release, marker)
	checkScrubbed(t, dir, s.vm.Console(), dumps[0], true, vol)
	// No key in what the system logged or keeps on its disks: the
	// consoles, the journal, the dump's other files, the root LV and the
	// initramfs the package made (decompressed).
	texts := logTexts(journal, consoles)
	cpio := filepath.Join(dir, initrd+".cpio")
	if b, err := exec.Command("sh", "-c", `lz4 -dc "$1" > "$2"`, "sh", newInitrd, cpio).CombinedOutput(); err != nil {
		t.Fatalf("lz4 -dc %s: %v\n%s", newInitrd, err, b)
	}
	checkNoKeyIn(t, vol, texts, rootfs, boot, cpio, filepath.Join(filepath.Dir(dumps[0]), "vmcore-dmesg.txt"))
	os.WriteFile(filepath.Join(dir, "report.txt"), []byte(report.String()), 0o644)
	t.Logf("report:\n%s", report)
}

// decryptImage writes the data segment of the LUKS image, decrypted with
// the volume key that cryptsetup gives for the passphrase, to out.
func decryptImage(t *testing.T, image, passphrase, out string) (string, luksVolume) {
	t.Helper()
	key, err := lukstest.DumpVolumeKey(lukstest.Cryptsetup(t), image, passphrase)
	if err != nil {
		t.Fatal(err)
	}
	h, err := luks.ReadFile(image)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := lukstest.Decrypt(image, h, key, f); err != nil {
		t.Fatal(err)
	}
	return out, luksVolume{Name: "vda_crypt", Image: image, Key: key, Header: h}
}

// extractLV copies a linear logical volume out of a PV image, locating it
// with the real lvm2 tools (on a loop device, activation off).
func extractLV(t *testing.T, pv, vg, lv, out string) string {
	t.Helper()
	loop, err := exec.Command("losetup", "-f", "--show", "-r", pv).Output()
	if err != nil {
		t.Fatalf("losetup: %v", err)
	}
	dev := strings.TrimSpace(string(loop))
	defer exec.Command("losetup", "-d", dev).Run()
	lvm := func(args ...string) string {
		args = append(args, "--config", "global { activation = 0 } devices { obtain_device_list_from_udev = 0 }")
		cmd := exec.Command("lvm", args...)
		cmd.Env = append(os.Environ(), "LVM_SUPPRESS_FD_WARNINGS=1")
		b, err := cmd.Output()
		if err != nil {
			t.Fatalf("lvm %v: %v", args, err)
		}
		return strings.TrimSpace(string(b))
	}
	ext, _ := strconv.ParseUint(lvm("vgs", "--noheadings", "--units", "s", "--nosuffix", "-o", "vg_extent_size", vg), 10, 64)
	peStart, _ := strconv.ParseUint(lvm("pvs", "--noheadings", "--units", "s", "--nosuffix", "-o", "pe_start", dev), 10, 64)
	seg := lvm("lvs", "--noheadings", "--segments", "-o", "seg_pe_ranges", vg+"/"+lv)
	m := regexp.MustCompile(`:(\d+)-(\d+)$`).FindStringSubmatch(seg)
	if m == nil || ext == 0 {
		t.Fatalf("%s/%s: segments %q, extent %d sectors", vg, lv, seg, ext)
	}
	first, _ := strconv.ParseUint(m[1], 10, 64)
	last, _ := strconv.ParseUint(m[2], 10, 64)
	skip := (peStart + first*ext) * 512
	count := (last - first + 1) * ext * 512
	if b, err := exec.Command("dd", "if="+pv, "of="+out, "bs=1M", "iflag=skip_bytes,count_bytes",
		fmt.Sprintf("skip=%d", skip), fmt.Sprintf("count=%d", count), "conv=sparse", "status=none").CombinedOutput(); err != nil {
		t.Fatalf("dd: %v\n%s", err, b)
	}
	return out
}

// getFile copies one file out of an ext4 image with debugfs.
func getFile(t *testing.T, image, path, out string) {
	t.Helper()
	if b, err := exec.Command("debugfs", "-R", fmt.Sprintf("dump %s %s", path, out), image).CombinedOutput(); err != nil {
		t.Fatalf("debugfs dump %s: %v\n%s", path, err, b)
	}
	if st, err := os.Stat(out); err != nil || st.Size() == 0 {
		t.Fatalf("debugfs dump %s: nothing written", path)
	}
}

// checkRealDump checks a dump written on a real system with readers we did
// not write: crash names the release, libkdumpfile reads the pages our
// reader reads (the default snappy is beyond Debian 12's makedumpfile),
// and the kernel log holds the marker and equals vmcore-dmesg.txt.
func checkRealDump(t *testing.T, vmcore, release, marker string) {
	t.Helper()
	checkDumpOf(t, "", vmcore, release, marker)
}

// checkDumpOf is checkRealDump for a dump of arch's machine: crash reads
// only dumps of the host's machine (see hostReads).
func checkDumpOf(t *testing.T, arch qemu.Arch, vmcore, release, marker string) {
	t.Helper()
	if !hostReads(arch) {
		t.Logf("crash --osrelease left out: Debian's crash reads dumps of the host's machine only (%s dump)", arch)
	} else if b, err := exec.Command("crash", "--osrelease", vmcore).CombinedOutput(); err != nil ||
		strings.TrimSpace(string(b)) != release {
		t.Errorf("crash --osrelease: %q, %v (want %s)", b, err, release)
	}
	d, err := diskdump.OpenFile(vmcore)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if d.Incomplete() {
		t.Error("dump marked incomplete")
	}
	checkWithLibkdumpfile(t, vmcore, d)
	var log strings.Builder
	if err := collector.DmesgFile(vmcore, &log); err != nil {
		t.Fatal(err)
	}
	beside, _ := os.ReadFile(filepath.Join(filepath.Dir(vmcore), "vmcore-dmesg.txt"))
	if !strings.Contains(log.String(), marker) || log.String() != string(beside) {
		t.Errorf("the dump's kernel log lacks the marker %q or differs from vmcore-dmesg.txt", marker)
	}
}
