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

// encryptedImage is a Debian "guided, encrypted LVM" system of
// testdata/debian/build-encrypted.sh: Debian 12 or 13, LUKS2 or LUKS1.
type encryptedImage struct {
	Dir, Disk, Boot, Kernel, Initrd, Release, LUKSUUID, Passphrase string
	LUKSVersion                                                    string
}

func realDebianEncrypted(t *testing.T, suite, luks string) encryptedImage {
	t.Helper()
	requireTools(t, "qemu-system-x86_64", "debootstrap", "cryptsetup", "pvcreate", "debugfs", "unmkinitramfs")
	dir, read := imageDir(t, "build-encrypted.sh", suite, luks)
	return encryptedImage{Dir: dir, Disk: filepath.Join(dir, "disk.img"), Boot: filepath.Join(dir, "boot.img"),
		Kernel: filepath.Join(dir, "vmlinuz"), Initrd: filepath.Join(dir, "initrd.img"),
		Release: read("release"), LUKSUUID: read("luks-uuid"), Passphrase: read("passphrase"), LUKSVersion: read("luks-version")}
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
	encryptedInstall(t, realDebianEncrypted(t, "bookworm", "luks2"), false)
}

// TestInstallEncryptedDebian13 is the same proof on Debian 13, whose
// cryptroot runs cryptsetup 2.7, once with a LUKS2 root and once with a
// LUKS1 root (systems installed before Debian 10, or kept so that GRUB
// unlocks /boot), where ukdump 0.1's initramfs hook made every passphrase
// fail. Each ends with dpkg --purge ukdump and a boot that still unlocks,
// with nothing of ukdump left in the initramfs or crypttab.
func TestInstallEncryptedDebian13(t *testing.T) {
	t.Parallel()
	for _, luks := range []string{"luks2", "luks1"} {
		t.Run(luks, func(t *testing.T) {
			t.Parallel()
			encryptedInstall(t, realDebianEncrypted(t, "trixie", luks), true)
		})
	}
}

// encryptedInstall runs the installation proof on img; with purge, the
// package's removal too.
func encryptedInstall(t *testing.T, img encryptedImage, purge bool) {
	deb := ukdumpDeb.get(t)
	probe := filepath.Join(bins.get(t), "keyprobe")
	dir := outDir(t)
	disk, boot := filepath.Join(dir, "disk.img"), filepath.Join(dir, "boot.img")
	copyImage(t, img.Disk, disk)
	copyImage(t, img.Boot, boot)
	putFiles(t, boot, map[string]string{"/ukdump.deb": deb, "/keyprobe": probe})
	disks := []string{disk, boot}
	if purge && img.LUKSVersion == "1" {
		disks = append(disks, debsDisk(t, dir))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Minute)
	defer cancel()
	report := &strings.Builder{}
	fmt.Fprintf(report, "Debian %s (kernel %s), LUKS%s root volume vda_crypt %s, opened by cryptroot\n\n",
		map[bool]string{true: "13", false: "12"}[strings.Contains(img.Dir, "trixie")], img.Release, img.LUKSVersion, img.LUKSUUID)
	boots := 0
	start := func(initrd string) *system {
		boots++
		logDir := filepath.Join(dir, fmt.Sprintf("boot%d", boots))
		if err := os.MkdirAll(logDir, 0o755); err != nil {
			t.Fatal(err)
		}
		return startSystem(t, ctx, qemuSystem{Kernel: img.Kernel, Initrd: initrd,
			Cmdline: "root=/dev/mapper/vg0-root ro console=ttyS0 crashkernel=" + realsysCrashkernel() + " panic=10 systemd.default_device_timeout_sec=600",
			Disks:   disks, MemoryMiB: 1024, LogDir: logDir})
	}
	// unlock types the passphrase once at cryptroot's prompt: it must be
	// accepted the first time.
	unlock := func(s *system) {
		t0 := time.Now()
		s.waitPrompt(`Please unlock disk vda_crypt: `, 5*time.Minute)
		from := len(s.vm.Console())
		if err := s.vm.Send(img.Passphrase + "\n"); err != nil {
			t.Fatal(err)
		}
		// What the initramfs hook costs at boot: the time from the
		// passphrase to the opened volume, without the hook (boot 1)
		// and with it. A second KDF run would add the first's.
		t1 := time.Now()
		s.waitLine(`vda_crypt:? set up successfully`, 5*time.Minute)
		open := time.Since(t1).Seconds()
		if after := s.vm.Console()[from:]; strings.Contains(after, "bad password") || strings.Contains(after, "Please unlock disk") {
			t.Fatalf("boot %d: the passphrase was not accepted the first time:\n%s", boots, qemu.Tail(after, 20))
		}
		s.waitBoot()
		fmt.Fprintf(report, "boot %d: passphrase accepted at the first prompt; passphrase to volume open %.1f s, prompt to shell %.0f s\n", boots, open, time.Since(t0).Seconds())
	}
	initrd := "initrd.img-" + img.Release
	fetchInitrd := func() string {
		p := filepath.Join(dir, fmt.Sprintf("%s.boot%d", initrd, boots+1))
		getFile(t, boot, "/"+initrd, p)
		return p
	}

	// 1. The package on a system that was booted without it: a LUKS2
	// key is unreachable (cryptsetup dropped it), and dpkg and status say
	// what happens next; a LUKS1 key is in the table, and the service
	// loads at once.
	s := start(img.Initrd)
	unlock(s)
	out, rc := s.status("dpkg -i /boot/ukdump.deb 2>&1")
	fmt.Fprintf(report, "\n$ dpkg -i ukdump.deb   (exit %d)\n%s", rc, out)
	explained := strings.Contains(out, "ukdump status says why, and what happens next")
	if rc != 0 || strings.Contains(out, "Could not execute systemctl") || explained != (img.LUKSVersion == "2") {
		t.Errorf("dpkg -i: exit %d; want 0, no \"Could not execute systemctl\", and ukdump status's explanation only for LUKS2:\n%s", rc, out)
	}
	st, rc := s.status("ukdump status")
	fmt.Fprintf(report, "\n$ ukdump status   (installed, not rebooted yet; exit %d)\n%s", rc, st)
	if (rc == 0) != (img.LUKSVersion == "1") {
		t.Errorf("status before the reboot: exit %d; want ready only for LUKS1, whose key is in the table:\n%s", rc, st)
	}
	if !strings.Contains(s.run("lsinitramfs /boot/"+initrd+" | grep -cx etc/ukdump-initramfs || true"), "1") {
		t.Fatalf("the regenerated initramfs lacks the ukdump hook's change")
	}
	consoles := []string{s.vm.Console()}
	s.poweroff()

	// 2. The next boot, with the initramfs the package regenerated: the
	// key is in the dm-crypt table, where only CAP_SYS_ADMIN reads it.
	newInitrd := fetchInitrd()
	s = start(newInitrd)
	unlock(s)
	s.requireActive("after the reboot")
	s.reportLoadTime(report)
	journal := s.run("journalctl -b --no-pager -o cat")
	st = s.run("ukdump status")
	fmt.Fprintf(report, "\n$ ukdump status   (after the reboot)\n%s", st)
	if !strings.Contains(st, img.LUKSUUID) || !strings.Contains(st, "dm-crypt table") {
		t.Errorf("status does not list the LUKS volume %s with its key from the dm-crypt table:\n%s", img.LUKSUUID, st)
	}
	s.keyChecks(report, "/boot/keyprobe", keyInTable)

	// 3. Crash; the crash kernel unlocks, activates vg0, dumps to root.
	marker, line := s.crash("encrypted")
	fmt.Fprintf(report, "\n%s\n", line)
	boots++ // the crash kernel's reboot
	unlock(s)
	s.statusAfterCrash(report)
	consoles = append(consoles, s.vm.Console())

	// 4. Removal: nothing of ukdump stays in any initramfs or in
	// crypttab, and the system still unlocks. On the LUKS1 system a
	// second kernel is installed first (Debian's 7.3 from
	// trixie-backports, from the third disk): its initramfs gets the hook
	// too, and the purge must rebuild both (update-initramfs -u alone
	// rebuilds the newest only).
	if purge && img.LUKSVersion == "1" {
		out := s.run("mkdir -p /mnt/debs && mount -o ro /dev/vdc /mnt/debs && dpkg -i /mnt/debs/linux-base_*.deb && dpkg -i /mnt/debs/*.deb 2>&1 | tail -5; umount /mnt/debs")
		fmt.Fprintf(report, "\n$ dpkg -i (Debian's 7.3 kernel from trixie-backports)\n%s", out)
		var marked []string
		for _, l := range strings.Split(s.run("for i in /boot/initrd.img-*; do lsinitramfs $i 2>/dev/null | grep -qx etc/ukdump-initramfs && echo $i; done; true"), "\n") {
			if strings.HasPrefix(l, "/boot/initrd.img-") {
				marked = append(marked, l)
			}
		}
		fmt.Fprintf(report, "initramfs images with the hook's change: %s\n", strings.Join(marked, " "))
		if n := len(marked); n != 2 {
			t.Errorf("after installing a second kernel, %d initramfs images hold the hook's change, want 2:\n%s", n, marked)
		}
	}
	if purge {
		out, rc := s.status("dpkg --purge ukdump 2>&1")
		fmt.Fprintf(report, "\n$ dpkg --purge ukdump   (exit %d)\n%s", rc, out)
		if rc != 0 {
			t.Fatalf("dpkg --purge: exit %d\n%s", rc, out)
		}
		left := s.run(`for i in /boot/initrd.img-*; do d=$(mktemp -d); unmkinitramfs "$i" "$d"; grep -rls ukdump "$d" | sed "s|^$d|$i:|"; rm -rf "$d"; done; grep -l ukdump /etc/crypttab* 2>/dev/null; ls /etc/crypttab.ukdump-bak 2>/dev/null; true`)
		fmt.Fprintf(report, "ukdump left in the initramfs images and crypttab after the purge: %q\n", strings.TrimSpace(left))
		if strings.TrimSpace(left) != "" {
			t.Errorf("after dpkg --purge, ukdump is still in:\n%s", left)
		}
		s.poweroff()
		s = start(fetchInitrd())
		unlock(s)
		if out, rc := s.status("command -v ukdump; systemctl is-system-running --wait"); rc != 0 && !strings.Contains(out, "degraded") {
			t.Errorf("after the purge and a reboot: %q (exit %d)", out, rc)
		}
	}
	s.poweroff()

	// 5. The host decrypts the volume with the key cryptsetup gives for
	// the passphrase, finds the root LV with lvm2, and checks the dump.
	plain, vol := decryptImage(t, disk, img.Passphrase, filepath.Join(dir, "pv.img"))
	rootfs := extractLV(t, plain, "vg0", "root", filepath.Join(dir, "root.img"))
	dumpDir := filepath.Join(dir, "dump")
	extract(t, rootfs, "/var/crash", dumpDir)
	dumps, _ := filepath.Glob(filepath.Join(dumpDir, "crash", "ukdump-test-*", "vmcore"))
	if len(dumps) != 1 {
		t.Fatalf("want one complete dump under /var/crash on vg0/root, have %v", dumps)
	}
	checkRealDump(t, dumps[0], img.Release, marker)
	checkScrubbed(t, dir, consoles[len(consoles)-1], dumps[0], true, vol)
	// No key in what the system logged or keeps on its disks: the
	// consoles, the journal, the dump's other files, the root LV and the
	// initramfs the package made (decompressed).
	texts := logTexts(journal, consoles)
	files := append(unpackInitramfs(t, newInitrd, filepath.Join(dir, initrd+".unpacked")),
		rootfs, boot, filepath.Join(filepath.Dir(dumps[0]), "vmcore-dmesg.txt"))
	checkNoKeyIn(t, vol, texts, files...)
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

// unpackInitramfs unpacks an initramfs image with initramfs-tools'
// unmkinitramfs (every archive in it: Debian 13's start with an
// uncompressed one) into dir and lists its regular files.
func unpackInitramfs(t *testing.T, image, dir string) []string {
	t.Helper()
	if b, err := exec.Command("unmkinitramfs", image, dir).CombinedOutput(); err != nil {
		t.Fatalf("unmkinitramfs %s: %v\n%s", image, err, b)
	}
	var files []string
	err := filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() {
			files = append(files, p)
		}
		return err
	})
	if err != nil || len(files) == 0 {
		t.Fatalf("unpacked %s: %d files, %v", image, len(files), err)
	}
	return files
}

// debsDisk makes an ext4 image holding the packages of Debian's 7.3 kernel
// from trixie-backports (testdata/debian/build-backports.sh), to attach to
// a guest that installs them.
func debsDisk(t *testing.T, dir string) string {
	t.Helper()
	bpo, _ := imageDir(t, "build-backports.sh")
	img := filepath.Join(dir, "debs.img")
	if b, err := exec.Command("mkfs.ext4", "-q", "-F", "-d", filepath.Join(bpo, "debs"), img, "256M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4 -d %s: %v\n%s", filepath.Join(bpo, "debs"), err, b)
	}
	return img
}
