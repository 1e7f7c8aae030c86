// Package armimage reads arm64 Linux kernel images as distributions ship
// them, for kexec_file_load, which takes only the plain Image:
//
//   - the plain Image (Debian's vmlinuz; Documentation/arch/arm64/booting.rst):
//     a 64-byte header with text_offset, image_size and the magic "ARM\x64"
//     at 56;
//   - the same gzip-compressed (Image.gz: Ubuntu's vmlinuz);
//   - an EFI zboot image (CONFIG_EFI_ZBOOT; drivers/firmware/efi/libstub/
//     zboot-header.S): a PE file whose DOS header says "zimg" at 4 and holds
//     the compressed payload's offset and size and its compression's name.
//
// The compressed forms are unpacked in memory, as kexec-tools does; Unpack
// bounds the result so that a malformed file cannot take all memory.
package armimage

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
)

// Magic is the Image header's magic at offset 56, "ARM\x64".
const Magic = 0x644d5241

// MaxImage bounds an unpacked Image: distribution kernels are 30-60 MiB.
const MaxImage = 256 << 20

// Header is the arm64 Image header (booting.rst), little-endian.
type Header struct {
	Code0, Code1 uint32 // executable code
	TextOffset   uint64 // image load offset from a 2 MiB aligned base
	ImageSize    uint64 // effective image size: memory from the load address the kernel needs, bss included
	Flags        uint64 // bit 0 big-endian, bits 1-2 page size, bit 3 placement
	Res2         uint64
	Res3         uint64
	Res4         uint64
	Magic        uint32 // Magic
	Res5         uint32 // offset of the PE header (EFI stub)
}

// HeaderSize is binary.Size(Header{}).
const HeaderSize = 64

// zbootHeader is the start of an EFI zboot image.
type zbootHeader struct {
	DOSMagic      uint32 // "MZ\0\0"
	Type          [4]byte
	PayloadOffset uint32
	PayloadSize   uint32
	Reserved      [2]uint32
	Compression   [32]byte // NUL-terminated: "gzip", "zstd", ...
}

const (
	dosMagic  = 0x5a4d // "MZ"
	zbootType = "zimg"
)

// Packing is how the file holds the Image.
type Packing string

// The packings Unpack reads.
const (
	Plain Packing = "Image"
	Gzip  Packing = "Image.gz"
	ZBoot Packing = "EFI zboot"
)

// Image is what Unpack reads of an arm64 kernel image.
type Image struct {
	Header Header
	// Packing is how the file held the Image.
	Packing Packing
	// Compression is the compression of the payload ("" for Plain,
	// "gzip" for Gzip, the zboot header's name for ZBoot).
	Compression string
	// Release is the kernel release (uname -r) from the image's
	// "Linux version" banner, empty when it has none.
	Release string
}

// PageSize returns the kernel's page size from the header's flags (0 when
// the header does not say).
func (h *Header) PageSize() int {
	switch (h.Flags >> 1) & 3 {
	case 1:
		return 4096
	case 2:
		return 16384
	case 3:
		return 65536
	}
	return 0
}

// FormatError reports a file that is not an arm64 kernel image Unpack
// reads, or a damaged one.
type FormatError struct {
	Msg string
	Err error
}

func (e *FormatError) Error() string {
	if e.Err != nil {
		return "armimage: " + e.Msg + ": " + e.Err.Error()
	}
	return "armimage: " + e.Msg
}

func (e *FormatError) Unwrap() error { return e.Err }

func formatError(err error, format string, args ...any) error {
	return &FormatError{Msg: fmt.Sprintf(format, args...), Err: err}
}

// IsImage reports whether b starts with a plain arm64 Image header.
func IsImage(b []byte) bool {
	return len(b) >= HeaderSize && binary.LittleEndian.Uint32(b[56:]) == Magic
}

// Unpack reads the kernel image file's bytes and returns what it is and
// the plain Image: file itself when it is one, else the unpacked payload.
func Unpack(file []byte) (*Image, []byte, error) {
	img := &Image{Packing: Plain}
	plain := file
	switch {
	case IsImage(file):
	case len(file) >= 2 && file[0] == 0x1f && file[1] == 0x8b:
		img.Packing, img.Compression = Gzip, "gzip"
		var err error
		if plain, err = gunzip(file); err != nil {
			return nil, nil, err
		}
	case len(file) >= 8 && binary.LittleEndian.Uint16(file) == dosMagic && string(file[4:8]) == zbootType:
		var err error
		if plain, img.Compression, err = unzboot(file); err != nil {
			return nil, nil, err
		}
		img.Packing = ZBoot
	default:
		return nil, nil, formatError(nil, "not an arm64 kernel image (no Image header, gzip stream or EFI zboot header)")
	}
	if !IsImage(plain) {
		return nil, nil, formatError(nil, "%s: the payload is not an arm64 Image (no %q magic at 56)", img.Packing, "ARM\\x64")
	}
	if _, err := binary.Decode(plain, binary.LittleEndian, &img.Header); err != nil {
		return nil, nil, formatError(err, "Image header")
	}
	if img.Header.Flags&1 != 0 {
		return nil, nil, formatError(nil, "big-endian arm64 kernels are not supported")
	}
	img.Release = release(plain)
	return img, plain, nil
}

// release finds the release in the "Linux version <release> (" banner.
func release(b []byte) string {
	const banner = "Linux version "
	for off := 0; ; {
		i := bytes.Index(b[off:], []byte(banner))
		if i < 0 {
			return ""
		}
		off += i + len(banner)
		rest := b[off:min(len(b), off+65)]
		end := bytes.IndexAny(rest, " \x00")
		// The banner has a digit, then the release, then a space; other
		// "Linux version " strings (printk formats) have "%s".
		if end > 0 && rest[0] >= '0' && rest[0] <= '9' && rest[end] == ' ' {
			return string(rest[:end])
		}
	}
}

// gunzip unpacks a gzip stream of at most MaxImage bytes.
func gunzip(b []byte) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, formatError(err, "gzip header")
	}
	// Image.gz may carry padding after the stream.
	zr.Multistream(false)
	return readBounded(zr, "gzip")
}

func readBounded(r io.Reader, what string) ([]byte, error) {
	out, err := io.ReadAll(io.LimitReader(r, MaxImage+1))
	if err != nil {
		return nil, formatError(err, "%s payload", what)
	}
	if len(out) > MaxImage {
		return nil, formatError(nil, "%s payload unpacks to more than %d MiB", what, MaxImage>>20)
	}
	return out, nil
}

// unzboot unpacks the payload of an EFI zboot image.
func unzboot(b []byte) ([]byte, string, error) {
	var h zbootHeader
	if _, err := binary.Decode(b, binary.LittleEndian, &h); err != nil {
		return nil, "", formatError(err, "EFI zboot header")
	}
	comp, _, _ := bytes.Cut(h.Compression[:], []byte{0})
	name := string(comp)
	off, size := uint64(h.PayloadOffset), uint64(h.PayloadSize)
	if off > uint64(len(b)) || size > uint64(len(b))-off {
		return nil, name, formatError(nil, "EFI zboot payload %#x+%#x beyond the end of the file (%#x)", off, size, len(b))
	}
	payload := b[off : off+size]
	var out []byte
	var err error
	switch name {
	case "gzip":
		out, err = gunzip(payload)
	case "zstd":
		var d *zstd.Decoder
		d, err = zstd.NewReader(bytes.NewReader(payload), zstd.WithDecoderMaxMemory(MaxImage+1), zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, name, formatError(err, "zstd payload")
		}
		defer d.Close()
		out, err = readBounded(d, "zstd")
	default:
		return nil, name, formatError(nil, "EFI zboot payload compressed with %q: only gzip and zstd are supported", name)
	}
	return out, name, err
}
