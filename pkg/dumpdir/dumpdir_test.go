package dumpdir

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
	base := filepath.Join(t.TempDir(), "var", "crash")
	a, err := Create(base, "h", crash)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Create(base, "h", crash)
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
