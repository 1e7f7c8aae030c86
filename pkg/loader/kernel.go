package loader

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/ukdump/ukdump/pkg/armimage"
	"github.com/ukdump/ukdump/pkg/bzimage"
)

// kernelImage is what the loader needs of the crash kernel's image: an x86
// bzImage, or an arm64 Image as distributions ship it (plain, gzip or EFI
// zboot).
type kernelImage struct {
	// LoadSize is the memory the kernel needs from its load address to
	// boot: the bzImage's init_size, or the arm64 Image's text_offset +
	// image_size (the unpacked image with its bss).
	LoadSize uint64
	// SizeTerm names LoadSize in the estimate's table.
	SizeTerm string
	Release  string
	// plain is the unpacked arm64 Image when the file holds it
	// compressed: kexec_file_load takes only the plain Image.
	plain []byte
}

// readKernel reads the image in the file name.
func readKernel(name string) (*kernelImage, error) {
	if img, err := bzimage.ReadFile(name); err == nil {
		return &kernelImage{LoadSize: uint64(img.Header.InitSize), SizeTerm: "bzImage init_size", Release: img.Release}, nil
	} else if !errors.Is(err, bzimage.ErrNotBzImage) {
		return nil, err
	}
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("loader: crash kernel: %w", err)
	}
	img, plain, err := armimage.Unpack(b)
	if err != nil {
		return nil, fmt.Errorf("loader: crash kernel %s: neither an x86 bzImage nor an arm64 kernel image: %w", name, err)
	}
	k := &kernelImage{LoadSize: img.Header.TextOffset + img.Header.ImageSize, SizeTerm: "arm64 Image image_size", Release: img.Release}
	if img.Packing != armimage.Plain {
		k.plain = plain
		k.SizeTerm += ", unpacked from " + string(img.Packing)
	}
	return k, nil
}

// openKernel opens the image for kexec_file_load: the file itself, or a
// memfd holding the unpacked arm64 Image.
func openKernel(name string) (*os.File, error) {
	k, err := readKernel(name)
	if err != nil {
		return nil, err
	}
	if k.plain == nil {
		f, err := os.Open(name)
		if err != nil {
			return nil, fmt.Errorf("loader: crash kernel: %w", err)
		}
		return f, nil
	}
	fd, err := unix.MemfdCreate("ukdump-kernel", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("loader: crash kernel: memfd for the unpacked Image: %w", err)
	}
	f := os.NewFile(uintptr(fd), "ukdump-kernel")
	if _, err := f.Write(k.plain); err != nil {
		f.Close()
		return nil, fmt.Errorf("loader: crash kernel: writing the unpacked Image: %w", err)
	}
	return f, nil
}
