package lock

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestTakeWaits: a second taker waits for the first, says for whom, and
// gets the lock once it is released.
func TestTakeWaits(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run", "lock")
	first, err := Take(path, "reload", time.Second, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	var second *Lock
	var serr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		second, serr = Take(path, "unload", 10*time.Second, &out)
	}()
	time.Sleep(300 * time.Millisecond)
	if second != nil {
		t.Fatal("the lock was taken twice")
	}
	if err := first.Release(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if serr != nil {
		t.Fatal(serr)
	}
	defer second.Release()
	want := fmt.Sprintf("waiting for ukdump reload (pid %d, since ", os.Getpid())
	if !strings.Contains(out.String(), want) || !strings.Contains(out.String(), "(up to 10s)") {
		t.Errorf("waiter said %q, want %q…", out.String(), want)
	}
	if h := readHolder(second.f); h.Verb != "unload" || h.PID != os.Getpid() {
		t.Errorf("holder after the second take: %+v", h)
	}
}

// TestTakeGivesUp: the wait is bounded, and the error names the holder.
func TestTakeGivesUp(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lock")
	first, err := Take(path, "load", time.Second, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	defer first.Release()
	start := time.Now()
	_, err = Take(path, "reload", 300*time.Millisecond, &bytes.Buffer{})
	if !errors.Is(err, ErrBusy) || !strings.Contains(err.Error(), "ukdump load (pid ") {
		t.Fatalf("Take while held = %v, want ErrBusy naming the holder", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("gave up after %s", d)
	}
}

// TestLockDiesWithHolder: a holder that is killed leaves no lock behind.
func TestLockDiesWithHolder(t *testing.T) {
	if os.Getenv("UKDUMP_LOCK_CHILD") != "" {
		if _, err := Take(os.Getenv("UKDUMP_LOCK_CHILD"), "load", time.Second, os.Stdout); err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		fmt.Println("held")
		time.Sleep(time.Minute)
		os.Exit(0)
	}
	path := filepath.Join(t.TempDir(), "lock")
	cmd := exec.Command(os.Args[0], "-test.run=^TestLockDiesWithHolder$")
	cmd.Env = append(os.Environ(), "UKDUMP_LOCK_CHILD="+path)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); errors.Is(err, syscall.ENOEXEC) {
		t.Skipf("the test binary cannot run itself here (under qemu-user): %v", err)
	} else if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := stdout.Read(buf); err != nil || string(buf[:4]) != "held" {
		t.Fatalf("child: %q, %v", buf, err)
	}
	if _, err := Take(path, "reload", 200*time.Millisecond, &bytes.Buffer{}); !errors.Is(err, ErrBusy) {
		t.Fatalf("while the child holds it: %v, want ErrBusy", err)
	}
	cmd.Process.Kill()
	cmd.Wait()
	l, err := Take(path, "reload", 5*time.Second, &bytes.Buffer{})
	if err != nil {
		t.Fatalf("after the holder was killed: %v", err)
	}
	l.Release()
}

// TestTakeRefusesSymlink: the lock file is never opened through a symlink
// planted in its place.
func TestTakeRefusesSymlink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "elsewhere")
	if err := os.WriteFile(target, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "lock")
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
	if l, err := Take(path, "load", time.Second, &bytes.Buffer{}); err == nil {
		l.Release()
		t.Fatal("took a lock through a symlink")
	}
	if b, _ := os.ReadFile(target); string(b) != "keep" {
		t.Errorf("the symlink's target was written: %q", b)
	}
}
