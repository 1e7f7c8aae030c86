package armimage

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// synthImage is a small plain Image: header, code, banner.
func synthImage() []byte {
	b := make([]byte, 8192)
	h := Header{TextOffset: 0, ImageSize: 3 << 20, Flags: 1 << 1, Magic: Magic, Res5: 64}
	if _, err := binary.Encode(b, binary.LittleEndian, &h); err != nil {
		panic(err)
	}
	copy(b[1000:], "Linux version %s (%s)\x00")
	copy(b[4000:], "Linux version 6.1.0-57-cloud-arm64 (debian-kernel@lists.debian.org) #1 SMP\x00")
	return b
}

func gz(b []byte) []byte {
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	zw.Write(b)
	zw.Close()
	return out.Bytes()
}

func zboot(comp string, payload []byte) []byte {
	const off = 512
	h := zbootHeader{DOSMagic: dosMagic, PayloadOffset: off, PayloadSize: uint32(len(payload))}
	copy(h.Type[:], zbootType)
	copy(h.Compression[:], comp)
	b := make([]byte, off, off+len(payload)+4)
	if _, err := binary.Encode(b, binary.LittleEndian, &h); err != nil {
		panic(err)
	}
	// The size the EFI stub reads follows the payload.
	return binary.LittleEndian.AppendUint32(append(b, payload...), 8192)
}

func TestUnpack(t *testing.T) {
	plain := synthImage()
	zenc, _ := zstd.NewWriter(nil)
	for _, tc := range []struct {
		name    string
		file    []byte
		packing Packing
		comp    string
	}{
		{"Image", plain, Plain, ""},
		{"Image.gz", append(gz(plain), 0, 0, 0), Gzip, "gzip"},
		{"zboot gzip", zboot("gzip", gz(plain)), ZBoot, "gzip"},
		{"zboot zstd", zboot("zstd", zenc.EncodeAll(plain, nil)), ZBoot, "zstd"},
	} {
		img, out, err := Unpack(tc.file)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if !bytes.Equal(out, plain) {
			t.Errorf("%s: unpacked Image differs", tc.name)
		}
		if img.Packing != tc.packing || img.Compression != tc.comp || img.Release != "6.1.0-57-cloud-arm64" ||
			img.Header.ImageSize != 3<<20 || img.Header.PageSize() != 4096 {
			t.Errorf("%s: %+v", tc.name, img)
		}
	}
}

func TestUnpackErrors(t *testing.T) {
	plain := synthImage()
	notImage := bytes.Repeat([]byte{1}, 100)
	bigEndian := bytes.Clone(plain)
	bigEndian[24] |= 1
	for _, tc := range []struct {
		name, want string
		file       []byte
	}{
		{"empty", "not an arm64 kernel image", nil},
		{"bzImage", "not an arm64 kernel image", append(make([]byte, 0x202), "HdrS"...)},
		{"gzip of junk", "payload is not an arm64 Image", gz(notImage)},
		{"truncated gzip", "gzip", gz(plain)[:100]},
		{"zboot lz4", `compressed with "lz4"`, zboot("lz4", plain)},
		{"zboot beyond EOF", "beyond the end", zboot("gzip", gz(plain))[:600]},
		{"big-endian", "big-endian", bigEndian},
	} {
		_, _, err := Unpack(tc.file)
		var fe *FormatError
		if !errors.As(err, &fe) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want a FormatError naming %q", tc.name, err, tc.want)
		}
	}
}

// TestDebianImage reads Debian's arm64 cloud kernel when the cache has it
// (testdata/kernel/fetch-debian.sh bookworm arm64).
func TestDebianImage(t *testing.T) {
	home, _ := os.UserHomeDir()
	images, _ := filepath.Glob(filepath.Join(home, ".cache/ukdump/kernels/linux-image-*-cloud-arm64_*/root/boot/vmlinuz-*"))
	if len(images) == 0 || testing.Short() {
		t.Skip("no Debian arm64 kernel in the cache (testdata/kernel/fetch-debian.sh bookworm arm64), or -short")
	}
	for _, name := range images {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		img, _, err := Unpack(b)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if want := strings.TrimPrefix(filepath.Base(name), "vmlinuz-"); img.Release != want || img.Packing != Plain || img.Header.ImageSize < uint64(len(b)) {
			t.Errorf("%s: %+v, want release %s, a plain Image, image_size at least the file", name, img, want)
		}
		t.Logf("%s: image_size %d MiB, text_offset %#x, page size %d", img.Release, img.Header.ImageSize>>20, img.Header.TextOffset, img.Header.PageSize())
	}
}

// FuzzUnpack: no panic, no unbounded allocation, and every error a
// FormatError.
func FuzzUnpack(f *testing.F) {
	plain := synthImage()
	f.Add(plain[:200])
	f.Add(gz(plain))
	f.Add(zboot("gzip", gz(plain)))
	f.Fuzz(func(t *testing.T, b []byte) {
		img, out, err := Unpack(b)
		var fe *FormatError
		if err != nil && !errors.As(err, &fe) {
			t.Fatalf("error is no FormatError: %v", err)
		}
		if err == nil && (img == nil || !IsImage(out)) {
			t.Fatal("success without an Image")
		}
	})
}
