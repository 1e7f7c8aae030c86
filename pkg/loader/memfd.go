package loader

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// memfd is the in-memory initramfs: a memfd that the kernel reads at load
// time. Its pages are shmem, which the kernel may swap out; the part that
// holds keys (the secrets archive, mkinitrd.SecretWriter) is written
// through a shared mapping locked in memory first, and stays locked until
// wiped.
type memfd struct {
	*os.File
	// locked is the mapping of the pages holding the secrets; at is the
	// secrets' offset in it.
	locked []byte
	at     int
}

func newMemfd(name string) (*memfd, error) {
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("loader: memfd: %w", err)
	}
	return &memfd{File: os.NewFile(uintptr(fd), name)}, nil
}

// WriteSecret appends p at the file's offset through a mapping of its
// pages that mlock holds in RAM before a byte is written.
func (m *memfd) WriteSecret(p []byte) (int, error) {
	if m.locked != nil {
		return 0, errors.New("loader: in-memory initramfs: a second secrets archive")
	}
	off, err := m.Seek(0, io.SeekCurrent)
	if err != nil {
		return 0, fmt.Errorf("loader: in-memory initramfs: %w", err)
	}
	end := off + int64(len(p))
	if err := m.Truncate(end); err != nil {
		return 0, fmt.Errorf("loader: in-memory initramfs: %w", err)
	}
	page := int64(os.Getpagesize())
	start := off &^ (page - 1)
	b, err := unix.Mmap(int(m.Fd()), start, int(end-start), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return 0, fmt.Errorf("loader: in-memory initramfs: mapping the key pages: %w", err)
	}
	if err := unix.Mlock(b); err != nil {
		return 0, errors.Join(fmt.Errorf("loader: in-memory initramfs: locking the key pages in memory: %w", err), unix.Munmap(b))
	}
	m.locked, m.at = b, int(off-start)
	copy(b[m.at:], p)
	if _, err := m.Seek(end, io.SeekStart); err != nil {
		return 0, fmt.Errorf("loader: in-memory initramfs: %w", err)
	}
	return len(p), nil
}

// wipeSecrets overwrites the secrets with zeros and drops their mapping.
func (m *memfd) wipeSecrets() error {
	if m.locked == nil {
		return nil
	}
	clear(m.locked[m.at:])
	err := unix.Munmap(m.locked)
	m.locked = nil
	if err != nil {
		return fmt.Errorf("loader: in-memory initramfs: %w", err)
	}
	return nil
}
