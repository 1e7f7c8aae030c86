// Package bzimage reads the setup header of an x86 Linux kernel image
// (bzImage), as the x86 boot protocol defines it
// (Documentation/arch/x86/boot.rst): how much memory the kernel needs to
// boot, and its release.
package bzimage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// HeaderOffset is where the setup header starts in the image file.
const HeaderOffset = 0x1f1

// Magic is the setup header's signature, at 0x202.
const Magic = "HdrS"

// MinVersion is the first boot protocol with init_size (2.10, Linux 2.6.31).
const MinVersion = 0x020a

// SetupHeader is the setup header up to kernel_info_offset (protocol 2.15),
// field by field at its offset in the file; binary.Read packs it as the
// kernel does.
type SetupHeader struct {
	SetupSects          uint8   // 0x1f1
	RootFlags           uint16  // 0x1f2
	Syssize             uint32  // 0x1f4: protected-mode code size, in 16-byte paragraphs
	RAMSize             uint16  // 0x1f8
	VidMode             uint16  // 0x1fa
	RootDev             uint16  // 0x1fc
	BootFlag            uint16  // 0x1fe: 0xAA55
	Jump                uint16  // 0x200
	Header              [4]byte // 0x202: "HdrS"
	Version             uint16  // 0x206: boot protocol, 0x020f is 2.15
	RealmodeSwtch       uint32  // 0x208
	StartSysSeg         uint16  // 0x20c
	KernelVersion       uint16  // 0x20e: offset of the version string, minus 0x200
	TypeOfLoader        uint8   // 0x210
	LoadFlags           uint8   // 0x211
	SetupMoveSize       uint16  // 0x212
	Code32Start         uint32  // 0x214
	RamdiskImage        uint32  // 0x218
	RamdiskSize         uint32  // 0x21c
	BootsectKludge      uint32  // 0x220
	HeapEndPtr          uint16  // 0x224
	ExtLoaderVer        uint8   // 0x226
	ExtLoaderType       uint8   // 0x227
	CmdLinePtr          uint32  // 0x228
	InitrdAddrMax       uint32  // 0x22c
	KernelAlignment     uint32  // 0x230
	RelocatableKernel   uint8   // 0x234
	MinAlignment        uint8   // 0x235
	XLoadFlags          uint16  // 0x236
	CmdlineSize         uint32  // 0x238
	HardwareSubarch     uint32  // 0x23c
	HardwareSubarchData uint64  // 0x240
	PayloadOffset       uint32  // 0x248
	PayloadLength       uint32  // 0x24c
	SetupData           uint64  // 0x250
	PrefAddress         uint64  // 0x258
	InitSize            uint32  // 0x260: linear memory the kernel needs from its load address to boot
	HandoverOffset      uint32  // 0x264
	KernelInfoOffset    uint32  // 0x268
}

// Image is what ukdump reads of a kernel image.
type Image struct {
	Header SetupHeader
	// Release is the first word of the version string (uname -r), empty
	// when the image has none.
	Release string
}

// ErrNotBzImage means the file is not an x86 bzImage.
var ErrNotBzImage = errors.New("not an x86 bzImage")

// Read reads the setup header and the version string of the image r.
func Read(r io.ReaderAt) (*Image, error) {
	var h SetupHeader
	sr := io.NewSectionReader(r, HeaderOffset, int64(binary.Size(h)))
	if err := binary.Read(sr, binary.LittleEndian, &h); err != nil {
		return nil, fmt.Errorf("%w: setup header: %w", ErrNotBzImage, err)
	}
	if string(h.Header[:]) != Magic || h.BootFlag != 0xaa55 {
		return nil, fmt.Errorf("%w: no %q signature at 0x202", ErrNotBzImage, Magic)
	}
	if h.Version < MinVersion {
		return nil, fmt.Errorf("%w: boot protocol %d.%02d has no init_size (2.10 and later have)", ErrNotBzImage, h.Version>>8, h.Version&0xff)
	}
	img := &Image{Header: h}
	if h.KernelVersion != 0 {
		b := make([]byte, 256)
		n, err := r.ReadAt(b, int64(h.KernelVersion)+0x200)
		if n == 0 && err != nil {
			return nil, fmt.Errorf("bzimage: version string: %w", err)
		}
		b, _, _ = bytes.Cut(b[:n], []byte{0})
		if f := strings.Fields(string(b)); len(f) > 0 {
			img.Release = f[0]
		}
	}
	return img, nil
}

// ReadFile reads the image in the file name.
func ReadFile(name string) (*Image, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("bzimage: %w", err)
	}
	defer f.Close()
	img, err := Read(f)
	if err != nil {
		return nil, fmt.Errorf("bzimage: %s: %w", name, err)
	}
	return img, nil
}
