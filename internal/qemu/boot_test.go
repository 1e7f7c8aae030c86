package qemu

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// fetchScript fetches Debian's stock cloud kernel; the path is relative to
// this package's directory, which go test uses as the working directory.
const fetchScript = "../../testdata/kernel/fetch-debian.sh"

// marker is what the test init prints; kernel messages never contain it.
const marker = "HELLO-UKDUMP"

// initSource is the whole userspace of the test guest. The kernel passes
// unknown key=value boot parameters to init as environment, so one binary
// serves both tests: helloinit=sleep makes it hang instead of powering off.
const initSource = `package main

import (
	"fmt"
	"os"
	"syscall"
	"time"
)

func main() {
	fmt.Println("` + marker + `")
	if os.Getenv("helloinit") == "sleep" {
		for {
			time.Sleep(time.Hour)
		}
	}
	syscall.Sync()
	err := syscall.Reboot(syscall.LINUX_REBOOT_CMD_POWER_OFF)
	fmt.Println("power off failed:", err)
	select {}
}
`

// needQEMU skips in -short mode and checks for QEMU. It returns how to
// report a missing dependency: skip, or under CI fail, since a CI run that
// silently skipped every boot would prove nothing.
func needQEMU(t *testing.T) func(format string, args ...any) {
	t.Helper()
	if testing.Short() {
		t.Skip("boots a VM; skipped with -short")
	}
	unavailable := t.Skipf
	if os.Getenv("CI") != "" {
		unavailable = t.Fatalf
	}
	if _, err := exec.LookPath(DefaultBinary); err != nil {
		unavailable("%s not found (apt-get install qemu-system-x86): %v", DefaultBinary, err)
	}
	return unavailable
}

// needVM skips in -short mode, and skips when QEMU or the kernel cannot be
// had, except under CI where a missing dependency is a failure: a CI run
// that silently skipped every boot would prove nothing.
func needVM(t *testing.T) (kernel string) {
	t.Helper()
	unavailable := needQEMU(t)
	var stdout, stderr bytes.Buffer
	cmd := exec.Command("bash", fetchScript)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		unavailable("%s: %v\n%s", fetchScript, err, stderr.String())
	}
	root := strings.TrimSpace(stdout.String())
	kernels, _ := filepath.Glob(filepath.Join(root, "boot", "vmlinuz-*"))
	if len(kernels) == 0 {
		t.Fatalf("%s printed %q, which holds no boot/vmlinuz-*\n%s", fetchScript, root, stderr.String())
	}
	slices.Sort(kernels)
	return kernels[len(kernels)-1]
}

func TestBootPowerOff(t *testing.T) {
	o := Options{
		Kernel:  needVM(t),
		Cmdline: "console=ttyS0 panic=-1",
		Timeout: 3 * time.Minute,
	}
	res := bootToPowerOff(t, o, initSource, func(res *Result) {
		t.Logf("QEMU exited after %v, %d bytes of console", res.Duration.Round(time.Millisecond), len(res.Console))
		if !strings.Contains(res.Console, marker) {
			t.Fatalf("console lacks %q:\n%s", marker, Tail(res.Console, 40))
		}
	})
	if strings.Contains(res.Console, "\r") {
		t.Error("console still contains carriage returns")
	}
}

// bootToPowerOff boots o with source, built by buildGoInitramfs, as /init,
// which must power the guest off. check judges what init printed and may
// end the test; then the run must have ended in a clean power-off, not a
// panic from init exiting.
func bootToPowerOff(t *testing.T, o Options, source string, check func(*Result)) *Result {
	t.Helper()
	o.Initrd = buildGoInitramfs(t, source)
	t.Logf("%s %s", o.binary(), strings.Join(o.Args(), " "))
	res, err := Run(t.Context(), o)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	check(res)
	if strings.Contains(res.Console, "Kernel panic") || strings.Contains(res.Console, "power off failed") {
		t.Errorf("guest did not power off cleanly:\n%s", Tail(res.Console, 40))
	}
	return res
}

// TestBootTimeout lets the guest reach an init that never exits, so the
// timeout, not a slow boot, is what ends the run. It also exercises WaitFor
// against a real serial console.
func TestBootTimeout(t *testing.T) {
	kernel := needVM(t)
	initrd := buildGoInitramfs(t, initSource)
	o := Options{
		Kernel:  kernel,
		Initrd:  initrd,
		Cmdline: "console=ttyS0 panic=-1 helloinit=sleep",
		// Five times the usual boot-to-init time under TCG here.
		Timeout: 10 * time.Second,
	}
	start := time.Now()
	vm, err := Start(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	line, err := vm.WaitFor(t.Context(), regexp.MustCompile(regexp.QuoteMeta(marker)))
	if err != nil {
		t.Errorf("guest never reached init: %v", err)
	} else {
		t.Logf("init ran after %v: %q", time.Since(start).Round(time.Millisecond), line)
	}
	res, err := vm.Wait()
	elapsed := time.Since(start)
	if !errors.Is(err, ErrTimeout) || !res.TimedOut {
		t.Fatalf("Wait = %v (TimedOut %v), want ErrTimeout\n%s", err, res.TimedOut, Tail(res.Console, 20))
	}
	t.Logf("killed after %v", elapsed.Round(time.Millisecond))
	if elapsed > o.Timeout+waitDelay {
		t.Errorf("Run returned %v after the %v timeout", elapsed-o.Timeout, o.Timeout)
	}
	if !strings.Contains(err.Error(), "console (last") || !strings.Contains(err.Error(), marker) {
		t.Errorf("timeout error lacks the console tail: %v", err)
	}
}
