package e2e

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// crypttabImage is the Debian 13 system of testdata/debian/build-crypttab.sh:
// /var/crash on a LUKS2 volume that systemd-cryptsetup opens at boot.
type crypttabImage struct {
	Dir, Root, Crash, Kernel, Initrd, Release, UUID, LUKSUUID, Passphrase string
}

func realDebianCrypttab(t *testing.T) crypttabImage {
	t.Helper()
	requireTools(t, "qemu-system-x86_64", "debootstrap", "cryptsetup", "debugfs")
	dir, read := imageDir(t, "build-crypttab.sh")
	return crypttabImage{Dir: dir, Root: filepath.Join(dir, "root.img"), Crash: filepath.Join(dir, "crash.img"),
		Kernel: filepath.Join(dir, "vmlinuz"), Initrd: filepath.Join(dir, "initrd.img"),
		Release: read("release"), UUID: read("uuid"), LUKSUUID: read("luks-uuid"), Passphrase: read("passphrase")}
}

// TestInstallSystemdCryptsetup is the proof on the systemd path: Debian 13
// (systemd 257, cryptsetup 2.7) with the dump target on a LUKS2 volume that
// systemd-cryptsetup opens from /etc/crypttab. The package is installed;
// status says the key is unreachable and to run ukdump setup-crypttab;
// that adds link-volume-key= with the key type the running kernel's
// transport needs; after a reboot the service loads with the key
// systemd-cryptsetup left in root's user keyring, and a crash writes the
// dump into the encrypted volume. Twice: on Debian 13's stock kernel (no
// CONFIG_CRASH_DM_CRYPT: initrd transport, user key) and on the 7.3 test
// kernel with CONFIG_CRASH_DM_CRYPT (kernel transport, logon key: Fedora's
// setup), which boots the same system without an initramfs.
func TestInstallSystemdCryptsetup(t *testing.T) {
	t.Parallel()
	img := realDebianCrypttab(t)
	t.Run("stock", func(t *testing.T) {
		t.Parallel()
		systemdCryptsetupCase(t, img, qemuSystem{Kernel: img.Kernel, Initrd: img.Initrd,
			Cmdline: "root=UUID=" + img.UUID + " ro console=ttyS0 crashkernel=" + realsysCrashkernel() + " panic=10"}, img.Release, "user", keySealed, nil)
	})
	t.Run("crashdm", func(t *testing.T) {
		t.Parallel()
		k := crashDMKernel(t)
		files := map[string]string{"/boot/vmlinuz-" + k.Release: k.Image, "/boot/config-" + k.Release: filepath.Join(k.Root, "config")}
		systemdCryptsetupCase(t, img, qemuSystem{Kernel: k.Image,
			Cmdline: "root=/dev/vda ro console=ttyS0 crashkernel=" + realsysCrashkernel() + " panic=10"}, k.Release, "logon", keyLogon, files)
	})
}

// systemdCryptsetupCase runs the case on the system booted as q says (its
// disks are added), whose kernel is release; keyType is what setup-crypttab
// must choose, where the key ends up after the load; files go onto the
// root filesystem (the kernel's image).
func systemdCryptsetupCase(t *testing.T, img crypttabImage, q qemuSystem, release, keyType string, where keyWhere, files map[string]string) {
	deb := ukdumpDeb.get(t)
	dir := outDir(t)
	disk, crash := filepath.Join(dir, "disk.img"), filepath.Join(dir, "crash.img")
	copyImage(t, img.Root, disk)
	copyImage(t, img.Crash, crash)
	put := map[string]string{"/root/ukdump.deb": deb, "/root/keyprobe": filepath.Join(bins.get(t), "keyprobe")}
	for dst, src := range files {
		put[dst] = src
	}
	putFiles(t, disk, put)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	report := &strings.Builder{}
	boots := 0
	var consoles []string
	boot := func() *system {
		boots++
		logDir := filepath.Join(dir, fmt.Sprintf("boot%d", boots))
		if err := os.MkdirAll(logDir, 0o755); err != nil {
			t.Fatal(err)
		}
		t0 := time.Now()
		q := q
		q.Disks, q.MemoryMiB, q.LogDir = []string{disk, crash}, 1024, logDir
		s := startSystem(t, ctx, q)
		s.waitBoot()
		fmt.Fprintf(report, "boot %d to shell: %.0f s\n", boots, time.Since(t0).Seconds())
		return s
	}
	mounted := func(s *system) {
		if out := s.run("findmnt -n -o SOURCE /var/crash"); !strings.Contains(out, "crashvol") {
			t.Fatalf("/var/crash is not the encrypted volume: %q\n%s", out,
				s.run("systemctl status --no-pager systemd-cryptsetup@crashvol.service"))
		}
	}

	// 1. The package on a system whose crypttab has no link-volume-key:
	// no key is reachable, and status says what to do.
	s := boot()
	mounted(s)
	s.run("dpkg -i /root/ukdump.deb")
	s.run(waitActive)
	st, rc := s.status("ukdump status")
	fmt.Fprintf(report, "\n$ ukdump status   (installed, crypttab as it was; exit %d)\n%s", rc, st)
	if rc == 0 || !strings.Contains(st, "run ukdump setup-crypttab") {
		t.Errorf("status before setup-crypttab: exit %d, want non-zero and the advice to run ukdump setup-crypttab:\n%s", rc, st)
	}
	out, rc := s.status("ukdump setup-crypttab --yes")
	fmt.Fprintf(report, "\n$ ukdump setup-crypttab --yes   (exit %d)\n%s", rc, out)
	want := "link-volume-key=@u::%" + keyType + ":kdump-cryptsetup:vk-" + img.LUKSUUID
	if tab := s.run("cat /etc/crypttab"); rc != 0 || !strings.Contains(tab, want) {
		t.Fatalf("setup-crypttab: exit %d, crypttab lacks %s:\n%s", rc, want, tab)
	}
	consoles = append(consoles, s.vm.Console())
	s.poweroff()

	// 2. The next boot: systemd-cryptsetup leaves the key, the service
	// loads by itself, a crash dumps into the encrypted volume.
	s = boot()
	mounted(s)
	s.requireActive("after the reboot")
	s.reportLoadTime(report)
	journal := s.run("journalctl -b --no-pager -o cat")
	st, rc = s.status("ukdump status")
	fmt.Fprintf(report, "\n$ ukdump status   (after the reboot; exit %d)\n%s", rc, st)
	if rc != 0 || !strings.Contains(st, keyType+" key kdump-cryptsetup:vk-"+img.LUKSUUID) {
		t.Errorf("status after the reboot: exit %d, want 0 and the key from the %s key:\n%s", rc, keyType, st)
	}
	s.keyChecks(report, "/root/keyprobe", where)
	marker, line := s.crash("crypttab")
	fmt.Fprintf(report, "\n%s\n", line)
	boots++ // the crash kernel's reboot
	s.waitBoot()
	mounted(s)
	s.statusAfterCrash(report)
	consoles = append(consoles, s.vm.Console())

	// Removal: the package takes its link-volume-key= off crypttab (nothing
	// would seal that key without ukdump), destroys the sealed key, and
	// the purge deletes the copy of crypttab; the volume still opens at
	// the next boot.
	out, rc = s.status("dpkg --purge ukdump 2>&1")
	fmt.Fprintf(report, "\n$ dpkg --purge ukdump   (exit %d)\n%s", rc, out)
	left := s.run(`grep -H kdump-cryptsetup /etc/crypttab; ls /etc/crypttab.ukdump-bak 2>/dev/null; true`)
	fmt.Fprintf(report, "ukdump's options and backup left in crypttab: %q\n", strings.TrimSpace(left))
	if rc != 0 || strings.TrimSpace(left) != "" {
		t.Errorf("after dpkg --purge (exit %d), still there: %q\n%s", rc, left, out)
	}
	// A sealed key is destroyed with the package; systemd's logon key
	// (kernel transport) stays until the volume is opened without the
	// option.
	if n := strings.TrimSpace(s.run("grep -c kdump-cryptsetup /proc/keys || true")); where == keySealed && n != "0" {
		t.Errorf("after dpkg --purge, %s volume keys are still in the keyrings", n)
	}
	s.poweroff()
	s = boot()
	mounted(s)
	if n := strings.TrimSpace(s.run("grep -c kdump-cryptsetup /proc/keys || true")); n != "0" {
		t.Errorf("the boot after the purge left %s volume keys in the keyrings", n)
	}
	s.poweroff()

	// 3. The host decrypts the volume with the key cryptsetup gives for
	// the key file's passphrase and checks the dump.
	plain, vol := decryptImage(t, crash, img.Passphrase, filepath.Join(dir, "crash-plain.img"))
	vol.Name = "crashvol"
	dumpDir := filepath.Join(dir, "dump")
	extract(t, plain, "/", dumpDir)
	dumps := findVmcores(t, dumpDir)
	if len(dumps) != 1 {
		t.Fatalf("want one complete dump on the encrypted volume, have %v", dumps)
	}
	checkRealDump(t, dumps[0], release, marker)
	checkScrubbed(t, dir, consoles[len(consoles)-1], dumps[0], true, vol)
	// No key in what the system logged or keeps on its disks: the
	// consoles, the journal, the dump directory's other files and the
	// whole root filesystem (its initramfs included).
	texts := logTexts(journal, consoles)
	checkNoKeyIn(t, vol, texts, disk, filepath.Join(filepath.Dir(dumps[0]), "vmcore-dmesg.txt"))
	os.WriteFile(filepath.Join(dir, "report.txt"), []byte(report.String()), 0o644)
	t.Logf("report:\n%s", report)
}

// findVmcores lists the complete dumps (files named vmcore) under dir.
func findVmcores(t *testing.T, dir string) []string {
	t.Helper()
	var found []string
	err := filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() && info.Name() == "vmcore" {
			found = append(found, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// checkNoKeyIn fails the test if v's volume key appears, as bytes or as
// hex (either case, or its first 8 bytes as hex), in a text or a file.
// Files are searched as they are, in 1 MiB steps that overlap by a pattern.
func checkNoKeyIn(t *testing.T, v luksVolume, texts map[string][]byte, files ...string) {
	t.Helper()
	h := hex.EncodeToString(v.Key)
	patterns := [][]byte{v.Key, []byte(h), []byte(strings.ToUpper(h)), []byte(h[:16]), []byte(strings.ToUpper(h[:16]))}
	found := func(b []byte) bool {
		for _, p := range patterns {
			if bytes.Contains(b, p) {
				return true
			}
		}
		return false
	}
	for where, b := range texts {
		if found(b) {
			t.Errorf("the volume key of %s appears in the %s", v.Name, where)
		}
	}
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		keep := 2 * len(h)
		buf := make([]byte, keep+1<<20)
		n, hit := 0, false
		for {
			m, err := io.ReadFull(f, buf[n:])
			if found(buf[:n+m]) {
				hit = true
				break
			}
			if err != nil {
				break
			}
			n = copy(buf, buf[n+m-keep:n+m])
		}
		f.Close()
		if hit {
			t.Errorf("the volume key of %s appears in %s", v.Name, name)
		}
	}
}
