package qemu

import (
	"bytes"
	"compress/gzip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/u-root/u-root/pkg/cpio"
)

// crashdmScript builds (once, then from its cache) the small test kernel
// with CONFIG_CRASH_DM_CRYPT=y; relative to this package's directory.
const crashdmScript = "../../testdata/kernel/build-crashdm.sh"

// crashdmMarker starts the one line the crashdm test init prints: the
// marker, then OK or FAIL and details.
const crashdmMarker = "CRASHDM-UKDUMP"

// crashdmInitSource mounts proc, sysfs and configfs, checks what the
// crash_dm_crypt kernel has to offer and powers off.
const crashdmInitSource = `package main

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"
)

func main() {
	fmt.Println("` + crashdmMarker + ` " + check())
	syscall.Sync()
	err := syscall.Reboot(syscall.LINUX_REBOOT_CMD_POWER_OFF)
	fmt.Println("power off failed:", err)
	select {}
}

func check() string {
	mounts := []struct{ source, target, fstype string }{
		{"proc", "/proc", "proc"},
		{"sysfs", "/sys", "sysfs"},
		{"configfs", "/sys/kernel/config", "configfs"},
	}
	for _, m := range mounts {
		if err := os.MkdirAll(m.target, 0o755); err != nil {
			return "FAIL: " + err.Error()
		}
		if err := syscall.Mount(m.source, m.target, m.fstype, 0, ""); err != nil {
			return fmt.Sprintf("FAIL: mount %s on %s: %v", m.fstype, m.target, err)
		}
	}
	fi, err := os.Stat("/sys/kernel/config/crash_dm_crypt_keys")
	if err != nil {
		return "FAIL: " + err.Error()
	}
	if !fi.IsDir() {
		return "FAIL: /sys/kernel/config/crash_dm_crypt_keys is not a directory"
	}
	// RTC_HCTOSYS sets the clock from the RTC; without it the year is 1970.
	if now := time.Now(); now.Year() < 2020 {
		return "FAIL: no wall-clock time: " + now.UTC().Format(time.RFC3339)
	}
	release, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	uptime, _ := os.ReadFile("/proc/uptime")
	return fmt.Sprintf("OK release=%s uptime=%s",
		strings.TrimSpace(string(release)), strings.Fields(string(uptime)+" ?")[0])
}
`

// needCrashdmKernel returns the crashdm bzImage. Like needVM it skips in
// -short mode and when QEMU or the kernel cannot be had, failing instead
// under CI. A cold cache builds the kernel: about 10 minutes here.
func needCrashdmKernel(t *testing.T) string {
	t.Helper()
	unavailable := needQEMU(t)
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(t.Context(), "bash", crashdmScript)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// A cancelled run must stop make and the compilers too, not just bash.
	setProcAttr(cmd)
	cmd.Cancel = func() error { return killProcessGroup(cmd) }
	if err := cmd.Run(); err != nil {
		unavailable("%s: %v\n%s", crashdmScript, err, Tail(stderr.String(), 40))
	}
	kernel := strings.TrimSpace(stdout.String())
	if fi, err := os.Stat(kernel); err != nil || !fi.Mode().IsRegular() || strings.Contains(kernel, "\n") {
		t.Fatalf("%s printed %q, which is not a kernel image (%v)\n%s", crashdmScript, kernel, err, Tail(stderr.String(), 20))
	}
	t.Logf("%s: %s", crashdmScript, Tail(stderr.String(), 1))
	return kernel
}

// buildGoInitramfs compiles source as a static amd64 /init and packs it with
// a /dev/console node, which the kernel needs to give init its stdio, as a
// gzipped newc cpio.
func buildGoInitramfs(t *testing.T, source string) string {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"go.mod":  "module testinit\n\ngo 1.22\n",
		"main.go": source,
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(src, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(dir, "init")
	build := exec.Command("go", "build", "-trimpath", "-o", bin, ".")
	build.Dir = src
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64", "GOWORK=off", "GOFLAGS=")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building test init: %v\n%s", err, out)
	}
	initBin, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}

	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	w := cpio.Newc.Writer(gz)
	records := []cpio.Record{
		cpio.Directory("dev", 0o755),
		cpio.CharDev("dev/console", 0o600, 5, 1),
		cpio.StaticRecord(initBin, cpio.Info{Name: "init", Mode: cpio.S_IFREG | 0o755}),
	}
	for _, r := range records {
		if err := w.WriteRecord(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := cpio.WriteTrailer(w); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "initramfs.cpio.gz")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestBootCrashDMKernel boots the crashdm kernel to a Go /init that finds
// configfs's crash_dm_crypt_keys directory, i.e. CONFIG_CRASH_DM_CRYPT=y,
// and a wall clock set from the RTC.
func TestBootCrashDMKernel(t *testing.T) {
	o := Options{
		Kernel:    needCrashdmKernel(t),
		Cmdline:   "console=ttyS0 panic=-1",
		MemoryMiB: 256,
		// Boot to /init takes about 2.5 s under TCG here.
		Timeout: time.Minute,
	}
	bootToPowerOff(t, o, crashdmInitSource, func(res *Result) {
		var result string
		for line := range strings.Lines(res.Console) {
			if rest, ok := strings.CutPrefix(line, crashdmMarker+" "); ok {
				result = strings.TrimSpace(rest)
			}
		}
		t.Logf("QEMU exited after %v: %s", res.Duration.Round(time.Millisecond), result)
		if !strings.HasPrefix(result, "OK ") {
			t.Fatalf("init did not report OK (got %q):\n%s", result, Tail(res.Console, 40))
		}
	})
}
