package mkinitrd

import (
	"fmt"
	"io"
)

// Secret is a file that must never reach a disk: a volume key for the
// initrd transport. It goes into a second, uncompressed archive appended
// to the initramfs, which the kernel unpacks after the first.
type Secret struct {
	// Name is the path inside the initramfs, without a leading slash.
	Name string
	Data []byte
}

// SecretWriter is an output that takes the secrets archive its own way:
// the loader's in-memory initramfs writes it into pages it has locked in
// memory, so that no key goes to swap. Build uses WriteSecret instead of
// Write for that archive when w has it.
type SecretWriter interface {
	WriteSecret(p []byte) (int, error)
}

// writeSecrets appends the secrets archive to w at offset off (the bytes
// written so far) and returns the bytes written, padding included. The
// archive is built in one buffer owned here and wiped before returning:
// u-root's cpio writer copies file contents through io.Copy buffers that no
// one could wipe, so this small newc writer stands in for it.
func writeSecrets(w io.Writer, off int64, secrets []Secret, dir string) (int64, error) {
	size := 4 + 512*(len(secrets)+2)
	for _, s := range secrets {
		size += len(s.Data)
	}
	buf := make([]byte, 0, size)
	defer func() { clear(buf[:cap(buf)]) }()
	// The kernel skips zero padding between archives but wants each to
	// start on a 4-byte boundary.
	buf = append(buf, make([]byte, (4-off%4)%4)...)
	start := len(buf)
	ino := uint32(1 << 20)
	buf = appendNewc(buf, start, ino, dir, 0o040700, nil)
	for i, s := range secrets {
		buf = appendNewc(buf, start, ino+uint32(i)+1, s.Name, 0o100400, s.Data)
	}
	buf = appendNewc(buf, start, 0, "TRAILER!!!", 0, nil)
	if len(buf) > size {
		return 0, fmt.Errorf("mkinitrd: secrets archive outgrew its buffer")
	}
	var n int
	var err error
	if sw, ok := w.(SecretWriter); ok {
		n, err = sw.WriteSecret(buf)
	} else {
		n, err = w.Write(buf)
	}
	return int64(n), err
}

// appendNewc appends one newc record; offsets are aligned relative to the
// archive start.
func appendNewc(buf []byte, start int, ino uint32, name string, mode uint32, data []byte) []byte {
	nlink := uint32(1)
	if mode&0o040000 != 0 {
		nlink = 2
	}
	buf = fmt.Appendf(buf, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		ino, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0, len(name)+1, 0)
	buf = append(buf, name...)
	buf = append(buf, 0)
	buf = pad4(buf, start)
	buf = append(buf, data...)
	return pad4(buf, start)
}

func pad4(buf []byte, start int) []byte {
	for (len(buf)-start)%4 != 0 {
		buf = append(buf, 0)
	}
	return buf
}
