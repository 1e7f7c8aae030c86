package qemu

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestShell drives a stand-in console: a shell loop that reads lines from
// QEMU's stdin, with the guest-only commands (stty, dmesg) stubbed so the
// test never touches the host's console level.
func TestShell(t *testing.T) {
	o := fakeQEMU(t, `echo "[    1.0] some kernel line"
{ echo 'stty() { :; }; dmesg() { :; }'; cat; } | sh`)
	o.Input = true
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	vm, err := Start(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	sh, err := vm.WaitShell(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out, rc, err := sh.Run(ctx, "echo one; echo two; false")
	if err != nil || rc != 1 || out != "one\ntwo\n" {
		t.Fatalf("Run = %q, %d, %v", out, rc, err)
	}
	if _, err := sh.MustRun(ctx, "exit_status_3() { return 3; }; exit_status_3"); err == nil || !strings.Contains(err.Error(), "exited 3") {
		t.Fatalf("MustRun of a failing command: %v", err)
	}
	if err := sh.Type("echo typed-$((6*7))"); err != nil {
		t.Fatal(err)
	}
	if _, err := vm.WaitFor(ctx, regexp.MustCompile(`^typed-42$`)); err != nil {
		t.Fatal(err)
	}
	cancel()
	vm.Wait()
	if _, _, err := sh.Run(context.Background(), "true"); err == nil {
		t.Fatal("Run after the VM exited succeeded")
	}
}
