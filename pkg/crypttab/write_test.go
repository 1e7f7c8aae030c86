package crypttab

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestWrite: the new content replaces the file, with its mode; the old one
// is the backup; no temporary file is left; a file changed since it was
// read is not overwritten.
func TestWrite(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "crypttab")
	backup := name + ".ukdump-bak"
	old, new := []byte("root UUID=x none luks\n"), []byte("root UUID=x none luks,a=1\n")
	if err := os.WriteFile(name, old, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Write(name, old, new, backup); err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string][]byte{name: new, backup: old} {
		b, err := os.ReadFile(file)
		if err != nil || string(b) != string(want) {
			t.Errorf("%s = %q, %v; want %q", file, b, err, want)
		}
		if st, err := os.Stat(file); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, %v; want 0600 as before", file, st.Mode(), err)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 2 {
		t.Errorf("left in the directory: %v", ents)
	}
	if err := Write(name, old, []byte("x y\n"), backup); !errors.Is(err, ErrChanged) {
		t.Errorf("Write over a changed file: %v", err)
	}
	if b, _ := os.ReadFile(name); string(b) != string(new) {
		t.Errorf("a changed file was overwritten: %q", b)
	}
}

// TestWriteSymlink: a crypttab that is a symlink keeps being one; its
// target is replaced.
func TestWriteSymlink(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real")
	name := filepath.Join(dir, "crypttab")
	if err := os.WriteFile(real, []byte("a b\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("real", name); err != nil {
		t.Fatal(err)
	}
	if err := Write(name, []byte("a b\n"), []byte("a b none o\n"), ""); err != nil {
		t.Fatal(err)
	}
	if l, err := os.Readlink(name); err != nil || l != "real" {
		t.Errorf("symlink now %q, %v", l, err)
	}
	if b, _ := os.ReadFile(real); string(b) != "a b none o\n" {
		t.Errorf("target = %q", b)
	}
}
