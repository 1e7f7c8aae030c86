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
	"hash/crc32"
	"io"
	"os"
)

// Info is what a superblock says about a device.
type Info struct {
	// Type is "ext4" (for ext2, ext3 and ext4 alike), "xfs", "btrfs",
	// "crypto_LUKS" or LVM2Member, as blkid names them.
	Type string
	// UUID is in the lower-case 8-4-4-4-12 form that blkid prints; for
	// an LVM2 PV it is the PV id in lvm2's mixed-case 6-4-4-4-4-4-6 form,
	// as pvs and blkid print it.
	UUID string
	// Label may be empty.
	Label string
}

// LVM2Member is the Type of an LVM2 physical volume.
const LVM2Member = "LVM2_member"

// ErrUnknown means no superblock that this package knows was found.
var ErrUnknown = errors.New("no known filesystem, LUKS header or LVM2 label")

// Probe identifies the filesystem or LUKS header on r.
func Probe(r io.ReaderAt) (Info, error) {
	// An LVM2 label comes last: pvcreate wipes filesystem signatures but
	// mkfs does not always wipe sector 1, so a stale label under a live
	// filesystem must not hide it.
	for _, p := range []func(io.ReaderAt) (Info, bool, error){probeLUKS, probeExt, probeXFS, probeBtrfs, probeLVM} {
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

// LVM2: a 512-byte label in one of the first four sectors: "LABELONE", the
// sector's own number at +8, a CRC at +16 of the rest of the sector from
// +20, type "LVM2 001" at +24, and at +32 the pv_header with the 32
// characters of the PV id (blkid checks the same). pkg/lvm reads the
// rest; it cannot be imported here, since it finds PVs through this
// package.
func probeLVM(r io.ReaderAt) (Info, bool, error) {
	for s := int64(0); s < 4; s++ {
		b, ok, err := readAt(r, s*512, 512)
		if !ok {
			return Info{}, false, err
		}
		if !bytes.Equal(b[:8], []byte("LABELONE")) || !bytes.Equal(b[24:32], []byte("LVM2 001")) ||
			binary.LittleEndian.Uint64(b[8:]) != uint64(s) {
			continue
		}
		// lvm2's calc_crc is CRC-32 without Go's inversion in and out.
		if ^crc32.Update(^uint32(0xf597a6cf), crc32.IEEETable, b[20:]) != binary.LittleEndian.Uint32(b[16:]) {
			continue
		}
		id := b[32:64]
		return Info{Type: LVM2Member, UUID: fmt.Sprintf("%s-%s-%s-%s-%s-%s-%s", id[0:6], id[6:10], id[10:14], id[14:18], id[18:22], id[22:26], id[26:32])}, true, nil
	}
	return Info{}, false, nil
}
