// Package bzimagetest makes kernel images for tests: the first 4 KiB of a
// bzImage, enough for pkg/bzimage.
package bzimagetest

import "encoding/binary"

// Image returns a bzImage start with boot protocol version, init_size and,
// unless release is empty, a version string "release (builder@host) #1 SMP".
func Image(version uint16, initSize uint32, release string) []byte {
	b := make([]byte, 4096)
	binary.LittleEndian.PutUint16(b[0x1fe:], 0xaa55)
	copy(b[0x202:], "HdrS")
	binary.LittleEndian.PutUint16(b[0x206:], version)
	binary.LittleEndian.PutUint32(b[0x260:], initSize)
	if release != "" {
		const at = 0x1000 - 0x100
		binary.LittleEndian.PutUint16(b[0x20e:], at-0x200)
		copy(b[at:], release+" (builder@host) #1 SMP\x00garbage")
	}
	return b
}
