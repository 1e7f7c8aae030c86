//go:build !linux

package vmcore

import "os"

// Without mmap, OpenMapped reads with pread.
func newMapper(*os.File, int64) *mapper { return nil }

func (m *mapper) mmap(int64, int) ([]byte, error) { panic("unreachable") }

func (m *mapper) unmap([]byte) {}
