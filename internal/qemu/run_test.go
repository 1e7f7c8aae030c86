package qemu

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// fakeQEMU writes a shell script standing in for QEMU, so the process
// handling (exit codes, timeouts, group kills) is tested in milliseconds
// and without QEMU installed.
func fakeQEMU(t *testing.T, body string) Options {
	t.Helper()
	path := filepath.Join(t.TempDir(), "fake-qemu")
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return Options{Binary: path, Kernel: "/nonexistent/bzImage", Timeout: 20 * time.Second}
}

func TestRunPassesArgsAndCleansConsole(t *testing.T) {
	o := fakeQEMU(t, `for a in "$@"; do printf '%s\r\n' "$a"; done`)
	o.Cmdline = "console=ttyS0 quiet"
	var live bytes.Buffer
	o.Console = &live
	res, err := Run(t.Context(), o)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	want := strings.Join(o.Args(), "\n") + "\n"
	if res.Console != want {
		t.Errorf("Console = %q, want %q", res.Console, want)
	}
	if live.String() != want {
		t.Errorf("live console = %q, want %q", live.String(), want)
	}
	if res.TimedOut || res.ExitErr != nil || res.Duration <= 0 {
		t.Errorf("Result = %+v", res)
	}
}

func TestRunNonZeroExit(t *testing.T) {
	o := fakeQEMU(t, `echo "guest said bye"; echo "qemu: could not load kernel" >&2; exit 3`)
	res, err := Run(t.Context(), o)
	if err == nil {
		t.Fatal("Run succeeded, want error for exit status 3")
	}
	var exitErr *exec.ExitError
	if !errors.As(res.ExitErr, &exitErr) || exitErr.ExitCode() != 3 {
		t.Errorf("ExitErr = %v, want exit status 3", res.ExitErr)
	}
	if errors.Is(err, ErrTimeout) || res.TimedOut {
		t.Errorf("exit reported as timeout: %v", err)
	}
	for _, s := range []string{"exit status 3", "could not load kernel", "guest said bye"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error lacks %q:\n%v", s, err)
		}
	}
	if res.Stderr != "qemu: could not load kernel\n" || res.Console != "guest said bye\n" {
		t.Errorf("Stderr %q, Console %q", res.Stderr, res.Console)
	}
}

// TestRunTimeoutKillsGroup has the fake leave a child holding the console
// pipe: only a process-group kill lets Run return well before waitDelay.
func TestRunTimeoutKillsGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	o := fakeQEMU(t, `echo booting; sleep 1000 & echo $! >`+pidFile+`; wait`)
	o.Timeout = 500 * time.Millisecond
	start := time.Now()
	res, err := Run(t.Context(), o)
	elapsed := time.Since(start)
	if !errors.Is(err, ErrTimeout) || !res.TimedOut {
		t.Fatalf("err = %v, TimedOut = %v; want timeout", err, res.TimedOut)
	}
	if elapsed > waitDelay-time.Second {
		t.Errorf("Run took %v: the child holding the pipe was not killed", elapsed)
	}
	if !strings.Contains(err.Error(), "booting") {
		t.Errorf("error lacks console tail:\n%v", err)
	}
	if res.Console != "booting\n" {
		t.Errorf("Console = %q", res.Console)
	}
	pid, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	// A killed child may linger as a zombie of init for a moment; its
	// /proc entry then says so in state Z, never R or S.
	deadline := time.Now().Add(5 * time.Second)
	for {
		stat, err := os.ReadFile("/proc/" + strings.TrimSpace(string(pid)) + "/stat")
		if err != nil || strings.Contains(string(stat), ") Z ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("child %s still alive: %s", pid, stat)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestRunContextCancel(t *testing.T) {
	o := fakeQEMU(t, `exec sleep 1000`)
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	res, err := Run(ctx, o)
	if err == nil || errors.Is(err, ErrTimeout) || res.TimedOut {
		t.Fatalf("err = %v, TimedOut = %v; want a cancellation error", err, res.TimedOut)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want it to wrap the context's error", err)
	}
}

func TestRunMissingBinary(t *testing.T) {
	o := Options{Binary: filepath.Join(t.TempDir(), "no-such-qemu"), Kernel: "k"}
	res, err := Run(t.Context(), o)
	if err == nil || res == nil || res.ExitErr == nil {
		t.Fatalf("Run = %+v, %v; want start error and non-nil Result", res, err)
	}
	if !strings.Contains(err.Error(), "no-such-qemu") {
		t.Errorf("error does not name the binary: %v", err)
	}
}

func TestRunNeedsKernel(t *testing.T) {
	if _, err := Run(t.Context(), Options{Binary: "true"}); err == nil {
		t.Fatal("Run without Kernel succeeded")
	}
}

func TestWaitFor(t *testing.T) {
	o := fakeQEMU(t, `printf 'Linux version 1\nx\n'; sleep 0.2; printf 'Linux version 2\nhalf'; sleep 0.2; printf ' line'`)
	vm, err := Start(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	banner := regexp.MustCompile(`^Linux version`)
	for _, want := range []string{"Linux version 1", "Linux version 2"} {
		got, err := vm.WaitFor(ctx, banner)
		if err != nil || got != want {
			t.Fatalf("WaitFor = %q, %v; want %q", got, err, want)
		}
	}
	// The last line has no newline: it only counts once QEMU has exited.
	if got, err := vm.WaitFor(ctx, regexp.MustCompile(`half line$`)); err != nil || got != "half line" {
		t.Fatalf("WaitFor = %q, %v; want the final partial line", got, err)
	}
	if _, err := vm.WaitFor(ctx, banner); err == nil || !strings.Contains(err.Error(), "exited") {
		t.Fatalf("WaitFor after exit = %v, want an 'exited' error", err)
	}
	if _, err := vm.Wait(); err != nil {
		t.Fatal(err)
	}
}

func TestWaitForContext(t *testing.T) {
	o := fakeQEMU(t, `echo hello; exec sleep 1000`)
	vmCtx, stopVM := context.WithCancel(t.Context())
	defer stopVM()
	vm, err := Start(vmCtx, o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	_, err = vm.WaitFor(ctx, regexp.MustCompile(`never`))
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "hello") {
		t.Errorf("WaitFor = %v, want deadline error with console tail", err)
	}
	select {
	case <-vm.Done():
		t.Fatal("a WaitFor deadline stopped the VM")
	default:
	}
	stopVM()
	if _, err := vm.Wait(); !errors.Is(err, context.Canceled) {
		t.Errorf("Wait = %v, want context.Canceled", err)
	}
}
