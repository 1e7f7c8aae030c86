// Package blockdev finds block devices without udev: it reads filesystem and
// LUKS superblocks for UUIDs and labels, and walks sysfs for the stack of
// devices under a filesystem and the drivers they need.
//
// u-root's pkg/mount/block was the first choice, but it reports neither
// labels nor LUKS UUIDs nor btrfs, and it does not say which filesystem type
// it found, all of which a dump target needs.
package blockdev

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
)

// Info is what a superblock says about a device.
type Info struct {
	// Type is "ext4" (for ext2, ext3 and ext4 alike), "xfs", "btrfs" or "crypto_LUKS".
	Type string
	// UUID is in the lower-case 8-4-4-4-12 form that blkid prints.
	UUID string
	// Label may be empty.
	Label string
}

// ErrUnknown means no superblock that this package knows was found.
var ErrUnknown = errors.New("no known filesystem or LUKS header")

// Probe identifies the filesystem or LUKS header on r.
func Probe(r io.ReaderAt) (Info, error) {
	for _, p := range []func(io.ReaderAt) (Info, bool, error){probeLUKS, probeExt, probeXFS, probeBtrfs} {
		info, ok, err := p(r)
		if err != nil {
			return Info{}, err
		}
		if ok {
			return info, nil
		}
	}
	return Info{}, ErrUnknown
}

// ProbePath identifies the filesystem or LUKS header on the device at path.
func ProbePath(path string) (Info, error) {
	f, err := os.Open(path)
	if err != nil {
		return Info{}, fmt.Errorf("blockdev: %w", err)
	}
	defer f.Close()
	info, err := Probe(f)
	if err != nil {
		return Info{}, fmt.Errorf("blockdev: %s: %w", path, err)
	}
	return info, nil
}

// readAt reads n bytes at off. A device shorter than off+n holds no such
// superblock, which is not an error.
func readAt(r io.ReaderAt, off int64, n int) ([]byte, bool, error) {
	b := make([]byte, n)
	got, err := r.ReadAt(b, off)
	if got == n {
		return b, true, nil
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, false, nil
	}
	return nil, false, err
}

func formatUUID(b []byte) string {
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func cstring(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// LUKS1 and LUKS2 both keep the magic at 0 and the UUID as text at 168.
func probeLUKS(r io.ReaderAt) (Info, bool, error) {
	b, ok, err := readAt(r, 0, 208)
	if !ok || !bytes.Equal(b[:6], []byte("LUKS\xba\xbe")) {
		return Info{}, false, err
	}
	info := Info{Type: "crypto_LUKS", UUID: cstring(b[168:208])}
	if binary.BigEndian.Uint16(b[6:8]) == 2 {
		info.Label = cstring(b[24:72])
	}
	return info, true, nil
}

// ext2/3/4: superblock at 1024, magic 0xEF53 at +56, UUID at +104, label at +120.
func probeExt(r io.ReaderAt) (Info, bool, error) {
	b, ok, err := readAt(r, 1024, 136)
	if !ok || binary.LittleEndian.Uint16(b[56:58]) != 0xEF53 {
		return Info{}, false, err
	}
	return Info{Type: "ext4", UUID: formatUUID(b[104:120]), Label: cstring(b[120:136])}, true, nil
}

// XFS: big-endian superblock at 0, magic "XFSB", UUID at 32, label at 108.
func probeXFS(r io.ReaderAt) (Info, bool, error) {
	b, ok, err := readAt(r, 0, 120)
	if !ok || !bytes.Equal(b[:4], []byte("XFSB")) {
		return Info{}, false, err
	}
	return Info{Type: "xfs", UUID: formatUUID(b[32:48]), Label: cstring(b[108:120])}, true, nil
}

// btrfs: superblock at 64 KiB, fsid at +32, magic at +64, label at +299.
func probeBtrfs(r io.ReaderAt) (Info, bool, error) {
	b, ok, err := readAt(r, 64<<10, 299+256)
	if !ok || !bytes.Equal(b[64:72], []byte("_BHRfS_M")) {
		return Info{}, false, err
	}
	return Info{Type: "btrfs", UUID: formatUUID(b[32:48]), Label: cstring(b[299:])}, true, nil
}
