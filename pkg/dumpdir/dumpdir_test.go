package dumpdir

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ukdump/ukdump/internal/qemuuser"
)

var crash = time.Date(2026, 11, 26, 4, 5, 6, 0, time.UTC)

func TestName(t *testing.T) {
	for host, want := range map[string]string{
		"web1":     "web1-2026-11-26-04:05:06",
		"":         "localhost-2026-11-26-04:05:06",
		"10.0.0.1": "10.0.0.1-2026-11-26-04:05:06",
		"a/../b":   "a_.._b-2026-11-26-04:05:06",
	} {
		if got := Name(host, crash); got != want {
			t.Errorf("Name(%q) = %q, want %q", host, got, want)
		}
	}
}

func TestCreateNeverReuses(t *testing.T) {
	qemuuser.SkipWithoutOpenat2(t)
	root := t.TempDir()
	a, err := Create(root, "/var/crash", "h", crash)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Create(root, "/var/crash", "h", crash)
	if err != nil {
		t.Fatal(err)
	}
	if a == b || filepath.Base(b) != "h-2026-11-26-04:05:06.2" {
		t.Errorf("second dump dir %q (first %q)", b, a)
	}
}

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	if err := WriteFile(dir, "vmcore", func(w *os.File) error {
		// The final name must not exist while writing.
		if _, err := os.Stat(filepath.Join(dir, "vmcore")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("vmcore visible before it is complete: %v", err)
		}
		_, err := io.WriteString(w, "core")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "vmcore")); err != nil || string(b) != "core" {
		t.Errorf("vmcore = %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "vmcore"+IncompleteSuffix)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("incomplete file left behind: %v", err)
	}
}

func TestWriteFileFailureKeepsPartial(t *testing.T) {
	dir := t.TempDir()
	err := WriteFile(dir, "vmcore", func(w *os.File) error {
		io.WriteString(w, "half")
		return errors.New("no space left on device")
	})
	if err == nil || !strings.Contains(err.Error(), "kept as vmcore-incomplete") || !strings.Contains(err.Error(), "no space") {
		t.Errorf("err = %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "vmcore")); !errors.Is(err, os.ErrNotExist) {
		t.Error("failed dump got the final name")
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "vmcore-incomplete")); string(b) != "half" {
		t.Errorf("partial = %q", b)
	}
	if err := WriteFile(dir, "vmcore", func(*os.File) error { return nil }); err == nil {
		t.Error("WriteFile over an existing incomplete file succeeded")
	}
}

// TestCreateSymlinkStaysInRoot: an absolute symlink in the dump path
// resolves inside the target filesystem, never in the crash kernel's own
// root (RAM, lost at reboot); a dangling one or a file is an error.
func TestCreateSymlinkStaysInRoot(t *testing.T) {
	qemuuser.SkipWithoutOpenat2(t)
	root := t.TempDir()
	outside := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "var"), 0o755); err != nil {
		t.Fatal(err)
	}
	// /var/crash -> <outside> would, followed naively, leave the target.
	if err := os.Symlink(outside, filepath.Join(root, "var", "crash")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, outside), 0o755); err != nil {
		t.Fatal(err)
	}
	dir, err := Create(root, "/var/crash", "h", crash)
	if err != nil {
		t.Fatal(err)
	}
	realRoot, _ := filepath.EvalSymlinks(root)
	if want := filepath.Join(realRoot, outside, Name("h", crash)); dir != want {
		t.Errorf("dump dir %s, want %s (inside the target)", dir, want)
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Errorf("dump written outside the target: %v", entries)
	}
	if err := os.Symlink("/nonexistent/dir", filepath.Join(root, "dangling")); err != nil {
		t.Fatal(err)
	}
	if _, err := Create(root, "/dangling/crash", "h", crash); err == nil {
		t.Error("dump path through a dangling symlink accepted")
	}
	if err := os.WriteFile(filepath.Join(root, "file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Create(root, "/file/crash", "h", crash); err == nil {
		t.Error("dump path through a regular file accepted")
	}
}
