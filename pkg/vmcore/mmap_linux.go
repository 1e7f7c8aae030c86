package vmcore

import (
	"os"

	"golang.org/x/sys/unix"
)

func newMapper(f *os.File, size int64) *mapper {
	return &mapper{fd: f.Fd(), size: size, f: f}
}

func (m *mapper) mmap(off int64, n int) ([]byte, error) {
	return unix.Mmap(int(m.fd), off, n, unix.PROT_READ, unix.MAP_PRIVATE)
}

func (m *mapper) unmap(b []byte) { _ = unix.Munmap(b) }
