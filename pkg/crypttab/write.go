package crypttab

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// ErrChanged means the file changed between reading and writing it.
var ErrChanged = errors.New("changed since it was read: nothing written; run again")

// Write replaces the file name, whose content was old when it was read,
// with new, and keeps old in backup (unless backup is empty). A crash at
// any moment leaves the old file or the new one, never a mix: the new
// content goes to a temporary file in the same directory, flushed, then
// renamed over the name. The new file keeps the old one's mode and owner.
// A symlink at name is followed, and its target replaced.
func Write(name string, old, new []byte, backup string) error {
	real, err := filepath.EvalSymlinks(name)
	if err != nil {
		return fmt.Errorf("crypttab: %w", err)
	}
	st, err := os.Stat(real)
	if err != nil {
		return fmt.Errorf("crypttab: %w", err)
	}
	now, err := os.ReadFile(real)
	if err != nil {
		return fmt.Errorf("crypttab: %w", err)
	}
	if !bytes.Equal(now, old) {
		return fmt.Errorf("crypttab: %s %w", name, ErrChanged)
	}
	if backup != "" {
		if err := replace(backup, old, st); err != nil {
			return fmt.Errorf("crypttab: backup: %w", err)
		}
	}
	if err := replace(real, new, st); err != nil {
		return fmt.Errorf("crypttab: %w", err)
	}
	return nil
}

// replace writes data to name atomically, with the mode and owner of like.
func replace(name string, data []byte, like fs.FileInfo) (err error) {
	dir := filepath.Dir(name)
	f, err := os.CreateTemp(dir, "."+filepath.Base(name)+".ukdump-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			if rerr := os.Remove(f.Name()); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
				err = errors.Join(err, rerr)
			}
		}
	}()
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Chmod(like.Mode().Perm()); err != nil {
		return err
	}
	if st, ok := like.Sys().(*syscall.Stat_t); ok && (int(st.Uid) != os.Geteuid() || int(st.Gid) != os.Getegid()) {
		if err := f.Chown(int(st.Uid), int(st.Gid)); err != nil {
			return err
		}
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), name); err != nil {
		return err
	}
	// The rename itself lasts once the directory is flushed.
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
