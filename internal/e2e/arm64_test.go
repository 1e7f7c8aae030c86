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

// The arm64 cases run on QEMU's virt machine under TCG (-cpu max), on
// Debian 12's stock kernel and on the small 7.3 kernel that
// build-crashdm.sh cross-builds with CRASH_DM_CRYPT. Debian's own arm64
// kernels (12 and 13, cloud and generic flavours) are built without
// CONFIG_KEXEC_FILE: ukdump loads their crash kernel with kexec_load.

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

// debian12ARM64 is Debian 12's stock arm64 cloud kernel: built without
// CONFIG_KEXEC_FILE, so ukdump loads the crash kernel with kexec_load.
func debian12ARM64(t *testing.T) kernel {
	return debianKernel(t, "", "bookworm", "arm64")
}

// TestGuestARM64Debian12 is the plain crash cycle on Debian 12's stock
// arm64 kernel: kexec_load, with the ELF core header and the device tree
// ukdump builds, and the default dump format; unload and load again
// (kexec_load's unload) before the crash.
func TestGuestARM64Debian12(t *testing.T) {
	t.Parallel()
	requireTools(t, arm64Tools...)
	r := runPlain(t, plainCase{Kernel: debian12ARM64(t), DiskMiB: 256, Params: "ukdump.unload=1", Timeout: 10 * time.Minute})
	wantLines(t, r.Cycle.First, "first kernel",
		"lib/modules/virtio_blk.ko",
		"loaded with kexec_load: the running kernel has no kexec_file_load",
		"FIRSTINIT CHECK unload PASS",
		"FIRSTINIT CHECK reload PASS",
	)
	checkPlain(t, r, "ext4 on a virtio disk (arm64, Debian 12's kernel, loaded with kexec_load)")
}

// TestGuestARM64Debian13 is the plain cycle on Debian 13's stock arm64
// kernel (6.12, also without CONFIG_KEXEC_FILE), in the kdump format the
// tests compare with makedumpfile elsewhere.
func TestGuestARM64Debian13(t *testing.T) {
	t.Parallel()
	requireTools(t, arm64Tools...)
	r := runPlain(t, plainCase{Kernel: debianKernel(t, "", "trixie", "arm64"), DiskMiB: 256, Timeout: 10 * time.Minute})
	wantLines(t, r.Cycle.First, "first kernel", "loaded with kexec_load: the running kernel has no kexec_file_load")
	checkPlain(t, r, "ext4 on a virtio disk (arm64, Debian 13's kernel, loaded with kexec_load)")
}

// TestGuestARM64Debian12LUKSInitrd: LUKS2 on Debian 12's stock arm64
// kernel, the key in the in-memory initramfs that kexec_load hands over.
func TestGuestARM64Debian12LUKSInitrd(t *testing.T) {
	t.Parallel()
	requireTools(t, append(arm64Tools, "cryptsetup")...)
	luksInitrdCycle(t, luksCase{Kernel: debian12ARM64(t), Timeout: 12 * time.Minute,
		Modules: []string{"virtio_pci", "virtio_blk", "dm_mod", "dm_crypt", "xts", "ecb", "essiv"}},
		"ext4 on LUKS2 (Argon2id, 4096-byte sectors), arm64, Debian 12's kernel, loaded with kexec_load, key in the in-memory initramfs")
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
