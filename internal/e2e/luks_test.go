package e2e

import (
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ukdump/ukdump/internal/qemu"
	"github.com/ukdump/ukdump/pkg/luks"
	"github.com/ukdump/ukdump/pkg/luks/lukstest"
)

// LUKS cases reserve 128M for the crash kernel, the figure the mission
// sets; UKDUMP_E2E_LUKS_CRASHKERNEL overrides it to find the smallest.
func luksCrashKernel() string {
	if s := os.Getenv("UKDUMP_E2E_LUKS_CRASHKERNEL"); s != "" {
		return s
	}
	return "128M"
}

// luksVolume is a LUKS image made by cryptsetup, with its volume key.
type luksVolume struct {
	Name   string
	Image  string
	Key    []byte
	Header *luks.Header
}

// volumesLine is the firstinit instruction to open v with mode "table" or
// "keyring".
func (v luksVolume) volumesLine(mode string) string {
	return fmt.Sprintf("%s %s %s %s\n", v.Header.UUID, hex.EncodeToString(v.Key), v.Name, mode)
}

// formatLUKS makes a LUKS image of size bytes holding plain (a file of
// plainSize bytes) in its data segment, and keeps the volume key as
// volume-key-<name>.hex for tools outside the test.
func formatLUKS(t *testing.T, dir, name string, size int64, o lukstest.Options, plain string) luksVolume {
	t.Helper()
	img := filepath.Join(dir, name+".img")
	key, h := lukstest.Format(t, img, size, o)
	f, err := os.Open(plain)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	if err := lukstest.Encrypt(img, h, key, f, st.Size()); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "volume-key-"+name+".hex"), []byte(hex.EncodeToString(key)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return luksVolume{Name: name, Image: img, Key: key, Header: h}
}

// plainExt4 makes an ext4 image of size bytes.
func plainExt4(t *testing.T, dir, uuid string, size int64) string {
	t.Helper()
	p := filepath.Join(dir, "plain-fs.img")
	out, err := exec.Command("mkfs.ext4", "-q", "-F", "-U", uuid, "-L", "ukdump-e2e", p, fmt.Sprintf("%dk", size>>10)).CombinedOutput()
	if err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	return p
}

// decrypt writes the data segment of v to a new file and returns its path.
func decrypt(t *testing.T, v luksVolume, out string) string {
	t.Helper()
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := lukstest.Decrypt(v.Image, v.Header, v.Key, f); err != nil {
		t.Fatal(err)
	}
	return out
}

// checkNoKeys fails when a key shows up in the consoles or in any file of
// the dump directory but the memory image itself (which holds the dead
// kernel's memory, and so its dm-crypt key, as every kdump does).
func checkNoKeys(t *testing.T, dir string, c cycle, vols ...luksVolume) {
	t.Helper()
	texts := map[string]string{"console": c.Result.Console}
	filepath.Walk(filepath.Join(dir, "dump"), func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() && info.Name() != "vmcore" {
			b, _ := os.ReadFile(p)
			texts[p] = string(b)
		}
		return nil
	})
	for _, v := range vols {
		for where, s := range texts {
			if strings.Contains(s, string(v.Key)) || strings.Contains(strings.ToLower(s), hex.EncodeToString(v.Key)) ||
				strings.Contains(strings.ToLower(s), hex.EncodeToString(v.Key[:8])) {
				t.Errorf("the volume key of %s appears in %s", v.Name, where)
			}
		}
	}
}

func wantLines(t *testing.T, console, which string, lines ...string) {
	t.Helper()
	for _, l := range lines {
		if !strings.Contains(console, l) {
			t.Errorf("%s console lacks %q", which, l)
		}
	}
}

var luksModules = []string{"virtio_pci", "virtio_blk", "dm_mod", "dm_crypt", "xts", "ecb", "essiv", "sha256_generic"}

// luksCase is a cycle on one LUKS volume holding ext4.
type luksCase struct {
	Kernel  kernel
	FSMiB   int
	Format  lukstest.Options
	Mode    string // how the first system mapped it: "table" or "keyring"
	Conf    string // directives after the target line
	Params  string
	Timeout time.Duration
	Modules []string
}

// luksResult is what a LUKS case leaves for its checks.
type luksResult struct {
	Dir, Marker string
	Volume      luksVolume
	Cycle       cycle
	// Scrubbed is false when the case's configuration has scrub_keys no.
	Scrubbed bool
}

// runLUKS formats the volume with cryptsetup, fills it with an ext4 image,
// and runs a cycle whose first system opens it as Mode says.
func runLUKS(t *testing.T, lc luksCase) luksResult {
	t.Helper()
	r := luksResult{Dir: outDir(t), Marker: randomHex(8), Scrubbed: !strings.Contains(lc.Conf, "scrub_keys no")}
	fsUUID := newUUID()
	plain := plainExt4(t, r.Dir, fsUUID, int64(lc.FSMiB)<<20)
	r.Volume = formatLUKS(t, r.Dir, "crashdisk", int64(lc.FSMiB+20)<<20, lc.Format, plain)
	os.Remove(plain)
	r.Cycle = runCycle(t, r.Dir, cycleOptions{
		Kernel:      lc.Kernel,
		Conf:        "ext4 UUID=" + fsUUID + "\n" + lc.Conf,
		Files:       map[string]string{"etc/e2e/volumes": r.Volume.volumesLine(lc.Mode)},
		Disks:       []string{r.Volume.Image},
		MemoryMiB:   guestMiB,
		CrashKernel: luksCrashKernel(),
		Params:      strings.TrimSpace("ukdump.marker=" + r.Marker + " " + lc.Params),
		Timeout:     lc.Timeout,
		Modules:     lc.Modules,
	})
	if r.Cycle.Err != nil {
		t.Fatalf("kdump cycle did not end by itself: %v", r.Cycle.Err)
	}
	return r
}

// checkLUKSDump decrypts the volume on the host and verifies the dump in it.
func checkLUKSDump(t *testing.T, r luksResult, target string) {
	t.Helper()
	v, c := r.Volume, r.Cycle
	vmcore, loaded, dmesg := verifyDump(t, r.Dir, decrypt(t, v, filepath.Join(r.Dir, "decrypted.img")), c, r.Marker)
	checkNoKeys(t, r.Dir, c, v)
	checkScrubbed(t, r.Dir, c.Crash, vmcore, r.Scrubbed, v)
	writeReport(t, r.Dir, c, vmcore, loaded, dmesg, target)
}

// TestLUKSInitrd: Debian's stock 6.1 kernel has no CRASH_DM_CRYPT, so the
// key rides in the in-memory initramfs.
func TestLUKSInitrd(t *testing.T) {
	t.Parallel()
	requireTools(t, append(hostTools, "cryptsetup")...)
	luksInitrdCycle(t, luksCase{Kernel: testKernel(t), Conf: "compression zlib\n", Timeout: 8 * time.Minute, Modules: luksModules},
		"ext4 on LUKS2 (Argon2id, 4096-byte sectors), key handed over in the in-memory initramfs")
}

// luksInitrdCycle runs and checks a cycle whose key rides in the in-memory
// initramfs. The volume is LUKS2 as cryptsetup makes it by default
// (Argon2id with far more memory than the crash kernel has, 4096-byte
// sectors on an image file); the first system mapped it with the key in
// the dm-crypt table.
func luksInitrdCycle(t *testing.T, lc luksCase, target string) {
	t.Helper()
	lc.FSMiB, lc.Format, lc.Mode = 600, lukstest.Options{PBKDF: "argon2id", SectorSize: 4096}, "table"
	r := runLUKS(t, lc)
	wantLines(t, r.Cycle.First, "first kernel",
		"key transport initrd",
		"key from the live dm-crypt table (checked against the header digest)",
		"FIRSTINIT CHECK mkinitrd-no-key PASS",
		"(initrd transport, from dm-crypt table)",
	)
	wantLines(t, r.Cycle.Crash, "crash kernel", "opened LUKS2 "+r.Volume.Header.UUID)
	checkLUKSDump(t, r, target)
}

// TestLUKSKernel: the CRASH_DM_CRYPT kernel. With scrub_keys no, the
// control of the key scrub: the search that finds nothing in the other
// cases must find the key.
func TestLUKSKernel(t *testing.T) {
	t.Parallel()
	requireTools(t, append(hostTools, "cryptsetup")...)
	luksKernelCycle(t, luksCase{Kernel: crashDMKernel(t), Conf: "scrub_keys no\n", Timeout: 6 * time.Minute},
		"ext4 on LUKS2 (Argon2id), key handed over by the kernel (CRASH_DM_CRYPT)")
}

// luksKernelCycle runs and checks a cycle with the kernel transport. The
// first system left the key as the logon key kdump-cryptsetup:vk-<uuid>
// (systemd's link-volume-key); a wrong logon key is refused at load time;
// the kernel carries the right one to the crash kernel. After the load the
// logon key goes away, and ukdump reload reloads the crash kernel with the
// keys the kernel saved (reuse) by itself.
func luksKernelCycle(t *testing.T, lc luksCase, target string) {
	t.Helper()
	lc.FSMiB, lc.Format, lc.Mode = 600, lukstest.Options{PBKDF: "argon2id"}, "keyring"
	lc.Conf = "key_transport kernel\n" + lc.Conf
	lc.Params = "ukdump.wrongkey=1 ukdump.reuse=1 ukdump.concurrent=1"
	r := runLUKS(t, lc)
	uuid := r.Volume.Header.UUID
	wantLines(t, r.Cycle.First, "first kernel",
		"FIRSTINIT CHECK wrong-key PASS",
		"key from logon key kdump-cryptsetup:vk-"+uuid+" (checked against the header digest)",
		"FIRSTINIT CHECK mkinitrd-no-key PASS",
		"FIRSTINIT CHECK reload-without-keys-refused PASS",
		"its logon key is gone; this load reuses the key the kernel saved at the last load",
		"reusing the key saved by the last load",
		"FIRSTINIT reloaded with the saved keys",
		"FIRSTINIT CHECK concurrent-reloads PASS",
	)
	wantLines(t, r.Cycle.Crash, "crash kernel", "asked the kernel to restore", "opened LUKS2 "+uuid)
	checkLUKSDump(t, r, target)
}

// TestLUKSTwoVolumes: ext4 on LUKS2 on LUKS1, both keys handed over in one
// load: the inner one from its logon key, the outer one from the live
// table, added as a logon key only for the load.
func TestLUKSTwoVolumes(t *testing.T) {
	t.Parallel()
	requireTools(t, append(hostTools, "cryptsetup")...)
	k := crashDMKernel(t)
	dir := outDir(t)
	fsUUID := newUUID()
	plain := plainExt4(t, dir, fsUUID, 560<<20)
	inner := formatLUKS(t, dir, "inner", 580<<20, lukstest.Options{KeyBits: 256}, plain)
	os.Remove(plain)
	outer := formatLUKS(t, dir, "outer", 600<<20, lukstest.Options{Version: 1}, inner.Image)
	marker := randomHex(8)

	c := runCycle(t, dir, cycleOptions{
		Kernel:      k,
		Conf:        "ext4 UUID=" + fsUUID + "\nformat elf\ndump_level 0\n",
		Files:       map[string]string{"etc/e2e/volumes": outer.volumesLine("table") + inner.volumesLine("keyring")},
		Disks:       []string{outer.Image},
		MemoryMiB:   guestMiB,
		CrashKernel: luksCrashKernel(),
		Params:      "ukdump.marker=" + marker,
		Timeout:     6 * time.Minute,
	})
	if c.Err != nil {
		t.Fatalf("kdump cycle: %v", c.Err)
	}
	wantLines(t, c.First, "first kernel", "key transport kernel", "outer: key from the live dm-crypt table", "inner: key from logon key")
	wantLines(t, c.Crash, "crash kernel", "opened LUKS1 "+outer.Header.UUID, "opened LUKS2 "+inner.Header.UUID)
	innerPlain := decrypt(t, outer, filepath.Join(dir, "outer-decrypted.img"))
	innerV := inner
	innerV.Image = innerPlain
	vmcore, loaded, dmesg := verifyDump(t, dir, decrypt(t, innerV, filepath.Join(dir, "decrypted.img")), c, marker)
	saveVmcore(t, vmcore, "crashdm-7.3.vmcore")
	checkNoKeys(t, dir, c, inner, outer)
	checkScrubbed(t, dir, c.Crash, vmcore, true, inner, outer)
	writeReport(t, dir, c, vmcore, loaded, dmesg, "ext4 on LUKS2 on LUKS1, both keys handed over by the kernel")
}

// TestLUKSKeyVanished: the crash kernel was reloaded by something that
// handed over no key. The crash kernel must refuse to dump, take the
// failure action, and write nothing.
func TestLUKSKeyVanished(t *testing.T) {
	t.Parallel()
	requireTools(t, append(hostTools, "cryptsetup")...)
	r := runLUKS(t, luksCase{Kernel: crashDMKernel(t), FSMiB: 64, Mode: "keyring",
		Conf: "key_transport kernel\nfailure_action reboot\n", Params: "ukdump.scenario=nokeys", Timeout: 4 * time.Minute})
	dir, v, c := r.Dir, r.Volume, r.Cycle
	wantLines(t, c.First, "first kernel", "FIRSTINIT reloaded the crash kernel without keys", "FIRSTINIT CHECK mkinitrd-no-key PASS")
	wantLines(t, c.Crash, "crash kernel",
		"kdumpinit: FAILED at unlock: LUKS "+v.Header.UUID+" (crashdisk): the first kernel handed over no key",
		"kdumpinit: reboot")
	if strings.Contains(c.Crash, "mounted") || strings.Contains(c.Crash, "dump complete") {
		t.Errorf("crash kernel went on without the key:\n%s", qemu.Tail(c.Crash, 20))
	}
	out, err := exec.Command("debugfs", "-R", "ls -l /", decrypt(t, v, filepath.Join(dir, "decrypted.img"))).CombinedOutput()
	if err != nil {
		t.Fatalf("debugfs: %v\n%s", err, out)
	}
	if strings.Contains(string(out), "var") {
		t.Errorf("something was written to the target:\n%s", out)
	}
	checkNoKeys(t, dir, c, v)
}
