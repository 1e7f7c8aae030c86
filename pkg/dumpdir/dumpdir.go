// Package dumpdir lays out dump directories on the target filesystem and
// writes their files so that a half-written file is never mistaken for a
// whole one.
package dumpdir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// IncompleteSuffix marks a file whose writing did not finish (the name
// makedumpfile uses too). It is kept, not removed: part of a dump can still
// hold the kernel log or the page that explains the crash.
const IncompleteSuffix = "-incomplete"

// Name is the directory name for a dump: "<host>-<YYYY-MM-DD-HH:MM:SS>".
func Name(host string, t time.Time) string {
	host = strings.Map(func(r rune) rune {
		if r == '/' || r == 0 {
			return '_'
		}
		return r
	}, host)
	if host == "" {
		host = "localhost"
	}
	return host + "-" + t.Format("2006-01-02-15:04:05")
}

// Create makes a new dump directory below the directory path (as written in
// ukdump.conf) of the filesystem mounted at root, and returns its path.
// Missing directories of path are made; symlinks in it resolve inside root
// (see resolveIn). When a directory of that name exists (two crashes in one
// second, or a clock that was reset), a counter is added rather than mixing
// two dumps.
func Create(root, path, host string, t time.Time) (string, error) {
	base, err := resolveIn(root, path)
	if err != nil {
		return "", err
	}
	name := filepath.Join(base, Name(host, t))
	for i := 1; i < 100; i++ {
		dir := name
		if i > 1 {
			dir = fmt.Sprintf("%s.%d", name, i)
		}
		err := os.Mkdir(dir, 0o700)
		if err == nil {
			return dir, syncDir(base)
		}
		if !errors.Is(err, os.ErrExist) {
			return "", fmt.Errorf("dumpdir: %w", err)
		}
	}
	return "", fmt.Errorf("dumpdir: %s: too many dumps with this name", name)
}

// WriteFile writes a file in dir through write. The data goes to
// name+IncompleteSuffix, is flushed to disk, and only then renamed to name,
// so name exists only when it is whole. On failure the incomplete file is
// flushed and kept, and the error says so.
func WriteFile(dir, name string, write func(f *os.File) error) error {
	final := filepath.Join(dir, name)
	partial := final + IncompleteSuffix
	f, err := os.OpenFile(partial, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("dumpdir: %w", err)
	}
	// The name that says "incomplete" is made durable before any data:
	// if the disk fails or the power goes during the write, what is
	// left is a file that says what it is, not an empty directory.
	if err := syncDir(dir); err != nil {
		f.Close()
		return fmt.Errorf("dumpdir: creating %s: %w", filepath.Base(partial), err)
	}
	werr := write(f)
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		return fmt.Errorf("dumpdir: writing %s (kept as %s): %w", name, filepath.Base(partial), err)
	}
	if err := os.Rename(partial, final); err != nil {
		return fmt.Errorf("dumpdir: %w", err)
	}
	return syncDir(dir)
}

// syncDir makes a directory's new entries durable: without it a rename can
// be lost when the machine reboots right after the dump.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("dumpdir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("dumpdir: sync %s: %w", dir, err)
	}
	return nil
}
