package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ukdump/ukdump/internal/qemu"
	"github.com/ukdump/ukdump/pkg/armimage"
)

// The arm64 cases run on QEMU's virt machine under TCG (-cpu max). The
// crash cycles use the small 7.3 kernel that build-crashdm.sh cross-builds
// with CRASH_DM_CRYPT: Debian's own arm64 kernels (12 and 13, cloud and
// generic flavours) are built without CONFIG_KEXEC_FILE, so no
// kexec_file_load loader, ukdump's included, can load a crash kernel from
// them (kexec-tools uses the older kexec_load). TestGuestARM64Debian12 shows
// what ukdump does there: it says so.

var arm64Tools = []string{"qemu-system-aarch64", "mkfs.ext4", "debugfs"}

// hostReads reports whether this host's crash and makedumpfile read dumps
// of arch: Debian builds each for its own machine only (crash refuses with
// "machine type mismatch"; makedumpfile's page-table code is the build
// machine's). libkdumpfile and ukdump read either machine's dumps.
func hostReads(arch qemu.Arch) bool { return arch != qemu.ArchARM64 }

// crashDMKernelARM64 is the arm64 build of crashDMKernel.
func crashDMKernelARM64(t *testing.T) kernel {
	t.Helper()
	image := os.Getenv("UKDUMP_CRASHDM_ARM64_KERNEL")
	if image == "" {
		cmd := exec.Command("../../testdata/kernel/build-crashdm.sh", "arm64")
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		if err != nil {
			need(t, "building the arm64 CRASH_DM_CRYPT kernel: %v", err)
		}
		image = strings.TrimSpace(string(out))
	}
	b, err := os.ReadFile(image)
	if err != nil {
		t.Fatal(err)
	}
	img, _, err := armimage.Unpack(b)
	if err != nil || img.Release == "" {
		t.Fatalf("%s: %v (release %q)", image, err, img.Release)
	}
	return kernel{Root: filepath.Dir(image), Release: img.Release, Image: image, Arch: qemu.ArchARM64}
}

// TestGuestARM64Debian12 boots Debian 12's stock arm64 cloud kernel and runs
// the real "ukdump load": it reads the kernel as Debian ships it, resolves
// the arm64 modules and builds the crash initramfs, and the kernel then
// refuses kexec_file_load; ukdump must name the missing option, and the
// machine must not be left with a crash kernel it believes loaded.
func TestGuestARM64Debian12(t *testing.T) {
	t.Parallel()
	requireTools(t, arm64Tools...)
	dir := outDir(t)
	disk := filepath.Join(dir, "disk.img")
	uuid := newUUID()
	makeExt4(t, disk, uuid, 64)
	c := runCycle(t, dir, cycleOptions{
		Kernel:      debianKernel(t, "", "bookworm", "arm64"),
		Conf:        "ext4 UUID=" + uuid + "\n",
		Disks:       []string{disk},
		MemoryMiB:   guestMiB,
		CrashKernel: crashKernelSize(),
		Timeout:     6 * time.Minute,
		Modules:     []string{"virtio_pci", "virtio_blk"},
	})
	if c.Err != nil {
		t.Fatalf("QEMU: %v\n%s", c.Err, qemu.Tail(c.First, 40))
	}
	wantLines(t, c.First, "first kernel",
		"FIRSTINIT CHECK missing-config PASS",
		"lib/modules/virtio_blk.ko",
		"lib/modules/virtio_pci_modern_dev.ko",
		"the running kernel has no kexec_file_load: it was built without CONFIG_KEXEC_FILE",
		"FIRSTINIT FAILED: ukdump load: exit status 1",
	)
	if c.Crash != "" {
		t.Errorf("a crash kernel ran:\n%s", qemu.Tail(c.Crash, 20))
	}
}

// TestGuestARM64CrashCycle: the whole product on arm64, dumping a whole ELF core
// (kept for the tests that read real vmcores on this x86_64 host).
func TestGuestARM64CrashCycle(t *testing.T) {
	t.Parallel()
	requireTools(t, arm64Tools...)
	r := runPlain(t, plainCase{Kernel: crashDMKernelARM64(t), DiskMiB: 700, Conf: "path /var/crash\nformat elf\ndump_level 0\n",
		CrashKernel: "96M", Timeout: 10 * time.Minute})
	saveVmcore(t, checkPlain(t, r, "ext4 on a virtio disk (arm64)"), "crashdm-7.3-arm64.vmcore")
}

// TestGuestARM64LUKSInitrd: the key rides in the in-memory initramfs, as
// with Debian's kernels on x86_64.
func TestGuestARM64LUKSInitrd(t *testing.T) {
	t.Parallel()
	requireTools(t, append(arm64Tools, "cryptsetup")...)
	luksInitrdCycle(t, luksCase{Kernel: crashDMKernelARM64(t), Conf: "key_transport initrd\n", Timeout: 10 * time.Minute},
		"ext4 on LUKS2 (Argon2id, 4096-byte sectors), arm64, key handed over in the in-memory initramfs")
}

// TestGuestARM64LUKSKernel: CRASH_DM_CRYPT on arm64, where the kernel
// tells the crash kernel of the keys in its device tree
// (linux,dmcryptkeys) rather than on its command line; configfs is the
// same, and so are the checks.
func TestGuestARM64LUKSKernel(t *testing.T) {
	t.Parallel()
	requireTools(t, append(arm64Tools, "cryptsetup")...)
	luksKernelCycle(t, luksCase{Kernel: crashDMKernelARM64(t), Timeout: 10 * time.Minute},
		"ext4 on LUKS2 (Argon2id), arm64, key handed over by the kernel (CRASH_DM_CRYPT, device tree)")
}
