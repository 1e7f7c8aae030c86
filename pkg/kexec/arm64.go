package kexec

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/u-root/u-root/pkg/dt"

	"github.com/ukdump/ukdump/pkg/armimage"
)

// Loading an arm64 crash kernel with kexec_load, for kernels built without
// CONFIG_KEXEC_FILE (Debian's arm64 kernels, 12 and 13). What
// kexec_file_load does in the kernel is done here: the ELF core header, the
// crash kernel's device tree (/chosen: bootargs, initrd, linux,elfcorehdr,
// linux,usable-memory-range), the placement of everything in the
// crashkernel= reservation, and a trampoline that enters the kernel with the
// device tree in x0 (kexec_load's crash path jumps to the entry point with
// the MMU off and x0 zero: arm64 booting.rst wants the tree's address there).

const (
	kernelAlign    = 2 << 20 // booting.rst: text_offset from a 2 MiB aligned base
	trampolineSize = 40
)

// segment is one kexec_segment: buf is copied to mem, the rest of mem is
// zeroed by the kernel. mem is page-aligned in start and size.
type segment struct {
	buf []byte
	mem Range
}

// arm64Plan is a crash kernel laid out in its reservation.
type arm64Plan struct {
	segments []segment
	entry    uint64
	// initrd and coreHdr are where the device tree says they are.
	initrd, coreHdr Range
	// region is the reservation everything is in (crashk_res).
	region Range
}

func alignUp(v, a uint64) uint64 { return (v + a - 1) &^ (a - 1) }

// planARM64 places image (a plain arm64 Image), initrd, the core header
// and the device tree fdt (edited here) in region, the crash kernel's
// reservation (crashk_res) among crash, every segment aligned to
// pageSize, the running kernel's page size (kexec_load refuses segments
// that are not: 4, 16 or 64 KiB on arm64), and returns the segments and
// the trampoline's address.
func planARM64(fdt *dt.FDT, image, initrd, coreHdr []byte, cmdline string, region Range, crash []Range, pageSize uint64) (*arm64Plan, error) {
	img, _, err := armimage.Unpack(image)
	if err != nil {
		return nil, fmt.Errorf("kexec: crash kernel: %w", err)
	}
	if img.Packing != armimage.Plain {
		return nil, errors.New("kexec: crash kernel: kexec_load takes the unpacked Image")
	}
	if len(crash) == 0 || region.Size == 0 {
		return nil, errors.New("kexec: no crashkernel= reservation")
	}
	if pageSize == 0 || pageSize&(pageSize-1) != 0 {
		return nil, fmt.Errorf("kexec: page size %d", pageSize)
	}
	p := &arm64Plan{region: region}
	next := alignUp(region.Start, kernelAlign) + img.Header.TextOffset
	add := func(buf []byte, memsz uint64) Range {
		r := Range{next, alignUp(max(memsz, uint64(len(buf))), pageSize)}
		p.segments = append(p.segments, segment{buf, r})
		next = r.End()
		return r
	}
	kernel := add(image, img.Header.ImageSize)
	if len(initrd) > 0 {
		r := add(initrd, 0)
		p.initrd = Range{r.Start, uint64(len(initrd))}
	}
	r := add(coreHdr, 0)
	p.coreHdr = Range{r.Start, uint64(len(coreHdr))}
	tramp := next
	next += pageSize
	dtbAt := next

	if err := editFDT(fdt, cmdline, p, crash); err != nil {
		return nil, err
	}
	var dtb bytes.Buffer
	if _, err := fdt.Write(&dtb); err != nil {
		return nil, fmt.Errorf("kexec: writing the crash kernel's device tree: %w", err)
	}
	p.segments = append(p.segments, segment{trampoline(kernel.Start, dtbAt), Range{tramp, pageSize}})
	add(dtb.Bytes(), 0)
	if next > region.End() {
		return nil, fmt.Errorf("kexec: the crash kernel (%d MiB with its bss), initramfs (%d KiB) and headers need %d MiB from %#x; the crashkernel= reservation %s has %d MiB: reserve more",
			alignUp(kernel.Size, 1<<20)>>20, len(initrd)>>10, alignUp(next-region.Start, 1<<20)>>20, region.Start, region, region.Size>>20)
	}
	p.entry = tramp
	return p, nil
}

// trampoline is the code kexec_load's crash path enters: x0 = the device
// tree, x1-x3 = 0 (booting.rst), then a branch to the kernel. The
// instruction words are the A64 encodings of the assembly beside them.
func trampoline(kernel, dtb uint64) []byte {
	var b [trampolineSize]byte
	for i, insn := range []uint32{
		0x580000c4, // ldr x4, .+24 (the kernel's address)
		0x580000e0, // ldr x0, .+28 (the device tree's address)
		0xaa1f03e1, // mov x1, xzr
		0xaa1f03e2, // mov x2, xzr
		0xaa1f03e3, // mov x3, xzr
		0xd61f0080, // br x4
	} {
		binary.LittleEndian.PutUint32(b[4*i:], insn)
	}
	binary.LittleEndian.PutUint64(b[24:], kernel)
	binary.LittleEndian.PutUint64(b[32:], dtb)
	return b[:]
}

// editFDT turns the running kernel's boot device tree into the crash
// kernel's: what of_kexec_alloc_and_setup_fdt does for kexec_file_load.
func editFDT(fdt *dt.FDT, cmdline string, p *arm64Plan, crash []Range) error {
	root := fdt.RootNode
	if root == nil {
		return errors.New("kexec: the device tree has no root node")
	}
	addrCells, sizeCells := cells(root, "#address-cells", 2), cells(root, "#size-cells", 1)
	chosen, ok := root.LookupChildByName("chosen")
	if !ok {
		chosen = dt.NewNode("chosen")
		root.Children = append(root.Children, chosen)
	}
	for _, name := range []string{"linux,elfcorehdr", "linux,usable-memory-range", "linux,initrd-start", "linux,initrd-end",
		"kaslr-seed", "rng-seed", "linux,dmcryptkeys", "bootargs"} {
		chosen.RemoveProperty(name)
	}
	hdr, err := addrRange(addrCells, sizeCells, p.coreHdr)
	if err != nil {
		return err
	}
	chosen.UpdateProperty("linux,elfcorehdr", hdr)
	// crashk_res first, as of_kexec_alloc_and_setup_fdt writes it.
	var usable []byte
	ordered := append([]Range{p.region}, slices.DeleteFunc(slices.Clone(crash), func(r Range) bool { return r == p.region })...)
	for _, r := range ordered {
		b, err := addrRange(addrCells, sizeCells, r)
		if err != nil {
			return err
		}
		usable = append(usable, b...)
	}
	chosen.UpdateProperty("linux,usable-memory-range", usable)
	// The crash kernel reserves the core header itself, from the property
	// (a memory reservation entry as well makes it warn "elfcorehdr is
	// overlapped"); the initramfs is reserved as the kernel does.
	if p.initrd.Size > 0 {
		chosen.Update(dt.PropertyU64("linux,initrd-start", p.initrd.Start))
		chosen.Update(dt.PropertyU64("linux,initrd-end", p.initrd.End()))
		fdt.ReserveEntries = append(fdt.ReserveEntries, dt.ReserveEntry{Address: p.initrd.Start, Size: p.initrd.Size})
	}
	chosen.Update(dt.PropertyString("bootargs", cmdline))
	return nil
}

// cells reads a #address-cells or #size-cells property, def when absent
// (libfdt's defaults: 2 and 1).
func cells(n *dt.Node, name string, def uint32) uint32 {
	p, ok := n.LookProperty(name)
	if !ok {
		return def
	}
	v, err := p.AsU32()
	if err != nil || v == 0 || v > 2 {
		return def
	}
	return v
}

// addrRange encodes r as an address and a size of the given cell counts.
func addrRange(addrCells, sizeCells uint32, r Range) ([]byte, error) {
	var b []byte
	for _, f := range []struct {
		v     uint64
		cells uint32
	}{{r.Start, addrCells}, {r.Size, sizeCells}} {
		if f.cells == 1 {
			if f.v > 0xffffffff {
				return nil, fmt.Errorf("kexec: %s does not fit the device tree's 32-bit cells", r)
			}
			b = binary.BigEndian.AppendUint32(b, uint32(f.v))
		} else {
			b = binary.BigEndian.AppendUint64(b, f.v)
		}
	}
	return b, nil
}

// LoadARM64 loads a crash kernel with kexec_load: image is the plain arm64
// Image, initrd the crash initramfs (which may hold keys: it is not copied
// here, and the caller wipes it after). The device tree is the running
// kernel's boot tree (firmware/fdt in sysfs).
func (e Env) LoadARM64(image, initrd []byte, cmdline string) error {
	crash, err := e.CrashRegions()
	if err != nil {
		return err
	}
	region, err := e.CrashKernelRegion(crash)
	if err != nil {
		return err
	}
	layout, err := e.CoreLayout(elf.EM_AARCH64, crash)
	if err != nil {
		return err
	}
	hdr, err := CoreHeader(layout)
	if err != nil {
		return err
	}
	fdt, err := dt.ReadFile(filepath.Join(e.Sys, "firmware", "fdt"))
	if err != nil {
		return fmt.Errorf("kexec: the running kernel's device tree: %w", err)
	}
	p, err := planARM64(fdt, image, initrd, hdr, cmdline, region, crash, uint64(os.Getpagesize()))
	if err != nil {
		return err
	}
	return kexecLoad(p.entry, p.segments, KexecOnCrash)
}
