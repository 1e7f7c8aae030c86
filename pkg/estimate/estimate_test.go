package estimate

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ukdump/ukdump/pkg/bzimage"
)

func TestCompute(t *testing.T) {
	e := Compute(Inputs{Kernel: "k", InitSize: 20 * MiB, Initramfs: 2 * MiB, Unpacked: 6 * MiB, Compression: "zstd", Reserved: 64 * MiB})
	if e.Total != 72*MiB || e.Recommended != 80*MiB || e.Cmdline() != "crashkernel=80M" || e.Enough() {
		t.Errorf("Compute = %+v, %s", e, e.Cmdline())
	}
	if e := Compute(Inputs{InitSize: 16 * MiB, Reserved: 60 * MiB}); e.Total != 60*MiB || e.Recommended != 64*MiB || !e.Enough() {
		t.Errorf("exactly enough: %+v", e)
	}
	// Each crash kernel CPU beyond the first is a term of its own.
	if e := Compute(Inputs{InitSize: 16 * MiB, CPUs: 3}); e.Total != 60*MiB+2*PerCPU || e.Terms[len(e.Terms)-1].Name != "2 more CPUs (crash_cpus 3)" {
		t.Errorf("three CPUs: %+v", e)
	}
	for reserved, want := range map[uint64]string{
		0:         "current reservation: none: not enough (add crashkernel=80M to the kernel command line and reboot)",
		64 * MiB:  "current reservation 64 MiB: not enough (set crashkernel=80M on the kernel command line and reboot)",
		256 * MiB: "current reservation 256 MiB: enough",
	} {
		e.Reserved = reserved
		if got := e.Verdict(); got != want {
			t.Errorf("Verdict(%d MiB) = %q, want %q", reserved/MiB, got, want)
		}
	}
}

func TestPrint(t *testing.T) {
	var b strings.Builder
	Compute(Inputs{Kernel: "/boot/vmlinuz-7.3", InitSize: 20 * MiB, Initramfs: MiB, Unpacked: 4 * MiB, Compression: "gzip", Reserved: 256 * MiB}).Print(&b)
	out := b.String()
	lines := map[string]bool{}
	for line := range strings.Lines(out) {
		lines[strings.Join(strings.Fields(line), " ")] = true
	}
	for _, want := range []string{
		"memory of the crash kernel /boot/vmlinuz-7.3:",
		"kernel image (bzImage init_size) 20.0 MiB",
		"initramfs as loaded (gzip) 1.0 MiB",
		"initramfs unpacked 4.0 MiB",
		"total 69.0 MiB",
		"recommended: crashkernel=80M (the total rounded up to 16 MiB)",
		"current reservation 256 MiB: enough",
	} {
		if !lines[want] {
			t.Errorf("Print lacks the line %q:\n%s", want, out)
		}
	}
	// The figures line up.
	if i, j := strings.Index(out, "20.0 MiB"), strings.Index(out, "69.0 MiB"); i < 0 || j < 0 ||
		i-strings.LastIndex(out[:i], "\n") != j-strings.LastIndex(out[:j], "\n") {
		t.Errorf("figures not aligned:\n%s", out)
	}
}

// TestDebianCalibration: Debian 12's stock 6.1 kernel needs 88M (it fails
// at 80M, out of memory unpacking the initramfs). With its real init_size
// (from the cached image, else the 51.5 MiB it has) and ukdump's crash
// initramfs (1.6 MiB gzip, about 5 MiB unpacked), the model must say at
// least 88M, and not absurdly more.
func TestDebianCalibration(t *testing.T) {
	initSize := uint64(51*MiB + MiB/2)
	home, _ := os.UserHomeDir()
	images, _ := filepath.Glob(filepath.Join(home, ".cache", "ukdump", "kernels", "linux-image-6.1.0-*-cloud-amd64_*", "root", "boot", "vmlinuz-*"))
	if len(images) > 0 {
		img, err := bzimage.ReadFile(images[0])
		if err != nil {
			t.Fatal(err)
		}
		initSize = uint64(img.Header.InitSize)
	}
	e := Compute(Inputs{InitSize: initSize, Initramfs: 1600 << 10, Unpacked: 5 * MiB})
	if e.Recommended < 88*MiB || e.Recommended > 160*MiB {
		t.Errorf("Debian 6.1: recommended %s (total %d MiB), want 88M to 160M", e.Cmdline(), e.Total/MiB)
	}
	t.Logf("Debian 6.1 (init_size %.1f MiB): %s", float64(initSize)/MiB, e.Cmdline())
}
